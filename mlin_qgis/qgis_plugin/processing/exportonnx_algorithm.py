"""``mlin:exportonnx``: turn a PyTorch checkpoint (.pth) into the ONNX pair the plugin runs.

This is the only QGIS entry point that needs torch, so torch (through ``mlin_qgis.ml``) is imported
inside :meth:`ExportOnnxAlgorithm.processAlgorithm`, never when the plugin loads; when it is missing
the error names the exact install command for QGIS's Python.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterString,
)

from mlin_qgis.core.errors import CheckpointError, MlinError

from .. import dependencies
from .algorithm import MlinAlgorithm


class ExportOnnxAlgorithm(MlinAlgorithm):
    """Export an MLIN or official LIIF checkpoint to ``encoder.onnx`` + ``decoder.onnx`` with its card."""

    ALGORITHM_ID = "exportonnx"
    DISPLAY_NAME = "Export checkpoint to ONNX (MLIN)"
    GROUP = "Models"
    GROUP_ID = "models"
    TAGS = ("onnx", "export", "checkpoint", "pytorch", "torch", "liif", "mlin", "model")

    CHECKPOINT = "CHECKPOINT"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    NAME = "NAME"

    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterFile(
            self.CHECKPOINT, "PyTorch checkpoint (.pth)", behavior=QgsProcessingParameterFile.File,
            extension="pth"))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, "Model folder"))
        self.addParameter(QgsProcessingParameterString(
            self.NAME, "Model name (default: the folder's name)", optional=True))
        self.addOutput(QgsProcessingOutputFile("ENCODER", "encoder.onnx"))
        self.addOutput(QgsProcessingOutputFile("DECODER", "decoder.onnx"))

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return (
            "<p>Exports a checkpoint trained with mlin-qgis (MLIN meta-weights or the LIIF area-weight "
            "ablation) or the official LIIF checkpoint to the pair of ONNX files that the <i>Super-resolve "
            "raster (MLIN)</i> algorithm runs. The model card (normalisation, scale range, receptive "
            "field) is stored inside both files.</p>"
            "<p><b>Checkpoint</b> (CHECKPOINT): a .pth file.</p>"
            "<p><b>Model folder</b> (OUTPUT_FOLDER): receives encoder.onnx and decoder.onnx. Use the "
            "folder's encoder.onnx as <i>Custom model</i> (MODEL_FILE), or copy the folder into the "
            "plugin's <tt>models/</tt> folder and restart QGIS to list it under Model.</p>"
            "<p><b>Model name</b> (NAME, optional): stored in the card; defaults to the folder name.</p>"
            "<p>Needs PyTorch and onnx in QGIS's Python (running models does not); the error message "
            "says what to install when they are missing.</p>"
        )

    def _process(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback) -> Dict[str, Any]:
        checkpoint = self.parameterAsFile(parameters, self.CHECKPOINT, context)
        out_dir = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        name = self.parameterAsString(parameters, self.NAME, context).strip() or None
        if not Path(checkpoint).is_file():
            raise CheckpointError(f"Checkpoint {checkpoint} does not exist; pick a .pth file.")

        try:
            import torch  # noqa: F401 - probe first, so the message names torch, not an inner module

            from mlin_qgis.ml.export import export_checkpoint
        except ImportError as exc:
            missing = (getattr(exc, "name", None) or "torch").split(".")[0]
            if missing == "mlin_qgis":
                raise MlinError(f"This copy of the plugin lacks its model-export module ({exc}); reinstall the plugin.") \
                    from None
            raise MlinError(dependencies.torch_install_text(missing)) from None

        feedback.pushInfo(f"Exporting {checkpoint} to {out_dir} …")
        start = time.perf_counter()
        try:
            encoder, decoder = export_checkpoint(checkpoint, out_dir, name=name)
        except ImportError as exc:  # onnx is imported lazily by the exporter
            missing = (getattr(exc, "name", None) or "onnx").split(".")[0]
            raise MlinError(dependencies.torch_install_text(missing)) from None
        except Exception as exc:  # noqa: BLE001 - torch/onnx raise many types for a file that is no checkpoint
            raise CheckpointError(f"Export of {checkpoint} failed: {exc}") from exc

        from .superresolve_algorithm import shipped_models

        shipped_models.cache_clear()  # a model exported into models/ becomes listable
        feedback.pushInfo(f"Wrote {encoder} and {decoder} in {time.perf_counter() - start:.1f} s.")
        feedback.pushInfo(f"Use it with mlin:superresolve MODEL_FILE={encoder}")
        return {self.OUTPUT_FOLDER: out_dir, "ENCODER": str(encoder), "DECODER": str(decoder)}
