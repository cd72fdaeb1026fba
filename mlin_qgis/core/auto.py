"""Resolve the ``auto`` model for one raster: read a few windows, ask the router, name a model or
a blend of models (a blending router, core/blend.py).

One decision per raster (the mean of the windows' log-probabilities), made before the first tile, so
every tile, block and cluster worker uses the same model or the same weights and the output shows no
seams between decoders. The choice is logged and written into the output's metadata (``MLIN_ROUTE``).
"""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal

from . import raster_io
from .blend import blend_spec
from .card import ModelCard
from .errors import MlinError
from .models import AUTO_MODEL, ModelEntry, decoder_file, model_roots, resolve_model, spec_variant
from .normalise import BandStats, to_unit
from .raster_io import BandPlan, RasterInfo
from .router import ROUTER_FILE, Router, sample_windows

log = logging.getLogger(__name__)

AUTO_DESCRIPTION = ("judges from how the raster looks (clean downsample, aliased sharp sensor, or "
                    "blurred/JPEG/noisy) which installed models suit it, and runs the best one, or blends the "
                    "likely ones with the router's weights when it cannot tell (each extra model adds one pass); "
                    "says which in the log and the output's metadata; the best choice when you do not know how "
                    "your raster was made")

_cache: dict[tuple[str, int], Router] = {}


@dataclass(frozen=True)
class RouteDecision:
    """What ``auto`` picked for a raster, and why."""

    model: str  # the concrete model spec, e.g. "mlin-robust-ucmerced@sharp"
    label: str  # the router's class ("clean", "sharp", "other")
    probabilities: tuple[tuple[str, float], ...]
    reason: str
    # the models blended and their weights, heaviest (``model``) first; () when one model is run
    blend: tuple[tuple[str, float], ...] = ()

    @property
    def engine_spec(self) -> str:
        """What to run: ``model``, or the blend's spec (core/blend.py) when several models are averaged."""
        return blend_spec(self.blend) if len(self.blend) > 1 else self.model

    def describe(self) -> str:
        probs = ", ".join(f"{k} {v:.2f}" for k, v in self.probabilities)
        if len(self.blend) > 1:
            mix = " + ".join(f"{w:.2f} x {spec}" for spec, w in self.blend)
            return f"auto -> blend of {mix} (mostly: {self.reason}; p: {probs})"
        return f"auto -> {self.model} ({self.reason}; p: {probs})"


def auto_entry() -> ModelEntry | None:
    """``auto`` as a model list entry (menus): the general route's card, renamed, with the lowest
    scale limits of all routes; None when auto is not available."""
    if not auto_available():
        return None
    router = load_router()
    assert router is not None
    cards = {spec: ModelCard.from_onnx(resolve_model(spec) / decoder_file(spec_variant(spec)))
             for spec in router.routes.values()}
    card = copy.deepcopy(cards[router.routes[router.classes[-1]]])
    card.name, card.description = AUTO_MODEL, AUTO_DESCRIPTION
    card.recommended_max_scale = min(c.recommended_max_scale for c in cards.values())
    card.hard_max_scale = min(c.hard_max_scale for c in cards.values())
    path = router_file()
    assert path is not None
    return ModelEntry(name=AUTO_MODEL, path=path.parent, card=card, spec=AUTO_MODEL)


def router_file() -> Path | None:
    """The first ``router.json`` in the model roots (the same search order as the models)."""
    for root in model_roots():
        if (root / ROUTER_FILE).is_file():
            return root / ROUTER_FILE
    return None


def load_router() -> Router | None:
    path = router_file()
    if path is None:
        return None
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _cache:
        _cache[key] = Router.load(path)
    return _cache[key]


def auto_available() -> bool:
    """A router is installed and every model it routes to is installed too."""
    try:
        router = load_router()
        if router is None:
            return False
        for spec in router.routes.values():
            resolve_model(spec)
    except MlinError:
        return False
    return True


