"""fastot.couple(method="exact"): optimal pairing of two point clouds (scipy on float64 costs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
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


@pytest.mark.parametrize("sync_free", [False, True])
@pytest.mark.parametrize("case", ["nan", "inf", "overflow", "overflow-labels", "ok"])
def test_exact_non_finite_cost_messages(torch_gen, monkeypatch, sync_free, case):
    """On an accelerator the exact path does not read the cost on the host (non-finite costs go to the
    solver as NaN, whose status read raises); the errors and answers are those of the CPU path."""
    import fastot.coupling as coupling

    monkeypatch.setattr(coupling, "_without_host_sync", lambda C: sync_free)
    x0 = torch.randn(7, 3, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(7, 3, generator=torch_gen, dtype=torch.float64)
    kw = {}
    if case in ("nan", "inf"):
        x0[2, 1] = float(case)
    elif case.startswith("overflow"):
        x0[3] = 1e200
    if case == "overflow-labels":
        kw = {"y0": torch.arange(7) % 2, "y1": torch.arange(7) % 2, "cond_weight": 0.5}
    if case == "ok":
        i, j = fastot.couple(x0, x1)
        M = cdist(x0.numpy(), x1.numpy(), "sqeuclidean")
        assert M[i.numpy(), j.numpy()].sum() == pytest.approx(M[scipy_lsa(M)].sum(), rel=1e-12)
        return
    match = "non-finite" if case in ("nan", "inf") else "overflows"
    with pytest.raises(ValueError, match=match):
        fastot.couple(x0, x1, **kw)


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


# ------------------------------------------------------------------------------------------ conditions


def label_cost(x0, x1, y0, y1, w):
    M = sq_cost(x0, x1)
    differ = (y0.numpy()[:, None] != y1.numpy()[None, :]).astype(np.float64)
    return M + (np.where(differ > 0, np.inf, 0.0) if np.isinf(w) else w * differ)


def embedding_cost(x0, x1, e0, e1, w, kind):
    M = sq_cost(x0, x1)
    u0, u1 = e0.double().numpy(), e1.double().numpy()
    if kind == "cosine":
        return M + w * cdist(u0, u1, "cosine")
    return M + w * cdist(u0, u1, "sqeuclidean")


@pytest.mark.parametrize("w", [0.3, 5.0])
@pytest.mark.parametrize("n", [7, 40])
def test_exact_labels_soft_weight_is_optimal(torch_gen, n, w):
    x0 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64) + 0.5
    y0 = torch.randint(0, 3, (n,), generator=torch_gen)
    y1 = torch.randint(0, 3, (n,), generator=torch_gen)
    i, j = fastot.couple(x0, x1, y0, y1, cond_weight=w)
    assert_optimal_coupling(x0, x1, i, j, M=label_cost(x0, x1, y0, y1, w))


@pytest.mark.parametrize("n", [12, 61])
def test_exact_hard_labels_equal_counts(torch_gen, n):
    """Default weight for labels is a hard constraint; y1 a permutation of y0 (C²OT's setting)."""
    x0 = torch.randn(n, 2, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(n, 2, generator=torch_gen, dtype=torch.float64) * 2
    y0 = torch.randint(0, 4, (n,), generator=torch_gen)
    y1 = y0[torch.randperm(n, generator=torch_gen)]
    i, j = fastot.couple(x0, x1, y0, y1)
    torch.testing.assert_close(y0[i], y1[j], rtol=0, atol=0)
    assert_optimal_coupling(x0, x1, i, j, M=label_cost(x0, x1, y0, y1, np.inf))
    # the same answer (by cost) through the compile-safe forbidden-pair path: an explicit inf weight
    i2, j2 = fastot.couple(x0, x1, y0, y1, cond_weight=float("inf"))
    assert_optimal_coupling(x0, x1, i2, j2, M=label_cost(x0, x1, y0, y1, np.inf))


def test_exact_hard_labels_unequal_counts(torch_gen):
    """Each class gives min(n0_c, n1_c) pairs, optimal within the class; class 3 only in y1."""
    n = 30
    x0 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64) + 1
    y0 = torch.randint(0, 3, (n,), generator=torch_gen)
    y1 = torch.randint(0, 4, (n,), generator=torch_gen)
    i, j = fastot.couple(x0, x1, y0, y1)
    assert len(set(i.tolist())) == i.numel() and len(set(j.tolist())) == j.numel()
    torch.testing.assert_close(y0[i], y1[j], rtol=0, atol=0)
    M = sq_cost(x0, x1)
    total = 0.0
    for c in range(4):
        r = np.flatnonzero(y0.numpy() == c)
        s = np.flatnonzero(y1.numpy() == c)
        if len(r) and len(s):
            ri, ci = scipy_lsa(M[np.ix_(r, s)])
            total += M[np.ix_(r, s)][ri, ci].sum()
        got = ((y0[i] == c).sum()).item()
        assert got == min(len(r), len(s))
    np.testing.assert_allclose(M[i.numpy(), j.numpy()].sum(), total, rtol=0, atol=cost_tol(M, factor=64.0))
    np.testing.assert_array_equal(i.numpy(), np.sort(i.numpy()))


@pytest.mark.parametrize("kind", ["sqeuclidean", "cosine"])
def test_exact_embeddings_is_optimal(torch_gen, kind):
    n, e = 33, 5
    x0 = torch.randn(n, 2, 2, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(n, 2, 2, generator=torch_gen, dtype=torch.float64)
    e0 = torch.randn(n, e, generator=torch_gen, dtype=torch.float64)
    e1 = torch.randn(n, e, generator=torch_gen, dtype=torch.float64)
    i, j = fastot.couple(x0, x1, e0, e1, cond_weight=2.5, cond_cost=kind)
    M = embedding_cost(x0, x1, e0, e1, 2.5, kind)
    assert_optimal_coupling(x0, x1, i, j, M=M, tol=cost_tol(M, factor=64.0))


# ------------------------------------------------------------------------------------ entropic methods


def double_centred_rms(M: np.ndarray) -> float:
    Mc = M - M.mean(1, keepdims=True) - M.mean(0, keepdims=True) + M.mean()
    return float(np.sqrt((Mc**2).mean()))


@pytest.mark.parametrize("d", [2, 64])
def test_sinkhorn_plan_matches_pot(torch_gen, d):
    """The plan drawn from is POT's sinkhorn plan on the float64 cost at the documented epsilon."""
    ot = pytest.importorskip("ot")
    n, m = 24, 31
    x0 = torch.randn(n, d, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(m, d, generator=torch_gen, dtype=torch.float64) * 0.5 + 1
    out = fastot.coupling.solve_coupling(x0, x1, method="sinkhorn", tol=1e-9, max_iter=5000)
    M = sq_cost(x0, x1)
    eps = 0.1 * double_centred_rms(M)
    np.testing.assert_allclose(float(out.epsilon), eps, rtol=1e-9)
    P_ref = ot.sinkhorn(np.full(n, 1 / n), np.full(m, 1 / m), M, eps, method="sinkhorn_log", stopThr=1e-12)
    np.testing.assert_allclose(out.sinkhorn.plan().numpy(), P_ref, rtol=0, atol=1e-7)
    assert bool(out.sinkhorn.converged)


def test_sinkhorn_pairs_distinct_rows_and_reproducible(torch_gen):
    n = 50
    x0 = torch.randn(n, 3, generator=torch_gen)
    x1 = torch.randn(n, 3, generator=torch_gen)
    i, j = fastot.couple(x0, x1, method="sinkhorn", generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(i.numpy(), np.arange(n))
    assert j.min() >= 0 and j.max() < n
    _, j2 = fastot.couple(x0, x1, method="sinkhorn", generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(j, j2, rtol=0, atol=0)
    # a sharp plan on a permuted copy recovers the permutation
    perm = torch.randperm(n, generator=torch_gen)
    _, j3 = fastot.couple(x0, x0[perm], method="sinkhorn", epsilon_rel=0.002, max_iter=5000)
    torch.testing.assert_close(j3, torch.argsort(perm))


def test_sinkhorn_sampling_frequencies_follow_plan(torch_gen):
    """Row-wise draws (replace=False) and flat draws (replace=True) follow the plan (chi-square-ish)."""
    n = 6
    x0 = torch.randn(n, 2, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(n, 2, generator=torch_gen, dtype=torch.float64)
    out = fastot.coupling.solve_coupling(x0, x1, method="sinkhorn", epsilon_rel=1.0, tol=1e-10)
    P = out.sinkhorn.plan().numpy()
    gen = torch.Generator().manual_seed(0)
    counts = np.zeros((n, n))
    for _ in range(400):
        i, j = fastot.couple(x0, x1, method="sinkhorn", epsilon_rel=1.0, generator=gen)
        np.add.at(counts, (i.numpy(), j.numpy()), 1)
    np.testing.assert_allclose(counts / counts.sum(), P / P.sum(), atol=0.02)
    i, j = fastot.couple(
        x0, x1, method="sinkhorn", epsilon_rel=1.0, replace=True, batch_size=40000, generator=gen
    )
    flat = np.bincount((i * n + j).numpy(), minlength=n * n).reshape(n, n) / 40000
    np.testing.assert_allclose(flat, P / P.sum(), atol=0.01)


def test_sinkhorn_default_works_at_high_dimension(torch_gen):
    """d = 3072, costs ~ 6000: the scale-aware default neither underflows nor gives a uniform plan."""
    n, d = 64, 3072
    x0 = torch.randn(n, d, generator=torch_gen)
    x1 = torch.randn(n, d, generator=torch_gen) * 0.8 + 0.3
    out = fastot.coupling.solve_coupling(x0, x1, method="sinkhorn")
    P = out.sinkhorn.plan().double()
    assert bool(out.sinkhorn.converged)
    assert torch.isfinite(P).all()
    # far from uniform: the plan's rows put most of their mass on few columns
    assert float((P.max(1).values * n).mean()) > 0.3
    # and much cheaper than the independent coupling
    M = torch.from_numpy(sq_cost(x0, x1))
    assert float((P * M).sum()) < float(M.mean()) - 0.5 * double_centred_rms(M.numpy()) / n**0.5


def test_sinkhorn_not_converged_raises_or_warns(torch_gen):
    x0 = torch.randn(40, 2, generator=torch_gen)
    x1 = torch.randn(40, 2, generator=torch_gen)
    with pytest.raises(RuntimeError, match="did not converge"):
        fastot.couple(x0, x1, method="sinkhorn", epsilon_rel=0.001, max_iter=3)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        i, _ = fastot.couple(x0, x1, method="sinkhorn", epsilon_rel=0.001, max_iter=3, strict=False)
    assert i.shape == (40,)


# ------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"method": "sinkhorn", "epsilon": -1.0}, ValueError, "epsilon"),
        ({"method": "exact", "epsilon": 1.0}, ValueError, "epsilon"),
        ({"epsilon_rel": 0.0, "method": "sinkhorn"}, ValueError, "epsilon_rel"),
        ({"max_iter": 0, "method": "sinkhorn"}, ValueError, "max_iter"),
        ({"bogus": 1}, ValueError, "bogus"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 99}, ValueError, "batch_size"),
        ({"generator": 3}, TypeError, "generator"),
        ({"method": "partial", "mass": 1.5}, ValueError, "mass"),
        ({"target_r": 0.2}, ValueError, "target_r"),
    ],
)
def test_bad_options(torch_gen, kwargs, exc, match):
    x0 = torch.randn(8, 2, generator=torch_gen)
    x1 = torch.randn(8, 2, generator=torch_gen)
    with pytest.raises(exc, match=match):
        fastot.couple(x0, x1, **kwargs)


def test_bad_conditions(torch_gen):
    x0 = torch.randn(8, 2, generator=torch_gen)
    x1 = torch.randn(8, 2, generator=torch_gen)
    lab = torch.randint(0, 2, (8,), generator=torch_gen)
    emb = torch.randn(8, 3, generator=torch_gen)
    with pytest.raises(ValueError, match="y0 and y1"):
        fastot.couple(x0, x1, lab, None)
    with pytest.raises(ValueError, match="y1"):
        fastot.couple(x0, x1, lab, lab[:5])
    with pytest.raises(TypeError, match="y0 and y1"):
        fastot.couple(x0, x1, lab, emb, cond_weight=1.0)
    with pytest.raises(ValueError, match="cond_weight"):
        fastot.couple(x0, x1, emb, emb)
    with pytest.raises(ValueError, match="cond_weight"):
        fastot.couple(x0, x1, lab, lab, cond_weight=-1.0)
    with pytest.raises(ValueError, match="cond_weight"):
        fastot.couple(x0, x1, emb, emb, cond_weight=float("inf"))
    with pytest.raises(ValueError, match="cond_cost"):
        fastot.couple(x0, x1, lab, lab, cond_cost="hamming")
    with pytest.raises(TypeError, match="cond_cost"):
        fastot.couple(x0, x1, lab, lab, cond_cost="cosine")
    with pytest.raises(ValueError, match="y1"):
        fastot.couple(x0, x1, emb, emb[:, :2], cond_weight=1.0)
    bad = emb.clone()
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="y0"):
        fastot.couple(x0, x1, bad, emb, cond_weight=1.0)


# ------------------------------------------------------------------------------------------- compile


@pytest.mark.parametrize("method", ["exact", "sinkhorn"])
@pytest.mark.parametrize("cond", ["none", "labels", "embeddings"])
def test_training_step_compiles_fullgraph(torch_gen, method, cond):
    """A compiled flow-matching loss around couple(): one graph, same pairs as eager (fixed iterations)."""
    torch._dynamo.reset()  # loss_fn's code object is shared by the parametrisations: fresh cache each
    opts = {"max_iter": 30} if method == "sinkhorn" else {}

    def loss_fn(x0, x1, y0, y1, w):
        i, j = fastot.couple(x0, x1, y0, y1, method=method, cond_weight=2.0, **opts)
        xt = 0.5 * x0[i] + 0.5 * x1[j]
        return ((xt @ w - (x1[j] - x0[i])) ** 2).mean(), j

    cf = torch.compile(loss_fn, backend="aot_eager", fullgraph=True, dynamic=True)
    w = torch.randn(3, 3, generator=torch_gen, dtype=torch.float64, requires_grad=True)
    for n in (6, 9):
        x0 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
        x1 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
        if cond == "labels":
            y0 = torch.randint(0, 3, (n,), generator=torch_gen)
            y1 = torch.randint(0, 3, (n,), generator=torch_gen)
        elif cond == "embeddings":
            y0 = torch.randn(n, 4, generator=torch_gen, dtype=torch.float64)
            y1 = torch.randn(n, 4, generator=torch_gen, dtype=torch.float64)
        else:
            y0 = y1 = None
        loss_c, j_c = cf(x0, x1, y0, y1, w)
        (g_c,) = torch.autograd.grad(loss_c, w)
        assert torch.isfinite(g_c).all()
        if method == "exact":
            _, j_e = loss_fn(x0, x1, y0, y1, w)
            torch.testing.assert_close(j_c, j_e)
        else:
            assert j_c.shape == (n,) and 0 <= int(j_c.min()) and int(j_c.max()) < n


# ------------------------------------------------------------------------- unbalanced, partial (vs POT)


def test_unbalanced_plan_matches_pot(torch_gen):
    ot = pytest.importorskip("ot")
    n, m = 15, 11
    x0 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(m, 3, generator=torch_gen, dtype=torch.float64) + 1
    out = fastot.coupling.solve_coupling(x0, x1, method="unbalanced", reg_m=0.7, tol=1e-12, max_iter=20000)
    M = sq_cost(x0, x1)
    eps = 0.1 * double_centred_rms(M)
    P_ref = ot.unbalanced.sinkhorn_unbalanced(
        np.full(n, 1 / n), np.full(m, 1 / m), M, eps, 0.7, reg_type="kl", numItermax=20000, stopThr=1e-14
    )
    np.testing.assert_allclose(out.sinkhorn.plan().numpy(), P_ref, rtol=0, atol=1e-9)
    # default reg_m: the cost scale s (scale-aware as epsilon)
    out2 = fastot.coupling.solve_coupling(x0, x1, method="unbalanced", tol=1e-12, max_iter=20000)
    P_ref2 = ot.unbalanced.sinkhorn_unbalanced(
        np.full(n, 1 / n),
        np.full(m, 1 / m),
        M,
        eps,
        eps / 0.1,
        reg_type="kl",
        numItermax=20000,
        stopThr=1e-14,
    )
    np.testing.assert_allclose(out2.sinkhorn.plan().numpy(), P_ref2, rtol=0, atol=1e-9)


def test_partial_plan_matches_pot_and_batch_size(torch_gen):
    ot = pytest.importorskip("ot")
    n = 20
    x0 = torch.randn(n, 2, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(n, 2, generator=torch_gen, dtype=torch.float64) + 0.5
    out = fastot.coupling.solve_coupling(
        x0, x1, method="partial", mass=0.6, batch_size=12, tol=1e-12, max_iter=20000, generator=torch_gen
    )
    M = sq_cost(x0, x1)
    eps = 0.1 * double_centred_rms(M)
    a = np.full(n, 1 / n)
    P_ref = ot.partial.entropic_partial_wasserstein(a, a, M, eps, m=0.6, numItermax=20000, stopThr=1e-15)
    np.testing.assert_allclose(out.sinkhorn.plan().numpy(), P_ref, rtol=0, atol=1e-9)
    assert out.i.shape == (12,) and len(set(out.i.tolist())) == 12
    np.testing.assert_array_equal(out.i.numpy(), np.sort(out.i.numpy()))


# --------------------------------------------------------------------------------------- knn, BoMb-OT


@pytest.mark.parametrize("cond", [None, "labels", "cosine"])
def test_knn_picks_nearest_candidate(torch_gen, cond):
    n1, k, d = 17, 5, 3
    x1 = torch.randn(n1, d, generator=torch_gen, dtype=torch.float64)
    x0 = torch.randn(n1 * k, d, generator=torch_gen, dtype=torch.float64)
    y0 = y1 = None
    w = 1.7
    if cond == "labels":
        y0 = torch.randint(0, 2, (n1 * k,), generator=torch_gen)
        y1 = torch.randint(0, 2, (n1,), generator=torch_gen)
    elif cond == "cosine":
        y0 = torch.randn(n1 * k, 4, generator=torch_gen, dtype=torch.float64)
        y1 = torch.randn(n1, 4, generator=torch_gen, dtype=torch.float64)
    i, j = fastot.couple(x0, x1, y0, y1, method="knn", cond_weight=w if cond else None, cond_cost="auto")
    if cond == "cosine":
        i, j = fastot.couple(x0, x1, y0, y1, method="knn", cond_weight=w, cond_cost="cosine")
    np.testing.assert_array_equal(j.numpy(), np.arange(n1))
    if cond is None:
        M = sq_cost(x0, x1)
    elif cond == "labels":
        M = label_cost(x0, x1, y0, y1, w)
    else:
        M = embedding_cost(x0, x1, y0, y1, w, "cosine")
    for t in range(n1):
        cands = np.arange(t * k, (t + 1) * k)
        assert i[t].item() in cands
        np.testing.assert_allclose(M[i[t].item(), t], M[cands, t].min(), rtol=1e-12)


def test_knn_bad_sizes(torch_gen):
    x1 = torch.randn(4, 2, generator=torch_gen)
    with pytest.raises(ValueError, match="knn"):
        fastot.couple(torch.randn(10, 2, generator=torch_gen), x1, method="knn")
    with pytest.raises(ValueError, match="k="):
        fastot.couple(torch.randn(12, 2, generator=torch_gen), x1, method="knn", k=2)


def test_bomb_matches_brute_force(torch_gen):
    """Outer exact OT over mini-batch pairs priced by their inner exact OT; inner couplings optimal."""
    nb, s, d = 4, 6, 2
    n = nb * s
    x0 = torch.randn(n, d, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(n, d, generator=torch_gen, dtype=torch.float64) * 2 + 1
    i, j = fastot.couple(x0, x1, method="bomb", minibatch_size=s)
    np.testing.assert_array_equal(i.numpy(), np.arange(n))
    np.testing.assert_array_equal(np.sort(j.numpy()), np.arange(n))
    M = sq_cost(x0, x1)
    inner = np.zeros((nb, nb))
    for p in range(nb):
        for q in range(nb):
            blk = M[p * s : (p + 1) * s, q * s : (q + 1) * s]
            r, c = scipy_lsa(blk)
            inner[p, q] = blk[r, c].sum()
    ro, co = scipy_lsa(inner)
    np.testing.assert_allclose(M[i.numpy(), j.numpy()].sum(), inner[ro, co].sum(), rtol=1e-12)
    # every sample of mini-batch p goes into one mini-batch of x1
    blocks = (j.numpy() // s).reshape(nb, s)
    assert (blocks == blocks[:, :1]).all()


def test_bomb_needs_minibatch_size(torch_gen):
    x = torch.randn(8, 2, generator=torch_gen)
    with pytest.raises(ValueError, match="minibatch_size"):
        fastot.couple(x, x, method="bomb")
    with pytest.raises(ValueError, match="minibatch_size"):
        fastot.couple(x, x, method="bomb", minibatch_size=3)
    lab = torch.randint(0, 2, (8,), generator=torch_gen)
    with pytest.raises(ValueError, match="cond_weight"):
        fastot.couple(x, x, lab, lab, method="bomb", minibatch_size=4)
    _, j = fastot.couple(x, x, lab, lab, method="bomb", minibatch_size=4, cond_weight=3.0)
    assert sorted(j.tolist()) == list(range(8))


# ------------------------------------------------------------------------ target_r, oversampling


def c2ot_ratio(M: np.ndarray, C: np.ndarray, w: float) -> float:
    return float(((M + w * C) <= np.diag(M)[:, None]).mean())


@pytest.mark.parametrize("kind", ["cosine", "sqeuclidean"])
def test_target_r_reaches_ratio(torch_gen, kind):
    n = 120
    x0 = torch.randn(n, 4, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(n, 4, generator=torch_gen, dtype=torch.float64)
    e0 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
    e1 = e0 + 0.3 * torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
    out = fastot.coupling.solve_coupling(
        x0, x1, e0, e1, cond_cost=kind, target_r=0.2, target_r_tol=0.01, max_weight_iter=30
    )
    M = sq_cost(x0, x1)
    C = cdist(e0.numpy(), e1.numpy(), kind)
    assert abs(c2ot_ratio(M, C, out.cond_weight) - 0.2) <= 0.01
    assert abs(out.ratio - c2ot_ratio(M, C, out.cond_weight)) < 1e-12
    # and the coupling is exact for that weight
    assert_optimal_coupling(x0, x1, out.i, out.j, M=M + out.cond_weight * C, tol=cost_tol(M, factor=64.0))


def test_oversampling_subset_of_exact_pairs(torch_gen):
    n = 40
    x0 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
    _i_all, j_all = fastot.couple(x0, x1)
    i, j = fastot.couple(x0, x1, batch_size=10, generator=torch.Generator().manual_seed(1))
    assert i.shape == (10,) and len(set(i.tolist())) == 10
    torch.testing.assert_close(j, j_all[i])
    i2, j2 = fastot.couple(x0, x1, batch_size=10, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(i, i2)
    torch.testing.assert_close(j, j2)


# ------------------------------------------------------------------------------------------ Coupler


def test_coupler_adapts_weight_warm_starts_and_times(torch_gen):
    coupler = fastot.Coupler(method="sinkhorn", target_r=0.3, cond_cost="cosine", target_r_tol=0.02)
    n = 64
    iters = []
    for step in range(3):
        x0 = torch.randn(n, 2, generator=torch_gen, dtype=torch.float64)
        x1 = torch.randn(n, 2, generator=torch_gen, dtype=torch.float64)
        e1 = torch.randn(n, 5, generator=torch_gen, dtype=torch.float64)
        e0 = e1 + 0.1 * torch.randn(n, 5, generator=torch_gen, dtype=torch.float64)
        i, _j = coupler(x0, x1, e0, e1)
        assert i.shape == (n,)
        out = coupler.last
        M = sq_cost(x0, x1)
        C = cdist(e0.numpy(), e1.numpy(), "cosine")
        assert abs(c2ot_ratio(M, C, out.cond_weight) - 0.3) <= 0.02
        assert coupler.cond_weight == out.cond_weight
        iters.append(int(out.sinkhorn.n_iter))
        if step == 0:
            first_weight = coupler.cond_weight
    assert coupler.stats.calls == 3 and len(coupler.stats.times_s) == 3
    assert coupler.stats.summary()["total_s"] > 0
    assert coupler.stats.cond_weights[0] == first_weight
    coupler.reset()
    assert coupler.stats.calls == 0 and coupler.cond_weight is None


def test_coupler_warm_start_passes_potentials(torch_gen, monkeypatch):
    seen = []
    real = fastot.coupling.solve_coupling

    def spy(*args, **kwargs):
        seen.append(kwargs.get("f_init"))
        return real(*args, **kwargs)

    monkeypatch.setattr(fastot.coupling, "solve_coupling", spy)
    coupler = fastot.Coupler(method="sinkhorn")
    x0 = torch.randn(30, 2, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(30, 2, generator=torch_gen, dtype=torch.float64)
    coupler(x0, x1)
    f_prev = coupler.last.sinkhorn.f
    coupler(x0 + 0.01, x1)
    assert seen[0] is None and seen[1] is f_prev
    coupler(x0[:20], x1[:20])  # different sizes: no warm start
    assert seen[2] is None


def test_coupler_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        fastot.Coupler(method="nope")
    with pytest.raises(ValueError, match="bogus"):
        fastot.Coupler(bogus=1)
    with pytest.raises(ValueError, match="f_init"):
        fastot.Coupler(method="sinkhorn", f_init=torch.zeros(3))


# ----------------------------------------------------------------------------------------- properties


@settings(max_examples=25)
@given(
    n0=st.integers(1, 12),
    n1=st.integers(1, 12),
    d=st.integers(1, 4),
    n_classes=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_hard_labels_exact(n0, n1, d, n_classes, seed):
    """Any sizes and labels: injective pairs, same class, min(n0_c, n1_c) per class, optimal per class."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n0, d, generator=g, dtype=torch.float64)
    x1 = torch.randn(n1, d, generator=g, dtype=torch.float64)
    y0 = torch.randint(0, n_classes, (n0,), generator=g)
    y1 = torch.randint(0, n_classes, (n1,), generator=g)
    i, j = fastot.couple(x0, x1, y0, y1)
    assert i.dtype == j.dtype == torch.int64
    assert len(set(i.tolist())) == i.numel() and len(set(j.tolist())) == j.numel()
    assert bool((y0[i] == y1[j]).all())
    M = sq_cost(x0, x1)
    want = 0.0
    for c in range(n_classes):
        r, s = np.flatnonzero(y0.numpy() == c), np.flatnonzero(y1.numpy() == c)
        assert int((y0[i] == c).sum()) == min(len(r), len(s))
        if len(r) and len(s):
            want += scipy_optimum_sum(M[np.ix_(r, s)])
    np.testing.assert_allclose(M[i.numpy(), j.numpy()].sum(), want, rtol=0, atol=cost_tol(M, factor=64.0))


def scipy_optimum_sum(M: np.ndarray) -> float:
    r, c = scipy_lsa(M)
    return float(M[r, c].sum())


@pytest.mark.parametrize("cond", [None, "cosine"])
def test_exact_many_features(torch_gen, cond):
    """d > 64: the square exact cost is the centred product alone (row/column constants dropped)."""
    n, d = 45, 150
    x0 = torch.randn(n, d, generator=torch_gen, dtype=torch.float64) + 3.0
    x1 = torch.randn(n, d, generator=torch_gen, dtype=torch.float64) * 0.5 - 1.0
    if cond is None:
        i, j = fastot.couple(x0, x1)
        M = sq_cost(x0, x1)
    else:
        e0 = torch.randn(n, 7, generator=torch_gen, dtype=torch.float64)
        e1 = torch.randn(n, 7, generator=torch_gen, dtype=torch.float64)
        i, j = fastot.couple(x0, x1, e0, e1, cond_weight=40.0, cond_cost="cosine")
        M = embedding_cost(x0, x1, e0, e1, 40.0, "cosine")
    assert_optimal_coupling(x0, x1, i, j, M=M, tol=cost_tol(M, factor=64.0))


def test_sinkhorn_hard_labels(torch_gen):
    n = 40
    x0 = torch.randn(n, 2, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(n, 2, generator=torch_gen, dtype=torch.float64)
    y0 = torch.randint(0, 3, (n,), generator=torch_gen)
    y1 = y0[torch.randperm(n, generator=torch_gen)]
    i, j = fastot.couple(x0, x1, y0, y1, method="sinkhorn", generator=torch_gen)
    torch.testing.assert_close(y0[i], y1[j], rtol=0, atol=0)
    y1_bad = torch.randint(0, 3, (n,), generator=torch_gen)
    while bool((torch.bincount(y1_bad, minlength=3) == torch.bincount(y0, minlength=3)).all()):
        y1_bad = torch.randint(0, 3, (n,), generator=torch_gen)
    with pytest.raises(RuntimeError, match="class"):
        fastot.couple(x0, x1, y0, y1_bad, method="sinkhorn", max_iter=200)


def test_hard_labels_non_convergence_hint_only_for_unequal_shares(torch_gen):
    x0 = torch.randn(12, 2, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(12, 2, generator=torch_gen, dtype=torch.float64)
    y = torch.arange(12) % 3
    with pytest.raises(RuntimeError, match="did not converge") as info:
        fastot.couple(x0, x1, y, y, method="sinkhorn", max_iter=1, tol=1e-12)
    assert "class shares" not in str(info.value)
    with pytest.raises(RuntimeError, match="different class shares"):
        fastot.couple(
            x0, x1, y, torch.arange(12) % 2 + (torch.arange(12) > 9), method="sinkhorn", max_iter=50
        )
