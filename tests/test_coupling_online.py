"""``couple(..., mode="online")``: the conditional cost inside the online Sinkhorn, never an n x m matrix.

Online mode solves on points whose squared distances are the conditional cost (hard labels: one batched
solve of the per-class problems) and draws the pairs by blocks of rows. It must solve the dense mode's
problem: the same potentials (float64, up to the gauge) and, from the same generator, the same pairs.
"""

from __future__ import annotations

import itertools
import math
import sys
import tracemalloc

import numpy as np
import pytest
import torch
import torch._dynamo
from torch.profiler import ProfilerActivity, profile

import fastot
from fastot.costs import augmented_points
from fastot.coupling import solve_coupling
from fastot.geometry import DenseGeometry, PointCloudGeometry

# inductor's import path triggers torch's own deprecation warning (not fastot's)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

METHODS = ("sinkhorn", "unbalanced", "partial")
CONDS = ("none", "labels", "hard", "embeddings", "cosine")


def make_problem(gen: torch.Generator, cond: str, n0: int = 23, n1: int = 31, d: int = 3):
    """float64 points (``x1`` shifted) and conditions of kind ``cond`` with their couple() options.

    ``"hard"``: labels with the default ``cond_weight=inf`` and class shares equal on both sides (so the
    balanced masked problem has a plan): ``n0 = 24``, ``n1 = 36``, three classes in both.
    """
    if cond == "hard":
        n0, n1 = 24, 36
    x0 = torch.randn(n0, d, generator=gen, dtype=torch.float64)
    x1 = 0.7 * torch.randn(n1, d, generator=gen, dtype=torch.float64) + 0.5
    if cond == "none":
        return x0, x1, None, None, {}
    if cond in ("labels", "hard"):
        y0 = torch.arange(n0) % 3
        y1 = (torch.arange(n1) % 3)[torch.randperm(n1, generator=gen)]
        if cond == "labels":
            y0 = torch.randint(0, 4, (n0,), generator=gen)
            return x0, x1, y0, y1, {"cond_weight": 1.5}
        return x0, x1, y0, y1, {}
    e0 = torch.randn(n0, 5, generator=gen, dtype=torch.float64)
    e1 = torch.randn(n1, 5, generator=gen, dtype=torch.float64)
    if cond == "embeddings":
        return x0, x1, e0, e1, {"cond_weight": 0.4}
    return x0, x1, e0, e1, {"cond_weight": 2.0, "cond_cost": "cosine"}


def gauge_free(f: torch.Tensor, g: torch.Tensor, ref_f: torch.Tensor, y0=None, y1=None):
    """``(f, g)`` shifted by the constant (per class under a hard constraint, whose masked problem
    decouples) that best matches ``ref_f``: balanced potentials are defined up to ``(f + c, g - c)``."""
    f, g = f.clone(), g.clone()
    groups = [(slice(None), slice(None))] if y0 is None else [(y0 == c, y1 == c) for c in y0.unique()]
    for rows, cols in groups:
        c = (ref_f[rows] - f[rows]).mean()
        f[rows] += c
        g[cols] -= c
    return f, g


# ----------------------------------------------------------------------------- (a) online == dense


