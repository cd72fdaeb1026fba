"""Model card, model discovery and session creation (tiny real ONNX models, real onnxruntime)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from conftest import REPO, TINY_CARD, smooth_image
from mlin_qgis.core.card import REQUIRED_FIELDS, ModelCard
from mlin_qgis.core.engine import SuperResolver, cuda_offered
from mlin_qgis.core.errors import MlinError
from mlin_qgis.core.models import (
    DEFAULT_MODEL,
    ENV_MODELS_DIR,
    VARIANT_SEP,
    available_models,
    decoder_file,
    decoder_variants,
    is_model_dir,
    resolve_model,
)
from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve
from mlin_qgis.core.tiling import HALO_EXTRA, halo_for

SHIPPED = REPO / "models"


def test_card_from_onnx_reads_every_field(tiny_model: Path) -> None:
    for name in ("encoder.onnx", "decoder.onnx"):
        card = ModelCard.from_onnx(tiny_model / name)
        assert card.name == "tiny-test" and card.method == "mlin" and card.weighting == "meta"
        assert card.receptive_field == 2 and card.feature_channels == 8
        assert card.input_mean == (0.5, 0.5, 0.5) and card.hard_max_scale == 12.0
        assert card.training_data.startswith("none")


def test_card_json_round_trip() -> None:
    card = ModelCard.from_dict(TINY_CARD)
    again = ModelCard.from_json(card.to_json())
    assert again == card
    assert json.loads(card.to_json())["input_std"] == [0.5, 0.5, 0.5]


def test_card_accepts_scalar_statistics_and_int_types() -> None:
    data = dict(TINY_CARD, input_mean=0.4, version=3, receptive_field=2.0)
    card = ModelCard.from_dict(data)
    assert card.input_mean == (0.4, 0.4, 0.4) and card.version == "3" and card.receptive_field == 2


def test_card_missing_fields_are_all_named(tiny_model_factory) -> None:
    card = {k: v for k, v in TINY_CARD.items() if k not in ("receptive_field", "hard_max_scale")}
    folder = tiny_model_factory(card)
    with pytest.raises(MlinError) as info:
        ModelCard.from_onnx(folder / "decoder.onnx")
    assert "receptive_field" in str(info.value) and "hard_max_scale" in str(info.value)
    with pytest.raises(MlinError, match="hard_max_scale, receptive_field"):
        SuperResolver(folder)


@pytest.mark.parametrize("change, words", [
    ({"method": "diffusion"}, "method"), ({"input_std": [0.5, 0.0, 0.5]}, "input_std"),
    ({"recommended_max_scale": 20.0}, "recommended_max_scale"), ({"input_mean": [1, 2]}, "3 values"),
    ({"receptive_field": 2.5}, "receptive_field")])
def test_card_bad_values_are_refused(change: dict, words: str) -> None:
    with pytest.raises(MlinError, match=words):
        ModelCard.from_dict(dict(TINY_CARD, **change))


def _shipped_models() -> list[tuple[Path, str | None, str]]:
    """(folder, variant, precision) of every model shipped in models/: each folder, each decoder variant,
    each int8 decoder present."""
    out: list[tuple[Path, str | None, str]] = []
    for folder in sorted(p for p in SHIPPED.iterdir() if p.is_dir() and is_model_dir(p)):
        for variant in [None, *decoder_variants(folder)]:
            out += [(folder, variant, precision) for precision in ("fp32", "int8")
                    if (folder / decoder_file(variant, precision)).is_file()]
    return out


def test_the_default_model_is_shipped() -> None:
    assert (SHIPPED / DEFAULT_MODEL, None, "fp32") in _shipped_models()


@pytest.mark.parametrize("folder, variant, precision", _shipped_models(),
                         ids=lambda v: v.name if isinstance(v, Path) else str(v))
def test_every_shipped_model_opens_has_a_sound_card_and_runs_a_raster(folder: Path, variant: str | None,
                                                                       precision: str, make_raster,
                                                                       tmp_path: Path) -> None:
    """What a user gets from models/: the pair opens, both files carry a card with every field, the card
    survives a JSON round trip and its scale limits are ordered, and a small real GeoTIFF comes out as an
    enlargement of itself (block means of the output match the input's; a broken, constant, offset or
    channel-swapped model fails)."""
    spec = f"{folder}{VARIANT_SEP}{variant}" if variant else str(folder)
    engine = SuperResolver(spec, device="cpu", threads=1, precision=precision)
    card = engine.card
    for path in engine.files:
        on_file = ModelCard.from_onnx(path).to_dict()
        assert [k for k in REQUIRED_FIELDS if on_file.get(k) in (None, "")] == [], path
    assert ModelCard.from_json(card.to_json()) == card
    assert 1.0 <= card.trained_scale_min <= card.trained_scale_max <= card.hard_max_scale
    assert 1.0 < card.recommended_max_scale <= card.hard_max_scale and card.bands == 3
    assert engine.halo == halo_for(card.receptive_field) and card.description

    lr = np.rint(smooth_image(20, 24) * 255).astype(np.uint8)
    out_path = tmp_path / "out.tif"
    scale = min(2.5, card.recommended_max_scale)
    result = superresolve(SuperResolveRequest(make_raster(lr), out_path, scale, model=spec, device="cpu",
                                              threads=1, precision=precision))
    assert (result.height, result.width) == (50, 60)
    out = gdal.Open(str(out_path)).ReadAsArray().astype(np.float64)
    assert out.shape == (3, 50, 60)
    blocks_out = out.reshape(3, 10, 5, 12, 5).mean(axis=(2, 4))  # the same 10 x 12 footprints on both grids
    blocks_in = lr.astype(np.float64).reshape(3, 10, 2, 12, 2).mean(axis=(2, 4))
    assert np.abs(blocks_out - blocks_in).mean() < 8.0  # DN; a constant image is ~26 DN off, swapped channels ~30
    assert out.std() > 0.8 * lr.std()  # not washed out


def test_corrupt_onnx_is_not_an_mlin_model(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(tiny_model, folder)
    (folder / "encoder.onnx").write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(MlinError, match="is not an mlin model"):
        SuperResolver(folder)
    with pytest.raises(MlinError, match="is not an mlin model"):
        ModelCard.from_onnx(folder / "encoder.onnx")


def _foreign_pair(folder: Path, with_card: bool) -> Path:
    """A valid ONNX pair that is not an mlin model (an identity graph)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("encoder.onnx", "decoder.onnx"):
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "foreign",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        if with_card:
            entry = model.metadata_props.add()
            entry.key, entry.value = "mlin_card", json.dumps(TINY_CARD)
        onnx.save(model, str(folder / name))
    return folder


