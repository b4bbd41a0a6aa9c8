"""fastot.sinkhorn against POT in float64 (fixed iterations and at convergence), dense vs online,
batched vs per-problem, gradients (envelope theorem) against finite differences of the converged value,
and bad input."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
from scipy.optimize import linear_sum_assignment as scipy_lsa

import fastot


def simplex(rng, n: int, zeros: int = 0) -> np.ndarray:
    w = rng.uniform(0.1, 1.0, n)
    if zeros:
        w[rng.choice(n, zeros, replace=False)] = 0.0
    return w / w.sum()


def T(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


@pytest.mark.parametrize(("n", "m"), [(1, 1), (1, 5), (7, 11), (13, 5), (31, 31)])
@pytest.mark.parametrize("eps", [1.0, 0.05])
def test_balanced_matches_pot_at_convergence(rng, n, m, eps):
    M = rng.uniform(0.0, 2.0, (n, m))
    a, b = simplex(rng, n), simplex(rng, m)
    P_pot = ot.sinkhorn(a, b, M, eps, method="sinkhorn_log", numItermax=20000, stopThr=1e-13)
    value_pot = float((P_pot * M).sum())
    out = fastot.sinkhorn(cost=T(M), a=T(a), b=T(b), epsilon=eps, tol=1e-12, max_iter=20000)
    assert bool(out.converged)
    np.testing.assert_allclose(out.plan().numpy(), P_pot, atol=1e-10)
    np.testing.assert_allclose(float(out.value), value_pot, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out.plan().sum(1).numpy(), a, atol=1e-11)
    np.testing.assert_allclose(out.plan().sum(0).numpy(), b, atol=1e-11)


@pytest.mark.parametrize("reg_m", [10.0, 1.0, 0.1, (0.5, 2.0)])
def test_unbalanced_matches_pot_kl(rng, reg_m):
    n, m = 9, 14
    M = rng.uniform(0.0, 1.0, (n, m))
    a, b = simplex(rng, n), 2.0 * simplex(rng, m)  # unequal masses
    P_pot = ot.unbalanced.sinkhorn_unbalanced(
        a, b, M, 0.1, reg_m, reg_type="kl", numItermax=20000, stopThr=1e-14
    )
    out = fastot.sinkhorn(cost=T(M), a=T(a), b=T(b), epsilon=0.1, reg_m=reg_m, tol=1e-13, max_iter=20000)
    assert bool(out.converged)
    np.testing.assert_allclose(out.plan().numpy(), P_pot, atol=1e-10)


def test_unbalanced_infinite_reg_m_is_balanced(rng):
    M = rng.uniform(0.0, 1.0, (6, 8))
    a, b = T(simplex(rng, 6)), T(simplex(rng, 8))
    bal = fastot.sinkhorn(cost=T(M), a=a, b=b, epsilon=0.2, tol=1e-12, max_iter=5000)
    unb = fastot.sinkhorn(cost=T(M), a=a, b=b, epsilon=0.2, reg_m=math.inf, tol=1e-12, max_iter=5000)
    torch.testing.assert_close(unb.plan(), bal.plan())


@pytest.mark.parametrize("k", [1, 3, 10])
def test_fixed_iterations_match_pot(rng, k):
    """tol=None runs exactly max_iter iterations; POT's log-domain Sinkhorn with stopThr=0 and numItermax=k
    gives the same plan: both update the column side first, and from the same start when a is uniform
    (POT starts from the kernel exp(-M/reg), fastot from a ⊗ b exp(-C/eps): equal up to a constant then)."""
    n, m = 8, 6
    M = rng.uniform(0.0, 1.0, (n, m))
    a, b = np.full(n, 1 / n), simplex(rng, m)
    out = fastot.sinkhorn(cost=T(M), a=T(a), b=T(b), epsilon=0.3, tol=None, max_iter=k)
    assert int(out.n_iter) == k and not bool(out.converged)
    P_pot = ot.sinkhorn(a, b, M, 0.3, method="sinkhorn_log", numItermax=k, stopThr=0.0)
    np.testing.assert_allclose(out.plan().numpy(), P_pot, atol=1e-12)


def test_zero_weights(rng):
    n, m = 10, 12
    M = rng.uniform(0.0, 1.0, (n, m))
    a, b = simplex(rng, n, zeros=3), simplex(rng, m, zeros=2)
    out = fastot.sinkhorn(cost=T(M), a=T(a), b=T(b), epsilon=0.1, tol=1e-12, max_iter=20000)
    P = out.plan().numpy()
    assert np.isfinite(P).all()
    np.testing.assert_array_equal(P[a == 0], 0.0)
    np.testing.assert_array_equal(P[:, b == 0], 0.0)
    P_pot = ot.sinkhorn(a, b, M, 0.1, method="sinkhorn_log", numItermax=20000, stopThr=1e-13)
    np.testing.assert_allclose(P, P_pot, atol=1e-10)


def test_forbidden_pairs(rng):
    M = rng.uniform(0.0, 1.0, (6, 6))
    M[0, :3] = np.inf
    out = fastot.sinkhorn(cost=T(M), epsilon=0.1, tol=1e-12, max_iter=10000)
    P = out.plan().numpy()
    np.testing.assert_array_equal(P[0, :3], 0.0)
    assert math.isfinite(float(out.value))
    np.testing.assert_allclose(P.sum(1), 1 / 6, atol=1e-10)


def test_batched_matches_loop(rng):
    B, n, m = 3, 9, 7
    M = rng.uniform(0.0, 1.0, (B, n, m))
    a = np.stack([simplex(rng, n) for _ in range(B)])
    eps = np.array([0.5, 0.1, 0.05])
    out = fastot.sinkhorn(cost=T(M), a=T(a), epsilon=T(eps), tol=1e-11, max_iter=20000)
    assert out.f.shape == (B, n) and out.g.shape == (B, m) and out.value.shape == (B,)
    for k in range(B):
        one = fastot.sinkhorn(cost=T(M[k]), a=T(a[k]), epsilon=float(eps[k]), tol=1e-11, max_iter=20000)
        torch.testing.assert_close(out.plan()[k], one.plan(), atol=1e-10, rtol=0)
        # Each problem stops on its own: the iteration counts are the per-problem ones.
        assert int(out.n_iter[k]) == int(one.n_iter)


@pytest.mark.parametrize("d", [1, 3])
def test_online_matches_dense(rng, d):
    x = torch.from_numpy(rng.standard_normal((2, 40, d)))
    y = torch.from_numpy(rng.standard_normal((2, 53, d)) + 1.0)
    dense = fastot.sinkhorn(x, y, epsilon=0.2, mode="dense", tol=1e-11, max_iter=5000)
    online = fastot.sinkhorn(x, y, epsilon=0.2, mode="online", tol=1e-11, max_iter=5000)
    torch.testing.assert_close(online.f, dense.f)
    torch.testing.assert_close(online.g, dense.g)
    torch.testing.assert_close(online.value, dense.value)
    v = torch.from_numpy(rng.standard_normal((2, 53, 4)))
    torch.testing.assert_close(online.apply(v), dense.plan() @ v)
    torch.testing.assert_close(online.apply(v[..., 0]), (dense.plan() @ v)[..., 0])


def test_online_block_boundaries(rng):
    """The once-per-solve products go through blocks of rows (2^16 cost entries): 401 x 300 needs
    several blocks, the last one partial; they must stitch exactly."""
    x = torch.from_numpy(rng.standard_normal((401, 2)))
    y = torch.from_numpy(rng.standard_normal((300, 2)))
    dense = fastot.sinkhorn(x, y, epsilon=0.5, mode="dense", tol=None, max_iter=5)
    online = fastot.sinkhorn(x, y, epsilon=0.5, mode="online", tol=None, max_iter=5)
    torch.testing.assert_close(online.f, dense.f)
    torch.testing.assert_close(online.g, dense.g)
    torch.testing.assert_close(online.value, dense.value)
    v = torch.from_numpy(rng.standard_normal((300, 3)))
    torch.testing.assert_close(online.apply(v), dense.plan() @ v)


def test_small_epsilon_approaches_assignment(rng):
    n = 6
    M = rng.uniform(0.0, 1.0, (n, n))
    r, c = scipy_lsa(M)
    # Sinkhorn contracts slowly at small epsilon: a loose marginal tolerance, reached with scaling.
    out = fastot.sinkhorn(cost=T(M), epsilon=1e-2, epsilon_init=1.0, tol=1e-5, max_iter=50000)
    assert bool(out.converged)
    np.testing.assert_allclose(float(out.value), M[r, c].sum() / n, rtol=3e-2)
    np.testing.assert_array_equal(out.plan().numpy().argmax(1)[r], c)


def test_symmetry(rng):
    M = rng.uniform(0.0, 1.0, (7, 5))
    a, b = simplex(rng, 7), simplex(rng, 5)
    fwd = fastot.sinkhorn(cost=T(M), a=T(a), b=T(b), epsilon=0.1, tol=1e-12, max_iter=10000)
    bwd = fastot.sinkhorn(cost=T(M.T), a=T(b), b=T(a), epsilon=0.1, tol=1e-12, max_iter=10000)
    torch.testing.assert_close(fwd.plan(), bwd.plan().T, atol=1e-10, rtol=0)


def test_warm_start_from_solution_converges_at_once(rng):
    M = T(rng.uniform(0.0, 1.0, (8, 8)))
    out = fastot.sinkhorn(cost=M, epsilon=0.1, tol=1e-12, max_iter=10000)
    again = fastot.sinkhorn(cost=M, epsilon=0.1, tol=1e-10, check_every=1, f_init=out.f, g_init=out.g)
    assert int(again.n_iter) == 1 and bool(again.converged)


def test_float32_small_epsilon_large_costs(rng):
    """epsilon = 1e-3 on costs of order 1e4 in float32: no NaN/inf, and a truthful converged flag."""
    M = torch.from_numpy(rng.uniform(0.0, 1e4, (20, 20)).astype(np.float32))
    out = fastot.sinkhorn(cost=M, epsilon=1e-3, tol=1e-4, max_iter=50)
    assert out.f.dtype == torch.float32
    assert torch.isfinite(out.f).all() and torch.isfinite(out.g).all() and torch.isfinite(out.value)
    if bool(out.converged):
        # converged is truthful: the returned plan meets the tolerance (it is one iteration past the check).
        assert float((out.plan().sum(0) - 1 / 20).abs().sum()) <= 1e-4


def test_strict_raises_when_not_converged(rng):
    M = T(rng.uniform(0.0, 1.0, (10, 10)))
    with pytest.raises(RuntimeError, match="did not converge"):
        fastot.sinkhorn(cost=M, epsilon=1e-3, max_iter=2, tol=1e-12, check_every=1, strict=True)


def test_gradients_envelope(rng):
    """d value / dC = P (POT's convention) and the chain rule through points, checked against the plan."""
    M = T(rng.uniform(0.0, 1.0, (5, 6))).requires_grad_(True)
    out = fastot.sinkhorn(cost=M, epsilon=0.1, tol=1e-12, max_iter=10000)
    (grad,) = torch.autograd.grad(out.value, M)
    torch.testing.assert_close(grad, out.plan())

    x = T(rng.standard_normal((6, 2))).requires_grad_(True)
    y = T(rng.standard_normal((7, 2))).requires_grad_(True)
    for mode in ("dense", "online"):
        out = fastot.sinkhorn(x, y, epsilon=0.1, mode=mode, tol=1e-12, max_iter=10000)
        gx, gy = torch.autograd.grad(out.value, (x, y))
        P = out.plan().detach()
        torch.testing.assert_close(gx, 2 * (P.sum(1, keepdim=True) * x - P @ y).detach())
        torch.testing.assert_close(gy, 2 * (P.sum(0)[:, None] * y - P.T @ x).detach())


def test_gradient_wrt_weights_is_potential(rng):
    M = T(rng.uniform(0.0, 1.0, (5, 4)))
    a = T(simplex(rng, 5)).requires_grad_(True)
    b = T(simplex(rng, 4)).requires_grad_(True)
    out = fastot.sinkhorn(cost=M, a=a, b=b, epsilon=0.2, tol=1e-12, max_iter=10000)
    ga, gb = torch.autograd.grad(out.value, (a, b))
    torch.testing.assert_close(ga, out.f)
    torch.testing.assert_close(gb, out.g)
    with pytest.raises(ValueError, match="balanced"):
        fastot.sinkhorn(cost=M, a=a, b=b, epsilon=0.2, reg_m=1.0)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"cost": torch.ones(3, 3), "epsilon": 0.0}, ValueError, "epsilon"),
        ({"cost": torch.ones(3, 3), "epsilon": -1.0}, ValueError, "epsilon"),
        ({"cost": torch.tensor([[0.0, math.nan], [1.0, 1.0]]), "epsilon": 0.1}, ValueError, "NaN"),
        ({"cost": torch.ones(3), "epsilon": 0.1}, ValueError, "cost"),
        ({"cost": torch.ones(3, 3, dtype=torch.int64), "epsilon": 0.1}, TypeError, "cost"),
        ({"cost": torch.ones(3, 3), "a": -torch.ones(3), "epsilon": 0.1}, ValueError, "a must"),
        ({"cost": torch.ones(3, 3), "b": torch.ones(4), "epsilon": 0.1}, ValueError, "b must"),
        ({"cost": torch.ones(3, 3), "epsilon": 0.1, "mode": "fast"}, ValueError, "mode"),
        ({"cost": torch.ones(3, 3), "epsilon": 0.1, "mode": "online"}, ValueError, "online"),
        ({"cost": torch.ones(3, 3), "epsilon": 0.1, "reg_m": -1.0}, ValueError, "reg_m"),
        ({"cost": torch.ones(3, 3), "epsilon": 0.1, "max_iter": 0}, ValueError, "max_iter"),
        ({"x": torch.ones(3, 2), "y": torch.ones(4, 3), "epsilon": 0.1}, ValueError, "same d"),
        ({"x": torch.ones(3, 2), "epsilon": 0.1}, ValueError, "x and y"),
        ({"x": torch.ones(3, 2), "y": torch.ones(4, 2), "epsilon": 0.1, "cost": "l1"}, ValueError, "cost"),
        (
            {"x": torch.tensor([[math.inf, 0.0]]), "y": torch.ones(4, 2), "epsilon": 0.1},
            ValueError,
            "non-finite",
        ),
    ],
)
def test_bad_input(kwargs, err, match):
    with pytest.raises(err, match=match):
        fastot.sinkhorn(**kwargs)


