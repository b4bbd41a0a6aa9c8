"""fastot._ref.sinkhorn_reference vs POT (float64, fixed iteration counts and convergence), and properties."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from fastot._ref import SinkhornReference, sinkhorn_reference

ot = pytest.importorskip("ot")

T = torch.as_tensor
SHAPES = [(5, 7), (7, 5), (1, 4), (4, 1), (1, 1), (13, 11)]
FIXED_K = [1, 3, 10]
CONVERGED_K = 1500
TIGHT = {"rtol": 1e-10, "atol": 1e-15}  # same iterates as POT: only rounding differs


# ----------------------------------------------------------------------------------------------------------
# helpers


def problem(rng, n, m, *, mass_a=1.0, mass_b=1.0):
    """Cost in [0, 1), non-uniform positive weights with the given totals, epsilon in [0.15, 0.5]."""
    M = rng.random((n, m))
    a = rng.uniform(0.2, 1.0, n)
    b = rng.uniform(0.2, 1.0, m)
    return M, mass_a * a / a.sum(), mass_b * b / b.sum(), float(rng.uniform(0.15, 0.5))


def ref(M, a, b, eps, k, **kw) -> SinkhornReference:
    return sinkhorn_reference(
        T(M), None if a is None else T(a), None if b is None else T(b), epsilon=eps, n_iter=k, **kw
    )


def pot_balanced(a, b, M, eps, k, **kw):
    return ot.sinkhorn(a, b, M, eps, method="sinkhorn_log", numItermax=k, stopThr=0, warn=False, **kw)


def pot_unbalanced(a, b, M, eps, reg_m, k, **kw):
    return ot.unbalanced.sinkhorn_unbalanced(
        a, b, M, eps, reg_m, reg_type="kl", numItermax=k, stopThr=0, **kw
    )


def pot_partial(a, b, M, eps, mass, k, method="sinkhorn"):
    return ot.partial.entropic_partial_wasserstein(a, b, M, eps, mass, method=method, numItermax=k, stopThr=0)


def close(actual, expected, **tol):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), **(tol or TIGHT))


def centred(f, g):
    """Balanced potentials are defined up to (f + c, g - c): fix c by mean(f) = 0."""
    f, g = np.asarray(f), np.asarray(g)
    s = f.mean()
    return f - s, g + s


def drop_zeros(M, a, b):
    ia, ib = a > 0, b > 0
    return M[np.ix_(ia, ib)], a[ia], b[ib], np.ix_(ia, ib)


# ----------------------------------------------------------------------------------------------------------
# balanced vs POT sinkhorn_log


@pytest.mark.parametrize(("n", "m"), SHAPES)
@pytest.mark.parametrize("k", FIXED_K)
def test_balanced_fixed_iterations_match_pot(rng, n, m, k):
    M, a, b, eps = problem(rng, n, m)
    r = ref(M, a, b, eps, k)
    P, log = pot_balanced(a, b, M, eps, k, log=True)
    close(r.plan, P)
    close(r.value, ot.sinkhorn2(a, b, M, eps, method="sinkhorn_log", numItermax=k, stopThr=0))
    # POT's log-scalings u = log a + f/eps, v = log b + g/eps: same iterates, no centring needed
    close(r.f, eps * (log["log_u"] - np.log(a)), rtol=1e-10, atol=1e-13)
    close(r.g, eps * (log["log_v"] - np.log(b)), rtol=1e-10, atol=1e-13)
    # after a (g, then f) iteration the row marginals are exact; the error is the column L1 error
    close(r.plan.sum(-1), a, rtol=1e-12)
    close(r.marginal_error, np.abs(P.sum(0) - b).sum(), rtol=1e-8, atol=1e-15)
    # POT's scaling-domain solver runs the same iterates (its start u = 1/n differs by a constant)
    close(r.plan, ot.sinkhorn(a, b, M, eps, method="sinkhorn", numItermax=k, stopThr=0, warn=False))


@pytest.mark.parametrize(("n", "m"), [(6, 9), (11, 7), (1, 5)])
def test_balanced_converged_matches_pot(rng, n, m):
    M, a, b, eps = problem(rng, n, m)
    r = ref(M, a, b, eps, CONVERGED_K)
    P, log = pot_balanced(a, b, M, eps, CONVERGED_K, log=True)
    assert float(r.marginal_error) < 1e-12
    close(r.plan, P, rtol=1e-9, atol=1e-14)
    close(r.value, ot.sinkhorn2(a, b, M, eps, method="sinkhorn_log"), rtol=1e-9)
    f_pot, g_pot = eps * (log["log_u"] - np.log(a)), eps * (log["log_v"] - np.log(b))
    for ours, theirs in zip(centred(r.f, r.g), centred(f_pot, g_pot), strict=True):
        close(ours, theirs, rtol=1e-9, atol=1e-12)


def test_balanced_default_weights_are_uniform(rng):
    M, _, _, eps = problem(rng, 6, 9)
    r = ref(M, None, None, eps, 4)
    close(r.plan, pot_balanced(np.array([]), np.array([]), M, eps, 4))
    close(r.plan, ref(M, np.full(6, 1 / 6), np.full(9, 1 / 9), eps, 4).plan, rtol=1e-14, atol=0)


def test_balanced_warm_start_matches_pot(rng):
    M, a, b, eps = problem(rng, 6, 8)
    f0, g0 = rng.normal(size=6) * 0.2, rng.normal(size=8) * 0.2
    u0, v0 = np.log(a) + f0 / eps, np.log(b) + g0 / eps
    for k in (1, 4):
        r = ref(M, a, b, eps, k, f0=T(f0), g0=T(g0))
        close(r.plan, pot_balanced(a, b, M, eps, k, warmstart=(u0, v0)))
    # g is updated first: g0 is never read
    close(ref(M, a, b, eps, 2, f0=T(f0)).plan, ref(M, a, b, eps, 2, f0=T(f0), g0=T(g0)).plan, rtol=0, atol=0)


def test_balanced_forbidden_pairs_match_pot(rng):
    M, a, b, eps = problem(rng, 6, 7)
    M[0, 1] = M[3, 2] = M[3, 5] = M[5, 0] = np.inf
    for k in (1, 5, 300):
        r = ref(M, a, b, eps, k)
        P = pot_balanced(a, b, M, eps, k)
        close(r.plan, P)
        assert (r.plan.numpy()[np.isinf(M)] == 0).all()
        # POT's sinkhorn2 is sum(M * P) = 0 * inf = NaN there; ours skips forbidden pairs
        finite = np.where(np.isinf(M), 0.0, M)
        close(r.value, (P * finite).sum())
    with np.errstate(invalid="ignore"):
        assert np.isnan(ot.sinkhorn2(a, b, M, eps, method="sinkhorn_log", numItermax=3, stopThr=0))


# ----------------------------------------------------------------------------------------------------------
# unbalanced KL vs POT sinkhorn_unbalanced(reg_type="kl")

REG_MS = [0.7, (0.3, 2.5), math.inf, (math.inf, 0.5)]


@pytest.mark.parametrize(("n", "m"), SHAPES)
@pytest.mark.parametrize("k", FIXED_K)
@pytest.mark.parametrize("reg_m", REG_MS, ids=["scalar", "pair", "inf", "inf-pair"])
def test_unbalanced_fixed_iterations_match_pot(rng, n, m, k, reg_m):
    M, a, b, eps = problem(rng, n, m, mass_a=1.0, mass_b=1.6)
    r = ref(M, a, b, eps, k, reg_m=reg_m)
    P, log = pot_unbalanced(a, b, M, eps, reg_m, k, log=True)
    close(r.plan, P)
    close(r.value, log["cost"])
    close(r.value, ot.unbalanced.sinkhorn_unbalanced2(a, b, M, eps, reg_m, numItermax=k, stopThr=0))
    close(r.f, eps * log["logu"], rtol=1e-10, atol=1e-13)  # POT: u = exp(f / eps), v = exp(g / eps)
    close(r.g, eps * log["logv"], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("reg_m", [0.5, (0.2, 3.0)], ids=["scalar", "pair"])
def test_unbalanced_converged_matches_pot(rng, reg_m):
    M, a, b, eps = problem(rng, 7, 10, mass_a=1.0, mass_b=2.0)
    r = ref(M, a, b, eps, CONVERGED_K, reg_m=reg_m)
    P, log = pot_unbalanced(a, b, M, eps, reg_m, CONVERGED_K, log=True)
    assert float(r.marginal_error) < 1e-12
    close(r.plan, P, rtol=1e-9, atol=1e-14)
    close(r.value, log["cost"], rtol=1e-9)
    close(r.f, eps * log["logu"], rtol=1e-9, atol=1e-12)  # unique potentials: no centring
    close(r.g, eps * log["logv"], rtol=1e-9, atol=1e-12)
    # first-order optimality, f = -reg_m_a log(P1 / a), which marginal_error measures
    ra, rb = (reg_m, reg_m) if np.isscalar(reg_m) else reg_m
    close(r.f, -ra * np.log(P.sum(1) / a), rtol=1e-9, atol=1e-12)
    close(r.g, -rb * np.log(P.sum(0) / b), rtol=1e-9, atol=1e-12)


def test_unbalanced_warm_start_matches_pot(rng):
    M, a, b, eps = problem(rng, 5, 8, mass_b=1.4)
    f0, g0 = rng.normal(size=5) * 0.2, rng.normal(size=8) * 0.2
    for k in (1, 4):
        r = ref(M, a, b, eps, k, reg_m=0.8, f0=T(f0), g0=T(g0))
        close(r.plan, pot_unbalanced(a, b, M, eps, 0.8, k, warmstart=(f0 / eps, g0 / eps)))


def test_unbalanced_forbidden_pairs_match_pot(rng):
    M, a, b, eps = problem(rng, 6, 5, mass_b=0.7)
    M[1, 1] = M[2, 4] = M[0, :3] = np.inf
    for k in (1, 6):
        close(ref(M, a, b, eps, k, reg_m=1.3).plan, pot_unbalanced(a, b, M, eps, 1.3, k))


# ----------------------------------------------------------------------------------------------------------
# partial vs POT entropic_partial_wasserstein (both of its solvers)


@pytest.mark.parametrize(("n", "m"), SHAPES)
@pytest.mark.parametrize("k", FIXED_K)
@pytest.mark.parametrize("frac", [0.35, 1.0])
def test_partial_fixed_iterations_match_pot(rng, n, m, k, frac):
    M, a, b, eps = problem(rng, n, m, mass_a=1.0, mass_b=1.3)
    mass = frac * min(a.sum(), b.sum())
    r = ref(M, a, b, eps, k, mass=mass)
    for method in ("sinkhorn", "sinkhorn_log"):
        P, log = ot.partial.entropic_partial_wasserstein(
            a, b, M, eps, mass, method=method, numItermax=k, stopThr=0, log=True
        )
        close(r.plan, P)
        close(r.value, log["partial_w_dist"])
    # the last step of an iteration is the total-mass projection
    close(r.plan.sum((-2, -1)), mass, rtol=1e-13)
    assert r.mass_potential is not None and r.mass_potential.shape == ()


@pytest.mark.parametrize("frac", [0.3, 0.8, 1.0])
def test_partial_converged_matches_pot(rng, frac):
    M, a, b, eps = problem(rng, 8, 6, mass_a=1.2, mass_b=1.0)
    mass = frac * min(a.sum(), b.sum())
    r = ref(M, a, b, eps, CONVERGED_K, mass=mass)
    assert float(r.marginal_error) < 1e-12
    P = pot_partial(a, b, M, eps, mass, CONVERGED_K, method="sinkhorn_log")
    close(r.plan, P, rtol=1e-9, atol=1e-14)
    plan = r.plan.numpy()
    assert (plan.sum(1) <= a * (1 + 1e-12)).all() and (plan.sum(0) <= b * (1 + 1e-12)).all()


def test_partial_start_is_pots(rng):
    """n_iter = 0 gives POT's initial plan exp(-M/reg) * m / sum(exp(-M/reg))."""
    M, a, b, eps = problem(rng, 4, 6)
    K = np.exp(-M / eps)
    close(ref(M, a, b, eps, 0, mass=0.4).plan, K * 0.4 / K.sum(), rtol=1e-13)


