# mlin-qgis: every target installs what it needs first (scripts/setup.sh is idempotent and quick when done).
SHELL := /bin/bash
PY := .venv/bin/python
export QT_QPA_PLATFORM ?= offscreen
export PYTHONUNBUFFERED := 1
SHARED ?= ../shared
DEMO_SCALE ?= 4

.PHONY: setup demo test bench train-mlin train-ablation evaluate export-liif plugin zip deploy qgis_process batch clean

setup:
	@bash scripts/setup.sh

## The main job: super-resolve the shipped sample raster with the shipped default model.
demo: setup
	@mkdir -p build/demo
	$(PY) -m mlin_qgis sr resources/OSBS_029.tif build/demo/OSBS_029_x$(DEMO_SCALE).tif --scale $(DEMO_SCALE)
	@echo "demo: result written to $(CURDIR)/build/demo/OSBS_029_x$(DEMO_SCALE).tif"

## The whole test suite (real QGIS, GDAL and onnxruntime, headless).
test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) -m bench

train-mlin: setup
	$(PY) -m mlin_qgis train --config configs/mlin_ucmerced.yaml

train-ablation: setup
	$(PY) -m mlin_qgis train --config configs/liif_area_ucmerced.yaml

## Re-export the official LIIF checkpoint as the area-weight baseline model.
export-liif: setup
	$(PY) -m mlin_qgis export --checkpoint $(SHARED)/weights/edsr-baseline-liif.pth --out models/liif-edsr-div2k

clean:
	rm -rf build .pytest_cache
