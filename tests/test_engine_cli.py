"""`python -m mlin_qgis sr`: arguments, printed report, exit codes 0 / 2 / 130, and Ctrl-C cleanup."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from osgeo import gdal

from conftest import REPO, smooth_image
from mlin_qgis.core.cli_sr import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_OK, ProgressBar, add_arguments, run


def parse(*argv: str) -> argparse.Namespace:
    return add_arguments(argparse.ArgumentParser()).parse_args(list(argv))


def test_sr_runs_and_reports(tiny_model: Path, make_raster, tmp_path: Path, capsys) -> None:
    inp = make_raster(np.rint(smooth_image(40, 52) * 255).astype(np.uint8))
    args = parse(str(inp), str(tmp_path / "out.tif"), "--scale", "2.5", "--model", str(tiny_model),
                 "--bands", "3,2,1", "--tile-size", "16", "--device", "cpu", "--weights-map", str(tmp_path / "w.tif"))
    assert args.bands == [3, 2, 1] and args.tile_size == 16
    assert run(args) == EXIT_OK
    out, err = capsys.readouterr()
    assert "provider: CPUExecutionProvider" in out and "130 x 100 px" in out and "Mpx/s" in out
    assert "100.0%" in err
    assert gdal.Open(str(tmp_path / "out.tif")).RasterXSize == 130
    assert (tmp_path / "w.tif").is_file()


def test_sr_bad_input_exits_2(tiny_model: Path, tmp_path: Path, capsys) -> None:
    args = parse(str(tmp_path / "missing.tif"), str(tmp_path / "out.tif"), "--scale", "2", "--model", str(tiny_model))
    assert run(args) == EXIT_BAD_INPUT
    assert "does not exist" in capsys.readouterr().err
    args = parse(str(tmp_path / "missing.tif"), str(tmp_path / "out.tif"), "--scale", "x2")
    assert run(args) == EXIT_BAD_INPUT
    assert not (tmp_path / "out.tif").exists()


def test_progress_bar_plain_text() -> None:
    class Sink:
        def __init__(self) -> None:
            self.text = ""

        def write(self, s: str) -> None:
            self.text += s

        def flush(self) -> None:
            pass

    sink = Sink()
    bar = ProgressBar(sink, width=10)
    for k in range(21):
        bar(k / 20, f"tile {k}")
    lines = sink.text.splitlines()
    assert len(lines) == 11 and lines[-1].startswith("[##########] 100.0%")


def test_ctrl_c_exits_130_and_removes_partial_output(tiny_model: Path, make_raster, tmp_path: Path) -> None:
    inp = make_raster(np.rint(smooth_image(160, 160) * 255).astype(np.uint8))
    out = tmp_path / "out.tif"
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "mlin_qgis", "sr", str(inp), str(out), "--scale", "3",
                             "--model", str(tiny_model), "--tile-size", "4", "--threads", "1"],
                            cwd=str(REPO), env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()  # the estimate, then the bar's first line: tiles are about to run
        while first and "tiles" not in first:
            first = proc.stderr.readline()
        assert "tiles" in first, first
        time.sleep(0.3)
        partial = [p.name for p in tmp_path.iterdir() if "partial" in p.name]
        proc.send_signal(signal.SIGINT)
        rest_err = proc.stderr.read()
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert partial, "the run should have had a partial file when interrupted"
    assert code == EXIT_CANCELLED, rest_err
    assert "partial output was removed" in rest_err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]