def test_partial_forbidden_pairs_as_huge_costs(rng):
    """POT's partial solvers break on +inf (NaN / early stop); a huge finite cost is the same problem."""
    M, a, b, eps = problem(rng, 6, 7, mass_b=1.2)
    M[0, 1] = M[3, 2] = M[3, 5] = np.inf
    big = np.where(np.isinf(M), 1e4, M)
    for k in (1, 4, 200):
        close(ref(M, a, b, eps, k, mass=0.6).plan, pot_partial(a, b, big, eps, 0.6, k, method="sinkhorn_log"))


# ----------------------------------------------------------------------------------------------------------
# zero weights: the point is absent (POT: compare on the problem without it)


@pytest.mark.parametrize("k", [1, 3, CONVERGED_K])
def test_zero_weights_are_absent_points(rng, k):
    M, a, b, eps = problem(rng, 7, 8)
    a[[2, 6]] = 0.0
    b[0] = 0.0
    a, b = a / a.sum(), b / b.sum()
    Mr, ar, br, idx = drop_zeros(M, a, b)

    r = ref(M, a, b, eps, k)
    close(r.plan.numpy()[idx], pot_balanced(ar, br, Mr, eps, k))
    assert (r.plan.numpy()[a == 0] == 0).all() and (r.plan.numpy()[:, b == 0] == 0).all()
    assert torch.isfinite(r.f).all() and torch.isfinite(r.g).all()
    reduced = ref(Mr, ar, br, eps, k)
    close(r.f.numpy()[a > 0], reduced.f, rtol=1e-12, atol=1e-15)
    close(r.value, reduced.value, rtol=1e-12)

    r = ref(M, a, 1.5 * b, eps, k, reg_m=(0.6, 1.1))
    close(r.plan.numpy()[idx], pot_unbalanced(ar, 1.5 * br, Mr, eps, (0.6, 1.1), k))

    r = ref(M, a, 1.2 * b, eps, k, mass=0.7)
    close(r.plan.numpy()[idx], pot_partial(ar, 1.2 * br, Mr, eps, 0.7, k))


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_zero_weights_first_iteration_differs_in_pot(rng):
    """Documented POT quirk: its start u = 0 lets zero-weight points into the first half-step."""
    M, a, b, eps = problem(rng, 5, 6)
    a[1] = 0.0
    a /= a.sum()
    Mr, ar, br, idx = drop_zeros(M, a, b)
    full, reduced = pot_balanced(a, b, M, eps, 1), pot_balanced(ar, br, Mr, eps, 1)
    assert np.abs(full[idx] - reduced).max() > 1e-6
    close(ref(M, a, b, eps, 1).plan.numpy()[idx], reduced)


