"""Benchmarks for mlin-qgis: `python -m bench` (or `make bench`) prints one table.

Rows: the straightforward PyTorch decoder (LIIF-literal), the factored PyTorch decoder, the ONNX
engine and GDAL bicubic, at x2/x4/x8 on one real 256x256 remote-sensing image; plus the decoder's
achieved GFLOP/s against this machine's measured matmul peak and the peak RSS of the tiled
GeoTIFF path. `python -m bench tune` measures the engine's knobs (chunk, threads, graph
optimisation, graph variants). See docs/PERFORMANCE.md.
"""
