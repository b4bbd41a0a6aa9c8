"""Public entropic OT API: ``fastot.sinkhorn``."""

from __future__ import annotations

import math
from typing import Any

import torch

from .costs import cost_matrix
from .geometry import DenseGeometry, Geometry, PointCloudGeometry
from .ops import sinkhorn as _sinkhorn_ops
from .outputs import SinkhornOutput
from .solvers.sinkhorn import SinkhornState

__all__ = ["sinkhorn"]

MODES = ("auto", "dense", "online")
# "auto" switches to online mode beyond this many cost entries per call (float32: 256 MiB)...
_AUTO_ONLINE_ENTRIES = 1 << 26
# ...when the points are this many times smaller than the cost. An online iteration recomputes the
# n m d products (at d = 3584, n = 6400: 1.25 s per iteration against 8 ms dense, measured) and its
# working copies of the points take about 2.5x their size, so with many features it saves no memory.
_AUTO_ONLINE_POINT_RATIO = 8


def auto_online(entries: int, point_entries: int) -> bool:
    """The ``mode="auto"`` rule: online when the cost would have more than 2^26 entries (all problems)
    and the points (``point_entries`` = batch x (n + m) x d) are at least 8x smaller than it."""
    return entries > _AUTO_ONLINE_ENTRIES and _AUTO_ONLINE_POINT_RATIO * point_entries <= entries


def _weights(w: Any, name: str, shape: tuple[int, ...], dtype, device) -> torch.Tensor:
    if w is None:
        return torch.full(shape, 1.0 / shape[-1], dtype=dtype, device=device)
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(w).__name__}")
    if not (w.dtype.is_floating_point):
        raise TypeError(f"{name} must have a floating dtype, got {w.dtype}")
    if w.device != device:
        raise ValueError(f"{name} must be on {device}, got {w.device}")
    try:
        w = torch.broadcast_to(w, shape)
    except RuntimeError:
        raise ValueError(
            f"{name} must have shape {tuple(shape)} (or broadcast to it), got {tuple(w.shape)}"
        ) from None
    if not torch.compiler.is_compiling() and not bool(((w >= 0) & torch.isfinite(w)).all()):
        raise ValueError(f"{name} must be finite and nonnegative")
    return w.to(dtype)


def _reg_m_pair(reg_m: Any) -> tuple[float | None, float | None]:
    if reg_m is None:
        return (None, None)
    pair = tuple(reg_m) if isinstance(reg_m, (tuple, list)) else (reg_m, reg_m)
    if len(pair) != 2:
        raise ValueError(f"reg_m must be a positive number or a pair of them, got {reg_m!r}")
    out = []
    for r in pair:
        if r is None or (isinstance(r, float) and math.isinf(r)):
            out.append(None)  # that marginal is kept exactly
            continue
        if not isinstance(r, (int, float)) or not r > 0:
            raise ValueError(f"reg_m must be a positive number or a pair of them, got {reg_m!r}")
        out.append(float(r))
    return out[0], out[1]