# ----------------------------------------------------------------------------------------------------------
# batching


VARIANTS = [{}, {"reg_m": 0.9}, {"reg_m": (0.4, 2.0)}, {"mass": 0.5}]
VARIANT_IDS = ["balanced", "unbalanced", "unbalanced-pair", "partial"]


@pytest.mark.parametrize("kw", VARIANTS, ids=VARIANT_IDS)
def test_batched_equals_loop(rng, kw):
    B, n, m = 3, 5, 4
    M = rng.random((B, n, m))
    a = rng.uniform(0.2, 1.0, (B, n))
    b = rng.uniform(0.2, 1.0, (B, m))
    a, b = a / a.sum(-1, keepdims=True), b / b.sum(-1, keepdims=True)
    a[1, 3] = 0.0  # a zero weight in one problem only
    a[1] /= a[1].sum()
    eps = rng.uniform(0.2, 0.5, B)
    r = sinkhorn_reference(T(M), T(a), T(b), epsilon=T(eps), n_iter=7, **kw)
    assert r.plan.shape == (B, n, m) and r.f.shape == (B, n) and r.g.shape == (B, m)
    assert r.value.shape == (B,) and r.marginal_error.shape == (B,)
    for i in range(B):
        ri = ref(M[i], a[i], b[i], float(eps[i]), 7, **kw)
        for got, want in zip(r, ri, strict=True):
            if want is None:
                assert got is None
            else:
                torch.testing.assert_close(got[i], want, rtol=1e-13, atol=1e-16)


