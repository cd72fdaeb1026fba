"""The router behind `--model auto`: its features on hand-checkable images, its file format, and the
decision it makes inside a real run (one model per raster, named in the output's metadata)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from conftest import REPO, smooth_image
from mlin_qgis.core import router as R
from mlin_qgis.core.errors import MlinError, ModelCardError


def _texture(n: int = 128, seed: int = 0) -> np.ndarray:
    """Luminance (DN) with structure at all frequencies: smooth blobs plus fine detail."""
    rng = np.random.default_rng(seed)
    base = smooth_image(n, n, bands=1, seed=seed)[0] * 200
    return np.clip(base + rng.normal(0, 12, (n, n)), 0, 255)


def test_noise_floor_reads_the_noise_sigma_in_dn() -> None:
    """A flat grey image with Gaussian noise of sigma 5 DN: the high-pass has unit gain for white noise,
    so an 8x8 patch's RMS is ~5 DN with a relative spread of 1/sqrt(2*64); the 10th percentile of the
    patches is then 5 * (1 - 1.2816 / sqrt(128)) = 4.43 DN (hand value)."""
    rng = np.random.default_rng(1)
    y = 100 + rng.normal(0, 5.0, (128, 128))
    feats = dict(zip(R.FEATURE_NAMES, R.lr_features(y)))
    assert abs(np.exp(feats["log_noise_floor_dn"]) - 0.05 - 4.43) < 0.15
    clean = dict(zip(R.FEATURE_NAMES, R.lr_features(np.full((64, 64), 80.0))))
    assert np.exp(clean["log_noise_floor_dn"]) - 0.05 < 1e-6


def test_jpeg_blockiness_rises_with_compression() -> None:
    from PIL import Image

    y = _texture()
    buf = io.BytesIO()
    Image.fromarray(y.astype(np.uint8)).save(buf, format="JPEG", quality=20)
    jpeg = np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float64)
    k = R.FEATURE_NAMES.index("jpeg_blockiness")
    plain, blocky = R.lr_features(y)[k], R.lr_features(jpeg)[k]
    assert blocky > plain + 0.05, (plain, blocky)
    # and a JPEG grid shifted by a few pixels (a window of a JPEG-in-TIFF) reads the same
    assert abs(R.lr_features(jpeg[3:, 5:])[k] - blocky) < 0.05


def test_spectral_shape_sees_a_sinusoid_near_nyquist() -> None:
    """A stripe pattern at 0.45 cycles/px lands in the top band, one at 0.1 in the first: the top
    band's log power over the first is large and positive for one and large and negative for the other."""
    xx = np.arange(128)[None, :].repeat(128, 0)
    top = R.FEATURE_NAMES.index("log_power_0.438_0.500_over_first")
    fine = R.lr_features(100 + 50 * np.sin(2 * np.pi * 0.45 * xx))[top]
    coarse = R.lr_features(100 + 50 * np.sin(2 * np.pi * 0.1 * xx))[top]
    assert fine > 5 and coarse < -5, (fine, coarse)


def test_features_need_a_usable_image() -> None:
    with pytest.raises(MlinError, match="at least 16x16"):
        R.lr_features(np.zeros((8, 40)))


def _router(**over) -> dict:
    n = len(R.FEATURE_NAMES)
    data = {"format": "mlin-router/1", "features": list(R.FEATURE_NAMES), "classes": ["a", "b"],
            "routes": {"a": "model-a", "b": "model-b"}, "terms": "linear", "mean": [0.0] * n, "std": [1.0] * n,
            "weights": [[0.0, 0.0] for _ in range(n)], "bias": [0.0, 0.0]}
    data.update(over)
    return data


def test_router_file_round_trip_and_clear_errors(tmp_path: Path) -> None:
    n = len(R.FEATURE_NAMES)
    k = R.FEATURE_NAMES.index("jpeg_blockiness")
    weights = [[0.0, 0.0] for _ in range(n)]
    weights[k] = [0.0, 50.0]  # class b exactly when blockiness > 0.1 (bias -5)
    router = R.Router.from_json(_router(weights=weights, bias=[0.0, -5.0]))
    again = R.Router.from_json(json.loads(json.dumps(router.to_json())))
    feats = np.zeros(n)
    feats[k] = 0.2
    assert np.allclose(router.probabilities(feats), again.probabilities(feats))
    p = router.probabilities(feats)[0]
    assert np.isclose(p[1], 1 / (1 + np.exp(-5.0)))  # hand value: softmax of (0, 50 * 0.2 - 5)
    with pytest.raises(ModelCardError, match="refit it"):
        R.Router.from_json(_router(features=["something", "else"]))
    with pytest.raises(ModelCardError, match="names no model for class"):
        R.Router.from_json(_router(routes={"a": "model-a"}))
    with pytest.raises(ModelCardError, match="wrong shape"):
        R.Router.from_json(_router(bias=[0.0, 0.0, 0.0]))
    bad = tmp_path / "router.json"
    bad.write_text("{not json")
    with pytest.raises(ModelCardError, match="cannot read the router"):
        R.Router.load(bad)


