"""torch.library ops for the log-sum-exp reductions (soft c-transforms) of log-domain Sinkhorn.

``fastot::lse_dense(Tensor C, Tensor h, Tensor scale, bool transpose) -> Tensor``
    ``C (B, n, m)``, ``scale (B,)`` (= 1 / epsilon), float32 or float64 (all the same dtype);
    ``transpose=False``: ``h (B, m)`` -> ``(B, n)``,
    ``out[b, i] = log sum_j exp(h[b, j] - scale[b] C[b, i, j])``;
    ``transpose=True``: ``h (B, n)`` -> ``(B, m)``,
    ``out[b, j] = log sum_i exp(h[b, i] - scale[b] C[b, i, j])``.
``fastot::lse_sqeuclidean(Tensor x, Tensor y, Tensor h, Tensor scale) -> Tensor``
    ``x (B, n, d)``, ``y (B, m, d)``, ``h (B, m)`` -> ``(B, n)`` with ``C_ij = |x_i - y_j|^2`` computed on
    the fly (the ``n x m`` cost is never formed); the column direction swaps ``x`` and ``y``.

``+inf`` costs and ``-inf`` entries of ``h`` give zero terms; an empty sum gives ``-inf``.

Devices: CPU runs the C++ kernels (``csrc/softmin.cpp``: vectorised exp, one copy per instruction set,
rows in parallel on ``torch.get_num_threads()`` threads, GIL released); CUDA runs the Triton kernels
(``fastot._triton``). The ops are reductions inside a solve that runs under ``no_grad`` (gradients of
Sinkhorn outputs come from the envelope theorem, see :func:`fastot.sinkhorn`): they have no autograd
formula.
"""

from __future__ import annotations

import torch

from .. import _C

__all__ = [
    "lse",
    "lse_dense",
    "lse_dense_impl",
    "lse_sqeuclidean",
    "lse_sqeuclidean_impl",
    "num_threads",
    "sample_inputs_lse_dense",
    "sample_inputs_lse_sqeuclidean",
]


def num_threads(work: int) -> int:
    """Threads for a CPU kernel call doing ``work`` (~ cost entries): ``torch.get_num_threads()``, or 1
    for small calls (starting a thread costs tens of microseconds; the kernels also cap it by work)."""
    return 1 if work < (1 << 16) else max(1, torch.get_num_threads())


def _threads(rows: int, entries: int) -> int:
    return max(1, min(num_threads(entries), rows))


def _np(t: torch.Tensor):
    return t.detach().contiguous().numpy()


def lse_dense_impl(C: torch.Tensor, h: torch.Tensor, scale: torch.Tensor, transpose: bool) -> torch.Tensor:
    """The ``fastot::lse_dense`` kernels without the dispatcher (see :func:`lse`)."""
    if C.device.type == "cuda":
        from .._triton import lse_dense as triton_lse_dense

        return triton_lse_dense(C, h, scale, transpose).to(C.dtype)
    out = _C.lse_dense(_np(C), _np(h), _np(scale), transpose, _threads(C.shape[0] * C.shape[1], C.numel()))
    return torch.from_numpy(out)


lse_dense = torch.library.custom_op(
    "fastot::lse_dense", lse_dense_impl, mutates_args=(), device_types=("cpu", "cuda")
)


@lse_dense.register_fake
def _(C: torch.Tensor, h: torch.Tensor, scale: torch.Tensor, transpose: bool) -> torch.Tensor:
    torch._check(C.dim() == 3, lambda: f"C must have shape (B, n, m), got {tuple(C.shape)}")
    B, n, m = C.shape
    return C.new_empty((B, m) if transpose else (B, n))


def lse_sqeuclidean_impl(
    x: torch.Tensor, y: torch.Tensor, h: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """The ``fastot::lse_sqeuclidean`` kernels without the dispatcher (see :func:`lse`)."""
    if x.device.type == "cuda":
        from .._triton import lse_sqeuclidean as triton_lse_sqeuclidean

        return triton_lse_sqeuclidean(x, y, h, scale).to(x.dtype)
    threads = _threads(x.shape[0] * x.shape[1], x.shape[0] * x.shape[1] * y.shape[1] * x.shape[2])
    out = _C.lse_sqeuclidean(_np(x), _np(y), _np(h), _np(scale), threads)
    return torch.from_numpy(out)


lse_sqeuclidean = torch.library.custom_op(
    "fastot::lse_sqeuclidean", lse_sqeuclidean_impl, mutates_args=(), device_types=("cpu", "cuda")
)


@lse_sqeuclidean.register_fake
def _(x: torch.Tensor, y: torch.Tensor, h: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    torch._check(x.dim() == 3 and y.dim() == 3, lambda: "x and y must have shape (B, n, d), (B, m, d)")
    return x.new_empty((x.shape[0], x.shape[1]))


def lse(op, impl, *args):
    """Calls ``op`` while tracing (``torch.compile``) and its kernel directly in eager mode: the same
    kernel either way, minus the dispatcher's ~50 us per call, which dominates a Sinkhorn iteration on
    small problems."""
    if torch.compiler.is_compiling():
        return op(*args)
    return impl(*args)


def sample_inputs_lse_dense(device: str = "cpu") -> list[tuple[tuple, dict]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for dtype in (torch.float32, torch.float64):
        for B, n, m in ((1, 1, 1), (2, 5, 7), (3, 9, 4)):
            C = torch.rand(B, n, m, generator=g, dtype=dtype).to(device)
            C[..., 0, 0] = float("inf")
            scale = (torch.rand(B, generator=g, dtype=dtype) + 0.5).to(device)
            for transpose in (False, True):
                h = torch.randn(B, n if transpose else m, generator=g, dtype=dtype).to(device)
                out.append(((C, h, scale, transpose), {}))
    return out


def sample_inputs_lse_sqeuclidean(device: str = "cpu") -> list[tuple[tuple, dict]]:
    g = torch.Generator().manual_seed(1)
    out = []
    for dtype in (torch.float32, torch.float64):
        for B, n, m, d in ((1, 1, 1, 1), (2, 5, 7, 3), (1, 17, 9, 33)):
            x = torch.randn(B, n, d, generator=g, dtype=dtype).to(device)
            y = torch.randn(B, m, d, generator=g, dtype=dtype).to(device)
            h = torch.randn(B, m, generator=g, dtype=dtype).to(device)
            scale = (torch.rand(B, generator=g, dtype=dtype) + 0.5).to(device)
            out.append(((x, y, h, scale), {}))
    return out
