"""The benchmark rows: one object per way of turning an LR image into a 256x256 output.

Every row's `run(lr, out_size)` returns the output (3, H, W) in [0, 1] units, NOT clipped (so rows
1-3 can be compared exactly), and two timings taken inside the same call: `total` (encoder +
decoder, what a user waits for) and `decoder` (everything after the latent features). Rows 1-2
time `project` inside the decoder; row 3's projection lives in encoder.onnx, so its decoder time is
decoder.onnx alone and its FLOP count leaves the projection out (see bench.flops).
"""
from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import flops

QUERY_CHUNK = 65536  # queries per decoder call in the torch rows (= ImplicitSR.super_resolve's default)


@dataclass
class Timing:
    out: np.ndarray
    total: float
    decoder: float | None


class Row(ABC):
    """A way to super-resolve; `macs_per_pixel` (decoder multiply-adds per output pixel) or None."""

    key: str = ""
    label: str = ""
    device: str = "cpu"

    @abstractmethod
    def run(self, lr: np.ndarray, out_size: tuple[int, int]) -> Timing:
        """Super-resolve `lr` to `out_size`, timed."""

    def macs_per_pixel(self, lr_pixels: int, out_pixels: int) -> float | None:
        return None


def _clock(sync: Callable[[], None] | None = None) -> float:
    if sync is not None:
        sync()
    return time.perf_counter()


class _TorchRow(Row):
    def __init__(self, model: Any, device: str = "cpu") -> None:
        import torch

        self.torch = torch
        self.device = device
        self.model = model.to(device).eval()
        self.sync = torch.cuda.synchronize if device == "cuda" else None

    def run(self, lr: np.ndarray, out_size: tuple[int, int]) -> Timing:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(lr)[None].to(self.device)
            t0 = _clock(self.sync)
            feat = self.model.encode(x)
            t1 = _clock(self.sync)
            rgb = self.decode(feat, out_size)
            t2 = _clock(self.sync)
        out = (rgb * self.model.input_std + self.model.input_mean)[0].T.reshape(3, *out_size)
        return Timing(out.float().cpu().numpy(), t2 - t0, t2 - t1)

    @abstractmethod
    def decode(self, feat: Any, out_size: tuple[int, int]) -> Any:
        """Decoder output (normalised RGB) for the whole output grid."""


class TorchStraightforward(_TorchRow):
    """(1) LIIF literally: unfold, nearest grid_sample per neighbour, full MLP on 580-wide inputs."""

    key, label = "torch-ref", "(1) PyTorch straightforward (query_reference, eager)"

    def decode(self, feat: Any, out_size: tuple[int, int]) -> Any:
        from mlin_qgis.ml.decoder import make_coord

        torch = self.torch
        oh, ow = out_size
        coord = make_coord((oh, ow), device=feat.device).reshape(1, -1, 2)
        cell = torch.tensor([2.0 / oh, 2.0 / ow], device=feat.device).expand(1, oh * ow, 2)
        dec = self.model.decoder
        parts = [dec.query_reference(feat, coord[:, a:a + QUERY_CHUNK], cell[:, a:a + QUERY_CHUNK])[0]
                 for a in range(0, oh * ow, QUERY_CHUNK)]
        return torch.cat(parts, dim=1)

    def macs_per_pixel(self, lr_pixels: int, out_pixels: int) -> float:
        return float(flops.straightforward_macs_per_query(self.model.decoder))


class TorchFactored(_TorchRow):
    """(2) The factored first layer: `project` once on the LR grid, then `query` per output pixel."""

    key, label = "torch-factored", "(2) PyTorch factored (project + query, eager)"

    def decode(self, feat: Any, out_size: tuple[int, int]) -> Any:
        from mlin_qgis.ml.decoder import pixel_query_grid

        torch = self.torch
        dec = self.model.decoder
        proj = dec.project(feat)
        coord, cell = pixel_query_grid(tuple(feat.shape[-2:]), out_size, device=feat.device)
        parts = [dec.query(proj, coord[None, a:a + QUERY_CHUNK], cell[None, a:a + QUERY_CHUNK])[0]
                 for a in range(0, coord.shape[0], QUERY_CHUNK)]
        return torch.cat(parts, dim=1)

    def macs_per_pixel(self, lr_pixels: int, out_pixels: int) -> float:
        return flops.factored_macs_per_output_pixel(self.model.decoder, lr_pixels, out_pixels)


