# mlin-qgis: every target installs what it needs first (scripts/setup.sh is idempotent and quick when done).
SHELL := /bin/bash
PY := .venv/bin/python
export QT_QPA_PLATFORM ?= offscreen
export PYTHONUNBUFFERED := 1
SHARED ?= ../shared
DEMO_SCALE ?= 4

.PHONY: setup demo test bench bench-cluster screenshots gpu-check train-robust train-auto fit-router train-mlin train-ablation meta-ablation evaluate export-liif plugin zip deploy qgis_process batch clean

setup:
	@bash scripts/setup.sh

## The main job: super-resolve the shipped sample raster with the shipped default model.
demo: setup
	@mkdir -p build/demo
	$(PY) -m mlin_qgis sr resources/OSBS_029.tif build/demo/OSBS_029_x$(DEMO_SCALE).tif --scale $(DEMO_SCALE)
	@echo "demo: result written to $(CURDIR)/build/demo/OSBS_029_x$(DEMO_SCALE).tif"

## The whole test suite (real QGIS, GDAL and onnxruntime, headless).
## Lint (ruff), types (mypy on mlin_qgis/core) and the tests; skips are listed with their reasons.
test: setup
	.venv/bin/ruff check .
	.venv/bin/mypy
	$(PY) -m pytest -q -rs tests

bench: setup
	$(PY) -m bench

## Single process vs the Dask cluster path on one machine, same 2000x2000 raster at x2 (~20 min on 2 cores).
bench-cluster: setup
	$(PY) -m bench cluster $(ARGS)

## The README's screenshots (zoom dialog; result next to its input), remade in a real headless QGIS.
screenshots: setup
	$(PY) scripts/screenshots.py

## On a machine with an NVIDIA GPU: onnxruntime-gpu, the CUDA tests and a CUDA/CPU speed table (says so when no GPU).
gpu-check: setup
	@bash scripts/gpu_check.sh

## Two phases each (the shipped model's recipe): 2000 iterations with L1, then 1500 more with L2.
train-mlin: setup
	$(PY) -m mlin_qgis train --config configs/mlin_ucmerced.yaml
	$(PY) -m mlin_qgis train --config configs/mlin_ucmerced_l2.yaml

## The default model: MLIN 0.3.0 (checkpoints/) continued on degraded LR with the encoder fine-tuned
## (450 iterations, ~1 h on one CPU thread), and the frozen-encoder run it was compared with.
train-robust: setup
	$(PY) -m mlin_qgis train --config configs/robust_mlin_encoder.yaml
	$(PY) -m mlin_qgis train --config configs/robust_mlin.yaml

## `--model auto`: the sharp-input decoder, first on the robust model's frozen encoder (~1 h on one CPU
## thread), then with its encoder fine-tuned in two 1500-iteration phases (~1 h each on 2 threads),
## shipped as models/mlin-robust-ucmerced/{encoder,decoder}.sharp.onnx, then the router fitted on
## degraded TRAINING images (its aliasing detector ~15 min, every route run on every sample ~40 min,
## one thread; both cached under runs/router/).
train-auto: setup
	$(PY) -m mlin_qgis train --config configs/robust_sharp_decoder.yaml
	$(PY) -m mlin_qgis export --ship --variant sharp --checkpoint runs/robust-sharp-decoder/checkpoint.pth \
	  --out models/mlin-robust-ucmerced --training-data "UC Merced train (1260 images), aliased LR only" \
	  --hardware "1 CPU thread" --description "LR sampled without an antialiasing filter (sharp, aliasing sensor)"
	# encoder phases (0.6.2): the encoder fine-tuned too (2e-5, then 1e-4), from the frozen phase's exact shipped weights
	$(PY) -m mlin_qgis import-onnx --model mlin-robust-ucmerced@sharp --out runs/import/robust-sharp.pth
	$(PY) -m mlin_qgis train --config configs/robust_sharp_encoder.yaml
	$(PY) -m mlin_qgis train --config configs/robust_sharp_encoder2.yaml
	$(PY) -m mlin_qgis export --ship --variant sharp --checkpoint runs/robust-sharp-encoder2/checkpoint.pth \
	  --out models/mlin-robust-ucmerced --training-data "UC Merced train (1260 images), aliased LR only" \
	  --hardware "1-2 threads of a 2-core AMD EPYC CPU, no GPU" --description "LR sampled without an antialiasing filter (sharp, aliasing sensor)"
	$(PY) -m mlin_qgis quantize --model mlin-robust-ucmerced@sharp
	$(MAKE) fit-router

fit-router: setup
	$(PY) -m mlin_qgis fit-router --mixing blend --routes clean,sharp,other --jpeg-every 3 --out models/router.json --report docs/results/router.md

train-ablation: setup
	$(PY) -m mlin_qgis train --config configs/liif_area_ucmerced.yaml
	$(PY) -m mlin_qgis train --config configs/liif_area_ucmerced_l2.yaml

