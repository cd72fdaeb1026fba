"""onnxruntime engine: runs an exported encoder/decoder pair on in-memory arrays.

The encoder runs once per (halo-padded) tile on the LR grid; the decoder answers output-pixel
queries in bounded chunks, so memory depends on the tile and chunk sizes, never on the image size.
Coordinates follow docs/ARCHITECTURE.md: LR pixel units, computed in float64, minus the tile's
origin, then cast to float32 (translation invariance makes a tile just a shifted whole image).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .aware import EXPERTS_FILE, code_spec, is_aware_dir, mixed_model_bytes, parse_code_spec
from .card import ModelCard, _short
from .devices import DEVICES, import_onnxruntime
from .errors import MlinError
from .models import ENCODER_FILE, PRECISIONS, VARIANT_SEP, decoder_file, encoder_file, resolve_model, spec_variant
from .tiling import halo_for, plan_tiles, query_coords

log = logging.getLogger(__name__)

ChunkFn = Callable[[int, int], None]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

DEFAULT_CHUNK = 65536  # decoder queries per call on CUDA (big batches keep the GPU busy)
# On CPU small calls keep the decoder's intermediates (4 x chunk x 256 floats) in cache, and with the
# row band (see row_band) a call no longer costs a pass over the whole proj: see docs/PERFORMANCE.md.
CPU_CHUNK = 4096


def cuda_offered() -> bool:
    """Whether the installed onnxruntime build offers CUDA at all (not whether it will work)."""
    try:
        return CUDA in import_onnxruntime().get_available_providers()
    except MlinError:
        return False


@dataclass
class EngineConfig:
    """How sessions are made: device auto|cpu|cuda, intra-op threads (None: all cores) and the
    number of decoder queries per onnxruntime call (bounds memory; None: CPU_CHUNK on CPU,
    DEFAULT_CHUNK on CUDA)."""

    device: str = "auto"
    threads: int | None = None
    chunk: int | None = None
    precision: str = "fp32"  # int8: the model's decoder.int8.onnx (see docs/PERFORMANCE.md for its cost)


class SuperResolver:
    """An mlin/LIIF model ready to run: ``.provider``, ``.card``, ``.halo`` and ``.upscale``."""

    def __init__(self, model_path: str | os.PathLike | None = None, device: str = "auto",
                 threads: int | None = None, chunk: int | None = None, precision: str = "fp32") -> None:
        self.config = EngineConfig(device=str(device).lower(), threads=threads,
                                   chunk=None if chunk is None else int(chunk), precision=str(precision).lower())
        if self.config.device not in DEVICES:
            raise MlinError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}.")
        if self.config.precision not in PRECISIONS:
            raise MlinError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
        if self.config.chunk is not None and self.config.chunk < 1:
            raise MlinError(f"chunk must be >= 1, got {chunk}.")
        base, self.code = parse_code_spec(model_path)
        self.model_dir: Path = resolve_model(base)
        self.variant: str | None = spec_variant(base)
        # What a worker process is given to load the same model (folder, plus @variant when there is one,
        # plus the degradation code a degradation-aware model's weights are mixed for: core/aware.py).
        self.model_spec: str = str(self.model_dir) + (f"{VARIANT_SEP}{self.variant}" if self.variant else "")
        self._overrides: dict[str, bytes] = {}  # file -> its bytes with mixed weights (aware models)
        if self.code is not None:
            if not is_aware_dir(self.model_dir):
                raise MlinError(f"model {self.model_dir.name} is not degradation-aware (no {EXPERTS_FILE}); "
                                "leave out the code or --input-looks, or pick a degradation-aware model.")
            if self.config.precision != "fp32":
                raise MlinError(f"model {self.model_dir.name} mixes its weights per raster and runs in fp32 only; "
                                "use precision fp32.")
            self.model_spec = code_spec(self.model_spec, self.code)
        encoder_path = self.model_dir / encoder_file(self.variant)
        if not encoder_path.is_file():  # a variant decoder on the folder's own encoder
            encoder_path = self.model_dir / ENCODER_FILE
        decoder_path = self.model_dir / decoder_file(self.variant, self.config.precision)
        if not decoder_path.is_file():
            raise MlinError(f"model {self.model_dir.name} has no int8 decoder ({decoder_path.name}); make it "
                            f"with `mlin quantize --model {self.model_spec}`, or use precision fp32.")
        self.files: tuple[Path, Path] = (encoder_path, decoder_path)
        if self.code is not None:  # the files patched with the weights mixed for this code
            self._overrides = {str(encoder_path): mixed_model_bytes(self.model_dir, encoder_path, self.code, "encoder"),
                               str(decoder_path): mixed_model_bytes(self.model_dir, decoder_path, self.code, "decoder")}
        self._encoder, self._decoder, self.provider = self._make_sessions(encoder_path, decoder_path)
        if self.config.chunk is None:
            self.config.chunk = DEFAULT_CHUNK if self.provider == CUDA else CPU_CHUNK
        self.card: ModelCard = self._read_card(encoder_path, decoder_path)
        self.halo: int = halo_for(self.card.receptive_field)
        self._check_io(encoder_path, decoder_path)
        self._in_mean = np.asarray(self.card.input_mean, np.float32).reshape(3, 1, 1)
        self._in_std = np.asarray(self.card.input_std, np.float32).reshape(3, 1, 1)
        self._out_mean = np.asarray(self.card.output_mean, np.float32).reshape(3, 1, 1)
        self._out_std = np.asarray(self.card.output_std, np.float32).reshape(3, 1, 1)

    # -- construction -------------------------------------------------------------------------
    def _session_options(self, ort: Any) -> Any:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(self.config.threads or os.cpu_count() or 1)
        options.log_severity_level = 3
        return options

    def _make_sessions(self, encoder_path: Path, decoder_path: Path) -> tuple[Any, Any, str]:
        """CUDA when offered and really active in both sessions, else CPU (device=cuda: error)."""
        ort = import_onnxruntime()
        device = self.config.device
        offered = CUDA in ort.get_available_providers()
        if device == "cuda" and not offered:
            raise MlinError("device 'cuda' was requested but this onnxruntime has no CUDA support; "
                            "install onnxruntime-gpu (with CUDA and cuDNN) or use device 'auto' or 'cpu'.")
        attempts = [[CUDA, CPU]] if (offered and device != "cpu") else []
        if device != "cuda":
            attempts.append([CPU])
        error: Exception | None = None
        for providers in attempts:
            sessions = []
            try:
                for path in (encoder_path, decoder_path):
                    current = path
                    sessions.append(ort.InferenceSession(self._overrides.get(str(path), str(path)),
                                                         sess_options=self._session_options(ort),
                                                         providers=providers))
            except Exception as exc:  # corrupt file, foreign graph, or a CUDA set-up failure
                log.info("onnxruntime could not load %s with %s: %s", current, providers, _short(exc))
                error = MlinError(f"{current} is not an mlin model: onnxruntime cannot load it "
                                  f"({_short(exc)}). Re-export it or pick another model.")
                continue
            active = all(CUDA in s.get_providers() for s in sessions)
            if active:
                log.info("provider: CUDA (%s)", encoder_path.parent.name)
                return sessions[0], sessions[1], CUDA
            if CUDA in providers:
                log.warning("CUDA was offered but onnxruntime fell back to the CPU for %s (check the NVIDIA "
                            "driver, CUDA and cuDNN versions)", encoder_path.parent.name)
            if device == "cuda":
                raise MlinError("device 'cuda' was requested but onnxruntime could not start CUDA "
                                "(check the NVIDIA driver, CUDA and cuDNN versions); use device 'auto' or 'cpu'.")
            log.info("provider: CPU, %d threads (%s)", self._session_options(ort).intra_op_num_threads,
                     encoder_path.parent.name)
            return sessions[0], sessions[1], CPU
        assert error is not None
        raise error

    def _read_card(self, encoder_path: Path, decoder_path: Path) -> ModelCard:
        """The card from the already open sessions (both files carry it and must agree)."""
        enc = ModelCard.from_metadata(self._encoder.get_modelmeta().custom_metadata_map, str(encoder_path))
        dec = ModelCard.from_metadata(self._decoder.get_modelmeta().custom_metadata_map, str(decoder_path))
        # A variant pair carries the same card "<folder's name>@<variant>"; a variant decoder on the
        # folder's own encoder is named "<encoder's name>@<variant>".
        if self.variant:
            suffix = f"{VARIANT_SEP}{self.variant}"
            paired = dec.name.endswith(suffix) and enc.name in (dec.name, dec.name[:-len(suffix)])
        else:
            paired = enc.name == dec.name
        if enc.version != dec.version or not paired:
            raise MlinError(f"{encoder_path.parent}: encoder ({enc.name} {enc.version}) and decoder "
                            f"({dec.name} {dec.version}) come from different models; re-export the pair.")
        return dec

    def _check_io(self, encoder_path: Path, decoder_path: Path) -> None:
        enc_in = [i.name for i in self._encoder.get_inputs()]
        enc_out = [o.name for o in self._encoder.get_outputs()]
        dec_in = {i.name for i in self._decoder.get_inputs()}
        self._decoder_outputs = [o.name for o in self._decoder.get_outputs()]
        if enc_in != ["image"] or "proj" not in enc_out:
            raise MlinError(f"{encoder_path} is not an mlin model: expected input 'image' and output "
                            f"'proj', found inputs {enc_in} and outputs {enc_out}.")
        if dec_in != {"proj", "coord", "cell"} or "rgb" not in self._decoder_outputs:
            raise MlinError(f"{decoder_path} is not an mlin model: expected inputs proj, coord, cell and "
                            f"output rgb, found inputs {sorted(dec_in)} and outputs {self._decoder_outputs}.")

    @property
    def has_weights(self) -> bool:
        """Whether the decoder reports its mixing weights and LIIF's area weights."""
        return {"weights", "area_weights"} <= set(self._decoder_outputs)

    # -- running ------------------------------------------------------------------------------
    @property
    def _device(self) -> str:
        """onnxruntime device name where ``proj`` lives between encoder and decoder calls."""
        return "cuda" if self.provider == CUDA else "cpu"

    def _normalised(self, image: np.ndarray) -> np.ndarray:
        x = (np.asarray(image, np.float32) - self._in_mean) / self._in_std
        return np.ascontiguousarray(x[None], dtype=np.float32)

    def encode(self, image: np.ndarray) -> np.ndarray:
        """``proj`` (1, C, h, w) of an image (3, h, w) in [0, 1] units, as a numpy array."""
        return self._encoder.run(["proj"], {"image": self._normalised(image)})[0]

    def encode_bound(self, image: np.ndarray) -> Any:
        """``proj`` as an onnxruntime OrtValue left on the execution device (GPU memory on CUDA),
        so the decoder's many chunk calls do not copy it back and forth. On CPU a numpy array, which
        decode_window cuts into the row band each chunk reads."""
        if self.provider != CUDA:
            return self.encode(image)
        binding = self._encoder.io_binding()
        binding.bind_cpu_input("image", self._normalised(image))
        binding.bind_output("proj", self._device)
        self._encoder.run_with_iobinding(binding)
        return binding.get_outputs()[0]

    def decode_window(self, proj: Any, origin: tuple[int, int], in_size: tuple[int, int],
                      out_size: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int],
                      clip: bool = True, want_deviation: bool = False,
                      on_chunk: ChunkFn | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Colours (3, R, C) of output rows ``[r0, r1)`` x cols ``[c0, c1)`` from a tile's ``proj``
        (numpy array from :meth:`encode` or OrtValue from :meth:`encode_bound`).

        ``origin`` is the tile's LR (row, col) offset; ``in_size``/``out_size`` are the WHOLE image's
        sizes (they fix the coordinates and the cell). With ``want_deviation`` also returns the
        per-pixel max |weights - area_weights| (how far the learnt mixing departs from LIIF's).
        ``on_chunk(done, total)`` is called after every decoder call (output rows done of this window):
        progress within a tile, and the place where a cancel (an exception raised there) takes effect.
        """
        (h, w), (oh, ow) = in_size, out_size
        (r0, r1), (c0, c1) = rows, cols
        n_rows, n_cols = r1 - r0, c1 - c0
        out = np.empty((3, n_rows, n_cols), np.float32)
        deviation = np.empty((n_rows, n_cols), np.float32) if want_deviation else None
        if want_deviation and not self.has_weights:
            raise MlinError(f"model {self.card.name} does not output weights/area_weights, so no weights "
                            "map can be made; re-export it or leave the weights map out.")
        # CPU: each chunk gets only the LR rows it reads (the decoder graph transposes all of proj on
        # every call); CUDA: proj stays bound on the device once.
        banded = self.provider != CUDA
        if banded and not isinstance(proj, np.ndarray):
            proj = proj.numpy()
        elif not banded and isinstance(proj, np.ndarray):
            proj = import_onnxruntime().OrtValue.ortvalue_from_numpy(
                np.ascontiguousarray(proj, dtype=np.float32), self._device, 0)
        row_coords = (query_coords(h, oh, r0, r1) - origin[0]).astype(np.float32)
        col_coords = (query_coords(w, ow, c0, c1) - origin[1]).astype(np.float32)
        cell_value = np.array([h / oh, w / ow], np.float32)
        names = ["rgb", "weights", "area_weights"] if want_deviation else ["rgb"]
        binding = self._decoder.io_binding()
        if not banded:
            binding.bind_ortvalue_input("proj", proj)
        step = max(1, int(self.config.chunk or CPU_CHUNK) // max(1, n_cols))
        for a in range(0, n_rows, step):
            b = min(n_rows, a + step)
            coord = np.empty((b - a, n_cols, 2), np.float32)
            coord[..., 0] = row_coords[a:b, None]
            if banded:
                lo, hi = row_band(row_coords[a:b], proj.shape[2])
                band = np.ascontiguousarray(proj[:, :, lo:hi], dtype=np.float32)  # alive until run
                binding.bind_cpu_input("proj", band)
                coord[..., 0] -= np.float32(lo)
            coord[..., 1] = col_coords[None, :]
            coord = coord.reshape(-1, 2)
            cell = np.ascontiguousarray(np.broadcast_to(cell_value, coord.shape))
            binding.bind_cpu_input("coord", coord)
            binding.bind_cpu_input("cell", cell)
            for name in names:
                binding.bind_output(name, "cpu")
            self._decoder.run_with_iobinding(binding)
            result = binding.copy_outputs_to_cpu()
            out[:, a:b, :] = result[0].reshape(b - a, n_cols, 3).transpose(2, 0, 1)
            if deviation is not None:
                dev = np.abs(result[1] - result[2]).max(axis=1)
                deviation[a:b, :] = dev.reshape(b - a, n_cols)
            if on_chunk is not None:
                on_chunk(b, n_rows)
        out = out * self._out_std + self._out_mean
        if clip:
            np.clip(out, 0.0, 1.0, out=out)
        return out, deviation

    def super_resolve_window(self, image: np.ndarray, origin: tuple[int, int], in_size: tuple[int, int],
                             out_size: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int],
                             clip: bool = True, want_deviation: bool = False, ensemble: int = 1,
                             on_chunk: ChunkFn | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Encode one LR read window ``image`` (3, th, tw) and decode output rows x cols of it.

        ``ensemble=8`` averages the 8 flips/transposes of the window (each decoded in the flipped
        frame of the whole image and flipped back), which is exact for tiles and non-square images:
        a flipped tile is the tile that the flipped whole image has there. ``ensemble=1``: one pass."""
        transforms = check_ensemble(ensemble)
        if transforms == [(False, False, False)]:
            return self.decode_window(self.encode_bound(image), origin, in_size, out_size, rows, cols,
                                      clip=clip, want_deviation=want_deviation, on_chunk=on_chunk)
        total = np.zeros((3, rows[1] - rows[0], cols[1] - cols[0]), np.float64)
        dev_total = np.zeros(total.shape[1:], np.float64) if want_deviation else None
        for k, (transpose, flip_r, flip_c) in enumerate(transforms):
            # progress over all passes: pass k of n counts as k/n of the window plus its own share
            step = None if on_chunk is None else (
                lambda done, total, k=k: on_chunk(int((k + done / total) * 1000), 1000 * len(transforms)))
            img, org, ins, outs, rws, cls = image, origin, in_size, out_size, rows, cols
            if transpose:
                img, org, ins, outs, rws, cls = (img.transpose(0, 2, 1), org[::-1], ins[::-1], outs[::-1],
                                                 cls, rws)
            (h, w), (oh, ow), (rh, rw) = ins, outs, img.shape[1:]
            if flip_r:
                img, org, rws = img[:, ::-1, :], (h - org[0] - rh, org[1]), (oh - rws[1], oh - rws[0])
            if flip_c:
                img, org, cls = img[:, :, ::-1], (org[0], w - org[1] - rw), (ow - cls[1], ow - cls[0])
            rgb, dev = self.decode_window(self.encode_bound(np.ascontiguousarray(img)), org, ins, outs, rws, cls,
                                          clip=False, want_deviation=want_deviation, on_chunk=step)
            back = [rgb] + ([dev[None]] if dev is not None else [])
            for i, arr in enumerate(back):
                if flip_c:
                    arr = arr[:, :, ::-1]
                if flip_r:
                    arr = arr[:, ::-1, :]
                if transpose:
                    arr = arr.transpose(0, 2, 1)
                back[i] = arr
            total += back[0]
            if dev_total is not None:
                dev_total += back[1][0]
        out = (total / len(transforms)).astype(np.float32)
        if clip:
            np.clip(out, 0.0, 1.0, out=out)
        deviation = None if dev_total is None else (dev_total / len(transforms)).astype(np.float32)
        return out, deviation

    def upscale(self, image: np.ndarray, out_size: tuple[int, int], tile_size: int | None = None,
                clip: bool = True, ensemble: int = 1) -> np.ndarray:
        """Super-resolve an in-memory image (3, h, w) float in [0, 1] to (3, H, W).

        Tiling (``tile_size`` = LR core size) gives the same result as one whole-image pass (within
        float noise); ``clip=False`` returns the model's raw colours, which may overshoot [0, 1].
        """
        return upscale_tiled(self, image, out_size, tile_size, clip, ensemble)


def upscale_tiled(engine: Any, image: np.ndarray, out_size: tuple[int, int], tile_size: int | None,
                  clip: bool, ensemble: int) -> np.ndarray:
    """``engine.upscale``: the image's tiles through ``engine.super_resolve_window``."""
    image = check_image(image)
    h, w = image.shape[1:]
    oh, ow = check_out_size(out_size)
    out = np.empty((3, oh, ow), np.float32)
    for tile in plan_tiles((h, w), (oh, ow), tile_size, engine.halo):
        r, c = tile.rows, tile.cols
        out[:, r.out_start:r.out_stop, c.out_start:c.out_stop] = engine.super_resolve_window(
            image[:, r.read_start:r.read_stop, c.read_start:c.read_stop], (r.read_start, c.read_start),
            (h, w), (oh, ow), (r.out_start, r.out_stop), (c.out_start, c.out_stop), clip=clip,
            ensemble=ensemble)[0]
    return out


def row_band(rows: np.ndarray, h: int) -> tuple[int, int]:
    """LR rows ``[lo, hi)`` of a tile's proj that queries at these (tile-relative, float32) row
    coordinates read: ``floor`` and ``floor + 1`` of each, plus one row of margin for the epsilon
    shift. Exact: subtracting the integer ``lo`` from a float32 coordinate >= ``lo`` is exact, and the
    decoder clamps only at band edges that are also the tile's edges."""
    lo = max(0, int(np.floor(rows.min())) - 1)
    hi = min(h, int(np.floor(rows.max())) + 3)
    return lo, hi


ENSEMBLES = (1, 8)


def check_ensemble(ensemble: object) -> list[tuple[bool, bool, bool]]:
    """The (transpose, flip rows, flip cols) passes of a self-ensemble of 1 or 8."""
    if ensemble not in ENSEMBLES:
        raise MlinError(f"ensemble must be 1 (one pass) or 8 (flips and transposes), got {ensemble!r}.")
    if ensemble == 1:
        return [(False, False, False)]
    return [(t, fr, fc) for t in (False, True) for fr in (False, True) for fc in (False, True)]


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate an engine input at the boundary, saying what was expected."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[0] != 3:
        raise MlinError(f"expected an image of shape (3, h, w) (channels first, RGB), got {array.shape}.")
    if array.shape[1] < 1 or array.shape[2] < 1:
        raise MlinError(f"the image is empty: shape {array.shape}.")
    array = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)):
        raise MlinError("the image holds NaN or infinite values; fill or mask them before super-resolving.")
    return array


def check_out_size(out_size: Any) -> tuple[int, int]:
    try:
        oh, ow = (int(v) for v in out_size)
    except (TypeError, ValueError):
        raise MlinError(f"out_size must be (height, width), got {out_size!r}.") from None
    if oh < 1 or ow < 1:
        raise MlinError(f"out_size must be positive, got {(oh, ow)}.")
    return oh, ow


# What the pipeline, the cluster workers and evaluation run: one model (a degradation-aware model's
# spec carries its code, so a worker rebuilds exactly the same weights from the spec alone).
Engine = SuperResolver


def open_engine(spec: str | os.PathLike | None, device: str = "auto", threads: int | None = None,
                precision: str = "fp32") -> SuperResolver:
    """The engine of a model spec (a name, folder or .onnx path, ``@variant``, ``#code=...``)."""
    return SuperResolver(spec, device=device, threads=threads, precision=precision)
