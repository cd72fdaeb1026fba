"""Execution devices a run can ask for (auto: CUDA when onnxruntime offers it and it works, else CPU)."""
from __future__ import annotations

from typing import Any

from .errors import MlinError

DEVICES = ("auto", "cpu", "cuda")


def import_onnxruntime() -> Any:
    """Import onnxruntime on first use, with an actionable message when it is missing."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MlinError("onnxruntime is not installed in this Python; install it with "
                        "`pip install onnxruntime` (or onnxruntime-gpu for NVIDIA GPUs).") from None
    return ort