def test_foreign_onnx_without_card_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MlinError, match="is not an mlin model.*mlin_card"):
        SuperResolver(_foreign_pair(tmp_path / "foreign", with_card=False))


def test_foreign_onnx_with_card_but_wrong_io_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MlinError, match="is not an mlin model: expected input 'image'"):
        SuperResolver(_foreign_pair(tmp_path / "foreign", with_card=True))


def test_engine_provider_threads_and_halo(tiny_model: Path) -> None:
    sr = SuperResolver(tiny_model, device="cpu", threads=1)
    assert sr.provider == "CPUExecutionProvider"
    assert sr.halo == halo_for(sr.card.receptive_field) == sr.card.receptive_field + HALO_EXTRA
    assert sr.has_weights
    out = sr.upscale(np.full((3, 6, 7), 0.5, np.float32), (13, 15))
    assert out.shape == (3, 13, 15) and out.dtype == np.float32


def test_engine_validates_its_inputs(tiny_model: Path) -> None:
    sr = SuperResolver(tiny_model, device="cpu")
    with pytest.raises(MlinError, match=r"shape \(3, h, w\)"):
        sr.upscale(np.zeros((5, 5, 3), np.float32), (10, 10))
    with pytest.raises(MlinError, match="NaN"):
        sr.upscale(np.full((3, 5, 5), np.nan, np.float32), (10, 10))
    with pytest.raises(MlinError, match="unknown device"):
        SuperResolver(tiny_model, device="tpu")


