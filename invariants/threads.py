"""One BLAS thread per process, set before numpy is first imported.

OpenBLAS, MKL and friends read their thread counts once, when the library loads. The
problems here are tiny, and under xdist several BLAS threads per worker only fight
each other for the cores. This module imports only `os`, so a conftest or a pytest
plugin can call it before anything imports numpy.
"""

from __future__ import annotations

import os

__all__ = ["BLAS_THREAD_VARS", "cap_blas_threads"]

BLAS_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def cap_blas_threads() -> None:
    """Set each variable to 1 unless the user has set it."""
    for var in BLAS_THREAD_VARS:
        os.environ.setdefault(var, "1")
