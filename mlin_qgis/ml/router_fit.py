"""Fit the router (mlin_qgis.core.router) on degraded TRAINING images: `mlin fit-router`.

Each sample is one training image made low-resolution at a random scale (log-uniform x1.2-x8) by a
chain drawn a third each from:

* ``clean``  antialiased bicubic, 8-bit (what the clean-trained model expects);
* ``sharp``  no prefilter (bicubic without antialiasing, nearest), at most faint noise (a sharp,
  aliasing sensor);
* ``other``  a broad random mix: blur, JPEG, visible noise, the other kernels.

Every route's model is run on every sample (a 96x96 window of its HR) and the router is fitted to
pick each sample's best route, weighted by what a wrong pick costs there (softmax regression on
the standardised features; full-batch gradient descent). Its inputs are the handcrafted features and
the mean logit of a small aliasing detector trained first on the same training images
(``mlin_qgis.ml.aliasing_fit``; cached, like the routes' PSNR, under ``--cache``). So it learns what
matters: an aliased input decoded by the clean model loses ~3 dB, a clean one decoded by the
general model ~0.4 dB, and a featureless image costs nothing whichever route it takes. The class labels are only reported (a
confusion table). Deterministic per seed; val is never read.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from mlin_qgis.core.aliasing_detector import AliasingDetector
from mlin_qgis.core.router import Router, expand, lr_features, luminance
from mlin_qgis.ml.degradation import Degradation, DegradationConfig, draw, make_lr
from mlin_qgis.ml.images import list_images, load_image

log = logging.getLogger(__name__)

CLASSES = ("clean", "sharp", "other")  # how a sample was made (reported, not fitted)
# Every candidate is measured on every sample; the router chooses among ROUTED only. The clean-trained
# model is measured but not routed: from the LR alone it cannot be told reliably enough when an input
# is a clean downsample, and a wrong pick costs far more (aliased: ~3.8 dB) than the right one gains
# (clean: ~0.44 dB) -- measured, docs/results/router.md.
CANDIDATES = {"clean": "mlin-edsr-ucmerced", "sharp": "mlin-robust-ucmerced@sharp", "other": "mlin-robust-ucmerced"}
ROUTED = ("sharp", "other")  # the last one is the general route (estimates use its speed)
DESCRIPTIONS = {
    "clean": "the input looks like a clean antialiased downsample: the model trained on clean LR",
    "sharp": "the input looks sampled without an antialiasing filter (aliased edges): the sharp-input decoder",
    "other": "the input does not look aliased (clean, blurred, JPEG-compressed, noisy or mixed): the general "
             "robust decoder",
}


@dataclass
class RouterFitConfig:
    data_root: str = "../shared/data/ucmerced/train"
    samples_per_image: int = 1
    scale_min: float = 1.2
    scale_max: float = 8.0
    sharp_noise_max: float = 1.5  # DN; a sharp chain with more noise than this is "other"
    terms: str = "linear"  # quadratic terms overfit at this sample count (held-out check)
    l2: float = 1e-4
    steps: int = 3000
    seed: int = 0
    detector: bool = True  # also read the aliasing detector's logits (ml/aliasing_fit.py)
    detector_outputs: int = 1  # 1: sharp or not; 3: clean / sharp / other
    detector_channels: tuple[int, ...] = (16, 32, 32)
    detector_steps: int = 6000
    routes: tuple[str, ...] = ROUTED  # the classes routed (keys of CANDIDATES; the general one last)
    # Also one JPEG-compressed clean downsample (quality 30-95; a JPEG-in-TIFF orthophoto or web tile)
    # of every `jpeg_every`-th image, class "other" (0: none). The broad mix alone has too few of them
    # for a three-route fit to learn that the clean model does not suit them.
    jpeg_every: int = 0
    # After the cross-entropy fit, this many steps of gradient descent on the mean expected cost
    # (sum over routes of probability x dB lost): a route that is rarely the very best but never far
    # from it (the general decoder) can then win where the argmax targets never pick it. 0: off.
    expected_cost_steps: int = 0
    # "pick": one model per raster; "blend": the routes' outputs averaged with the router's
    # probabilities (those under min_weight left out), the fit refined for blend_steps on the blend's
    # exact PSNR (route_gram, fit_blend)
    mixing: str = "pick"
    min_weight: float = 0.1
    blend_steps: int = 2000


def labelled_chain(rng: np.random.Generator, scale: float, cfg: RouterFitConfig) -> tuple[str, Degradation]:
    """One chain and its class: a third each drawn for clean, sharp and the broad mix (relabelled
    when the broad draw happens to be clean or sharp)."""
    u = rng.random()
    if u < 1 / 3:
        return "clean", Degradation()
    if u < 2 / 3:
        kernel = "bicubic-aliased" if rng.random() < 0.8 else "nearest"
        noise = float(rng.uniform(0.3, cfg.sharp_noise_max)) if rng.random() < 0.3 else 0.0
        return "sharp", Degradation(kernel=kernel, noise_sigma=noise, noise_seed=int(rng.integers(2**31)))
    chain = draw(rng, scale, DegradationConfig(p_clean=0.0, p_blur=0.5, p_noise=0.5, p_jpeg=0.5,
                                               noise_sigma=(1.0, 8.0), jpeg_quality=(30, 95)))
    return label_of(chain, cfg), chain


def label_of(chain: Degradation, cfg: RouterFitConfig) -> str:
    if chain.blur_sigma is not None or chain.jpeg_quality is not None:
        return "other"
    if chain.kernel == "bicubic" and chain.noise_sigma == 0:
        return "clean"
    if chain.kernel in ("bicubic-aliased", "nearest") and chain.noise_sigma <= cfg.sharp_noise_max:
        return "sharp"
    return "other"


@dataclass
class Sample:
    """One degraded training image: its LR (H, W, 3 floats), the centre window of its HR that the
    routes are scored on, its class by construction and its features."""

    lr: np.ndarray
    hr_window: np.ndarray  # (3, h, w)
    out_size: tuple[int, int]
    rows: tuple[int, int]
    cols: tuple[int, int]
    label: int
    features: np.ndarray


def make_samples(cfg: RouterFitConfig, progress: bool = True, window: int = 96) -> list[Sample]:
    """Degraded training images at random scales (log-uniform), `samples_per_image` per image."""
    images = list_images(cfg.data_root)
    rng = np.random.default_rng(cfg.seed)
    out: list[Sample] = []
    for i, path in enumerate(images):
        for _ in range(cfg.samples_per_image):
            out.append(_sample(path, rng, cfg, window))
        if progress and (i + 1) % 200 == 0:
            log.info("router samples: %d / %d images", i + 1, len(images))
    return out


def make_jpeg_samples(cfg: RouterFitConfig, window: int = 96) -> list[Sample]:
    """The extra family of `jpeg_every`: a clean antialiased downsample, then JPEG, of every
    `jpeg_every`-th training image (its own random stream, so the main samples do not change)."""
    if cfg.jpeg_every <= 0:
        return []
    jpeg_cfg = RouterFitConfig(**{**asdict(cfg), "seed": cfg.seed + 1000})
    images = list_images(cfg.data_root)[::cfg.jpeg_every]
    rng = np.random.default_rng(jpeg_cfg.seed)
    return [_sample(path, rng, jpeg_cfg, window, jpeg=True) for path in images]


def family_samples(cfg: RouterFitConfig, family: str) -> list[Sample]:
    """The samples of one family: "main" (make_samples) or "jpeg" (make_jpeg_samples)."""
    return make_samples(cfg) if family == "main" else make_jpeg_samples(cfg)


def _sample(path: Path | str, rng: np.random.Generator, cfg: RouterFitConfig, window: int,
            jpeg: bool = False) -> Sample:
    from mlin_qgis.ml.evaluate import protocol_sizes

    full = torch.from_numpy(load_image(path)).permute(2, 0, 1).float().div_(255.0).unsqueeze(0)
    scale = float(math.exp(rng.uniform(math.log(cfg.scale_min), math.log(cfg.scale_max))))
    (h, w), size = protocol_sizes(full.shape[-2], full.shape[-1], scale)
    if jpeg:
        name, chain = "other", Degradation(jpeg_quality=int(rng.integers(30, 96)))
    else:
        name, chain = labelled_chain(rng, scale, cfg)
    hr = full[:, :, :h, :w]
    lr = make_lr(hr, size, chain)[0].permute(1, 2, 0).numpy()
    r0, c0 = (h - min(window, h)) // 2, (w - min(window, w)) // 2
    rows, cols = (r0, r0 + min(window, h)), (c0, c0 + min(window, w))
    return Sample(lr=lr, hr_window=hr[0, :, rows[0]:rows[1], cols[0]:cols[1]].numpy(), out_size=(h, w),
                  rows=rows, cols=cols, label=CLASSES.index(name), features=lr_features(luminance(lr)))


def read_window(smp: Sample, lr: np.ndarray, halo: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The part of a sample's LR (3, h, w) that its HR window reads, plus the engine's halo, and its
    origin: decoding only that gives the whole image's result there."""
    (h, w), (oh, ow) = lr.shape[1:], smp.out_size
    r0 = max(0, int(smp.rows[0] * h / oh) - halo - 1)
    r1 = min(h, int(math.ceil(smp.rows[1] * h / oh)) + halo + 1)
    c0 = max(0, int(smp.cols[0] * w / ow) - halo - 1)
    c1 = min(w, int(math.ceil(smp.cols[1] * w / ow)) + halo + 1)
    return np.ascontiguousarray(lr[:, r0:r1, c0:c1]), (r0, c0)


