"""Export a checkpoint to the encoder/decoder ONNX pair the torch-free engine runs.

The encoder graph includes the decoder's factored first layer (a 3x3 convolution on the LR grid), so
the decoder graph only gathers projected codes per query. The model card travels inside both files
(`metadata_props['mlin_card']`) so the engine needs nothing else."""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from ..core.errors import DataError
from .model import ImplicitSR, model_from_checkpoint, read_checkpoint

OPSET = 17
CARD_KEY = "mlin_card"
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

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    enc_path, dec_path = out / "encoder.onnx", out / "decoder.onnx"
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a .pth checkpoint (MLIN or official LIIF)")
    parser.add_argument("--out", required=True, help="folder for encoder.onnx and decoder.onnx")
    parser.add_argument("--name", default=None, help="model name in the card (default: folder name)")
    parser.add_argument("--quality", default=None, metavar="RESULTS_JSON[:METHOD]",
                        help="put the measured PSNR/SSIM from an `evaluate` results.json into the card")


def run(args: argparse.Namespace) -> int:
    quality = None
    if args.quality:
        path, _, method = args.quality.partition(":")
        quality = quality_from_results(path, method or (args.name or Path(args.out).name))
    enc, dec = export_checkpoint(args.checkpoint, args.out, args.name, quality)
    print(f"wrote {enc} and {dec}")
    return 0
