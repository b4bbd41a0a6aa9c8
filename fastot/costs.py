"""Ground costs between point clouds."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["COSTS", "check_point_clouds", "cost_matrix", "sqeuclidean"]

COSTS = ("sqeuclidean", "euclidean")


def cost_matrix(x: Any, y: Any, *, cost: str = "sqeuclidean") -> Any:
    """Dense cost matrix between two point clouds.

    Args:
        x: ``(..., n, d)`` floating tensor, or NumPy array.
        y: ``(..., m, d)`` of the same kind (both tensors, or both arrays), same device; batch dimensions
            ``...`` broadcast.
        cost: ``"sqeuclidean"``: ``C[i, j] = |x_i - y_j|^2``; ``"euclidean"``: ``|x_i - y_j|``.

    Returns:
        ``(..., n, m)`` in the promoted dtype of ``x`` and ``y`` (a tensor on their device, or a NumPy array
        for NumPy input). Differentiable in ``x`` and ``y``.

    Computed with one matrix product, ``|x_i|^2 + |y_j|^2 - 2 <x_i, y_j>``, clamped at 0, after shifting
    both clouds by their common mean (which leaves distances unchanged): fast, but its absolute error is
    about ``eps * (|x_i - c|^2 + |y_j - c|^2)`` with ``c`` that mean, so distances much smaller than the
    clouds' spread lose relative accuracy. float16/bfloat16 inputs are computed in float32 and the result
    rounded back. The euclidean cost's gradient at coincident points is taken to be 0.

    Raises:
        TypeError: non-floating dtypes, or a tensor mixed with a non-tensor.
        ValueError: unknown ``cost``; ranks below 2, different ``d``, non-broadcastable batch dimensions,
            different devices.
    """
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {COSTS}, got {cost!r}")
    x_is_t, y_is_t = isinstance(x, torch.Tensor), isinstance(y, torch.Tensor)
    if x_is_t != y_is_t:
        raise TypeError(
            f"x and y must both be torch tensors or both be NumPy arrays, got {type(x).__name__} "
            f"and {type(y).__name__}"
        )
    if not x_is_t:
        xt, yt = _from_numpy(x, "x"), _from_numpy(y, "y")
        return _cost(xt, yt, cost).numpy()
    return _cost(x, y, cost)


def _from_numpy(a: Any, name: str) -> torch.Tensor:
    arr = np.asarray(a)
    if arr.dtype not in (np.float16, np.float32, np.float64):
        raise TypeError(f"{name} must have a floating dtype (float16, float32 or float64), got {arr.dtype}")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return torch.from_numpy(arr)


def check_point_clouds(x: torch.Tensor, y: torch.Tensor, names: tuple[str, str] = ("x", "y")) -> None:
    """Shape/dtype/device checks for ``x (..., n, d)``, ``y (..., m, d)`` (metadata only: compile-safe)."""
    nx, ny = names
    for t, name in ((x, nx), (y, ny)):
        if not t.is_floating_point():
            raise TypeError(f"{name} must have a floating dtype, got {t.dtype}")
        if t.dim() < 2:
            raise ValueError(f"{name} must have shape (..., n, d), got shape {tuple(t.shape)}")
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(
            f"{nx} and {ny} must have the same number of features d: {nx} (..., n, d) has shape "
            f"{tuple(x.shape)}, {ny} (..., m, d) has shape {tuple(y.shape)}"
        )
    if x.device != y.device:
        raise ValueError(f"{nx} and {ny} must be on the same device, got {x.device} and {y.device}")
    try:
        torch.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"batch dimensions of {nx} {tuple(x.shape)} and {ny} {tuple(y.shape)} do not broadcast"
        ) from None


def _cost(x: torch.Tensor, y: torch.Tensor, cost: str) -> torch.Tensor:
    check_point_clouds(x, y)
    dtype = torch.promote_types(x.dtype, y.dtype)
    compute = torch.promote_types(dtype, torch.float32)
    x, y = x.to(compute), y.to(compute)
    # Shift both clouds by their common mean: distances are unchanged, but the norms entering the
    # matrix-product formula shrink, and with them its cancellation error (clouds far from the origin).
    # The shift is detached: the cost does not depend on it, so gradients are those of the formula.
    n, m = x.shape[-2], y.shape[-2]
    shift = ((x.sum(-2, keepdim=True) + y.sum(-2, keepdim=True)) / torch.sym_max(n + m, 1)).detach()
    C = sqeuclidean(x - shift, y - shift)
    if cost == "euclidean":
        C = _safe_sqrt(C)
    return C.to(dtype)


def sqeuclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(..., n, d), (..., m, d) -> (..., n, m)`` squared distances by the matrix-product formula, in the
    inputs' (common) dtype, clamped at 0. No validation: callers check shapes and dtypes."""
    xx = (x * x).sum(-1)
    yy = (y * y).sum(-1)
    C = xx.unsqueeze(-1) + yy.unsqueeze(-2) - 2.0 * torch.matmul(x, y.mT)
    return C.clamp_min(0.0)


def _safe_sqrt(C: torch.Tensor) -> torch.Tensor:
    # sqrt'(0) = inf would turn the zero gradient of clamped entries into NaN; take 0 there instead.
    # (C * 0 rather than 0 keeps NaN entries NaN.)
    positive = C > 0
    return torch.where(positive, torch.where(positive, C, 1.0).sqrt(), C * 0.0)
