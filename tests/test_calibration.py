"""Calibrated estimates: a tiny timed run, cached in memory and on disk, behind estimate()."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import smooth_image
from mlin_qgis.core import calibration, pipeline
from mlin_qgis.core.calibration import Throughput, throughput
from mlin_qgis.core.card import ModelCard
from mlin_qgis.core.run_plan import default_tile
from mlin_qgis.core.tiling import halo_for, plan_tiles


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(calibration.ENV_CACHE_DIR, str(tmp_path / "cache"))
    monkeypatch.setattr(calibration, "_memory", {})
    monkeypatch.setattr(calibration, "_measured", {})
    return tmp_path / "cache" / "calibration.json"


def test_calibration_is_measured_once_then_read_back(tiny_model: Path, fresh_cache: Path, monkeypatch) -> None:
    first = throughput(tiny_model, "cpu", threads=1)
    assert first.provider == "CPUExecutionProvider" and first.encoder_s_per_px > 0 and first.decoder_s_per_px > 0
    saved = json.loads(fresh_cache.read_text())
    assert len(saved) == 1 and next(iter(saved.values()))["decoder_s_per_px"] == first.decoder_s_per_px
    monkeypatch.setattr(calibration, "_memory", {})  # a new session: read from the file, not measured again
    calls = []
    monkeypatch.setattr(calibration, "measure", lambda engine: calls.append(engine) or first)
    assert throughput(tiny_model, "cpu", threads=1) == first and not calls
    throughput(tiny_model, "cpu", threads=1, refresh=True)
    assert len(calls) == 1


def test_estimate_uses_the_calibration_then_the_last_run(tiny_model: Path, make_raster, fresh_cache: Path,
                                                        tmp_path: Path) -> None:
    src = make_raster(np.round(smooth_image(60, 70) * 255).astype(np.uint8))
    rate = throughput(tiny_model, "auto")
    est = pipeline.estimate(src, 2.0, model=tiny_model)
    assert "calibration run on this machine" in est.basis
    # the formula: every tile's LR read (halo included) through the encoder, every output pixel decoded
    halo = halo_for(ModelCard.from_onnx(tiny_model / "decoder.onnx").receptive_field)
    tiles = plan_tiles((60, 70), (120, 140), default_tile(rate.provider, 2.0), halo)
    lr_read = sum(t.rows.read_size * t.cols.read_size for t in tiles)
    assert est.seconds == pytest.approx(rate.seconds(lr_read, 120 * 140))
    assert pipeline.estimate(src, 2.0, model=tiny_model, ensemble=8).seconds == pytest.approx(8 * est.seconds)
    pipeline.superresolve(pipeline.SuperResolveRequest(src, tmp_path / "o.tif", 2.0, model=tiny_model))
    after = pipeline.estimate(src, 2.0, model=tiny_model)
    assert "last run in this session" in after.basis


def test_throughput_helpers() -> None:
    t = Throughput("CPUExecutionProvider", 2, encoder_s_per_px=4e-6, decoder_s_per_px=1e-6, measured_at=0.0)
    assert t.seconds(1000, 4000, passes=2) == pytest.approx(2 * (4e-3 + 4e-3))
    assert t.mpx_per_s(2.0) == pytest.approx(1e-6 / (1e-6 + 1e-6))
