"""Type stub for fastot's torch-free C++ extension (csrc/bindings.cpp)."""

from typing import Any, overload

import numpy as np
import numpy.typing as npt

STATUS_OK: int
STATUS_INFEASIBLE: int
STATUS_INVALID: int
HAVE_OPENMP: bool

@overload
def lsa_batch(
    cost: npt.NDArray[np.float64], num_threads: int = 1, isa: str = "auto"
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int32]]:
    """Exact assignment of a C-contiguous ``(B, n, m)`` float64 batch with ``n <= m`` (minimisation, ``+inf``
    forbidden). Returns ``(col4row (B, n) int64, u (B, n), v (B, m), status (B,) int32)`` with
    ``u[i] + v[j] <= C[i, j]``, equality on assigned pairs, ``v == 0`` on unassigned columns;
    status ``STATUS_OK``, ``STATUS_INFEASIBLE`` or ``STATUS_INVALID`` (NaN or ``-inf``). Releases the GIL and
    runs the problems on ``num_threads`` threads. ``isa`` selects the compiled copy of the kernel: ``"auto"``
    (the widest this CPU runs) or one of ``available_isas()``; anything else raises ``ValueError``."""

@overload
def lsa_batch(
    cost: npt.NDArray[np.float32], num_threads: int = 1, isa: str = "auto"
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """float32 overload, solved in float32 arithmetic."""

def available_isas() -> list[str]:
    """Instruction-set copies of the CPU kernels that this build holds and this CPU runs, widest first
    (e.g. ``["avx512", "avx2", "generic"]``); ``"generic"`` is always last."""

@overload
def lse_dense(
    C: npt.NDArray[np.float64],
    h: npt.NDArray[np.float64],
    scale: npt.NDArray[np.float64],
    transpose: bool = False,
    num_threads: int = 1,
    isa: str = "auto",
) -> npt.NDArray[np.float64]:
    """Batched log-sum-exp over a dense cost (the c-transform of log-domain Sinkhorn).

    ``C (B, n, m)``, ``scale (B,)`` (= 1/epsilon per problem, positive and finite), C-contiguous, one dtype.
    ``transpose=False``: ``h (B, m)`` -> ``out (B, n)``,
    ``out[b, i] = log sum_j exp(h[b, j] - scale[b] * C[b, i, j])``;
    ``transpose=True``: ``h (B, n)`` -> ``out (B, m)``,
    ``out[b, j] = log sum_i exp(h[b, i] - scale[b] * C[b, i, j])`` (C is read by rows, never transposed).
    ``C = +inf`` (forbidden) and ``h = -inf`` (zero weight) give zero terms; a sum with no nonzero term gives
    ``-inf``. NaN in C or h, ``C = -inf`` or ``h = +inf`` give NaN in the affected outputs (not checked).
    Results do not depend on ``num_threads``. Releases the GIL. ``isa``: as in ``lsa_batch``. Shape errors
    and a bad ``scale`` or ``isa`` raise ``ValueError``; mixed dtypes or non-contiguous arrays ``TypeError``.
    """

@overload
def lse_dense(
    C: npt.NDArray[np.float32],
    h: npt.NDArray[np.float32],
    scale: npt.NDArray[np.float32],
    transpose: bool = False,
    num_threads: int = 1,
    isa: str = "auto",
) -> npt.NDArray[np.float32]:
    """float32 overload, accumulated in float32."""

@overload
def lse_sqeuclidean(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    h: npt.NDArray[np.float64],
    scale: npt.NDArray[np.float64],
    num_threads: int = 1,
    isa: str = "auto",
) -> npt.NDArray[np.float64]:
    """``lse_dense`` for the squared-Euclidean cost computed on the fly (never an ``n x m`` array).

    ``x (B, n, d)``, ``y (B, m, d)``, ``h (B, m)``, ``scale (B,)`` -> ``out (B, n)``,
    ``out[b, i] = log sum_j exp(h[b, j] - scale[b] * |x[b, i] - y[b, j]|^2)``, the cost taken as
    ``|x_i|^2 + |y_j|^2 - 2 <x_i, y_j>`` clamped at 0 (``|x_i - x_i|^2`` comes out exactly 0). The column
    direction is the same call with ``x`` and ``y`` swapped. Extra memory: ``O(m d)`` plus a tile per thread.
    """

@overload
def lse_sqeuclidean(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    h: npt.NDArray[np.float32],
    scale: npt.NDArray[np.float32],
    num_threads: int = 1,
    isa: str = "auto",
) -> npt.NDArray[np.float32]:
    """float32 overload, accumulated in float32."""

def sinkhorn_step_dense(
    C: npt.NDArray[Any],
    hg: npt.NDArray[Any],
    sf: npt.NDArray[Any],
    log_a: npt.NDArray[Any],
    coef: npt.NDArray[Any],
    sg: npt.NDArray[Any],
    cap: npt.NDArray[Any] | None = None,
    active: npt.NDArray[np.uint8] | None = None,
    num_threads: int = 1,
    isa: str = "auto",
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """The fused Sinkhorn step over a dense cost ``C (B, n, m)`` (float32 or float64, all arrays alike).

    ``S[b, i] = LSE_j (hg[b, j] - sf[b] C[b, i, j])``, ``f = min(coef[b] S, cap)``,
    ``T[b, j] = LSE_i (log_a[b, i] + sg[b] f[b, i] - sg[b] C[b, i, j])``: the row update and, from it,
    the next column update, in one pass over ``C``. ``hg (B, m)``, ``sf``, ``coef``, ``sg (B,)``,
    ``log_a (B, n)``, ``cap (B, n)`` or ``None``, ``active (B,)`` uint8 or ``None`` (inactive problems are
    skipped; their rows are NaN). Returns ``(S (B, n), T (B, m))``.
    """

def sinkhorn_step_sqeuclidean(
    x: npt.NDArray[Any],
    y: npt.NDArray[Any],
    hg: npt.NDArray[Any],
    sf: npt.NDArray[Any],
    log_a: npt.NDArray[Any],
    coef: npt.NDArray[Any],
    sg: npt.NDArray[Any],
    cap: npt.NDArray[Any] | None = None,
    active: npt.NDArray[np.uint8] | None = None,
    num_threads: int = 1,
    isa: str = "auto",
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """``sinkhorn_step_dense`` with ``C = |x_i - y_j|^2`` of ``x (B, n, d)``, ``y (B, m, d)`` computed on
    the fly (never ``n x m``)."""

def plan_dot_dense(
    C: npt.NDArray[Any],
    hr: npt.NDArray[Any],
    hc: npt.NDArray[Any],
    scale: npt.NDArray[Any],
    num_threads: int = 1,
    isa: str = "auto",
) -> npt.NDArray[Any]:
    """``out[b] = sum_ij P_ij C[b, i, j]``, ``P_ij = exp(hr[b, i] + hc[b, j] - scale[b] C[b, i, j])`` (0 where
    ``C = +inf``); ``C (B, n, m)``, ``hr (B, n)``, ``hc (B, m)``, ``scale (B,)`` -> ``(B,)``."""

def plan_dot_sqeuclidean(
    x: npt.NDArray[Any],
    y: npt.NDArray[Any],
    hr: npt.NDArray[Any],
    hc: npt.NDArray[Any],
    scale: npt.NDArray[Any],
    num_threads: int = 1,
    isa: str = "auto",
) -> npt.NDArray[Any]:
    """``plan_dot_dense`` with the squared-Euclidean cost of ``x``, ``y`` computed on the fly."""

@overload
def _exp_approx(
    x: npt.NDArray[np.float64], full_range: bool = False, isa: str = "auto"
) -> npt.NDArray[np.float64]:
    """Test hook: the log-sum-exp kernels' vectorised exp, elementwise. ``full_range=False`` (the kernels'
    variant) is valid for ``x <= 0`` only. Below -708 (float32: -87) the result is exactly 0."""

@overload
def _exp_approx(
    x: npt.NDArray[np.float32], full_range: bool = False, isa: str = "auto"
) -> npt.NDArray[np.float32]: ...
