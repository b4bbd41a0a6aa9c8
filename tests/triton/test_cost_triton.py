"""The fused conditional cost kernel (``fastot._triton.cost``) against float64 torch references.

Without a GPU it runs in Triton's interpreter (``conftest.py``; one 16 x 16 tile config there, so the
shapes below cross tile edges); on a CUDA machine the compiled kernel runs on CUDA tensors.
"""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("triton")

from fastot._triton import softmin
from fastot._triton.cost import sqeuclidean_cost

F32, F64 = torch.float32, torch.float64
DEVICE = "cpu" if softmin.interpreting() else "cuda"
SHAPES = [(1, 17, 16, 3), (3, 13, 31, 40), (2, 35, 7, 1), (1, 1, 1, 5)]  # (B, n, m, d)


def _points(B, n, m, d, seed, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, n, d, generator=g, dtype=F64)
    y = torch.randn(B, m, d, generator=g, dtype=F64) + 0.5
    return x.to(dtype), y.to(dtype), g


def _ref(x, y, l0=None, l1=None, w=None):
    x, y = x.cpu().to(F64), y.cpu().to(F64)
    C = ((x[:, :, None, :] - y[:, None, :, :]) ** 2).sum(-1)
    if l0 is not None:
        w = torch.as_tensor(w, dtype=F64).reshape(-1).expand(C.shape[0])
        differ = l0.cpu()[:, :, None] != l1.cpu()[:, None, :]
        C = torch.where(differ, C + w[:, None, None], C)
    return C


def _dev(*ts):
    return [t.to(DEVICE) for t in ts]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_float64_reference(shape, dtype, seed):
    x, y, _ = _points(*shape, seed, dtype)
    C = sqeuclidean_cost(*_dev(x, y))
    assert C.shape == shape[:3] and C.dtype == dtype and C.is_contiguous()
    ref = _ref(x, y)
    tol = 1e-12 if dtype == F64 else 2e-5
    torch.testing.assert_close(C.cpu().to(F64), ref, rtol=tol, atol=tol * ref.abs().max().item())
    assert bool((C >= 0).all())


@pytest.mark.parametrize("seed", [2, 3])
@pytest.mark.parametrize("weight", [0.0, 0.7, math.inf, "batch"])
def test_label_term(seed, weight):
    B, n, m, d = 3, 19, 23, 4
    x, y, g = _points(B, n, m, d, seed)
    l0 = torch.randint(0, 3, (B, n), generator=g)
    l1 = torch.randint(0, 3, (B, m), generator=g)
    w = torch.tensor([0.0, 2.5, math.inf], dtype=F64) if weight == "batch" else weight
    C = sqeuclidean_cost(*_dev(x, y, l0, l1), w.to(DEVICE) if isinstance(w, torch.Tensor) else w)
    ref = _ref(x, y, l0, l1, w)
    assert torch.equal(torch.isinf(C.cpu()), torch.isinf(ref))
    fin = torch.isfinite(ref)
    torch.testing.assert_close(C.cpu()[fin], ref[fin], rtol=1e-12, atol=1e-12)


def test_bool_labels_and_out_dtype():
    x, y, g = _points(2, 9, 18, 3, 4, F32)
    l0 = torch.rand(2, 9, generator=g) > 0.5
    l1 = torch.rand(2, 18, generator=g) > 0.5
    C = sqeuclidean_cost(*_dev(x, y, l0, l1), 3.0, out_dtype=F64)
    assert C.dtype == F64
    torch.testing.assert_close(C.cpu(), _ref(x, y, l0.long(), l1.long(), 3.0), rtol=2e-5, atol=1e-4)


def test_low_precision_inputs_accumulate_in_float32():
    x, y, _ = _points(2, 20, 17, 33, 5)
    xb, yb = x.to(torch.bfloat16), y.to(torch.bfloat16)
    C = sqeuclidean_cost(*_dev(xb, yb))
    assert C.dtype == F32
    ref = _ref(xb, yb)  # the values the kernel saw, in float64
    torch.testing.assert_close(C.cpu().to(F64), ref, rtol=1e-5, atol=1e-4)


def test_strides_norms_and_no_clamp():
    x, y, _ = _points(2, 21, 18, 6, 6)
    xt = x.transpose(1, 2).contiguous().transpose(1, 2)  # non-contiguous feature axis
    yc = y[:, ::2]  # strided rows
    C = sqeuclidean_cost(*_dev(xt, yc))
    torch.testing.assert_close(C.cpu(), _ref(x, yc), rtol=1e-12, atol=1e-12)
    x2, y2 = (x * x).sum(-1), (yc * yc).sum(-1)
    C2 = sqeuclidean_cost(*_dev(xt, yc), x2=x2.to(DEVICE), y2=y2.to(DEVICE))
    torch.testing.assert_close(C2.cpu(), C.cpu(), rtol=1e-12, atol=1e-12)
    # identical points: the unclamped formula may round below 0, the clamped one never does
    same = sqeuclidean_cost(*_dev(x, x), clamp=False)
    torch.testing.assert_close(
        same.cpu().diagonal(dim1=1, dim2=2), torch.zeros(2, 21, dtype=F64), atol=1e-12, rtol=0
    )
    assert bool((sqeuclidean_cost(*_dev(x, x)) >= 0).all())