class OnnxEngine(Row):
    """(3) The shipped engine: mlin_qgis.core.engine.SuperResolver (encode + decode_window), else
    plain onnxruntime sessions (ORT_ENABLE_ALL, intra-op threads = cores) when the engine is absent."""

    key = "onnx"

    def __init__(self, model_dir: os.PathLike, decoder: Any, device: str = "cpu", threads: int | None = None,
                 chunk: int | None = None) -> None:
        self.decoder_module = decoder  # the torch decoder, only for the FLOP count
        self.device = device
        try:
            from mlin_qgis.core.engine import SuperResolver
        except ImportError:
            self.engine = RawOnnxPair(model_dir, device, threads, chunk or QUERY_CHUNK)
            self.label = "(3) ONNX, raw onnxruntime sessions (no engine yet)"
        else:
            kwargs = {"chunk": chunk} if chunk else {}
            self.engine = SuperResolver(model_dir, device=device, threads=threads, **kwargs)
            self.label = "(3) ONNX engine (SuperResolver)"
        self.provider = getattr(self.engine, "provider", "?")
        self.mean = np.asarray(self.engine.card.output_mean, np.float32).reshape(3, 1, 1)

    def run(self, lr: np.ndarray, out_size: tuple[int, int]) -> Timing:
        h, w = lr.shape[1:]
        encode = getattr(self.engine, "encode_bound", None) or self.engine.encode  # the engine's own path
        t0 = time.perf_counter()
        proj = encode(lr)
        t1 = time.perf_counter()
        out = self.engine.decode_window(proj, (0, 0), (h, w), out_size, (0, out_size[0]), (0, out_size[1]),
                                        clip=False)[0]
        t2 = time.perf_counter()
        return Timing(out, t2 - t0, t2 - t1)

    def macs_per_pixel(self, lr_pixels: int, out_pixels: int) -> float:
        return flops.factored_macs_per_output_pixel(self.decoder_module, lr_pixels, out_pixels,
                                                    with_projection=False)


class RawOnnxPair:
    """Minimal stand-in for SuperResolver (same coordinates and chunking), for a tree without it."""

    def __init__(self, model_dir: os.PathLike, device: str, threads: int | None, chunk: int) -> None:
        import json

        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(threads or os.cpu_count() or 1)
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        self.enc = ort.InferenceSession(os.path.join(model_dir, "encoder.onnx"), opts, providers=providers)
        self.dec = ort.InferenceSession(os.path.join(model_dir, "decoder.onnx"), opts, providers=providers)
        self.provider = self.dec.get_providers()[0]
        self.chunk = chunk
        card = json.loads(self.dec.get_modelmeta().custom_metadata_map["mlin_card"])
        self.card = type("Card", (), card)
        self.in_mean = np.asarray(card["input_mean"], np.float32).reshape(3, 1, 1)
        self.in_std = np.asarray(card["input_std"], np.float32).reshape(3, 1, 1)
        self.out_std = np.asarray(card["output_std"], np.float32).reshape(3, 1, 1)

    def encode(self, image: np.ndarray) -> np.ndarray:
        x = ((image - self.in_mean) / self.in_std).astype(np.float32)[None]
        return self.enc.run(["proj"], {"image": x})[0]

    def decode_window(self, proj: np.ndarray, origin: tuple[int, int], in_size: tuple[int, int],
                      out_size: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int],
                      clip: bool = False) -> tuple[np.ndarray, None]:
        (h, w), (oh, ow) = in_size, out_size
        r = (np.arange(oh) + 0.5) * (h / oh) - 0.5
        c = (np.arange(ow) + 0.5) * (w / ow) - 0.5
        coord = np.stack(np.meshgrid(r, c, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)
        cell = np.broadcast_to(np.array([h / oh, w / ow], np.float32), coord.shape).copy()
        parts = [self.dec.run(["rgb"], {"proj": proj, "coord": coord[a:a + self.chunk],
                                        "cell": cell[a:a + self.chunk]})[0]
                 for a in range(0, len(coord), self.chunk)]
        out = np.concatenate(parts).T.reshape(3, oh, ow) * self.out_std + np.asarray(
            self.card.output_mean, np.float32).reshape(3, 1, 1)
        return (np.clip(out, 0, 1) if clip else out), None


class GdalBicubic(Row):
    """(4) The speed floor: GDAL's cubic resampling to the output size (in-memory datasets)."""

    key, label = "bicubic", "(4) bicubic (GDAL Translate -r cubic)"

    def __init__(self) -> None:
        from osgeo import gdal

        gdal.UseExceptions()
        self.gdal = gdal

    def run(self, lr: np.ndarray, out_size: tuple[int, int]) -> Timing:
        gdal = self.gdal
        t0 = time.perf_counter()
        src = gdal.GetDriverByName("MEM").Create("", lr.shape[2], lr.shape[1], 3, gdal.GDT_Float32)
        for i in range(3):
            src.GetRasterBand(i + 1).WriteArray(lr[i])
        dst = gdal.Translate("", src, format="MEM", width=out_size[1], height=out_size[0], resampleAlg="cubic")
        out = dst.ReadAsArray()
        t1 = time.perf_counter()
        return Timing(out, t1 - t0, None)