def test_fixed_iterations_compile(rng):
    """tol=None: no host synchronisation, so the solve traces into one graph (dynamic batch)."""

    def loss(x, y):
        return fastot.sinkhorn(x, y, epsilon=0.5, tol=None, max_iter=5, mode="dense").value.sum()

    compiled = torch.compile(loss, fullgraph=True, dynamic=True)
    for B in (2, 3):
        x = torch.from_numpy(rng.standard_normal((B, 6, 2)))
        y = torch.from_numpy(rng.standard_normal((B, 5, 2)))
        torch.testing.assert_close(compiled(x, y), loss(x, y))


@pytest.mark.parametrize("mass", [0.2, 0.6])
def test_partial_matches_pot(rng, mass):
    n, m = 9, 12
    M = rng.uniform(0.0, 1.0, (n, m))
    a, b = simplex(rng, n), 0.9 * simplex(rng, m)
    P_pot = ot.partial.entropic_partial_wasserstein(a, b, M, 0.1, m=mass, numItermax=20000, stopThr=1e-15)
    out = fastot.sinkhorn(cost=T(M), a=T(a), b=T(b), epsilon=0.1, mass=mass, tol=1e-13, max_iter=20000)
    assert bool(out.converged)
    P = out.plan().numpy()
    np.testing.assert_allclose(P, P_pot, atol=1e-10)
    np.testing.assert_allclose(P.sum(), mass, rtol=1e-12)
    assert (P.sum(1) <= a + 1e-12).all() and (P.sum(0) <= b + 1e-12).all()


