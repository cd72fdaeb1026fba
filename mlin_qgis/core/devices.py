"""Execution devices a run can ask for (auto: CUDA when onnxruntime offers it and it works, else CPU)."""
from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda")