@pytest.mark.parametrize("cond", CONDS)
@pytest.mark.parametrize("method", METHODS)
def test_online_matches_dense(torch_gen, method, cond):
    """Same potentials (float64, up to the balanced gauge) and the same pairs from the same seed, for
    all rows, a subset of rows (k < n) and draws with replacement."""
    x0, x1, y0, y1, opts = make_problem(torch_gen, cond)
    if method == "partial" and cond == "hard":
        with pytest.raises(ValueError, match="per class"):
            solve_coupling(x0, x1, y0, y1, method=method, mode="online", **opts)
        return
    opts.update(tol=1e-11, max_iter=20000, epsilon_rel=0.3)
    n0, n1 = x0.shape[0], x1.shape[0]
    for sampling in ({}, {"batch_size": n0 // 2}, {"batch_size": 3 * n0, "replace": True}):
        outs = {
            mode: solve_coupling(
                x0,
                x1,
                y0,
                y1,
                method=method,
                mode=mode,
                generator=torch.Generator().manual_seed(7),
                **opts,
                **sampling,
            )
            for mode in ("dense", "online")
        }
        dense, online = outs["dense"], outs["online"]
        assert isinstance(dense.sinkhorn._geometry, DenseGeometry)
        assert not isinstance(online.sinkhorn._geometry, DenseGeometry)
        assert bool(online.sinkhorn.converged) and bool(dense.sinkhorn.converged)
        torch.testing.assert_close(online.epsilon, dense.epsilon, rtol=1e-12, atol=0)
        f, g = online.sinkhorn.f, online.sinkhorn.g
        assert f.shape == (n0,) and g.shape == (n1,) and f.dtype == torch.float64
        if method == "sinkhorn":
            f, g = gauge_free(f, g, dense.sinkhorn.f, *((y0, y1) if cond == "hard" else ()))
        scale = float(dense.sinkhorn.f.abs().max())
        torch.testing.assert_close(f, dense.sinkhorn.f, rtol=0, atol=1e-8 * scale)
        torch.testing.assert_close(g, dense.sinkhorn.g, rtol=0, atol=1e-8 * scale)
        torch.testing.assert_close(online.sinkhorn.value, dense.sinkhorn.value, rtol=1e-9, atol=0)
        torch.testing.assert_close(online.i, dense.i, rtol=0, atol=0)
        torch.testing.assert_close(online.j, dense.j, rtol=0, atol=0)
        k = sampling.get("batch_size", min(n0, n1))
        assert online.i.shape == online.j.shape == (k,) and online.j.dtype == torch.int64
        if cond == "hard":
            torch.testing.assert_close(y0[online.i], y1[online.j], rtol=0, atol=0)


# ------------------------------------------------------------------- (b) augmented points == cost


@pytest.mark.parametrize("kind", ["sqeuclidean", "cosine", "label", None])
@pytest.mark.parametrize("center", [None, "common", "separate"])
def test_augmented_points_give_the_conditional_cost(torch_gen, kind, center):
    n, m, d, w = 17, 12, 4, 2.5
    x = torch.randn(n, d, generator=torch_gen, dtype=torch.float64) + 3
    y = torch.randn(m, d, generator=torch_gen, dtype=torch.float64)
    if kind == "label":
        y0 = torch.randint(0, 5, (n,), generator=torch_gen)
        y1 = torch.randint(2, 7, (m,), generator=torch_gen)  # labels present on one side only, too
    elif kind is not None:
        y0 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
        y1 = torch.randn(m, 3, generator=torch_gen, dtype=torch.float64)
    else:
        y0 = y1 = None
    xa, ya = augmented_points(x, y, y0, y1, w, kind, center=center)
    extra = len(set(y0.tolist()) | set(y1.tolist())) if kind == "label" else 0 if kind is None else 3
    assert xa.shape == (n, d + extra) and ya.shape == (m, d + extra)
    got = (xa[:, None, :] - ya[None, :, :]).square().sum(-1)  # by differences: no cancellation
    if kind is None:
        want = fastot.cost_matrix(x, y)
    else:
        want = fastot.cost_matrix(x, y, y0, y1, cond_weight=w, cond_cost=kind)
    if center == "separate":  # the cost up to a row and a column constant: compare double-centred
        got = got - got.mean(0) - got.mean(1, keepdim=True) + got.mean()
        want = want - want.mean(0) - want.mean(1, keepdim=True) + want.mean()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10 * float(want.abs().max()))
    if kind is not None or center is not None:  # fresh copies (centred in place): the inputs untouched
        assert xa.data_ptr() != x.data_ptr() and ya.data_ptr() != y.data_ptr()


def test_fused_cost_unchanged_by_the_refactor(torch_gen):
    """fused_cost builds on augmented_points: embeddings appended, then centred, labels as a mask."""
    x = torch.randn(9, 4, generator=torch_gen, dtype=torch.float64)
    y = torch.randn(11, 4, generator=torch_gen, dtype=torch.float64) + 2
    e0 = torch.randn(9, 3, generator=torch_gen, dtype=torch.float64)
    e1 = torch.randn(11, 3, generator=torch_gen, dtype=torch.float64)
    ref = torch.cdist(x, y) ** 2 + 0.7 * torch.cdist(e0, e1) ** 2
    for center in ("common", "separate", "interaction"):
        C = fastot.costs.fused_cost(x, y, e0, e1, 0.7, "sqeuclidean", center=center)
        Cc = C - C.mean(0) - C.mean(1, keepdim=True) + C.mean()
        rc = ref - ref.mean(0) - ref.mean(1, keepdim=True) + ref.mean()
        torch.testing.assert_close(Cc, rc, rtol=0, atol=1e-11 * float(ref.max()))


# ------------------------------------------------------------------------------- (c) hard labels


def test_hard_labels_online_equal_counts_give_the_dense_masked_plan(torch_gen):
    x0, x1, y0, y1, _ = make_problem(torch_gen, "hard")
    opts = {"tol": 1e-12, "max_iter": 20000, "epsilon_rel": 0.3}
    online = solve_coupling(x0, x1, y0, y1, method="sinkhorn", mode="online", **opts)
    dense = solve_coupling(x0, x1, y0, y1, method="sinkhorn", mode="dense", **opts)
    P, P_ref = online.sinkhorn.plan(), dense.sinkhorn.plan()
    assert P.shape == (24, 36)
    torch.testing.assert_close(P, P_ref, rtol=0, atol=1e-12)
    assert float(P[y0[:, None] != y1[None, :]].abs().max()) == 0.0  # no mass across classes
    torch.testing.assert_close(P.sum(1), torch.full((24,), 1 / 24, dtype=P.dtype), rtol=0, atol=1e-12)
    torch.testing.assert_close(P.sum(0), torch.full((36,), 1 / 36, dtype=P.dtype), rtol=0, atol=1e-11)
    v = torch.randn(36, 2, generator=torch_gen, dtype=torch.float64)
    torch.testing.assert_close(online.sinkhorn.apply(v), P_ref @ v, rtol=0, atol=1e-12)
    assert float(online.sinkhorn.error) <= 1e-12  # the whole problem's error: the blocks' sum
    for sampling in ({}, {"batch_size": 10}, {"batch_size": 500, "replace": True}):
        i, j = fastot.couple(
            x0, x1, y0, y1, method="sinkhorn", mode="online", generator=torch_gen, **sampling
        )
        torch.testing.assert_close(y0[i], y1[j], rtol=0, atol=0)  # never a cross-class pair


def test_hard_labels_unequal_counts_behave_like_dense(torch_gen):
    """No balanced plan: both modes raise (strict), or warn and draw the same pairs from the same
    unconverged potentials (fixed iterations: every class runs all of them in both modes)."""
    n = 14
    x0 = torch.randn(n, 2, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(n, 2, generator=torch_gen, dtype=torch.float64)
    y0 = torch.tensor([0] * 5 + [1] * 9)[torch.randperm(n, generator=torch_gen)]
    y1 = torch.tensor([0] * 8 + [1] * 6)[torch.randperm(n, generator=torch_gen)]
    outs = {}
    for mode in ("dense", "online"):
        with pytest.raises(RuntimeError, match="different class shares"):
            fastot.couple(x0, x1, y0, y1, method="sinkhorn", mode=mode, max_iter=60)
        with pytest.warns(RuntimeWarning, match="did not converge"):
            outs[mode] = solve_coupling(
                x0,
                x1,
                y0,
                y1,
                method="sinkhorn",
                mode=mode,
                max_iter=60,
                strict=False,
                generator=torch.Generator().manual_seed(3),
            )
    dense, online = outs["dense"], outs["online"]
    torch.testing.assert_close(online.sinkhorn.f, dense.sinkhorn.f, rtol=0, atol=1e-10)
    torch.testing.assert_close(online.sinkhorn.g, dense.sinkhorn.g, rtol=0, atol=1e-10)
    torch.testing.assert_close(online.sinkhorn.error, dense.sinkhorn.error, rtol=1e-9, atol=0)
    assert int(online.sinkhorn.n_iter) == int(dense.sinkhorn.n_iter) == 60
    torch.testing.assert_close(online.j, dense.j, rtol=0, atol=0)
    torch.testing.assert_close(y0[online.i], y1[online.j], rtol=0, atol=0)
    # unbalanced transport has a plan for unequal counts: the per-class split agrees with dense
    opts = {"method": "unbalanced", "tol": 1e-12, "max_iter": 20000}
    u_on = solve_coupling(x0, x1, y0, y1, mode="online", generator=torch.Generator().manual_seed(4), **opts)
    u_de = solve_coupling(x0, x1, y0, y1, mode="dense", generator=torch.Generator().manual_seed(4), **opts)
    torch.testing.assert_close(u_on.sinkhorn.plan(), u_de.sinkhorn.plan(), rtol=0, atol=1e-12)
    torch.testing.assert_close(u_on.j, u_de.j, rtol=0, atol=0)


def test_hard_labels_class_on_one_side_raises_in_both_modes(torch_gen):
    x0 = torch.randn(8, 2, generator=torch_gen)
    x1 = torch.randn(8, 2, generator=torch_gen)
    y0 = torch.tensor([0, 0, 1, 1, 1, 0, 1, 0])
    y1 = torch.tensor([0, 0, 2, 2, 0, 0, 2, 2])
    for mode in ("dense", "online", "auto"):
        for method in METHODS:
            with pytest.raises(ValueError, match=r"classes \[1\] appear only in y0 and \[2\] only in y1"):
                fastot.couple(x0, x1, y0, y1, method=method, mode=mode)


def test_coupler_warm_starts_the_per_class_solve(torch_gen):
    x0, x1, y0, y1, _ = make_problem(torch_gen, "hard")
    coupler = fastot.Coupler(method="sinkhorn", mode="online", tol=1e-9, max_iter=5000)
    first = coupler.solve(x0, x1, y0, y1)
    again = coupler.solve(x0, x1, y0, y1)  # warm start from the scattered potentials: done at once
    assert int(again.sinkhorn.n_iter) <= 10 < int(first.sinkhorn.n_iter)
    torch.testing.assert_close(again.sinkhorn.plan(), first.sinkhorn.plan(), rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------- (d) the sampling law


def chi_square_p_value(counts: np.ndarray, probs: np.ndarray) -> float:
    stats = pytest.importorskip("scipy.stats")
    keep = probs > 0
    assert counts[~keep].sum() == 0, "a draw fell on a pair without mass"
    expected = probs[keep] * counts.sum()
    chi2 = float(((counts[keep] - expected) ** 2 / expected).sum())
    p_value = float(stats.chi2.sf(chi2, keep.sum() - 1))
    print(f"chi-square {chi2:.2f}, {keep.sum() - 1} dof, p = {p_value:.3g}")
    return p_value


@pytest.mark.parametrize("cond", ["none", "hard"])
def test_draws_with_replacement_follow_the_plan(cond):
    """Unbalanced plans (rows of unequal mass): 20000 draws with replacement, chi-square against the
    flattened plan. Fixed seeds: the verdict is deterministic, and p > 1e-3 leaves a wide margin."""
    gen = torch.Generator().manual_seed(11)
    n0, n1 = 5, 6
    x0 = torch.randn(n0, 2, generator=gen, dtype=torch.float64)
    x1 = torch.randn(n1, 2, generator=gen, dtype=torch.float64) + 0.5
    y0 = y1 = None
    if cond == "hard":
        y0, y1 = torch.tensor([0, 1, 0, 1, 1]), torch.tensor([1, 0, 0, 1, 0, 1])
    draws = 20000
    out = solve_coupling(
        x0,
        x1,
        y0,
        y1,
        method="unbalanced",
        mode="online",
        epsilon_rel=1.0,
        reg_m=0.5,
        tol=1e-12,
        replace=True,
        batch_size=draws,
        generator=torch.Generator().manual_seed(12),
    )
    P = out.sinkhorn.plan().numpy()
    counts = np.bincount((out.i * n1 + out.j).numpy(), minlength=n0 * n1).astype(float)
    assert chi_square_p_value(counts, (P / P.sum()).ravel()) > 1e-3


@pytest.mark.parametrize("cond", ["none", "hard"])
def test_one_draw_without_replacement_follows_the_plan(cond):
    """``batch_size=1``: the row by its mass (exponential race), then its partner: the law of one draw
    from the flattened plan. Repeated warm-started calls (the potentials of a converged solve)."""
    gen = torch.Generator().manual_seed(21)
    n0, n1 = 4, 5
    x0 = torch.randn(n0, 2, generator=gen, dtype=torch.float64)
    x1 = torch.randn(n1, 2, generator=gen, dtype=torch.float64)
    y0 = y1 = None
    if cond == "hard":
        y0, y1 = torch.tensor([0, 1, 1, 0]), torch.tensor([1, 0, 0, 1, 1])
    opts = {"method": "unbalanced", "mode": "online", "epsilon_rel": 1.0, "reg_m": 0.3, "tol": 1e-9}
    out = solve_coupling(x0, x1, y0, y1, max_iter=5000, **opts)
    P = out.sinkhorn.plan().numpy()
    draw = torch.Generator().manual_seed(22)
    counts = np.zeros(n0 * n1)
    for _ in range(1000):
        i, j = fastot.couple(
            x0,
            x1,
            y0,
            y1,
            batch_size=1,
            generator=draw,
            f_init=out.sinkhorn.f,
            g_init=out.sinkhorn.g,
            epsilon=out.epsilon,
            **opts,
        )
        counts[int(i) * n1 + int(j)] += 1
    assert chi_square_p_value(counts, (P / P.sum()).ravel()) > 1e-3


# ------------------------------------------------------------------------------------ (e) memory


def peak_bytes(fn) -> int:
    """Peak of torch's CPU allocations (profiler memory events) plus Python's and NumPy's (tracemalloc)
    during ``fn()``. (The C++ kernels' own scratch, a few panels of at most 1 MB per thread and the packed
    points, is malloc'd outside both.)"""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            fn()
            python_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    )
    torch_peak = max(itertools.accumulate(b for _, b in events), default=0)
    return torch_peak + python_peak


@pytest.mark.parametrize("cond", ["embeddings", "hard"])
def test_online_never_allocates_an_n_by_m_matrix(cond):
    n, d = 4096, 8
    gen = torch.Generator().manual_seed(31)
    x0 = torch.randn(n, d, generator=gen)
    x1 = torch.randn(n, d, generator=gen)
    if cond == "embeddings":
        y0, y1 = torch.randn(n, 4, generator=gen), torch.randn(n, 4, generator=gen)
        opts = {"cond_weight": 0.5}
    else:
        y0 = torch.randint(0, 4, (n,), generator=gen)
        y1 = y0[torch.randperm(n, generator=gen)]
        opts = {}

    def run(**sampling):
        fastot.couple(
            x0,
            x1,
            y0,
            y1,
            method="sinkhorn",
            mode="online",
            epsilon_rel=0.5,
            generator=gen,
            **opts,
            **sampling,
        )

    run()  # warm-up (lazy initialisation is not the solve's memory)
    limit = 0.25 * n * n * 4
    for sampling in ({}, {"batch_size": 1000}, {"replace": True}):
        peak = peak_bytes(lambda: run(**sampling))  # noqa: B023
        assert peak < limit, f"{sampling}: peak {peak / 2**20:.1f} MiB >= {limit / 2**20:.0f} MiB"


# ----------------------------------------------------------------------------------- (f) compile


def test_online_conditional_sinkhorn_under_compile(torch_gen):
    """fullgraph, dynamic batch; the same potentials and pairs as eager (aot_eager draws from the global
    generator as eager does: same seed, same pairs)."""
    torch._dynamo.reset()

    def step(x0, x1, y0, y1):
        out = solve_coupling(x0, x1, y0, y1, method="sinkhorn", mode="online", cond_weight=0.5)
        return out.i, out.j, out.sinkhorn.f, out.sinkhorn.g

    cf = torch.compile(step, backend="aot_eager", fullgraph=True, dynamic=True)
    try:
        for n in (7, 10):
            x0 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
            x1 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
            y0 = torch.randn(n, 4, generator=torch_gen, dtype=torch.float64)
            y1 = torch.randn(n, 4, generator=torch_gen, dtype=torch.float64)
            with torch.random.fork_rng():
                torch.manual_seed(5)
                got = cf(x0, x1, y0, y1)
                torch.manual_seed(5)
                want = step(x0, x1, y0, y1)
            for a, b in zip(got, want, strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
            assert got[0].shape == (n,) and got[1].dtype == torch.int64
    finally:
        torch._dynamo.reset()


# ------------------------------------------------------------------------------------- (g) errors


def test_bad_mode(torch_gen):
    x0 = torch.randn(6, 2, generator=torch_gen)
    x1 = torch.randn(6, 2, generator=torch_gen)
    with pytest.raises(ValueError, match="mode must be one of"):
        fastot.couple(x0, x1, method="sinkhorn", mode="bogus")
    with pytest.raises(ValueError, match="mode must be one of"):
        fastot.couple(x0, x1, method="sinkhorn", mode=None)
    for method in ("exact", "knn", "bomb"):
        with pytest.raises(ValueError, match="mode='online' applies to the entropic methods"):
            fastot.couple(x0, x1, method=method, mode="online")
    i, _ = fastot.couple(x0, x1, method="exact", mode="auto")  # accepted, nothing to decide
    assert i.shape == (6,)
    with pytest.raises(ValueError, match="mode must be one of"):
        fastot.Coupler(method="sinkhorn", mode="bogus")(x0, x1)


def test_online_labels_under_compile_raise(torch_gen):
    """Per-class shapes (hard) and the one-hot width (finite weight) depend on the labels: an explicit
    mode="online" raises ValueError inside the graph (fullgraph=True reports it through dynamo)."""
    torch._dynamo.reset()
    x0 = torch.randn(8, 2, generator=torch_gen)
    x1 = torch.randn(8, 2, generator=torch_gen)
    y = torch.randint(0, 2, (8,), generator=torch_gen)

    def step(x0, x1, y0, y1):
        return fastot.couple(x0, x1, y0, y1, method="sinkhorn", mode="online")

    try:
        with pytest.raises((ValueError, torch._dynamo.exc.Unsupported), match="needs eager mode"):
            torch.compile(step, backend="aot_eager", fullgraph=True)(x0, x1, y, y)
    finally:
        torch._dynamo.reset()


def test_auto_mode_threshold(torch_gen, monkeypatch):
    """Mode "auto": fastot.sinkhorn's rule (many cost entries, points much smaller than the cost),
    where online applies."""
    x0, x1, y0, y1, _ = make_problem(torch_gen, "hard")
    rule = sys.modules["fastot.sinkhorn"]  # (the attribute fastot.sinkhorn is the function)
    monkeypatch.setattr(rule, "_AUTO_ONLINE_ENTRIES", 24 * 36 - 1)
    monkeypatch.setattr(rule, "_AUTO_ONLINE_POINT_RATIO", 0)
    out = solve_coupling(x0, x1, y0, y1, method="sinkhorn")
    assert not isinstance(out.sinkhorn._geometry, DenseGeometry)
    out = solve_coupling(x0, x1, method="unbalanced")
    assert isinstance(out.sinkhorn._geometry, PointCloudGeometry)
    out = solve_coupling(x0, x1, y0, y1, method="partial")  # the mass couples the classes: dense
    assert isinstance(out.sinkhorn._geometry, DenseGeometry)
    # points not much smaller than the cost (many features): dense
    monkeypatch.setattr(rule, "_AUTO_ONLINE_POINT_RATIO", 10**6)
    out = solve_coupling(x0, x1, method="unbalanced")
    assert isinstance(out.sinkhorn._geometry, DenseGeometry)
    monkeypatch.setattr(rule, "_AUTO_ONLINE_POINT_RATIO", 0)
    monkeypatch.setattr(rule, "_AUTO_ONLINE_ENTRIES", 24 * 36)
    out = solve_coupling(x0, x1, method="sinkhorn")
    assert isinstance(out.sinkhorn._geometry, DenseGeometry)
    assert math.isfinite(float(out.epsilon))


def test_auto_online_rule():
    from fastot.sinkhorn import auto_online

    n = 16384  # 2^28 entries: online only if the points are at least 8x smaller than the cost
    assert auto_online(n * n, 2 * n * 64)
    assert not auto_online(n * n, 2 * n * 3072)  # d = 3072: dense (1 GiB), online would save nothing
    assert not auto_online(4096 * 4096, 2 * 4096 * 2)  # 2^24 entries: dense
