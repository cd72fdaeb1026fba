"""The Dask cluster path (sr --cluster, batch): real Dask, a LocalCluster of 2 worker processes x 1
thread, real GDAL files and real onnxruntime (the tiny model, so the suite stays fast; one test runs the
shipped default model)."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from conftest import REPO, smooth_image, write_geotiff

distributed = pytest.importorskip("distributed", reason="dask[distributed] is in requirements-dev.txt")

from mlin_qgis.core.blocks import MANIFEST, Manifest, parts_folder, plan_blocks  # noqa: E402
from mlin_qgis.core.cluster import ClusterConfig, ClusterSession, superresolve_on_cluster  # noqa: E402
from mlin_qgis.core.errors import ConfigError, MlinCancelled, MlinError, RasterError  # noqa: E402
from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve  # noqa: E402
from mlin_qgis.core.tiling import plan_tiles  # noqa: E402

TILE, BLOCK = 24, 96  # 160 x 120 px at x2: 7 x 5 tiles in 4 x 3 = 12 blocks


@pytest.fixture(scope="module")
def cluster():
    """A running LocalCluster (2 processes x 1 thread) the tests reach through its address."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as lc:
        yield lc


def session_for(cluster, **kwargs) -> ClusterSession:
    return ClusterSession(ClusterConfig(address=cluster.scheduler_address, block_px=kwargs.pop("block_px", BLOCK),
                                        **kwargs))


def rgb_raster(path: Path, h: int = 120, w: int = 160, seed: int = 0, **kwargs) -> Path:
    return write_geotiff(path, np.rint(smooth_image(h, w, seed=seed) * 255).astype(np.uint8), **kwargs)


def request(inp: Path, out: Path, model: Path, scale: float = 2.0, **kwargs) -> SuperResolveRequest:
    return SuperResolveRequest(inp, out, scale, model=model, tile_size=kwargs.pop("tile_size", TILE), threads=1,
                               **kwargs)


def read(path: Path) -> tuple[np.ndarray, gdal.Dataset]:
    ds = gdal.Open(str(path))
    return ds.ReadAsArray().astype(np.int64), ds


def assert_same_raster(a: Path, b: Path) -> None:
    """Pixels within 1 DN, identical georeferencing, metadata, nodata and mask."""
    va, da = read(a)
    vb, db = read(b)
    assert va.shape == vb.shape
    assert np.abs(va - vb).max() <= 1
    assert da.GetGeoTransform() == db.GetGeoTransform()
    assert da.GetProjection() == db.GetProjection()
    assert da.GetMetadata() == db.GetMetadata()
    for i in range(1, da.RasterCount + 1):
        ba, bb = da.GetRasterBand(i), db.GetRasterBand(i)
        assert ba.GetNoDataValue() == bb.GetNoDataValue()
        assert ba.GetColorInterpretation() == bb.GetColorInterpretation()
        assert ba.GetMaskFlags() == bb.GetMaskFlags()
        assert np.array_equal(ba.GetMaskBand().ReadAsArray(), bb.GetMaskBand().ReadAsArray())


def cancel_after(parts: int, total_hint: int):
    """(progress, is_cancelled) that ask for a cancel once ``parts`` blocks are recorded."""
    state = {"done": 0.0}

    def progress(fraction: float, message: str) -> None:
        state["done"] = fraction

    return progress, (lambda: state["done"] * total_hint >= parts - 1e-9)


def test_blocks_cover_every_tile_once() -> None:
    tiles = plan_tiles((120, 160), (240, 320), TILE, 5)
    blocks = plan_blocks(tiles, BLOCK)
    assert sorted(t.index for b in blocks for t in b.tiles) == [t.index for t in tiles]
    covered = np.zeros((240, 320), int)
    for b in blocks:
        assert b.shape[0] <= BLOCK + 1 and b.shape[1] <= BLOCK + 1  # whole tiles: a pixel of rounding
        covered[b.rows[0]:b.rows[1], b.cols[0]:b.cols[1]] += 1
    assert (covered == 1).all() and len(blocks) == 12


@pytest.mark.parametrize("nodata", [None, 0])
def test_cluster_output_equals_single_process(cluster, tiny_model: Path, tmp_path: Path, nodata) -> None:
    data = np.rint(smooth_image(120, 160) * 254 + 1).astype(np.uint8)
    if nodata is not None:
        data[:, 30:70, 40:90] = 0  # a nodata hole crossing block borders
    inp = write_geotiff(tmp_path / "in.tif", data, nodata=nodata)
    single = superresolve(request(inp, tmp_path / "single.tif", tiny_model, tile_size=None))  # its own tile plan
    with session_for(cluster) as session:
        result = superresolve_on_cluster(request(inp, tmp_path / "cluster.tif", tiny_model), session)
    assert result.blocks == 12 and result.computed == 12 and result.reused == 0
    assert_same_raster(single.output_path, result.output_path)
    assert not parts_folder(result.output_path).exists(), "parts are removed once the output is assembled"


