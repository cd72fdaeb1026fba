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


def _gram(mse_a: np.ndarray, mse_b: np.ndarray) -> np.ndarray:
    """Error products of two routes with independent errors (no cross term)."""
    g = np.zeros((len(mse_a), 2, 2))
    g[:, 0, 0], g[:, 1, 1] = mse_a, mse_b
    return g


def test_blend_fit_hedges_where_the_features_cannot_tell_and_commits_where_they_can() -> None:
    """Half the samples: feature 0 > 0 and route a is 10x better (commit to a). The other half: a coin
    flip the features cannot see makes a or b 4x better. Picking loses 3 dB on a wrong flip; an even
    blend of independent errors has MSE (1 + 4) / 4 = 1.25 units, 4 dB better than the mean pick
    (hand values). The blend fit learns both and its blend beats the picking fit on fresh samples."""
    rng = np.random.default_rng(2)
    n = len(FEATURE_NAMES)

    def make(m: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(m, n))
        visible, coin = x[:, 0] > 0, rng.random(m) < 0.5
        mse_a = np.where(visible, 1e-3, np.where(coin, 1e-3, 4e-3))
        mse_b = np.where(visible, 1e-2, np.where(coin, 4e-3, 1e-3))
        return x, _gram(mse_a, mse_b)

    x, g = make(2000)
    psnr = np.stack([F.blend_psnr(np.tile(np.eye(2)[k], (len(g), 1)), g) for k in range(2)], axis=1)
    cfg = F.RouterFitConfig(steps=1000, mixing="blend")
    picking = F.fit(x, F.costs_from_psnr(psnr), cfg, classes=("a", "b"), routes={"a": "model-a", "b": "model-b"})
    blending = F.fit_blend(picking, x, g, steps=1500)
    assert blending.mixing == "blend"
    xt, gt = make(1000)
    w = F.blend_weights_of(blending, xt, 0.0)
    visible = xt[:, 0] > 0
    assert w[visible, 0].mean() > 0.9  # commits where it can see
    assert abs(w[~visible, 0].mean() - 0.5) < 0.1  # hedges where it cannot
    hard = np.eye(2)[picking.probabilities(xt).argmax(axis=1)]
    gain = F.blend_psnr(w, gt) - F.blend_psnr(hard, gt)
    assert gain[~visible].mean() > 1.5 and gain[visible].mean() > -0.2
    # the floor leaves out a route under min_weight (one model run where the router is sure)
    floored = F.blend_weights_of(blending, xt, 0.2)
    assert (floored[visible] > 0).sum(axis=1).mean() < 1.2 and np.allclose(floored.sum(axis=1), 1.0)
    assert np.isclose(F.blend_psnr(np.array([[0.5, 0.5]]), _gram(np.array([1e-3]), np.array([4e-3])))[0],
                      10 * np.log10(1 / 1.25e-3))


def test_route_gram_diagonal_is_each_routes_mse(tiny_model_factory, tmp_path: Path) -> None:
    """route_gram's diagonal is route_psnr's MSE (up to its 8-bit rounding), and two copies of one
    model have error products equal to that MSE everywhere."""
    a = tiny_model_factory(seed=3)
    b = tiny_model_factory(seed=4)
    rng = np.random.default_rng(0)
    samples = []
    for k in range(3):
        hr = smooth_image(48, 48, seed=k)
        lr = hr.reshape(3, 24, 2, 24, 2).mean(axis=(2, 4)).transpose(1, 2, 0)
        samples.append(F.Sample(lr=lr, hr_window=hr[:, 8:40, 8:40], out_size=(48, 48), rows=(8, 40), cols=(8, 40),
                                label=0, features=rng.normal(size=len(FEATURE_NAMES))))
    g = F.route_gram(samples, [str(a), str(b), str(a)], progress=False)
    for k, spec in enumerate([a, b]):
        mse = 10 ** (-F.route_psnr(samples, str(spec), progress=False) / 10)
        assert np.allclose(g[:, k, k], mse, rtol=0.02, atol=2e-6)
    assert np.allclose(g[:, 0, 2], g[:, 0, 0]) and np.allclose(g, g.transpose(0, 2, 1))
    assert not np.allclose(g[:, 0, 0], g[:, 1, 1])