def route_psnr(samples: list[Sample], spec: str, threads: int = 1, progress: bool = True) -> np.ndarray:
    """PSNR (dB) of one route's model on every sample's HR window (what a wrong pick would cost)."""
    from mlin_qgis.core.engine import SuperResolver

    engine = SuperResolver(spec, device="cpu", threads=threads)
    out = np.empty(len(samples))
    for k, smp in enumerate(samples):
        lr = np.ascontiguousarray(smp.lr.transpose(2, 0, 1), dtype=np.float32)
        window, origin = read_window(smp, lr, engine.halo)
        sr, _ = engine.super_resolve_window(window, origin, lr.shape[1:], smp.out_size, smp.rows, smp.cols)
        mse = float(np.mean((np.round(sr * 255.0) / 255.0 - smp.hr_window) ** 2))
        out[k] = 10 * np.log10(1.0 / max(mse, 1e-12))
        if progress and (k + 1) % 200 == 0:
            log.info("%s: %d / %d samples", spec, k + 1, len(samples))
    return out


def route_gram(samples: list[Sample], specs: Sequence[str], threads: int = 1, progress: bool = True) -> np.ndarray:
    """(N, K, K) per sample: the mean products of the K routes' errors on its HR window, so the MSE of
    any blend ``sum_k w_k sr_k`` (weights summing to 1) is ``w @ G @ w`` -- the blend's cost without
    storing an output. The diagonal is each route's own MSE (outputs clipped to [0, 1], not rounded)."""
    from mlin_qgis.core.engine import SuperResolver

    engines = [SuperResolver(spec, device="cpu", threads=threads) for spec in specs]
    halo = max(e.halo for e in engines)
    out = np.empty((len(samples), len(specs), len(specs)))
    for k, smp in enumerate(samples):
        lr = np.ascontiguousarray(smp.lr.transpose(2, 0, 1), dtype=np.float32)
        window, origin = read_window(smp, lr, halo)
        errs = np.stack([e.super_resolve_window(window, origin, lr.shape[1:], smp.out_size, smp.rows, smp.cols)[0]
                         for e in engines]).reshape(len(specs), -1).astype(np.float64) - smp.hr_window.reshape(1, -1)
        out[k] = errs @ errs.T / errs.shape[1]
        if progress and (k + 1) % 200 == 0:
            log.info("route errors: %d / %d samples", k + 1, len(samples))
    return out