def test_one_decision_for_many_windows_is_the_mean_log_probability() -> None:
    n = len(R.FEATURE_NAMES)
    k = R.FEATURE_NAMES.index("jpeg_blockiness")
    weights = [[0.0, 0.0] for _ in range(n)]
    weights[k] = [0.0, 50.0]
    router = R.Router.from_json(_router(weights=weights, bias=[0.0, -5.0]))
    images = [smooth_image(64, 64, seed=s).transpose(1, 2, 0) for s in range(3)]
    label, p = router.classify_windows(images)
    logp = np.log(np.stack([router.probabilities(R.lr_features(R.luminance(im)))[0] for im in images]) + 1e-12)
    expect = np.exp(logp.mean(0) - logp.mean(0).max())
    assert np.allclose(p, expect / expect.sum())
    assert label == router.classes[int(np.argmax(p))]
    with pytest.raises(MlinError, match="smaller than 16x16"):
        router.classify_windows([np.zeros((8, 8, 3))])


def test_sample_windows_cover_the_raster() -> None:
    wins = R.sample_windows((1000, 600), side=256, count=9)
    assert len(wins) == 9 and (0, 0, 256, 256) in wins and (744, 344, 256, 256) in wins
    assert R.sample_windows((100, 50)) == [(0, 0, 100, 50)]


# -- the shipped router --------------------------------------------------------------------------
SHIPPED = REPO / "models" / R.ROUTER_FILE


@pytest.mark.skipif(not SHIPPED.is_file(), reason="models/router.json is not shipped")
def test_shipped_router_names_installed_models() -> None:
    from mlin_qgis.core.auto import auto_available, wants_auto
    from mlin_qgis.core.models import resolve_model

    router = R.Router.load(SHIPPED)
    assert auto_available() and wants_auto(None) and wants_auto("auto") and not wants_auto("mlin-edsr-ucmerced")
    for spec in router.routes.values():
        resolve_model(spec)


@pytest.mark.skipif(not SHIPPED.is_file(), reason="models/router.json is not shipped")
def test_auto_runs_at_int8_because_every_route_ships_an_int8_decoder(tmp_path: Path) -> None:
    """A blending `auto` may run any of its routes: `--precision int8` works only if each has one."""
    from mlin_qgis.core.models import decoder_file, resolve_model, spec_variant
    from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve

    router = R.Router.load(SHIPPED)
    for spec in router.routes.values():
        assert (resolve_model(spec) / decoder_file(spec_variant(spec), "int8")).is_file(), spec
    crop = gdal.Translate(str(tmp_path / "in.tif"), str(REPO / "resources" / "OSBS_029.tif"), srcWin=[0, 0, 48, 40])
    crop.FlushCache()
    del crop
    result = superresolve(SuperResolveRequest(tmp_path / "in.tif", tmp_path / "i8.tif", 2.0, precision="int8"))
    assert result.route.startswith("auto -> ") and gdal.Open(str(result.output_path)).RasterXSize == 96