def test_cluster_with_shipped_default_model_equals_single_process(cluster, tmp_path: Path) -> None:
    inp = rgb_raster(tmp_path / "in.tif", 64, 80)
    single = superresolve(SuperResolveRequest(inp, tmp_path / "single.tif", 2.5, threads=1))
    with session_for(cluster, block_px=64) as session:
        result = superresolve_on_cluster(SuperResolveRequest(inp, tmp_path / "cluster.tif", 2.5, tile_size=24), session)
    assert result.blocks > 1
    assert_same_raster(single.output_path, result.output_path)
    # no model named: `auto` reads the raster's code on the driver, once; the workers run that code's weights
    assert result.route == single.route and result.model == single.model
    from mlin_qgis.core.auto import auto_available

    assert bool(result.route) == auto_available()


def test_resume_recomputes_only_the_missing_blocks(cluster, tiny_model: Path, tmp_path: Path) -> None:
    inp = rgb_raster(tmp_path / "in.tif")
    out = tmp_path / "out.tif"
    progress, cancelled = cancel_after(3, 12)
    slow = dict(tile_size=4)  # the same 12 blocks, each of many small tiles: slow enough to interrupt
    with session_for(cluster) as session, pytest.raises(MlinCancelled, match="rerun the same command to resume"):
        superresolve_on_cluster(request(inp, out, tiny_model, **slow), session, progress=progress,
                                is_cancelled=cancelled)
    assert not out.exists()
    manifest = Manifest.load(parts_folder(out))
    kept = set(manifest.parts)
    assert 3 <= len(kept) < 12
    assert all((parts_folder(out) / manifest.parts[i].file).exists() for i in kept)

    said: list[str] = []
    with session_for(cluster) as session, distributed.get_task_stream(session.client) as stream:
        result = superresolve_on_cluster(request(inp, out, tiny_model, **slow), session, say=said.append)
    ran = {int(t["key"].rsplit("-", 2)[-2]) for t in stream.data if str(t["key"]).startswith("mlin-block")}
    assert result.reused == len(kept) and result.computed == 12 - len(kept)
    assert ran == set(range(12)) - kept, "exactly the missing blocks were computed"
    assert any(f"{len(kept)} reused" in line for line in said)
    single = superresolve(request(inp, tmp_path / "single.tif", tiny_model))
    assert_same_raster(single.output_path, out)


def test_resume_with_other_options_is_refused_naming_the_difference(cluster, tiny_model: Path, tmp_path: Path) -> None:
    inp = rgb_raster(tmp_path / "in.tif")
    out = tmp_path / "out.tif"
    progress, cancelled = cancel_after(1, 12)
    with session_for(cluster) as session, pytest.raises(MlinCancelled):
        superresolve_on_cluster(request(inp, out, tiny_model), session, progress=progress, is_cancelled=cancelled)
    with session_for(cluster) as session, pytest.raises(MlinError) as err:
        superresolve_on_cluster(request(inp, out, tiny_model, scale=2.5), session)
    assert "scale (--scale): 2.0 in the parts, 2.5 now" in str(err.value) and "--restart" in str(err.value)
    assert Manifest.load(parts_folder(out)).parts, "a refused resume keeps the earlier parts"
    with session_for(cluster, restart=True) as session:
        result = superresolve_on_cluster(request(inp, out, tiny_model, scale=2.5), session)
    assert result.reused == 0 and result.width == 400


