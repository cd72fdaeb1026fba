"""LIIF's training sampler, with the frozen encoder's features cached in a crop bank.

Each crop follows LIIF's protocol: scale s ~ U(min, max) (or a discrete list), an HR crop of
round(48·s) px, random flips/transpose, THE bicubic resize to 48x48 (8-bit quantised), and random
query pixels of the HR crop as targets. Because the encoder is frozen, its output for a crop never
changes: we encode each crop once and keep (features, HR crop) in a bank that is refreshed a few
crops per iteration. That removes the encoder (most of LIIF's training cost) from the loop while
the data still keeps changing. Crop k is generated from RNG seeded with (seed, k), so a resumed run
rebuilds exactly the same bank."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..core.errors import DataError
from .degradation import Degradation, DegradationConfig, draw
from .images import list_images, load_image
from .resize import resize_bicubic


@dataclass
class SamplerConfig:
    lr_size: int = 48
    scale_min: float = 1.0
    scale_max: float = 4.0
    scale_list: Optional[List[float]] = None  # e.g. [2, 2.5, 3, 3.5, 4] instead of U(min, max)
    sample_q: int = 2304
    augment: bool = True


def _scale(rng: np.random.Generator, cfg: SamplerConfig) -> float:
    if cfg.scale_list:
        return float(rng.choice(cfg.scale_list))
    return float(rng.uniform(cfg.scale_min, cfg.scale_max))


class CropSource:
    """Deterministic LIIF crops from a list of images (images read once, kept as uint8)."""

    def __init__(self, paths: Sequence[Path], cfg: SamplerConfig, seed: int,
                 degradation: Optional[DegradationConfig] = None) -> None:
        if not paths:
            raise DataError("no training images: check the data folder and split")
        self.paths = list(paths)
        self.cfg = cfg
        self.seed = seed
        self.degradation = degradation if degradation is not None and degradation.enabled else None
        self._cache: Dict[int, np.ndarray] = {}

    def image(self, i: int) -> np.ndarray:
        if i not in self._cache:
            self._cache[i] = load_image(self.paths[i])
        return self._cache[i]

    def crop(self, crop_id: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(LR float (3, 48, 48), HR uint8 (3, S, S)) for crop number `crop_id`."""
        lr, hr, _, _ = self.crop_with_chain(crop_id)
        return lr, hr

    def crop_with_chain(self, crop_id: int) -> Tuple[torch.Tensor, torch.Tensor, Degradation, float]:
        """`crop` plus the degradation chain that made its LR and its scale (HR px per LR px)."""
        rng = np.random.default_rng([self.seed, crop_id])
        img = self.image(int(rng.integers(len(self.paths))))
        s = _scale(rng, self.cfg)
        size = min(round(self.cfg.lr_size * s), img.shape[0], img.shape[1])
        y = int(rng.integers(img.shape[0] - size + 1))
        x = int(rng.integers(img.shape[1] - size + 1))
        hr = img[y : y + size, x : x + size].transpose(2, 0, 1)
        if self.cfg.augment:
            if rng.random() < 0.5:
                hr = hr[:, :, ::-1]
            if rng.random() < 0.5:
                hr = hr[:, ::-1, :]
            if rng.random() < 0.5:
                hr = hr.transpose(0, 2, 1)
        hr_t = torch.from_numpy(np.ascontiguousarray(hr))
        hr_f = hr_t.float().div(255).unsqueeze(0)
        lr_size = (self.cfg.lr_size, self.cfg.lr_size)
        scale = size / self.cfg.lr_size
        if self.degradation is None:
            chain = Degradation()
            lr = resize_bicubic(hr_f, lr_size)[0]
        else:  # drawn after the crop's own choices, so the crops are those of a clean run
            chain = draw(rng, scale, self.degradation)
            lr = chain.apply(hr_f, lr_size)[0]
        return lr, hr_t, chain, scale


@dataclass
class Batch:
    feat: torch.Tensor  # (B, C, 48, 48) frozen-encoder features
    coord: torch.Tensor  # (B, Q, 2) LR pixel units
    cell: torch.Tensor  # (B, Q, 2) LR pixel units
    target: torch.Tensor  # (B, Q, 3) in [0, 1]


@dataclass
class FeatureBank:
    """A ring of encoded crops; slot = crop_id % size."""

    source: CropSource
    encode: Callable[[torch.Tensor], torch.Tensor]  # (B,3,h,w) in [0,1] -> features
    size: int
    feats: List[Optional[torch.Tensor]] = field(default_factory=list)
    hrs: List[Optional[torch.Tensor]] = field(default_factory=list)
    next_id: int = 0

    def fill(self, upto: int, chunk: int = 16) -> None:
        """Make the bank hold crops [upto - size, upto) (the state after `upto` crops were made)."""
        self.feats = [None] * self.size
        self.hrs = [None] * self.size
        ids = list(range(max(0, upto - self.size), upto))
        for start in range(0, len(ids), chunk):
            self._add(ids[start : start + chunk])
        self.next_id = upto

    def refresh(self, count: int) -> None:
        if count > 0:
            self._add(list(range(self.next_id, self.next_id + count)))
            self.next_id += count

    def _add(self, ids: List[int]) -> None:
        crops = [self.source.crop(i) for i in ids]
        with torch.no_grad():
            feats = self.encode(torch.stack([lr for lr, _ in crops]))
        for i, f, (_, hr) in zip(ids, feats, crops):
            self.feats[i % self.size] = f.to(torch.float16)
            self.hrs[i % self.size] = hr

    def batch(self, rng: np.random.Generator, batch_size: int, sample_q: int, lr_size: int) -> Batch:
        slots = rng.choice(self.size, size=batch_size, replace=batch_size > self.size)
        coord, cell, target = sample_queries([self.hrs[s] for s in slots], rng, sample_q, lr_size)
        feat = torch.stack([self.feats[s].float() for s in slots])
        return Batch(feat, coord, cell, target)


def sample_queries(hrs: Sequence[torch.Tensor], rng: np.random.Generator, sample_q: int,
                   lr_size: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random HR pixels of each square crop as (coord, cell) in LR pixel units and RGB targets."""
    coords, cells, targets = [], [], []
    for hr in hrs:
        s = hr.shape[-1]
        pick = torch.from_numpy(rng.choice(s * s, size=sample_q, replace=sample_q > s * s))
        r, c = pick // s, pick % s
        ratio = lr_size / s
        coords.append(torch.stack(((r + 0.5) * ratio - 0.5, (c + 0.5) * ratio - 0.5), -1).float())
        cells.append(torch.full((sample_q, 2), ratio))
        targets.append(hr[:, r, c].t().float().div(255))
    return torch.stack(coords), torch.stack(cells), torch.stack(targets)


def training_images(root: str | Path, split: Optional[str], split_file: Optional[str | Path]) -> List[Path]:
    return list_images(root, split=split, split_file=split_file)
