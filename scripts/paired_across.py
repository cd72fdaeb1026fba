"""Paired PSNR of two evaluation records made by different versions (the same images and LR, possibly the
same method name), e.g. today's `auto` against 0.7.0's `auto` rebuilt from git (a worktree at 53283f0).

The records must hold the same images in the same order and identical bicubic PSNR per image at each scale
(the proof that both saw the same LR). Prints, per scale: A and B over bicubic (mean, images below bicubic,
worst image) and A - B paired with its standard error and wins.

    python scripts/paired_across.py NEW/results.json auto OLD/results.json auto [--label-a 0.11 --label-b 0.7.0]"""
from __future__ import annotations

import argparse
import json
import math

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("method_a")
    ap.add_argument("b")
    ap.add_argument("method_b")
    ap.add_argument("--label-a", default="A")
    ap.add_argument("--label-b", default="B")
    args = ap.parse_args()
    a, b = json.load(open(args.a)), json.load(open(args.b))
    if a["images"] != b["images"] or a["degradation"] != b["degradation"]:
        raise SystemExit("the records cover different images or degradations: nothing to pair")
    print(f"{a['degradation']}, {len(a['images'])} images; {args.label_a} = {args.method_a} of {args.a}, "
          f"{args.label_b} = {args.method_b} of {args.b}")
    print(f"| scale | {args.label_a} − bicubic (below, worst) | {args.label_b} − bicubic (below, worst) "
          f"| {args.label_a} − {args.label_b} ± SE (wins) |")
    print("|---|---:|---:|---:|")
    for scale in [s for s in a["per_image"]["bicubic"] if s in b["per_image"]["bicubic"]]:
        bic = np.array(a["per_image"]["bicubic"][scale]["psnr"])
        if not np.allclose(bic, b["per_image"]["bicubic"][scale]["psnr"], atol=1e-6):
            raise SystemExit(f"x{scale}: bicubic PSNR differs per image, so the LR differs: nothing to pair")
        pa = np.array(a["per_image"][args.method_a][scale]["psnr"])
        pb = np.array(b["per_image"][args.method_b][scale]["psnr"])
        d = pa - pb
        cells = [f"{(p - bic).mean():+.2f} ({int((p < bic).sum())}, {(p - bic).min():+.2f})" for p in (pa, pb)]
        print(f"| x{scale} | {cells[0]} | {cells[1]} | {d.mean():+.3f} ± {d.std(ddof=1) / math.sqrt(len(d)):.3f} "
              f"({int((d > 0).sum())}/{len(d)}) |")


if __name__ == "__main__":
    main()
