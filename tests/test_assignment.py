"""Public assignment API: fastot.linear_sum_assignment and fastot.solve_assignment vs scipy."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from lsa_checks import (
    as_np,
    assert_dual_certificate_any,
    assert_optimal,
    assert_valid_assignment,
    cost_tol,
    scipy_optimum,
)
from scipy.optimize import linear_sum_assignment as scipy_lsa

import fastot

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
F32_EPS = float(np.finfo(np.float32).eps)
INFEASIBLE = r"^cost matrix is infeasible$"
SHAPES = [(1, 1), (2, 2), (3, 3), (7, 7), (31, 31), (64, 64), (65, 65), (1, 5), (5, 1), (3, 8), (8, 3)]
SHAPES += [(31, 64), (64, 31), (65, 66), (66, 65)]


def lsa_np(C, maximize=False):
    r, c = fastot.linear_sum_assignment(C, maximize=maximize)
    assert isinstance(r, np.ndarray) and isinstance(c, np.ndarray), (type(r), type(c))
    return r, c


# ---------------------------------------------------------------------------------------------------
# NumPy parity with scipy


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("maximize", [False, True])
def test_numpy_matches_scipy(rng, shape, maximize):
    C = rng.normal(0.0, 3.0, size=shape)
    r, c = lsa_np(C, maximize)
    assert_optimal(C, r, c, maximize=maximize)


@pytest.mark.parametrize("shape", [(6, 6), (5, 9), (9, 5)])
@pytest.mark.parametrize("maximize", [False, True])
def test_unique_optimum_identical_to_scipy(shape, maximize):
    """With a unique optimum the indices themselves must equal scipy's (row_ind sorted)."""
    n, m = shape
    # distinct powers of two below 2**45: every assignment has a different cost, and all sums and
    # differences the solvers form are exact integers in float64
    exps = np.random.default_rng(n * 100 + m).permutation(n * m).reshape(n, m)
    C = 2.0**exps
    r, c = lsa_np(C, maximize)
    rs, cs = scipy_lsa(C, maximize=maximize)
    np.testing.assert_array_equal(r, rs)
    np.testing.assert_array_equal(c, cs)


def test_large(rng):
    n = 300
    C = rng.uniform(0, 1, size=(n, n))
    r, c = lsa_np(C)
    assert_optimal(C, r, c)


@pytest.mark.parametrize("shape", [(10, 10), (7, 12), (12, 7), (40, 40)])
@pytest.mark.parametrize("maximize", [False, True])
def test_ties(rng, shape, maximize):
    C = rng.integers(0, 4, size=shape).astype(np.float64)
    r, c = lsa_np(C, maximize)
    assert_optimal(C, r, c, maximize=maximize, tol=0.0)


@pytest.mark.parametrize("shape", [(6, 6), (4, 9), (9, 4)])
def test_inf_forbidden(rng, shape):
    C = rng.uniform(0, 10, size=shape)
    n, m = shape
    k = min(n, m)
    mask = rng.uniform(size=shape) < 0.5
    rows = rng.permutation(n)[:k]
    cols = rng.permutation(m)[:k]
    mask[rows, cols] = False  # a feasible assignment survives
    C[mask] = np.inf
    r, c = lsa_np(C)
    assert_optimal(C, r, c)
    assert np.all(np.isfinite(C[r, c]))


@pytest.mark.parametrize("shape", [(6, 6), (4, 9), (9, 4)])
def test_maximize_neg_inf_forbidden(rng, shape):
    """With maximize=True scipy treats -inf as the forbidden value (and +inf as invalid)."""
    C = rng.uniform(0, 10, size=shape)
    n, m = shape
    k = min(n, m)
    mask = rng.uniform(size=shape) < 0.5
    mask[rng.permutation(n)[:k], rng.permutation(m)[:k]] = False
    C[mask] = -np.inf
    r, c = lsa_np(C, maximize=True)
    assert_optimal(C, r, c, maximize=True)
    assert np.all(np.isfinite(C[r, c]))


