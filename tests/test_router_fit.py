"""Fitting the router: the cost-sensitive fit learns a rule it can see, samples are deterministic
per seed, and chains are labelled by how they were made."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import smooth_image

torch = pytest.importorskip("torch")

from mlin_qgis.core.router import FEATURE_NAMES  # noqa: E402
from mlin_qgis.ml import router_fit as F  # noqa: E402
from mlin_qgis.ml.degradation import Degradation  # noqa: E402


def test_fit_learns_the_cheapest_route_where_it_matters() -> None:
    """Route 1 is 2 dB better when feature 0 > 0, route 0 is 2 dB better otherwise, and route 2 is
    never best; where the routes tie (feature 1 < -1: 'featureless') the pick costs nothing. The fit
    gets within 0.05 dB of the oracle on fresh samples and never prefers route 2."""
    rng = np.random.default_rng(0)
    n = len(FEATURE_NAMES)

    def make(m: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(m, n))
        psnr = np.zeros((m, 3))
        psnr[:, 0] = np.where(x[:, 0] > 0, 30.0, 32.0)
        psnr[:, 1] = np.where(x[:, 0] > 0, 32.0, 30.0)
        psnr[:, 2] = 29.0
        tie = x[:, 1] < -1
        psnr[tie] = 31.0
        return x, F.costs_from_psnr(psnr)

    x, costs = make(2000)
    router = F.fit(x, costs, F.RouterFitConfig(terms="linear", steps=2000), classes=("a", "b", "c"),
                   routes={"a": "model-a", "b": "model-b", "c": "model-c"})
    xt, ct = make(1000)
    assert F.mean_cost(router, xt, ct) < 0.05
    assert (router.probabilities(xt).argmax(axis=1) != 2).all()
    assert F.costs_from_psnr(np.array([[30.0, 31.5, 29.0]])).tolist() == [[1.5, 0.0, 2.5]]


def test_chains_are_labelled_by_how_they_were_made() -> None:
    cfg = F.RouterFitConfig()
    assert F.label_of(Degradation(), cfg) == "clean"
    assert F.label_of(Degradation(kernel="nearest", noise_sigma=1.0), cfg) == "sharp"
    assert F.label_of(Degradation(kernel="bicubic-aliased", noise_sigma=3.0), cfg) == "other"
    assert F.label_of(Degradation(kernel="bicubic-aliased", jpeg_quality=80), cfg) == "other"
    assert F.label_of(Degradation(kernel="bicubic", blur_sigma=(1.0, 1.0, 0.0)), cfg) == "other"
    assert F.label_of(Degradation(kernel="area"), cfg) == "other"


def test_samples_are_deterministic_per_seed(tmp_path: Path) -> None:
    from PIL import Image

    for i in range(2):
        img = (smooth_image(160, 160, seed=i).transpose(1, 2, 0) * 255).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / f"img{i}.png")
    cfg = F.RouterFitConfig(data_root=str(tmp_path), samples_per_image=2, seed=3)
    a, b = F.make_samples(cfg, progress=False), F.make_samples(cfg, progress=False)
    assert len(a) == 4
    for sa, sb in zip(a, b):
        assert sa.label == sb.label and np.array_equal(sa.lr, sb.lr) and np.array_equal(sa.features, sb.features)
        h, w = sa.out_size
        assert sa.hr_window.shape[1:] == (sa.rows[1] - sa.rows[0], sa.cols[1] - sa.cols[0]) and h <= 160 and w <= 160
    other = F.make_samples(F.RouterFitConfig(data_root=str(tmp_path), samples_per_image=2, seed=4), progress=False)
    assert any(not np.array_equal(x.lr, y.lr) for x, y in zip(a, other))