@pytest.mark.skipif(cuda_offered(), reason="this onnxruntime offers CUDA; the refusal path needs a CPU-only build")
def test_cuda_requested_but_unavailable_is_a_clear_error(tiny_model: Path) -> None:
    with pytest.raises(MlinError, match="onnxruntime-gpu"):
        SuperResolver(tiny_model, device="cuda")
    assert SuperResolver(tiny_model, device="auto").provider == "CPUExecutionProvider"


@pytest.mark.cuda
@pytest.mark.skipif(not cuda_offered(), reason="this onnxruntime offers no CUDA (install onnxruntime-gpu on a GPU machine)")
def test_cuda_runs_and_equals_cpu(tiny_model: Path) -> None:
    """Runs wherever CUDA is offered: the provider that really ran is CUDA, and its colours are the CPU's."""
    cpu, gpu = SuperResolver(tiny_model, device="cpu"), SuperResolver(tiny_model, device="cuda")
    assert gpu.provider == "CUDAExecutionProvider"
    image = np.random.default_rng(0).random((3, 21, 26)).astype(np.float32)
    assert np.abs(gpu.upscale(image, (53, 66)) - cpu.upscale(image, (53, 66))).max() < 1e-4
    assert not isinstance(gpu.encode_bound(image), np.ndarray)  # IO binding keeps proj on the device


def test_available_and_resolve_models(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "models"
    shutil.copytree(tiny_model, root / "aaa-model")
    shutil.copytree(tiny_model, root / DEFAULT_MODEL)
    (root / "broken").mkdir()
    (root / "broken" / "encoder.onnx").write_bytes(b"junk")
    (root / "broken" / "decoder.onnx").write_bytes(b"junk")
    (root / "not-a-model").mkdir()
    monkeypatch.setenv(ENV_MODELS_DIR, str(root))
    names = [m.name for m in available_models()]
    assert names[0] == DEFAULT_MODEL and "aaa-model" in names
    assert "broken" not in names and "not-a-model" not in names
    assert available_models()[0].card.name == "tiny-test"
    assert resolve_model() == (root / DEFAULT_MODEL).resolve()
    assert resolve_model("aaa-model") == (root / "aaa-model").resolve()
    assert resolve_model(root / "aaa-model") == (root / "aaa-model").resolve()
    assert resolve_model(str(root / "aaa-model" / "decoder.onnx")) == (root / "aaa-model").resolve()
    assert resolve_model(root / "aaa-model" / "encoder.onnx") == (root / "aaa-model").resolve()
    with pytest.raises(MlinError, match=f"Installed models: {DEFAULT_MODEL}, aaa-model"):
        resolve_model("no-such-model")
    with pytest.raises(MlinError, match="must hold"):
        resolve_model(root / "not-a-model")
    with pytest.raises(MlinError, match="is not an mlin model"):
        SuperResolver("broken")


def test_lone_onnx_file_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    shutil.copy(tiny_model / "decoder.onnx", tmp_path / "decoder.onnx")
    with pytest.raises(MlinError, match="must hold both"):
        resolve_model(tmp_path / "decoder.onnx")


def test_gpu_check_says_plainly_when_there_is_no_gpu() -> None:
    import shutil as sh
    import subprocess

    if sh.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi: the GPU check would really run")
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(["bash", str(repo / "scripts" / "gpu_check.sh")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "no NVIDIA GPU is present on this machine" in proc.stdout and "no GPU rows were measured" in proc.stdout


def test_cards_are_read_without_onnxruntime_or_onnx(monkeypatch) -> None:
    """QGIS lists the models and their zoom limits before onnxruntime is installed."""
    import sys

    from mlin_qgis.core.card import ModelCard, read_onnx_metadata
    from mlin_qgis.core.models import available_models

    entries = available_models()
    with_ort = {e.name: (ModelCard.from_onnx(e.path / "decoder.onnx").to_json(),
                         read_onnx_metadata(e.path / "encoder.onnx")) for e in entries}
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # how Python marks them as not importable
    monkeypatch.setitem(sys.modules, "onnx", None)
    for name, (card, encoder_meta) in with_ort.items():
        folder = next(e.path for e in entries if e.name == name)
        assert ModelCard.from_onnx(folder / "decoder.onnx").to_json() == card
        assert read_onnx_metadata(folder / "encoder.onnx") == encoder_meta
    assert [e.name for e in available_models()] == [e.name for e in entries]