def test_batch_broadcasting(rng):
    """Weights shared by all problems, a mass per (B1, 1) and a reg_m per problem broadcast like the loop."""
    M = rng.random((2, 3, 4, 5))
    a, b = np.full(4, 0.25), rng.uniform(0.2, 1, 5)
    b /= b.sum()
    mass = T(rng.uniform(0.3, 0.9, (2, 1)))
    r = sinkhorn_reference(T(M), T(a), T(b), epsilon=0.3, n_iter=4, mass=mass)
    assert r.plan.shape == (2, 3, 4, 5) and r.mass_potential.shape == (2, 3)
    for i, j in np.ndindex(2, 3):
        want = ref(M[i, j], a, b, 0.3, 4, mass=float(mass[i, 0]))
        torch.testing.assert_close(r.plan[i, j], want.plan, rtol=1e-13, atol=1e-16)
    # a batched reg_m tensor
    rm = T([0.5, 2.0, math.inf])
    r = sinkhorn_reference(T(M[0]), T(a), T(b), epsilon=0.3, n_iter=4, reg_m=rm)
    for j in range(3):
        want = ref(M[0, j], a, b, 0.3, 4, reg_m=float(rm[j]))
        torch.testing.assert_close(r.plan[j], want.plan, rtol=1e-13, atol=1e-16)


