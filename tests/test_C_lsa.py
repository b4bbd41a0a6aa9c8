"""The C++ kernel fastot._C.lsa_batch, called directly (NumPy in, NumPy out)."""

from __future__ import annotations

import numpy as np
import pytest
from lsa_checks import assert_dual_certificate, assert_optimal, cost_tol, scipy_optimum

from fastot import _C

SIZES = [1, 2, 3, 7, 31, 64, 65, 257]


def solve_one(C: np.ndarray, num_threads: int = 1):
    """Runs the kernel on a single (n, m) problem; returns (col4row, u, v, status) of that problem."""
    col4row, u, v, status = _C.lsa_batch(np.ascontiguousarray(C)[None], num_threads)
    return col4row[0], u[0], v[0], int(status[0])


def check_solution(C: np.ndarray, col4row, u, v, status, tol: float | None = None) -> None:
    assert status == _C.STATUS_OK
    n = C.shape[0]
    assert_optimal(C, np.arange(n), col4row, tol=tol)
    assert_dual_certificate(C, col4row, u, v, tol=tol)


def test_status_constants():
    assert (_C.STATUS_OK, _C.STATUS_INFEASIBLE, _C.STATUS_INVALID) == (0, 1, 2)
    assert isinstance(_C.HAVE_OPENMP, bool)


@pytest.mark.parametrize("n", SIZES)
def test_square_random(rng, n):
    C = rng.uniform(0.1, 10.0, size=(n, n))
    col4row, u, v, status = solve_one(C)
    assert col4row.dtype == np.int64 and u.dtype == np.float64 and v.dtype == np.float64
    assert col4row.shape == (n,) and u.shape == (n,) and v.shape == (n,)
    check_solution(C, col4row, u, v, status)


def test_square_large(rng):
    n = 300
    C = rng.standard_normal((n, n)) ** 2 + rng.uniform(0, 1, size=(1, n))
    check_solution(C, *solve_one(C))


@pytest.mark.parametrize(
    ("n", "m"), [(1, 1), (1, 2), (1, 7), (2, 3), (3, 7), (7, 31), (31, 64), (64, 65), (2, 257)]
)
def test_rectangular_random(rng, n, m):
    C = rng.normal(3.0, 2.0, size=(n, m))
    col4row, u, v, status = solve_one(C)
    assert v.shape == (m,)
    check_solution(C, col4row, u, v, status)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 31, 64, 65])
@pytest.mark.parametrize("extra", [0, 1, 5])
def test_integer_ties(rng, n, extra):
    """Integer costs in 0..3: many ties, exact arithmetic, so the optimum must match exactly."""
    C = rng.integers(0, 4, size=(n, n + extra)).astype(np.float64)
    col4row, u, v, status = solve_one(C)
    assert status == _C.STATUS_OK
    assert_optimal(C, np.arange(n), col4row, tol=0.0)
    assert_dual_certificate(C, col4row, u, v, tol=0.0)


@pytest.mark.parametrize("n", [2, 7, 64])
def test_constant_matrix(rng, n):
    c = float(rng.uniform(1, 5))
    C = np.full((n, n + 1), c)
    col4row, u, v, status = solve_one(C)
    check_solution(C, col4row, u, v, status)


def test_negative_costs(rng):
    C = -rng.uniform(1.0, 100.0, size=(20, 23))
    check_solution(C, *solve_one(C))


@pytest.mark.parametrize("scale", [1e-12, 1e-6, 1.0, 1e6, 1e12])
@pytest.mark.parametrize("shape", [(17, 17), (9, 20)])
def test_magnitudes(rng, scale, shape):
    C = rng.uniform(0.5, 1.5, size=shape) * scale
    check_solution(C, *solve_one(C))


@pytest.mark.parametrize("shape", [(17, 17), (9, 20)])
def test_mixed_magnitudes(rng, shape):
    """Entries spread over 24 orders of magnitude (1e-12 .. 1e12) in one matrix."""
    C = 10.0 ** rng.uniform(-12, 12, size=shape)
    check_solution(C, *solve_one(C))


# ---------------------------------------------------------------------------------------------------
# +inf = forbidden pair


@pytest.mark.parametrize(("n", "m"), [(5, 5), (6, 9), (31, 31), (20, 33)])
@pytest.mark.parametrize("frac", [0.2, 0.6])
def test_inf_entries_feasible(rng, n, m, frac):
    C = rng.uniform(0, 10, size=(n, m))
    mask = rng.uniform(size=(n, m)) < frac
    # keep a known feasible assignment finite so the problem stays feasible
    perm = rng.permutation(m)[:n]
    mask[np.arange(n), perm] = False
    C[mask] = np.inf
    col4row, u, v, status = solve_one(C)
    check_solution(C, col4row, u, v, status)
    assert np.all(np.isfinite(C[np.arange(n), col4row]))


