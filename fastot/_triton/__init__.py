"""GPU kernels in Triton (see :mod:`fastot._triton.softmin`).

Nothing outside this package imports triton: ``import fastot`` works without it. Import this package
only where a kernel is needed (a CUDA op body, or tests that set ``TRITON_INTERPRET=1`` to run the
kernels on CPU tensors through Triton's interpreter).
"""

from __future__ import annotations

from .softmin import PRECISIONS, apply_sqeuclidean, interpreting, lse_dense, lse_sqeuclidean

__all__ = ["PRECISIONS", "apply_sqeuclidean", "interpreting", "lse_dense", "lse_sqeuclidean"]