# ----------------------------------------------------------------------------------------------------------
# properties


@pytest.mark.parametrize("kw", VARIANTS, ids=VARIANT_IDS)
def test_symmetry_swap_sides(rng, kw):
    """first="f" on (C, a, b) runs the iterates of first="g" on (C^T, b, a): the plans are transposes."""
    M, a, b, eps = problem(rng, 6, 9, mass_b=1.0 if not kw else 1.4)
    kw_t = dict(kw)
    if isinstance(kw.get("reg_m"), tuple):
        kw_t["reg_m"] = kw["reg_m"][::-1]
    for k in (1, 5):
        r = ref(M, a, b, eps, k, first="f", **kw)
        rt = ref(M.T, b, a, eps, k, first="g", **kw_t)
        torch.testing.assert_close(r.plan, rt.plan.mT, rtol=1e-12, atol=1e-16)
        torch.testing.assert_close(r.value, rt.value, rtol=1e-12, atol=0)
        if "mass" not in kw:  # partial keeps the mass potential in f
            torch.testing.assert_close(r.f, rt.g, rtol=1e-12, atol=1e-15)
            torch.testing.assert_close(r.g, rt.f, rtol=1e-12, atol=1e-15)
    # at convergence the default orders agree too
    r, rt = ref(M, a, b, eps, CONVERGED_K, **kw), ref(M.T, b, a, eps, CONVERGED_K, **kw_t)
    torch.testing.assert_close(r.plan, rt.plan.mT, rtol=1e-9, atol=1e-14)


