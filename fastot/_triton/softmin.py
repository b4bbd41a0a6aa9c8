"""Triton kernels for log-domain Sinkhorn: the log-sum-exp c-transforms and the plan application.

With ``C (B, n, m)`` a cost (given, or ``C_ij = |x_i - y_j|^2`` from two point clouds) and
``scale (B,) = 1 / epsilon``::

    lse_dense(C, h, scale)[b, i]            = log sum_j exp(h[b, j] - scale[b] * C[b, i, j])
    lse_dense(C, h, scale, transpose=True)  = log sum_i exp(h[b, i] - scale[b] * C[b, i, j])   (B, m)
    lse_sqeuclidean(x, y, h, scale)[b, i]   = log sum_j exp(h[b, j] - scale[b] * |x_i - y_j|^2)
    apply_sqeuclidean(x, y, hr, hc, scale, v)[b, i, k]
        = sum_j exp(hr[b, i] + hc[b, j] - scale[b] * |x_i - y_j|^2) v[b, j, k]

The column direction of the point-cloud kernels is the same call with ``x`` and ``y`` swapped.

Kernels (one program = one block of output rows of one problem x one chunk of the reduced axis):
- online max/rescale over tiles of the reduced axis (flash-attention style): nothing of size
  ``n x m`` is written; the squared-Euclidean kernels build each cost tile from ``x . y^T`` with
  ``tl.dot`` plus precomputed squared norms, clamped at 0 against cancellation;
- accumulation in float32 for float16 / bfloat16 / float32 inputs (loads are cast to the
  accumulation type right away), float64 when any input is float64;
- masked loads: padded LSE inputs are ``-inf`` and padded costs ``+inf``, so padded terms vanish;
  ``+inf`` in ``C`` is a forbidden pair (term 0), ``-inf`` in ``h`` a zero weight, and a row with no
  allowed term gives ``-inf`` (``apply``: 0);
- 64-bit index arithmetic for the batch, row-block and tile bases; offsets inside a tile are 32-bit
  (fewer registers), which limits strides to 2^23 elements (checked);
- for a single large problem the reduced axis is split into chunks that run as separate programs
  (enough programs to fill the GPU); the chunks' partial results are merged with one small torch op.

``precision`` selects how ``tl.dot`` treats float32 inputs: ``"ieee"`` (default, exact float32
products; FMA loops on the GPU, the slowest), ``"tf32"`` (tensor cores, ~1e-3 relative error in
``x . y``, which ``scale`` amplifies), ``"tf32x3"`` (tensor cores, ~float32 accuracy).
float16/bfloat16 values are exact in tf32, so for such inputs ``"ieee"`` is served by ``"tf32"`` at
no loss. float64 always uses exact float64 products.

Launchers accept tensors on any device: CUDA tensors run the compiled kernels (autotuned over a few
configs, keyed on the problem sizes); CPU tensors need ``TRITON_INTERPRET=1`` in the environment before
the first launch (Triton's interpreter, one fixed config). Kernels are built on first use, so
importing this module costs nothing and reads no environment. Outputs are float32, or float64 when
any input is float64. Each launcher takes ``wrap`` (e.g. ``torch.library.wrap_triton`` inside a
``triton_op``) through which kernel launches go.

This module imports only torch and triton (no other fastot module), so it can be loaded on its own.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any

import torch
import triton
import triton.language as tl

__all__ = [
    "PRECISIONS",
    "apply_sqeuclidean",
    "interpreting",
    "lse_dense",
    "lse_sqeuclidean",
]

PRECISIONS = ("ieee", "tf32", "tf32x3")

_F32, _F64 = torch.float32, torch.float64
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# --------------------------------------------------------------------------------------------------
# kernels (plain functions; decorated with triton.jit on first use, see _kernel)
#
# The kernels call only Triton builtins (no @triton.jit helpers of triton.language such as tl.max,
# tl.sum, tl.cdiv, tl.zeros): when triton was imported before TRITON_INTERPRET=1 was set, those helpers are
# compiled-mode functions that the interpreter cannot call. Row reductions are tl.reduce with the
# standard library's own combine functions, which the interpreter recognises (numpy fast path) and
# which compile exactly as tl.max / tl.sum do.


def _max_combine_fallback(a, b):
    return tl.maximum(a, b)


def _sum_combine_fallback(a, b):
    return a + b


_max_combine = getattr(tl.standard, "_elementwise_max", None)
_sum_combine = getattr(tl.standard, "_sum_combine", None)


def _lse_dense_kernel(
    C,
    H,
    S,
    OUT,
    R,
    K,
    CHUNK,
    stride_cb,
    stride_cr,
    stride_ck,
    stride_hb,
    stride_hk,
    stride_ob,
    stride_os,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    # out[b, s, r] = log sum_{k in chunk s} exp(h[b, k] - scale[b] * C[b, r, k]); the strides say
    # which axis of C is r (rows, or columns for the transposed direction).
    acc_ty = H.dtype.element_ty
    # axis 0 walks the row blocks of problem 0, then of problem 1, ... (no 65535 limit on B)
    n_rb = (R + BLOCK_M - 1) // BLOCK_M
    pid = tl.program_id(0)
    b = (pid // n_rb).to(tl.int64)
    pid_r = pid % n_rb
    pid_s = tl.program_id(1)
    r0 = pid_r.to(tl.int64) * BLOCK_M
    ri = tl.arange(0, BLOCK_M)
    ci = tl.arange(0, BLOCK_N)
    rows = r0 + ri
    rmask = rows < R
    scale = tl.load(S + b).to(acc_ty)
    # 64-bit scalar base + 32-bit offsets inside the tile (fewer registers than 64-bit offsets)
    c_base = C + b * stride_cb + r0 * stride_cr
    c_offs = ri[:, None] * stride_cr + ci[None, :] * stride_ck
    h_base = H + b * stride_hb
    m_i = tl.full([BLOCK_M], float("-inf"), acc_ty)
    l_i = tl.full([BLOCK_M], 0.0, acc_ty)
    k_start = pid_s.to(tl.int64) * CHUNK
    k_end = tl.minimum(k_start + CHUNK, K)
    for k0 in range(k_start, k_end, BLOCK_N):
        cols = k0 + ci
        cmask = cols < k_end
        h = tl.load(h_base + cols * stride_hk, mask=cmask, other=float("-inf")).to(acc_ty)
        c = tl.load(
            c_base + k0 * stride_ck + c_offs, mask=rmask[:, None] & cmask[None, :], other=float("inf")
        ).to(acc_ty)
        z = h[None, :] - scale * c
        m_new = tl.maximum(m_i, tl.reduce(z, 1, _max_combine))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        l_i = l_i * tl.exp(m_i - m_use) + tl.reduce(tl.exp(z - m_use[:, None]), 1, _sum_combine)
        m_i = m_new
    out = tl.where(l_i > 0, m_i + tl.log(tl.where(l_i > 0, l_i, 1.0)), float("-inf"))
    tl.store(OUT + b * stride_ob + pid_s * stride_os + rows, out, mask=rmask)


def _lse_sqeuclidean_kernel(
    X,
    Y,
    X2,
    Y2,
    H,
    S,
    OUT,
    N,
    M,
    D,
    CHUNK,
    stride_xb,
    stride_xn,
    stride_xd,
    stride_yb,
    stride_ym,
    stride_yd,
    stride_x2b,
    stride_y2b,
    stride_hb,
    stride_ob,
    stride_os,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    X_RESIDENT: tl.constexpr,
    PRECISION: tl.constexpr,
):
    # out[b, s, i] = log sum_{j in chunk s} exp(h[b, j] - scale[b] * max(x2_i + y2_j - 2 x_i . y_j, 0))
    acc_ty = H.dtype.element_ty
    n_rb = (N + BLOCK_M - 1) // BLOCK_M
    pid = tl.program_id(0)
    b = (pid // n_rb).to(tl.int64)
    pid_m = pid % n_rb
    pid_s = tl.program_id(1)
    r0 = pid_m.to(tl.int64) * BLOCK_M
    ri = tl.arange(0, BLOCK_M)
    ci = tl.arange(0, BLOCK_N)
    rows = r0 + ri
    rmask = rows < N
    dofs = tl.arange(0, BLOCK_D)
    scale = tl.load(S + b).to(acc_ty)
    x2 = tl.load(X2 + b * stride_x2b + rows, mask=rmask, other=0.0).to(acc_ty)
    # 64-bit scalar bases + 32-bit offsets inside the tiles (fewer registers than 64-bit offsets)
    x_base = X + b * stride_xb + r0 * stride_xn
    x_offs = ri[:, None] * stride_xn + dofs[None, :] * stride_xd
    y_offs = ci[:, None] * stride_ym + dofs[None, :] * stride_yd
    if X_RESIDENT:  # the whole feature axis fits one tile: load this block of x once
        xt = tl.load(x_base + x_offs, mask=rmask[:, None] & (dofs[None, :] < D), other=0.0).to(acc_ty)
    y_base = Y + b * stride_yb
    h_base = H + b * stride_hb
    y2_base = Y2 + b * stride_y2b
    m_i = tl.full([BLOCK_M], float("-inf"), acc_ty)
    l_i = tl.full([BLOCK_M], 0.0, acc_ty)
    k_start = pid_s.to(tl.int64) * CHUNK
    k_end = tl.minimum(k_start + CHUNK, M)
    for k0 in range(k_start, k_end, BLOCK_N):
        cols = k0 + ci
        cmask = cols < k_end
        y_tile = y_base + k0 * stride_ym
        if X_RESIDENT:
            yt = tl.load(y_tile + y_offs, mask=cmask[:, None] & (dofs[None, :] < D), other=0.0).to(acc_ty)
            xy = tl.dot(xt, tl.trans(yt), input_precision=PRECISION, out_dtype=acc_ty)
        else:
            xy = tl.full([BLOCK_M, BLOCK_N], 0.0, acc_ty)
            for d0 in range(0, D, BLOCK_D):
                dmask = (d0 + dofs) < D
                xd = tl.load(
                    x_base + d0 * stride_xd + x_offs, mask=rmask[:, None] & dmask[None, :], other=0.0
                ).to(acc_ty)
                yd = tl.load(
                    y_tile + d0 * stride_yd + y_offs, mask=cmask[:, None] & dmask[None, :], other=0.0
                ).to(acc_ty)
                xy = tl.dot(xd, tl.trans(yd), xy, input_precision=PRECISION, out_dtype=acc_ty)
        y2 = tl.load(y2_base + cols, mask=cmask, other=0.0).to(acc_ty)
        h = tl.load(h_base + cols, mask=cmask, other=float("-inf")).to(acc_ty)
        c = tl.maximum(x2[:, None] + y2[None, :] - 2.0 * xy, 0.0)
        z = h[None, :] - scale * c
        m_new = tl.maximum(m_i, tl.reduce(z, 1, _max_combine))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        l_i = l_i * tl.exp(m_i - m_use) + tl.reduce(tl.exp(z - m_use[:, None]), 1, _sum_combine)
        m_i = m_new
    out = tl.where(l_i > 0, m_i + tl.log(tl.where(l_i > 0, l_i, 1.0)), float("-inf"))
    tl.store(OUT + b * stride_ob + pid_s * stride_os + rows, out, mask=rmask)


def _apply_sqeuclidean_kernel(
    X,
    Y,
    X2,
    Y2,
    HR,
    HC,
    S,
    V,
    OUT,
    N,
    M,
    D,
    KV,
    CHUNK,
    stride_xb,
    stride_xn,
    stride_xd,
    stride_yb,
    stride_ym,
    stride_yd,
    stride_x2b,
    stride_y2b,
    stride_hrb,
    stride_hcb,
    stride_vb,
    stride_vm,
    stride_vk,
    stride_ob,
    stride_os,
    stride_on,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_K: tl.constexpr,
    X_RESIDENT: tl.constexpr,
    PRECISION: tl.constexpr,
):
    # out[b, s, i, k] = sum_{j in chunk s} exp(hr_i + hc_j - scale * C_ij) v[b, j, k], accumulated
    # as exp(hr_i + m_i) * sum_j exp(hc_j - scale * C_ij - m_i) v_jk with a running row max m_i.
    acc_ty = HR.dtype.element_ty
    n_rb = (N + BLOCK_M - 1) // BLOCK_M
    pid = tl.program_id(0)
    b = (pid // n_rb).to(tl.int64)
    pid_m = pid % n_rb
    pid_sk = tl.program_id(1)
    n_kb = (KV + BLOCK_K - 1) // BLOCK_K
    pid_s = pid_sk // n_kb
    pid_k = pid_sk % n_kb
    r0 = pid_m.to(tl.int64) * BLOCK_M
    ri = tl.arange(0, BLOCK_M)
    ci = tl.arange(0, BLOCK_N)
    rows = r0 + ri
    rmask = rows < N
    kofs = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    kmask = kofs < KV
    v_offs = ci[:, None] * stride_vm + kofs[None, :] * stride_vk
    dofs = tl.arange(0, BLOCK_D)
    scale = tl.load(S + b).to(acc_ty)
    x2 = tl.load(X2 + b * stride_x2b + rows, mask=rmask, other=0.0).to(acc_ty)
    x_base = X + b * stride_xb + r0 * stride_xn
    x_offs = ri[:, None] * stride_xn + dofs[None, :] * stride_xd
    y_offs = ci[:, None] * stride_ym + dofs[None, :] * stride_yd
    if X_RESIDENT:
        xt = tl.load(x_base + x_offs, mask=rmask[:, None] & (dofs[None, :] < D), other=0.0).to(acc_ty)
    y_base = Y + b * stride_yb
    v_base = V + b * stride_vb
    hc_base = HC + b * stride_hcb
    y2_base = Y2 + b * stride_y2b
    m_i = tl.full([BLOCK_M], float("-inf"), acc_ty)
    acc = tl.full([BLOCK_M, BLOCK_K], 0.0, acc_ty)
    k_start = pid_s.to(tl.int64) * CHUNK
    k_end = tl.minimum(k_start + CHUNK, M)
    for k0 in range(k_start, k_end, BLOCK_N):
        cols = k0 + ci
        cmask = cols < k_end
        y_tile = y_base + k0 * stride_ym
        if X_RESIDENT:
            yt = tl.load(y_tile + y_offs, mask=cmask[:, None] & (dofs[None, :] < D), other=0.0).to(acc_ty)
            xy = tl.dot(xt, tl.trans(yt), input_precision=PRECISION, out_dtype=acc_ty)
        else:
            xy = tl.full([BLOCK_M, BLOCK_N], 0.0, acc_ty)
            for d0 in range(0, D, BLOCK_D):
                dmask = (d0 + dofs) < D
                xd = tl.load(
                    x_base + d0 * stride_xd + x_offs, mask=rmask[:, None] & dmask[None, :], other=0.0
                ).to(acc_ty)
                yd = tl.load(
                    y_tile + d0 * stride_yd + y_offs, mask=cmask[:, None] & dmask[None, :], other=0.0
                ).to(acc_ty)
                xy = tl.dot(xd, tl.trans(yd), xy, input_precision=PRECISION, out_dtype=acc_ty)
        y2 = tl.load(y2_base + cols, mask=cmask, other=0.0).to(acc_ty)
        hc = tl.load(hc_base + cols, mask=cmask, other=float("-inf")).to(acc_ty)
        c = tl.maximum(x2[:, None] + y2[None, :] - 2.0 * xy, 0.0)
        z = hc[None, :] - scale * c
        m_new = tl.maximum(m_i, tl.reduce(z, 1, _max_combine))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp(z - m_use[:, None])
        vt = tl.load(v_base + k0 * stride_vm + v_offs, mask=cmask[:, None] & kmask[None, :], other=0.0).to(
            acc_ty
        )
        acc = acc * tl.exp(m_i - m_use)[:, None]
        acc = tl.dot(p, vt, acc, input_precision=PRECISION, out_dtype=acc_ty)
        m_i = m_new
    hr = tl.load(HR + b * stride_hrb + rows, mask=rmask, other=float("-inf")).to(acc_ty)
    out = acc * tl.exp(hr + m_i)[:, None]
    out_ptr = OUT + b * stride_ob + pid_s * stride_os + rows[:, None] * stride_on + kofs[None, :]
    tl.store(out_ptr, out, mask=rmask[:, None] & kmask[None, :])


# --------------------------------------------------------------------------------------------------
# configs and kernel construction

# (BLOCK_M, BLOCK_N, num_warps, num_stages); every BLOCK_N divides _COL_QUANTUM.
# Chosen from ptxas resource usage for sm_90 (no spills, or a few bytes): 8 warps keep the dense
# kernel near 100 registers; the point-cloud kernels are flash-attention-like.
_GPU_CONFIGS: dict[str, list[tuple[int, int, int, int]]] = {
    "lse_dense": [(64, 64, 8, 3), (32, 128, 8, 3), (128, 32, 8, 3)],
    "lse_sqeuclidean": [(128, 64, 8, 3), (64, 64, 4, 3), (64, 64, 8, 3)],
    "apply_sqeuclidean": [(64, 64, 8, 3), (64, 32, 4, 3)],
}
_INTERPRET_CONFIG = (16, 16, 1, 1)
_KEYS: dict[str, list[str]] = {
    "lse_dense": ["R", "K", "CHUNK", "stride_cr", "stride_ck"],
    "lse_sqeuclidean": ["N", "M", "D", "CHUNK", "BLOCK_D", "X_RESIDENT", "PRECISION"],
    "apply_sqeuclidean": ["N", "M", "D", "KV", "CHUNK", "BLOCK_D", "BLOCK_K", "X_RESIDENT", "PRECISION"],
}
_BODIES: dict[str, Callable[..., Any]] = {
    "lse_dense": _lse_dense_kernel,
    "lse_sqeuclidean": _lse_sqeuclidean_kernel,
    "apply_sqeuclidean": _apply_sqeuclidean_kernel,
}


def interpreting() -> bool:
    """Whether kernels built now run in Triton's interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