def _infeasible(rng, kind):
    C = rng.uniform(1, 2, size=(5, 6))
    if kind == "row":
        C[3] = np.inf
    elif kind == "shared_column":
        C[0] = np.inf
        C[2] = np.inf
        C[0, 4] = C[2, 4] = 1.0
    elif kind == "all":
        C[:] = np.inf
    elif kind == "tall":  # 6 rows, 5 columns; only 4 columns usable
        C = C.T.copy()
        C[:, 1] = np.inf
    return C


@pytest.mark.parametrize("kind", ["row", "shared_column", "all", "tall"])
def test_infeasible(rng, kind):
    C = _infeasible(rng, kind)
    with pytest.raises(ValueError, match=INFEASIBLE):
        scipy_lsa(C)  # the oracle agrees
    with pytest.raises(ValueError, match=INFEASIBLE):
        fastot.linear_sum_assignment(C)
    with pytest.raises(ValueError, match=INFEASIBLE):
        fastot.linear_sum_assignment(torch.from_numpy(C))
    with pytest.raises(ValueError, match=INFEASIBLE):
        fastot.linear_sum_assignment(-C, maximize=True)


@pytest.mark.parametrize(
    ("value", "maximize"), [(np.nan, False), (np.nan, True), (-np.inf, False), (np.inf, True)]
)
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_invalid_entries(rng, value, maximize, lib):
    C = rng.uniform(0, 1, size=(4, 5))
    C[2, 1] = value
    with pytest.raises(ValueError) as expected:
        scipy_lsa(C, maximize=maximize)  # the oracle agrees
    if lib == "torch":
        C = torch.from_numpy(C)
    with pytest.raises(ValueError, match=f"^{re.escape(str(expected.value))}$"):  # scipy's message
        fastot.linear_sum_assignment(C, maximize=maximize)


# ---------------------------------------------------------------------------------------------------
# input kinds


@pytest.mark.parametrize("shape", [(0, 0), (0, 3), (3, 0)])
def test_empty_numpy(shape):
    rs, cs = scipy_lsa(np.ones(shape))
    r, c = lsa_np(np.ones(shape))
    assert r.shape == rs.shape == (0,) and c.shape == cs.shape == (0,)
    assert r.dtype == c.dtype == np.int64


@pytest.mark.parametrize("shape", [(0, 0), (0, 3), (3, 0), (2, 0, 3), (0, 4, 4), (2, 3, 0)])
@pytest.mark.parametrize("device", DEVICES)
def test_empty_torch(shape, device):
    r, c = fastot.linear_sum_assignment(torch.ones(shape, device=device))
    k = min(shape[-2:])
    assert r.shape == c.shape == (*shape[:-2], k)
    assert r.dtype == c.dtype == torch.int64
    assert r.device == c.device == torch.device(device)


def test_empty_batched_numpy():
    r, c = lsa_np(np.ones((0, 4, 5)))
    assert r.shape == c.shape == (0, 4)
    assert r.dtype == c.dtype == np.int64


def test_list_input(rng):
    C = rng.integers(-5, 6, size=(4, 6)).tolist()
    r, c = lsa_np(C)
    assert r.dtype == c.dtype == np.int64
    assert_optimal(np.array(C, dtype=np.float64), r, c, tol=0.0)


@pytest.mark.parametrize("maximize", [False, True])
def test_bool_input(rng, maximize):
    C = rng.uniform(size=(7, 9)) < 0.5
    r, c = lsa_np(C, maximize)
    assert_optimal(C.astype(np.float64), r, c, maximize=maximize, tol=0.0)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint16])
@pytest.mark.parametrize("maximize", [False, True])
def test_int_input(rng, dtype, maximize):
    C = rng.integers(0, 100, size=(8, 11)).astype(dtype)
    r, c = lsa_np(C, maximize)
    assert_optimal(C.astype(np.float64), r, c, maximize=maximize, tol=0.0)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("shape", [(16, 16), (9, 13), (13, 9)])
