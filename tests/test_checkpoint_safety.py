"""Checkpoints load with torch's weights-only unpickler: a pickle that would run code is refused
before any of it runs, with one clear line and a non-zero exit, and real checkpoints still load."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mlin_qgis.ml.decoder import DecoderConfig
from mlin_qgis.ml.model import CheckpointError, ImplicitSR, load_model, read_checkpoint, save_model


class _Payload:
    """Unpickling this calls os.system (what a hostile .pth does)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _evil_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"kind": "mlin-qgis", "model": _Payload(f"touch {marker}")}, path)
    assert not marker.exists()
    return path, marker


def test_a_code_running_pickle_is_refused_in_process(tmp_path):
    evil, marker = _evil_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="refusing to load .*evil.pth: it asks to build posix.system.*could run code"):
        read_checkpoint(evil)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_model(evil)
    assert not marker.exists()


@pytest.mark.parametrize("argv", [
    ["export", "--checkpoint", "{evil}", "--out", "{out}"],
    ["evaluate", "--checkpoint", "m={evil}", "--data", "{data}"],
])
def test_the_cli_refuses_it_with_one_line_and_no_traceback(tmp_path, argv):
    evil, marker = _evil_checkpoint(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    import numpy as np
    from PIL import Image
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(data / "a.png")
    args = [a.format(evil=evil, out=tmp_path / "out", data=data) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "mlin_qgis", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2
    assert "refusing to load" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_real_checkpoints_still_load(tmp_path):
    torch.manual_seed(0)
    model = ImplicitSR("edsr-baseline", DecoderConfig(weighting="meta"))
    path = tmp_path / "ours.pth"
    save_model(model, path, {"train": {"iteration": 3, "config": {"scales": (1.0, 4.0), "x": None}}})
    loaded = load_model(path)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    assert read_checkpoint(path)["train"]["config"]["scales"] == (1.0, 4.0)
