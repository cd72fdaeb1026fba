"""mlin:exportonnx through real QGIS Processing: a real checkpoint exported with torch, then run.

The export of the official LIIF checkpoint needs ../shared/weights (skipped when absent) and torch.
The torch-missing case runs QGIS's own /usr/bin/python3, which has no torch: a real missing dependency.
"""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, needs_shared, smooth_image, write_geotiff

pytest_plugins = ["qgis_fixtures"]

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = SHARED / "weights" / "edsr-baseline-liif.pth"
SYSTEM_PYTHON = Path("/usr/bin/python3")


def test_parameters(mlin_provider) -> None:
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("mlin:exportonnx")
    assert [p.name() for p in alg.parameterDefinitions()] == ["CHECKPOINT", "OUTPUT_FOLDER", "NAME"]
    assert alg.parameterDefinition("CHECKPOINT").extension() == "pth"
    assert alg.parameterDefinition("NAME").flags() & alg.parameterDefinition("NAME").FlagOptional
    assert {o.name() for o in alg.outputDefinitions()} == {"OUTPUT_FOLDER", "ENCODER", "DECODER"}


@needs_shared(CHECKPOINT)
def test_export_real_checkpoint_then_superresolve_with_it(mlin_provider, tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the export needs torch")
    import processing

    out_dir = tmp_path / "liif-export"
    result = processing.run("mlin:exportonnx", {"CHECKPOINT": str(CHECKPOINT), "OUTPUT_FOLDER": str(out_dir),
                                                "NAME": "liif-from-qgis"})
    encoder, decoder = Path(result["ENCODER"]), Path(result["DECODER"])
    assert encoder == out_dir / "encoder.onnx" and decoder == out_dir / "decoder.onnx"
    assert encoder.stat().st_size > 1_000_000 and decoder.stat().st_size > 100_000
    from mlin_qgis.core.card import ModelCard

    card = ModelCard.from_onnx(decoder)
    assert card.name == "liif-from-qgis" and card.method == "liif"

    data = (smooth_image(24, 24, 3, seed=3) * 255).round().astype(np.uint8)
    src = write_geotiff(tmp_path / "small.tif", data)
    sr = processing.run("mlin:superresolve", {"INPUT": str(src), "SCALE": 2, "MODEL_FILE": str(encoder),
                                              "OUTPUT": str(tmp_path / "sr.tif")})
    assert (sr["WIDTH"], sr["HEIGHT"]) == (48, 48)


def test_a_file_that_is_no_checkpoint_gives_a_processing_error(mlin_provider, tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the export needs torch")
    import processing
    from qgis.core import QgsProcessingException

    fake = tmp_path / "fake.pth"
    fake.write_bytes(b"this is not a torch checkpoint")
    with pytest.raises(QgsProcessingException, match="Export of .*fake.pth failed"):
        processing.run("mlin:exportonnx", {"CHECKPOINT": str(fake), "OUTPUT_FOLDER": str(tmp_path / "o")})
    assert not (tmp_path / "o" / "encoder.onnx").exists()
    with pytest.raises(QgsProcessingException, match="does not exist"):
        processing.run("mlin:exportonnx", {"CHECKPOINT": str(tmp_path / "missing.pth"),
                                           "OUTPUT_FOLDER": str(tmp_path / "o")})


@pytest.mark.skipif(not SYSTEM_PYTHON.is_file(), reason="needs Debian's /usr/bin/python3 (QGIS's Python)")
def test_missing_torch_names_the_install_command(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QGIS_CUSTOM_CONFIG_PATH")}
    env.update(QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(tmp_path))
    if subprocess.run([str(SYSTEM_PYTHON), "-c", "import torch"], capture_output=True, env=env).returncode == 0:
        pytest.skip("the system Python has torch, so the missing case cannot be exercised")
    fake = tmp_path / "any.pth"
    fake.write_bytes(b"x")
    code = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(REPO)!r}); sys.path.append("/usr/share/qgis/python/plugins")
        from qgis.core import QgsApplication, QgsProcessingException
        app = QgsApplication([], False, {str(tmp_path / 'profile')!r}); app.initQgis()
        from processing.core.Processing import Processing; Processing.initialize()
        import processing
        from mlin_qgis.qgis_plugin.processing.provider import MlinProvider
        provider = MlinProvider(); QgsApplication.processingRegistry().addProvider(provider)
        try:
            processing.run("mlin:exportonnx", {{"CHECKPOINT": {str(fake)!r}, "OUTPUT_FOLDER": {str(tmp_path / 'o')!r}}})
            message = None
        except QgsProcessingException as exc:
            message = str(exc)
        print("RESULT " + json.dumps({{"message": message, "torch": "torch" in sys.modules}}))
        QgsApplication.processingRegistry().removeProvider(provider)
        app.exitQgis()
    """)
    out = subprocess.run([str(SYSTEM_PYTHON), "-c", code], capture_output=True, text=True, timeout=300, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, out.stdout + out.stderr
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["message"] is not None
    assert "needs the Python package 'torch'" in result["message"]
    assert "-m pip install --user" in result["message"] and "download.pytorch.org/whl/cpu" in result["message"]
    assert "/usr/bin/python3" in result["message"]
