"""The robust model's result tables, from the runs of scripts/robust_eval.sh (runs/eval/): writes
docs/results/{acceptance,robustness,funsr,ensemble,meta_at_test}.md and prints them.

Usage: .venv/bin/python scripts/robust_tables.py [--eval runs/eval] [--model robust-enc] [--acceptance-name NAME]
(the default model `auto`: --model auto --acceptance-name acceptance; the robust decoder alone:
--model robust-enc --acceptance-name acceptance_robust_enc)"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = {  # FunSR paper (Chen et al., TGRS 2023), UC Merced test split, PSNR dB at x2 / x3 / x4
    "bicubic (published)": (31.96, 26.68, 24.55),
    "LIIF, EDSR, trained on UC Merced end to end (published)": (33.91, 28.42, 26.32),
    "FunSR, EDSR (published)": (34.61, 29.19, 27.11),
}


def run(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], capture_output=True, text=True,
                         cwd=ROOT)
    if out.returncode:
        raise SystemExit(out.stderr)
    return out.stdout


def load(path: Path) -> dict:
    return json.loads((path / "results.json").read_text() if path.is_dir() else path.read_text())


def paired_by_name(a: dict, ma: str, b: dict, mb: str, key: str) -> tuple[float, float, int, int]:
    """Mean/SE of PSNR(a.ma) - PSNR(b.mb) over the images both evaluated (matched by name)."""
    ia = dict(zip(a["images"], a["per_image"][ma][key]["psnr"]))
    ib = dict(zip(b["images"], b["per_image"][mb][key]["psnr"]))
    d = [ia[n] - ib[n] for n in ia if n in ib]
    mean = sum(d) / len(d)
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d)) if len(d) > 1 else 0.0
    return mean, se, sum(x > 0 for x in d), len(d)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=Path, default=ROOT / "runs" / "eval")
    parser.add_argument("--model", default="robust-enc")
    parser.add_argument("--acceptance-name", default="acceptance", help="file name (no .md) of the acceptance table")
    args = parser.parse_args()
    ev, m = args.eval, args.model
    docs = ROOT / "docs" / "results"
    written = {}

    accept_dirs = [str(p) for p in (ev / f"accept-{m}", ev / f"accept-{m}-clean") if p.is_dir()]
    if accept_dirs:
        written[args.acceptance_name] = run("acceptance_table.py", m, *accept_dirs,
                                    "--reference-clean", str(ROOT / "docs" / "results" / "ucmerced_val.json"))
    suite_dirs = [str(p) for p in sorted(ev.glob("suite-*")) if p.is_dir() and "area-at-test" not in p.name]
    if suite_dirs:
        written["robustness"] = run("robustness_report.py", *suite_dirs, "--focus", m, "--reference", "liif")

    funsr = [load(p) for p in sorted(ev.glob("funsr-*")) if (p / "results.json").is_file()]
    if funsr:
        lines = ["| method | x2 | x3 | x4 |", "|---|---:|---:|---:|"]
        seen = set()
        for res in funsr:
            for method in res["methods"]:
                if method in seen:
                    continue
                seen.add(method)
                cells = [f"{res['mean'][method][k]['psnr']:.2f}" for k in ("2", "3", "4")]
                lines.append(f"| {method} (ours, UC Merced val, {res['n_images']} images) | " + " | ".join(cells) + " |")
        for name, vals in PUBLISHED.items():
            lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
        written["funsr"] = "\n".join(lines) + "\n"

    ens, plain = ev / f"ensemble-{m}", ev / f"suite-{m}"
    if (ens / "bicubic").is_dir() and (plain / "bicubic").is_dir():
        lines = ["| LR made by | scale | x8 ensemble − one pass (dB ± SE) | ensemble wins | images |", "|---|---|---:|---:|---:|"]
        for deg in ("bicubic", "bicubic-aliased"):
            if not (ens / deg / "results.json").is_file():
                continue
            a, b = load(ens / deg), load(plain / deg)
            for key in ("2", "4"):
                mean, se, wins, n = paired_by_name(a, m, b, m, key)
                lines.append(f"| {deg} | x{key} | {mean:+.3f} ± {se:.3f} | {wins}/{n} | {n} |")
        written["ensemble"] = "\n".join(lines) + "\n"

    area = ev / "suite-robust-area-at-test"
    if area.is_dir() and m == "robust-enc":  # the same trunk with area weights: only means something for it
        lines = ["| LR made by | scale | meta weights − area weights, same trunk (dB ± SE) | meta wins |", "|---|---|---:|---:|"]
        for deg in ("bicubic", "bicubic-aliased", "jpeg"):
            if not (area / deg).is_dir():
                continue
            a, b = load(plain / deg), load(area / deg)
            for key in ("2", "4"):
                if key not in a["per_image"][m] or key not in b["per_image"]["robust-area-at-test"]:
                    continue
                mean, se, wins, n = paired_by_name(a, m, b, "robust-area-at-test", key)
                lines.append(f"| {deg} | x{key} | {mean:+.4f} ± {se:.4f} | {wins}/{n} |")
        written["meta_at_test"] = "\n".join(lines) + "\n"

    for name, text in written.items():
        (docs / f"{name}.md").write_text(text)
        print(f"## {name}\n\n{text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