@pytest.mark.parametrize(
    "variant",
    [{}, {"reg_m": 0.5}, {"reg_m": (0.3, 2.0)}, {"mass": 0.4}],
    ids=["balanced", "kl", "kl-pair", "partial"],
)
@pytest.mark.parametrize("k", [1, 4, 15])
def test_fixed_iterations_match_reference(rng, variant, k):
    """Iterate for iterate against fastot._ref (float64): same order (g first) and start (zeros)."""
    from fastot._ref.sinkhorn import sinkhorn_reference

    B, n, m = 2, 7, 10
    M = T(rng.uniform(0.0, 1.0, (B, n, m)))
    a = T(np.stack([simplex(rng, n, zeros=1) for _ in range(B)]))
    b = T(np.stack([simplex(rng, m) for _ in range(B)]))
    eps = 0.15
    ref = sinkhorn_reference(
        M,
        a,
        b,
        epsilon=eps,
        n_iter=k,
        first="g",
        f0=torch.zeros(B, n, dtype=torch.float64),
        g0=torch.zeros(B, m, dtype=torch.float64),
        **variant,
    )
    out = fastot.sinkhorn(cost=M, a=a, b=b, epsilon=eps, tol=None, max_iter=k, **variant)
    torch.testing.assert_close(out.plan(), ref.plan, atol=1e-13, rtol=1e-11)
    torch.testing.assert_close(out.value, ref.value, atol=1e-13, rtol=1e-11)


