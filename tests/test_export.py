"""ONNX export: onnxruntime (CPU) gives the torch model's numbers; the card travels in the files."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from mlin_qgis.core.card import CARD_KEY
from mlin_qgis.ml.decoder import DecoderConfig, pixel_query_grid
from mlin_qgis.ml.export import export_checkpoint
from mlin_qgis.ml.model import ImplicitSR, save_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=["area", "meta"])
def exported(request, tmp_path_factory):
    torch.manual_seed(3)
    model = ImplicitSR("edsr-baseline", DecoderConfig(weighting=request.param)).eval()
    if model.decoder.meta is not None:  # leave LIIF's start so the meta path really matters
        torch.nn.init.normal_(model.decoder.meta.head[2].weight, std=0.5)
    folder = tmp_path_factory.mktemp(request.param)
    save_model(model, folder / "model.pth")
    enc, dec = export_checkpoint(folder / "model.pth", folder / "onnx", name="test-model")
    return model, enc, dec


@pytest.mark.parametrize("scale", [2.0, 3.3, 8.0])
def test_onnxruntime_matches_torch(exported, scale):
    model, enc, dec = exported
    so = ort.SessionOptions()
    encoder = ort.InferenceSession(str(enc), so, providers=["CPUExecutionProvider"])
    decoder = ort.InferenceSession(str(dec), so, providers=["CPUExecutionProvider"])
    lr = torch.rand(1, 3, 17, 14)
    out_size = (round(17 * scale), round(14 * scale))
    proj = encoder.run(None, {"image": ((lr - 0.5) / 0.5).numpy()})[0]
    coord, cell = pixel_query_grid((17, 14), out_size)
    rgb, weights, area = decoder.run(None, {"proj": proj, "coord": coord.numpy(), "cell": cell.numpy()})
    got = (rgb * 0.5 + 0.5).T.reshape(3, *out_size)
    with torch.no_grad():
        want = model.super_resolve(lr, out_size)[0].numpy()
    assert np.abs(got - want).max() <= 1e-4
    assert np.allclose(weights.sum(1), 1, atol=1e-5) and np.allclose(area.sum(1), 1, atol=1e-5)
    if model.decoder.cfg.weighting == "meta":
        assert np.abs(weights - area).max() > 1e-3  # the meta weights really differ from LIIF's
    else:
        assert np.array_equal(weights, area)


def test_card_is_in_both_files(exported):
    model, enc, dec = exported
    cards = [json.loads(ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                        .get_modelmeta().custom_metadata_map[CARD_KEY]) for p in (enc, dec)]
    assert cards[0] == cards[1]
    card = cards[0]
    assert card["name"] == "test-model" and card["weighting"] == model.decoder.cfg.weighting
    assert card["receptive_field"] == 36 and card["feature_channels"] == model.decoder.proj_channels
    assert card["input_mean"] == [0.5] * 3


def test_shipped_liif_model_card():
    enc = REPO / "models" / "liif-edsr-div2k" / "encoder.onnx"
    card = json.loads(ort.InferenceSession(str(enc), providers=["CPUExecutionProvider"])
                      .get_modelmeta().custom_metadata_map[CARD_KEY])
    assert card["method"] == "liif" and card["weighting"] == "area" and card["encoder"] == "edsr-baseline"


def test_shipped_mlin_model_matches_its_checkpoint():
    """The clean-data MLIN model: its ONNX pair gives its torch checkpoint's numbers (x3.3)."""
    from mlin_qgis.ml.model import load_model

    folder = REPO / "models" / "mlin-edsr-ucmerced"
    model = load_model(REPO / "checkpoints" / "mlin-edsr-ucmerced.pth")
    assert model.decoder.cfg.weighting == "meta"
    encoder = ort.InferenceSession(str(folder / "encoder.onnx"), providers=["CPUExecutionProvider"])
    decoder = ort.InferenceSession(str(folder / "decoder.onnx"), providers=["CPUExecutionProvider"])
    card = json.loads(encoder.get_modelmeta().custom_metadata_map[CARD_KEY])
    assert card["method"] == "mlin" and "UC Merced" in card["training_data"]
    torch.manual_seed(4)
    lr = torch.rand(1, 3, 15, 16)
    out_size = (50, 53)
    proj = encoder.run(None, {"image": ((lr - 0.5) / 0.5).numpy()})[0]
    coord, cell = pixel_query_grid((15, 16), out_size)
    rgb, weights, area = decoder.run(None, {"proj": proj, "coord": coord.numpy(), "cell": cell.numpy()})
    with torch.no_grad():
        want = model.super_resolve(lr, out_size)[0].numpy()
    assert np.abs((rgb * 0.5 + 0.5).T.reshape(3, *out_size) - want).max() <= 1e-4
    assert np.abs(weights - area).max() > 1e-3  # trained meta weights depart from LIIF's


