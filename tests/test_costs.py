"""fastot.cost_matrix vs float64 torch.cdist."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import fastot

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SHAPES = [(1, 1, 1), (7, 5, 3), (5, 7, 1), (33, 40, 2), (64, 65, 16), (30, 1, 128), (26, 26, 5)]


def reference(x: torch.Tensor, y: torch.Tensor, cost: str) -> torch.Tensor:
    # float64 cdist by direct differences (its matrix-product mode has cancellation error of its own)
    d = torch.cdist(x.double(), y.double(), compute_mode="donot_use_mm_for_euclid_dist")
    return d**2 if cost == "sqeuclidean" else d


def naive_same_dtype(x: torch.Tensor, y: torch.Tensor, cost: str) -> torch.Tensor:
    """What a user would write in the input dtype (cdist where torch has it, the direct formula else)."""
    if x.dtype in (torch.float32, torch.float64):
        d = torch.cdist(x, y)
        return d**2 if cost == "sqeuclidean" else d
    d2 = ((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1)
    return d2 if cost == "sqeuclidean" else d2.sqrt()


def assert_close_measured(got: torch.Tensor, x: torch.Tensor, y: torch.Tensor, cost: str) -> None:
    """Error vs the float64 reference at most 2x the naive same-dtype error (plus a few ulps of scale)."""
    ref = reference(x, y, cost)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    got64 = got.detach().double().cpu()
    ref = ref.cpu()
    naive_err = (naive_same_dtype(x, y, cost).double().cpu() - ref).abs().max().item() if ref.numel() else 0.0
    eps = torch.finfo(x.dtype).eps
    scale = ref.abs().max().item() if ref.numel() else 1.0
    atol = 2 * naive_err + 4 * eps * max(scale, 1e-30)
    torch.testing.assert_close(got64, ref, rtol=0, atol=atol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cost", ["sqeuclidean", "euclidean"])
@pytest.mark.parametrize(("n", "m", "d"), SHAPES)
def test_float64_matches_cdist(torch_gen, device, cost, n, m, d):
    x = torch.randn(n, d, generator=torch_gen, dtype=torch.float64).to(device)
    y = (torch.randn(m, d, generator=torch_gen, dtype=torch.float64) + 0.5).to(device)
    C = fastot.cost_matrix(x, y, cost=cost)
    assert C.device == x.device
    assert C.dtype == torch.float64
    assert C.shape == (n, m)
    torch.testing.assert_close(C.cpu(), reference(x, y, cost).cpu(), rtol=1e-10, atol=1e-10)


def test_default_is_sqeuclidean(torch_gen):
    x = torch.randn(9, 4, generator=torch_gen, dtype=torch.float64)
    y = torch.randn(6, 4, generator=torch_gen, dtype=torch.float64)
    torch.testing.assert_close(fastot.cost_matrix(x, y), fastot.cost_matrix(x, y, cost="sqeuclidean"))
    torch.testing.assert_close(fastot.cost_matrix(x, y), reference(x, y, "sqeuclidean"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cost", ["sqeuclidean", "euclidean"])
@pytest.mark.parametrize(("n", "m", "d"), [(7, 5, 3), (33, 40, 8), (64, 65, 32)])
def test_low_precision(torch_gen, dtype, cost, n, m, d):
    x = torch.randn(n, d, generator=torch_gen).to(dtype)
    y = torch.randn(m, d, generator=torch_gen).to(dtype)
    C = fastot.cost_matrix(x, y, cost=cost)
    assert C.is_floating_point()
    assert_close_measured(C, x, y, cost)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("offset", [10.0, 1000.0])
def test_offset_clouds(torch_gen, dtype, offset):
    """Both clouds far from the origin: cancellation in |x|^2 + |y|^2 - 2<x, y> must stay bounded."""
    x = (torch.randn(40, 6, generator=torch_gen, dtype=torch.float64) + offset).to(dtype)
    y = (torch.randn(35, 6, generator=torch_gen, dtype=torch.float64) + offset).to(dtype)
    C = fastot.cost_matrix(x, y)
    assert_close_measured(C, x, y, "sqeuclidean")
    assert (C >= 0).all(), "squared distances must not be negative"


@pytest.mark.parametrize("cost", ["sqeuclidean", "euclidean"])
@pytest.mark.parametrize("batch", [(1,), (2, 3)])
def test_batched(torch_gen, cost, batch):
    x = torch.randn(*batch, 9, 4, generator=torch_gen, dtype=torch.float64)
    y = torch.randn(*batch, 11, 4, generator=torch_gen, dtype=torch.float64)
    C = fastot.cost_matrix(x, y, cost=cost)
    assert C.shape == (*batch, 9, 11)
    torch.testing.assert_close(C, reference(x, y, cost), rtol=1e-10, atol=1e-10)
    for idx in torch.cartesian_prod(*[torch.arange(b) for b in batch]).reshape(-1, len(batch)).tolist():
        torch.testing.assert_close(C[tuple(idx)], fastot.cost_matrix(x[tuple(idx)], y[tuple(idx)], cost=cost))


def test_identical_points_zero_diagonal(torch_gen):
    x = torch.randn(12, 3, generator=torch_gen, dtype=torch.float64) * 100
    C = fastot.cost_matrix(x, x)
    torch.testing.assert_close(C.diagonal(), torch.zeros(12, dtype=torch.float64), rtol=0, atol=1e-9)
    torch.testing.assert_close(C, C.T, rtol=1e-12, atol=1e-9)


def test_noncontiguous(torch_gen):
    x = torch.randn(6, 10, generator=torch_gen, dtype=torch.float64).T  # (10, 6) non-contiguous
    y = torch.randn(8, 12, generator=torch_gen, dtype=torch.float64)[:, ::2]  # (8, 6) strided
    torch.testing.assert_close(fastot.cost_matrix(x, y), reference(x, y, "sqeuclidean"))


@pytest.mark.parametrize(("n", "m"), [(0, 4), (4, 0), (0, 0)])
def test_empty(n, m):
    C = fastot.cost_matrix(torch.ones(n, 3), torch.ones(m, 3))
    assert C.shape == (n, m)


def test_gradcheck_sqeuclidean(torch_gen):
    x = torch.randn(3, 2, generator=torch_gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, 2, generator=torch_gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: fastot.cost_matrix(a, b), (x, y))


def test_unknown_cost_name(torch_gen):
    x = torch.randn(3, 2, generator=torch_gen)
    with pytest.raises(ValueError, match="cost"):
        fastot.cost_matrix(x, x, cost="manhattan-ish")


def test_mismatched_feature_dim(torch_gen):
    x = torch.randn(3, 2, generator=torch_gen)
    y = torch.randn(4, 3, generator=torch_gen)
    with pytest.raises(ValueError, match=r"\b(x|y)\b"):
        fastot.cost_matrix(x, y)


def test_low_ndim(torch_gen):
    with pytest.raises(ValueError, match=r"\b(x|y)\b"):
        fastot.cost_matrix(torch.randn(3, generator=torch_gen), torch.randn(4, 3, generator=torch_gen))


# ------------------------------------------------------------------------- conditional costs (C²OT)


def cond_reference(x, y, y0, y1, w, kind):
    """Float64 two-matrix formulation M + w * C (C²OT's), by direct differences."""
    M = reference(x, y, "sqeuclidean")
    if kind == "label":
        C = (y0[..., :, None] != y1[..., None, :]).double()
        return torch.where(C > 0, torch.full_like(M, float("inf")), M) if w == float("inf") else M + w * C
    u0, u1 = y0.double(), y1.double()
    if kind == "cosine":
        u0 = u0 / u0.norm(dim=-1, keepdim=True)
        u1 = u1 / u1.norm(dim=-1, keepdim=True)
        return M + w * (1 - u0 @ u1.mT)
    return M + w * reference(u0, u1, "sqeuclidean")


@pytest.mark.parametrize("kind", ["label", "sqeuclidean", "cosine"])
@pytest.mark.parametrize(("n", "m", "d", "e"), [(1, 1, 1, 1), (7, 5, 3, 2), (33, 40, 2, 16)])
@pytest.mark.parametrize("w", [0.0, 0.4, 30.0])
def test_conditional_float64(torch_gen, kind, n, m, d, e, w):
    x = torch.randn(n, d, generator=torch_gen, dtype=torch.float64)
    y = torch.randn(m, d, generator=torch_gen, dtype=torch.float64) + 0.5
    if kind == "label":
        y0 = torch.randint(0, 3, (n,), generator=torch_gen)
        y1 = torch.randint(0, 3, (m,), generator=torch_gen)
    else:
        y0 = torch.randn(n, e, generator=torch_gen, dtype=torch.float64)
        y1 = torch.randn(m, e, generator=torch_gen, dtype=torch.float64)
    C = fastot.cost_matrix(x, y, y0, y1, cond_weight=w, cond_cost=kind)
    assert C.shape == (n, m) and C.dtype == torch.float64
    torch.testing.assert_close(C, cond_reference(x, y, y0, y1, w, kind), rtol=1e-10, atol=1e-10)


def test_conditional_auto_kind_inf_weight_and_batches(torch_gen):
    x = torch.randn(3, 6, 4, generator=torch_gen, dtype=torch.float64)
    y = torch.randn(3, 5, 4, generator=torch_gen, dtype=torch.float64)
    y0 = torch.randint(0, 2, (3, 6), generator=torch_gen)
    y1 = torch.randint(0, 2, (3, 5), generator=torch_gen)
    C = fastot.cost_matrix(x, y, y0, y1, cond_weight=float("inf"))
    torch.testing.assert_close(C, cond_reference(x, y, y0, y1, float("inf"), "label"))
    e0 = torch.randn(3, 6, 2, generator=torch_gen, dtype=torch.float64)
    e1 = torch.randn(3, 5, 2, generator=torch_gen, dtype=torch.float64)
    C = fastot.cost_matrix(x, y, e0, e1, cond_weight=2.0)  # auto: embeddings -> sqeuclidean
    torch.testing.assert_close(C, cond_reference(x, y, e0, e1, 2.0, "sqeuclidean"))


@pytest.mark.parametrize("kind", ["label", "sqeuclidean", "cosine"])
def test_conditional_broadcast_batches(torch_gen, kind):
    # batch dimensions broadcast between the points and between the conditions
    x = torch.randn(2, 6, 3, generator=torch_gen, dtype=torch.float64)
    y = torch.randn(1, 5, 3, generator=torch_gen, dtype=torch.float64) + 0.5
    if kind == "label":
        y0, y1 = (
            torch.randint(0, 3, (2, 6), generator=torch_gen),
            torch.randint(0, 3, (1, 5), generator=torch_gen),
        )
    else:
        y0 = torch.randn(2, 6, 4, generator=torch_gen, dtype=torch.float64)
        y1 = torch.randn(1, 5, 4, generator=torch_gen, dtype=torch.float64)
    C = fastot.cost_matrix(x, y, y0, y1, cond_weight=0.7, cond_cost=kind)
    assert C.shape == (2, 6, 5)
    torch.testing.assert_close(C, cond_reference(x, y, y0, y1, 0.7, kind), rtol=1e-10, atol=1e-10)


def test_conditional_float32_accuracy(torch_gen):
    """float32 error at most 2x that of the naive float32 two-matrix formulation (cdist^2 + w * cdist^2)."""
    n, m, d, e, w = 64, 48, 16, 8, 3.0
    x = torch.randn(n, d, generator=torch_gen)
    y = torch.randn(m, d, generator=torch_gen)
    y0 = torch.randn(n, e, generator=torch_gen)
    y1 = torch.randn(m, e, generator=torch_gen)
    ref = cond_reference(x, y, y0, y1, w, "sqeuclidean")
    naive = torch.cdist(x, y) ** 2 + w * torch.cdist(y0, y1) ** 2
    naive_err = (naive.double() - ref).abs().max().item()
    got = fastot.cost_matrix(x, y, y0, y1, cond_weight=w)
    assert got.dtype == torch.float32
    err = (got.double() - ref).abs().max().item()
    assert err <= 2 * naive_err + 8 * torch.finfo(torch.float32).eps * ref.abs().max().item()


def test_conditional_numpy_and_grad(torch_gen):
    x = torch.randn(5, 3, generator=torch_gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, 3, generator=torch_gen, dtype=torch.float64)
    y0 = torch.randn(5, 2, generator=torch_gen, dtype=torch.float64, requires_grad=True)
    y1 = torch.randn(4, 2, generator=torch_gen, dtype=torch.float64)
    torch.autograd.gradcheck(
        lambda x, y0: fastot.cost_matrix(x, y, y0, y1, cond_weight=0.7, cond_cost="cosine"), (x, y0)
    )
    C_np = fastot.cost_matrix(x.detach().numpy(), y.numpy(), y0.detach().numpy(), y1.numpy(), cond_weight=0.7)
    np.testing.assert_allclose(
        C_np, cond_reference(x.detach(), y, y0.detach(), y1, 0.7, "sqeuclidean").numpy()
    )


def test_conditional_under_compile(torch_gen):
    cnt = CompileCounterWithBackend("aot_eager")

    def f(x, y, y0, y1):
        return fastot.cost_matrix(x, y, y0, y1, cond_weight=2.0)

    cf = torch.compile(f, backend=cnt, fullgraph=True, dynamic=True)
    for n in (3, 5, 8):
        x = torch.randn(n, 7, generator=torch_gen, dtype=torch.float64)
        y = torch.randn(n + 1, 7, generator=torch_gen, dtype=torch.float64)
        y0 = torch.randint(0, 3, (n,), generator=torch_gen)
        y1 = torch.randint(0, 3, (n + 1,), generator=torch_gen)
        torch.testing.assert_close(cf(x, y, y0, y1), f(x, y, y0, y1))
    assert cnt.frame_count == 1


def test_conditional_bad_inputs(torch_gen):
    x = torch.randn(5, 3, generator=torch_gen)
    y = torch.randn(4, 3, generator=torch_gen)
    lab0 = torch.randint(0, 2, (5,), generator=torch_gen)
    lab1 = torch.randint(0, 2, (4,), generator=torch_gen)
    emb0 = torch.randn(5, 2, generator=torch_gen)
    emb1 = torch.randn(4, 2, generator=torch_gen)
    with pytest.raises(ValueError, match="y0"):
        fastot.cost_matrix(x, y, lab0, None)
    with pytest.raises(ValueError, match="y0"):
        fastot.cost_matrix(x, y, lab0[:3], lab1)
    with pytest.raises(ValueError, match="y1"):
        fastot.cost_matrix(x, y, emb0, torch.randn(4, 3, generator=torch_gen))
    with pytest.raises(TypeError, match="y0 and y1"):
        fastot.cost_matrix(x, y, lab0, emb1)
    with pytest.raises(TypeError, match="cond_cost"):
        fastot.cost_matrix(x, y, emb0, emb1, cond_cost="label")
    with pytest.raises(ValueError, match="cond_cost"):
        fastot.cost_matrix(x, y, emb0, emb1, cond_cost="l1")
    with pytest.raises(ValueError, match="cond_weight"):
        fastot.cost_matrix(x, y, emb0, emb1, cond_weight=float("nan"))
    with pytest.raises(ValueError, match="cond_weight"):
        fastot.cost_matrix(x, y, emb0, emb1, cond_weight=float("inf"))
    with pytest.raises(ValueError, match="euclidean"):
        fastot.cost_matrix(x, y, lab0, lab1, cost="euclidean")
