"""torch.compile(fullgraph=True) with a dynamic batch dimension: zero graph breaks, one compile."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch._dynamo
from lsa_checks import assert_optimal
from torch._dynamo.testing import CompileCounterWithBackend

import fastot

# inductor's import path triggers torch's own deprecation warning (not fastot's)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


@pytest.fixture(autouse=True)
def _reset_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def assignment_cost(C: torch.Tensor, maximize: bool = False):
    r, c = fastot.linear_sum_assignment(C, maximize=maximize)
    # use the indices inside the graph: gather the assigned entries (n <= m so row_ind == arange(n))
    value = C.gather(-1, c.unsqueeze(-1)).squeeze(-1).sum(-1)
    return r, c, value


def check_batch(C, r, c, value, maximize=False):
    B, n, m = C.shape
    assert r.shape == c.shape == (B, min(n, m)) and r.dtype == c.dtype == torch.int64
    for b in range(B):
        assert_optimal(C[b].numpy(), r[b].numpy(), c[b].numpy(), maximize=maximize)
    if value is not None:
        torch.testing.assert_close(value, C.gather(-1, c.unsqueeze(-1)).squeeze(-1).sum(-1))


@pytest.mark.parametrize("maximize", [False, True])
def test_lsa_dynamic_batch_one_compile(torch_gen, maximize):
    cnt = CompileCounterWithBackend("aot_eager")
    fn = torch.compile(assignment_cost, backend=cnt, fullgraph=True, dynamic=True)
    for B in (2, 3, 5):
        C = torch.randn(B, 6, 8, generator=torch_gen, dtype=torch.float64)
        r, c, value = fn(C, maximize)
        check_batch(C, r, c, value, maximize)
        re, ce, _ = assignment_cost(C, maximize)
        torch.testing.assert_close(r, re)
        torch.testing.assert_close(c, ce)
    assert cnt.frame_count == 1, f"recompiled: {cnt.frame_count} compiles for batch sizes 2, 3, 5"
    assert cnt.op_count >= 1


def test_lsa_zero_graph_breaks(torch_gen):
    C = torch.randn(3, 5, 5, generator=torch_gen, dtype=torch.float64)
    explanation = torch._dynamo.explain(assignment_cost)(C)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.parametrize("shape", [(7, 4), (2, 3, 5, 4), (4, 4)])
def test_lsa_shapes_under_compile(torch_gen, shape):
    """Tall (transposed internally), multi-dim batches and square costs, dynamic shapes."""

    def f(C):
        return fastot.linear_sum_assignment(C)

    cnt = CompileCounterWithBackend("aot_eager")
    cf = torch.compile(f, backend=cnt, fullgraph=True, dynamic=True)
    C = torch.randn(shape, generator=torch_gen, dtype=torch.float64)
    r, c = cf(C)
    re, ce = f(C)
    torch.testing.assert_close(r, re)
    torch.testing.assert_close(c, ce)
    Cf = C.reshape(-1, *shape[-2:]).numpy()
    k = min(shape[-2:])
    for b in range(Cf.shape[0]):
        assert_optimal(Cf[b], r.reshape(-1, k)[b].numpy(), c.reshape(-1, k)[b].numpy())
    assert cnt.frame_count == 1


def test_lsa_float32_input_under_compile(torch_gen):
    cf = torch.compile(fastot.linear_sum_assignment, backend="aot_eager", fullgraph=True, dynamic=True)
    for B in (2, 3):
        C = torch.randn(B, 5, 9, generator=torch_gen).float()
        r, c = cf(C)
        re, ce = fastot.linear_sum_assignment(C)
        torch.testing.assert_close(r, re)
        torch.testing.assert_close(c, ce)


def test_lsa_inductor(torch_gen):
    """The default backend (inductor) as users call it."""
    fn = torch.compile(assignment_cost, fullgraph=True, dynamic=True)
    for B in (2, 3):
        C = torch.randn(B, 5, 7, generator=torch_gen, dtype=torch.float64)
        r, c, value = fn(C)
        check_batch(C, r, c, value)


def test_infeasible_raises_under_compile(torch_gen):
    cf = torch.compile(assignment_cost, backend="aot_eager", fullgraph=True, dynamic=True)
    C = torch.rand(2, 4, 4, generator=torch_gen, dtype=torch.float64)
    C[1, 2] = float("inf")
    with pytest.raises(ValueError, match="infeasible"):
        cf(C)


def test_solve_assignment_under_compile(torch_gen):
    def f(C):
        out = fastot.solve_assignment(C)
        return out.row_ind, out.col_ind, out.u, out.v, out.value

    cnt = CompileCounterWithBackend("aot_eager")
    cf = torch.compile(f, backend=cnt, fullgraph=True, dynamic=True)
    for B in (2, 3, 5):
        C = torch.randn(B, 4, 6, generator=torch_gen, dtype=torch.float64)
        got = cf(C)
        want = f(C)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w)
    assert cnt.frame_count == 1


def test_couple_under_compile(torch_gen):
    cnt = CompileCounterWithBackend("aot_eager")
    cf = torch.compile(fastot.couple, backend=cnt, fullgraph=True, dynamic=True)
    for n in (4, 6, 9):
        x0 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
        x1 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64) + 1
        i, j = cf(x0, x1)
        ie, je = fastot.couple(x0, x1)
        torch.testing.assert_close(i, ie)
        torch.testing.assert_close(j, je)
        np.testing.assert_array_equal(np.sort(j.numpy()), np.arange(n))
    assert cnt.frame_count == 1, f"recompiled: {cnt.frame_count} compiles for n = 4, 6, 9"


@pytest.mark.parametrize("method", ["exact", "sinkhorn"])
@pytest.mark.parametrize("cond", ["embedding", "label"])
def test_couple_cond_weight_as_a_traced_number(torch_gen, method, cond):
    # with dynamic shapes a Python float argument is traced as a SymFloat, which the weight's checks
    # must accept (it used to raise). The graph then specialises on the value where the weight enters
    # as a Python number (an ``alpha``, a square root): a new weight may recompile, correctly.
    cnt = CompileCounterWithBackend("aot_eager")

    def step(x0, x1, c0, c1, w):
        return fastot.couple(x0, x1, c0, c1, cond_weight=w, method=method)

    cf = torch.compile(step, backend=cnt, fullgraph=True, dynamic=True)
    x0 = torch.randn(8, 3, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(8, 3, generator=torch_gen, dtype=torch.float64)
    if cond == "label":
        c = torch.arange(8) % 3
    else:
        c = torch.randn(8, 2, generator=torch_gen, dtype=torch.float64)
    for w in (0.5, 0.7):
        i, j = cf(x0, x1, c, c, w)
        if method == "exact":
            ie, je = step(x0, x1, c, c, w)
            torch.testing.assert_close(i, ie)
            torch.testing.assert_close(j, je)
        else:
            assert i.shape == j.shape == (8,)
    assert cnt.frame_count >= 1


@pytest.mark.parametrize("method", ["knn", "bomb"])
def test_couple_knn_and_bomb_under_compile(torch_gen, method):
    cnt = CompileCounterWithBackend("aot_eager")
    opts = {"minibatch_size": 4} if method == "bomb" else {}

    def step(x0, x1):
        return fastot.couple(x0, x1, method=method, **opts)

    cf = torch.compile(step, backend=cnt, fullgraph=True, dynamic=True)
    for n in (8, 12):
        x1 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
        x0 = torch.randn(4 * n if method == "knn" else n, 3, generator=torch_gen, dtype=torch.float64)
        i, j = cf(x0, x1)
        ie, je = step(x0, x1)
        torch.testing.assert_close(i, ie)
        torch.testing.assert_close(j, je)
    assert cnt.frame_count <= 2


def test_couple_generator_under_compile_is_a_clear_error(torch_gen):
    x0 = torch.randn(6, 2, generator=torch_gen, dtype=torch.float64)

    def step(x0, x1, g):
        return fastot.couple(x0, x1, method="sinkhorn", generator=g)

    try:
        with pytest.raises((ValueError, torch._dynamo.exc.Unsupported), match="Generator into a graph"):
            torch.compile(step, backend="aot_eager", fullgraph=True)(x0, x0 + 1, torch.Generator())
    finally:
        torch._dynamo.reset()


def test_couple_zero_graph_breaks(torch_gen):
    x0 = torch.randn(5, 2, 3, generator=torch_gen)
    x1 = torch.randn(5, 2, 3, generator=torch_gen)
    explanation = torch._dynamo.explain(fastot.couple)(x0, x1)
    assert explanation.graph_break_count == 0, explanation.break_reasons


def test_couple_in_training_step_under_compile(torch_gen):
    """The flow-matching use: couple inside a compiled loss, gradients through the paired points."""

    def loss_fn(x0, x1, w):
        i, j = fastot.couple(x0, x1)
        xt = 0.5 * x0[i] + 0.5 * x1[j]
        return ((xt @ w - (x1[j] - x0[i])) ** 2).mean()

    cf = torch.compile(loss_fn, backend="aot_eager", fullgraph=True, dynamic=True)
    w = torch.randn(3, 3, generator=torch_gen, dtype=torch.float64, requires_grad=True)
    for n in (4, 7):
        x0 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
        x1 = torch.randn(n, 3, generator=torch_gen, dtype=torch.float64)
        (g_c,) = torch.autograd.grad(cf(x0, x1, w), w)
        (g_e,) = torch.autograd.grad(loss_fn(x0, x1, w), w)
        torch.testing.assert_close(g_c, g_e)


def test_cost_matrix_under_compile(torch_gen):
    cnt = CompileCounterWithBackend("aot_eager")
    cf = torch.compile(fastot.cost_matrix, backend=cnt, fullgraph=True, dynamic=True)
    # sizes chosen distinct (n, n + 1, d = 7) so dynamo's duck sizing does not tie them together
    for n in (3, 5, 8):
        x = torch.randn(n, 7, generator=torch_gen, dtype=torch.float64)
        y = torch.randn(n + 1, 7, generator=torch_gen, dtype=torch.float64)
        torch.testing.assert_close(cf(x, y), fastot.cost_matrix(x, y))
    assert cnt.frame_count == 1


def test_couple_non_finite_raises_under_compile(torch_gen):
    cf = torch.compile(fastot.couple, backend="aot_eager", fullgraph=True, dynamic=True)
    x0 = torch.randn(5, 3, generator=torch_gen, dtype=torch.float64)
    x1 = torch.randn(5, 3, generator=torch_gen, dtype=torch.float64)
    cf(x0, x1)
    x1[2, 0] = float("nan")
    with pytest.raises(ValueError):
        cf(x0, x1)
    x1[2, 0] = float("inf")
    with pytest.raises(ValueError):
        cf(x0, x1)
