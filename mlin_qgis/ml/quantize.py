"""`python -m mlin_qgis quantize --model FOLDER`: write the int8 decoder (decoder.int8.onnx) of a model.

onnxruntime's dynamic quantisation (weights int8 per output channel, activations quantised per call)
of the decoder's hidden 256x256 layers only: the first layer (already factored into ``proj`` on the
LR grid), the output layer, the meta-weight network and the mixing stay fp32, because they are small
and they are where an error shows directly in the colours or the weights. The file carries the same
model card, so the engine accepts it as the pair's decoder. Needs the `onnx` package (export time),
not torch; the runtime only reads the file.
"""
from __future__ import annotations

import argparse
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

from mlin_qgis.core.errors import MlinError
from mlin_qgis.core.models import decoder_file, resolve_model, spec_variant

log = logging.getLogger(__name__)

# The hidden layers of the decoder MLP as torch.onnx names them (one copy per neighbour: _1, _2, _3).
HIDDEN_MATMUL = re.compile(r"^/layers\.(2|4|6)(_\d+)?/MatMul$")


def hidden_matmuls(model: Any) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and HIDDEN_MATMUL.match(n.name)]


def inline_weight_identities(model: Any) -> int:
    """torch.onnx passes a weight shared by the four neighbours' copies of the MLP through Identity
    nodes; the quantiser only sees constant weights, so point those MatMuls at the weight itself."""
    weights = {i.name for i in model.graph.initializer}
    alias = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity" and n.input[0] in weights}
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            if name in alias:
                node.input[k] = alias[name]
    keep = [n for n in model.graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return len(alias)


def quantize_decoder(model: str | Path | None = None) -> Path:
    """decoder.onnx -> decoder.int8.onnx beside it (decoder.<v>.onnx -> decoder.<v>.int8.onnx for a
    variant; same card); returns its path."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = resolve_model(model)
    variant = spec_variant(model)
    source = folder / decoder_file(variant)
    proto = onnx.load(str(source))
    nodes = hidden_matmuls(proto)
    if not nodes:
        raise MlinError(f"{source} has no hidden decoder layers named like /layers.N/MatMul; it was not exported "
                        "by mlin export, so it cannot be quantised here.")
    target = folder / decoder_file(variant, "int8")
    with tempfile.TemporaryDirectory(prefix="mlin-quantize-") as tmp:
        inline_weight_identities(proto)
        plain = Path(tmp) / "decoder.fp32.onnx"
        onnx.save(proto, str(plain))
        raw = Path(tmp) / "decoder.int8.onnx"
        quantize_dynamic(str(plain), str(raw), per_channel=True, weight_type=QuantType.QInt8,
                         nodes_to_quantize=nodes, extra_options={"MatMulConstBOnly": True})
        quantised = onnx.load(str(raw))
        del quantised.metadata_props[:]
        for entry in proto.metadata_props:  # the same card: the engine checks that encoder and decoder agree
            quantised.metadata_props.add().CopyFrom(entry)
        quantised.producer_name = "mlin-qgis (onnxruntime dynamic int8)"
        onnx.save(quantised, str(raw))
        raw.replace(target)
        done = sum(1 for n in quantised.graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul"))
        if done != len(nodes):
            raise MlinError(f"only {done} of the {len(nodes)} hidden layers of {source} could be quantised; "
                            "nothing was written.")
    log.info("quantised %d hidden MatMuls of %s -> %s (%.1f MB -> %.1f MB)", done, source, target,
             source.stat().st_size / 1e6, target.stat().st_size / 1e6)
    return target


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", default=None, help="installed model name, model folder or FOLDER@variant "
                        "(default: the default model)")
    return parser


def run(args: Any) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = quantize_decoder(args.model)
    print(f"int8 decoder: {path}")
    return 0