def sinkhorn(
    x: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    *,
    cost: str | torch.Tensor = "sqeuclidean",
    epsilon: float | torch.Tensor,
    reg_m: float | tuple[float, float] | None = None,
    mass: float | torch.Tensor | None = None,
    mode: str = "auto",
    max_iter: int = 1000,
    tol: float | None = 1e-6,
    check_every: int = 10,
    epsilon_init: float | torch.Tensor | None = None,
    epsilon_decay: float = 0.5,
    f_init: torch.Tensor | None = None,
    g_init: torch.Tensor | None = None,
    strict: bool = False,
) -> SinkhornOutput:
    """Entropic optimal transport by log-domain Sinkhorn, batched.

    Solves ``min_P <P, C> + epsilon * KL(P | a ⊗ b)`` subject to ``P 1 = a``, ``P^T 1 = b`` (balanced),
    or with the marginal constraints replaced by ``reg_m * KL(P 1 | a) + reg_m * KL(P^T 1 | b)``
    (``reg_m``: KL-unbalanced transport, POT's ``reg_m``), or by ``P 1 <= a``, ``P^T 1 <= b``,
    ``sum P = mass`` (partial transport, POT's ``entropic_partial_wasserstein``).

    Args:
        x: ``(..., n, d)`` points (with a cost name), or ``None`` with a dense ``cost`` tensor.
        y: ``(..., m, d)`` points, or ``None``.
        a: ``(..., n)`` nonnegative weights (default uniform ``1/n``; zeros allowed).
        b: ``(..., m)`` nonnegative weights (default uniform ``1/m``).
        cost: ``"sqeuclidean"`` (``|x_i - y_j|^2``) or ``"euclidean"`` with points, or a dense
            ``(..., n, m)`` cost tensor (then ``x``, ``y`` are ``None``); ``+inf`` marks forbidden pairs.
        epsilon: temperature, absolute on the cost as given, a positive number or a ``(...)`` tensor.
            POT's ``reg`` is the same number: ``fastot.sinkhorn(cost=M, a=a, b=b, epsilon=reg)`` solves
            ``ot.sinkhorn(a, b, M, reg)``. GeomLoss's ``blur`` with ``p=2`` corresponds to
            ``epsilon = blur**2`` on the cost ``|x - y|^2 / 2``, i.e. ``epsilon = 2 * blur**2`` here.
        reg_m: KL marginal penalty: a positive number, a pair ``(reg_m_a, reg_m_b)``, or ``None`` /
            ``inf`` for an exact marginal.
        mass: partial transport (POT's ``m`` of ``entropic_partial_wasserstein``): move exactly this
            total mass with ``P 1 <= a``, ``P^T 1 <= b``; ``0 < mass <= min(sum a, sum b)``; a number or a
            ``(...)`` tensor. Not combined with ``reg_m``.
        mode: ``"dense"`` forms the ``n x m`` cost; ``"online"`` never does (squared Euclidean points
            only; cost computed block by block, memory ``O((n + m) d)``); ``"auto"``: online for point
            clouds with more than 2^26 cost entries in all whose points are at least 8x smaller than the
            cost (with many features, online saves no memory and recomputes n m d products per
            iteration), dense otherwise.
        max_iter: iteration budget (one iteration updates ``g`` then ``f``, as POT's ``sinkhorn_log``).
        tol: stop a problem when its error is at most ``tol``: the L1 error of the column marginal
            (balanced; the row marginal is exact after each iteration), or the largest change of
            ``f``, ``g`` over an iteration divided by ``epsilon`` (unbalanced). ``None`` runs exactly
            ``max_iter`` iterations with no host synchronisation: the mode that CUDA graphs can
            capture. Under ``torch.compile(fullgraph=True)`` both work: the whole solve is one op
            (``fastot::sinkhorn_dense`` / ``fastot::sinkhorn_sqeuclidean``), whatever ``tol`` and
            ``max_iter``.
        check_every: measure the error every this many iterations (a host synchronisation on GPU);
            converged problems of a batch are skipped from then on.
        epsilon_init: epsilon scaling: start at this temperature and multiply by ``epsilon_decay`` each
            iteration down to ``epsilon`` (stopping is only allowed at ``epsilon``).
        f_init, g_init: warm start potentials ``(..., n)``, ``(..., m)`` (e.g. from a previous step).
        strict: raise ``RuntimeError`` if a problem did not converge.

    Returns:
        :class:`~fastot.outputs.SinkhornOutput` (potentials, value ``<P, C>``, ``n_iter``, ``converged``,
        ``error``; ``plan()`` and ``apply(v)``). Computed in float64 for float64 inputs and float32
        otherwise (float16/bfloat16 inputs are accumulated in float32).

    Raises:
        ValueError / TypeError: inconsistent shapes, devices or dtypes, negative or non-finite weights,
        non-positive epsilon, NaN in the cost or points, unknown ``mode`` / ``cost``.
        RuntimeError: ``strict`` and some problem did not converge.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not isinstance(check_every, int) or check_every < 1:
        raise ValueError(f"check_every must be a positive integer, got {check_every!r}")
    if tol is not None and not tol >= 0:
        raise ValueError(f"tol must be nonnegative or None, got {tol!r}")
    if not 0 < epsilon_decay < 1:
        raise ValueError(f"epsilon_decay must be in (0, 1), got {epsilon_decay!r}")
    reg_pair = _reg_m_pair(reg_m)

    # ---- the geometry (dense cost or point clouds) and the differentiable cost for the value
    dense_cost: torch.Tensor | None = None
    points: tuple[torch.Tensor, torch.Tensor] | None = None
    if isinstance(cost, torch.Tensor):
        if x is not None or y is not None:
            raise ValueError("give either a dense cost tensor or points x, y with a cost name, not both")
        if cost.dim() < 2:
            raise ValueError(f"cost must have shape (..., n, m), got {tuple(cost.shape)}")
        if not cost.dtype.is_floating_point:
            raise TypeError(f"cost must have a floating dtype, got {cost.dtype}")
        if mode == "online":
            raise ValueError('mode="online" needs points x, y and a cost name, not a dense cost')
        if not torch.compiler.is_compiling() and bool(torch.isnan(cost).any() | (cost == -math.inf).any()):
            raise ValueError("cost contains NaN or -inf")
        dense_cost = cost
        batch_shape, n, m = tuple(cost.shape[:-2]), cost.shape[-2], cost.shape[-1]
        device = cost.device
        dtype = torch.float64 if cost.dtype == torch.float64 else torch.float32
    elif isinstance(cost, str):
        if x is None or y is None:
            raise ValueError("points x and y are required with a cost name")
        for t, name in ((x, "x"), (y, "y")):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if not t.dtype.is_floating_point:
                raise TypeError(f"{name} must have a floating dtype, got {t.dtype}")
            if t.dim() < 2:
                raise ValueError(f"{name} must have shape (..., points, d), got {tuple(t.shape)}")
            if not torch.compiler.is_compiling() and not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} contains non-finite values")
        if x.shape[-1] != y.shape[-1]:
            raise ValueError(f"x and y must have the same d, got {x.shape[-1]} and {y.shape[-1]}")
        if x.shape[:-2] != y.shape[:-2]:
            raise ValueError(f"x and y must have the same batch shape, got {x.shape[:-2]} and {y.shape[:-2]}")
        if x.device != y.device:
            raise ValueError(f"x and y must be on one device, got {x.device} and {y.device}")
        batch_shape, n, m = tuple(x.shape[:-2]), x.shape[-2], y.shape[-2]
        device = x.device
        dtype = torch.float64 if torch.float64 in (x.dtype, y.dtype) else torch.float32
        entries = math.prod(batch_shape) * n * m
        point_entries = math.prod(batch_shape) * (n + m) * x.shape[-1]
        online = mode == "online" or (
            mode == "auto" and cost == "sqeuclidean" and auto_online(entries, point_entries)
        )
        if online:
            if cost != "sqeuclidean":
                raise ValueError(f'mode="online" supports cost="sqeuclidean" only, got {cost!r}')
            points = (x, y)
        else:
            dense_cost = cost_matrix(x, y, cost=cost)  # validates the name
    else:
        raise TypeError(f"cost must be a cost name or a tensor, got {type(cost).__name__}")
    if n == 0 or m == 0:
        raise ValueError(f"both sides need at least one point, got n={n}, m={m}")

    B = math.prod(batch_shape)
    a_full = _weights(a, "a", (*batch_shape, n), dtype, device).reshape(B, n)
    b_full = _weights(b, "b", (*batch_shape, m), dtype, device).reshape(B, m)
    eps = _positive(epsilon, "epsilon", batch_shape, dtype, device).reshape(B)
    eps0 = None
    if epsilon_init is not None:
        eps0 = _positive(epsilon_init, "epsilon_init", batch_shape, dtype, device).reshape(B)
    f0 = g0 = None
    if f_init is not None:
        f0 = _potential(f_init, "f_init", (*batch_shape, n), dtype, device).reshape(B, n)
    if g_init is not None:
        g0 = _potential(g_init, "g_init", (*batch_shape, m), dtype, device).reshape(B, m)
    mass_t = None
    if mass is not None:
        if reg_pair != (None, None):
            raise ValueError("give reg_m (unbalanced) or mass (partial), not both")
        mass_t = _positive(mass, "mass", batch_shape, dtype, device).reshape(B)
        limit = torch.minimum(a_full.sum(1), b_full.sum(1))
        if not torch.compiler.is_compiling() and bool((mass_t > limit * (1 + 1e-12)).any()):
            raise ValueError("mass must be at most min(sum(a), sum(b))")
    if (reg_pair != (None, None) or mass is not None) and any(
        w is not None and w.requires_grad for w in (a, b)
    ):
        raise ValueError(
            "gradients with respect to a and b are only available for balanced transport "
            "(reg_m=None, mass=None)"
        )

    geom: Geometry
    if points is not None:
        xs = points[0].detach().to(dtype).reshape(B, n, -1)
        ys = points[1].detach().to(dtype).reshape(B, m, -1)
        geom = PointCloudGeometry(xs, ys)
    else:
        geom = DenseGeometry(dense_cost.detach().to(dtype).reshape(B, n, m))

    with torch.no_grad():
        log_a, log_b = a_full.detach().log(), b_full.detach().log()
        # The whole solve is one op (see fastot.ops.sinkhorn): one node in a compiled graph; in eager
        # mode its body is called directly (the same code, minus the dispatcher).
        options = (log_a, log_b, eps, eps0, f0, g0, mass_t, *reg_pair, max_iter, tol, check_every,
                   float(epsilon_decay))  # fmt: skip
        compiling = torch.compiler.is_compiling()
        if isinstance(geom, PointCloudGeometry):
            solve = (
                _sinkhorn_ops.sinkhorn_sqeuclidean if compiling else _sinkhorn_ops.sinkhorn_sqeuclidean_impl
            )
            f, g, n_iter, converged, error, value = solve(geom.x, geom.y, *options)
        else:
            solve = _sinkhorn_ops.sinkhorn_dense if compiling else _sinkhorn_ops.sinkhorn_dense_impl
            f, g, n_iter, converged, error, value = solve(geom.C, *options)
        state = SinkhornState(f=f, g=g, n_iter=n_iter, converged=converged, error=error)
        hr = log_a + state.f / eps[:, None]
        hc = log_b + state.g / eps[:, None]

    value = _attach_gradients(value, geom, hr, hc, eps, state, dense_cost, points, a, b, a_full, b_full, B)
    if strict and not torch.compiler.is_compiling() and not bool(state.converged.all()):
        bad = int((~state.converged).sum())
        raise RuntimeError(f"sinkhorn did not converge for {bad} of {B} problems within max_iter={max_iter}")

    def shaped(t: torch.Tensor, *tail: int) -> torch.Tensor:
        return t.reshape((*batch_shape, *tail))

    return SinkhornOutput(
        f=shaped(state.f, n),
        g=shaped(state.g, m),
        value=shaped(value),
        n_iter=shaped(state.n_iter),
        converged=shaped(state.converged),
        error=shaped(state.error),
        epsilon=shaped(eps),
        _geometry=geom,
        _log_a=log_a,
        _log_b=log_b,
    )


def _positive(v: Any, name: str, batch_shape, dtype, device) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=dtype, device=device)
    try:
        t = torch.broadcast_to(t, batch_shape)
    except RuntimeError:
        raise ValueError(f"{name} must be a number or broadcast to the batch shape {batch_shape}") from None
    if not torch.compiler.is_compiling() and not bool(((t > 0) & torch.isfinite(t)).all()):
        raise ValueError(f"{name} must be positive and finite, got {v!r}")
    return t


def _potential(v: Any, name: str, shape, dtype, device) -> torch.Tensor:
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
    if tuple(v.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(v.shape)}")
    return v.detach().to(dtype=dtype, device=device)


def _attach_gradients(value, geom, hr, hc, eps, state, dense_cost, points, a, b, a_full, b_full, B):
    """Make ``value`` differentiable by the envelope theorem (as POT's ``sinkhorn2``): the plan and the
    potentials are held fixed, so ``d value / dC = P``, ``d value / da = f``, ``d value / db = g``; for
    points, ``d value / dx_i = 2 (r_i x_i - (P y)_i)``, ``d value / dy_j = 2 (c_j y_j - (P^T x)_j)``
    (r, c the plan's marginals). Each term is ``(t - t.detach()) * grad``: zero in value, exact in
    gradient."""
    if not torch.is_grad_enabled():
        return value
    extra = torch.zeros_like(value)
    scale = 1.0 / eps
    if dense_cost is not None and dense_cost.requires_grad:
        C = dense_cost.reshape(B, geom.n, geom.m)
        P = geom.plan(hr, hc, scale).to(C.dtype)
        delta = torch.where(torch.isfinite(C), C - C.detach(), 0)
        extra = extra + (P * delta).sum((1, 2)).to(value.dtype)
    if points is not None and (points[0].requires_grad or points[1].requires_grad):
        x, y = points
        xs, ys = geom.x, geom.y
        ones_m = torch.ones(B, geom.m, 1, dtype=geom.dtype, device=geom.device)
        ones_n = torch.ones(B, geom.n, 1, dtype=geom.dtype, device=geom.device)
        r = geom.apply(hr, hc, scale, ones_m)
        c = geom.apply_transpose(hr, hc, scale, ones_n)
        grad_x = 2 * (r * xs - geom.apply(hr, hc, scale, ys))
        grad_y = 2 * (c * ys - geom.apply_transpose(hr, hc, scale, xs))
        xr, yr = x.reshape(B, geom.n, -1), y.reshape(B, geom.m, -1)
        extra = extra + ((xr - xr.detach()) * grad_x.to(xr.dtype)).sum((1, 2)).to(value.dtype)
        extra = extra + ((yr - yr.detach()) * grad_y.to(yr.dtype)).sum((1, 2)).to(value.dtype)
    for w, w_full, pot in ((a, a_full, state.f), (b, b_full, state.g)):
        if w is not None and w.requires_grad:
            extra = extra + ((w_full - w_full.detach()) * pot.to(w_full.dtype)).sum(1).to(value.dtype)
    return value + extra
