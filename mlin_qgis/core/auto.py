"""``auto``: the degradation-aware default model reading how a raster looks, once per raster.

``auto`` (or no model named) runs the installed degradation-aware model (``models/mlin-aware-ucmerced``,
core/aware.py). Its code (aliasing, blur, noise, compression) is estimated from windows spread over the
WHOLE raster before the first tile, whatever part of it is computed (an area of interest, a cluster
block, a dialog preview), so every part of a run, and every run of the same raster and options, uses
the same weights: one network, one pass, one answer. The code is logged and written into the output's
metadata (``MLIN_ROUTE``, ``MLIN_INPUT_CODE``). A model folder named directly that is degradation-aware
is read the same way; ``--input-looks`` overrides the estimate.
"""
from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from osgeo import gdal

from . import raster_io
from .aware import InputLooks, decide_looks, is_aware_dir, parse_code_spec, sample_windows
from .card import ModelCard
from .errors import MlinError
from .inputs import compute_stats
from .models import AUTO_MODEL, AWARE_MODEL, ModelEntry, decoder_file, resolve_model, spec_variant
from .normalise import BandStats, to_unit
from .raster_io import BandPlan, RasterInfo

log = logging.getLogger(__name__)

AUTO_DESCRIPTION = ("one degradation-aware model: reads how the raster looks (aliased, blurred, noisy, "
                    "compressed) once from windows spread over the whole raster and sets its weights for it; "
                    "one pass, the same answer for every tile, area of interest and preview; the code is in the "
                    "log and the output's metadata, and --input-looks overrides it")


def aware_folder(spec: str | os.PathLike | None = None) -> Path | None:
    """The degradation-aware model a spec runs: ``auto`` (or no model) -> the installed default aware
    model; a spec naming an aware folder without a code -> that folder; otherwise None."""
    if spec is None or str(spec).strip() in ("", AUTO_MODEL):
        try:
            folder = resolve_model(AWARE_MODEL)
        except MlinError:
            return None
        return folder if is_aware_dir(folder) else None
    if parse_code_spec(spec)[1] is not None:
        return None
    try:
        folder = resolve_model(spec)
    except MlinError:
        return None
    return folder if is_aware_dir(folder) and spec_variant(spec) is None else None


def auto_available() -> bool:
    """The degradation-aware default model is installed."""
    return aware_folder(AUTO_MODEL) is not None


def wants_auto(spec: str | os.PathLike | None) -> bool:
    """True for ``auto``, and for no model at all when auto is available (it is the default then)."""
    if spec is None or str(spec).strip() == "":
        return auto_available()
    if str(spec).strip() == AUTO_MODEL:
        if not auto_available():
            raise MlinError(f"model '{AUTO_MODEL}' runs the degradation-aware model {AWARE_MODEL}, which is not "
                            "installed; reinstall the plugin's models, or choose a model by name.")
        return True
    return False


def auto_entry() -> ModelEntry | None:
    """``auto`` as a model list entry (menus): the aware model's card, renamed; None when not installed."""
    folder = aware_folder(AUTO_MODEL)
    if folder is None:
        return None
    card = copy.deepcopy(ModelCard.from_onnx(folder / decoder_file(None)))
    card.name, card.description = AUTO_MODEL, AUTO_DESCRIPTION
    return ModelEntry(name=AUTO_MODEL, path=folder, card=card, spec=AUTO_MODEL)


def timing_model(spec: str | os.PathLike | None) -> str | os.PathLike | None:
    """The model whose speed stands for ``spec`` in estimates: an aware model's own pair (any mix of
    its weights runs the same graph, so costs the same); else ``spec`` itself, without a code."""
    folder = aware_folder(spec)
    if folder is not None:
        return str(folder)
    return parse_code_spec(spec)[0]


def read_samples(src: gdal.Dataset, info: RasterInfo, bands: BandPlan, stats: dict[int, BandStats],
                 side: int, count: int, strict: bool = True) -> list[np.ndarray]:
    """Up to `count` windows (H, W, 3) in model units from the first band group, spread over the whole
    raster; with ``strict``, windows with under 90 % valid pixels are left out (a nodata border looks
    like a flat, noise-free image and would mislead the estimator), else only those with none."""
    group = bands.groups[0]
    out = []
    for r, c, h, w in sample_windows((info.height, info.width), side, count):
        window = (c, r, w, h)  # GDAL order: xoff, yoff, xsize, ysize
        raw = raster_io.read_bands(src, list(group), window)
        valid = raster_io.read_valid(src, list(group), window)
        if info.dtype.is_float:
            finite = np.isfinite(raw).all(axis=0)
            valid = finite if valid is None else (valid & finite)
        if valid is not None and (valid.mean() < 0.9 if strict else not valid.any()):
            continue
        channels = [to_unit(raw[i], stats[b], valid) for i, b in enumerate(group)]
        out.append(np.stack(channels * 3 if len(channels) == 1 else channels, axis=-1))
    return out


def decide_input_looks(folder: Path, looks: str, src: gdal.Dataset, info: RasterInfo, bands: BandPlan,
                       stats: dict[int, BandStats]) -> InputLooks:
    """The code for a run of an aware model on this raster: from windows spread over the WHOLE raster
    (never the area of interest alone), so every part and every preview of it gets the same weights."""
    decision = decide_looks(folder, looks, lambda side, count, strict: read_samples(src, info, bands, stats, side,
                                                                                  count, strict))
    log.info("input looks: %s", decision.describe())
    return decision


def auto_decision(input_path: str | os.PathLike, bands: Sequence[int] | None = None, all_bands: bool = False,
                  input_looks: str = "auto") -> InputLooks:
    """How ``auto`` reads this raster (the code it will run with), without running anything else: the
    same windows, statistics and estimator as a run (scripts and the dialog report it)."""
    folder = aware_folder(AUTO_MODEL)
    if folder is None:
        raise MlinError(f"model '{AUTO_MODEL}' needs {AWARE_MODEL}; choose a model by name.")
    ds = raster_io.open_raster(input_path)
    info = raster_io.describe(ds, input_path)
    plan = raster_io.plan_bands(info, bands, all_bands)
    return decide_input_looks(folder, input_looks, ds, info, plan, compute_stats(ds, info, plan))
