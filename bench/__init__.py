"""fastot benchmarks: ``python -m bench [--quick] [--only FAMILY[,FAMILY]] [--threads N]``.

Each op family lives in ``bench/<family>.py`` and exposes ``run(config) -> int``; it is registered
in ``bench/__main__.py``. Generic pieces (timing, correctness gate, machine info, CSV, plot) live in
``bench/harness.py``.

This module must not import NumPy or torch: ``set_thread_env`` has to run before they load, so that
the BLAS and OpenMP thread pools are sized from the environment variables it sets.
"""

from __future__ import annotations

import os

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "RAYON_NUM_THREADS",
)


def set_thread_env(threads: int) -> None:
    """Pin the thread pools of every native library to ``threads`` (call before importing NumPy)."""
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)
