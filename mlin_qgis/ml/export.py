"""Export a checkpoint to the encoder/decoder ONNX pair the torch-free engine runs.

The encoder graph includes the decoder's factored first layer (a 3x3 convolution on the LR grid), so
the decoder graph only gathers projected codes per query. The model card travels inside both files
(`metadata_props['mlin_card']`) so the engine needs nothing else."""
from __future__ import annotations

import argparse
import json
import shutil
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from ..core.card import CARD_KEY, ModelCard
from ..core.errors import ConfigError, DataError
from ..core.models import DECODER_FILE, ENCODER_FILE
from .model import ImplicitSR, model_from_checkpoint, read_checkpoint

OPSET = 17
CARD_VERSION = "1"


class _EncoderGraph(nn.Module):
    def __init__(self, model: ImplicitSR) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.decoder.project(self.model.encoder(image))


class _DecoderGraph(nn.Module):
    def __init__(self, model: ImplicitSR) -> None:
        super().__init__()
        self.decoder = model.decoder

    def forward(self, proj: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor):
        rgb, weights, area = self.decoder.query(proj, coord.unsqueeze(0), cell.unsqueeze(0))
        return rgb[0], weights[0], area[0]


def default_card(model: ImplicitSR, name: str, checkpoint: Dict[str, Any]) -> Dict[str, Any]:
    """The card the engine needs, filled from the model; training info comes from the checkpoint."""
    weighting = model.decoder.cfg.weighting
    info = checkpoint.get("card", {}) if isinstance(checkpoint, dict) else {}
    card: Dict[str, Any] = {
        "name": name,
        "version": CARD_VERSION,
        "method": "mlin" if weighting == "meta" else "liif",
        "weighting": weighting,
        "encoder": model.encoder_name,
        "input_mean": [model.input_mean] * 3,
        "input_std": [model.input_std] * 3,
        "output_mean": [model.input_mean] * 3,
        "output_std": [model.input_std] * 3,
        "bands": 3,
        "trained_scale_min": 1.0,
        "trained_scale_max": 4.0,
        "recommended_max_scale": 10.0,
        "hard_max_scale": 30.0,
        # 3x3 unfold (1) + the 2x2 neighbourhood (1) on top of the encoder's own reach.
        "receptive_field": model.receptive_field + 2,
        "feature_channels": model.decoder.proj_channels,
        "training_data": "DIV2K (natural photos), official LIIF release",
        "training_budget": "LIIF paper: 1000 epochs on DIV2K",
        "quality": {},
        "licence": "BSD-3-Clause (LIIF weights, Yinbo Chen)",
        "description": "LIIF EDSR-baseline, local ensemble with area weights",
    }
    card.update(info)
    card["name"] = name
    return card


def export_model(model: ImplicitSR, out_dir: str | Path, card: Dict[str, Any]) -> Tuple[Path, Path]:
    import onnx  # export-time only

    ModelCard.from_dict(card, f"the card for {out_dir}")  # the engine's schema, checked before writing
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    enc_path, dec_path = out / ENCODER_FILE, out / DECODER_FILE
    image = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        proj = model.decoder.project(model.encode(image))
    coord = torch.rand(50, 2) * 18
    cell = torch.full((50, 2), 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _EncoderGraph(model), (image,), str(enc_path), opset_version=OPSET, dynamo=False,
            input_names=["image"], output_names=["proj"],
            dynamic_axes={"image": {2: "h", 3: "w"}, "proj": {2: "h", 3: "w"}},
        )
        torch.onnx.export(
            _DecoderGraph(model), (proj, coord, cell), str(dec_path), opset_version=OPSET, dynamo=False,
            input_names=["proj", "coord", "cell"], output_names=["rgb", "weights", "area_weights"],
            dynamic_axes={"proj": {2: "h", 3: "w"}, "coord": {0: "n"}, "cell": {0: "n"},
                          "rgb": {0: "n"}, "weights": {0: "n"}, "area_weights": {0: "n"}},
        )
    text = json.dumps(card, sort_keys=True)
    for path in (enc_path, dec_path):
        proto = onnx.load(str(path))
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = CARD_KEY, text
        proto.producer_name = "mlin-qgis"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(path))
    return enc_path, dec_path


def quality_from_results(results_json: str | Path, method: str) -> Dict[str, Any]:
    """The measured PSNR/SSIM of `method` from an `evaluate` results.json, for the card."""
    results = json.loads(Path(results_json).read_text())
    if method not in results.get("mean", {}):
        raise DataError(f"{results_json} has no results for '{method}'; it has: {', '.join(results.get('mean', {}))}")
    return {"data": f"{results.get('data_dir')} ({results.get('n_images')} images)",
            "protocol": "whole image, bicubic LR (antialiased, 8-bit), RGB, shave ceil(scale)",
            "mean": results["mean"][method], "bicubic": results["mean"].get("bicubic", {})}


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, name: Optional[str] = None,
                      quality: Optional[Dict[str, Any]] = None) -> Tuple[Path, Path]:
    """Checkpoint (.pth, ours or official LIIF) -> encoder.onnx + decoder.onnx with their card."""
    raw = read_checkpoint(checkpoint)
    model = model_from_checkpoint(raw, checkpoint)
    card = default_card(model, name or Path(out_dir).name, raw)
    if quality:
        card["quality"] = quality
    return export_model(model, out_dir, card)


