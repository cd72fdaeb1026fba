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


def test_jpeg_family_is_extra_and_leaves_the_main_samples_alone(tmp_path: Path) -> None:
    """`jpeg_every=2` adds one JPEG-compressed clean downsample of every 2nd image, class 'other',
    deterministic; the main samples are the same with or without it (their cached PSNR stays valid),
    and the PSNR cache keys of the two families differ."""
    from PIL import Image

    for i in range(3):
        img = (smooth_image(160, 160, seed=i).transpose(1, 2, 0) * 255).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / f"img{i}.png")
    plain = F.RouterFitConfig(data_root=str(tmp_path), seed=3)
    cfg = F.RouterFitConfig(data_root=str(tmp_path), seed=3, jpeg_every=2)
    assert F.make_jpeg_samples(plain) == []
    a, b = F.make_jpeg_samples(cfg), F.make_jpeg_samples(cfg)
    assert len(a) == 2 and all(s.label == F.CLASSES.index("other") for s in a)
    assert all(np.array_equal(x.lr, y.lr) for x, y in zip(a, b))
    main = F.make_samples(plain, progress=False)
    assert all(np.array_equal(x.lr, y.lr) for x, y in zip(main, F.make_samples(cfg, progress=False)))
    # the main family's cache key ignores jpeg_every
    assert F.sample_fields(cfg) == F.sample_fields(plain)


def test_expected_cost_refinement_picks_the_safe_route_the_argmax_targets_rarely_name() -> None:
    """On 80% of samples routes 0 and 1 are each the best on a coin flip the features cannot see (2 dB
    lost when wrong) and route 2 is within 0.1 dB; on 20% route 2 is the best by 1 dB. So route 2 is
    the argmax target of only a fifth: the cross-entropy fit never picks it and loses ~1 dB; refined on
    the expected cost it picks route 2 and loses ~0.1."""
    rng = np.random.default_rng(1)
    n = len(FEATURE_NAMES)

    def make(m: int) -> tuple[np.ndarray, np.ndarray]:
        coin, safe = rng.random(m) < 0.5, rng.random(m) < 0.2
        psnr = np.c_[np.where(coin, 32.0, 30.0), np.where(coin, 30.0, 32.0), np.full(m, 31.9)]
        psnr[safe] = [31.0, 31.0, 32.0]
        return rng.normal(size=(m, n)), F.costs_from_psnr(psnr)

    x, costs = make(2000)
    xt, ct = make(1000)
    kw = dict(classes=("a", "b", "c"), routes={"a": "model-a", "b": "model-b", "c": "model-c"})
    plain = F.fit(x, costs, F.RouterFitConfig(steps=1000), **kw)
    refined = F.fit(x, costs, F.RouterFitConfig(steps=1000, expected_cost_steps=3000), **kw)
    assert (plain.probabilities(xt).argmax(axis=1) != 2).all() and F.mean_cost(plain, xt, ct) > 0.8
    assert F.mean_cost(refined, xt, ct) < 0.15
