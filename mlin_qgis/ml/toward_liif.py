"""Pull experts of the aware model part of the way back to the official LIIF, in weight space.

WiSE-FT's idea (Wortsman et al., 2022): weights fine-tuned from a pretrained start, averaged with that
start, keep most of the fine-tuning's gain on its own data and more of the start's robustness elsewhere.
Our experts descend from LIIF (its encoder and MLP; the meta-weight head's logits are log(area) plus a
correction whose last layer started at zero), so LIIF in this parametrisation is: LIIF's encoder and MLP,
the head's last layer at zero (no correction: exactly LIIF's local ensemble), and the head's hidden
layers as the expert has them (they do not matter once the last layer is zero).

    W_k <- keep_k * W_k + (1 - keep_k) * W_LIIF

Why: trained on UC Merced alone, the clean path fell 0.3-0.4 dB below LIIF on natural photos (chunk 4
measured it on Set5, the dev check for off-UC Merced data); keeping half of the clean expert recovered
half of that, level on dev, but cost up to 2 dB on aliased images that look clean, so the default does
not use it (training README, chunk 4). An export option for imagery known to be clean."""
from __future__ import annotations

from typing import Dict

import torch

from ..core.errors import ConfigError
from .mixture import DegradationAwareSR, _key
from .model import ImplicitSR

ZERO_AT_LIIF = "decoder.meta.head.2."  # the correction's last layer: zero = LIIF's area weights


def parse_keep(items: list[str]) -> Dict[str, float]:
    """['clean=0.5'] -> {'clean': 0.5} (the share of each named expert that is kept)."""
    keep: Dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            share = float(value)
        except ValueError:
            share = float("nan")
        if not sep or not 0.0 <= share <= 1.0:
            raise ConfigError(f"--keep {item!r}: write EXPERT=SHARE with a share from 0 (LIIF) to 1 (as trained)")
        keep[name] = share
    return keep


@torch.no_grad()
def interpolate_toward_liif(model: DegradationAwareSR, liif: ImplicitSR, keep: Dict[str, float]) -> None:
    """Move the named experts of `model` in place: keep[name] of the trained weights, the rest LIIF's."""
    unknown = sorted(set(keep) - set(model.cfg.experts))
    if unknown:
        raise ConfigError(f"no expert named {', '.join(unknown)}; the model has {', '.join(model.cfg.experts)}")
    start = dict(liif.named_parameters())
    for name in model.names:
        stack = model.experts[_key(name)]
        for expert, share in keep.items():
            k = model.cfg.experts.index(expert)
            if name in start:
                anchor = start[name].detach().to(stack.dtype)
            elif name.startswith(ZERO_AT_LIIF):
                anchor = torch.zeros_like(stack[k])
            else:
                continue  # the head's hidden layers: LIIF has none, the expert's own values stay
            if anchor.shape != stack[k].shape:
                raise ConfigError(f"{name}: LIIF's {tuple(anchor.shape)} does not fit the expert's {tuple(stack[k].shape)}")
            stack[k].copy_(share * stack[k] + (1.0 - share) * anchor)
