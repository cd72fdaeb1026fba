"""``mlin:superresolve``: the Processing face of :func:`mlin_qgis.core.pipeline.superresolve`.

Only parameter plumbing lives here: read the QGIS parameters, build a ``SuperResolveRequest``, map
progress/cancel onto the Processing feedback and errors through ``processing_exception`` (errors.py). Raster I/O,
tiling and inference are the core's job, so the same code path serves the CLI, the dialog and this.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from mlin_qgis.core.aware import LOOKS
from mlin_qgis.core.errors import MlinError, RasterError

from .. import dependencies
from ..common import (
    DEVICES,
    MIN_SCALE,
    max_scale,
    output_layer_name,
    raster_file_path,
    shipped_models,
)
from ..layer_source import layer_source
from .algorithm import MlinAlgorithm

INPUT_LOOKS_CHOICES = ("auto", *LOOKS)


class SuperResolveAlgorithm(MlinAlgorithm):
    """Super-resolve a raster by any real scale with an MLIN/LIIF ONNX model."""

    ALGORITHM_ID = "superresolve"
    DISPLAY_NAME = "Super-resolve raster (MLIN)"
    TAGS = ("super-resolution", "upscale", "upsample", "resample", "zoom", "liif", "mlin", "onnx", "deep learning")

    INPUT = "INPUT"
    SCALE = "SCALE"
    MODEL = "MODEL"
    MODEL_FILE = "MODEL_FILE"
    BANDS = "BANDS"
    DEVICE = "DEVICE"
    TILE_SIZE = "TILE_SIZE"
    WEIGHTS_MAP = "WEIGHTS_MAP"
    ENSEMBLE = "ENSEMBLE"
    ALL_BANDS = "ALL_BANDS"
    CLUSTER = "CLUSTER"
    EXTENT = "EXTENT"
    RESOLUTION = "RESOLUTION"
    PRECISION = "PRECISION"
    FIDELITY = "FIDELITY"
    INPUT_LOOKS = "INPUT_LOOKS"
    OUTPUT = "OUTPUT"

    # -- parameters -------------------------------------------------------------------------------
    def initAlgorithm(self, config: Optional[Dict[str, Any]] = None) -> None:  # noqa: N802 - QGIS API
        entries = shipped_models()
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        self.addParameter(QgsProcessingParameterExtent(
            self.EXTENT, "Area of interest (empty = whole layer)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.SCALE, "Scale factor (e.g. 2.5)", QgsProcessingParameterNumber.Double,
            defaultValue=2.0, minValue=MIN_SCALE, maxValue=max_scale(entries)))
        names = [e.name for e in entries] or ["(no model installed: set MODEL_FILE)"]
        self.addParameter(QgsProcessingParameterEnum(
            self.MODEL, "Model", options=names, defaultValue=0))
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL_FILE, "Custom model file (overrides Model)",
            behavior=QgsProcessingParameterFile.File, fileFilter="ONNX model (*.onnx)", optional=True))
        self.addParameter(QgsProcessingParameterBand(
            self.BANDS, "Bands (3 as R, G, B, or 1 as grey)",
            parentLayerParameterName=self.INPUT, optional=True, allowMultiple=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.ALL_BANDS, "Every band (groups of three)", defaultValue=False))
        self.addParameter(QgsProcessingParameterEnum(
            self.DEVICE, "Device", options=list(DEVICES), defaultValue=0))
        tile = QgsProcessingParameterNumber(
            self.TILE_SIZE, "Tile size (input px, 0 = auto)", QgsProcessingParameterNumber.Integer,
            defaultValue=0, minValue=0, maxValue=100000)
        tile.setFlags(tile.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(tile)
        ensemble = QgsProcessingParameterBoolean(
            self.ENSEMBLE, "Best quality (8 passes, 8x the time)", defaultValue=False)
        ensemble.setFlags(ensemble.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(ensemble)
        precision = QgsProcessingParameterEnum(
            self.PRECISION, "Decoder precision (int8: faster on CPU, see the help)", options=["fp32", "int8"],
            defaultValue=0)
        precision.setFlags(precision.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(precision)
        self.addParameter(QgsProcessingParameterBoolean(
            self.FIDELITY, "Radiometric fidelity (the output averages back to the input)", defaultValue=False))
        looks = QgsProcessingParameterEnum(
            self.INPUT_LOOKS, "Input looks (degradation-aware model: auto estimates it from the whole raster)",
            options=list(INPUT_LOOKS_CHOICES), defaultValue=0)
        looks.setFlags(looks.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(looks)
        resolution = QgsProcessingParameterNumber(
            self.RESOLUTION, "Read resolution of web/virtual layers (map units per pixel, 0 = native)",
            QgsProcessingParameterNumber.Double, defaultValue=0.0, minValue=0.0, optional=True)
        resolution.setFlags(resolution.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(resolution)
        cluster = QgsProcessingParameterString(
            self.CLUSTER, "Dask scheduler address (tcp://host:8786; empty = run here)", defaultValue="",
            optional=True)
        cluster.setFlags(cluster.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(cluster)
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.WEIGHTS_MAP, "Weights map (learned vs LIIF mixing)",
            optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Super-resolved raster"))
        self.addOutput(QgsProcessingOutputNumber("WIDTH", "Output width (pixels)"))
        self.addOutput(QgsProcessingOutputNumber("HEIGHT", "Output height (pixels)"))
        self.addOutput(QgsProcessingOutputString("PROVIDER", "onnxruntime execution provider used"))
        self.addOutput(QgsProcessingOutputString(
            "FIDELITY_REPORT", "Area average of the output - input per band (RMS, max), in input units"))

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        entries = shipped_models()
        if entries:
            models = "".join(
                f"<li>{i} = <b>{e.name}</b> ({e.card.method}, trained ×{e.card.trained_scale_min:g}–"
                f"×{e.card.trained_scale_max:g}, recommended up to ×{e.card.recommended_max_scale:g}, "
                f"hard limit ×{e.card.hard_max_scale:g}){': ' + e.card.description if e.card.description else ''}</li>"
                for i, e in enumerate(entries))
        else:
            models = "<li>none found (install onnxruntime, or run <tt>make export-liif</tt>)</li>"
        return (
            "<p>Upscales a raster by any real factor with an implicit neural network (MLIN: learned "
            "meta-weights; or LIIF: area weights) run by onnxruntime. The output covers the same extent "
            "with smaller pixels, keeps the CRS and the data type, and is written as GeoTIFF. Large "
            "rasters are processed in tiles with a halo, so tiles leave no seams.</p>"
            "<p><b>Input raster</b> (INPUT): any raster layer: a file GDAL reads (GeoTIFF, PNG, JPEG, VRT, "
            "GeoPackage…) is read directly; other layers (virtual rasters, WMS/WMTS, XYZ tiles) are first read "
            "through QGIS for the area of interest into a temporary GeoTIFF (web layers need an area). "
            "Byte, (U)Int16, (U)Int32 or Float. Byte values map to the model as value/255; "
            "other types are stretched per band (2nd–98th percentile of the valid pixels) and mapped "
            "back, so the output has the input's data type. Nodata, masks and alpha are kept.</p>"
            "<p><b>Area of interest</b> (EXTENT, optional): only this part of the layer is super-resolved, "
            "in any CRS; it is snapped outward to input pixels, the model still sees the pixels around it, "
            "so the result equals the same window of a whole-layer run; the output is georeferenced to it.</p>"
            "<p><b>Decoder precision</b> (PRECISION, advanced): 0 = fp32; 1 = int8, the model's quantised "
            "decoder (decoder.int8.onnx): 1.1–1.3x faster end to end on this project's CPU, within 0.02 dB of "
            "fp32 on UC Merced val (measured in docs/PERFORMANCE.md); models without it refuse int8.</p>"
            "<p><b>Read resolution</b> (RESOLUTION, advanced): map units per input pixel when a web or "
            "virtual layer is read; 0 = the layer's own (for web layers their finest zoom level).</p>"
            "<p><b>Scale factor</b> (SCALE): output pixels per input pixel along each axis, e.g. 2.5. "
            "It must be above 1 and at most the model's hard limit; beyond its trained range quality "
            "drops gradually.</p>"
            f"<p><b>Model</b> (MODEL): an installed model, by index:<ul>{models}</ul></p>"
            "<p><b>Custom model</b> (MODEL_FILE): the encoder.onnx or decoder.onnx of a pair written by "
            "<i>Export checkpoint to ONNX</i> (mlin:exportonnx); both files must lie in the same folder. "
            "When set, it replaces Model.</p>"
            "<p><b>Bands</b> (BANDS): three bands fed to the model as red, green, blue, or one band "
            "processed as grey. Empty: the bands marked red/green/blue, else the first three; a "
            "single-band raster is processed as grey. Only the chosen bands (and the alpha band, which "
            "is carried over, never fed to the model) are written.</p>"
            "<p><b>Device</b> (DEVICE): 0 = auto (CUDA if onnxruntime-gpu sees a GPU, else CPU), 1 = cpu, "
            "2 = cuda.</p>"
            "<p><b>Tile size</b> (TILE_SIZE, advanced): input pixels per tile side; 0 picks one from the "
            "available memory. The result does not depend on it.</p>"
            "<p><b>Every band</b> (ALL_BANDS): process every non-alpha band (4-band RGB+NIR, 8-band, "
            "Sentinel-2 stacks) in groups of three, a left-over band as grey, and keep them all in the "
            "output with the input's data type. The model was trained on RGB, so a non-visible band is "
            "treated as one more image channel: its sharpening follows the spatial structure it shares "
            "with its group, not any physics of that band. Overrides Bands.</p>"
            "<p><b>Best quality</b> (ENSEMBLE, advanced): average the model's output over the 8 flips "
            "and transposes of the input; about 8 times the time of one pass, for a small gain in "
            "accuracy (measured in the model card).</p>"
            "<p><b>Radiometric fidelity</b> (FIDELITY): correct the output, with the smallest change, so that "
            "its area average over each input pixel gives back that input pixel in every band (before rounding; "
            "pixels where clipping to the data type breaks it are counted). For indices, classification and "
            "reflectance work. Every output carries the report (metadata items FIDELITY_*), with or without it.</p>"
            "<p><b>Input looks</b> (INPUT_LOOKS, advanced): 0 = auto, the degradation-aware model reads how the "
            "raster looks (aliasing, blur, noise, compression) once, from windows spread over the whole raster, and "
            "sets its weights for it; 1-5 = clean, sharp (an aliasing sensor), compressed (JPEG), noisy, blurred, "
            "to override that judgement. The code it ran with is in the metadata (MLIN_INPUT_CODE).</p>"
            "<p><b>Dask scheduler</b> (CLUSTER, advanced, optional): the address of a running Dask scheduler "
            "(<tt>tcp://host:8786</tt>, started outside QGIS with <tt>dask scheduler</tt> and <tt>dask worker</tt>); "
            "the raster is then cut into blocks computed by the cluster's workers, which must read the input "
            "and output paths (a shared folder), and the result is the same. An interrupted run resumes its "
            "finished blocks when run again. Empty: run here, as usual. Needs dask[distributed] in QGIS's "
            "Python; no local cluster is started from QGIS.</p>"
            "<p><b>Weights map</b> (WEIGHTS_MAP, optional): a float raster on the output grid telling how "
            "far the model's learned mixing weights depart from LIIF's area weights (0 = identical). "
            "Useful to see where MLIN behaves differently from LIIF.</p>"
            "<p><b>Output</b> (OUTPUT): the super-resolved GeoTIFF. A cancelled or failed run leaves no "
            "file behind.</p>"
        )

    def helpUrl(self) -> str:  # noqa: N802 - QGIS API
        return "https://github.com/mlin-qgis/mlin-qgis#readme"

    def checkParameterValues(self, parameters: Dict[str, Any], context: QgsProcessingContext) -> Tuple[bool, str]:  # noqa: N802
        """Refuse a scale above the chosen shipped model's hard limit before anything runs."""
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        if self.parameterAsFile(parameters, self.MODEL_FILE, context):
            return True, ""  # a custom model's card is read (and the scale checked) by the core
        entries = shipped_models()
        index = self.parameterAsEnum(parameters, self.MODEL, context)
        scale = self.parameterAsDouble(parameters, self.SCALE, context)
        if entries and 0 <= index < len(entries) and scale > entries[index].card.hard_max_scale:
            return False, (f"Scale ×{scale:g} is above the hard limit ×{entries[index].card.hard_max_scale:g} "
                           f"of model {entries[index].name}.")
        return True, ""

    # -- run ----------------------------------------------------------------------------------------
    def _model(self, parameters: Dict[str, Any], context: QgsProcessingContext) -> Optional[str]:
        """Custom file if given, else the chosen shipped model's folder (None: the core's default)."""
        custom = self.parameterAsFile(parameters, self.MODEL_FILE, context)
        if custom:
            return custom
        entries = shipped_models()
        index = self.parameterAsEnum(parameters, self.MODEL, context)
        if 0 <= index < len(entries):
            return entries[index].spec
        return None

    @staticmethod
    def _run_on_cluster(request: Any, address: str, progress: Any, feedback: QgsProcessingFeedback) -> Any:
        """The blocks on a running Dask scheduler (never a local cluster from QGIS's Python)."""
        from mlin_qgis.core.cluster import ClusterConfig, ClusterSession, superresolve_on_cluster

        with ClusterSession(ClusterConfig(address=address, allow_local=False)) as session:
            return superresolve_on_cluster(request, session, progress=progress, is_cancelled=feedback.isCanceled,
                                           say=feedback.pushInfo)

    def _process(self, parameters: Dict[str, Any], context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback) -> Dict[str, Any]:
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException(self.invalidRasterError(parameters, self.INPUT))
        scale = self.parameterAsDouble(parameters, self.SCALE, context)
        bands = self.parameterAsInts(parameters, self.BANDS, context) or None
        device = DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)]
        tile_size = self.parameterAsInt(parameters, self.TILE_SIZE, context) or None
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        weights_map = self.parameterAsOutputLayer(parameters, self.WEIGHTS_MAP, context) or None
        ensemble = 8 if self.parameterAsBoolean(parameters, self.ENSEMBLE, context) else 1
        all_bands = self.parameterAsBoolean(parameters, self.ALL_BANDS, context)
        if all_bands:
            bands = None
        model = self._model(parameters, context)
        precision = ("fp32", "int8")[self.parameterAsEnum(parameters, self.PRECISION, context)]
        fidelity = self.parameterAsBoolean(parameters, self.FIDELITY, context)
        input_looks = INPUT_LOOKS_CHOICES[self.parameterAsEnum(parameters, self.INPUT_LOOKS, context)]
        cluster = (self.parameterAsString(parameters, self.CLUSTER, context) or "").strip()
        if cluster and not dependencies.distributed_available():
            raise MlinError(dependencies.distributed_install_text())
        if not dependencies.onnxruntime_available():
            raise MlinError(dependencies.onnxruntime_install_text())
        area = None
        if parameters.get(self.EXTENT) not in (None, ""):
            area = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
        resolution = self.parameterAsDouble(parameters, self.RESOLUTION, context) or None
        if cluster and raster_file_path(layer) is None:
            raise RasterError(
                f"Layer '{layer.name()}' is not a file: it would be read into a temporary file on this computer, "
                "which the cluster's workers cannot see; save it as a GeoTIFF in a shared folder first, or leave "
                "CLUSTER empty.")
        source = layer_source(layer, area, resolution, feedback)
        try:
            return self._run(layer, source, output, weights_map, scale, model, bands, all_bands, tile_size, device,
                             ensemble, cluster, context, feedback, precision, fidelity, input_looks)
        finally:
            source.cleanup()

    def _run(self, layer: Any, source: Any, output: str, weights_map: Optional[str], scale: float, model: Optional[str],
             bands: Optional[List[int]], all_bands: bool, tile_size: Optional[int], device: str, ensemble: int,
             cluster: str, context: QgsProcessingContext, feedback: QgsProcessingFeedback,
             precision: str = "fp32", fidelity: bool = False, input_looks: str = "auto") -> Dict[str, Any]:
        from mlin_qgis.core import pipeline

        request = pipeline.SuperResolveRequest(
            input_path=source.path, output_path=output, scale=scale, model=model, bands=bands,
            tile_size=tile_size, device=device, weights_map_path=weights_map, ensemble=ensemble,
            all_bands=all_bands, extent=source.extent, precision=precision, fidelity=fidelity,
            input_looks=input_looks)
        feedback.pushInfo(f"Input: {source.description} ({layer.bandCount()} bands)"
                          + (" — area {:.6g}, {:.6g} – {:.6g}, {:.6g}".format(*source.extent) if source.extent else ""))
        feedback.pushInfo(f"Model: {model or 'default'}; scale ×{scale:g}; device {device}"
                          + ("; ensemble of 8 passes (about 8x the time of one)" if ensemble > 1 else ""))

        def progress(fraction: float, message: str = "") -> None:
            feedback.setProgress(100.0 * max(0.0, min(1.0, float(fraction))))
            if message:
                feedback.setProgressText(message)

        if cluster:
            result = self._run_on_cluster(request, cluster, progress, feedback)
        else:
            result = pipeline.superresolve(request, progress=progress, is_cancelled=feedback.isCanceled)

        for warning in result.warnings or ():
            feedback.pushWarning(str(warning))
        if getattr(result, "route", ""):
            feedback.pushInfo(f"Model picked: {result.route}")
        feedback.pushInfo(f"Execution provider: {result.provider}")
        feedback.pushInfo(f"Output: {result.width} × {result.height} px (×{result.scale_x:.6g} horizontally, "
                          f"×{result.scale_y:.6g} vertically) → {result.output_path}")
        feedback.pushInfo(f"Time: {result.seconds:.2f} s ({result.mpx_per_s:.3g} output Mpx/s)")
        report = result.fidelity.describe() if getattr(result, "fidelity", None) is not None else ""
        if report:
            feedback.pushInfo(f"Fidelity (area average of the output - input, input units): {report}")

        if context.willLoadLayerOnCompletion(output):
            details = context.layerToLoadOnCompletionDetails(output)
            details.name = output_layer_name(layer.name(), scale)
            details.forceName = True
        results: Dict[str, Any] = {
            self.OUTPUT: output, "WIDTH": result.width, "HEIGHT": result.height, "PROVIDER": result.provider,
            "FIDELITY_REPORT": report}
        if weights_map:
            if context.willLoadLayerOnCompletion(weights_map):
                details = context.layerToLoadOnCompletionDetails(weights_map)
                details.name = output_layer_name(layer.name(), scale, " weights")
                details.forceName = True
            results[self.WEIGHTS_MAP] = weights_map
        return results
