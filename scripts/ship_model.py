"""Ship a trained checkpoint as a model folder: slim .pth (no optimizer state), ONNX pair, card.

The card's training fields are written from the checkpoint's own record (iterations, batch, rates,
wall time), so the shipped card says what was really run; `--quality` puts measured PSNR/SSIM in.

Usage: .venv/bin/python scripts/ship_model.py runs/mlin/checkpoint.pth models/mlin-edsr-ucmerced \
           --training-data "UC Merced Land Use, train split (1260 images)" --hardware "1 CPU thread" \
           [--quality docs/results/ucmerced_val.json:mlin]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from mlin_qgis.ml.export import default_card, export_model, quality_from_results
from mlin_qgis.ml.model import load_model, read_checkpoint


def phase_text(phase: dict, hardware: str) -> str:
    cfg = phase["config"]
    sampler = cfg["sampler"]
    rates = f"decoder lr {cfg['lr']:g}" + (f", meta lr {cfg['lr_meta']:g}" if cfg["weighting"] == "meta" else "")
    return (f"{phase['iteration']} iterations with {cfg.get('loss', 'l1').upper()} loss, batch {cfg['batch_size']}, "
            f"{sampler['sample_q']} queries per {sampler['lr_size']}x{sampler['lr_size']} crop, scales "
            f"U({sampler['scale_min']:g}, {sampler['scale_max']:g}), Adam ({rates}), warm-up {cfg['warmup']} then "
            f"cosine; {phase['seconds'] / 3600:.2f} h wall on {hardware}; crop bank of {cfg['bank_size']} encoded "
            f"crops refreshed {cfg['bank_refresh']} per iteration; seed {cfg['seed']}")


def budget_text(train: dict, hardware: str) -> str:
    """One sentence per training phase (a continuation keeps the record of the run it started from)."""
    phases = list(train.get("phases", [])) + [train]
    text = ". Then ".join(phase_text(p, hardware) for p in phases)
    if len(phases) > 1:
        total_it = sum(p["iteration"] for p in phases)
        total_h = sum(p["seconds"] for p in phases) / 3600
        text += f". In all: {total_it} iterations, {total_h:.2f} h"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("--training-data", required=True)
    parser.add_argument("--hardware", required=True, help="what the training ran on, in words")
    parser.add_argument("--quality", default=None, metavar="RESULTS_JSON:METHOD")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = read_checkpoint(args.checkpoint)
    train = raw["train"]
    card_info = dict(raw.get("card", {}))
    card_info["training_data"] = args.training_data
    card_info["training_budget"] = budget_text(train, args.hardware)
    slim = {k: v for k, v in raw.items() if k != "train"}
    slim["train"] = {k: v for k, v in train.items() if k != "optimizer"}
    slim["card"] = card_info
    slim_path = out / f"{out.name}.pth"
    torch.save(slim, slim_path)
    model = load_model(slim_path)
    card = default_card(model, out.name, slim)
    if args.quality:
        path, _, method = args.quality.partition(":")
        card["quality"] = quality_from_results(path, method)
    enc, dec = export_model(model, out, card)
    print(f"wrote {slim_path} ({slim_path.stat().st_size / 1e6:.1f} MB), {enc} and {dec}")
    print(f"budget: {card['training_budget']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
