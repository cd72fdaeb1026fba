"""A weighted blend of several models, run as one engine: what ``auto`` uses when its router blends.

Where the router cannot tell from the LR alone whether a raster is a clean downsample, an aliased
sharp sensor or a JPEG product, picking one decoder bets the whole raster on that guess (a wrong
pick costs up to ~3 dB). Averaging the candidates' outputs with the router's probabilities hedges the
bet: the MSE of a blend is at most the same blend of the members' MSEs, and the router was fitted on
exactly that blend (ml/router_fit.py). The weights are fixed for the whole raster, so tiles, blocks and
cluster workers agree and the output shows no seams.

A blend is named by a spec string, ``MODEL*WEIGHT+MODEL*WEIGHT`` (e.g.
``mlin-robust-ucmerced@sharp*0.7+mlin-robust-ucmerced*0.3``), so a cluster worker rebuilds the same
engine from the spec alone; ``open_engine`` turns any spec, plain or blended, into an engine.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .card import ModelCard
from .engine import ChunkFn, SuperResolver, upscale_tiled
from .errors import MlinError

BLEND_SEP, WEIGHT_SEP = "+", "*"


def blend_spec(members: Sequence[tuple[str, float]]) -> str:
    """The spec of a blend; a single member with weight 1 is that model's own spec."""
    if len(members) == 1:
        return str(members[0][0])
    return BLEND_SEP.join(f"{spec}{WEIGHT_SEP}{weight:.4f}" for spec, weight in members)


def parse_blend(spec: str | os.PathLike | None) -> list[tuple[str, float]] | None:
    """The (model spec, weight) members of a blend spec, or None when ``spec`` names one model."""
    if spec is None or isinstance(spec, Path) or WEIGHT_SEP not in str(spec):
        return None
    # a member ends at "*WEIGHT" followed by "+" or the end, so a "+" inside a folder path stays in its name
    text = str(spec)
    found = list(re.finditer(r"([^*]+?)\*([0-9]*\.?[0-9]+)(?:\+(?=.)|$)", text))
    members = [(m.group(1), float(m.group(2))) for m in found]
    if "".join(m.group(0) for m in found) != text or any(w <= 0 for _, w in members) or \
            any(name.startswith(BLEND_SEP) for name, _ in members):
        raise MlinError(f"cannot read the blend {text!r}: each member is MODEL*WEIGHT with a weight > 0, "
                        f"members joined by '{BLEND_SEP}'.")
    total = sum(w for _, w in members)
    return [(name, w / total) for name, w in members]


@dataclass
class BlendMember:
    engine: SuperResolver
    weight: float


class BlendedResolver:
    """Several SuperResolvers whose outputs are averaged with fixed weights; the same interface as one
    (``card``, ``halo``, ``provider``, ``super_resolve_window``, ``upscale``), so the pipeline, the
    cluster and evaluation run it unchanged. Its card is the heaviest member's."""

    def __init__(self, members: Sequence[tuple[SuperResolver, float]]) -> None:
        if len(members) < 2:
            raise MlinError("a blend needs at least two models.")
        total = float(sum(w for _, w in members))
        self.members = sorted((BlendMember(e, w / total) for e, w in members), key=lambda m: -m.weight)
        lead = self.members[0].engine
        self.card: ModelCard = lead.card
        self.provider: str = lead.provider
        self.config = lead.config
        self.model_dir: Path = lead.model_dir
        self.halo: int = max(m.engine.halo for m in self.members)
        self.files: tuple[Path, ...] = tuple(f for m in self.members for f in m.engine.files)
        self.model_spec: str = blend_spec([(m.engine.model_spec, m.weight) for m in self.members])

    @property
    def has_weights(self) -> bool:
        return all(m.engine.has_weights for m in self.members)

    def super_resolve_window(self, image: np.ndarray, origin: tuple[int, int], in_size: tuple[int, int],
                             out_size: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int],
                             clip: bool = True, want_deviation: bool = False, ensemble: int = 1,
                             on_chunk: ChunkFn | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Each member's output of the window (unclipped), averaged with the blend's weights."""
        total = np.zeros((3, rows[1] - rows[0], cols[1] - cols[0]), np.float64)
        dev_total = np.zeros(total.shape[1:], np.float64) if want_deviation else None
        n = len(self.members)
        for k, member in enumerate(self.members):
            step = None if on_chunk is None else (
                lambda done, count, k=k: on_chunk(int((k + done / count) * 1000), 1000 * n))
            rgb, dev = member.engine.super_resolve_window(image, origin, in_size, out_size, rows, cols, clip=False,
                                                          want_deviation=want_deviation, ensemble=ensemble,
                                                          on_chunk=step)
            total += member.weight * rgb
            if dev_total is not None and dev is not None:
                dev_total += member.weight * dev
        out = total.astype(np.float32)
        if clip:
            np.clip(out, 0.0, 1.0, out=out)
        return out, None if dev_total is None else dev_total.astype(np.float32)

    def upscale(self, image: np.ndarray, out_size: tuple[int, int], tile_size: int | None = None,
                clip: bool = True, ensemble: int = 1) -> np.ndarray:
        """Super-resolve an in-memory image (3, h, w) with the blend (see SuperResolver.upscale)."""
        return upscale_tiled(self, image, out_size, tile_size, clip, ensemble)


Engine = Any  # SuperResolver | BlendedResolver (the same duck-typed interface)


def open_engine(spec: str | os.PathLike | None, device: str = "auto", threads: int | None = None,
                precision: str = "fp32") -> SuperResolver | BlendedResolver:
    """The engine of a model spec: one model, or a blend spec's weighted members."""
    members = parse_blend(spec)
    if members is None:
        return SuperResolver(spec, device=device, threads=threads, precision=precision)
    return BlendedResolver([(SuperResolver(name, device=device, threads=threads, precision=precision), weight)
                            for name, weight in members])