def test_low_precision_numpy(rng, dtype, shape):
    C = rng.uniform(0.1, 10.0, size=shape).astype(dtype)
    r, c = lsa_np(C)
    assert r.dtype == c.dtype == np.int64
    assert_optimal(C.astype(np.float64), r, c, tol=cost_tol(C, eps=F32_EPS))


def test_noncontiguous_numpy(rng):
    base = rng.uniform(size=(12, 20))
    C = base[::2, ::3]  # strided view
    r, c = lsa_np(C)
    assert_optimal(np.ascontiguousarray(C), r, c)
    CT = base.T  # Fortran order, n > m
    r, c = lsa_np(CT)
    assert_optimal(np.ascontiguousarray(CT), r, c)


def test_input_not_modified(rng):
    C = rng.uniform(size=(6, 9))
    C[1, 1] = np.inf
    before = C.copy()
    fastot.linear_sum_assignment(C, maximize=False)
    fastot.linear_sum_assignment(-C, maximize=True)
    np.testing.assert_array_equal(C, before)
    t = torch.from_numpy(C.copy())
    fastot.linear_sum_assignment(t)
    np.testing.assert_array_equal(t.numpy(), before)


# ---------------------------------------------------------------------------------------------------
# torch in -> torch out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32]
)
@pytest.mark.parametrize("shape", [(9, 9), (6, 11), (11, 6)])
def test_torch_in_torch_out(torch_gen, device, dtype, shape):
    C64 = torch.rand(shape, generator=torch_gen, dtype=torch.float64) * 50
    C = C64.to(dtype)
    r, c = fastot.linear_sum_assignment(C.to(device))
    assert isinstance(r, torch.Tensor) and isinstance(c, torch.Tensor)
    assert r.dtype == c.dtype == torch.int64
    assert r.device == c.device == torch.device(device)
    Cref = C.double().numpy()  # the values actually given, in float64
    tol = 0.0 if not dtype.is_floating_point else cost_tol(Cref, eps=F32_EPS)
    assert_optimal(Cref, as_np(r), as_np(c), tol=tol)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_bool(rng, device):
    C = torch.from_numpy(rng.uniform(size=(6, 8)) < 0.3).to(device)
    r, c = fastot.linear_sum_assignment(C, maximize=True)
    assert r.dtype == torch.int64 and r.device == C.device
    assert_optimal(C.cpu().double().numpy(), as_np(r), as_np(c), maximize=True, tol=0.0)


def test_torch_requires_grad_and_noncontiguous(torch_gen):
    base = torch.rand(10, 14, generator=torch_gen, dtype=torch.float64, requires_grad=True)
    C = base.t()[:, ::2]  # non-contiguous, part of an autograd graph, n > m
    r, c = fastot.linear_sum_assignment(C)
    assert not r.requires_grad and not c.requires_grad
    assert_optimal(C.detach().contiguous().numpy(), r.numpy(), c.numpy())


def test_torch_matches_numpy(rng):
    C = rng.normal(size=(13, 17))
    r_np, c_np = lsa_np(C)
    r_t, c_t = fastot.linear_sum_assignment(torch.from_numpy(C))
    np.testing.assert_array_equal(r_t.numpy(), r_np)
    np.testing.assert_array_equal(c_t.numpy(), c_np)


# ---------------------------------------------------------------------------------------------------
# batched


