"""Export a degradation-aware MLIN (mixture.py) to the folder the torch-free engine runs (core/aware.py).

`python -m mlin_qgis export-aware --weights runs/aware-mlin/weights.fp16.pth --out models/mlin-aware-ucmerced`

The folder holds one plain encoder/decoder ONNX pair (the network mixed for a clean-looking input, so
the files are a valid model on their own), ``experts.npz`` with every expert's value of every weight
of that pair (float16) and the gate, and ``estimator.onnx``. Every expert is exported through the same
graph, so the pairs' initializers share names and shapes; mixing them is exact because every
transformation export applies to a parameter (reshape, slice, transpose) is linear."""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

from ..core.aware import ESTIMATOR_FILE, EXPERTS_FILE, LOOKS
from ..core.errors import CheckpointError
from ..core.models import DECODER_FILE, ENCODER_FILE
from .estimator import CODE_NAMES, TOP_FRACTION, offset_score
from .export import OPSET, default_card, export_model, store_weights_fp16
from .mixture import DegradationAwareSR, MixtureConfig
from .model import load_model
from .toward_liif import interpolate_toward_liif, parse_keep

log = logging.getLogger(__name__)


def load_aware(path: str | Path) -> DegradationAwareSR:
    """The mixture from a `train-aware` checkpoint or its float16 weights file."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "state_dict" not in state or "config" not in state:
        raise CheckpointError(f"{path} is not written by `train-aware`; pass its checkpoint.pth or weights.fp16.pth")
    cfg = state["config"]
    pooling = cfg.get("estimator_pooling") or [TOP_FRACTION] * len(CODE_NAMES)  # older runs: the top fifth
    model = DegradationAwareSR(MixtureConfig(experts=list(cfg["experts"]), estimator_width=cfg["estimator_width"],
                                             estimator_pooling=list(pooling),
                                             estimator_context=list(cfg.get("estimator_context") or [])))
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state["state_dict"].items()}, strict=False)
    if [k for k in missing if not k.startswith("template.")] or unexpected:
        raise CheckpointError(f"{path} does not fit the degradation-aware model ({missing[:3]}, {unexpected[:3]})")
    return model.eval()


def _float_initializers(path: Path) -> Dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    out = {}
    for init in onnx.load(str(path)).graph.initializer:
        value = numpy_helper.to_array(init)
        if value.dtype == np.float32:
            out[init.name] = value
    return out


def _stored_initializers(path: Path) -> Dict[str, np.ndarray]:
    """Every initializer as stored (float16 ones included, under their ``__fp16`` names)."""
    import onnx
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in onnx.load(str(path)).graph.initializer}


def export_aware(model: DegradationAwareSR, out_dir: str | Path, card: Dict[str, Any]) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    k = len(model.cfg.experts)
    stacks: Dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(k):
            pi = torch.zeros(k)
            pi[i] = 1.0
            enc, dec = export_model(model.single_model(pi), Path(tmp) / str(i), card)
            for graph, path in (("encoder", enc), ("decoder", dec)):
                for name, value in _float_initializers(path).items():
                    stacks.setdefault(f"{graph}/{name}", []).append(value)
    bad = [key for key, values in stacks.items() if len(values) != k or len({v.shape for v in values}) != 1]
    if bad:
        raise CheckpointError(f"the experts' graphs differ at {bad[:3]}; cannot mix them")
    # One expert (the general robust one, the middle of their lineage) as float16 and the others as float16
    # differences from it: the differences are small, so they compress better (~1.3 MB less, measured);
    # core/aware.py adds them back.
    base = 1 if k > 2 else 0
    arrays: Dict[str, np.ndarray | np.int64] = {}
    for key, values in stacks.items():
        if all(np.array_equal(values[0], v) for v in values[1:]):
            continue
        halves = [v.astype(np.float16).astype(np.float32) for v in values]  # each expert rounded to float16 first
        arrays[key] = np.stack([h if i == base else h - halves[base] for i, h in enumerate(halves)]).astype(np.float16)
    arrays["format/delta_base"] = np.int64(base)
    arrays["gate/weight"] = model.gate.weight.detach().numpy().astype(np.float64)
    arrays["gate/bias"] = model.gate.bias.detach().numpy().astype(np.float64)
    arrays["estimator/pooling"] = np.asarray(model.estimator.pooling, dtype=np.float64)
    # the plain pair: the network mixed for a clean-looking input
    clean = model.mixing(torch.tensor([LOOKS["clean"]], dtype=torch.float32))[0]
    enc, dec = export_model(model.single_model(clean), out, card)
    for graph, path in (("encoder", enc), ("decoder", dec)):
        store_weights_fp16(path)  # large weights as float16 on disk: the folder stays small
        data = path.read_bytes()
        stored = _stored_initializers(path)
        for key in [k for k in arrays if k.startswith(graph + "/")]:
            name = key[len(graph) + 1:]
            half = name + "__fp16" in stored
            value = stored[name + "__fp16"] if half else stored[name]
            raw = value.astype("<f2" if half else "<f4").tobytes()
            start = data.find(raw)
            if start < 0 or data.find(raw, start + 1) >= 0:
                raise CheckpointError(f"cannot place {name} in {path} uniquely; the file cannot be patched")
            arrays[f"offset/{graph}/{name}"] = np.int64(start)
            arrays[f"half/{graph}/{name}"] = np.int64(half)
    np.savez_compressed(out / EXPERTS_FILE, **arrays)
    image = torch.rand(1, 3, 32, 28)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Estimator(model), (image,), str(out / ESTIMATOR_FILE), opset_version=OPSET, dynamo=False,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {2: "h", 3: "w"}, "logits": {2: "hh", 3: "ww"}})
    mixed = sum(key.startswith(("encoder/", "decoder/")) for key in arrays)
    log.info("exported %s (%d mixed weights, %d experts)", out, mixed, k)
    return out


class _Estimator(torch.nn.Module):
    def __init__(self, model: DegradationAwareSR) -> None:
        super().__init__()
        self.estimator = model.estimator

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.estimator.logit_map(image)


def aware_card(model: DegradationAwareSR, name: str, state: Dict[str, Any]) -> Dict[str, Any]:
    card = default_card(model.template, name, {})
    cfg = state.get("config", {})
    hours = float(state.get("seconds", 0.0)) / 3600
    card.update({
        "trained_scale_min": 1.0, "trained_scale_max": float(cfg.get("sampler", {}).get("scale_max", 5.0)),
        "training_data": "UC Merced train (fit split, configs/splits/ucmerced_dev.json), degraded LR drawn per crop "
                         f"(configs/aware_mlin.yaml): {json.dumps(cfg.get('degradation', {}))}",
        "training_budget": f"experts from mlin-edsr-ucmerced, mlin-robust-ucmerced and its @sharp variant, then "
                           f"{int(state.get('iteration', 0))} iterations of the mixture ({hours:.2f} h)",
        "licence": "encoder: BSD-3-Clause (LIIF, Yinbo Chen), fine-tuned; decoder, meta network, experts, gate and "
                   "estimator: trained by mlin-qgis on UC Merced (USGS public domain imagery)",
        "description": "Degradation-aware MLIN: one network whose weights are mixed once per raster from three experts "
                       "by a gate reading an estimated degradation code (aliasing, blur, noise, compression); "
                       "encoder fine-tuned",
    })
    return card


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="train-aware checkpoint.pth or weights.fp16.pth")
    parser.add_argument("--out", required=True, help="model folder to write (e.g. models/mlin-aware-ucmerced)")
    parser.add_argument("--name", default=None, help="model name in the card (default: the folder's name)")
    parser.add_argument("--keep", action="append", default=[], metavar="EXPERT=SHARE",
                        help="move an expert part of the way back to the official LIIF in weight space, keeping "
                        "SHARE of it (e.g. clean=0.5; toward_liif.py); repeatable")
    parser.add_argument("--aliasing-offset", type=float, default=0.0, metavar="LOGIT",
                        help="add LOGIT to the estimator's aliasing logit before export (estimator.offset_score): "
                        "input that looks slightly aliased gets more of the aliased-input expert")
    parser.add_argument("--liif", default="../shared/weights/edsr-baseline-liif.pth",
                        help="the official LIIF checkpoint that --keep interpolates towards")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    model = load_aware(args.weights)
    name: str = args.name or Path(args.out).name
    card = aware_card(model, name, state)
    keep = parse_keep(args.keep)
    if keep:
        if not Path(args.liif).is_file():
            raise CheckpointError(f"--keep needs the official LIIF checkpoint: {args.liif} not found (pass --liif)")
        interpolate_toward_liif(model, load_model(args.liif), keep)
        card["training_budget"] += ("; then, in weight space, " + ", ".join(
            f"{k} expert {v:g} as trained + {1 - v:g} official LIIF" for k, v in keep.items()))
    if args.aliasing_offset:
        offset_score(model.estimator, "aliasing", args.aliasing_offset)
        card["training_budget"] += f"; then the aliasing logit offset by {args.aliasing_offset:+g} (chosen on dev)"
    export_aware(model, args.out, card)
    for f in (ENCODER_FILE, DECODER_FILE, EXPERTS_FILE, ESTIMATOR_FILE):
        log.info("%s: %.1f MB", f, (Path(args.out) / f).stat().st_size / 1e6)
    return 0