@functools.cache
def _kernel(name: str, interpret: bool):
    """The autotuned kernel ``name``: one fixed config under the interpreter (where autotuning with
    several configs cannot time anything), a few on a GPU, keyed on the sizes."""
    global _max_combine, _sum_combine
    if (
        _max_combine is None
    ):  # not in this triton version's standard library: our own (slower when interpreted)
        _max_combine = triton.jit(_max_combine_fallback)
    if _sum_combine is None:
        _sum_combine = triton.jit(_sum_combine_fallback)
    tuples = [_INTERPRET_CONFIG] if interpret else _GPU_CONFIGS[name]
    configs = [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s) for bm, bn, w, s in tuples
    ]
    return triton.autotune(configs=configs, key=_KEYS[name])(triton.jit(_BODIES[name]))


def _col_quantum(interpret: bool) -> int:
    # Chunks of the reduced axis are multiples of every BLOCK_N, so tiles never straddle two chunks.
    tuples = [_INTERPRET_CONFIG] if interpret else [t for ts in _GPU_CONFIGS.values() for t in ts]
    return max(t[1] for t in tuples)


def _get(name: str, device: torch.device):
    interpret = interpreting()
    if device.type != "cuda" and not interpret:
        raise RuntimeError(
            f"fastot._triton: {name} got {device.type} tensors; Triton kernels need CUDA tensors, or "
            "TRITON_INTERPRET=1 in the environment (Triton's CPU interpreter) before the first launch"
        )
    return _kernel(name, interpret), interpret