def test_inf_forces_unique_assignment():
    C = np.array([[np.inf, 1.0, np.inf], [np.inf, np.inf, 2.0], [3.0, np.inf, np.inf]])
    col4row, u, v, status = solve_one(C)
    assert status == _C.STATUS_OK
    np.testing.assert_array_equal(col4row, [1, 2, 0])
    assert_dual_certificate(C, col4row, u, v)


def _infeasible_cases(rng):
    n = 6
    a = rng.uniform(1, 2, size=(n, n))
    a[2, :] = np.inf  # a row with no finite entry
    b = rng.uniform(1, 2, size=(n, n + 2))
    b[1, :] = np.inf
    b[4, :] = np.inf
    b[1, 3] = 5.0  # two rows whose only finite entry is the same column
    b[4, 3] = 7.0
    c = rng.uniform(1, 2, size=(n, n))
    c[:, :3] = np.inf
    c[:4, 3:] = np.inf  # rows 0..3 only see columns 3.., but those are forbidden too
    d = np.full((3, 4), np.inf)
    e = rng.uniform(1, 2, size=(4, 4))
    e[:3, 1:] = np.inf  # 3 rows share the single finite column 0 (Hall violation)
    return {"row_all_inf": a, "shared_single_col": b, "blocked": c, "all_inf": d, "hall": e}


@pytest.mark.parametrize("case", ["row_all_inf", "shared_single_col", "blocked", "all_inf", "hall"])
def test_infeasible(rng, case):
    C = _infeasible_cases(rng)[case]
    *_, status = solve_one(C)
    assert status == _C.STATUS_INFEASIBLE


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
@pytest.mark.parametrize("where", [(0, 0), (2, 3), (4, 5)])
def test_invalid_entries(rng, bad, where):
    C = rng.uniform(0, 1, size=(5, 6))
    C[where] = bad
    *_, status = solve_one(C)
    assert status == _C.STATUS_INVALID


def test_invalid_takes_precedence_over_infeasible(rng):
    C = np.full((3, 3), np.inf)
    C[1, 1] = np.nan
    *_, status = solve_one(C)
    assert status == _C.STATUS_INVALID


def test_batch_mixed_statuses(rng):
    """One bad problem must not affect the others in the batch."""
    B, n, m = 5, 6, 8
    C = rng.uniform(0, 5, size=(B, n, m))
    C[1, 3, :] = np.inf
    C[3, 0, 0] = np.nan
    col4row, u, v, status = _C.lsa_batch(C, 2)
    assert status.dtype == np.int32
    np.testing.assert_array_equal(status, [0, 1, 0, 2, 0])
    for b in (0, 2, 4):
        check_solution(C[b], col4row[b], u[b], v[b], int(status[b]))


# ---------------------------------------------------------------------------------------------------
# batching, threads, dtypes


