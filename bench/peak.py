"""This machine's single-precision matrix-multiply peak, measured with numpy's BLAS on all cores.

A measured peak (not a data-sheet one) is what the decoder's achieved GFLOP/s is compared with:
it already includes the clock, the cores this VM really gets and the BLAS's own efficiency, so
"% of peak" says how much of the GEMM speed the decoder keeps despite gathers and element-wise work.
"""
from __future__ import annotations

import time

import numpy as np

PEAK_N = 2048


class MatmulPeak:
    """Keeps the best float32 `n x n @ n x n` rate over all samples; sample it between bench rounds
    so it sees the same machine load as the rows."""

    def __init__(self, n: int = PEAK_N) -> None:
        rng = np.random.default_rng(0)
        self.n = n
        self.a = rng.standard_normal((n, n), dtype=np.float32)
        self.b = rng.standard_normal((n, n), dtype=np.float32)
        self.out = np.empty((n, n), np.float32)
        np.matmul(self.a, self.b, out=self.out)  # warm-up: BLAS threads and pages
        self.best = 0.0
        self.samples = 0

    def sample(self, times: int = 2) -> float:
        for _ in range(times):
            t0 = time.perf_counter()
            np.matmul(self.a, self.b, out=self.out)
            dt = time.perf_counter() - t0
            self.best = max(self.best, 2.0 * self.n ** 3 / dt / 1e9)
            self.samples += 1
        return self.best


_SINGLE = """
import time, numpy as np
n = {n}
a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32); b = a.copy(); out = np.empty_like(a)
np.matmul(a, b, out=out)
best = 0.0
for _ in range({times}):
    c0 = time.process_time(); np.matmul(a, b, out=out); best = max(best, 2.0 * n ** 3 / (time.process_time() - c0) / 1e9)
print(best)
"""


def single_thread_cpu_peak(n: int = PEAK_N, times: int = 4) -> float:
    """GFLOP per CPU-second of a 1-thread float32 matmul (a fresh interpreter with the BLAS pinned to
    one thread): the yardstick for 1-thread configurations timed in CPU seconds on a busy machine."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", _SINGLE.format(n=n, times=times)], env=env,
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip())