@pytest.mark.parametrize("nm", [(5, 5), (4, 6), (6, 4), (1, 3), (3, 1)])
@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize("maximize", [False, True])
def test_batched_vs_loop(rng, nm, lib, maximize):
    n, m = nm
    k = min(n, m)
    C = rng.normal(size=(2, 3, n, m))
    Cin = torch.from_numpy(C) if lib == "torch" else C
    r, c = fastot.linear_sum_assignment(Cin, maximize=maximize)
    assert r.shape == c.shape == (2, 3, k)
    r, c = as_np(r), as_np(c)
    assert r.dtype == c.dtype == np.int64
    for a in range(2):
        for b in range(3):
            assert_optimal(C[a, b], r[a, b], c[a, b], maximize=maximize)
            r1, c1 = fastot.linear_sum_assignment(C[a, b], maximize=maximize)
            got = C[a, b][r[a, b], c[a, b]].sum()
            np.testing.assert_allclose(got, C[a, b][r1, c1].sum(), rtol=0, atol=cost_tol(C[a, b]))


def test_batched_ties_and_inf(rng):
    C = rng.integers(0, 4, size=(4, 7, 9)).astype(np.float64)
    C[1, :, :2] = np.inf
    r, c = lsa_np(C)
    for b in range(4):
        assert_optimal(C[b], r[b], c[b], tol=0.0)


def test_batched_single_problem(rng):
    C = rng.normal(size=(1, 8, 8))
    r, c = lsa_np(C)
    assert r.shape == (1, 8)
    assert_optimal(C[0], r[0], c[0])


def test_batched_one_infeasible_raises(rng):
    C = rng.uniform(size=(3, 5, 5))
    C[2, 4, :] = np.inf
    with pytest.raises(ValueError, match="infeasible"):
        fastot.linear_sum_assignment(C)
    with pytest.raises(ValueError, match="infeasible"):
        fastot.linear_sum_assignment(torch.from_numpy(C))


def test_batched_nan_raises(rng):
    C = rng.uniform(size=(3, 5, 5))
    C[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="invalid numeric entries"):
        fastot.linear_sum_assignment(torch.from_numpy(C))


# ---------------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("C", [np.float64(3.0), np.ones(4), [1.0, 2.0], torch.ones(3), torch.tensor(1.0)])
def test_wrong_ndim(C):
    with pytest.raises(ValueError, match="cost"):
        fastot.linear_sum_assignment(C)


def test_ragged_list():
    with pytest.raises(ValueError, match="cost"):
        fastot.linear_sum_assignment([[1.0, 2.0], [3.0]])


@pytest.mark.parametrize(
    "C",
    [
        np.ones((3, 3), dtype=np.complex128),
        np.array([["a", "b"], ["c", "d"]]),
        np.array([[1.0, None], [2.0, 3.0]], dtype=object),
        torch.ones(3, 3, dtype=torch.complex64),
    ],
    ids=["complex", "str", "object", "torch_complex"],
)
def test_non_numeric_dtype(C):
    with pytest.raises(TypeError, match="cost"):
        fastot.linear_sum_assignment(C)


# ---------------------------------------------------------------------------------------------------
# solve_assignment: value and dual potentials


@pytest.mark.parametrize("shape", [(1, 1), (7, 7), (5, 9), (9, 5), (31, 31), (40, 33)])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_solve_assignment_duals(rng, shape, maximize, lib):
    C = rng.normal(1.0, 2.0, size=shape)
    out = fastot.solve_assignment(torch.from_numpy(C) if lib == "torch" else C, maximize=maximize)
    kind = torch.Tensor if lib == "torch" else np.ndarray
    for name in ("row_ind", "col_ind", "u", "v", "value"):
        assert isinstance(getattr(out, name), kind), (name, type(getattr(out, name)))
    assert out.maximize == maximize
    r, c, u, v = (as_np(out.row_ind), as_np(out.col_ind), as_np(out.u), as_np(out.v))
    assert r.dtype == c.dtype == np.int64
    assert_optimal(C, r, c, maximize=maximize)
    assert_dual_certificate_any(C, r, c, u, v, maximize=maximize)
    value = float(as_np(out.value))
    np.testing.assert_allclose(value, scipy_optimum(C, maximize), rtol=0, atol=cost_tol(C))
    np.testing.assert_allclose(value, u.sum() + v.sum(), rtol=0, atol=cost_tol(C))
    r2, c2 = fastot.linear_sum_assignment(C, maximize=maximize)
    np.testing.assert_array_equal(r, r2)
    np.testing.assert_array_equal(c, c2)