def test_partial_online_matches_dense(rng):
    x = T(rng.standard_normal((30, 2)))
    y = T(rng.standard_normal((40, 2)) + 0.5)
    dense = fastot.sinkhorn(x, y, epsilon=0.3, mass=0.5, mode="dense", tol=1e-11, max_iter=5000)
    online = fastot.sinkhorn(x, y, epsilon=0.3, mass=0.5, mode="online", tol=1e-11, max_iter=5000)
    torch.testing.assert_close(online.value, dense.value)
    torch.testing.assert_close(online.f, dense.f)


def test_partial_bad_mass():
    C = torch.ones(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="mass"):
        fastot.sinkhorn(cost=C, epsilon=0.1, mass=1.5)
    with pytest.raises(ValueError, match="mass"):
        fastot.sinkhorn(cost=C, epsilon=0.1, mass=0.0)
    with pytest.raises(ValueError, match="not both"):
        fastot.sinkhorn(cost=C, epsilon=0.1, mass=0.5, reg_m=1.0)


def test_online_fixed_iterations_compile(rng):
    """The online reductions are custom ops with fake kernels: the whole solve traces into one graph."""

    def loss(x, y):
        out = fastot.sinkhorn(x, y, epsilon=0.5, tol=None, max_iter=4, mode="online")
        return out.value.sum(), out.f

    compiled = torch.compile(loss, fullgraph=True, dynamic=True)
    for n in (6, 9):
        x = torch.from_numpy(rng.standard_normal((2, n, 3)))
        y = torch.from_numpy(rng.standard_normal((2, 5, 3)))
        got, want = compiled(x, y), loss(x, y)
        torch.testing.assert_close(got[0], want[0])
        torch.testing.assert_close(got[1], want[1])