def test_small_epsilon_approaches_exact_assignment(rng):
    n = 5
    M = rng.random((n, n))
    rows, cols = linear_sum_assignment(M)
    exact = np.zeros((n, n))
    exact[rows, cols] = 1.0 / n
    errs, start = [], {}
    for eps in (0.05, 0.01, 0.002):  # epsilon scaling by warm start
        r = ref(M, None, None, eps, 2000, **start)
        start = {"f0": r.f, "g0": r.g}
        assert float(r.marginal_error) < 1e-5  # slow at small epsilon; close enough for this property
        errs.append(np.abs(r.plan.numpy() - exact).sum())
    assert errs[0] > errs[1] > errs[2]
    np.testing.assert_allclose(r.plan.numpy(), exact, atol=1e-3)
    np.testing.assert_allclose(float(r.value), M[rows, cols].mean(), rtol=1e-3)


@pytest.mark.parametrize("kw", VARIANTS, ids=VARIANT_IDS)
def test_warm_start_from_converged_stays_put(rng, kw):
    M, a, b, eps = problem(rng, 7, 6, mass_b=1.0 if not kw else 1.3)
    r = ref(M, a, b, eps, CONVERGED_K, **kw)
    assert float(r.marginal_error) < 1e-12
    r2 = ref(M, a, b, eps, 3, f0=r.f, g0=r.g, **kw)
    torch.testing.assert_close(r2.plan, r.plan, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(r2.f, r.f, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(r2.g, r.g, rtol=1e-12, atol=1e-13)
    assert float(r2.marginal_error) < 1e-12


def test_reg_m_to_infinity_approaches_balanced(rng):
    M, a, b, eps = problem(rng, 6, 8)
    bal = ref(M, a, b, eps, CONVERGED_K)
    dists = [
        np.abs((ref(M, a, b, eps, CONVERGED_K, reg_m=rm).plan - bal.plan).numpy()).sum()
        for rm in (1, 1e2, 1e4)
    ]
    assert dists[0] > dists[1] > dists[2]
    assert dists[2] < 1e-3
    # reg_m = inf is exactly balanced Sinkhorn (same order, same start)
    start = {"f0": bal.f * 0 + 0.1, "g0": bal.g * 0 - 0.2}
    for first in ("f", "g"):
        got = ref(M, a, b, eps, 4, reg_m=math.inf, first=first, **start)
        want = ref(M, a, b, eps, 4, first=first, **start)
        torch.testing.assert_close(got.plan, want.plan, rtol=1e-14, atol=0)
        torch.testing.assert_close(got.marginal_error, want.marginal_error, rtol=1e-12, atol=1e-16)


def test_marginal_errors_shrink_to_zero(rng):
    M, a, b, eps = problem(rng, 6, 7, mass_b=1.25)
    b_bal = b / 1.25
    for kw, bb in (({}, b_bal), ({"reg_m": 0.8}, b), ({"mass": 0.7}, b)):
        errs = [float(ref(M, a, bb, eps, k, **kw).marginal_error) for k in (1, 3, 10, CONVERGED_K)]
        assert errs[0] > errs[1] > errs[2] > errs[3], (kw, errs)
        assert errs[3] < 1e-12, (kw, errs)


def test_outputs_float64_and_consistent(rng):
    M, a, b, eps = problem(rng, 4, 6)
    r = sinkhorn_reference(T(M).float(), T(a).float(), T(b).float(), epsilon=eps, n_iter=5)
    for t in (r.f, r.g, r.plan, r.value, r.marginal_error):
        assert t.dtype == torch.float64 and t.device.type == "cpu"
    assert r.mass_potential is None
    # plan = a_i b_j exp((f_i + g_j - C_ij) / eps), value = <P, C>, from numpy inputs too
    r = ref(M, a, b, eps, 5)
    expected = a[:, None] * b[None, :] * np.exp((r.f.numpy()[:, None] + r.g.numpy()[None, :] - M) / eps)
    close(r.plan, expected, rtol=1e-13, atol=0)
    close(r.value, (expected * M).sum(), rtol=1e-13)
    close(sinkhorn_reference(M, a, b, epsilon=eps, n_iter=5).plan, r.plan, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------------
# validation

C0 = np.random.default_rng(0).random((3, 4))
A0, B0 = np.full(3, 1 / 3), np.full(4, 1 / 4)


def _with(C=C0, a=A0, b=B0, **kw):
    kw.setdefault("epsilon", 0.1)
    kw.setdefault("n_iter", 3)
    return lambda: sinkhorn_reference(C, a, b, **kw)


BAD = [
    (ValueError, "C must have shape", _with(C=np.ones(3))),
    (ValueError, "C must have n >= 1", _with(C=np.ones((0, 4)), a=np.ones(0))),
    (ValueError, "C must not contain NaN", _with(C=np.where(C0 > 0.5, np.nan, C0))),
    (ValueError, "C must not contain -inf", _with(C=np.where(C0 > 0.5, -np.inf, C0))),
    (TypeError, "C must have a real dtype", _with(C=C0 + 0j)),
    (TypeError, "C must be a real number or tensor", _with(C="cost")),
    (ValueError, "a must have shape", _with(a=np.full(4, 0.25))),
    (ValueError, "b must have shape", _with(b=np.full(3, 1 / 3))),
    (ValueError, "a must be nonnegative", _with(a=np.array([0.5, 0.6, -0.1]))),
    (ValueError, "b must be finite", _with(b=np.array([0.5, np.nan, 0.25, 0.25]))),
    (ValueError, "a must have a positive total mass", _with(a=np.zeros(3))),
    (ValueError, "a has batch shape", _with(C=np.ones((2, 3, 4)), a=np.ones((3, 3)))),
    (ValueError, "epsilon must be positive", _with(epsilon=0.0)),
    (ValueError, "epsilon must be positive", _with(epsilon=-1.0)),
    (ValueError, "epsilon must not be NaN", _with(epsilon=math.nan)),
    (ValueError, "epsilon must be finite", _with(epsilon=math.inf)),
    (TypeError, "epsilon is required", _with(epsilon=None)),
    (TypeError, "epsilon must be a real number", _with(epsilon=True)),
    (TypeError, "n_iter must be an int", _with(n_iter=3.0)),
    (ValueError, "n_iter must be >= 0", _with(n_iter=-1)),
    (ValueError, "reg_m must be positive", _with(reg_m=0.0)),
    (ValueError, "reg_m must be positive", _with(reg_m=(1.0, -2.0))),
    (ValueError, "reg_m must be a scalar or a pair", _with(reg_m=(1.0, 2.0, 3.0))),
    (ValueError, "cannot both be given", _with(reg_m=1.0, mass=0.5)),
    (ValueError, "mass must be <= min", _with(mass=1.5)),
    (ValueError, "mass must be positive", _with(mass=0.0)),
    (ValueError, "f0 must have shape", _with(f0=np.zeros(4))),
    (ValueError, "g0 must not contain NaN", _with(g0=np.array([0.0, np.nan, 0.0, 0.0]))),
    (ValueError, "first must be", _with(first="rows")),
    (ValueError, "C is infeasible", _with(C=np.where(np.arange(3)[:, None] == 0, np.inf, C0))),
]


@pytest.mark.parametrize(("exc", "match", "call"), BAD, ids=[m for _, m, _ in BAD])
def test_bad_input_raises(exc, match, call):
    with pytest.raises(exc, match=match):
        call()


def test_unbalanced_and_partial_allow_a_forbidden_row(rng):
    M, a, b, eps = problem(rng, 4, 5)
    M[2] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for kw in ({"reg_m": 0.5}, {"mass": 0.4}):
            r = ref(M, a, b, eps, 20, **kw)
            assert not torch.isnan(r.plan).any() and (r.plan[2] == 0).all()
            assert torch.isfinite(r.value)
