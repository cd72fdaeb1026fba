"""ImplicitSR = encoder (frozen for MLIN's paper setting, fine-tuned in the shipped default) + implicit
decoder; loading and saving checkpoints.

Checkpoints carry their own spec (encoder name, decoder config) so loading needs no config file.
Two kinds load: the official LIIF checkpoint (`{'model': {'name': 'liif', 'args', 'sd'}}`) and ours
(`{'kind': 'mlin-qgis', ...}`)."""
from __future__ import annotations

import pickle
import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from ..core.errors import CheckpointError
from .decoder import DecoderConfig, ImplicitDecoder, pixel_query_grid
from .encoders import build_encoder

CHECKPOINT_KIND = "mlin-qgis"


class ImplicitSR(nn.Module):
    """Arbitrary-scale SR: encoder features -> factored implicit decoder at any output grid."""

    # LIIF's normalisation: inputs and targets are (x - 0.5) / 0.5.
    input_mean = 0.5
    input_std = 0.5

    def __init__(self, encoder_name: str = "edsr-baseline", decoder_cfg: Optional[DecoderConfig] = None) -> None:
        super().__init__()
        self.encoder_name = encoder_name
        self.encoder = build_encoder(encoder_name)
        # a copy: the caller's config (or a shared default) must not be changed behind its back
        decoder_cfg = replace(decoder_cfg) if decoder_cfg is not None else DecoderConfig()
        decoder_cfg.feat_dim = self.encoder.out_dim
        self.decoder = ImplicitDecoder(decoder_cfg)

    @property
    def receptive_field(self) -> int:
        return int(self.encoder.receptive_field)

    def freeze_encoder(self) -> None:
        """MLIN keeps the natural-photo encoder fixed: no gradients, eval mode for good."""
        for p in self.encoder.parameters():
            p.requires_grad = False
        self.encoder.eval()

    def train(self, mode: bool = True) -> "ImplicitSR":
        super().train(mode)
        if not any(p.requires_grad for p in self.encoder.parameters()):
            self.encoder.eval()
        return self

    def encode(self, lr: torch.Tensor) -> torch.Tensor:
        """Latent features of an LR image in [0, 1]."""
        return self.encoder((lr - self.input_mean) / self.input_std)

    def forward(self, lr: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Colours (B, N, out) in LIIF's normalised units at `coord`/`cell` (B, N, 2), LR pixel units."""
        return self.decoder.query(self.decoder.project(self.encode(lr)), coord, cell)[0]

    def super_resolve(self, lr: torch.Tensor, out_size: Tuple[int, int], chunk: int = 65536) -> torch.Tensor:
        """(B, 3, h, w) in [0, 1] -> (B, 3, H, W) in [0, 1] units, not clipped."""
        b, _, h, w = lr.shape
        proj = self.decoder.project(self.encode(lr))
        coord, cell = pixel_query_grid((h, w), out_size, device=lr.device, dtype=lr.dtype)
        outs = []
        for start in range(0, coord.shape[0], chunk):
            c = coord[start : start + chunk].unsqueeze(0).expand(b, -1, -1)
            s = cell[start : start + chunk].unsqueeze(0).expand(b, -1, -1)
            outs.append(self.decoder.query(proj, c, s)[0])
        rgb = torch.cat(outs, dim=1) * self.input_std + self.input_mean
        return rgb.permute(0, 2, 1).reshape(b, -1, out_size[0], out_size[1])

    def spec(self) -> Dict[str, Any]:
        return {"encoder": self.encoder_name, "decoder": asdict(self.decoder.cfg)}


def read_checkpoint(path: str | Path) -> Dict[str, Any]:
    """The dict stored in a .pth file, loaded with torch's weights-only unpickler.

    Both kinds of checkpoint we read are plain dicts of tensors and primitives, so nothing else is
    allowed: a pickle that would construct other objects (and so could run code on load) is refused
    before any of it runs."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} — pass the path of a .pth file "
                              "(an official LIIF checkpoint or one written by `python -m mlin_qgis train`)")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = re.search(r"unsupported GLOBAL (\S+)", str(exc))
        if unsafe:
            raise CheckpointError(f"refusing to load {path}: it asks to build {unsafe.group(1)}, not just tensors "
                                  "and plain data, which could run code when loaded. Use a checkpoint from "
                                  "`python -m mlin_qgis train` or an official LIIF .pth") from None
        raise CheckpointError(f"cannot read checkpoint {path}: it is not a torch checkpoint (unreadable pickle). "
                              "Is it a .pth file?") from None
    except Exception as exc:  # zip and torch errors all mean the same to a user
        raise CheckpointError(f"cannot read checkpoint {path}: {_first_line(exc)}. Is it a torch .pth file?") from None
    if not isinstance(ck, dict):
        raise CheckpointError(f"{path} is not a model checkpoint (found {type(ck).__name__})")
    return ck


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__



def load_model(path: str | Path, weighting: Optional[str] = None) -> ImplicitSR:
    """Load an official LIIF checkpoint or one of ours; `weighting` switches area/meta.

    Loading LIIF with weighting='meta' adds a meta-weight network that starts at LIIF's weights."""
    path = Path(path)
    return model_from_checkpoint(read_checkpoint(path), path, weighting)


def model_from_checkpoint(ck: Dict[str, Any], path: str | Path, weighting: Optional[str] = None) -> ImplicitSR:
    """The model of an already read checkpoint dict (`path` only names it in errors)."""
    if ck.get("kind") == CHECKPOINT_KIND:
        spec = ck["model"]
        cfg = DecoderConfig(**spec["decoder"])
        saved = cfg.weighting
        if weighting:
            cfg.weighting = weighting
        model = ImplicitSR(spec["encoder"], cfg)
        sd = ck["state_dict"]
        strict = saved == cfg.weighting
    elif isinstance(ck.get("model"), dict) and ck["model"].get("name") == "liif":
        args = ck["model"]["args"]
        imnet = args.get("imnet_spec", {}).get("args", {})
        cfg = DecoderConfig(hidden=list(imnet.get("hidden_list", [256] * 4)), weighting=weighting or "area")
        if not (args.get("local_ensemble", True) and args.get("feat_unfold", True) and args.get("cell_decode", True)):
            raise CheckpointError(f"{path}: only LIIF with local ensemble, feat-unfold and cell decoding is supported")
        model = ImplicitSR(args["encoder_spec"]["name"], cfg)
        sd = {k.replace("imnet.layers", "decoder.imnet.layers"): v for k, v in ck["model"]["sd"].items()}
        strict = cfg.weighting == "area"
    else:
        raise CheckpointError(
            f"{path} is not an MLIN or LIIF checkpoint (keys: {', '.join(sorted(ck)[:6])}); "
            "expected an official LIIF .pth or one written by `python -m mlin_qgis train`"
        )
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not (not strict and k.startswith("decoder.meta."))]
    unexpected = [k for k in unexpected if not (not strict and k.startswith("decoder.meta."))]
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit the model (missing {missing[:4]}, unexpected {unexpected[:4]})")
    model.eval()
    return model


def save_model(model: ImplicitSR, path: str | Path, extra: Optional[Dict[str, Any]] = None) -> None:
    """Self-describing checkpoint: spec + weights (+ training state in `extra`)."""
    payload: Dict[str, Any] = {"kind": CHECKPOINT_KIND, "model": model.spec(), "state_dict": model.state_dict()}
    payload.update(extra or {})
    tmp = Path(str(path) + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