@pytest.mark.skipif(not SHIPPED.is_file(), reason="models/router.json is not shipped")
def test_auto_run_says_what_it_ran_and_equals_that_run_by_name(tmp_path: Path) -> None:
    """`sr` with no model on a real raster crop: the output's metadata names `auto` and the pick (one
    model or a blend), and the pixels are exactly those of running that pick by name."""
    from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve

    crop = gdal.Translate(str(tmp_path / "in.tif"), str(REPO / "resources" / "OSBS_029.tif"), srcWin=[0, 0, 72, 64])
    crop.FlushCache()
    del crop
    from mlin_qgis.core.pipeline import auto_decision

    auto = superresolve(SuperResolveRequest(tmp_path / "in.tif", tmp_path / "auto.tif", 2.0))
    assert auto.route.startswith("auto -> ")
    decision = auto_decision(tmp_path / "in.tif")
    assert auto.route == decision.describe()
    picked = decision.engine_spec  # one model, or the blend (MODEL*W+MODEL*W) a blending router chose
    md = gdal.Open(str(tmp_path / "auto.tif")).GetMetadata()
    assert md["MLIN_MODEL_ASKED"] == "auto" and md["MLIN_ROUTE"] == auto.route
    named = superresolve(SuperResolveRequest(tmp_path / "in.tif", tmp_path / "named.tif", 2.0, model=picked))
    assert named.route == "" and named.model == auto.model
    a = gdal.Open(str(tmp_path / "auto.tif")).ReadAsArray()
    b = gdal.Open(str(tmp_path / "named.tif")).ReadAsArray()
    assert np.array_equal(a, b)
    # an output fed back in with a named model does not pass its own route record on
    again = superresolve(SuperResolveRequest(tmp_path / "auto.tif", tmp_path / "again.tif", 1.2, model=picked))
    md2 = gdal.Open(str(again.output_path)).GetMetadata()
    assert "MLIN_ROUTE" not in md2 and "MLIN_MODEL_ASKED" not in md2 and md2["MLIN_SOURCE"] == "auto.tif"


def test_auto_without_a_router_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A router naming a model that is not installed: `auto` is refused by name, and no model given
    falls back to the default model (auto is unavailable)."""
    from mlin_qgis.core import auto

    root = tmp_path / "models"
    root.mkdir()
    (root / R.ROUTER_FILE).write_text(json.dumps(_router(routes={"a": "not-installed", "b": "not-installed"})))
    monkeypatch.setenv("MLIN_MODELS_DIR", str(root))
    assert auto.router_file() == root / R.ROUTER_FILE
    assert not auto.wants_auto(None)
    with pytest.raises(MlinError, match="a model it names is missing"):
        auto.wants_auto("auto")


def test_decoder_variants_resolve_and_refuse_unknown_ones() -> None:
    from mlin_qgis.core.models import available_models, decoder_file, resolve_model, spec_variant, split_spec

    assert split_spec("mlin-robust-ucmerced@sharp") == ("mlin-robust-ucmerced", "sharp")
    assert split_spec("/data/user@host/models/x") == ("/data/user@host/models/x", None)
    assert spec_variant("m/decoder.sharp.int8.onnx") == "sharp" and spec_variant("m/decoder.int8.onnx") is None
    assert decoder_file("sharp", "int8") == "decoder.sharp.int8.onnx" and decoder_file() == "decoder.onnx"
    with pytest.raises(MlinError, match="no decoder variant 'nope'"):
        resolve_model("mlin-robust-ucmerced@nope")
    folder = REPO / "models" / "mlin-robust-ucmerced"
    if (folder / "decoder.sharp.onnx").is_file():
        from mlin_qgis.core.engine import SuperResolver

        engine = SuperResolver("mlin-robust-ucmerced@sharp", device="cpu", threads=1)
        assert engine.card.name == "mlin-robust-ucmerced@sharp" and engine.files[1].name == "decoder.sharp.onnx"
        assert "mlin-robust-ucmerced@sharp" in [e.name for e in available_models()]


@pytest.mark.skipif(not SHIPPED.is_file(), reason="models/router.json is not shipped")
def test_evaluate_auto_scores_what_auto_runs(tmp_path: Path) -> None:
    """`evaluate --checkpoint auto` records each image's pick, and its PSNR is exactly that of the
    image's decision (one model, or the router's blend) run through the engine on the same LR."""
    pytest.importorskip("torch")
    import shutil

    import torch

    from conftest import SHARED
    from mlin_qgis.core.auto import classify_image
    from mlin_qgis.core.blend import open_engine
    from mlin_qgis.ml.evaluate import evaluate, protocol_pair
    from mlin_qgis.ml.images import list_images, load_image
    from mlin_qgis.ml.metrics import psnr

    val = SHARED / "data" / "ucmerced" / "val"
    if not val.is_dir():
        pytest.skip(f"{val} not found")
    folder = tmp_path / "val2"
    for rel in ("agricultural/agricultural08.png", "harbor/harbor00.png"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(val / rel, folder / rel)
    router = R.Router.load(SHIPPED)
    res = evaluate({"auto": "auto"}, folder, [4.0], degradation="bicubic-aliased", progress=False)
    picks = res["routes"]["auto"]["4"]
    assert len(picks) == 2 and set(picks) <= set(router.classes)
    for i, path in enumerate(list_images(folder)):
        full = torch.from_numpy(load_image(path)).permute(2, 0, 1).float().div_(255.0).unsqueeze(0)
        hr, lr, shave = protocol_pair(full, 4.0, i, "mlin", "bicubic-aliased")
        arr = lr[0].numpy().astype(np.float32)
        decision = classify_image(arr.transpose(1, 2, 0))
        assert decision.label == picks[i]
        sr = open_engine(decision.engine_spec, device="cpu").upscale(arr, tuple(hr.shape[-2:]), clip=False)
        sr = np.clip(sr, 0.0, 1.0)  # evaluate scores the clipped output
        assert res["per_image"]["auto"]["4"]["psnr"][i] == pytest.approx(psnr(sr, hr[0].numpy(), shave=shave), abs=1e-6)


def test_variant_pair_loads_by_name_and_stores_weights_as_fp16(tiny_model: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A variant pair (encoder.v.onnx + decoder.v.onnx, card 'NAME@v') is selected as FOLDER@v; its
    fp16-stored encoder weights run in fp32 and change the output by float16 rounding only; a pair
    whose card does not say '@v' is refused."""
    pytest.importorskip("onnx")
    import shutil

    from mlin_qgis.core.engine import SuperResolver
    from mlin_qgis.core.models import available_models
    from mlin_qgis.ml.export import store_weights_fp16, update_card

    folder = tmp_path / "tiny-test"
    shutil.copytree(tiny_model, folder)
    work = tmp_path / "work"
    shutil.copytree(tiny_model, work)
    update_card(work, name="tiny-test@v")
    store_weights_fp16(work / "encoder.onnx", min_size=1)
    shutil.copy(work / "encoder.onnx", folder / "encoder.v.onnx")
    shutil.copy(work / "decoder.onnx", folder / "decoder.v.onnx")
    assert (folder / "encoder.v.onnx").stat().st_size < (folder / "encoder.onnx").stat().st_size
    plain = SuperResolver(folder, device="cpu", threads=1)
    variant = SuperResolver(f"{folder}@v", device="cpu", threads=1)
    assert variant.card.name == "tiny-test@v" and variant.files == (folder / "encoder.v.onnx", folder / "decoder.v.onnx")
    image = smooth_image(20, 24).astype(np.float32)
    a, b = plain.upscale(image, (40, 48)), variant.upscale(image, (40, 48))
    assert 0 < np.abs(a - b).max() < 5e-3  # same weights up to fp16 rounding
    (folder / "decoder.w.onnx").write_bytes((tiny_model / "decoder.onnx").read_bytes())  # card says tiny-test
    with pytest.raises(MlinError, match="come from different models"):
        SuperResolver(f"{folder}@w", device="cpu", threads=1)
    monkeypatch.setenv("MLIN_MODELS_DIR", str(tmp_path))
    assert "tiny-test@v" in [e.name for e in available_models()]


