"""fastot.compat.torchcfm.OTPlanSampler: torchcfm's interface, exact and log-domain plans (float64 refs)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from lsa_checks import cost_tol
from scipy.optimize import linear_sum_assignment as scipy_lsa
from scipy.spatial.distance import cdist

from fastot.compat.torchcfm import OTPlanSampler

ot = pytest.importorskip("ot")


def sq_cost(x0, x1):
    a = x0.reshape(x0.shape[0], -1).double().cpu().numpy()
    b = x1.reshape(x1.shape[0], -1).double().cpu().numpy()
    return cdist(a, b, "sqeuclidean")


def unif(n):
    return np.full(n, 1.0 / n)


def test_constructor_matches_torchcfm_defaults():
    s = OTPlanSampler("sinkhorn")
    assert (s.method, s.reg, s.reg_m, s.normalize_cost, s.warn) == ("sinkhorn", 0.05, 1.0, False, True)
    with pytest.raises(ValueError, match="method"):
        OTPlanSampler("hungarian")
    with pytest.raises(ValueError, match="reg"):
        OTPlanSampler("sinkhorn", reg=0.0)
    with pytest.raises(ValueError, match="reg_m"):
        OTPlanSampler("unbalanced", reg_m=-1.0)


@pytest.mark.parametrize("n", [1, 9, 64])
def test_exact_sample_plan_is_optimal_permutation(torch_gen, n):
    x0 = torch.randn(n, 2, 3, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(n, 2, 3, generator=torch_gen, dtype=torch.float64) + 1
    s = OTPlanSampler("exact")
    a, b = s.sample_plan(x0, x1)
    torch.testing.assert_close(a, x0, rtol=0, atol=0)  # x0 in its order: every sample exactly once
    M = sq_cost(x0, x1)
    j = [int(np.flatnonzero((x1.reshape(n, -1) == row).all(1).numpy())[0]) for row in b.reshape(n, -1)]
    assert sorted(j) == list(range(n))
    ri, ci = scipy_lsa(M)
    np.testing.assert_allclose(M[np.arange(n), j].sum(), M[ri, ci].sum(), rtol=0, atol=cost_tol(M))
    # get_map: the permutation plan with mass 1/n, as POT's emd for distinct optimal pairs
    P = s.get_map(x0, x1)
    assert isinstance(P, np.ndarray) and P.shape == (n, n)
    np.testing.assert_allclose(P, ot.emd(unif(n), unif(n), M), atol=1e-12)
    # sample_plan_with_scipy keeps x0 and returns the same pairing
    a2, b2 = s.sample_plan_with_scipy(x0, x1)
    torch.testing.assert_close(a2, x0)
    torch.testing.assert_close(b2, b)


@pytest.mark.parametrize("method", ["sinkhorn", "unbalanced", "partial"])
def test_entropic_get_map_matches_pot(torch_gen, method):
    """reg is POT's reg on the raw squared distances (what torchcfm passes to POT)."""
    n, m = 20, 20
    x0 = torch.randn(n, 2, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(m, 2, generator=torch_gen, dtype=torch.float64)
    s = OTPlanSampler(method, reg=0.3, reg_m=2.0, tol=1e-11, max_iter=20000)
    P = s.get_map(x0, x1)
    M = sq_cost(x0, x1)
    if method == "sinkhorn":
        ref = ot.sinkhorn(unif(n), unif(m), M, 0.3, method="sinkhorn_log", stopThr=1e-13, numItermax=20000)
    elif method == "unbalanced":
        ref = ot.unbalanced.sinkhorn_knopp_unbalanced(
            unif(n), unif(m), M, 0.3, 2.0, reg_type="kl", stopThr=1e-14, numItermax=20000
        )
    else:
        ref = ot.partial.entropic_partial_wasserstein(
            unif(n), unif(m), M, 0.3, numItermax=20000, stopThr=1e-15
        )
    np.testing.assert_allclose(P, ref, rtol=0, atol=1e-9)


def test_sinkhorn_high_dimension_never_uniform(torch_gen):
    """d = 3072, reg = 0.05 (torchcfm's default underflows here and reverts to a uniform plan)."""
    n, d = 48, 3072
    x0 = torch.randn(n, d, generator=torch_gen)
    x1 = torch.randn(n, d, generator=torch_gen)
    s = OTPlanSampler("sinkhorn", max_iter=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # may not reach tol in 300 iterations: reported
        P = s.get_map(x0, x1)
    assert np.isfinite(P).all()
    np.testing.assert_allclose(P.sum(1), unif(n), rtol=2e-3)  # row marginal exact after each iteration
    # reg is tiny against costs ~ 6000: the plan is (nearly) the exact permutation, not uniform
    M = sq_cost(x0, x1)
    ri, ci = scipy_lsa(M)
    assert (P * M).sum() <= M[ri, ci].sum() / n * (1 + 1e-3)
    assert P.max() > 0.9 / n


def test_sinkhorn_not_converged_warns(torch_gen):
    x0 = torch.randn(30, 2, generator=torch_gen)
    x1 = torch.randn(30, 2, generator=torch_gen)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        OTPlanSampler("sinkhorn", reg=1e-3, max_iter=40).get_map(x0, x1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OTPlanSampler("sinkhorn", reg=1e-3, max_iter=40, warn=False).get_map(x0, x1)


def test_sample_map_numpy_and_tensor(torch_gen):
    n = 5
    P = np.random.default_rng(0).uniform(size=(n, n))
    P /= P.sum()
    s = OTPlanSampler("sinkhorn", generator=torch.Generator().manual_seed(0))
    i, j = s.sample_map(P, 40000)
    assert isinstance(i, np.ndarray) and i.dtype == np.int64
    freq = np.bincount(i * n + j, minlength=n * n).reshape(n, n) / 40000
    np.testing.assert_allclose(freq, P, atol=0.01)
    it, _ = s.sample_map(torch.from_numpy(P), n, replace=False)
    assert isinstance(it, torch.Tensor)
    assert sorted(it.tolist()) == list(range(n))
    with pytest.raises(ValueError, match="pi"):
        s.sample_map(-P, 3)


def test_sample_plan_with_labels_and_reproducible(torch_gen):
    n = 16
    x0 = torch.randn(n, 2, generator=torch_gen)
    x1 = torch.randn(n, 2, generator=torch_gen)
    y0 = torch.arange(n)
    y1 = torch.arange(n) + 100
    s = OTPlanSampler("sinkhorn", reg=0.5, generator=torch.Generator().manual_seed(7))
    a, b, ya, yb = s.sample_plan_with_labels(x0, x1, y0, y1)
    torch.testing.assert_close(a, x0[ya])
    torch.testing.assert_close(b, x1[yb - 100])
    s2 = OTPlanSampler("sinkhorn", reg=0.5, generator=torch.Generator().manual_seed(7))
    _, _, ya2, yb2 = s2.sample_plan_with_labels(x0, x1, y0, y1)
    torch.testing.assert_close(ya, ya2)
    torch.testing.assert_close(yb, yb2)
    a, b, none0, none1 = OTPlanSampler("exact").sample_plan_with_labels(x0, x1)
    assert none0 is None and none1 is None


def test_trajectory_shape(torch_gen):
    X = torch.randn(10, 3, 2, generator=torch_gen)
    out = OTPlanSampler("exact").sample_trajectory(X)
    assert out.shape == (10, 3, 2)
    np.testing.assert_allclose(out[:, 0], X[:, 0].numpy())


# ------------------------------------------------------------------------------- with torchcfm itself


def test_as_ot_sampler_of_torchcfm_matchers(torch_gen):
    cfm = pytest.importorskip("torchcfm.conditional_flow_matching")
    from torchcfm.optimal_transport import OTPlanSampler as TorchcfmSampler

    n = 32
    x0 = torch.randn(n, 2, generator=torch_gen)
    x1 = torch.randn(n, 2, generator=torch_gen) + 2
    # exact: same plan as torchcfm's own (POT emd), and the matcher works with ours plugged in
    np.testing.assert_allclose(
        OTPlanSampler("exact").get_map(x0, x1), TorchcfmSampler("exact").get_map(x0, x1), atol=1e-6
    )
    fm = cfm.ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)
    fm.ot_sampler = OTPlanSampler("exact")
    t, xt, ut = fm.sample_location_and_conditional_flow(x0, x1)
    assert xt.shape == (n, 2) and ut.shape == (n, 2) and t.shape == (n,)
    # sigma = 0: xt = (1 - t) x0' + t x1', ut = x1' - x0' with (x0', x1') = the optimal pairs
    x0p, x1p = OTPlanSampler("exact").sample_plan(x0, x1)
    torch.testing.assert_close(ut, x1p - x0p)
    torch.testing.assert_close(xt, (1 - t[:, None]) * x0p + t[:, None] * x1p)
    y0 = torch.randint(0, 3, (n,), generator=torch_gen)
    y1 = torch.randint(0, 3, (n,), generator=torch_gen)
    t, xt, ut, ya, yb = fm.guided_sample_location_and_conditional_flow(x0, x1, y0, y1)
    assert ya.shape == yb.shape == (n,)
    # Schrödinger bridge: entropic plan with reg = 2 sigma^2, same as torchcfm's on this well-scaled cost
    sb = cfm.SchrodingerBridgeConditionalFlowMatcher(sigma=0.5, ot_method="sinkhorn")
    ours = OTPlanSampler("sinkhorn", reg=2 * 0.5**2, tol=1e-6, max_iter=5000)
    np.testing.assert_allclose(ours.get_map(x0, x1), sb.ot_sampler.get_map(x0, x1), atol=1e-6)
    sb.ot_sampler = ours
    t, xt, ut = sb.sample_location_and_conditional_flow(x0, x1)
    assert torch.isfinite(xt).all() and torch.isfinite(ut).all()
