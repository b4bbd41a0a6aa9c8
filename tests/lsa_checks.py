"""Reference checks for assignment results (float64, against scipy).

Assignments can differ from scipy's on ties, so results are compared by their COST and checked to be
valid injective assignments; dual potentials are checked as an optimality certificate.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment as scipy_lsa


def cost_scale(C: np.ndarray) -> float:
    """Largest finite magnitude in C (1.0 for an empty / all-inf matrix)."""
    C = np.asarray(C, dtype=np.float64)
    fin = np.abs(C[np.isfinite(C)])
    return float(fin.max()) if fin.size and fin.max() > 0 else 1.0


def cost_tol(C: np.ndarray, eps: float = np.finfo(np.float64).eps, factor: float = 8.0) -> float:
    """Roundoff budget for a sum of min(n, m) entries after O(n) dual updates."""
    n, m = np.shape(C)[-2:]
    return factor * eps * max(n, m, 1) * cost_scale(C)


def scipy_optimum(C: np.ndarray, maximize: bool = False) -> float:
    C = np.asarray(C, dtype=np.float64)
    r, c = scipy_lsa(C, maximize=maximize)
    return float(C[r, c].sum())


def assert_valid_assignment(C: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    """rows sorted ascending, both injective and in range, k == min(n, m)."""
    n, m = np.shape(C)
    rows = np.asarray(rows)
    cols = np.asarray(cols)
    k = min(n, m)
    assert rows.shape == (k,), f"row_ind shape {rows.shape}, expected {(k,)}"
    assert cols.shape == (k,), f"col_ind shape {cols.shape}, expected {(k,)}"
    assert rows.dtype == np.int64 and cols.dtype == np.int64, (rows.dtype, cols.dtype)
    np.testing.assert_array_equal(rows, np.sort(rows), err_msg="row_ind not sorted")
    assert len(np.unique(rows)) == k, "duplicate rows"
    assert len(np.unique(cols)) == k, "duplicate columns"
    if k:
        assert rows.min() >= 0 and rows.max() < n
        assert cols.min() >= 0 and cols.max() < m
    if n <= m:
        np.testing.assert_array_equal(rows, np.arange(n), err_msg="every row must be assigned")
    else:
        np.testing.assert_array_equal(np.sort(cols), np.arange(m), err_msg="every column must be assigned")


def assert_optimal(
    C: np.ndarray, rows: np.ndarray, cols: np.ndarray, maximize: bool = False, tol: float | None = None
) -> None:
    """Valid assignment whose float64 cost equals scipy's optimum."""
    C = np.asarray(C, dtype=np.float64)
    assert_valid_assignment(C, rows, cols)
    got = float(C[np.asarray(rows), np.asarray(cols)].sum())
    want = scipy_optimum(C, maximize)
    assert np.isfinite(got), f"assignment uses a forbidden entry: cost {got}"
    np.testing.assert_allclose(got, want, rtol=0, atol=cost_tol(C) if tol is None else tol)


def assert_dual_certificate(
    C: np.ndarray,
    col4row: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    tol: float | None = None,
    maximize: bool = False,
) -> None:
    """Duals certify optimality for a (n, m), n <= m problem (min form unless maximize).

    min: u_i + v_j <= C_ij everywhere, equality on assigned pairs, v_j == 0 on unassigned columns
    (and v <= 0 when n < m), sum u + sum v == primal value.
    """
    C = np.asarray(C, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    col4row = np.asarray(col4row)
    n, m = C.shape
    tol = cost_tol(C) if tol is None else tol
    sign = -1.0 if maximize else 1.0
    Cs, us, vs = sign * C, sign * u, sign * v
    assert np.all(np.isfinite(u)) and np.all(np.isfinite(v)), "non-finite potentials"
    with np.errstate(invalid="ignore"):
        slack = Cs - us[:, None] - vs[None, :]
    slack = np.where(np.isfinite(Cs), slack, np.inf)
    assert slack.min(initial=np.inf) >= -tol, f"dual infeasible: min reduced cost {slack.min()} < -{tol}"
    rows = np.arange(n)
    np.testing.assert_allclose(slack[rows, col4row], 0.0, rtol=0, atol=tol, err_msg="slackness violated")
    unassigned = np.setdiff1d(np.arange(m), col4row)
    if unassigned.size:
        np.testing.assert_array_equal(v[unassigned], 0.0, err_msg="v != 0 on unassigned columns")
        assert np.all(vs <= tol), "v must be <= 0 (>= 0 for maximize) when n < m"
    primal = float(C[rows, col4row].sum())
    dual = float(u.sum() + v.sum())
    np.testing.assert_allclose(dual, primal, rtol=0, atol=tol, err_msg="primal != dual")


def as_np(x) -> np.ndarray:
    """NumPy view of a NumPy array, a CPU/CUDA tensor or a Python scalar (float64 for floats)."""
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu()
            if x.is_floating_point():
                x = x.double()
            return x.numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(x)


def assert_dual_certificate_any(
    C: np.ndarray,
    row_ind: np.ndarray,
    col_ind: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    tol: float | None = None,
    maximize: bool = False,
) -> None:
    """Dual certificate in the caller's orientation, for n <= m and n > m alike."""
    C = np.asarray(C, dtype=np.float64)
    n, m = C.shape
    assert np.shape(u) == (n,), f"u shape {np.shape(u)}, expected {(n,)}"
    assert np.shape(v) == (m,), f"v shape {np.shape(v)}, expected {(m,)}"
    if n <= m:
        col4row = np.empty(n, dtype=np.int64)
        col4row[np.asarray(row_ind)] = np.asarray(col_ind)
        assert_dual_certificate(C, col4row, u, v, tol=tol, maximize=maximize)
    else:
        row4col = np.empty(m, dtype=np.int64)
        row4col[np.asarray(col_ind)] = np.asarray(row_ind)
        assert_dual_certificate(C.T, row4col, v, u, tol=tol, maximize=maximize)
