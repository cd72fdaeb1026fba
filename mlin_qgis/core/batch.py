"""`batch`: super-resolve every raster of a folder (or a glob) into an output folder.

Outputs are named after their inputs (``IN/scene_07.jp2`` -> ``OUT/scene_07.tif``). An output that
already exists and was made from the same input with the same scale and model (its MLIN_* metadata
says so) is complete, because outputs only ever appear whole, so it is skipped; one made otherwise is
reported, never overwritten silently. A file that fails (unreadable, no valid pixels, ...) is reported
by name and the others are still written. Each file runs through a caller-given function: the
single-process pipeline or the cluster driver (one Dask cluster for the whole batch).
"""
from __future__ import annotations

import glob
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from osgeo import gdal

from .auto import wants_auto
from .card import ModelCard
from .errors import ConfigError, MlinCancelled, MlinError
from .models import AUTO_MODEL, decoder_file, resolve_model, spec_variant
from .request import SuperResolveRequest

log = logging.getLogger(__name__)

# What a folder's rasters are recognised by (a damaged .tif must be reported, not skipped, so files
# are chosen by name, not by whether GDAL can open them).
RASTER_SUFFIXES = frozenset({".tif", ".tiff", ".jp2", ".j2k", ".img", ".vrt", ".png", ".jpg", ".jpeg", ".ecw",
                             ".sid", ".bil", ".bip", ".bsq", ".dem", ".asc", ".nc", ".hdf", ".h5", ".kea", ".gpkg"})

DONE, SKIPPED, FAILED = "done", "skipped", "failed"


@dataclass
class BatchItem:
    input: str
    output: Path
    status: str = ""
    message: str = ""
    seconds: float = 0.0


@dataclass
class BatchResult:
    items: list[BatchItem] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for item in self.items if item.status == status)

    @property
    def failed(self) -> list[BatchItem]:
        return [item for item in self.items if item.status == FAILED]


def find_inputs(spec: str) -> list[str]:
    """The rasters of a folder (by suffix, not recursive) or of a glob pattern, sorted."""
    path = Path(spec).expanduser()
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES
                 and not p.name.startswith(".")]
    elif any(ch in spec for ch in "*?["):
        found = [Path(p) for p in glob.glob(str(path)) if Path(p).is_file()]
    elif path.is_file():
        found = [path]
    else:
        raise ConfigError(f"{spec} is neither a folder, a file nor a glob pattern that matches files; check the path.")
    if not found:
        raise ConfigError(f"no raster found in {spec} (looked for {', '.join(sorted(RASTER_SUFFIXES)[:6])}, ...); "
                          "check the folder or give a glob such as 'scenes/*.tif'.")
    return [str(p) for p in sorted(found)]


def outputs_for(inputs: Sequence[str], out_folder: Path) -> list[Path]:
    """``out_folder/<input stem>.tif`` for each input; refuses two inputs that would share an output."""
    outputs = [out_folder / (Path(p).stem + ".tif") for p in inputs]
    seen: dict[Path, str] = {}
    for src, out in zip(inputs, outputs):
        if out in seen:
            raise ConfigError(f"{seen[out]} and {src} would both be written to {out}; rename one, or run them "
                              "into separate folders.")
        seen[out] = src
    return outputs


def existing_output(output: Path, source: str, scale: float, model: str) -> str | None:
    """None when ``output`` does not exist; "" when it is complete for this input, scale and model
    (``auto``: made by auto, whichever model it picked); otherwise what differs, in words."""
    if not output.exists():
        return None
    ds = gdal.OpenEx(str(output), gdal.OF_RASTER | gdal.OF_READONLY)
    if ds is None:
        return "it is not a readable raster"
    md = ds.GetMetadata() or {}
    want = {"MLIN_SOURCE": Path(source).name, "MLIN_SCALE": f"{scale:g}"}
    want["MLIN_MODEL_ASKED" if model == AUTO_MODEL else "MLIN_MODEL"] = model
    diffs = [f"{key.split('_', 1)[1].lower()} {md.get(key, 'unknown')} instead of {value}"
             for key, value in want.items() if md.get(key) != value]
    return "; ".join(diffs)


def run_batch(inputs: Sequence[str], out_folder: Path, make_request: Callable[[str, Path], SuperResolveRequest],
              run_one: Callable[[SuperResolveRequest], Any], say: Callable[[str], None],
              overwrite: bool = False) -> BatchResult:
    """Run every input through ``run_one``; a failure is recorded and the next file goes on.

    MlinCancelled (Ctrl-C, cancel) stops the batch and propagates, after the files already done."""
    if not out_folder.is_dir():
        raise ConfigError(f"the output folder {out_folder} does not exist; create it first.")
    outputs = outputs_for(inputs, out_folder)
    result = BatchResult()
    model_name: str | None = None
    for k, (src, out) in enumerate(zip(inputs, outputs)):
        item = BatchItem(src, out)
        result.items.append(item)
        request = make_request(src, out)
        start = time.perf_counter()
        try:
            if model_name is None:
                if wants_auto(request.model):
                    model_name = AUTO_MODEL
                else:
                    card = ModelCard.from_onnx(resolve_model(request.model) / decoder_file(spec_variant(request.model)))
                    model_name = f"{card.name} {card.version}"
            state = existing_output(out, src, float(request.scale), model_name)
            if state == "" and not overwrite:
                item.status, item.message = SKIPPED, "already complete"
                say(f"[{k + 1}/{len(inputs)}] {Path(src).name}: skipped, {out} is already complete")
                continue
            if state and not overwrite:
                raise MlinError(f"{out} exists but was made otherwise ({state}); remove it, write to another "
                                "folder, or add --restart to overwrite it.")
            say(f"[{k + 1}/{len(inputs)}] {Path(src).name} -> {out}")
            run_one(request)
            item.status = DONE
        except MlinCancelled:
            item.status, item.message = FAILED, "cancelled"
            raise
        except MlinError as exc:
            item.status, item.message = FAILED, str(exc)
            say(f"[{k + 1}/{len(inputs)}] {Path(src).name}: FAILED: {exc}")
        finally:
            item.seconds = time.perf_counter() - start
    return result
