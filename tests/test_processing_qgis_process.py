"""End to end through QGIS's real command line: `make plugin`, scripts/qgis_process.sh, scripts/batch.sh.

Each call starts /usr/bin/qgis_process.bin in a subprocess with a throw-away profile, so nothing
here shares state with the in-process QGIS of the other tests.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import UTM33N_GT, smooth_image, write_geotiff

pytest_plugins = ["qgis_fixtures"]

REPO = Path(__file__).resolve().parents[1]
QGIS_PROCESS = Path(os.environ.get("QGIS_PROCESS", "/usr/bin/qgis_process.bin"))
pytestmark = pytest.mark.skipif(not QGIS_PROCESS.is_file(), reason=f"{QGIS_PROCESS} is not installed")


def env() -> dict:
    from qgis_fixtures import qgis_process_env

    return qgis_process_env()


def raster_info(path: Path) -> dict:
    from qgis_fixtures import raster_info as info

    return info(path)


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("qp-build")
    out = subprocess.run(["make", "-s", "plugin", f"PLUGIN_BUILD={folder}"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return folder


def qgis_process(build: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / "qgis_process.sh"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**env(), "MLIN_PLUGIN_BUILD": str(build)})


@pytest.fixture
def rgb40(tmp_path: Path) -> Path:
    data = (smooth_image(40, 40, 3, seed=5) * 255).round().astype(np.uint8)
    return write_geotiff(tmp_path / "in.tif", data)


def test_qgis_process_runs_superresolve_end_to_end(build: Path, tiny_model: Path, rgb40: Path, tmp_path: Path) -> None:
    out = tmp_path / "out x2.5.tif"  # a space in the path on purpose
    proc = qgis_process(build, "--json", "run", "mlin:superresolve", "--", f"INPUT={rgb40}", "SCALE=2.5",
                        f"MODEL_FILE={tiny_model / 'encoder.onnx'}", f"OUTPUT={out}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    payload = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert payload["algorithm_details"]["id"] == "mlin:superresolve"
    assert payload["results"]["WIDTH"] == 100 and payload["results"]["HEIGHT"] == 100
    assert Path(payload["results"]["OUTPUT"]) == out
    info = raster_info(out)
    assert (info["width"], info["height"], info["bands"], info["dtype"], info["epsg"]) == (100, 100, 3, "Byte", 32633)
    gt = info["geotransform"]
    assert (gt[0], gt[3]) == (pytest.approx(UTM33N_GT[0]), pytest.approx(UTM33N_GT[3]))
    assert (gt[1], gt[5]) == (pytest.approx(0.2), pytest.approx(-0.2))


def test_qgis_process_passes_failures_through(build: Path, tiny_model: Path, rgb40: Path, tmp_path: Path) -> None:
    out = tmp_path / "never.tif"
    bad_scale = qgis_process(build, "run", "mlin:superresolve", "--", f"INPUT={rgb40}", "SCALE=0.5",
                             f"MODEL_FILE={tiny_model / 'encoder.onnx'}", f"OUTPUT={out}")
    assert bad_scale.returncode != 0
    assert "SCALE" in bad_scale.stdout + bad_scale.stderr
    core_error = qgis_process(build, "run", "mlin:superresolve", "--", f"INPUT={rgb40}", "SCALE=2",
                              f"MODEL_FILE={tmp_path / 'missing' / 'encoder.onnx'}", f"OUTPUT={out}")
    assert core_error.returncode != 0
    assert "does not exist" in core_error.stdout + core_error.stderr
    assert not out.exists()


def test_qgis_process_lists_the_provider_with_the_shipped_models(build: Path) -> None:
    proc = qgis_process(build, "help", "mlin:superresolve")
    assert proc.returncode == 0, proc.stderr
    shipped = sorted(p.name for p in (REPO / "models").iterdir() if (p / "encoder.onnx").is_file())
    for name in shipped:
        assert name in proc.stdout, f"{name} should be offered as a MODEL choice"


def test_qgis_process_script_without_a_build_fails_clearly(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", str(REPO / "scripts" / "qgis_process.sh"), "list"], capture_output=True, text=True,
                          env={**env(), "MLIN_PLUGIN_BUILD": str(tmp_path / "nothing")}, timeout=60)
    assert proc.returncode == 2 and "make plugin" in proc.stderr


def test_batch_script_super_resolves_a_folder(build: Path, tiny_model: Path, tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    write_geotiff(src / "a.tif", (smooth_image(24, 32, 3, seed=6) * 255).astype(np.uint8))
    write_geotiff(src / "b.TIF", (smooth_image(16, 16, 3, seed=7) * 255).astype(np.uint8))
    (src / "notes.txt").write_text("not a raster")
    proc = subprocess.run(["bash", str(REPO / "scripts" / "batch.sh"), str(src), str(dst), "2"], cwd=REPO,
                          capture_output=True, text=True, timeout=600,
                          env={**env(), "MLIN_PLUGIN_BUILD": str(build), "MODEL_FILE": str(tiny_model / "encoder.onnx")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 of 2 rasters" in proc.stdout
    assert sorted(p.name for p in dst.iterdir()) == ["a_x2.tif", "b_x2.tif"]
    assert (raster_info(dst / "a_x2.tif")["width"], raster_info(dst / "a_x2.tif")["height"]) == (64, 48)
    assert (raster_info(dst / "b_x2.tif")["width"], raster_info(dst / "b_x2.tif")["height"]) == (32, 32)
    bad = subprocess.run(["bash", str(REPO / "scripts" / "batch.sh"), str(tmp_path / "none"), str(dst), "2"],
                         capture_output=True, text=True, timeout=60, env=env())
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_qgis_process_extent_cuts_the_same_window_as_the_whole_run(build: Path, tiny_model: Path, rgb40: Path,
                                                                   tmp_path: Path) -> None:
    from osgeo import gdal

    whole, part = tmp_path / "whole.tif", tmp_path / "part.tif"
    model = f"MODEL_FILE={tiny_model / 'encoder.onnx'}"
    assert qgis_process(build, "run", "mlin:superresolve", "--", f"INPUT={rgb40}", "SCALE=2", model,
                        f"OUTPUT={whole}").returncode == 0
    x0, y0 = UTM33N_GT[0], UTM33N_GT[3]
    extent = f"EXTENT={x0 + 4.2},{x0 + 12.1},{y0 - 15.3},{y0 - 6.6} [EPSG:32633]"  # xmin,xmax,ymin,ymax
    proc = qgis_process(build, "--json", "run", "mlin:superresolve", "--", f"INPUT={rgb40}", "SCALE=2", model,
                        extent, f"OUTPUT={part}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = gdal.Open(str(whole)), gdal.Open(str(part))
    gw, gp = a.GetGeoTransform(), b.GetGeoTransform()
    c0, r0 = int(round((gp[0] - gw[0]) / gw[1])), int(round((gp[3] - gw[3]) / gw[5]))
    assert (c0, r0) == (16, 26) and (b.RasterXSize, b.RasterYSize) == (34, 36)  # snapped to input pixels
    cut = a.ReadAsArray()[:, r0:r0 + b.RasterYSize, c0:c0 + b.RasterXSize].astype(int)
    assert np.abs(b.ReadAsArray().astype(int) - cut).max() <= 2


def test_qgis_process_area_of_interest_with_the_default_model_is_that_window(build: Path, rgb40: Path,
                                                                             tmp_path: Path) -> None:
    """No model named: `auto`, the degradation-aware default, reads the code from the whole raster, so
    an EXTENT run gives the whole run's pixels there (within 1 DN)."""
    from osgeo import gdal

    whole, part = tmp_path / "whole.tif", tmp_path / "part.tif"
    assert qgis_process(build, "run", "mlin:superresolve", "--", f"INPUT={rgb40}", "SCALE=2",
                        f"OUTPUT={whole}").returncode == 0
    x0, y0 = UTM33N_GT[0], UTM33N_GT[3]
    extent = f"EXTENT={x0 + 4.2},{x0 + 12.1},{y0 - 15.3},{y0 - 6.6} [EPSG:32633]"
    proc = qgis_process(build, "run", "mlin:superresolve", "--", f"INPUT={rgb40}", "SCALE=2", extent,
                        f"OUTPUT={part}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = gdal.Open(str(whole)), gdal.Open(str(part))
    gw, gp = a.GetGeoTransform(), b.GetGeoTransform()
    c0, r0 = int(round((gp[0] - gw[0]) / gw[1])), int(round((gp[3] - gw[3]) / gw[5]))
    cut = a.ReadAsArray()[:, r0:r0 + b.RasterYSize, c0:c0 + b.RasterXSize].astype(int)
    assert np.abs(b.ReadAsArray().astype(int) - cut).max() <= 1
    assert b.GetMetadata()["MLIN_INPUT_CODE"] == a.GetMetadata()["MLIN_INPUT_CODE"]