@pytest.mark.parametrize(("B", "n", "m"), [(1, 5, 5), (4, 7, 7), (9, 3, 8), (16, 31, 33)])
def test_batched_matches_per_problem(rng, B, n, m):
    C = rng.exponential(1.0, size=(B, n, m))
    col4row, u, v, status = _C.lsa_batch(C)
    assert col4row.shape == (B, n) and u.shape == (B, n) and v.shape == (B, m) and status.shape == (B,)
    for b in range(B):
        x1, u1, v1, s1 = solve_one(C[b])
        assert s1 == status[b] == _C.STATUS_OK
        np.testing.assert_array_equal(col4row[b], x1)
        np.testing.assert_array_equal(u[b], u1)
        np.testing.assert_array_equal(v[b], v1)
        check_solution(C[b], col4row[b], u[b], v[b], int(status[b]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("B", "n", "m"), [(7, 12, 12), (10, 5, 9), (3, 64, 65)])
def test_threads_give_identical_results(rng, dtype, B, n, m):
    C = rng.uniform(0, 1, size=(B, n, m)).astype(dtype)
    C[1, 0, :] = np.inf  # an infeasible problem in the batch as well
    r1 = _C.lsa_batch(C, num_threads=1)
    r2 = _C.lsa_batch(C, num_threads=2)
    r8 = _C.lsa_batch(C, num_threads=8)  # more threads than problems or cores: still correct
    np.testing.assert_array_equal(r1[3], [0, 1] + [0] * (B - 2))
    ok = r1[3] == _C.STATUS_OK  # outputs of a failed problem are unspecified
    for a, b, c in zip(r1, r2, r8, strict=True):
        np.testing.assert_array_equal(a[ok], b[ok])
        np.testing.assert_array_equal(a[ok], c[ok])


@pytest.mark.parametrize(("n", "m"), [(1, 1), (7, 7), (31, 31), (16, 40), (65, 65)])
def test_float32_overload(rng, n, m):
    C = rng.uniform(0.1, 10.0, size=(n, m)).astype(np.float32)
    col4row, u, v, status = _C.lsa_batch(C[None])
    assert col4row.dtype == np.int64 and u.dtype == np.float32 and v.dtype == np.float32
    assert status[0] == _C.STATUS_OK
    tol = cost_tol(C, eps=float(np.finfo(np.float32).eps))
    # the optimum of the float32 matrix, evaluated in float64
    assert_optimal(C.astype(np.float64), np.arange(n), col4row[0], tol=tol)
    assert_dual_certificate(C.astype(np.float64), col4row[0], u[0], v[0], tol=tol)


def test_float32_integer_costs_exact(rng):
    C = rng.integers(0, 4, size=(40, 45)).astype(np.float32)
    col4row, u, v, status = _C.lsa_batch(C[None])
    assert status[0] == _C.STATUS_OK
    np.testing.assert_equal(float(C[np.arange(40), col4row[0]].sum()), scipy_optimum(C))
    assert_dual_certificate(C.astype(np.float64), col4row[0], u[0], v[0], tol=0.0)


def test_float32_statuses(rng):
    C = rng.uniform(0, 1, size=(3, 4, 4)).astype(np.float32)
    C[0, 1, :] = np.inf
    C[2, 2, 2] = -np.inf
    *_, status = _C.lsa_batch(C)
    np.testing.assert_array_equal(status, [1, 0, 2])


# ---------------------------------------------------------------------------------------------------
# degenerate shapes and argument checking


def test_n1_picks_row_minimum(rng):
    C = rng.uniform(0, 1, size=(1, 1, 50))
    col4row, u, v, status = _C.lsa_batch(C)
    assert status[0] == 0
    assert col4row[0, 0] == np.argmin(C[0, 0])
    assert_dual_certificate(C[0], col4row[0], u[0], v[0])


def test_m1(rng):
    C = rng.uniform(0, 1, size=(3, 1, 1)) + 0.5
    col4row, u, v, status = _C.lsa_batch(C)
    np.testing.assert_array_equal(col4row, np.zeros((3, 1)))
    np.testing.assert_array_equal(status, [0, 0, 0])
    np.testing.assert_allclose(u + v, C[:, :, 0], rtol=1e-15)


@pytest.mark.parametrize("shape", [(0, 3, 4), (2, 0, 4), (2, 0, 0)])
def test_empty(shape):
    C = np.ones(shape)
    col4row, u, v, status = _C.lsa_batch(C)
    B, n, m = shape
    assert col4row.shape == (B, n) and u.shape == (B, n) and v.shape == (B, m)
    np.testing.assert_array_equal(status, np.zeros(B))
    np.testing.assert_array_equal(v, 0.0)


def test_rejects_wrong_ndim():
    with pytest.raises(ValueError, match="cost"):
        _C.lsa_batch(np.ones((3, 3)))
    with pytest.raises(ValueError, match="cost"):
        _C.lsa_batch(np.ones((1, 2, 3, 3)))


def test_rejects_n_greater_than_m():
    with pytest.raises(ValueError, match="n <= m"):
        _C.lsa_batch(np.ones((1, 4, 3)))


def test_rejects_bad_num_threads():
    with pytest.raises(ValueError, match="num_threads"):
        _C.lsa_batch(np.ones((1, 3, 3)), num_threads=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.ones((1, 3, 3), dtype=np.int64),
        lambda: np.ones((1, 3, 3), dtype=np.float16),
        lambda: np.ones((1, 3, 3), dtype=np.complex128),
        lambda: np.asfortranarray(np.ones((2, 3, 3))),
        lambda: np.ones((1, 3, 6))[:, :, ::2],
    ],
    ids=["int64", "float16", "complex", "fortran", "strided"],
)
def test_no_silent_conversion(make):
    """Only C-contiguous float32/float64 are accepted: no hidden copies or casts."""
    with pytest.raises(TypeError):
        _C.lsa_batch(make())


def test_input_not_modified(rng):
    C = rng.uniform(0, 1, size=(3, 6, 7))
    C[0, 0, 0] = np.inf
    before = C.copy()
    _C.lsa_batch(C, 2)
    np.testing.assert_array_equal(C, before)


def test_tolerance_helper_is_tight_enough(rng):
    """Guard for the helpers: a one-swap perturbation of the optimum must be caught."""
    C = rng.uniform(0, 1, size=(8, 8))
    col4row, *_ = solve_one(C)
    worse = col4row.copy()
    worse[[0, 1]] = worse[[1, 0]]
    gap = C[np.arange(8), worse].sum() - C[np.arange(8), col4row].sum()
    assert gap > cost_tol(C)
    with pytest.raises(AssertionError):
        assert_optimal(C, np.arange(8), worse)
