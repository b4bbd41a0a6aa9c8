"""fastot.cost_matrix vs float64 torch.cdist."""

from __future__ import annotations

import pytest
import torch

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
