"""Experts moved back towards the official LIIF in weight space (ml/toward_liif.py, export-aware --keep):
at share 0 the expert IS the official LIIF (its own output, compared with the official checkpoint run
as LIIF), at share 1 nothing moves, and bad shares are refused in one line before anything is written.
Real committed weights, the real official checkpoint."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SHARED, needs_shared, smooth_image

torch = pytest.importorskip("torch")

from mlin_qgis.core.errors import ConfigError  # noqa: E402
from mlin_qgis.ml.export_aware import load_aware  # noqa: E402
from mlin_qgis.ml.mixture import _key  # noqa: E402
from mlin_qgis.ml.model import load_model  # noqa: E402
from mlin_qgis.ml.toward_liif import interpolate_toward_liif, parse_keep  # noqa: E402

WEIGHTS = REPO / "checkpoints" / "aware-mlin.fp16.pth"
LIIF_CKPT = SHARED / "weights" / "edsr-baseline-liif.pth"


def one_hot(model, name: str) -> torch.Tensor:
    pi = torch.zeros(len(model.cfg.experts))
    pi[model.cfg.experts.index(name)] = 1.0
    return pi


@needs_shared(LIIF_CKPT)
def test_share_zero_is_the_official_liif_and_share_one_is_the_trained_expert() -> None:
    liif = load_model(LIIF_CKPT).eval()  # area weighting: the official LIIF (tested against its code's output)
    lr = torch.from_numpy(smooth_image(23, 29, seed=4)).float().unsqueeze(0)
    with torch.no_grad():
        reference = liif.super_resolve(lr, (57, 71))
        model = load_aware(WEIGHTS)
        trained = {n: model.experts[_key(n)].detach().clone() for n in model.names}
        before = model.single_model(one_hot(model, "clean")).super_resolve(lr, (57, 71))
        assert (before - reference).abs().max() > 1e-2  # the trained clean expert is not LIIF
        interpolate_toward_liif(model, liif, {"robust": 1.0})
        assert all(torch.equal(model.experts[_key(n)], trained[n]) for n in model.names)
        interpolate_toward_liif(model, liif, {"clean": 0.0})
        after = model.single_model(one_hot(model, "clean")).super_resolve(lr, (57, 71))
        assert (after - reference).abs().max() < 1e-4
        k = model.cfg.experts.index("robust")
        assert all(torch.equal(model.experts[_key(n)][k], trained[n][k]) for n in model.names)


def test_bad_shares_are_refused() -> None:
    assert parse_keep(["clean=0.5", "sharp=1"]) == {"clean": 0.5, "sharp": 1.0}
    for bad in ("clean", "clean=1.5", "clean=half", "=0.5x"):
        with pytest.raises(ConfigError, match="EXPERT=SHARE"):
            parse_keep([bad])
    model = load_aware(WEIGHTS)
    with pytest.raises(ConfigError, match="no expert named blurry"):
        interpolate_toward_liif(model, torch.nn.Module(), {"blurry": 0.5})  # type: ignore[arg-type]


def test_export_with_a_bad_share_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "model"
    proc = subprocess.run([sys.executable, "-m", "mlin_qgis", "export-aware", "--weights", str(WEIGHTS),
                           "--out", str(out), "--keep", "clean=2"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and "EXPERT=SHARE" in lines[0], proc.stderr
    assert not out.exists()