@pytest.mark.parametrize("device", DEVICES)
def test_solve_assignment_torch_types(torch_gen, device):
    C = torch.rand(6, 8, generator=torch_gen, dtype=torch.float64).to(device)
    out = fastot.solve_assignment(C)
    for name in ("row_ind", "col_ind", "u", "v"):
        t = getattr(out, name)
        assert isinstance(t, torch.Tensor), name
        assert t.device == C.device, name
    assert out.row_ind.dtype == out.col_ind.dtype == torch.int64
    assert out.u.is_floating_point() and out.v.is_floating_point()
    assert out.u.shape == (6,) and out.v.shape == (8,)


def test_solve_assignment_ties_exact(rng):
    C = rng.integers(0, 4, size=(12, 15)).astype(np.float64)
    out = fastot.solve_assignment(C)
    r, c, u, v = (as_np(out.row_ind), as_np(out.col_ind), as_np(out.u), as_np(out.v))
    assert_optimal(C, r, c, tol=0.0)
    assert_dual_certificate_any(C, r, c, u, v, tol=0.0)
    np.testing.assert_equal(float(as_np(out.value)), scipy_optimum(C))


@pytest.mark.parametrize("maximize", [False, True])
def test_solve_assignment_with_forbidden(rng, maximize):
    C = rng.uniform(0, 5, size=(6, 9))
    bad = -np.inf if maximize else np.inf
    C[0, :4] = bad
    C[3, 5:] = bad
    out = fastot.solve_assignment(C, maximize=maximize)
    r, c, u, v = (as_np(out.row_ind), as_np(out.col_ind), as_np(out.u), as_np(out.v))
    assert_optimal(C, r, c, maximize=maximize)
    assert_dual_certificate_any(C, r, c, u, v, maximize=maximize)
    np.testing.assert_allclose(float(as_np(out.value)), scipy_optimum(C, maximize), atol=cost_tol(C))


def test_solve_assignment_batched(rng):
    C = rng.normal(size=(2, 3, 5, 7))
    out = fastot.solve_assignment(torch.from_numpy(C))
    assert out.row_ind.shape == out.col_ind.shape == (2, 3, 5)
    assert out.u.shape == (2, 3, 5) and out.v.shape == (2, 3, 7)
    values = as_np(out.value)
    assert values.shape == (2, 3)
    for a in range(2):
        for b in range(3):
            Cab = C[a, b]
            r, c = as_np(out.row_ind[a, b]), as_np(out.col_ind[a, b])
            assert_valid_assignment(Cab, r, c)
            assert_dual_certificate_any(Cab, r, c, as_np(out.u[a, b]), as_np(out.v[a, b]))
            np.testing.assert_allclose(values[a, b], scipy_optimum(Cab), atol=cost_tol(Cab))


def test_solve_assignment_errors(rng):
    C = rng.uniform(size=(4, 4))
    C[1] = np.inf
    with pytest.raises(ValueError, match="infeasible"):
        fastot.solve_assignment(C)
    with pytest.raises(ValueError, match="cost"):
        fastot.solve_assignment(np.ones(3))
    with pytest.raises(TypeError, match="cost"):
        fastot.solve_assignment(np.ones((2, 2), dtype=complex))


# ---------------------------------------------------------------------------------------------------
# AssignmentOutput extras: plan(), dual_value(), solve_dtype, differentiable value


