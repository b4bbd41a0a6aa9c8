"""Reference linear sum assignment: scipy's solver, and brute force over permutations for tiny problems.

Both take a ``(..., n, m)`` cost (anything ``np.asarray`` accepts, or a CPU/CUDA tensor), solve in float64
and return NumPy ``(row_ind, col_ind)`` of shape ``(..., min(n, m))`` int64 with rows ascending, following
scipy's conventions (``+inf`` forbidden when minimising, ``-inf`` when maximising; NaN and the other
infinity invalid; ``ValueError`` when infeasible).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

__all__ = ["lsa_brute_force", "lsa_reference"]


def _float64(cost: Any) -> np.ndarray:
    try:
        import torch

        if isinstance(cost, torch.Tensor):
            cost = cost.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover
        pass
    C = np.asarray(cost)
    if C.dtype.kind not in "biuf":
        raise TypeError(f"cost must have a real dtype, got {C.dtype}")
    if C.ndim < 2:
        raise ValueError(f"cost must have shape (..., n, m), got shape {C.shape}")
    return C.astype(np.float64, copy=False)


def _batched(solve_2d, C: np.ndarray, maximize: bool) -> tuple[np.ndarray, np.ndarray]:
    *batch, n, m = C.shape
    k = min(n, m)
    rows = np.empty((*batch, k), dtype=np.int64)
    cols = np.empty((*batch, k), dtype=np.int64)
    for idx in np.ndindex(*batch):
        r, c = solve_2d(C[idx], maximize)
        rows[idx], cols[idx] = r, c
    return rows, cols


def lsa_reference(cost: Any, maximize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.optimize.linear_sum_assignment`` on each problem of ``cost (..., n, m)``, in float64."""
    from scipy.optimize import linear_sum_assignment

    def solve_2d(C2: np.ndarray, mx: bool) -> tuple[np.ndarray, np.ndarray]:
        r, c = linear_sum_assignment(C2, maximize=mx)
        return r.astype(np.int64), c.astype(np.int64)

    return _batched(solve_2d, _float64(cost), bool(maximize))


def lsa_brute_force(cost: Any, maximize: bool = False, *, max_size: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive search over all injections of the short side (no scipy needed): ``max(n, m) <= max_size``.

    Among optimal assignments the first in lexicographic order of (columns for rows 0, 1, ...) is returned
    (for ``n > m``: of rows for columns 0, 1, ..., then sorted by row).
    """
    C = _float64(cost)
    if max(C.shape[-2:], default=0) > max_size:
        raise ValueError(f"brute force is for tiny problems: max(n, m) must be <= {max_size}, got {C.shape}")
    return _batched(_brute_force_2d, C, bool(maximize))


def _brute_force_2d(C: np.ndarray, maximize: bool) -> tuple[np.ndarray, np.ndarray]:
    if np.isnan(C).any() or (C == (np.inf if maximize else -np.inf)).any():
        raise ValueError("matrix contains invalid numeric entries")
    n, m = C.shape
    if n == 0 or m == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    transposed = n > m
    S = -C.T if maximize and transposed else (C.T if transposed else (-C if maximize else C))
    r, c = S.shape  # r <= c; minimise S, +inf forbidden
    best, best_cols = np.inf, None
    rows = np.arange(r)
    for cols in itertools.permutations(range(c), r):
        total = S[rows, list(cols)].sum()
        if total < best:
            best, best_cols = total, cols
    if best_cols is None:  # every injection hits +inf
        raise ValueError("cost matrix is infeasible")
    picked = np.asarray(best_cols, dtype=np.int64)
    if not transposed:
        return rows.astype(np.int64), picked
    order = np.argsort(picked)
    return picked[order], order.astype(np.int64)