# --------------------------------------------------------------------------------------------------
# launchers


def _check_float(t: Any, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _FLOATS:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
    return t


def _acc_dtype(*ts: torch.Tensor) -> torch.dtype:
    return _F64 if any(t.dtype == _F64 for t in ts) else _F32


def _scale_vector(scale: Any, B: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if isinstance(scale, torch.Tensor):
        if scale.device != device:
            raise ValueError(f"scale must be on {device}, got {scale.device}")
        if scale.dim() > 1 or (scale.dim() == 1 and scale.shape[0] not in (1, B)):
            raise ValueError(f"scale must be a number or have shape ({B},), got {tuple(scale.shape)}")
    s = torch.as_tensor(scale, dtype=dtype, device=device).reshape(-1)
    return s.expand(B).contiguous()


def _vector(h: Any, name: str, shape: tuple[int, int], dtype: torch.dtype, device) -> torch.Tensor:
    _check_float(h, name)
    if tuple(h.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(h.shape)}")
    if h.device != device:
        raise ValueError(f"{name} must be on {device}, got {h.device}")
    return h.to(dtype).contiguous()


def _splits(B: int, rows: int, cols: int, device: torch.device, quantum: int, splits: int | None) -> int:
    """How many chunks the reduced axis is cut into: enough programs for about 4 per SM."""
    if splits is not None:
        if not isinstance(splits, int) or splits < 1:
            raise ValueError(f"splits must be a positive integer or None, got {splits!r}")
        return splits
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    programs = B * triton.cdiv(rows, 128)
    want = triton.cdiv(4 * sms, max(programs, 1))
    return max(1, min(want, triton.cdiv(cols, 2 * quantum), 64))


def _chunking(cols: int, splits: int, quantum: int) -> tuple[int, int]:
    """(chunk length, number of non-empty chunks), chunk a multiple of ``quantum``."""
    chunk = triton.cdiv(triton.cdiv(max(cols, 1), splits), quantum) * quantum
    return chunk, triton.cdiv(max(cols, 1), chunk)


def _launch(kernel, wrap):
    return wrap(kernel) if wrap is not None else kernel


def _merge_lse(part: torch.Tensor) -> torch.Tensor:
    # (B, S, R) partial log-sum-exps -> (B, R); torch's logsumexp returns -inf for all -inf inputs.
    return part[:, 0] if part.shape[1] == 1 else torch.logsumexp(part, dim=1)


def lse_dense(
    C: torch.Tensor,
    h: torch.Tensor,
    scale: torch.Tensor | float,
    transpose: bool = False,
    *,
    splits: int | None = None,
    wrap: Callable[[Any], Any] | None = None,
) -> torch.Tensor:
    """Log-sum-exp c-transform of a dense cost.

    Args:
        C: ``(B, n, m)`` cost (float16/bfloat16/float32/float64, any strides); ``+inf`` = forbidden.
        h: ``(B, m)`` (``(B, n)`` with ``transpose``); ``-inf`` = zero weight.
        scale: ``(B,)`` tensor or a number, ``1 / epsilon``, positive.
        transpose: reduce over ``i`` instead of ``j`` (``lse_cols``); output ``(B, m)``.
        splits: cut the reduced axis into this many chunks (default: from the GPU's SM count; 1 on CPU).
        wrap: applied to the kernel before launching (``torch.library.wrap_triton`` in a ``triton_op``).

    Returns:
        ``(B, n)`` (``(B, m)`` with ``transpose``), float64 if ``C`` or ``h`` is float64, else float32.
    """
    _check_float(C, "C")
    if C.dim() != 3:
        raise ValueError(f"C must have shape (B, n, m), got {tuple(C.shape)}")
    B, n, m = C.shape
    acc = _acc_dtype(C, _check_float(h, "h"))
    R, K = (m, n) if transpose else (n, m)
    h = _vector(h, "h", (B, K), acc, C.device)
    s = _scale_vector(scale, B, acc, C.device)
    kernel, interpret = _get("lse_dense", C.device)
    if B == 0 or R == 0:
        return torch.empty(B, R, dtype=acc, device=C.device)
    if K == 0:  # empty sums (and no kernel launch on an empty tensor)
        return torch.full((B, R), -math.inf, dtype=acc, device=C.device)
    quantum = _col_quantum(interpret)
    chunk, S = _chunking(K, _splits(B, R, K, C.device, quantum, splits), quantum)
    part = torch.empty(B, S, R, dtype=acc, device=C.device)
    stride_cr, stride_ck = (C.stride(2), C.stride(1)) if transpose else (C.stride(1), C.stride(2))
    _check_offsets(stride_cr, stride_ck)

    def grid(meta):
        return (B * triton.cdiv(R, meta["BLOCK_M"]), S)

    _launch(kernel, wrap)[grid](
        C, h, s, part, R, K, chunk,
        C.stride(0), stride_cr, stride_ck, h.stride(0), h.stride(1), part.stride(0), part.stride(1),
    )  # fmt: skip
    return _merge_lse(part)


def _check_points(x: Any, y: Any) -> tuple[int, int, int, int]:
    _check_float(x, "x")
    _check_float(y, "y")
    if x.dim() != 3 or y.dim() != 3:
        raise ValueError(
            f"x and y must have shapes (B, n, d), (B, m, d), got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    if x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(
            "x and y must agree on the batch and d: (B, n, d), (B, m, d), "
            f"got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    if x.device != y.device:
        raise ValueError(f"x and y must be on one device, got {x.device} and {y.device}")
    return x.shape[0], x.shape[1], y.shape[1], x.shape[2]


def _check_precision(precision: str, acc: torch.dtype, *ts: torch.Tensor) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if acc == _F64:
        return "ieee"  # float64 products are exact whatever was asked
    if precision == "ieee" and all(t.dtype in (torch.float16, torch.bfloat16) for t in ts):
        return "tf32"  # float16/bfloat16 values are exact in tf32: same products, on tensor cores
    return precision


def _d_blocking(D: int, block_d: int | None, precision: str) -> tuple[int, bool]:
    """(BLOCK_D, x resident in registers for the whole feature axis).

    Tensor-core products (tf32, tf32x3, float16/bfloat16 inputs) keep a feature axis of at most 64
    as one tile and walk larger ones in tiles of 32. Exact float32/float64 products (``ieee``) are
    FMA loops in Triton whose operands live in registers: tiles of 16 avoid spills (measured with
    ptxas for sm_90).
    """
    if block_d is not None:
        if not isinstance(block_d, int) or block_d < 16 or block_d & (block_d - 1):
            raise ValueError(f"block_d must be a power of two >= 16, got {block_d!r}")
        return block_d, D <= block_d
    if precision == "ieee":
        return 16, D <= 16
    if D <= 64:
        return max(16, triton.next_power_of_2(D)), True
    return 32, False


def _check_offsets(*strides: int) -> None:
    """In-tile offsets are 32-bit: a block of up to 128 rows times a stride must stay below 2^31."""
    big = max((abs(int(s)) for s in strides), default=0)
    if big * 256 >= 2**31:
        raise ValueError(
            f"fastot._triton: a stride of {big} elements is too large for 32-bit in-tile offsets "
            "(at most 2^23 elements per row); make the tensor contiguous or split it"
        )


def _sq_norms(t: torch.Tensor, given: torch.Tensor | None, name: str, acc: torch.dtype) -> torch.Tensor:
    if given is None:
        return t.to(acc).square().sum(-1)
    return _vector(given, name, tuple(t.shape[:2]), acc, t.device)


def lse_sqeuclidean(
    x: torch.Tensor,
    y: torch.Tensor,
    h: torch.Tensor,
    scale: torch.Tensor | float,
    *,
    precision: str = "ieee",
    x2: torch.Tensor | None = None,
    y2: torch.Tensor | None = None,
    splits: int | None = None,
    block_d: int | None = None,
    wrap: Callable[[Any], Any] | None = None,
) -> torch.Tensor:
    """Online log-sum-exp c-transform of the squared Euclidean cost (the ``n x m`` cost is never formed).

    ``out[b, i] = log sum_j exp(h[b, j] - scale[b] * |x[b, i] - y[b, j]|^2)``; the column direction is
    ``lse_sqeuclidean(y, x, h_rows, scale)``.

    Args:
        x: ``(B, n, d)``, y: ``(B, m, d)`` points (float16/bfloat16/float32/float64, any strides).
        h: ``(B, m)``; ``-inf`` = zero weight.
        scale: ``(B,)`` tensor or a number, ``1 / epsilon``.
        precision: ``tl.dot`` precision for float32 inputs, one of :data:`PRECISIONS`.
        x2, y2: optional precomputed squared norms ``(B, n)``, ``(B, m)`` (e.g. once per solve).
        splits: chunks of the reduced axis (default: from the GPU's SM count; 1 on CPU).
        block_d: feature tile (power of two >= 16; default: one tile up to d = 64, else 64).
        wrap: applied to the kernel before launching.

    Returns:
        ``(B, n)``, float64 if any input is float64, else float32.
    """
    B, n, m, D = _check_points(x, y)
    acc = _acc_dtype(x, y, _check_float(h, "h"))
    prec = _check_precision(precision, acc, x, y)
    h = _vector(h, "h", (B, m), acc, x.device)
    s = _scale_vector(scale, B, acc, x.device)
    xn, yn = _sq_norms(x, x2, "x2", acc), _sq_norms(y, y2, "y2", acc)
    if acc == _F64:
        x, y = x.to(acc), y.to(acc)
    _check_offsets(x.stride(1), x.stride(2), y.stride(1), y.stride(2))
    kernel, interpret = _get("lse_sqeuclidean", x.device)
    if B == 0 or n == 0:
        return torch.empty(B, n, dtype=acc, device=x.device)
    if m == 0:
        return torch.full((B, n), -math.inf, dtype=acc, device=x.device)
    if D == 0:  # every cost is 0; a zero feature keeps the kernel off empty tensors
        x, y, D = x.new_zeros(B, n, 1), y.new_zeros(B, m, 1), 1
    block, resident = _d_blocking(D, block_d, prec)
    quantum = _col_quantum(interpret)
    chunk, S = _chunking(m, _splits(B, n, m, x.device, quantum, splits), quantum)
    part = torch.empty(B, S, n, dtype=acc, device=x.device)

    def grid(meta):
        return (B * triton.cdiv(n, meta["BLOCK_M"]), S)

    _launch(kernel, wrap)[grid](
        x, y, xn, yn, h, s, part, n, m, D, chunk,
        x.stride(0), x.stride(1), x.stride(2), y.stride(0), y.stride(1), y.stride(2),
        xn.stride(0), yn.stride(0), h.stride(0), part.stride(0), part.stride(1),
        BLOCK_D=block, X_RESIDENT=resident, PRECISION=prec,
    )  # fmt: skip
    return _merge_lse(part)


def apply_sqeuclidean(
    x: torch.Tensor,
    y: torch.Tensor,
    hr: torch.Tensor,
    hc: torch.Tensor,
    scale: torch.Tensor | float,
    v: torch.Tensor,
    *,
    precision: str = "ieee",
    x2: torch.Tensor | None = None,
    y2: torch.Tensor | None = None,
    splits: int | None = None,
    block_d: int | None = None,
    wrap: Callable[[Any], Any] | None = None,
) -> torch.Tensor:
    """Online plan application ``P @ v`` with ``P_ij = exp(hr_i + hc_j - scale * |x_i - y_j|^2)``.

    ``P^T @ u`` is ``apply_sqeuclidean(y, x, hc, hr, scale, u)``.

    Args:
        x: ``(B, n, d)``, y: ``(B, m, d)`` points.
        hr: ``(B, n)``, hc: ``(B, m)`` log-scalings (``-inf`` = zero weight).
        scale: ``(B,)`` tensor or a number.
        v: ``(B, m, k)``.
        precision, x2, y2, splits, block_d, wrap: as in :func:`lse_sqeuclidean` (``precision`` also
            applies to the ``P @ v`` tile products).

    Returns:
        ``(B, n, k)``, float64 if any input is float64, else float32.
    """
    B, n, m, D = _check_points(x, y)
    _check_float(v, "v")
    if v.dim() != 3 or v.shape[0] != B or v.shape[1] != m:
        raise ValueError(f"v must have shape ({B}, {m}, k), got {tuple(v.shape)}")
    if v.device != x.device:
        raise ValueError(f"v must be on {x.device}, got {v.device}")
    acc = _acc_dtype(x, y, v, _check_float(hr, "hr"), _check_float(hc, "hc"))
    prec = _check_precision(precision, acc, x, y, v)
    hr = _vector(hr, "hr", (B, n), acc, x.device)
    hc = _vector(hc, "hc", (B, m), acc, x.device)
    s = _scale_vector(scale, B, acc, x.device)
    xn, yn = _sq_norms(x, x2, "x2", acc), _sq_norms(y, y2, "y2", acc)
    if acc == _F64:
        x, y, v = x.to(acc), y.to(acc), v.to(acc)
    _check_offsets(x.stride(1), x.stride(2), y.stride(1), y.stride(2), v.stride(1), v.stride(2))
    kernel, interpret = _get("apply_sqeuclidean", x.device)
    KV = v.shape[2]
    if B == 0 or n == 0 or KV == 0 or m == 0:
        return torch.zeros(B, n, KV, dtype=acc, device=x.device)
    if D == 0:
        x, y, D = x.new_zeros(B, n, 1), y.new_zeros(B, m, 1), 1
    block, resident = _d_blocking(D, block_d, prec)
    block_k = max(16, min(64, triton.next_power_of_2(KV)))
    n_kb = triton.cdiv(KV, block_k)
    quantum = _col_quantum(interpret)
    chunk, S = _chunking(m, _splits(B, n, m, x.device, quantum, splits), quantum)
    part = torch.empty(B, S, n, KV, dtype=acc, device=x.device)

    def grid(meta):
        return (B * triton.cdiv(n, meta["BLOCK_M"]), S * n_kb)

    _launch(kernel, wrap)[grid](
        x, y, xn, yn, hr, hc, s, v, part, n, m, D, KV, chunk,
        x.stride(0), x.stride(1), x.stride(2), y.stride(0), y.stride(1), y.stride(2),
        xn.stride(0), yn.stride(0), hr.stride(0), hc.stride(0),
        v.stride(0), v.stride(1), v.stride(2), part.stride(0), part.stride(1), part.stride(2),
        BLOCK_D=block, BLOCK_K=block_k, X_RESIDENT=resident, PRECISION=prec,
    )  # fmt: skip
    return part[:, 0] if S == 1 else part.sum(1)