def update_card(folder: str | Path, **fields: Any) -> Dict[str, Any]:
    """Change card fields of an exported model folder in place (both ONNX files), validated first;
    the graphs and weights are untouched."""
    import onnx  # export-time only

    folder = Path(folder)
    props = {p.key: p.value for p in onnx.load(str(folder / DECODER_FILE), load_external_data=False).metadata_props}
    card = json.loads(props[CARD_KEY])
    card.update(fields)
    ModelCard.from_dict(card, f"the card for {folder}")
    text = json.dumps(card, sort_keys=True)
    for name in (ENCODER_FILE, DECODER_FILE):
        proto = onnx.load(str(folder / name))
        for entry in proto.metadata_props:
            if entry.key == CARD_KEY:
                entry.value = text
        tmp = folder / f".{name}.tmp"
        onnx.save(proto, str(tmp))
        tmp.replace(folder / name)
    return card


# -- shipping a training run as a model folder ----------------------------------------------------
def phase_text(phase: Dict[str, Any], hardware: str) -> str:
    """One sentence on one training phase, from the run's own record (a phase read back from a shipped
    model's ONNX files carries its card's sentence as `text`)."""
    if "text" in phase:
        return str(phase["text"])
    cfg = phase["config"]
    sampler = cfg["sampler"]
    rates = f"decoder lr {cfg['lr']:g}" + (f", meta lr {cfg['lr_meta']:g}" if cfg["weighting"] == "meta" else "")
    if cfg.get("train_encoder"):
        rates += f", encoder lr {cfg['lr_encoder']:g} (encoder fine-tuned)"
    data = (f"crop bank of {cfg['bank_size']} encoded crops refreshed {cfg['bank_refresh']} per iteration"
            if not cfg.get("train_encoder") else f"{cfg['batch_size']} fresh crops per iteration")
    lr_made = "degraded LR (the run's `degradation` block)" if cfg.get("degradation") else "clean bicubic LR"
    return (f"{phase['iteration']} iterations with {cfg.get('loss', 'l1').upper()} loss on {lr_made}, batch "
            f"{cfg['batch_size']}, {sampler['sample_q']} queries per {sampler['lr_size']}x{sampler['lr_size']} crop, "
            f"scales U({sampler['scale_min']:g}, {sampler['scale_max']:g}), Adam ({rates}), warm-up {cfg['warmup']} "
            f"then cosine; {phase['seconds'] / 3600:.2f} h wall on {hardware}; {data}; seed {cfg['seed']}")


def budget_text(train: Dict[str, Any], hardware: str) -> str:
    """One sentence per training phase (a continuation keeps the record of the run it started from)."""
    phases = list(train.get("phases", [])) + [train]
    text = ". Then ".join(phase_text(p, hardware) for p in phases)
    if len(phases) > 1:
        total_it = sum(p["iteration"] for p in phases)
        total_h = sum(p["seconds"] for p in phases) / 3600
        text += f". In all: {total_it} iterations, {total_h:.2f} h"
    return text


def ship_checkpoint(checkpoint: str | Path, out_dir: str | Path, training_data: str, hardware: str,
                    quality: Optional[Dict[str, Any]] = None, description: Optional[str] = None,
                    keep_pth: bool = True) -> Tuple[Path, Path]:
    """A training run -> a model folder: slim .pth (no optimizer state; optional), ONNX pair and a card
    whose budget is written from the run's own record, so the card says what was really run."""
    raw = read_checkpoint(checkpoint)
    if "train" not in raw:
        raise DataError(f"{checkpoint} has no training record; ship a checkpoint written by `train`")
    out = Path(out_dir)
    info = dict(raw.get("card", {}))
    info["training_data"] = training_data
    info["training_budget"] = budget_text(raw["train"], hardware)
    if description:
        info["description"] = description
    slim = {k: v for k, v in raw.items() if k != "train"}
    slim["train"] = {k: v for k, v in raw["train"].items() if k != "optimizer"}
    slim["card"] = info
    model = model_from_checkpoint(slim, checkpoint)
    card = default_card(model, out.name, slim)
    if quality:
        card["quality"] = quality
    paths = export_model(model, out, card)
    if keep_pth:
        torch.save(slim, out / f"{out.name}.pth")
    return paths