def blend_psnr(weights: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """PSNR (dB) per sample of the blend with weights (N, K) given the error products (N, K, K)."""
    mse = np.einsum("ni,nij,nj->n", weights, gram, weights)
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-12))


def fit_blend(router: Router, features: np.ndarray, gram: np.ndarray, steps: int, lr: float = 0.02) -> Router:
    """Refine a fitted router so that its probabilities, used as blending weights, maximise the mean
    PSNR of the blend (Adam on the exact blend MSE from the error products; starts from ``router``)."""
    x = torch.tensor(expand((features - router.mean) / router.std, router.terms))
    g = torch.tensor(gram)
    w = torch.tensor(router.weights, requires_grad=True)
    b = torch.tensor(router.bias, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr)
    l2 = float(json.loads(router.fitted_on).get("l2", 1e-4)) if router.fitted_on else 1e-4
    for _ in range(steps):
        p = torch.softmax(x @ w + b, dim=1)
        mse = torch.einsum("ni,nij,nj->n", p, g, p).clamp_min(1e-12)
        loss = (10 * torch.log10(mse)).mean() + l2 * (w ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return dataclasses.replace(router, weights=w.detach().numpy().copy(), bias=b.detach().numpy().copy())


def fit(features: np.ndarray, costs: np.ndarray, cfg: RouterFitConfig, classes: tuple[str, ...] = ROUTED,
        routes: dict[str, str] | None = None, detector: AliasingDetector | None = None) -> Router:
    """Cost-weighted softmax regression: each sample's target is its best route, weighted by what a
    wrong pick would cost on it (the mean dB lost by the other routes). So samples where the routes
    tie (flat, featureless images) barely count, and an aliased image (3 dB lost by the clean model)
    counts a lot. Cross-entropy keeps the fit convex (minimising the expected cost directly stalls at
    "always the general route"). ``costs`` (N, routes): dB below the per-sample best route;
    ``features`` end with the detector's logit when a detector is given."""
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-9
    x = expand((features - mean) / std, cfg.terms)
    n, k = costs.shape
    target = np.eye(k)[costs.argmin(axis=1)]
    weight = costs.sum(axis=1) / max(k - 1, 1) + 1e-3
    weight = weight / weight.sum()
    w = np.zeros((x.shape[1], k))
    b = np.zeros(k)
    lr = 0.5
    for _ in range(cfg.steps):
        p = softmax(x @ w + b)
        g = (p - target) * weight[:, None]
        w -= lr * (x.T @ g + cfg.l2 * w)
        b -= lr * g.sum(axis=0)
    for _ in range(cfg.expected_cost_steps):
        p = softmax(x @ w + b)
        g = p * (costs - (p * costs).sum(axis=1, keepdims=True)) / n  # d(mean expected cost)/dz
        w -= lr * (x.T @ g + cfg.l2 * w)
        b -= lr * g.sum(axis=0)
    routes = routes or {c: CANDIDATES[c] for c in classes}
    return Router(classes=list(classes), routes=dict(routes), mean=mean, std=std, weights=w, bias=b, terms=cfg.terms,
                  mixing=cfg.mixing, min_weight=cfg.min_weight,
                  descriptions={c: DESCRIPTIONS.get(c, c) for c in classes},
                  fitted_on=json.dumps(asdict(cfg), sort_keys=True), detector=detector)


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def costs_from_psnr(psnr: np.ndarray) -> np.ndarray:
    """(N, routes) PSNR -> dB below the best route of each sample."""
    return psnr.max(axis=1, keepdims=True) - psnr


def confusion(router: Router, features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(how made) x (route taken) counts."""
    pred = router.probabilities(features).argmax(axis=1)
    out = np.zeros((len(CLASSES), len(router.classes)), dtype=int)
    for t, p in zip(labels, pred):
        out[t, p] += 1
    return out


def mean_cost(router: Router, features: np.ndarray, costs: np.ndarray) -> float:
    """Mean dB lost against the best route per sample when routing by argmax."""
    pick = router.probabilities(features).argmax(axis=1)
    return float(costs[np.arange(len(pick)), pick].mean())


def held_out_report(router: Router, feats: np.ndarray, labels: np.ndarray, psnr: np.ndarray, total: int) -> str:
    """Markdown: what routing costs on samples the fit did not see, against each fixed model.

    ``psnr`` (N, candidates) in CANDIDATES order; costs are dB below the best CANDIDATE of a sample."""
    costs = costs_from_psnr(psnr)
    names = list(CANDIDATES)
    pick = np.array([names.index(router.classes[k]) for k in router.probabilities(feats).argmax(axis=1)])
    lines = ["# The router behind `--model auto`: held-out check on training images", "",
             f"`mlin fit-router` (`mlin_qgis/ml/router_fit.py`): {total} degraded samples of UC Merced TRAIN images "
             "(a random chain and scale x1.2-x8 each; with `--jpeg-every` also JPEG-compressed clean downsamples); "
             "every candidate model run on a 96x96 window of each. "
             f"Fitted on the samples of the first half of the images, measured on the other {len(labels)} "
             "(val is never used here; the shipped "
             "router is then refitted on all samples). Routes: " + ", ".join(f"`{router.routes[c]}`" for c in router.classes)
             + ". Features: " + ", ".join(f"`{n}`" for n in router.feature_names) + "."
             + (" The aliasing detector was trained on crops of all the training images (other crops, chains and "
                "scales than these samples), so this check flatters it a little; val is the honest test."
                if router.detector is not None else ""), "",
             "Mean dB below the per-sample best of the three models (0 = always the best one):", "",
             "| routing | all | " + " | ".join(f"made {c}" for c in CLASSES) + " |",
             "|---|---:|" + "---:|" * len(CLASSES)]

    def row(name: str, choice: np.ndarray) -> str:
        lost = costs[np.arange(len(choice)), choice]
        cells = [f"{lost[labels == i].mean():.3f}" if (labels == i).any() else "—" for i in range(len(CLASSES))]
        return f"| {name} | {lost.mean():.3f} | " + " | ".join(cells) + " |"

    lines.append(row("**router (auto)**", pick))
    for k, c in enumerate(names):
        lines.append(row(f"always {CANDIDATES[c]}", np.full(len(labels), k)))
    lines += ["", "Which route it took, by how the sample was made (the class is only reported, not fitted):", "",
              "```", confusion_text(confusion(router, feats, labels), router.classes), "```"]
    return "\n".join(lines)


def blend_weights_of(router: Router, features: np.ndarray, floor: float) -> np.ndarray:
    """(N, routes) the weights a blending router gives each sample: its probabilities with those under
    ``floor`` left out and the rest renormalised (the argmax is always kept)."""
    p = router.probabilities(features)
    keep = (p >= floor) | (np.arange(p.shape[1]) == p.argmax(axis=1, keepdims=True))
    w = np.where(keep, p, 0.0)
    return w / w.sum(axis=1, keepdims=True)


def blend_report(router: Router, feats: np.ndarray, labels: np.ndarray, gram: np.ndarray) -> str:
    """Markdown: on the held-out samples, the blend (as shipped, and without the floor) against picking
    the argmax route and against each routed model alone; ``gram`` over the routed models."""
    k = gram.shape[1]
    single = np.stack([blend_psnr(np.tile(np.eye(k)[i], (len(gram), 1)), gram) for i in range(k)], axis=1)
    best = single.max(axis=1)
    hard = np.eye(k)[router.probabilities(feats).argmax(axis=1)]
    rows = {f"**blend, routes under {router.min_weight:g} left out (ships)**": blend_weights_of(router, feats, router.min_weight),
            "blend, every route": blend_weights_of(router, feats, 0.0), "pick the most probable route": hard}
    rows.update({f"always {router.routes[c]}": np.tile(np.eye(k)[i], (len(labels), 1))
                 for i, c in enumerate(router.classes)})
    lines = ["Blending (`--mixing blend`): mean dB of each way to decode, above the per-sample best single routed "
             "model (positive: the blend beats every single model), on the same held-out samples:", "",
             "| decoding | models run (mean) | all | " + " | ".join(f"made {c}" for c in CLASSES) + " |",
             "|---|---:|---:|" + "---:|" * len(CLASSES)]
    for name, w in rows.items():
        gain = blend_psnr(w, gram) - best
        cells = [f"{gain[labels == i].mean():+.3f}" if (labels == i).any() else "—" for i in range(len(CLASSES))]
        lines.append(f"| {name} | {(w > 0).sum(axis=1).mean():.2f} | {gain.mean():+.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def confusion_text(matrix: np.ndarray, routes: Sequence[str]) -> str:
    lines = ["made \\ routed " + " ".join(f"{c:>7}" for c in routes)]
    for name, row in zip(CLASSES, matrix):
        lines.append(f"{name:>14} " + " ".join(f"{v:7d}" for v in row))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default=RouterFitConfig.data_root, help="training images (never val)")
    parser.add_argument("--samples-per-image", type=int, default=RouterFitConfig.samples_per_image)
    parser.add_argument("--seed", type=int, default=RouterFitConfig.seed)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", default="runs/router",
                        help="folder keeping each route's PSNR per sample (keyed by the model files' SHA-256), "
                             "so a rerun recomputes only the routes whose model changed")
    parser.add_argument("--no-detector", action="store_true",
                        help="fit on the handcrafted features alone (no aliasing detector)")
    parser.add_argument("--detector-outputs", type=int, choices=(1, 3), default=RouterFitConfig.detector_outputs,
                        help="1: the detector scores 'aliased or not'; 3: clean / aliased / other")
    parser.add_argument("--detector-channels", default=",".join(map(str, RouterFitConfig.detector_channels)),
                        help="the detector's 3x3 convolution widths, comma-separated")
    parser.add_argument("--detector-steps", type=int, default=RouterFitConfig.detector_steps)
    parser.add_argument("--routes", default=",".join(ROUTED),
                        help=f"the candidates the router may pick, the general one last (of {', '.join(CANDIDATES)})")
    parser.add_argument("--terms", choices=("linear", "quadratic"), default=RouterFitConfig.terms)
    parser.add_argument("--jpeg-every", type=int, default=RouterFitConfig.jpeg_every,
                        help="also a JPEG-compressed clean downsample of every N-th image (0: none)")
    parser.add_argument("--expected-cost-steps", type=int, default=RouterFitConfig.expected_cost_steps,
                        help="refine the fit on the mean expected cost for this many steps (0: off)")
    parser.add_argument("--mixing", choices=("pick", "blend"), default=RouterFitConfig.mixing,
                        help="pick: one model per raster; blend: average the routes' outputs with the router's "
                             "probabilities (fitted on the blend's PSNR)")
    parser.add_argument("--min-weight", type=float, default=RouterFitConfig.min_weight,
                        help="blend: leave out routes whose probability is below this (saves their run)")
    parser.add_argument("--blend-steps", type=int, default=RouterFitConfig.blend_steps)
    parser.add_argument("--routes-only", action="store_true", help="compute the routes' PSNR, do not fit")
    parser.add_argument("--out", default="models/router.json", help="where the router is written")
    parser.add_argument("--report", default="docs/results/router.md", help="the held-out check, as markdown")


def sample_fields(cfg: RouterFitConfig) -> dict[str, object]:
    """The config fields that make the samples (what a cached PSNR depends on; not the fit's)."""
    return {k: v for k, v in asdict(cfg).items() if k in ("data_root", "samples_per_image", "scale_min", "scale_max",
                                                            "sharp_noise_max", "seed")}


def family_fields(cfg: RouterFitConfig, family: str) -> dict[str, object]:
    """What a family's samples depend on (the key of anything cached per sample)."""
    fields = sample_fields(cfg)
    return fields if family == "main" else {**fields, "family": family, "every": cfg.jpeg_every}


def _cached(path: Path, what: str, cfg: RouterFitConfig, family: str, samples: list[Sample] | None,
            compute: Callable[[list[Sample]], np.ndarray]) -> tuple[np.ndarray, list[Sample] | None]:
    """``compute(samples)`` saved at ``path``, or read back from it (samples made only when needed)."""
    if path.is_file():
        log.info("%s reused from %s", what, path)
        return np.load(path), samples
    samples = samples if samples is not None else family_samples(cfg, family)
    values = compute(samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, values)
    return values, samples


def cached_route_psnr(cfg: RouterFitConfig, spec: str, cache: Path, samples: list[Sample] | None,
                      threads: int, family: str = "main") -> tuple[np.ndarray, list[Sample] | None]:
    """One route's PSNR per sample of a family ("main": make_samples, "jpeg": make_jpeg_samples),
    from `cache` when the same samples and model files made it."""
    from mlin_qgis.core.blocks import model_hash
    from mlin_qgis.core.engine import SuperResolver

    files = SuperResolver(spec, device="cpu", threads=1).files
    key = hashlib.sha256(json.dumps([family_fields(cfg, family), spec, model_hash(files)]).encode()).hexdigest()[:16]
    return _cached(cache / f"psnr-{key}.npy", f"{spec}: PSNR per sample", cfg, family, samples,
                   lambda made: route_psnr(made, spec, threads))


def gram_cache_path(cfg: RouterFitConfig, specs: Sequence[str], cache: Path, family: str = "main") -> Path:
    """Where the routes' error products of a family live: keyed by the samples and every model's files."""
    from mlin_qgis.core.blocks import model_hash
    from mlin_qgis.core.engine import SuperResolver

    hashes = [model_hash(SuperResolver(spec, device="cpu", threads=1).files) for spec in specs]
    key = hashlib.sha256(json.dumps([family_fields(cfg, family), list(specs), hashes, "gram"]).encode()).hexdigest()[:16]
    return cache / f"gram-{key}.npy"


def cached_route_gram(cfg: RouterFitConfig, specs: Sequence[str], cache: Path, samples: list[Sample] | None,
                      threads: int, family: str = "main") -> tuple[np.ndarray, list[Sample] | None]:
    """route_gram of a family's samples, from `cache` when the same samples and models made it."""
    return _cached(gram_cache_path(cfg, specs, cache, family), "route error products", cfg, family, samples,
                   lambda made: route_gram(made, specs, threads))


def cached_detector(cfg: RouterFitConfig, cache: Path) -> AliasingDetector:
    """The aliasing detector trained on cfg.data_root (~15 min on one core), from `cache` when the same
    data and detector config made it."""
    from mlin_qgis.ml.aliasing_fit import DetectorFitConfig, fit_detector

    dcfg = DetectorFitConfig(outputs=cfg.detector_outputs, channels=tuple(cfg.detector_channels),
                             steps=cfg.detector_steps)
    key = hashlib.sha256(json.dumps([cfg.data_root, asdict(dcfg)], sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"detector-{key}.json"
    if path.is_file():
        log.info("aliasing detector reused from %s", path)
        return AliasingDetector.from_json(json.loads(path.read_text()), str(path))
    detector = fit_detector(cfg.data_root, dcfg)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(detector.to_json()))
    return detector


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    routes = tuple(r.strip() for r in args.routes.split(",") if r.strip())
    unknown = [r for r in routes if r not in CANDIDATES]
    if unknown or len(routes) < 2:
        raise SystemExit(f"--routes: name at least two of {', '.join(CANDIDATES)} (got {args.routes!r})")
    cfg = RouterFitConfig(data_root=args.data_root, samples_per_image=args.samples_per_image, seed=args.seed,
                          detector=not args.no_detector, detector_outputs=args.detector_outputs,
                          detector_channels=tuple(int(c) for c in args.detector_channels.split(",")),
                          detector_steps=args.detector_steps, routes=routes, terms=args.terms,
                          jpeg_every=args.jpeg_every, expected_cost_steps=args.expected_cost_steps,
                          mixing=args.mixing, min_weight=args.min_weight, blend_steps=args.blend_steps)
    cache = Path(args.cache)
    columns: list[np.ndarray] = []
    samples: list[Sample] = []
    n_images = len(list_images(cfg.data_root))
    grams: list[np.ndarray] = []  # blend: (N, candidates, candidates) error products per family
    image_of: list[np.ndarray] = []  # which training image each sample comes from (for the held-out split)
    for family in ("main", "jpeg") if cfg.jpeg_every > 0 else ("main",):
        made: list[Sample] | None = None
        family_columns = []
        if cfg.mixing == "blend":  # one pass runs every candidate; each one's PSNR is on the diagonal
            gram, made = cached_route_gram(cfg, list(CANDIDATES.values()), cache, made, args.threads, family)
            grams.append(gram)
            family_columns = [10 * np.log10(1.0 / np.maximum(gram[:, k, k], 1e-12)) for k in range(len(CANDIDATES))]
        else:
            for name in CANDIDATES:
                psnr, made = cached_route_psnr(cfg, CANDIDATES[name], cache, made, args.threads, family)
                family_columns.append(psnr)
        image_of.append(np.repeat(np.arange(n_images), cfg.samples_per_image) if family == "main"
                        else np.arange(0, n_images, cfg.jpeg_every))
        columns = family_columns if not columns else [np.r_[a, b] for a, b in zip(columns, family_columns)]
        if not args.routes_only:
            samples += made if made is not None else family_samples(cfg, family)
    if args.routes_only:
        return 0
    feats = np.stack([smp.features for smp in samples])
    detector = cached_detector(cfg, cache) if cfg.detector else None
    if detector is not None:
        feats = np.c_[feats, np.stack([detector.features(luminance(smp.lr)) for smp in samples])]
    labels = np.array([smp.label for smp in samples])
    psnr = np.stack(columns, axis=1)
    routed = [list(CANDIDATES).index(c) for c in cfg.routes]
    costs = costs_from_psnr(psnr[:, routed])
    # held-out check: fitted on the samples of the first half of the TRAIN images, measured on the rest
    first = np.concatenate(image_of) < n_images // 2
    check = fit(feats[first], costs[first], cfg, classes=cfg.routes, detector=detector)
    gram = np.concatenate(grams)[:, routed][:, :, routed] if grams else None
    if gram is not None:
        check = fit_blend(check, feats[first], gram[first], cfg.blend_steps)
    report = held_out_report(check, feats[~first], labels[~first], psnr[~first], len(labels))
    if gram is not None:
        report += "\n\n" + blend_report(check, feats[~first], labels[~first], gram[~first])
    log.info("%s", report)
    if args.report:
        Path(args.report).write_text(report + "\n")
    router = fit(feats, costs, cfg, classes=cfg.routes, detector=detector)
    if gram is not None:
        router = fit_blend(router, feats, gram, cfg.blend_steps)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(router.to_json(), indent=1) + "\n")
    tmp.replace(out)
    log.info("router written to %s (%d samples, features: %s)", out, len(labels), ", ".join(router.feature_names))
    return 0
