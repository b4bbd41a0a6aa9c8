"""torch.ops.fastot.linear_sum_assignment / solve_assignment called directly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lsa_checks import as_np, assert_dual_certificate_any, assert_optimal

import fastot
import fastot.ops  # noqa: F401

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(6, 6), (4, 9), (9, 4), (2, 3, 5, 7)])
@pytest.mark.parametrize("maximize", [False, True])
def test_lsa_op(torch_gen, device, shape, maximize):
    C = torch.randn(shape, generator=torch_gen, dtype=torch.float64).to(device)
    r, c = torch.ops.fastot.linear_sum_assignment(C, maximize)
    k = min(shape[-2:])
    assert r.shape == c.shape == (*shape[:-2], k)
    assert r.dtype == c.dtype == torch.int64 and r.device == C.device
    Cn = C.cpu().numpy().reshape(-1, *shape[-2:])
    rn, cn = as_np(r).reshape(-1, k), as_np(c).reshape(-1, k)
    for b in range(Cn.shape[0]):
        assert_optimal(Cn[b], rn[b], cn[b], maximize=maximize)


@pytest.mark.parametrize("shape", [(7, 7), (5, 8), (8, 5)])
@pytest.mark.parametrize("maximize", [False, True])
def test_solve_assignment_op(torch_gen, shape, maximize):
    C = torch.randn(shape, generator=torch_gen, dtype=torch.float64)
    r, c, u, v = torch.ops.fastot.solve_assignment(C, maximize)
    assert u.shape == (shape[0],) and v.shape == (shape[1],)
    Cn = C.numpy()
    assert_optimal(Cn, r.numpy(), c.numpy(), maximize=maximize)
    assert_dual_certificate_any(Cn, r.numpy(), c.numpy(), u.numpy(), v.numpy(), maximize=maximize)


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 6, 3), (0, 2, 2), (4, 0)])
def test_meta_shapes(shape):
    C = torch.empty(shape, device="meta")
    r, c = torch.ops.fastot.linear_sum_assignment(C, False)
    k = min(shape[-2:])
    assert r.shape == c.shape == (*shape[:-2], k)
    assert r.dtype == torch.int64 and r.device.type == "meta"


def test_op_errors():
    with pytest.raises(ValueError, match="cost"):
        torch.ops.fastot.linear_sum_assignment(torch.ones(3), False)
    with pytest.raises(TypeError, match="cost"):
        torch.ops.fastot.linear_sum_assignment(torch.ones(3, 3, dtype=torch.complex64), False)
    C = torch.ones(3, 3, dtype=torch.float64)
    C[1] = float("inf")
    with pytest.raises(ValueError, match="infeasible"):
        torch.ops.fastot.linear_sum_assignment(C, False)


def test_op_requires_grad_indices_only(torch_gen):
    C = torch.randn(5, 5, generator=torch_gen, dtype=torch.float64, requires_grad=True)
    r, c = torch.ops.fastot.linear_sum_assignment(C, False)
    assert not r.requires_grad and not c.requires_grad
    assert_optimal(C.detach().numpy(), r.numpy(), c.numpy())
    np.testing.assert_array_equal(r.numpy(), np.arange(5))