def test_ship_writes_a_card_from_the_runs_record_and_a_slim_checkpoint(tmp_path):
    import subprocess
    import sys

    from mlin_qgis.core.card import ModelCard
    from mlin_qgis.ml.model import read_checkpoint
    from mlin_qgis.ml.train import TrainConfig

    torch.manual_seed(0)
    model = ImplicitSR("edsr-baseline", DecoderConfig(weighting="meta"))
    cfg = TrainConfig(iterations=7, train_encoder=True)
    from dataclasses import asdict
    record = {"iteration": 7, "seconds": 36.0, "config": asdict(cfg), "optimizer": {"state": {}, "param_groups": []},
              "phases": [{"iteration": 5, "seconds": 72.0, "config": asdict(TrainConfig(iterations=5))}]}
    run = tmp_path / "checkpoint.pth"
    save_model(model, run, {"train": record, "card": {"description": "from training"}})
    out = tmp_path / "models" / "shipped-test"
    proc = subprocess.run([sys.executable, "-m", "mlin_qgis", "export", "--checkpoint", str(run), "--out", str(out),
                           "--ship", "--training-data", "tiny", "--hardware", "1 test thread",
                           "--description", "use it for tests"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    card = ModelCard.from_onnx(out / "decoder.onnx")
    assert card.description == "use it for tests" and card.training_data == "tiny"
    assert card.training_budget.startswith("5 iterations with L1 loss on clean bicubic LR")
    assert "Then 7 iterations" in card.training_budget and "encoder lr 1e-05 (encoder fine-tuned)" in card.training_budget
    assert "In all: 12 iterations, 0.03 h" in card.training_budget
    slim = read_checkpoint(out / "shipped-test.pth")
    assert "optimizer" not in slim["train"] and slim["train"]["iteration"] == 7
    bad = subprocess.run([sys.executable, "-m", "mlin_qgis", "export", "--checkpoint", str(run), "--out",
                          str(tmp_path / "x"), "--ship"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "--ship needs --training-data and --hardware" in bad.stderr
    assert not (tmp_path / "x").exists()


def test_update_card_changes_only_the_card(exported, tmp_path):
    import shutil

    from mlin_qgis.core.card import ModelCard
    from mlin_qgis.core.errors import ModelCardError
    from mlin_qgis.ml.export import update_card

    _, enc, _ = exported
    folder = tmp_path / "copy"
    shutil.copytree(enc.parent, folder)
    before = ort.InferenceSession(str(folder / "encoder.onnx"), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).random((1, 3, 9, 8)).astype(np.float32)
    want = before.run(None, {"image": image})[0]
    update_card(folder, description="for tests only")
    for name in ("encoder.onnx", "decoder.onnx"):
        assert ModelCard.from_onnx(folder / name).description == "for tests only"
    after = ort.InferenceSession(str(folder / "encoder.onnx"), providers=["CPUExecutionProvider"])
    assert np.array_equal(after.run(None, {"image": image})[0], want)
    with pytest.raises(ModelCardError):
        update_card(folder, hard_max_scale="lots")
    assert ModelCard.from_onnx(folder / "decoder.onnx").description == "for tests only"


def test_onnx_pair_reads_back_to_the_same_weights(exported):
    """`import-onnx`: every weight of the exported pair comes back exactly, with its torch name."""
    from mlin_qgis.ml.onnx_import import model_from_onnx

    model, enc, _ = exported
    back = model_from_onnx(enc.parent).state_dict()
    for name, tensor in model.state_dict().items():
        if name.startswith("encoder.sub_mean") or name.startswith("encoder.add_mean"):
            continue  # fixed (not in the graph: LIIF's EDSR skips its mean shift); both sides keep the default
        assert torch.equal(back[name], tensor), name
    assert (model.decoder.meta is None) == (back.get("decoder.meta.embed.weight") is None)


def test_imported_checkpoint_continues_with_its_budget(exported, tmp_path):
    """The written .pth loads as a training start and its record carries the card's budget sentence,
    which shipping a continuation then repeats."""
    from mlin_qgis.ml.export import budget_text, update_card
    from mlin_qgis.ml.model import load_model, read_checkpoint
    from mlin_qgis.ml.onnx_import import checkpoint_from_onnx
    from mlin_qgis.ml.train import TrainConfig, earlier_phases

    model, enc, _ = exported
    update_card(enc.parent, training_budget="300 iterations with L2 loss. In all: 1300 iterations, 0.50 h")
    path = checkpoint_from_onnx(str(enc.parent), tmp_path / "start.pth")
    again = load_model(path)
    assert torch.equal(again.decoder.imnet.layers[0].weight, model.decoder.imnet.layers[0].weight)
    record = read_checkpoint(path)["train"]
    assert (record["iteration"], record["seconds"]) == (1300, 1800.0)
    continued = {"phases": earlier_phases(str(path)), "iteration": 100, "seconds": 360.0,
                 "config": asdict(TrainConfig(loss="l2"))}
    text = budget_text(continued, "CPU")
    first, then = text.split(". Then ", 1)
    assert first.startswith("300 iterations with L2 loss. In all: 1300 iterations, 0.50 h (the shipped")
    assert then.startswith("100 iterations with L2 loss") and text.endswith("In all: 1400 iterations, 0.60 h")