def wants_auto(spec: str | os.PathLike | None) -> bool:
    """True for ``auto``, and for no model at all when auto is available (it is the default then)."""
    if spec is None or str(spec).strip() == "":
        return auto_available()
    if str(spec).strip() == AUTO_MODEL:
        if not auto_available():
            where = router_file()
            raise MlinError(f"model '{AUTO_MODEL}' needs the router (models/{ROUTER_FILE}) and every model it "
                            f"names; {'the router was not found' if where is None else 'a model it names is missing'}. "
                            f"Reinstall the plugin's models, or choose a model by name.")
        return True
    return False


def auto_members(spec: str | os.PathLike | None) -> int:
    """How many models a run of ``spec`` may decode with: for ``auto`` with a blending router, every
    route (an upper bound: a raster the router is sure about runs one); else 1."""
    if wants_auto(spec):
        router = load_router()
        if router is not None and router.mixing == "blend":
            return len(router.classes)
    return 1


def timing_model(spec: str | os.PathLike | None) -> str | os.PathLike | None:
    """The model whose speed stands for ``spec`` in estimates: for ``auto`` its general route (every
    route has the same architecture, so the same cost); else ``spec`` itself."""
    if wants_auto(spec):
        router = load_router()
        assert router is not None
        return router.routes[router.classes[-1]]
    return spec


def read_samples(src: gdal.Dataset, info: RasterInfo, bands: BandPlan, stats: dict[int, BandStats],
                 lr_window: tuple[int, int, int, int] | None, side: int = 256, count: int = 9) -> list[np.ndarray]:
    """Up to `count` windows (H, W, 3) in model units from the first band group, inside the area of
    interest; windows with under 90 % valid pixels are left out (a nodata border looks like a flat,
    noise-free image and would mislead the router)."""
    r0, r1, c0, c1 = lr_window if lr_window is not None else (0, info.height, 0, info.width)
    group = bands.groups[0]
    out = []
    for r, c, h, w in sample_windows((r1 - r0, c1 - c0), side, count):
        window = (c0 + c, r0 + r, w, h)  # GDAL order: xoff, yoff, xsize, ysize
        raw = raster_io.read_bands(src, list(group), window)
        valid = raster_io.read_valid(src, list(group), window)
        if info.dtype.is_float:
            finite = np.isfinite(raw).all(axis=0)
            valid = finite if valid is None else (valid & finite)
        if valid is not None and valid.mean() < 0.9:
            continue
        channels = [to_unit(raw[i], stats[b], valid) for i, b in enumerate(group)]
        out.append(np.stack(channels * 3 if len(channels) == 1 else channels, axis=-1))
    return out


def choose_model(src: gdal.Dataset, info: RasterInfo, bands: BandPlan, stats: dict[int, BandStats],
                 lr_window: tuple[int, int, int, int] | None) -> RouteDecision:
    """The model ``auto`` uses for this raster (raises MlinError when no router is installed)."""
    router = load_router()
    if router is None:
        raise MlinError(f"model '{AUTO_MODEL}' needs the router (models/{ROUTER_FILE}); choose a model by name.")
    samples = read_samples(src, info, bands, stats, lr_window)
    if not samples:
        raise MlinError(f"model '{AUTO_MODEL}' found no window of the raster with at least 90 % valid pixels to "
                        f"judge it by; choose a model by name (e.g. --model {router.routes[router.classes[-1]]}).")
    decision = _decide(router, samples)
    log.info("%s", decision.describe())
    return decision


def classify_image(image: np.ndarray) -> RouteDecision:
    """The decision for one in-memory image (H, W, 3) in model units (evaluation; the dialog's preview)."""
    router = load_router()
    if router is None:
        raise MlinError(f"model '{AUTO_MODEL}' needs the router (models/{ROUTER_FILE}); choose a model by name.")
    return _decide(router, [image])


def _decide(router: Router, images: list[np.ndarray]) -> RouteDecision:
    label, p = router.classify_windows(images)
    # weights as the blend's spec writes them (4 decimals), so a run, a cluster worker and evaluation agree
    blend = tuple((router.routes[c], round(w, 4)) for c, w in router.blend_weights(p))
    return RouteDecision(model=router.routes[label], label=label,
                         probabilities=tuple((c, float(v)) for c, v in zip(router.classes, p)),
                         reason=router.descriptions.get(label, label), blend=blend if len(blend) > 1 else ())