@pytest.mark.parametrize("precision", ["ieee", "tf32x3", "tf32"])
def test_precision_option(precision):
    x, y, _ = _points(1, 18, 17, 40, 7, F32)
    C = sqeuclidean_cost(*_dev(x, y), precision=precision)
    ref = _ref(x, y)
    tol = 1e-2 if precision == "tf32" else 2e-5
    torch.testing.assert_close(C.cpu().to(F64), ref, rtol=tol, atol=tol * ref.abs().max().item())


def test_empty_and_featureless():
    x, y, _ = _points(2, 0, 5, 3, 8)
    assert sqeuclidean_cost(*_dev(x, y)).shape == (2, 0, 5)
    x, y, _ = _points(2, 4, 5, 0, 8)
    assert bool((sqeuclidean_cost(*_dev(x, y)) == 0).all())


def test_rejects_bad_input():
    x, y, _ = _points(2, 4, 5, 3, 9)
    x, y = _dev(x, y)
    l0, l1 = (
        torch.zeros(2, 4, dtype=torch.long, device=DEVICE),
        torch.zeros(2, 5, dtype=torch.long, device=DEVICE),
    )
    with pytest.raises(ValueError, match="both labels"):
        sqeuclidean_cost(x, y, l0)
    with pytest.raises(TypeError, match="l0"):
        sqeuclidean_cost(x, y, l0.double(), l1)
    with pytest.raises(ValueError, match="l1"):
        sqeuclidean_cost(x, y, l0, l1[:, :3])
    with pytest.raises(ValueError, match="cond_weight"):
        sqeuclidean_cost(x, y, l0, l1, -1.0)
    with pytest.raises(ValueError, match="cond_weight"):
        sqeuclidean_cost(x, y, l0, l1, torch.ones(3, device=DEVICE))
    with pytest.raises(ValueError, match="x and y"):
        sqeuclidean_cost(x, y[:, :, :2])
    with pytest.raises(TypeError, match="out_dtype"):
        sqeuclidean_cost(x, y, out_dtype=torch.int32)
    with pytest.raises(ValueError, match="precision"):
        sqeuclidean_cost(x, y, precision="fast")


# -- the kernel behind fastot.costs.fused_cost (taken on CUDA tensors in eager mode; forced here) --------


@pytest.mark.parametrize("kind", [None, "label", "label-inf", "label-tensor", "sqeuclidean", "cosine"])
@pytest.mark.parametrize("center", ["common", "separate"])
@pytest.mark.parametrize("clamp", [True, False])
def test_fused_cost_kernel_path_matches_torch(monkeypatch, kind, center, clamp):
    from fastot import costs

    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 19, 3, generator=g, dtype=F64)
    y = torch.randn(1, 21, 3, generator=g, dtype=F64) + 1.0  # batch dims broadcast
    w = {"label-inf": math.inf, "label-tensor": torch.tensor(0.8, dtype=F64)}.get(kind, 1.7)
    c = "label" if kind and kind.startswith("label") else kind
    if c == "label":
        y0, y1 = torch.randint(0, 3, (2, 19), generator=g), torch.randint(0, 3, (1, 21), generator=g)
    elif c is not None:
        y0, y1 = torch.randn(2, 19, 4, generator=g, dtype=F64), torch.randn(1, 21, 4, generator=g, dtype=F64)
    else:
        y0 = y1 = None
    ref = costs.fused_cost(x, y, y0, y1, w, c, center=center, clamp=clamp)  # the torch formulation
    assert not costs._triton_cost_applies(x.to(DEVICE), y.to(DEVICE), w) or DEVICE == "cuda"
    monkeypatch.setattr(costs, "_triton_cost_applies", lambda *args: True)
    got = costs.fused_cost(
        *_dev(x, y), *(_dev(y0, y1) if y0 is not None else (None, None)), w, c, center=center, clamp=clamp
    )
    assert got.shape == ref.shape == (2, 19, 21) and got.dtype == F64
    assert torch.equal(torch.isinf(got.cpu()), torch.isinf(ref))
    fin = torch.isfinite(ref)
    torch.testing.assert_close(got.cpu()[fin], ref[fin], rtol=1e-12, atol=1e-12)


def test_fused_cost_kernel_path_is_not_taken_for_gradients_or_many_features():
    from fastot import costs

    x = torch.randn(5, 3, dtype=F64, requires_grad=True)
    assert not costs._triton_cost_applies(x, x.detach(), 1.0)  # CPU (and a gradient is wanted)
    if DEVICE == "cuda":
        xc = x.detach().cuda()
        assert costs._triton_cost_applies(xc, xc, 1.0)
        assert not costs._triton_cost_applies(xc.requires_grad_(), xc.detach(), 1.0)
        wide = torch.randn(5, 65, device="cuda")
        assert not costs._triton_cost_applies(wide, wide, 1.0)