def test_worker_killed_mid_run_is_replaced_and_output_unchanged(tiny_model: Path, tmp_path: Path) -> None:
    inp = rgb_raster(tmp_path / "in.tif", 160, 200)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as lc, session_for(lc, block_px=64) as session:
        before = session.client.run(os.getpid)
        killed: list[int] = []

        def progress(fraction: float, message: str) -> None:
            if fraction > 0 and not killed:  # a first block is in; others are running: kill one worker
                pid = next(iter(before.values()))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        result = superresolve_on_cluster(request(inp, tmp_path / "cluster.tif", tiny_model, tile_size=16), session,
                                         progress=progress)
        # the nanny restarts the killed worker asynchronously; the run may finish before it is back
        session.client.wait_for_workers(2, timeout=60)
        after = session.client.run(os.getpid)
    assert killed and killed[0] not in after.values(), "the killed worker was replaced by a new process"
    assert len(after) == 2
    single = superresolve(request(inp, tmp_path / "single.tif", tiny_model))
    assert_same_raster(single.output_path, result.output_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_scheduler_address_fails_clearly_within_seconds(tiny_model: Path, tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=f"cannot reach the Dask scheduler at {address}"):
        with ClusterSession(ClusterConfig(address=address, connect_timeout_s=2)):
            pass
    assert time.perf_counter() - start < 15
    with pytest.raises(ConfigError, match="not a scheduler address"):
        ClusterSession(ClusterConfig(address="10.0.0.5")).__enter__()
    with pytest.raises(ConfigError, match="local:N with N >= 1"):
        ClusterSession(ClusterConfig(address="local:zero")).__enter__()
    with pytest.raises(ConfigError, match="QGIS"):
        ClusterSession(ClusterConfig(address="local:2", allow_local=False)).__enter__()


def _corrupt_one_block(path: Path, xblock: int) -> None:
    """Overwrite one compressed TIFF block of band data with garbage (the overviews stay intact)."""
    ds = gdal.Open(str(path))
    offset = int(ds.GetRasterBand(1).GetMetadataItem(f"BLOCK_OFFSET_{xblock}_0", "TIFF"))
    size = int(ds.GetRasterBand(1).GetMetadataItem(f"BLOCK_SIZE_{xblock}_0", "TIFF"))
    ds = None
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * size)


def _damaged_raster(path: Path) -> Path:
    """2200 px wide: the statistics read is decimated and served by the overview, so only the block
    that reads the damaged full-resolution window (x 2048-2199, the last block's input) fails."""
    inp = rgb_raster(path, 8, 2200, options=["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=16",
                                             "COMPRESS=DEFLATE", "INTERLEAVE=BAND"])
    ds = gdal.Open(str(inp), gdal.GA_Update)
    ds.BuildOverviews("AVERAGE", [2, 4])
    ds = None
    _corrupt_one_block(inp, 8)
    return inp


def test_unreadable_window_fails_the_run_naming_it_and_keeps_finished_parts(cluster, tiny_model: Path,
                                                                            tmp_path: Path) -> None:
    inp = _damaged_raster(tmp_path / "in.tif")
    out = tmp_path / "out.tif"
    with session_for(cluster, block_px=512) as session, pytest.raises(MlinError) as err:
        superresolve_on_cluster(request(inp, out, tiny_model, tile_size=256), session)
    # the worker's error class comes back as such (compute_block's RasterError), not a generic one
    assert type(err.value) is RasterError
    message = str(err.value)
    named = re.search(r"input window x (\d+)-(\d+)", message)
    assert named and int(named.group(2)) >= 2048, f"the failing window reads the damaged pixels: {message}"
    assert "finished block(s) are kept" in message and "in.tif" in message
    assert not out.exists()
    manifest = Manifest.load(parts_folder(out))
    damaged = {b.index for b in plan_blocks(plan_tiles((8, 2200), (16, 4400), 256, 5), 512)
               if b.read_window[0] + b.read_window[2] > 2048}
    assert manifest.parts and not set(manifest.parts) & damaged, "the finished healthy blocks are kept"


