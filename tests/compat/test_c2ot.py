"""fastot.compat.c2ot.OTConditionalPlanSampler: C²OT's interface; float64 references (scipy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lsa_checks import cost_tol
from scipy.optimize import linear_sum_assignment as scipy_lsa
from scipy.spatial.distance import cdist

from fastot.compat.c2ot import OTConditionalPlanSampler


def flat(t):
    return t.reshape(t.shape[0], -1).double().numpy()


def point_cost(x0, x1, x_norm):
    return cdist(flat(x0), flat(x1), "sqeuclidean" if x_norm == "l2_squared" else "euclidean")


def cond_cost(y0, y1, norm):
    return cdist(flat(y0), flat(y1), "cosine" if norm == "cosine" else "sqeuclidean")


def ratio(M, C, w):
    return float(((M + w * C) <= np.diag(M)[:, None]).mean())


def pairing(x0, x1, a, b):
    """Indices (i, j) of the returned rows a = x0[i], b = x1[j] (distinct random points)."""
    i = [int(np.flatnonzero((flat(x0) == r).all(1))[0]) for r in flat(a)]
    j = [int(np.flatnonzero((flat(x1) == r).all(1))[0]) for r in flat(b)]
    return np.array(i), np.array(j)


def assert_optimal(M, i, j):
    n = M.shape[0]
    np.testing.assert_array_equal(np.sort(i), np.arange(n))
    np.testing.assert_array_equal(np.sort(j), np.arange(n))
    ri, ci = scipy_lsa(M)
    np.testing.assert_allclose(M[i, j].sum(), M[ri, ci].sum(), rtol=0, atol=cost_tol(M, factor=64.0))


@pytest.mark.parametrize("x_norm", ["l2_squared", "l2"])
@pytest.mark.parametrize("condition_norm", ["cosine", "l2_squared"])
def test_fixed_weight_is_optimal(torch_gen, x_norm, condition_norm):
    n = 30
    x0 = torch.randn(n, 2, 2, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(n, 2, 2, generator=torch_gen, dtype=torch.float64) + 0.5
    y1 = torch.randn(n, 6, generator=torch_gen, dtype=torch.float64)
    y0 = y1.clone()  # C²OT's usual case: the noise carries its data's condition
    s = OTConditionalPlanSampler(condition_weight=3.0, x_norm=x_norm, condition_norm=condition_norm)
    a, b, ya, yb = s.sample_plan_with_labels(x0, x1, y0, y1)
    i, j = pairing(x0, x1, a, b)
    torch.testing.assert_close(ya, y0[torch.from_numpy(i)])
    torch.testing.assert_close(yb, y1[torch.from_numpy(j)])
    M = point_cost(x0, x1, x_norm) + 3.0 * cond_cost(y0, y1, condition_norm)
    assert_optimal(M, i, j)
    assert s.condition_weight == 3.0  # unchanged without target_r


def test_no_condition_is_plain_exact(torch_gen):
    n = 25
    x0 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
    a, b, ya, yb = OTConditionalPlanSampler().sample_plan_with_labels(x0, x1, None, None)
    assert ya is None and yb is None
    i, j = pairing(x0, x1, a, b)
    assert_optimal(point_cost(x0, x1, "l2_squared"), i, j)


@pytest.mark.parametrize("x_norm", ["l2_squared", "l2"])
def test_target_r_adapts_and_persists(torch_gen, x_norm):
    n = 100
    s = OTConditionalPlanSampler(condition_weight=1.0, target_r=0.25, target_r_tol=0.01, x_norm=x_norm)
    weights = []
    for _ in range(2):
        x0 = torch.randn(n, 4, generator=torch_gen, dtype=torch.float64)
        x1 = torch.randn(n, 4, generator=torch_gen, dtype=torch.float64)
        y1 = torch.randn(n, 8, generator=torch_gen, dtype=torch.float64)
        y0 = y1 + 0.5 * torch.randn(n, 8, generator=torch_gen, dtype=torch.float64)
        a, b, _, _ = s.sample_plan_with_labels(x0, x1, y0, y1)
        M, C = point_cost(x0, x1, x_norm), cond_cost(y0, y1, "cosine")
        w = s.condition_weight
        weights.append(w)
        assert abs(ratio(M, C, w) - 0.25) <= 0.01
        assert abs(s.last_ratio - ratio(M, C, w)) < 1e-12
        i, j = pairing(x0, x1, a, b)
        assert_optimal(M + w * C, i, j)
    assert weights[0] != 1.0


def test_one_hot_labels_with_large_weight_never_cross_classes(torch_gen):
    """C²OT's CIFAR-10 setting: one-hot class vectors, weight 1e8."""
    n, k = 40, 4
    x0 = torch.randn(n, 3, generator=torch_gen)
    x1 = torch.randn(n, 3, generator=torch_gen)
    labels = torch.randint(0, k, (n,), generator=torch_gen)
    y = torch.nn.functional.one_hot(labels, k).float()
    s = OTConditionalPlanSampler(condition_weight=1e8)
    _, _, ya, yb = s.sample_plan_with_labels(x0, x1, y, y[torch.randperm(n, generator=torch_gen)])
    torch.testing.assert_close(ya, yb)


def test_bad_arguments(torch_gen):
    with pytest.raises(ValueError, match="x_norm"):
        OTConditionalPlanSampler(x_norm="l1")
    with pytest.raises(ValueError, match="condition_norm"):
        OTConditionalPlanSampler(condition_norm="hamming")
    with pytest.raises(ValueError, match="condition_weight"):
        OTConditionalPlanSampler(condition_weight=-1.0)
    with pytest.raises(ValueError, match="target_r"):
        OTConditionalPlanSampler(condition_weight=1.0, target_r=1.5)
    x = torch.randn(5, 2, generator=torch_gen)
    with pytest.raises(ValueError, match="y0 and y1"):
        OTConditionalPlanSampler(condition_weight=1.0).sample_plan_with_labels(x, x, None, None)
    with pytest.raises(ValueError, match="y0 and y1"):
        OTConditionalPlanSampler(condition_weight=1.0).sample_plan_with_labels(
            x, x, torch.randn(5, 2, generator=torch_gen), torch.randn(5, 3, generator=torch_gen)
        )


def test_matrices_match_definitions(torch_gen):
    x0 = torch.randn(6, 3, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(7, 3, generator=torch_gen, dtype=torch.float64)
    y0 = torch.randn(6, 2, generator=torch_gen, dtype=torch.float64)
    y1 = torch.randn(7, 2, generator=torch_gen, dtype=torch.float64)
    s = OTConditionalPlanSampler(x_norm="l2", condition_norm="cosine")
    np.testing.assert_allclose(s.get_x_cost_matrix(x0, x1).numpy(), point_cost(x0, x1, "l2"), atol=1e-12)
    np.testing.assert_allclose(
        s.get_condition_cost_matrix(y0, y1).numpy(), cond_cost(y0, y1, "cosine"), atol=1e-12
    )
    y0_before = y0.clone()
    s.get_condition_cost_matrix(y0, y1)
    torch.testing.assert_close(y0, y0_before)  # inputs are not normalised in place
