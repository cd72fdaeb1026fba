"""How the command line ends (core/exits.py, core/limits.py): one line on stderr and an exit code, never a
bare traceback; an output too large to make is refused before anything is allocated or written."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, smooth_image
from mlin_qgis.__main__ import main
from mlin_qgis.core import cli_batch, cli_sr
from mlin_qgis.core.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    MlinCancelled,
    MlinError,
    ModelCardError,
    RasterError,
)
from mlin_qgis.core.exits import ENV_LOG_DIR, EXIT_BAD_INPUT, EXIT_BUG, EXIT_CANCELLED, USER_ERRORS
from mlin_qgis.core.limits import MAX_OUTPUT_SIDE, output_grid


def _cli(*argv: str, log_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), **{ENV_LOG_DIR: str(log_dir)})
    return subprocess.run([sys.executable, "-m", "mlin_qgis", *argv], cwd=str(REPO), env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("scale", ["1e9", "1e300", "90000"])
def test_sr_refuses_an_output_too_large_to_make_in_one_line(make_raster, tmp_path: Path, scale: str) -> None:
    """The real CLI on a real 200 x 160 GeoTIFF: exit 2, one line, no traceback, nothing written."""
    inp = make_raster(np.rint(smooth_image(160, 200) * 255).astype(np.uint8))
    out = tmp_path / "out" / "big.tif"
    out.parent.mkdir()
    proc = _cli("sr", str(inp), str(out), "--scale", scale, log_dir=tmp_path / "logs")
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "too large to make" in lines[0] and f"{MAX_OUTPUT_SIDE:,}" in lines[0]
    assert list(out.parent.iterdir()) == [] and not (tmp_path / "logs").exists()


def test_output_grid_is_the_output_size_below_the_limit_and_refused_above() -> None:
    assert output_grid((160, 200), 2.5) == (400, 500)
    side = MAX_OUTPUT_SIDE // 4
    assert output_grid((side, 3), 4.0) == (MAX_OUTPUT_SIDE, 12)
    for scale in (4.001, 1e9, float("inf"), float("nan")):
        with pytest.raises(RasterError, match="too large to make"):
            output_grid((side, 3), scale)


@pytest.fixture
def failing_sr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """`sr` whose run raises what the test gives; crash logs go to tmp_path/logs."""
    monkeypatch.setenv(ENV_LOG_DIR, str(tmp_path / "logs"))

    def make(exc: BaseException) -> None:
        def run(args: object) -> int:
            raise exc

        monkeypatch.setattr(cli_sr, "run", run)
    return make


@pytest.mark.parametrize("exc", [cls("what went wrong, and what to do.") for cls, _, _ in USER_ERRORS])
def test_cli_maps_every_mlin_error_to_one_line_and_its_exit_code(failing_sr, exc: MlinError, capsys) -> None:
    failing_sr(exc)
    code = main(["sr", "in.tif", "out.tif", "--scale", "2"])
    err = capsys.readouterr().err
    assert code == (EXIT_CANCELLED if isinstance(exc, MlinCancelled) else EXIT_BAD_INPUT)
    assert err.splitlines() == [f"mlin sr: {'' if isinstance(exc, MlinCancelled) else 'error: '}"
                                "what went wrong, and what to do."]


def test_the_table_covers_every_error_class_before_its_base() -> None:
    classes = [cls for cls, _, _ in USER_ERRORS]
    for cls in (MlinCancelled, ConfigError, CheckpointError, DataError, ModelCardError, RasterError, MlinError):
        assert cls in classes
    for i, cls in enumerate(classes):  # a subclass after its base would never be reached
        assert not any(issubclass(cls, earlier) for earlier in classes[:i]), cls


def test_cli_bug_is_one_line_pointing_at_a_log_with_the_traceback(failing_sr, tmp_path: Path, capsys) -> None:
    failing_sr(RuntimeError("a bug\nover two lines"))
    code = main(["sr", "in.tif", "out.tif", "--scale", "2"])
    err = capsys.readouterr().err
    assert code == EXIT_BUG
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "internal error (RuntimeError: a bug over two lines)" in err
    logs = list((tmp_path / "logs").iterdir())
    assert len(logs) == 1 and str(logs[0]) in err
    text = logs[0].read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: a bug" in text


def test_cli_memory_error_and_missing_package_and_ctrl_c(failing_sr, capsys) -> None:
    failing_sr(MemoryError("Unable to allocate 1.16 TiB"))
    assert main(["sr", "in.tif", "out.tif", "--scale", "2"]) == EXIT_BUG
    assert capsys.readouterr().err.startswith("mlin sr: out of memory (MemoryError: Unable to allocate 1.16 TiB)")
    failing_sr(ModuleNotFoundError("No module named 'torch'", name="torch"))
    assert main(["sr", "in.tif", "out.tif", "--scale", "2"]) == EXIT_BAD_INPUT
    assert "needs the Python package torch" in capsys.readouterr().err
    failing_sr(KeyboardInterrupt())
    assert main(["sr", "in.tif", "out.tif", "--scale", "2"]) == EXIT_CANCELLED
    assert capsys.readouterr().err.splitlines() == ["mlin sr: interrupted."]


def test_a_bug_in_the_real_cli_process_never_prints_a_traceback(tmp_path: Path) -> None:
    """The same as a real process: a bug raised deep in `sr` (here: GDAL's opener made to fail)."""
    script = ("import sys; from osgeo import gdal; import mlin_qgis.core.raster_io as r\n"
              "def boom(*a, **k): raise ZeroDivisionError('deep inside')\n"
              "r.open_raster = boom\n"
              "from mlin_qgis.__main__ import main; sys.exit(main(sys.argv[1:]))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), **{ENV_LOG_DIR: str(tmp_path / "logs")})
    proc = subprocess.run([sys.executable, "-c", script, "sr", "in.tif", str(tmp_path / "o.tif"), "--scale", "2"],
                          cwd=str(REPO), env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_BUG
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "ZeroDivisionError" in (next((tmp_path / "logs").iterdir())).read_text()


def test_sr_run_itself_maps_user_errors(tiny_model: Path, tmp_path: Path, capsys) -> None:
    """`sr`'s own guard (used before the entry point's) goes through the same table."""
    args = cli_sr.add_arguments(argparse.ArgumentParser()).parse_args(
        [str(tmp_path / "missing.tif"), str(tmp_path / "out.tif"), "--scale", "2", "--model", str(tiny_model)])
    assert cli_sr.run(args) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.splitlines() == [f"mlin sr: error: input raster {tmp_path / 'missing.tif'} "
                                                    "does not exist; check the path."]


def test_batch_maps_user_errors_and_leaves_bugs_to_the_entry_point(monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv(ENV_LOG_DIR, str(tmp_path / "logs"))
    assert main(["batch", str(tmp_path / "nothing-*.tif"), str(tmp_path), "--scale", "2"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("mlin batch: error: ") and "nothing-*.tif" in err[0]

    def broken(spec: str) -> list:
        raise KeyError("a bug")

    monkeypatch.setattr(cli_batch, "find_inputs", broken)
    assert main(["batch", "x", str(tmp_path), "--scale", "2"]) == EXIT_BUG
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "internal error (KeyError" in err[0] and str(tmp_path / "logs") in err[0]


def test_cluster_worker_returns_user_errors_as_block_failures(tiny_model: Path, make_raster, tmp_path: Path) -> None:
    """The cluster worker's one mapping (core/cluster.run_block): an MlinError comes back as a
    BlockFailure with its message (the driver says it once), anything else is raised to Dask."""
    from mlin_qgis.core.cluster import BlockFailure, run_block

    missing = tmp_path / "gone.tif"
    failure = run_block(None, None, str(missing), str(tmp_path), str(tiny_model), "cpu", {}, 1)  # type: ignore[arg-type]
    assert isinstance(failure, BlockFailure) and f"input raster {missing} does not exist" in failure.message
    inp = make_raster(np.rint(smooth_image(20, 20) * 255).astype(np.uint8))
    with pytest.raises(AttributeError):  # a bug (here: no plan) is not dressed up as a user error
        run_block(None, None, str(inp), str(tmp_path), str(tiny_model), "cpu", {}, 1)  # type: ignore[arg-type]