@pytest.mark.parametrize("mode", ["dense", "online"])
def test_converging_solve_compiles_as_one_graph(rng, mode):
    """With a tol (convergence flags read on the host), the whole solve is one op: fullgraph, dynamic
    batch, compiled once, the same results as eager."""

    def run(x, y):
        out = fastot.sinkhorn(x, y, epsilon=0.3, tol=1e-9, max_iter=3000, check_every=5, mode=mode)
        return out.value, out.f, out.n_iter, out.converged

    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()
    compiled = torch.compile(run, fullgraph=True, dynamic=True, backend=counter)
    for B in (2, 3):
        x = T(rng.standard_normal((B, 7, 4)))
        y = T(rng.standard_normal((B, 6, 4)))
        got, want = compiled(x, y), run(x, y)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w)
        assert bool(got[3].all())
    assert counter.frame_count == 1


@pytest.mark.parametrize("reg_m", [None, 2.0])
def test_reported_error_is_that_of_the_returned_plan(rng, reg_m):
    """Balanced: ``error`` is the L1 column-marginal error of the plan returned (rows exact)."""
    n, m = 12, 9
    M = rng.uniform(0.0, 1.0, (2, n, m))
    a, b = simplex(rng, n), simplex(rng, m)
    out = fastot.sinkhorn(
        cost=T(M), a=T(a), b=T(b), epsilon=0.05, reg_m=reg_m, tol=1e-5, max_iter=10000, check_every=7
    )
    assert bool(out.converged.all())
    assert (out.n_iter % 7 == 0).all()
    if reg_m is None:
        P = out.plan()
        torch.testing.assert_close(P.sum(-1), T(a).expand(2, n), atol=1e-13, rtol=0)
        torch.testing.assert_close(out.error, (P.sum(-2) - T(b)).abs().sum(-1), atol=1e-13, rtol=0)
        assert (out.error <= 1e-5).all()
    else:
        # Unbalanced: the change of the potentials over the last iteration, divided by epsilon.
        # One more iteration from the returned potentials changes them by less (a contraction).
        more = fastot.sinkhorn(cost=T(M), a=T(a), b=T(b), epsilon=0.05, reg_m=reg_m, tol=None, max_iter=1,
                               f_init=out.f, g_init=out.g)  # fmt: skip
        assert float(((more.f - out.f).abs().amax(-1) / 0.05).max()) <= 1e-5 * 1.5


