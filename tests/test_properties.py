"""Hypothesis property tests on the assignment and coupling APIs (float64 scipy reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from lsa_checks import as_np, assert_dual_certificate_any, assert_optimal, cost_tol
from scipy.optimize import linear_sum_assignment as scipy_lsa
from scipy.spatial.distance import cdist

import fastot

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
F32_EPS = float(np.finfo(np.float32).eps)
INVALID = "invalid numeric entries"  # scipy's message

shapes = st.tuples(st.integers(0, 12), st.integers(0, 12))
nonempty_shapes = st.tuples(st.integers(1, 12), st.integers(1, 12))
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def cost_matrices(draw, shape=shapes, elements=finite):
    return draw(hnp.arrays(np.float64, draw(shape), elements=elements))


@st.composite
def tie_matrices(draw):
    """Small-integer costs (many ties), optionally with +inf (forbidden) entries."""
    n, m = draw(nonempty_shapes)
    C = draw(hnp.arrays(np.float64, (n, m), elements=st.integers(0, 3).map(float)))
    mask = draw(hnp.arrays(np.bool_, (n, m)))
    if draw(st.booleans()):
        C = np.where(mask & draw(hnp.arrays(np.bool_, (n, m))), np.inf, C)
    return C


def scipy_or_infeasible(C, maximize=False):
    try:
        return scipy_lsa(C, maximize=maximize)
    except ValueError as e:
        assert "infeasible" in str(e)
        return None


@given(C=cost_matrices(), maximize=st.booleans())
@settings(max_examples=100)
def test_optimal_like_scipy(C, maximize):
    r, c = fastot.linear_sum_assignment(C, maximize=maximize)
    assert isinstance(r, np.ndarray) and r.dtype == np.int64 and c.dtype == np.int64
    assert_optimal(C, r, c, maximize=maximize)


@given(C=tie_matrices(), maximize=st.booleans())
@settings(max_examples=100)
def test_ties_and_forbidden_like_scipy(C, maximize):
    if maximize:
        C = np.where(np.isinf(C), -np.inf, C)
    ref = scipy_or_infeasible(C, maximize)
    if ref is None:
        with pytest.raises(ValueError, match="infeasible"):
            fastot.linear_sum_assignment(C, maximize=maximize)
        return
    r, c = fastot.linear_sum_assignment(C, maximize=maximize)
    assert_optimal(C, r, c, maximize=maximize, tol=0.0)


@given(C=cost_matrices(shape=nonempty_shapes), maximize=st.booleans())
@settings(max_examples=60)
def test_duals_certify(C, maximize):
    out = fastot.solve_assignment(C, maximize=maximize)
    r, c, u, v = (as_np(out.row_ind), as_np(out.col_ind), as_np(out.u), as_np(out.v))
    assert_optimal(C, r, c, maximize=maximize)
    assert_dual_certificate_any(C, r, c, u, v, maximize=maximize)
    np.testing.assert_allclose(float(as_np(out.value)), C[r, c].sum(), rtol=0, atol=cost_tol(C))


@given(
    n=st.integers(1, 10),
    extra=st.integers(0, 4),
    transpose=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=60)
def test_permutation_validity(n, extra, transpose, seed):
    """Square: col_ind is a permutation. Rectangular: injective, all of the short side covered."""
    C = np.random.default_rng(seed).uniform(-1, 1, size=(n, n + extra))
    if transpose:
        C = C.T
    r, c = fastot.linear_sum_assignment(C)
    k = min(C.shape)
    assert len(set(r.tolist())) == len(set(c.tolist())) == k
    if C.shape[0] <= C.shape[1]:
        np.testing.assert_array_equal(r, np.arange(C.shape[0]))
    else:
        np.testing.assert_array_equal(np.sort(c), np.arange(C.shape[1]))
        np.testing.assert_array_equal(r, np.sort(r))
    if extra == 0:
        np.testing.assert_array_equal(np.sort(c), np.arange(n))


torch_dtypes = st.sampled_from(
    [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int16, torch.bool]
)


@given(
    shape=st.tuples(st.integers(0, 3), st.integers(0, 9), st.integers(0, 9)),
    dtype=torch_dtypes,
    device=st.sampled_from(DEVICES),
    batched=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=80)
def test_torch_dtype_device_preserved(shape, dtype, device, batched, seed):
    if not batched:
        shape = shape[1:]
    g = torch.Generator().manual_seed(seed)
    C = (torch.rand(shape, generator=g, dtype=torch.float64) * 8).to(dtype).to(device)
    r, c = fastot.linear_sum_assignment(C)
    k = min(shape[-2:])
    assert r.dtype == c.dtype == torch.int64
    assert r.device == c.device == C.device
    assert r.shape == c.shape == (*shape[:-2], k)
    B = int(np.prod(shape[:-2]))
    Cn = C.cpu().double().numpy().reshape(B, *shape[-2:])
    rn, cn = as_np(r).reshape(B, k), as_np(c).reshape(B, k)
    tol = 0.0 if dtype in (torch.int64, torch.int16, torch.bool) else cost_tol(Cn, eps=F32_EPS)
    for b in range(Cn.shape[0]):
        assert_optimal(Cn[b], rn[b], cn[b], tol=tol)


@given(C=cost_matrices(shape=nonempty_shapes), data=st.data())
@settings(max_examples=60)
def test_nan_raises(C, data):
    i = data.draw(st.integers(0, C.shape[0] - 1))
    j = data.draw(st.integers(0, C.shape[1] - 1))
    C = C.copy()
    C[i, j] = data.draw(st.sampled_from([np.nan, -np.inf]))
    with pytest.raises(ValueError, match=INVALID):
        fastot.linear_sum_assignment(C)
    with pytest.raises(ValueError, match=INVALID):
        fastot.linear_sum_assignment(torch.from_numpy(C))


@given(C=cost_matrices(shape=nonempty_shapes), data=st.data())
@settings(max_examples=40)
def test_maximize_pos_inf_raises(C, data):
    i = data.draw(st.integers(0, C.shape[0] - 1))
    j = data.draw(st.integers(0, C.shape[1] - 1))
    C = C.copy()
    C[i, j] = np.inf
    with pytest.raises(ValueError, match=INVALID):
        fastot.linear_sum_assignment(C, maximize=True)


@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=1))
@settings(max_examples=10)
def test_low_ndim_raises(shape):
    with pytest.raises(ValueError, match="cost"):
        fastot.linear_sum_assignment(np.ones(shape))
    with pytest.raises(ValueError, match="cost"):
        fastot.linear_sum_assignment(torch.ones(shape))


@given(dtype=st.sampled_from([np.complex64, np.complex128, np.str_, np.object_, np.datetime64]))
@settings(max_examples=10)
def test_non_numeric_raises(dtype):
    C = np.ones((3, 3)).astype(dtype)
    with pytest.raises(TypeError, match="cost"):
        fastot.linear_sum_assignment(C)


@given(
    batch=st.lists(st.integers(1, 3), min_size=1, max_size=2),
    n=st.integers(1, 8),
    m=st.integers(1, 8),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=50)
def test_batched_each_problem_optimal(batch, n, m, seed):
    C = np.random.default_rng(seed).standard_normal((*batch, n, m))
    r, c = fastot.linear_sum_assignment(torch.from_numpy(C))
    k = min(n, m)
    assert r.shape == (*batch, k)
    Cf, rf, cf = C.reshape(-1, n, m), r.reshape(-1, k).numpy(), c.reshape(-1, k).numpy()
    for b in range(Cf.shape[0]):
        assert_optimal(Cf[b], rf[b], cf[b])


# ---------------------------------------------------------------------------------------------------
# coupling


@given(
    n=st.integers(1, 24),
    dims=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    shift=st.floats(-100, 100),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([torch.float64, torch.float32]),
)
@settings(max_examples=50)
def test_couple_exact_is_optimal_permutation(n, dims, shift, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, *dims, generator=g, dtype=torch.float64).to(dtype)
    x1 = (torch.randn(n, *dims, generator=g, dtype=torch.float64) + shift).to(dtype)
    i, j = fastot.couple(x0, x1, method="exact")
    assert i.dtype == j.dtype == torch.int64
    assert i.device == j.device == x0.device
    np.testing.assert_array_equal(i.numpy(), np.arange(n))
    np.testing.assert_array_equal(np.sort(j.numpy()), np.arange(n))
    a = x0.reshape(n, -1).double().numpy()
    b = x1.reshape(n, -1).double().numpy()
    M = cdist(a, b, "sqeuclidean")
    ri, ci = scipy_lsa(M)
    eps = F32_EPS if dtype == torch.float32 else float(np.finfo(np.float64).eps)
    # float32 costs are formed in float32: allow relative roundoff of the entries themselves
    tol = cost_tol(M, eps=eps, factor=64.0)
    np.testing.assert_allclose(M[i.numpy(), j.numpy()].sum(), M[ri, ci].sum(), rtol=0, atol=tol)


@given(n=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=30)
def test_couple_rejects_non_finite(n, seed):
    x0 = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x1 = x0.flip(0) + 1.0
    bad = x0.clone()
    bad[n // 2, 1] = float("nan")
    with pytest.raises(ValueError):
        fastot.couple(bad, x1)
    bad[n // 2, 1] = float("inf")
    with pytest.raises(ValueError):
        fastot.couple(x0, bad)


# ---------------------------------------------------------------------------------------------------
# a second, scipy-independent oracle: exhaustive search on tiny problems


@st.composite
def tiny_matrices(draw):
    n, m = draw(st.tuples(st.integers(1, 6), st.integers(1, 6)))
    C = draw(hnp.arrays(np.float64, (n, m), elements=st.sampled_from([0.0, 1.0, 2.5, -3.0, 1e6, np.inf])))
    return C


@given(C=tiny_matrices(), maximize=st.booleans())
@settings(max_examples=80)
def test_matches_brute_force(C, maximize):
    from fastot._ref import lsa_brute_force

    if maximize:
        C = np.where(np.isinf(C), -np.inf, C)
    try:
        rb, cb = lsa_brute_force(C, maximize=maximize)
    except ValueError as e:
        assert "infeasible" in str(e)
        with pytest.raises(ValueError, match="infeasible"):
            fastot.linear_sum_assignment(C, maximize=maximize)
        return
    r, c = fastot.linear_sum_assignment(C, maximize=maximize)
    assert_optimal(C, r, c, maximize=maximize, tol=0.0)
    np.testing.assert_equal(C[r, c].sum(), C[rb, cb].sum())