def _run_cli(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "mlin_qgis", *argv], cwd=str(REPO), env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_a_block_failing_on_bad_input_is_one_clear_line_at_the_client(cluster, tiny_model: Path,
                                                                      tmp_path: Path) -> None:
    """`sr --cluster`: a worker's failure (one block reads a damaged window) ends the command with one
    error line naming that block, exit code 2, no traceback; the finished parts are kept."""
    inp = _damaged_raster(tmp_path / "in.tif")
    out = tmp_path / "out.tif"
    run = _run_cli("sr", str(inp), str(out), "--scale", "2", "--model", str(tiny_model), "--threads", "1",
                   "--cluster", cluster.scheduler_address, "--block-size", "512", "--tile-size", "256")
    assert run.returncode == 2, run.stderr
    errors = [line for line in run.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("mlin sr: error: block "), run.stderr
    assert "input window x" in errors[0] and "finished block(s) are kept" in errors[0]
    assert "Traceback" not in run.stderr and not out.exists()


def test_client_error_keeps_the_worker_class_and_names_other_failures_in_one_line(tmp_path: Path) -> None:
    from mlin_qgis.core.cluster_worker import BlockFailure, client_error

    block = plan_blocks(plan_tiles((120, 160), (240, 320), TILE, 5), BLOCK)[3]
    kept = client_error(block, BlockFailure("block 3 of in.tif failed: unreadable.", RasterError), 2, tmp_path)
    assert type(kept) is RasterError and str(kept).startswith("block 3 of in.tif failed: unreadable.")
    assert f"2 finished block(s) are kept in {tmp_path}" in str(kept)
    other = client_error(block, RuntimeError("worker died\nwhile\n  computing"), 0, tmp_path)
    assert type(other) is MlinError and "\n" not in str(other)
    assert str(other).startswith(f"{block.describe()} failed on the cluster (RuntimeError: worker died while computing)")


def test_batch_over_a_folder_with_one_broken_file(cluster, tiny_model: Path, tmp_path: Path) -> None:
    folder, out = tmp_path / "scenes", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    rgb_raster(folder / "a.tif", 60, 70, seed=1)
    rgb_raster(folder / "b.tif", 50, 40, seed=2)
    (folder / "broken.tif").write_bytes(b"not a tiff")
    (folder / "notes.txt").write_text("not a raster: ignored")
    args = ["batch", str(folder), str(out), "--scale", "2", "--model", str(tiny_model), "--threads", "1",
            "--cluster", cluster.scheduler_address, "--block-size", "64", "--tile-size", "16"]
    first = _run_cli(*args)
    assert first.returncode == 2, first.stderr
    assert "broken.tif" in first.stderr and "failed" in first.stderr
    assert "2 written, 0 skipped (already complete), 1 failed" in first.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "b.tif"]
    for name in ("a", "b"):
        single = superresolve(request(folder / f"{name}.tif", tmp_path / f"{name}_single.tif", tiny_model))
        assert_same_raster(single.output_path, out / f"{name}.tif")
    again = _run_cli(*args)
    assert again.returncode == 2 and "0 written, 2 skipped (already complete), 1 failed" in again.stderr


def test_ctrl_c_keeps_finished_parts_no_final_file_then_resumes(tiny_model: Path, tmp_path: Path) -> None:
    inp = rgb_raster(tmp_path / "in.tif", 200, 240)
    out = tmp_path / "out.tif"
    argv = [sys.executable, "-m", "mlin_qgis", "sr", str(inp), str(out), "--scale", "3", "--model", str(tiny_model),
            "--cluster", "local:2", "--block-size", "64", "--tile-size", "8"]
    proc = subprocess.Popen(argv, cwd=str(REPO), env=dict(os.environ, PYTHONUNBUFFERED="1"), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    manifest = parts_folder(out) / MANIFEST
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if manifest.exists() and json.loads(manifest.read_text())["parts"]:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "rerun the same command to resume" in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]
    kept = Manifest.load(parts_folder(out))
    assert kept is not None and 0 < len(kept.parts) < kept.blocks_total
    resumed = subprocess.run(argv, cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(kept.parts)} reused" in resumed.stderr and out.exists()
    single = superresolve(request(inp, tmp_path / "single.tif", tiny_model, scale=3))
    assert_same_raster(single.output_path, out)


def test_scheduler_without_workers_or_with_other_versions_is_refused(cluster, monkeypatch) -> None:
    with distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=":0", silence_logs=40) as empty:
        start = time.perf_counter()
        with pytest.raises(ConfigError, match="has no workers"):
            ClusterSession(ClusterConfig(address=empty.scheduler_address, connect_timeout_s=1)).__enter__()
        assert time.perf_counter() - start < 15
    from mlin_qgis.core import version

    monkeypatch.setattr(version, "__version__", "0.0.0-other")  # this driver now differs from the workers
    with pytest.raises(ConfigError, match=r"2 worker\(s\) run another mlin-qgis than this 0.0.0-other"):
        session_for(cluster).__enter__()


def test_automatic_block_size_spreads_a_small_raster_and_a_resume_keeps_its_layout(cluster, tiny_model: Path,
                                                                                     tmp_path: Path) -> None:
    from types import SimpleNamespace

    from mlin_qgis.core.cluster import _automatic_block_px

    inp = rgb_raster(tmp_path / "in.tif", 200, 260)
    with session_for(cluster, block_px=None) as session:
        result = superresolve_on_cluster(request(inp, tmp_path / "out.tif", tiny_model), session)
    # 400 x 520 px out: 2048, 1024 and 512 px give one block; 256 px gives 2 x 3 >= 2 per worker thread
    assert (result.block_px, result.blocks) == (256, 6)
    tiles = SimpleNamespace(tiles=plan_tiles((200, 260), (400, 520), TILE, 5))
    folder = tmp_path / "earlier.parts"
    folder.mkdir()
    Manifest(folder, {"block_size": 512}, 1).save()
    assert _automatic_block_px(tiles, folder, False, 2) == 512, "a resume keeps the parts' block size"
    assert _automatic_block_px(tiles, folder, True, 2) == 256, "--restart plans afresh"