@pytest.mark.parametrize("shape", [(5, 5), (4, 7), (7, 4), (2, 3, 4, 6)])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_plan_and_dual_value(rng, shape, maximize, lib):
    C = rng.normal(size=shape)
    out = fastot.solve_assignment(torch.from_numpy(C) if lib == "torch" else C, maximize=maximize)
    P = as_np(out.plan())
    assert P.shape == shape
    k = min(shape[-2:])
    np.testing.assert_array_equal(P.sum((-2, -1)), np.full(shape[:-2], k))
    assert P.max() <= 1 and P.sum(-1).max() <= 1 and P.sum(-2).max() <= 1, "plan is not a partial permutation"
    value = as_np(out.value)
    np.testing.assert_allclose((P * C).sum((-2, -1)), value, rtol=0, atol=cost_tol(C))
    np.testing.assert_allclose(as_np(out.dual_value()), value, rtol=0, atol=cost_tol(C))


def test_value_gradient_is_the_plan(torch_gen):
    C = torch.randn(2, 4, 6, generator=torch_gen, dtype=torch.float64, requires_grad=True)
    out = fastot.solve_assignment(C)
    (grad,) = torch.autograd.grad(out.value.sum(), C)
    torch.testing.assert_close(grad, out.plan().to(grad.dtype), rtol=0, atol=0)


@pytest.mark.parametrize("solve_dtype", [np.float32, torch.float32])
@pytest.mark.parametrize("shape", [(12, 12), (8, 13), (13, 8)])
def test_solve_dtype_float32(rng, solve_dtype, shape):
    C = rng.uniform(0.1, 10, size=shape)
    lib_in = torch.from_numpy(C) if isinstance(solve_dtype, torch.dtype) else C
    out = fastot.solve_assignment(lib_in, solve_dtype=solve_dtype)
    u, v = as_np(out.u), as_np(out.v)
    if isinstance(out.u, torch.Tensor):
        assert out.u.dtype == out.v.dtype == out.value.dtype == torch.float32
    else:
        assert out.u.dtype == out.v.dtype == out.value.dtype == np.float32
    C32 = C.astype(np.float32).astype(np.float64)  # what a float32 solve sees
    r, c = as_np(out.row_ind), as_np(out.col_ind)
    tol = cost_tol(C32, eps=F32_EPS)
    assert_optimal(C32, r, c, tol=tol)
    assert_dual_certificate_any(C32, r, c, u, v, tol=tol)


def test_bad_solve_dtype(rng):
    with pytest.raises(ValueError, match="solve_dtype"):
        fastot.solve_assignment(rng.uniform(size=(3, 3)), solve_dtype=np.float16)


# ---------------------------------------------------------------------------------------------------
# unusual memory layouts and extreme values


def test_big_endian_and_readonly(rng):
    C = rng.uniform(size=(6, 8))
    want = scipy_optimum(C)
    be = C.astype(">f8")
    r, c = lsa_np(be)
    np.testing.assert_allclose(C[r, c].sum(), want, rtol=0, atol=cost_tol(C))
    ro = C.copy()
    ro.setflags(write=False)
    r, c = lsa_np(ro)
    np.testing.assert_allclose(C[r, c].sum(), want, rtol=0, atol=cost_tol(C))


def test_torch_view_with_storage_offset(torch_gen):
    big = torch.randn(6, 5, 7, generator=torch_gen, dtype=torch.float64)
    C = big[2:5]  # contiguous, non-zero storage offset
    r, c = fastot.linear_sum_assignment(C)
    for b in range(3):
        assert_optimal(C[b].numpy(), r[b].numpy(), c[b].numpy())
    r1, c1 = fastot.linear_sum_assignment(big[3, 1:])  # 2-D view with offset, n < m
    assert_optimal(big[3, 1:].numpy(), r1.numpy(), c1.numpy())


@pytest.mark.parametrize("scale", [1e-310, 1e-200, 1e200, 1e300])
@pytest.mark.parametrize("shape", [(6, 6), (5, 8), (8, 5)])
def test_extreme_magnitudes(rng, scale, shape):
    """Subnormal to near-overflow entries (both signs) give scipy's optimum, no spurious errors."""
    C = rng.uniform(-1, 1, size=shape) * scale
    r, c = lsa_np(C)
    assert_optimal(C, r, c)
