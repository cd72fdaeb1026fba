"""Blending models (what `auto` does when its router blends): the blend is exactly the weighted mean
of its members' outputs, tiled or whole, on one process or a cluster worker; the router says which
models it blends and with what weights; a blend spec names the same engine everywhere."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from conftest import build_tiny_model, smooth_image, write_geotiff
from mlin_qgis.core import router as R
from mlin_qgis.core.blend import BlendedResolver, blend_spec, open_engine, parse_blend
from mlin_qgis.core.engine import SuperResolver
from mlin_qgis.core.errors import MlinError, ModelCardError

pytest.importorskip("onnx", reason="the `onnx` package builds the tiny test models")


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("blend-models")
    return build_tiny_model(root / "tiny-a", seed=1), build_tiny_model(root / "tiny-b", seed=2)


def test_blend_spec_round_trip_and_clear_errors() -> None:
    spec = blend_spec([("a@sharp", 0.75), ("b", 0.25)])
    assert spec == "a@sharp*0.7500+b*0.2500"
    assert parse_blend(spec) == [("a@sharp", 0.75), ("b", 0.25)]
    assert parse_blend("c*3+d*1") == [("c", 0.75), ("d", 0.25)]  # weights are normalised
    assert parse_blend("mlin-robust-ucmerced@sharp") is None and blend_spec([("a", 1.0)]) == "a"
    # a "+" inside a folder path stays in that member's name (what a cluster worker is given)
    assert parse_blend("/data/x+y/m@sharp*0.6000+/data/x+y/n*0.4000") == [("/data/x+y/m@sharp", 0.6), ("/data/x+y/n", 0.4)]
    for bad in ("a*0+b*1", "a*x+b*1", "*0.5+b*0.5", "a*-1+b*2", "a*0.5+", "a*0.5+*0.5"):
        with pytest.raises(MlinError, match="MODEL\\*WEIGHT"):
            parse_blend(bad)


def test_blend_is_the_weighted_mean_of_its_members_tiled_or_whole(two_models: tuple[Path, Path]) -> None:
    a_dir, b_dir = two_models
    a, b = (SuperResolver(d, device="cpu", threads=1) for d in two_models)
    image = smooth_image(30, 44, seed=3)
    ya, yb = a.upscale(image, (75, 110), clip=False), b.upscale(image, (75, 110), clip=False)
    assert np.abs(ya - yb).mean() > 1e-3, "the two members must differ for this test to mean anything"
    blend = BlendedResolver([(b, 1.0), (a, 3.0)])
    assert [m.weight for m in blend.members] == [0.75, 0.25] and blend.card.name == a.card.name  # heaviest first
    expect = 0.75 * ya + 0.25 * yb
    assert np.allclose(blend.upscale(image, (75, 110), clip=False), expect, atol=1e-6)
    assert np.allclose(blend.upscale(image, (75, 110), tile_size=12, clip=False), expect, atol=1e-5)
    clipped = blend.upscale(image, (75, 110))
    assert np.allclose(clipped, np.clip(expect, 0, 1), atol=1e-6)
    again = open_engine(blend.model_spec, device="cpu", threads=1)  # what a cluster worker is given
    assert isinstance(again, BlendedResolver) and again.model_spec == blend.model_spec
    assert np.array_equal(again.upscale(image, (75, 110)), clipped)
    assert isinstance(open_engine(a_dir, device="cpu", threads=1), SuperResolver)
    with pytest.raises(MlinError, match="at least two"):
        BlendedResolver([(a, 1.0)])


def _router(**over) -> dict:
    n = len(R.FEATURE_NAMES)
    data = {"format": "mlin-router/1", "features": list(R.FEATURE_NAMES), "classes": ["a", "b"],
            "routes": {"a": "tiny-a", "b": "tiny-b"}, "terms": "linear", "mean": [0.0] * n, "std": [1.0] * n,
            "weights": [[0.0, 0.0] for _ in range(n)], "bias": [0.0, 0.0], "mixing": "blend", "min_weight": 0.1}
    data.update(over)
    return data


def test_router_blend_weights_floor_and_file_format() -> None:
    router = R.Router.from_json(_router())
    assert router.blend_weights(np.array([0.3, 0.7])) == [("b", 0.7), ("a", 0.3)]
    assert router.blend_weights(np.array([0.05, 0.95])) == [("b", 1.0)]  # under min_weight: not run
    three = R.Router.from_json(_router(classes=["a", "b", "c"], routes={"a": "x", "b": "y", "c": "z"},
                                       weights=[[0.0] * 3 for _ in R.FEATURE_NAMES], bias=[0.0] * 3))
    got = three.blend_weights(np.array([0.5, 0.42, 0.08]))
    assert [c for c, _ in got] == ["a", "b"] and np.isclose(got[0][1], 0.5 / 0.92)
    assert R.Router.from_json(json.loads(json.dumps(router.to_json()))).mixing == "blend"
    picking = R.Router.from_json({k: v for k, v in _router().items() if k not in ("mixing", "min_weight")})
    assert picking.mixing == "pick" and picking.blend_weights(np.array([0.3, 0.7])) == [("b", 1.0)]
    with pytest.raises(ModelCardError, match="mixing"):
        R.Router.from_json(_router(mixing="average"))


def test_auto_blend_run_names_the_blend_and_equals_it_run_by_spec(two_models: tuple[Path, Path], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A router that cannot tell (equal probabilities) blends its two routes 50/50: the run's metadata
    says so, and its pixels are those of the blend spec run by name; the estimate counts both models."""
    from mlin_qgis.core import auto
    from mlin_qgis.core.pipeline import SuperResolveRequest, auto_decision, estimate, superresolve

    root = two_models[0].parent
    (root / R.ROUTER_FILE).write_text(json.dumps(_router()))
    monkeypatch.setenv("MLIN_MODELS_DIR", str(root))
    monkeypatch.setattr(auto, "_cache", {})
    inp = write_geotiff(tmp_path / "in.tif", (smooth_image(40, 48, seed=5) * 200).astype(np.uint8))
    decision = auto_decision(inp)
    assert [s for s, _ in decision.blend] == ["tiny-a", "tiny-b"] and np.allclose([w for _, w in decision.blend], 0.5)
    result = superresolve(SuperResolveRequest(inp, tmp_path / "auto.tif", 2.0, model="auto", threads=1))
    assert result.route.startswith("auto -> blend of 0.50 x tiny-a + 0.50 x tiny-b")
    assert gdal.Open(str(result.output_path)).GetMetadata()["MLIN_ROUTE"] == result.route
    named = superresolve(SuperResolveRequest(inp, tmp_path / "named.tif", 2.0, model=decision.engine_spec, threads=1))
    a = gdal.Open(str(result.output_path)).ReadAsArray()
    assert np.array_equal(a, gdal.Open(str(named.output_path)).ReadAsArray())
    single = superresolve(SuperResolveRequest(inp, tmp_path / "a.tif", 2.0, model="tiny-a", threads=1))
    assert not np.array_equal(a, gdal.Open(str(single.output_path)).ReadAsArray())
    from mlin_qgis.core import pipeline

    monkeypatch.setattr(pipeline, "_measured", {})  # both from the calibration, not from these runs
    one = estimate(inp, 2.0, model="tiny-b")  # the general route (the router's last class) times auto
    both = estimate(inp, 2.0, model="auto")
    assert "blend up to 2 models" in both.basis and both.seconds == pytest.approx(2 * one.seconds, rel=1e-6)