def test_evaluate_takes_a_variants_int8_decoder_file() -> None:
    """`evaluate --checkpoint FOLDER/decoder.sharp.int8.onnx` measures that variant at int8: the same
    pixels as the engine asked for `FOLDER@sharp` with precision int8, and not the fp32 ones."""
    pytest.importorskip("torch")
    from mlin_qgis.core.engine import SuperResolver
    from mlin_qgis.ml.evaluate import OnnxMethod, _is_onnx_folder

    folder = REPO / "models" / "mlin-robust-ucmerced"
    path = folder / "decoder.sharp.int8.onnx"
    if not path.is_file():
        pytest.skip("the sharp variant's int8 decoder is not shipped")
    assert _is_onnx_folder(path)
    method = OnnxMethod(path, threads=1)
    assert method.engine.config.precision == "int8" and method.engine.files[1] == path
    lr = smooth_image(20, 24, seed=2).astype(np.float32)
    expect = SuperResolver(f"{folder}@sharp", device="cpu", threads=1, precision="int8").upscale(lr, (40, 48), clip=False)
    fp32 = SuperResolver(f"{folder}@sharp", device="cpu", threads=1).upscale(lr, (40, 48), clip=False)
    import torch

    got = method.super_resolve(torch.from_numpy(lr)[None], (40, 48))[0].numpy()
    assert np.array_equal(got, expect) and not np.array_equal(got, fp32)