def differing_weights(a: str | Path, b: str | Path) -> int:
    """How many weight tensors of two encoder.onnx files differ (matched by name; a missing name counts)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    wa = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(a)).graph.initializer}
    wb = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(b)).graph.initializer}
    names = set(wa) | set(wb)
    return sum(1 for n in names if n not in wa or n not in wb or wa[n].shape != wb[n].shape
               or not np.array_equal(np.asarray(wa[n], np.float32), np.asarray(wb[n], np.float32)))


def store_weights_fp16(path: str | Path, min_size: int = 1024) -> None:
    """Keep an ONNX file's large float32 weights as float16 plus a Cast back to float32 (onnxruntime
    folds the Cast at load, so it runs in fp32): half the bytes on disk, weights rounded to fp16."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load(str(path))
    graph = proto.graph
    casts, keep = [], []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if init.data_type == TensorProto.FLOAT and arr.size >= min_size:
            half = numpy_helper.from_array(arr.astype(np.float16), init.name + "__fp16")
            keep.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                          name=init.name + "__cast"))
        else:
            keep.append(init)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def ship_variant(checkpoint: str | Path, folder: str | Path, variant: str, training_data: str, hardware: str,
                 description: str) -> Path:
    """A run continued from a model folder's checkpoint with its encoder BACKBONE frozen ->
    ``encoder.<variant>.onnx`` + ``decoder.<variant>.onnx`` in that folder, used as ``FOLDER@variant``.

    The variant needs its own encoder file because the exported encoder ends with the decoder's first
    layer (the factored projection, which the variant trained); that file stores its weights as
    float16 (``store_weights_fp16``: half the size; the model still runs in fp32). Unless the run
    fine-tuned its encoder on purpose (``train_encoder`` in its record: the variant then carries its
    own backbone too), it is refused when the backbone differs from the folder's (at most the
    projection's 2 tensors may). Both cards are named
    "<folder's name>@<variant>" with the folder's version."""
    import tempfile

    from ..core.models import decoder_file, encoder_file

    folder = Path(folder)
    if not (folder / ENCODER_FILE).is_file():
        raise ConfigError(f"{folder} is not a model folder (no {ENCODER_FILE}); pass the folder the variant belongs to")
    if not variant.isidentifier() or variant == "int8":
        raise ConfigError(f"variant name {variant!r} must be a plain word (letters, digits, _), not int8")
    base = ModelCard.from_onnx(folder / DECODER_FILE)
    with tempfile.TemporaryDirectory(prefix="mlin-variant-") as tmp:
        out = Path(tmp) / folder.name
        ship_checkpoint(checkpoint, out, training_data, hardware, description=description, keep_pth=False)
        changed = differing_weights(out / ENCODER_FILE, folder / ENCODER_FILE)
        own_encoder = bool(read_checkpoint(checkpoint)["train"]["config"].get("train_encoder"))
        if changed > 2 and not own_encoder:
            raise ConfigError(f"{checkpoint} was not trained on the encoder of {folder} ({changed} weight tensors "
                              f"differ, at most the 2 of the decoder's first layer may); a variant must keep that "
                              f"folder's encoder frozen.")
        update_card(out, name=f"{base.name}@{variant}", version=base.version)
        store_weights_fp16(out / ENCODER_FILE)
        for src, dst in ((ENCODER_FILE, encoder_file(variant)), (DECODER_FILE, decoder_file(variant))):
            tmp_target = folder / f".{dst}.tmp"
            shutil.copyfile(out / src, tmp_target)
            tmp_target.replace(folder / dst)
    return folder / decoder_file(variant)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a .pth checkpoint (MLIN or official LIIF)")
    parser.add_argument("--out", required=True, help="folder for encoder.onnx and decoder.onnx")
    parser.add_argument("--name", default=None, help="model name in the card (default: folder name)")
    parser.add_argument("--quality", default=None, metavar="RESULTS_JSON[:METHOD]",
                        help="put the measured PSNR/SSIM from an `evaluate` results.json into the card")
    parser.add_argument("--ship", action="store_true",
                        help="ship a training run: card budget from the run's record, slim .pth beside the ONNX pair")
    parser.add_argument("--training-data", default=None, help="with --ship: the training data, in words")
    parser.add_argument("--hardware", default=None, help="with --ship: what the training ran on, in words")
    parser.add_argument("--description", default=None, help="with --ship: the card's one-line 'when to use it'")
    parser.add_argument("--no-pth", action="store_true", help="with --ship: do not keep the slim .pth")
    parser.add_argument("--variant", default=None, metavar="NAME",
                        help="with --ship: write only the decoder, as --out/decoder.NAME.onnx of the existing model "
                             "folder --out whose frozen encoder the run was trained on (used as --model FOLDER@NAME)")


def run(args: argparse.Namespace) -> int:
    quality = None
    if args.quality:
        path, _, method = args.quality.partition(":")
        quality = quality_from_results(path, method or (args.name or Path(args.out).name))
    if args.ship:
        if not (args.training_data and args.hardware):
            raise ConfigError("--ship needs --training-data and --hardware (they go into the model card)")
        if args.variant:
            target = ship_variant(args.checkpoint, args.out, args.variant, args.training_data, args.hardware,
                                  args.description or "")
            print(f"wrote {target}")
            return 0
        enc, dec = ship_checkpoint(args.checkpoint, args.out, args.training_data, args.hardware, quality,
                                   args.description, keep_pth=not args.no_pth)
    else:
        enc, dec = export_checkpoint(args.checkpoint, args.out, args.name, quality)
    print(f"wrote {enc} and {dec}")
    return 0