## Meta vs area weights under the robust training, same budget (two runs side by side, ~1 h on the two
## cores; then ~30 min of paired evaluation): docs/results/meta_ablation_robust.md.
meta-ablation: setup
	bash scripts/meta_ablation.sh train
	bash scripts/meta_ablation.sh eval bicubic-aliased & bash scripts/meta_ablation.sh eval jpeg,bicubic; wait
	bash scripts/meta_ablation.sh report

## The quality table of the model card: bicubic, official LIIF, the area-weight ablation (when its run
## is in runs/) and the shipped MLIN on UC Merced val, whole images (~20 min per model on one core).
VAL ?= $(SHARED)/data/ucmerced/val
SCALES ?= 2,2.5,3,3.5,4,6,8,10
evaluate: setup
	$(PY) -m mlin_qgis evaluate --data $(VAL) --scales $(SCALES) --out build/eval \
	  --checkpoint liif=models/liif-edsr-div2k --checkpoint mlin=models/mlin-edsr-ucmerced \
	  $$([ -f runs/liif-area-l2/checkpoint.pth ] && echo --checkpoint liif-area-rs=runs/liif-area-l2/checkpoint.pth)

## Re-export the official LIIF checkpoint as the area-weight baseline model.
export-liif: setup
	$(PY) -m mlin_qgis export --checkpoint $(SHARED)/weights/edsr-baseline-liif.pth --out models/liif-edsr-div2k

clean:
	rm -rf build .pytest_cache

## ---- QGIS plugin: build, package, install, and run it with real qgis_process -------------------
# build/mlin_qgis/ is the plugin folder QGIS expects: the package (without __pycache__), plus
# metadata.txt, resources/, models/ (mlin_qgis/core/models.py looks in <package>/models) and LICENSE.
PLUGIN_BUILD ?= build
PLUGIN_DIR := $(PLUGIN_BUILD)/mlin_qgis
QGIS_PLUGINS_DIR ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/default/python/plugins

plugin:
	@rm -rf $(PLUGIN_DIR) && mkdir -p $(PLUGIN_DIR)
	@tar -C mlin_qgis --exclude=__pycache__ --exclude='*.pyc' -cf - . | tar -C $(PLUGIN_DIR) -xf -
	@cp metadata.txt $(PLUGIN_DIR)/
	@tar --exclude=__pycache__ --exclude='*.pth' -cf - resources $$([ -d models ] && echo models) | tar -C $(PLUGIN_DIR) -xf -
	@for f in LICENSE LICENSE.txt LICENSE.md README.md; do [ -f $$f ] && cp $$f $(PLUGIN_DIR)/ || true; done
	@[ -f $(PLUGIN_DIR)/LICENSE ] || echo "plugin: warning: no LICENSE file at the repository root (plugins.qgis.org requires one)" >&2
	@echo "plugin: $(abspath $(PLUGIN_DIR)) ($$(find $(PLUGIN_DIR)/models -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l) model folder(s))"

zip: plugin
	@rm -f $(PLUGIN_BUILD)/mlin_qgis.zip
	@cd $(PLUGIN_BUILD) && python3 -m zipfile -c mlin_qgis.zip mlin_qgis
	@echo "zip: $(abspath $(PLUGIN_BUILD))/mlin_qgis.zip (install with Plugins > Manage and Install Plugins > Install from ZIP)"

deploy: plugin
	@mkdir -p $(QGIS_PLUGINS_DIR)
	@rm -rf $(QGIS_PLUGINS_DIR)/mlin_qgis
	@cp -r $(PLUGIN_DIR) $(QGIS_PLUGINS_DIR)/mlin_qgis
	@echo "deploy: $(QGIS_PLUGINS_DIR)/mlin_qgis (restart QGIS, then enable it in Plugins > Manage and Install Plugins)"

## make qgis_process ARGS='run mlin:superresolve -- INPUT=in.tif SCALE=2.5 OUTPUT=out.tif'
# make itself exits 2 on any failure; its "Error N" line shows qgis_process's own exit code N
# (call scripts/qgis_process.sh directly to get N as the exit status).
qgis_process: setup plugin
	@MLIN_PLUGIN_BUILD=$(PLUGIN_BUILD) bash scripts/qgis_process.sh $(ARGS)

## make batch IN=folder OUT=folder SCALE=2.5 [MODEL=0] [MODEL_FILE=x/encoder.onnx] [DEVICE=0|1|2] [TILE_SIZE=256]
batch: setup plugin
	@MLIN_PLUGIN_BUILD=$(PLUGIN_BUILD) MODEL="$(MODEL)" MODEL_FILE="$(MODEL_FILE)" DEVICE="$(DEVICE)" \
	  TILE_SIZE="$(TILE_SIZE)" bash scripts/batch.sh "$(IN)" "$(OUT)" "$(SCALE)"
