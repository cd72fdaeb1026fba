"""Read a shipped ONNX pair back into a torch model, so training can continue from what ships.

`models/` holds only the ONNX files the plugin runs; the torch checkpoints that made them live under
`runs/` and are gone on a fresh machine. The export is lossless about the weights (up to float16
storage where a variant was shipped half-size), so the pair is enough to rebuild the model: encoder
weights keep their torch names; the decoder's matrices are stored transposed under anonymous names
in a fixed order, and the first layer is split into its 3x3 code convolution (in the encoder graph)
and its coordinate/cell columns (in the decoder graph)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict

import numpy as np
import torch

from ..core.errors import CheckpointError
from ..core.models import decoder_file, encoder_file
from .decoder import DecoderConfig
from .model import ImplicitSR


def _initializers(path: Path) -> Dict[str, np.ndarray]:
    import onnx  # export/import-time only
    from onnx import numpy_helper

    if not path.is_file():
        raise CheckpointError(f"{path} not found: pass a model folder holding the ONNX pair")
    out = {}
    for init in onnx.load(str(path)).graph.initializer:
        name = init.name[: -len("__fp16")] if init.name.endswith("__fp16") else init.name
        out[name] = numpy_helper.to_array(init).astype(np.float32)
    return out


def _anonymous(weights: Dict[str, np.ndarray], op: str) -> list[np.ndarray]:
    """Initializers torch named `onnx::<op>_<n>`, in export order."""
    keyed = [(int(m.group(1)), v) for k, v in weights.items() if (m := re.fullmatch(rf"onnx::{op}_(\d+)", k))]
    return [v for _, v in sorted(keyed, key=lambda kv: kv[0])]


def model_from_onnx(folder: str | Path, variant: str = "") -> ImplicitSR:
    """The torch model of the ONNX pair in `folder` (`variant`: '' or e.g. 'sharp').

    Supports the layout this project exports: EDSR-baseline encoder, MLP [256]x4, meta weighting
    (embed 32, hidden 64) or area weighting. Anything else is refused rather than guessed."""
    folder = Path(folder)
    enc = _initializers(folder / encoder_file(variant))
    dec = _initializers(folder / decoder_file(variant))
    meta = "decoder.meta.embed.bias" in dec
    model = ImplicitSR("edsr-baseline", DecoderConfig(weighting="meta" if meta else "area"))
    sd = {k: v.clone() for k, v in model.state_dict().items()}

    for name, value in enc.items():
        if name.startswith("model.encoder."):
            sd[name[len("model."):]] = torch.from_numpy(value)
    conv = _anonymous(enc, "Conv")
    mats = _anonymous(dec, "MatMul")
    expected = 8 if meta else 5
    if len(conv) != 1 or len(mats) != expected:
        raise CheckpointError(f"{folder}: not an ONNX pair exported by mlin-qgis (found {len(conv)} projection "
                              f"and {len(mats)} decoder matrices, expected 1 and {expected})")
    geo, *mlp = mats[:5]
    first = np.concatenate([conv[0].reshape(conv[0].shape[0], -1), geo.T], axis=1)
    sd["decoder.imnet.layers.0.weight"] = torch.from_numpy(first)
    sd["decoder.imnet.layers.0.bias"] = torch.from_numpy(enc["model.decoder.imnet.layers.0.bias"])
    for index, matrix in zip((2, 4, 6, 8), mlp):
        sd[f"decoder.imnet.layers.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(matrix.T))
        sd[f"decoder.imnet.layers.{index}.bias"] = torch.from_numpy(dec[f"decoder.imnet.layers.{index}.bias"])
    if meta:
        for key, matrix in zip(("embed", "head.0", "head.2"), mats[5:]):
            sd[f"decoder.meta.{key}.weight"] = torch.from_numpy(np.ascontiguousarray(matrix.T))
            sd[f"decoder.meta.{key}.bias"] = torch.from_numpy(dec[f"decoder.meta.{key}.bias"])
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{folder}: the ONNX weights do not fit the model ({str(exc).splitlines()[0]})") from None
    return model.eval()


def _budget_totals(text: str) -> tuple[int, float]:
    """(iterations, seconds) of a card's budget sentence: its "In all" sum, else the one phase's."""
    total = re.search(r"In all: (\d+) iterations, ([\d.]+) h", text)
    if total:
        return int(total.group(1)), float(total.group(2)) * 3600
    its = re.search(r"(\d+) iterations", text)
    hours = re.search(r"([\d.]+) h wall", text)
    return (int(its.group(1)) if its else 0), (float(hours.group(1)) * 3600 if hours else 0.0)


def checkpoint_from_onnx(spec: str, out: str | Path) -> Path:
    """Write a training checkpoint for the shipped model `spec` (FOLDER or FOLDER@variant).

    Its training record is one phase holding the card's own budget sentence, so a run continued from
    it (`init_checkpoint`) and then shipped states the whole budget, as a continuation of a run does."""
    from ..core.card import ModelCard
    from ..core.models import resolve_model, split_spec
    from .model import save_model

    _, variant = split_spec(spec)
    folder = resolve_model(spec)
    model = model_from_onnx(folder, variant or "")
    card = ModelCard.from_onnx(folder / decoder_file(variant or ""))
    iterations, seconds = _budget_totals(card.training_budget)
    record = {"iteration": iterations, "seconds": seconds, "config": {"loss": "l2", "weighting": model.decoder.cfg.weighting},
              "text": f"{card.training_budget} (the shipped {card.name}, read back from its ONNX files)"}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, out, {"train": {**record, "phases": []}, "card": {"training_data": card.training_data}})
    return out


def add_arguments(parser) -> None:  # noqa: ANN001 - argparse parser
    parser.add_argument("--model", required=True, help="a shipped model: FOLDER, a name under models/, or NAME@variant")
    parser.add_argument("--out", required=True, help="the .pth to write (use it as a training config's init_checkpoint)")


def run(args) -> int:  # noqa: ANN001 - argparse namespace
    path = checkpoint_from_onnx(args.model, args.out)
    print(f"wrote {path}")
    return 0
