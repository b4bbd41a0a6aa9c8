"""fastot.couple(method="exact"): optimal pairing of two point clouds (scipy on float64 costs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lsa_checks import cost_tol
from scipy.optimize import linear_sum_assignment as scipy_lsa
from scipy.spatial.distance import cdist

import fastot

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
F32_EPS = float(np.finfo(np.float32).eps)


def sq_cost(x0: torch.Tensor, x1: torch.Tensor) -> np.ndarray:
    """Float64 squared-Euclidean cost of the flattened points (the values actually given)."""
    a = x0.detach().reshape(x0.shape[0], -1).double().cpu().numpy()
    b = x1.detach().reshape(x1.shape[0], -1).double().cpu().numpy()
    return cdist(a, b, "sqeuclidean")


def assert_optimal_coupling(x0, x1, i, j, tol=None, M=None):
    n = x0.shape[0]
    assert isinstance(i, torch.Tensor) and isinstance(j, torch.Tensor)
    assert i.dtype == j.dtype == torch.int64
    assert i.device == j.device == x0.device
    i, j = i.cpu().numpy(), j.cpu().numpy()
    np.testing.assert_array_equal(i, np.arange(n))
    np.testing.assert_array_equal(np.sort(j), np.arange(n), err_msg="j is not a permutation")
    M = sq_cost(x0, x1) if M is None else M
    ri, ci = scipy_lsa(M)
    tol = cost_tol(M) if tol is None else tol
    np.testing.assert_allclose(M[i, j].sum(), M[ri, ci].sum(), rtol=0, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 31, 64, 65])
@pytest.mark.parametrize("dims", [(1,), (2,), (3, 4, 4)], ids=["d1", "d2", "image"])
def test_exact_is_optimal(torch_gen, device, n, dims):
    x0 = torch.randn(n, *dims, generator=torch_gen, dtype=torch.float64).to(device)
    x1 = (torch.randn(n, *dims, generator=torch_gen, dtype=torch.float64) * 2 + 1).to(device)
    i, j = fastot.couple(x0, x1, method="exact")
    assert_optimal_coupling(x0, x1, i, j)


def test_large(torch_gen):
    x0 = torch.randn(300, 8, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(300, 8, generator=torch_gen, dtype=torch.float64)
    i, j = fastot.couple(x0, x1)
    assert_optimal_coupling(x0, x1, i, j)


def test_default_method_is_exact(torch_gen):
    x0 = torch.randn(20, 3, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(20, 3, generator=torch_gen, dtype=torch.float64)
    i, j = fastot.couple(x0, x1)
    ie, je = fastot.couple(x0, x1, method="exact")
    torch.testing.assert_close(i, ie)
    torch.testing.assert_close(j, je)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_inputs(torch_gen, dtype):
    n, d = 48, 5
    x0 = torch.randn(n, d, generator=torch_gen).to(dtype)
    x1 = torch.randn(n, d, generator=torch_gen).to(dtype)
    i, j = fastot.couple(x0, x1)
    M = sq_cost(x0, x1)
    # costs formed in (at least) float32: a pairing within float32 roundoff of the optimum is exact
    assert_optimal_coupling(x0, x1, i, j, tol=cost_tol(M, eps=F32_EPS, factor=64.0))


@pytest.mark.parametrize("shift", [1.0, 100.0])
def test_shift_invariance(torch_gen, shift):
    """Shifting x1 by a constant vector changes every permutation's cost by the same amount,
    so the coupling must stay optimal for the unshifted problem."""
    n, d = 40, 4
    x0 = torch.randn(n, d, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(n, d, generator=torch_gen, dtype=torch.float64)
    s = torch.randn(d, generator=torch_gen, dtype=torch.float64) * shift
    i, j = fastot.couple(x0, x1 + s)
    M = sq_cost(x0, x1)
    # the shifted costs are only known to roundoff of their own (larger) magnitude
    tol = cost_tol(sq_cost(x0, x1 + s), factor=64.0)
    assert_optimal_coupling(x0, x1, i, j, tol=tol, M=M)
    i2, j2 = fastot.couple(x0 + s, x1 + 2 * s)
    assert_optimal_coupling(x0, x1, i2, j2, tol=tol, M=M)


def test_recovers_permutation(torch_gen):
    """x1 a permutation of x0 (distinct points): the unique optimum (cost 0) pairs each point with itself."""
    n = 50
    x0 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
    perm = torch.randperm(n, generator=torch_gen)
    x1 = x0[perm]
    i, j = fastot.couple(x0, x1)
    torch.testing.assert_close(x1[j], x0[i], rtol=0, atol=0)
    torch.testing.assert_close(j, torch.argsort(perm))


def test_inputs_unchanged_and_grad(torch_gen):
    x0 = torch.randn(10, 2, generator=torch_gen, dtype=torch.float64, requires_grad=True)
    x1 = torch.randn(10, 2, generator=torch_gen, dtype=torch.float64)
    before0, before1 = x0.detach().clone(), x1.clone()
    i, j = fastot.couple(x0, x1)
    assert not i.requires_grad and not j.requires_grad
    torch.testing.assert_close(x0.detach(), before0, rtol=0, atol=0)
    torch.testing.assert_close(x1, before1, rtol=0, atol=0)
    # the indices are usable to build a differentiable loss on the pairs
    loss = ((x0[i] - x1[j]) ** 2).sum()
    loss.backward()
    assert x0.grad is not None and torch.isfinite(x0.grad).all()


def test_noncontiguous_inputs(torch_gen):
    base = torch.randn(4, 16, generator=torch_gen, dtype=torch.float64)
    x0 = base.T  # (16, 4) non-contiguous
    x1 = torch.randn(16, 8, generator=torch_gen, dtype=torch.float64)[:, ::2]
    i, j = fastot.couple(x0, x1)
    assert_optimal_coupling(x0, x1, i, j)


@pytest.mark.parametrize(
    ("s0", "s1"),
    [((5, 3), (5, 4)), ((5, 2, 3), (5, 3, 2)), ((5, 6), (5, 2, 3)), ((5, 3), (5,))],
    ids=["d", "transposed", "flat_vs_nested", "ndim"],
)
def test_mismatched_feature_shapes(torch_gen, s0, s1):
    x0 = torch.randn(*s0, generator=torch_gen)
    x1 = torch.randn(*s1, generator=torch_gen)
    with pytest.raises(ValueError, match=r"\b(x0|x1)\b"):
        fastot.couple(x0, x1)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("which", ["x0", "x1"])
def test_non_finite(torch_gen, bad, which):
    x0 = torch.randn(6, 3, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(6, 3, generator=torch_gen, dtype=torch.float64)
    (x0 if which == "x0" else x1)[2, 1] = bad
    with pytest.raises(ValueError):
        fastot.couple(x0, x1)


def test_unknown_method(torch_gen):
    x0 = torch.randn(4, 2, generator=torch_gen)
    with pytest.raises(ValueError, match="method"):
        fastot.couple(x0, x0.clone(), method="hungarian-ish")


@pytest.mark.parametrize(("n0", "n1"), [(5, 9), (9, 5), (1, 4), (4, 1)])
def test_unequal_batch_sizes(torch_gen, n0, n1):
    """As documented: k = min(n0, n1) pairs forming an optimal rectangular assignment."""
    x0 = torch.randn(n0, 3, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(n1, 3, generator=torch_gen, dtype=torch.float64) + 2.0
    i, j = fastot.couple(x0, x1)
    k = min(n0, n1)
    assert i.shape == j.shape == (k,) and i.dtype == j.dtype == torch.int64
    i, j = i.numpy(), j.numpy()
    M = sq_cost(x0, x1)
    np.testing.assert_array_equal(i, np.sort(i))
    assert len(set(i.tolist())) == len(set(j.tolist())) == k
    if n0 <= n1:
        np.testing.assert_array_equal(i, np.arange(n0))
    else:
        np.testing.assert_array_equal(np.sort(j), np.arange(n1))
    ri, ci = scipy_lsa(M)
    np.testing.assert_allclose(M[i, j].sum(), M[ri, ci].sum(), rtol=0, atol=cost_tol(M, factor=64.0))
