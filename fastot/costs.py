"""Ground costs between point clouds."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = [
    "COND_COSTS",
    "COSTS",
    "augmented_points",
    "check_point_clouds",
    "conditional_cost",
    "cost_matrix",
    "fused_cost",
    "sqeuclidean",
]

COSTS = ("sqeuclidean", "euclidean")


def cost_matrix(
    x: Any,
    y: Any,
    y0: Any = None,
    y1: Any = None,
    *,
    cost: str = "sqeuclidean",
    cond_weight: float | torch.Tensor = 1.0,
    cond_cost: str = "auto",
) -> Any:
    """Dense cost matrix between two point clouds, optionally with a condition term (C²OT's cost).

    ``C[i, j] = |x_i - y_j|^2 + cond_weight * c(y0_i, y1_j)`` (or ``|x_i - y_j|`` without conditions).

    Args:
        x: ``(..., n, d)`` floating tensor, or NumPy array.
        y: ``(..., m, d)`` of the same kind (both tensors, or both arrays), same device; batch dimensions
            ``...`` broadcast.
        y0: optional conditions of ``x``: ``(..., n)`` integer/bool class labels, or ``(..., n, e)``
            floating embeddings. Given together with ``y1``.
        y1: conditions of ``y``: ``(..., m)`` labels or ``(..., m, e)`` embeddings, same kind as ``y0``.
        cost: ``"sqeuclidean"``: ``|x_i - y_j|^2``; ``"euclidean"``: ``|x_i - y_j|`` (no conditions).
        cond_weight: ``w >= 0``, a number or a 0-d tensor. ``inf`` (labels only) forbids pairs of different
            classes (their cost is ``+inf``, which the solvers read as forbidden).
        cond_cost: ``c``: ``"label"`` (``1`` where the labels differ, else ``0``), ``"sqeuclidean"``
            (``|y0_i - y1_j|^2``), ``"cosine"`` (``1 - <y0_i, y1_j> / (|y0_i| |y1_j|)``, zero vectors
            count as orthogonal to everything), or ``"auto"``: ``"label"`` for integer/bool conditions,
            ``"sqeuclidean"`` for floating ones.

    Returns:
        ``(..., n, m)`` in the promoted dtype of ``x`` and ``y`` (a tensor on their device, or a NumPy array
        for NumPy input). Differentiable in ``x`` and ``y`` (and in floating conditions).

    Computed with one matrix product, ``|x_i|^2 + |y_j|^2 - 2 <x_i, y_j>``, clamped at 0, after shifting
    both clouds by their common mean (which leaves distances unchanged): fast, but its absolute error is
    about ``eps * (|x_i - c|^2 + |y_j - c|^2)`` with ``c`` that mean, so distances much smaller than the
    clouds' spread lose relative accuracy. float16/bfloat16 inputs are computed in float32 and the result
    rounded back. The euclidean cost's gradient at coincident points is taken to be 0.

    The condition term is fused, never formed as a second ``n x m`` matrix:
    continuous conditions are squared Euclidean after a rescaling, ``w |u - v|^2 = |sqrt(w) u - sqrt(w) v|^2``
    and ``w (1 - <u, v>) = |sqrt(w/2) u - sqrt(w/2) v|^2`` for unit ``u, v`` (cosine), so the condition
    features are appended to the points as extra coordinates and the whole cost is the one matrix product
    over ``d + e`` coordinates (the ``(n, d + e)`` copies are ``O((n + m)(d + e))`` memory). Labels are
    added in one elementwise pass over the product (``C += w`` where the labels differ); in eager mode
    that pass reads an ``n x m`` boolean mask (1 byte per entry; under ``torch.compile`` it fuses away).
    A one-hot encoding as extra coordinates would avoid the mask but puts ``w`` into the product's
    rounding error, which matters for C²OT's ``w = 1e8``.

    Raises:
        TypeError: non-floating point dtypes, a tensor mixed with a non-tensor, labels given for
            ``cond_cost="sqeuclidean"``/``"cosine"``, embeddings for ``"label"``.
        ValueError: unknown ``cost`` / ``cond_cost``; ranks below 2, different ``d``, non-broadcastable
            batch dimensions, different devices; only one of ``y0``, ``y1``; conditions whose leading
            shape is not that of ``x`` / ``y``; conditions with ``cost="euclidean"``; a negative, NaN or
            (for embeddings) infinite ``cond_weight``.
    """
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {COSTS}, got {cost!r}")
    x_is_t, y_is_t = isinstance(x, torch.Tensor), isinstance(y, torch.Tensor)
    if x_is_t != y_is_t:
        raise TypeError(
            f"x and y must both be torch tensors or both be NumPy arrays, got {type(x).__name__} "
            f"and {type(y).__name__}"
        )
    if (y0 is None) != (y1 is None):
        raise ValueError("give both conditions y0 and y1, or neither")
    if not x_is_t:
        xt, yt = _from_numpy(x, "x"), _from_numpy(y, "y")
        if y0 is None:
            return _cost(xt, yt, cost).numpy()
        c0, c1 = torch.as_tensor(np.asarray(y0)), torch.as_tensor(np.asarray(y1))
        return conditional_cost(xt, yt, c0, c1, cond_weight, cond_cost).detach().numpy()
    if y0 is None:
        return _cost(x, y, cost)
    if cost != "sqeuclidean":
        raise ValueError(f'conditions y0, y1 need cost="sqeuclidean", got cost={cost!r}')
    return conditional_cost(x, y, y0, y1, cond_weight, cond_cost)


COND_COSTS = ("auto", "label", "sqeuclidean", "cosine")


def resolve_cond_cost(y0: torch.Tensor, y1: torch.Tensor, cond_cost: str) -> str:
    """Validate the conditions' kinds (metadata only) and return the concrete condition cost."""
    if cond_cost not in COND_COSTS:
        raise ValueError(f"cond_cost must be one of {COND_COSTS}, got {cond_cost!r}")
    for t, name in ((y0, "y0"), (y1, "y1")):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch tensor, got {type(t).__name__}")
        if t.is_complex():
            raise TypeError(f"{name} must hold labels (integer/bool) or real embeddings, got {t.dtype}")
    f0, f1 = y0.is_floating_point(), y1.is_floating_point()
    if f0 != f1:
        raise TypeError(
            f"y0 and y1 must both be labels (integer/bool) or both embeddings (floating), got {y0.dtype} "
            f"and {y1.dtype}"
        )
    if cond_cost == "auto":
        return "sqeuclidean" if f0 else "label"
    if cond_cost == "label" and f0:
        raise TypeError(f'cond_cost="label" needs integer or bool labels y0, y1, got {y0.dtype}')
    if cond_cost != "label" and not f0:
        raise TypeError(f"cond_cost={cond_cost!r} needs floating embeddings y0, y1, got {y0.dtype}")
    return cond_cost


def check_conditions(
    x: torch.Tensor, y: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor, kind: str, names=("x", "y")
) -> None:
    """Shapes/devices of conditions against their points ``x (..., n, d)``, ``y (..., m, d)``."""
    for t, p, name, pname in ((y0, x, "y0", names[0]), (y1, y, "y1", names[1])):
        want = tuple(p.shape[:-1])
        got = tuple(t.shape) if kind == "label" else tuple(t.shape[:-1])
        if kind != "label" and t.dim() < 2:
            raise ValueError(f"{name} embeddings must have shape (..., n, e), got {tuple(t.shape)}")
        if got != want:
            shape = "(..., n)" if kind == "label" else "(..., n, e)"
            raise ValueError(
                f"{name} must have shape {shape} matching {pname} {tuple(p.shape)}, got {tuple(t.shape)}"
            )
        if t.device != p.device:
            raise ValueError(f"{name} must be on {p.device} like {pname}, got {t.device}")
    if kind != "label" and y0.shape[-1] != y1.shape[-1]:
        raise ValueError(
            f"y0 and y1 must have the same embedding size e, got {y0.shape[-1]} and {y1.shape[-1]}"
        )


def check_cond_weight(w: Any, kind: str) -> None:
    if isinstance(w, torch.Tensor):
        if w.dim() != 0:
            raise ValueError(f"cond_weight must be a number or a 0-d tensor, got shape {tuple(w.shape)}")
        if torch.compiler.is_compiling():
            return
        w = float(w)
    if isinstance(w, bool) or not isinstance(w, (int, float)):
        raise TypeError(f"cond_weight must be a number or a 0-d tensor, got {type(w).__name__}")
    if not w >= 0:  # also catches NaN
        raise ValueError(f"cond_weight must be nonnegative, got {w!r}")
    # (a comparison, not math.isinf: under torch.compile a number input may be a traced SymFloat)
    if w == math.inf and kind != "label":
        raise ValueError("cond_weight=inf (a hard constraint) is only available for class labels")


def conditional_cost(
    x: torch.Tensor,
    y: torch.Tensor,
    y0: torch.Tensor,
    y1: torch.Tensor,
    cond_weight: float | torch.Tensor,
    cond_cost: str = "auto",
    *,
    center: str = "common",
) -> torch.Tensor:
    """``|x_i - y_j|^2 + w c(y0_i, y1_j)``, fused (see :func:`cost_matrix`), with validation.

    ``center="common"`` shifts both clouds by one vector (distances unchanged); ``"separate"`` centres each
    cloud on its own mean, which changes the cost by a row and a column constant only (the same optimal
    balanced couplings; used by :func:`fastot.couple` for its conditioning benefits); ``"interaction"``
    keeps only ``-2 <x_i, y_j - q>`` (``q`` the mean of ``y``): again the squared distance up to a row and a
    column constant, for the price of the matrix product alone (square exact couplings).
    """
    check_point_clouds(x, y)
    kind = resolve_cond_cost(y0, y1, cond_cost)
    check_conditions(x, y, y0, y1, kind)
    check_cond_weight(cond_weight, kind)
    dtype = torch.promote_types(x.dtype, y.dtype)
    compute = torch.promote_types(dtype, torch.float32)
    return fused_cost(x.to(compute), y.to(compute), y0, y1, cond_weight, kind, center=center).to(dtype)


def augmented_points(
    x: torch.Tensor,
    y: torch.Tensor,
    y0: torch.Tensor | None,
    y1: torch.Tensor | None,
    cond_weight: float | torch.Tensor,
    kind: str | None,
    *,
    center: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Point clouds whose squared Euclidean distances are the conditional cost (no validation).

    ``|x'_i - y'_j|^2 = |x_i - y_j|^2 + w c(y0_i, y1_j)`` in exact arithmetic, with ``w = cond_weight``:

    - ``kind="sqeuclidean"``: ``x' = [x, sqrt(w) y0]`` (``w |u - v|^2 = |sqrt(w) u - sqrt(w) v|^2``);
    - ``kind="cosine"``: ``x' = [x, sqrt(w / 2) y0 / |y0|]`` (``w (1 - cos) = (w / 2) |u - v|^2`` for unit
      ``u, v``; zero vectors count as orthogonal to everything);
    - ``kind="label"`` (finite ``w``): ``x' = [x, sqrt(w / 2) onehot(y0)]`` over the labels present in
      ``y0`` and ``y1`` (``w 1[y0_i != y1_j] = (w / 2) |oh_i - oh_j|^2``). Eager only: the one-hot width is
      the number of distinct labels. ``w`` enters the cost through the rounding of the product
      ``<x'_i, y'_j>`` (absolute error about ``eps * (|x_i|^2 + |y_j|^2 + w)``), so a huge finite weight
      (C²OT's ``1e8``) is better given as ``inf`` (a hard constraint);
    - ``kind=None``: ``x``, ``y`` themselves (no condition).

    Args:
        x: ``(..., n, d)`` floating points (the compute dtype), y: ``(..., m, d)``; batch dims broadcast
            with the conditions'.
        y0, y1: ``(..., n, e)``, ``(..., m, e)`` floating embeddings or ``(..., n)``, ``(..., m)`` labels.
        cond_weight: ``w >= 0`` (finite), a number or a 0-d tensor.
        kind: ``"sqeuclidean"``, ``"cosine"``, ``"label"`` or ``None``.
        center: ``None`` (no shift), ``"common"`` (both clouds shifted by their common mean: distances
            unchanged) or ``"separate"`` (each cloud on its own mean: the squared distances change by a row
            and a column constant only, so balanced plans do not change). The label block is appended
            after centring and never centred: its share of the cost stays exactly ``w 1[!=]``, as in
            :func:`fused_cost` (centred, it would carry row and column constants of its own).

    Returns:
        ``(x', y')`` of shapes ``(..., n, d + k)``, ``(..., m, d + k)`` (``k`` = ``e``, the number of labels,
        or 0), in ``x``'s dtype. Fresh tensors unless ``kind`` and ``center`` are ``None``.
    """
    fresh = False  # x, y are our own copies (then centre them in place: one n x (d + e) copy, not two)
    if kind in ("sqeuclidean", "cosine"):
        x, y = _append_features(x, y, *_embedding_features(x, y0, y1, cond_weight, kind))
        fresh = True
    if center is not None:
        sx, sy = _centres(x, y, center)
        # in place on our own copies, unless the shift has more batch dimensions (then it broadcasts)
        x = x.sub_(sx) if fresh and sx.shape[:-2] == x.shape[:-2] else x - sx
        y = y.sub_(sy) if fresh and sy.shape[:-2] == y.shape[:-2] else y - sy
    if kind == "label":
        x, y = _append_features(x, y, *_label_features(x, y0, y1, cond_weight))
    return x, y


def _embedding_features(x, y0, y1, w, kind):
    """``sqrt(w) u`` (sqeuclidean) or ``sqrt(w / 2) u / |u|`` (cosine) for both sides, in ``x``'s dtype."""
    u0, u1 = y0.to(x.dtype), y1.to(x.dtype)
    if kind == "cosine":
        u0 = u0 / u0.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        u1 = u1 / u1.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        w = w / 2
    s = w.to(x.dtype).sqrt() if isinstance(w, torch.Tensor) else math.sqrt(w)
    return s * u0, s * u1


def _label_features(x, y0, y1, w):
    """``sqrt(w / 2) onehot(label)`` over the labels present in ``y0`` and ``y1`` (eager: data-dependent
    width), shapes ``(..., n, k)``, ``(..., m, k)``."""
    labels, inv = torch.unique(torch.cat([y0.reshape(-1), y1.reshape(-1)]), return_inverse=True)
    k = labels.shape[0]
    onehot = torch.nn.functional.one_hot(inv, k).to(x.dtype)
    w = w / 2
    s = w.to(x.dtype).sqrt() if isinstance(w, torch.Tensor) else math.sqrt(w)
    onehot = s * onehot
    return onehot[: y0.numel()].reshape(*y0.shape, k), onehot[y0.numel() :].reshape(*y1.shape, k)


def _append_features(x, y, u0, u1):
    """``[x, u0]``, ``[y, u1]`` along the last dim, batch dimensions broadcast."""
    bx = torch.broadcast_shapes(x.shape[:-2], u0.shape[:-2])
    by = torch.broadcast_shapes(y.shape[:-2], u1.shape[:-2])
    x = torch.cat([x.expand(*bx, *x.shape[-2:]), u0.expand(*bx, *u0.shape[-2:])], -1)
    y = torch.cat([y.expand(*by, *y.shape[-2:]), u1.expand(*by, *u1.shape[-2:])], -1)
    return x, y


def _centres(x, y, center):
    """The (detached) shifts of ``x`` and ``y``: each cloud's mean (``"separate"``) or their common mean."""
    if center == "separate":
        return x.mean(-2, keepdim=True).detach(), y.mean(-2, keepdim=True).detach()
    if center != "common":
        raise ValueError(f'center must be "common", "separate" or None, got {center!r}')
    n, m = x.shape[-2], y.shape[-2]
    s = ((x.sum(-2, keepdim=True) + y.sum(-2, keepdim=True)) / torch.sym_max(n + m, 1)).detach()
    return s, s


def fused_cost(
    x: torch.Tensor,
    y: torch.Tensor,
    y0: torch.Tensor | None,
    y1: torch.Tensor | None,
    cond_weight: float | torch.Tensor,
    kind: str | None,
    *,
    center: str = "common",
    clamp: bool = True,
) -> torch.Tensor:
    """The fused conditional cost ``(..., n, m)`` without validation, in ``x``'s (compute) dtype. ``kind``
    is a concrete condition cost (``"label"``, ``"sqeuclidean"``, ``"cosine"``) or ``None`` for no condition.
    Embeddings are appended to the points by :func:`augmented_points` (one product over ``d + e``
    coordinates); labels are added by a mask pass over the product (exact for any ``w``, unlike a one-hot).
    ``clamp=False``: rounding may leave tiny negative entries (an assignment solver does not mind), and for
    few coordinates the whole cost is then one matrix product (see below)."""
    w = cond_weight
    emb = kind if kind in ("sqeuclidean", "cosine") else None
    if center == "interaction":
        x, y = augmented_points(x, y, y0, y1, w, emb)
        fresh = emb is not None
        sy = y.mean(-2, keepdim=True).detach()
        # -2 <x_i, y_j - q> (q the mean of y) is |x_i - y_j|^2 minus |x_i|^2 + 2 <x_i, q> (a row constant)
        # and |y_j|^2 (a column constant): the same optimal balanced couplings, for one matrix product
        # and one pass over y (centring y and the factor -2 together: -2 (y - q) = 2 q - 2 y). Centring
        # only y keeps the product's rounding small when the data sit away from the origin (x, the noise,
        # usually does not); the assignment solver runs as fast on it as on the doubly centred product.
        y = y.mul_(-2.0).add_(2.0 * sy) if fresh else torch.add(2.0 * sy, y, alpha=-2.0)
        C = torch.matmul(x, y.mT)
    else:
        x, y = augmented_points(x, y, y0, y1, w, emb, center=center)
        if _triton_cost_applies(x, y, w):
            return _triton_cost(x, y, y0 if kind == "label" else None, y1, w, clamp)
        if not clamp and x.shape[-1] <= 64:
            # One product writes the finished matrix: [x_i, |x_i|^2, 1] . [-2 y_j, 1, |y_j|^2]. (Separate
            # passes for the norms, the bias and the clamp each cost as much as the product at small d.)
            xx = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square()
            yy = torch.linalg.vector_norm(y, dim=-1, keepdim=True).square()
            xa = torch.cat([x, xx, torch.ones_like(xx)], -1)
            ya = torch.cat([-2.0 * y, torch.ones_like(yy), yy], -1)
            C = torch.matmul(xa, ya.mT)
        else:
            C = sqeuclidean(x, y)
    if kind == "label":
        differ = y0.unsqueeze(-1) != y1.unsqueeze(-2)
        # in place when no gradient flows through C: no second n x m matrix
        inplace = not C.requires_grad and not torch.compiler.is_compiling()
        if isinstance(w, torch.Tensor):
            C = (
                C.add_(differ * w.to(C.dtype))
                if inplace and not w.requires_grad
                else C + differ * w.to(C.dtype)
            )
        elif w == math.inf:
            C = C.masked_fill_(differ, math.inf) if inplace else C.masked_fill(differ, math.inf)
        elif w != 0:
            C = C.add_(differ, alpha=w) if inplace else C.add(differ, alpha=w)
    return C


# The fused Triton kernel writes each cost tile once (norms, clamp and the label term in its epilogue).
# It pays where the product is cheap and the passes over the n x m output dominate: few coordinates. With
# many, cuBLAS's product (then torch's passes) is faster than Triton's exact-float32 FMA product.
_TRITON_COST_MAX_FEATURES = 64


def _triton_cost_applies(x: torch.Tensor, y: torch.Tensor, w: Any) -> bool:
    """CUDA tensors in eager mode (under ``torch.compile`` Inductor fuses the torch formulation itself),
    no gradient needed (the kernel has no backward), few coordinates, Triton importable."""
    if x.device.type != "cuda" or torch.compiler.is_compiling():
        return False
    if x.shape[-1] > _TRITON_COST_MAX_FEATURES or x.dtype not in (torch.float32, torch.float64):
        return False
    wants_grad = x.requires_grad or y.requires_grad or (isinstance(w, torch.Tensor) and w.requires_grad)
    if torch.is_grad_enabled() and wants_grad:
        return False
    return _triton_cost_launcher() is not None


@functools.cache
def _triton_cost_launcher() -> Callable[..., torch.Tensor] | None:
    """:func:`fastot._triton.cost.sqeuclidean_cost`, or ``None`` when Triton cannot be imported."""
    try:
        from ._triton.cost import sqeuclidean_cost
    except ImportError:
        return None
    return sqeuclidean_cost


def _triton_cost(x, y, y0, y1, w, clamp: bool) -> torch.Tensor:
    """``(..., n, d), (..., m, d)`` (labels ``(..., n)``, ``(..., m)`` or ``None``) -> ``(..., n, m)`` by
    :func:`fastot._triton.cost.sqeuclidean_cost` over the broadcast batch."""
    sqeuclidean_cost = _triton_cost_launcher()
    batch = torch.broadcast_shapes(
        x.shape[:-2], y.shape[:-2], *(() if y0 is None else (y0.shape[:-1], y1.shape[:-1]))
    )
    n, m, d = x.shape[-2], y.shape[-2], x.shape[-1]
    xb = x.expand(*batch, n, d).reshape(-1, n, d)
    yb = y.expand(*batch, m, d).reshape(-1, m, d)
    l0 = l1 = None
    if y0 is not None:
        l0, l1 = y0.expand(*batch, n).reshape(-1, n), y1.expand(*batch, m).reshape(-1, m)
    weight = w.detach() if isinstance(w, torch.Tensor) else w
    C = sqeuclidean_cost(xb, yb, l0, l1, weight if y0 is not None else 0.0, clamp=clamp, out_dtype=x.dtype)
    return C.reshape(*batch, n, m)


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
    xx = torch.linalg.vector_norm(x, dim=-1).square()  # one pass, no (n, d) temporary
    yy = torch.linalg.vector_norm(y, dim=-1).square()
    # Two passes over the (n, m) output besides the product: the product writes -2<x, y> + |y|^2 (addmm's
    # bias broadcast), then one in-place pass adds |x|^2 and clamps.
    if x.dim() == 2 and y.dim() == 2:
        C = torch.addmm(yy.unsqueeze(0), x, y.T, alpha=-2.0)
    else:
        C = torch.matmul(x, y.mT).mul_(-2.0).add_(yy.unsqueeze(-2))
    return C.add_(xx.unsqueeze(-1)).clamp_min_(0.0)


def _safe_sqrt(C: torch.Tensor) -> torch.Tensor:
    # sqrt'(0) = inf would turn the zero gradient of clamped entries into NaN; take 0 there instead.
    # (C * 0 rather than 0 keeps NaN entries NaN.)
    positive = C > 0
    return torch.where(positive, torch.where(positive, C, 1.0).sqrt(), C * 0.0)
