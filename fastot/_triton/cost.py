"""Triton kernel for the conditional squared-Euclidean cost matrix in one pass.

``C[b, i, j] = max(|x_i|^2 + |y_j|^2 - 2 x_i . y_j, 0) + w[b] 1[l0_i != l1_j]`` (``sqeuclidean_cost``)

for ``x (B, n, d)``, ``y (B, m, d)`` and optional integer labels ``l0 (B, n)``, ``l1 (B, m)``: C²OT's
conditional cost with class labels. Embedding conditions need no kernel support: they enter as extra
coordinates of ``x`` and ``y`` (``fastot.costs.fused_cost``), so the product already contains them.

Why a kernel: with torch, the matrix is written by the product and then read and written again by each
epilogue (the norms, the clamp, the label term, which also materialises an ``n x m`` boolean mask).
Here every tile of ``x . y^T`` is finished in registers and written once. That matters when the
product is cheap (few coordinates: the passes dominate); at thousands of coordinates the product
dominates and cuBLAS's product plus torch epilogues is the better choice (``fused_cost`` decides).

One program = one ``BLOCK_M x BLOCK_N`` tile of one problem; the feature axis is walked in tiles of
``BLOCK_D`` (``tl.dot``, precision as in :mod:`fastot._triton.softmin`: ``"ieee"`` exact float32
products by default). Accumulation in float32 (float64 when an input is float64); the output takes
``out_dtype`` (default: the accumulation dtype). ``w = inf`` makes pairs of different labels ``+inf``
(forbidden for the solvers). Launchers accept CUDA tensors, or CPU tensors under
``TRITON_INTERPRET=1`` (one fixed config there). This module imports only torch, triton and
:mod:`fastot._triton.softmin`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import triton
import triton.language as tl

from . import softmin

__all__ = ["sqeuclidean_cost"]


def _sqeuclidean_cost_kernel(
    X,
    Y,
    X2,
    Y2,
    L0,
    L1,
    W,
    OUT,
    N,
    M,
    D,
    stride_xb,
    stride_xn,
    stride_xd,
    stride_yb,
    stride_ym,
    stride_yd,
    stride_x2b,
    stride_y2b,
    stride_l0b,
    stride_l1b,
    stride_ob,
    stride_on,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
    LABELS: tl.constexpr,
    CLAMP: tl.constexpr,
):
    acc_ty = X2.dtype.element_ty
    b = tl.program_id(2).to(tl.int64)
    r0 = tl.program_id(0).to(tl.int64) * BLOCK_M
    c0 = tl.program_id(1).to(tl.int64) * BLOCK_N
    ri = tl.arange(0, BLOCK_M)
    ci = tl.arange(0, BLOCK_N)
    rmask = r0 + ri < N
    cmask = c0 + ci < M
    dofs = tl.arange(0, BLOCK_D)
    # 64-bit scalar bases + 32-bit offsets inside the tiles (as in softmin.py)
    x_base = X + b * stride_xb + r0 * stride_xn
    y_base = Y + b * stride_yb + c0 * stride_ym
    x_offs = ri[:, None] * stride_xn + dofs[None, :] * stride_xd
    y_offs = ci[:, None] * stride_ym + dofs[None, :] * stride_yd
    xy = tl.full([BLOCK_M, BLOCK_N], 0.0, acc_ty)
    for d0 in range(0, D, BLOCK_D):
        dmask = (d0 + dofs) < D
        xd = tl.load(x_base + d0 * stride_xd + x_offs, mask=rmask[:, None] & dmask[None, :], other=0.0)
        yd = tl.load(y_base + d0 * stride_yd + y_offs, mask=cmask[:, None] & dmask[None, :], other=0.0)
        xy = tl.dot(xd.to(acc_ty), tl.trans(yd.to(acc_ty)), xy, input_precision=PRECISION, out_dtype=acc_ty)
    x2 = tl.load(X2 + b * stride_x2b + r0 + ri, mask=rmask, other=0.0)
    y2 = tl.load(Y2 + b * stride_y2b + c0 + ci, mask=cmask, other=0.0)
    c = x2[:, None] + y2[None, :] - 2.0 * xy
    if CLAMP:
        c = tl.maximum(c, 0.0)
    if LABELS:
        l0 = tl.load(L0 + b * stride_l0b + r0 + ri, mask=rmask, other=0)
        l1 = tl.load(L1 + b * stride_l1b + c0 + ci, mask=cmask, other=0)
        w = tl.load(W + b).to(acc_ty)
        c = tl.where(l0[:, None] != l1[None, :], c + w, c)
    out = OUT + b * stride_ob + r0 * stride_on + c0
    tl.store(
        out + ri[:, None] * stride_on + ci[None, :],
        c.to(OUT.dtype.element_ty),
        mask=rmask[:, None] & cmask[None, :],
    )


# (BLOCK_M, BLOCK_N, num_warps, num_stages), chosen from ptxas resource usage for sm_90 (no spills with
# the FMA tiles of exact products; tests/triton/test_compile_sm90.py checks them).
_GPU_CONFIGS = [(64, 64, 4, 3), (128, 64, 8, 3), (64, 128, 8, 3)]
_INTERPRET_CONFIG = (16, 16, 1, 1)
_KEY = ["N", "M", "D", "BLOCK_D", "PRECISION", "LABELS", "CLAMP"]


@functools.cache
def _kernel(interpret: bool):
    tuples = [_INTERPRET_CONFIG] if interpret else _GPU_CONFIGS
    configs = [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s) for bm, bn, w, s in tuples
    ]
    return triton.autotune(configs=configs, key=_KEY)(triton.jit(_sqeuclidean_cost_kernel))


def _labels(t: Any, name: str, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype.is_floating_point or t.dtype.is_complex:
        raise TypeError(f"{name} must hold integer or bool labels, got {t.dtype}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    if t.device != device:
        raise ValueError(f"{name} must be on {device}, got {t.device}")
    return t.to(torch.int64).contiguous()


def sqeuclidean_cost(
    x: torch.Tensor,
    y: torch.Tensor,
    l0: torch.Tensor | None = None,
    l1: torch.Tensor | None = None,
    cond_weight: float | torch.Tensor = 0.0,
    *,
    clamp: bool = True,
    x2: torch.Tensor | None = None,
    y2: torch.Tensor | None = None,
    precision: str = "ieee",
    out_dtype: torch.dtype | None = None,
    block_d: int | None = None,
    wrap: Callable[[Any], Any] | None = None,
) -> torch.Tensor:
    """The (conditional) squared-Euclidean cost of a batch of point-cloud pairs, written once.

    Args:
        x: ``(B, n, d)``, y: ``(B, m, d)`` points (float16/bfloat16/float32/float64, any strides).
        l0, l1: optional labels ``(B, n)``, ``(B, m)`` (integer or bool), given together.
        cond_weight: ``w >= 0`` (a number, a 0-d or ``(B,)`` tensor, whose values are not read here:
            no host synchronisation; ``inf`` forbids pairs of
            different labels). Ignored without labels.
        clamp: clamp the squared distances at 0 (the matrix-product formula's cancellation can leave
            tiny negative entries).
        x2, y2: optional precomputed squared norms ``(B, n)``, ``(B, m)``.
        precision: ``tl.dot`` precision for float32 inputs, one of ``softmin.PRECISIONS``.
        out_dtype: dtype of the result (default: float64 if an input is float64, else float32).
        block_d: feature tile (a power of two >= 16; default as in :mod:`fastot._triton.softmin`).
        wrap: applied to the kernel before launching.

    Returns:
        ``C (B, n, m)``, contiguous.
    """
    B, n, m, D = softmin._check_points(x, y)
    acc = softmin._acc_dtype(x, y)
    prec = softmin._check_precision(precision, acc, x, y)
    out_dtype = acc if out_dtype is None else out_dtype
    if out_dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"out_dtype must be a floating dtype, got {out_dtype}")
    labels = l0 is not None or l1 is not None
    if labels and (l0 is None or l1 is None):
        raise ValueError("give both labels l0 and l1, or neither")
    dev = x.device
    if labels:
        l0 = _labels(l0, "l0", (B, n), dev)
        l1 = _labels(l1, "l1", (B, m), dev)
        if isinstance(cond_weight, torch.Tensor):
            if cond_weight.device != dev:
                raise ValueError(f"cond_weight must be on {dev}, got {cond_weight.device}")
            if cond_weight.dim() > 1 or (cond_weight.dim() == 1 and cond_weight.shape[0] not in (1, B)):
                shape = tuple(cond_weight.shape)
                raise ValueError(f"cond_weight must be a number or have shape ({B},), got {shape}")
        elif not cond_weight >= 0:  # a number; a tensor's values are the caller's to check (no host sync)
            raise ValueError(f"cond_weight must be >= 0, got {cond_weight!r}")
        w = torch.as_tensor(cond_weight, dtype=acc, device=dev).reshape(-1).expand(B).contiguous()
    else:
        l0 = l1 = w = torch.zeros(1, dtype=torch.int64, device=dev)
    xn, yn = softmin._sq_norms(x, x2, "x2", acc), softmin._sq_norms(y, y2, "y2", acc)
    softmin._check_offsets(x.stride(1), x.stride(2), y.stride(1), y.stride(2), m)
    interpret = softmin.interpreting()
    if dev.type != "cuda" and not interpret:
        raise RuntimeError(
            f"fastot._triton: sqeuclidean_cost got {dev.type} tensors; Triton kernels need CUDA tensors, "
            "or TRITON_INTERPRET=1 in the environment (Triton's CPU interpreter) before the first launch"
        )
    if B > 65535:
        raise ValueError(f"x and y must hold at most 65535 problems (the launch grid's limit), got {B}")
    out = torch.empty(B, n, m, dtype=out_dtype, device=dev)
    if out.numel() == 0:
        return out
    if D == 0:  # every distance is 0; a zero feature keeps the kernel off empty tensors
        x, y, D = x.new_zeros(B, n, 1), y.new_zeros(B, m, 1), 1
    block, _ = softmin._d_blocking(D, block_d, prec)
    kernel = _kernel(interpret)

    def grid(meta):
        return (triton.cdiv(n, meta["BLOCK_M"]), triton.cdiv(m, meta["BLOCK_N"]), B)

    softmin._launch(kernel, wrap)[grid](
        x, y, xn, yn, l0, l1, w, out, n, m, D,
        x.stride(0), x.stride(1), x.stride(2), y.stride(0), y.stride(1), y.stride(2),
        xn.stride(0), yn.stride(0), l0.stride(0), l1.stride(0), out.stride(0), out.stride(1),
        BLOCK_D=block, PRECISION=prec, LABELS=labels, CLAMP=bool(clamp),
    )  # fmt: skip
    return out
