"""Every instruction-set copy of the C++ assignment kernel (generic, AVX2, AVX-512 where the CPU runs
them) on the cost families that drive each of its phases: column reduction, the entropic warm start
(square costs whose rows carry large offsets: shifted or clustered point clouds), augmenting row
reduction and the Dijkstra augmentations, with ties and forbidden pairs."""

from __future__ import annotations

import numpy as np
import pytest
from lsa_checks import assert_dual_certificate, assert_optimal

from fastot import _C

ISAS = _C.available_isas()


def sqeuclidean(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def shifted_clouds(rng, n: int, d: int, shift: float) -> np.ndarray:
    x = rng.standard_normal((n, d))
    y = rng.standard_normal((n, d))
    y[:, 0] += shift
    return sqeuclidean(x, y)


def clustered_clouds(rng, n: int, d: int) -> np.ndarray:
    centres = 4.0 * rng.standard_normal((4, d))
    x = rng.standard_normal((n, d))
    y = centres[rng.integers(0, 4, n)] + 0.3 * rng.standard_normal((n, d))
    return sqeuclidean(x, y)


def solve(C: np.ndarray, isa: str, num_threads: int = 1):
    col4row, u, v, status = _C.lsa_batch(np.ascontiguousarray(C)[None], num_threads, isa)
    return col4row[0], u[0], v[0], int(status[0])


def check(C: np.ndarray, isa: str) -> None:
    col4row, u, v, status = solve(C, isa)
    assert status == _C.STATUS_OK
    assert_optimal(C, np.arange(C.shape[0]), col4row)
    assert_dual_certificate(C, col4row, u, v)


def test_generic_always_available():
    assert ISAS[-1] == "generic"
    assert len(set(ISAS)) == len(ISAS)


def test_unknown_isa_rejected():
    with pytest.raises(ValueError, match="isa"):
        _C.lsa_batch(np.ones((1, 2, 2)), 1, "sse9")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(("n", "d", "shift"), [(64, 2, 2.0), (200, 2, 3.0), (150, 16, 2.0), (129, 64, 0.0)])
def test_point_cloud_costs(rng, isa, n, d, shift):
    check(shifted_clouds(rng, n, d, shift), isa)


@pytest.mark.parametrize("isa", ISAS)
def test_clustered_costs(rng, isa):
    check(clustered_clouds(rng, 180, 3), isa)


@pytest.mark.parametrize("isa", ISAS)
def test_shifted_costs_with_forbidden_pairs(rng, isa):
    C = shifted_clouds(rng, 120, 2, 2.5)
    forbidden = rng.random(C.shape) < 0.2
    forbidden[np.arange(120), rng.permutation(120)] = False  # keep one feasible permutation
    C[forbidden] = np.inf
    check(C, isa)


@pytest.mark.parametrize("isa", ISAS)
def test_shifted_integer_costs_with_ties(rng, isa):
    x = rng.integers(0, 4, (100, 2)).astype(np.float64)
    y = rng.integers(0, 4, (100, 2)).astype(np.float64) + np.array([5.0, 0.0])
    check(sqeuclidean(x, y), isa)


@pytest.mark.parametrize("isa", ISAS)
def test_shifted_costs_float32(rng, isa):
    C = shifted_clouds(rng, 96, 2, 2.0).astype(np.float32)
    col4row, u, _, status = solve(C, isa)
    assert status == _C.STATUS_OK and u.dtype == np.float32
    # Solved in float32 arithmetic: optimal up to float32 rounding of the reduced costs.
    assert_optimal(C.astype(np.float64), np.arange(96), col4row, tol=1e-4 * float(np.abs(C).max()))


@pytest.mark.parametrize("isa", ISAS)
def test_shifted_infeasible(rng, isa):
    C = shifted_clouds(rng, 80, 2, 2.0)
    C[:, 7] = np.inf  # column 7 cannot be matched
    col4row, u, v, status = solve(C, isa)
    assert status == _C.STATUS_INFEASIBLE
    assert (col4row == -1).all() and np.isnan(u).all() and np.isnan(v).all()


@pytest.mark.parametrize("isa", ISAS)
def test_isas_agree_on_the_optimum(rng, isa):
    Cs = np.stack([shifted_clouds(rng, 70, 2, 2.0) for _ in range(4)])
    col_a = _C.lsa_batch(Cs, 2, isa)[0]
    col_g = _C.lsa_batch(Cs, 1, "generic")[0]
    rows = np.arange(70)
    for C, a, g in zip(Cs, col_a, col_g, strict=True):
        np.testing.assert_allclose(C[rows, a].sum(), C[rows, g].sum(), rtol=1e-12)