def test_epsilon_scaling_stops_only_at_final_epsilon(rng):
    M = rng.uniform(0.0, 1.0, (10, 8))
    out = fastot.sinkhorn(cost=T(M), epsilon=0.01, epsilon_init=1.0, epsilon_decay=0.5, tol=1e-6,
                          max_iter=5000, check_every=1)  # fmt: skip
    ref = fastot.sinkhorn(cost=T(M), epsilon=0.01, tol=1e-12, max_iter=50000)
    assert bool(out.converged) and int(out.n_iter) > 7  # 1 * 0.5^7 > 0.01: at least 8 iterations
    torch.testing.assert_close(out.plan(), ref.plan(), atol=1e-5, rtol=0)


def test_gradcheck_regularized_objective(rng):
    """float64 gradcheck: the gradients attached to ``value`` (envelope theorem, POT's sinkhorn2
    convention) are the exact derivatives of the entropic objective ``<P, C> + eps KL(P | a b^T)`` at the
    optimum, with respect to a dense cost, to points (dense and online) and to the weights."""
    eps = 0.3

    def objective(out, a, b):
        P = out.plan().detach()
        ab = a.detach()[:, None] * b.detach()[None, :]
        kl = (torch.where(P > 0, P * (P / ab).log(), 0) - P + ab).sum()
        return out.value + eps * kl  # the KL term is a constant to autograd; its value moves the objective

    def solve(**kw):
        return fastot.sinkhorn(epsilon=eps, tol=1e-14, max_iter=100000, **kw)

    a0, b0 = T(simplex(rng, 5)), T(simplex(rng, 4))
    M = T(rng.uniform(0.0, 1.0, (5, 4))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda M: objective(solve(cost=M, a=a0, b=b0), a0, b0), (M,), atol=1e-6)
    x = T(rng.standard_normal((5, 2))).requires_grad_(True)
    y = T(rng.standard_normal((4, 2))).requires_grad_(True)
    for mode in ("dense", "online"):
        fn = lambda x, y, mode=mode: objective(solve(x=x, y=y, a=a0, b=b0, mode=mode), a0, b0)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, y), atol=1e-6)
    # Weights: the objective's derivative along the simplex (directions summing to 0) is f (resp. g) up to
    # the constant that the potentials' gauge leaves free, so check directional derivatives.
    a = a0.clone().requires_grad_(True)
    out = solve(cost=M.detach(), a=a, b=b0)
    (ga,) = torch.autograd.grad(out.value, a)
    u = T(rng.standard_normal(5))
    u = u - u.mean()
    h = 1e-6
    num = (objective(solve(cost=M.detach(), a=a0 + h * u, b=b0), a0 + h * u, b0)
           - objective(solve(cost=M.detach(), a=a0 - h * u, b=b0), a0 - h * u, b0)) / (2 * h)  # fmt: skip
    torch.testing.assert_close((ga * u).sum(), num.detach(), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("partial", [False, True])
def test_composed_step_and_blocked_value_match_cpu_kernels(rng, partial):
    """The device-generic paths (two reductions per step, <P, C> by torch blocks: what CUDA runs) agree
    with the fused CPU kernels, for both geometries."""
    from fastot.geometry import DenseGeometry, Geometry, PointCloudGeometry

    B, n, m, d = 2, 37, 29, 3
    x, y = T(rng.standard_normal((B, n, d))), T(rng.standard_normal((B, m, d)))
    geoms = [DenseGeometry(fastot.cost_matrix(x, y)), PointCloudGeometry(x, y, block_entries=64)]
    hg, log_a = (
        T(rng.standard_normal((B, m))),
        T(np.log(np.stack([simplex(rng, n, zeros=3) for _ in range(B)]))),
    )
    sf, sg, coef = T(rng.random(B) + 0.5), T(rng.random(B) + 0.5), -T(rng.random(B) + 0.5)
    cap = T(rng.standard_normal((B, n)) + 1) if partial else None
    hr, hc = T(rng.standard_normal((B, n))), T(rng.standard_normal((B, m)))
    for geom in geoms:
        for got, want in zip(
            Geometry.step(geom, hg, sf, log_a, coef, sg, cap),
            geom.step(hg, sf, log_a, coef, sg, cap),
            strict=True,
        ):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(
            geom._cost_dot_blocks(hr, hc, sf), geom.cost_dot(hr, hc, sf), rtol=1e-12, atol=0
        )
