r"""Reference log-domain Sinkhorn (balanced, KL-unbalanced, partial) in plain PyTorch float64.

Tests and benchmarks use :func:`sinkhorn_reference` as the ground truth; solvers never import it. It runs a
FIXED number of iterations (no stopping rule), one dense ``logsumexp`` per half-step, and reproduces POT's
iterates exactly: ``n_iter`` here means POT's ``numItermax`` with ``stopThr=0``.

Conventions (all three variants)
--------------------------------
``C (..., n, m)`` cost (``+inf`` = forbidden pair), ``a (..., n)``, ``b (..., m)`` nonnegative weights,
``eps`` absolute (POT's ``reg``). The plan is always

    P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)

(``P_ij = 0`` where ``a_i = 0``, ``b_j = 0`` or ``C_ij = +inf``), the entropic term is ``KL(P | a⊗b)``
(POT's ``reg_type="kl"``) and ``value = <P, C>``, the linear cost without the entropy (POT's ``sinkhorn2``,
``sinkhorn_unbalanced2`` / ``log["cost"]``, partial's ``log["partial_w_dist"]``; pairs with ``C = +inf`` are
skipped, where POT's ``sum(M * P)`` gives NaN).
Both half-steps are soft c-transforms::

    S_i(g) = LSE_j( log b_j + (g_j - C_ij) / eps )      # over j with b_j > 0, C_ij < inf
    T_j(f) = LSE_i( log a_i + (f_i - C_ij) / eps )      # over i with a_i > 0, C_ij < inf

*Balanced* (``reg_m=None, mass=None``; POT ``ot.sinkhorn(..., method="sinkhorn_log")``)::

    g_j <- -eps T_j(f),   then   f_i <- -eps S_i(g)          # g FIRST, as POT (v then u)

  One POT iteration is ``v = log b - LSE_i(-M/reg + u); u = log a - LSE_j(-M/reg + v)`` in its
  log-scalings ``u = log a + f/eps``, ``v = log b + g/eps``. POT starts from ``u = v = 0``, so the default
  here is ``f0 = -eps log a``, ``g0 = -eps log b`` (0 on zero weights); POT ``warmstart=(u0, v0)`` is
  ``f0 = eps (u0 - log a)`` (``g0`` is overwritten before it is read). POT ``log=True`` gives ``log_u``,
  ``log_v`` in the same scalings. After an iteration the row sums equal ``a`` exactly. POT's scaling-domain
  ``method="sinkhorn"`` (also v then u, from ``u = 1/n``) gives the same plans while it does not underflow.

*Unbalanced KL* (``reg_m`` = ``rho`` or ``(rho_a, rho_b)``, POT's ``reg_m``; POT
``ot.unbalanced.sinkhorn_unbalanced(a, b, M, reg, reg_m, method="sinkhorn", reg_type="kl")``), minimising
``<P, C> + eps KL(P | a⊗b) + rho_a KL(P1 | a) + rho_b KL(P^T 1 | b)``::

    f_i <- -tau_a eps S_i(g),   then   g_j <- -tau_b eps T_j(f),     tau = rho / (rho + eps)   # f FIRST

  ``tau = 1`` for ``rho = inf``: balanced updates, but in POT's f-first order and from ``f0 = g0 = 0``
  (pass ``first``, ``f0``, ``g0`` to get the balanced iterates exactly). POT works in the scaling
  domain with the kernel ``K = exp(-M/reg) * a⊗b`` (that is how ``reg_type="kl"`` enters):
  ``u = (a / K v) ** tau_a``, ``v = (b / K^T u) ** tau_b`` from ``u = v = 1``. Here ``f = eps log u``,
  ``g = eps log v`` (the ``a`` in ``a / Kv`` cancels the one in ``K``), the default ``f0 = g0 = 0``, POT
  ``warmstart=(log u0, log v0)`` is ``(f0/eps, g0/eps)`` and POT's ``log["logu"]`` is ``f/eps``.

*Partial* (``mass`` = POT's ``m``; POT ``ot.partial.entropic_partial_wasserstein(a, b, M, reg, m)``, both
``method="sinkhorn"`` and ``"sinkhorn_log"``): maximise entropy s.t. ``P1 <= a``, ``P^T 1 <= b``,
``sum P = m``. POT runs Dykstra/Bregman projections on ``K = exp(-M/reg)`` (no ``a⊗b``) with correction
matrices ``q1, q2, q3``; these stay rank one (row, column, scalar), so the iterate is
``log P = -C/eps + x_i + y_j + z`` with ``x <= 0``, ``y <= 0`` and each projection *replaces* its own
shift. Written with the potentials above and a scalar ``lam`` (the total-mass potential, reported as
``mass_potential``; it is already included in ``f``)::

    f_i <- min( -eps S_i(g),  lam - eps log a_i )        # row:    P1 <= a   (f FIRST)
    g_j <- min( -eps T_j(f),  -eps log b_j )             # column: P^T1 <= b
    d = eps (log m - log sum P);  f <- f + d;  lam <- lam + d      # total mass = m

  i.e. ``eps x_i = f_i + eps log a_i - lam``, ``eps y_j = g_j + eps log b_j``, ``eps z = lam``. POT's
  start ``LK = -M/reg + log m - LSE(-M/reg)`` (every row and column slack, ``x = y = 0``) is the default
  here: ``g0 = -eps log b``, ``lam0 = eps (log m - LSE_ij(-C_ij/eps))``, ``f0 = lam0 - eps log a``.
  The row step overwrites ``f``, so a given ``f0`` only sets ``lam0 = max_i (f0_i + eps log a_i)``, the
  smallest value consistent with ``f0`` (a converged ``(f, g)`` then stays put); a given ``g0`` without
  ``f0`` gets the ``lam0`` that gives ``exp(-C/eps + y0 + lam0/eps)`` mass ``m``. POT's partial solvers
  take no warm start.

``first`` (``"f"`` or ``"g"``) overrides the order of the row/column half-steps; the default is POT's
(``"g"`` balanced, ``"f"`` unbalanced and partial). With ``first="f"`` on ``(C, a, b)`` the iterates are
those of ``first="g"`` on ``(C^T, b, a)`` (and ``reg_m`` swapped).

``marginal_error`` (per problem, shape ``(...,)``) is ``|P1 - a~|_1 + |P^T 1 - b~|_1`` for targets that
equal P's marginals exactly at a fixed point of the iteration (so it is zero iff converged):
balanced ``a~ = a``, ``b~ = b``; unbalanced ``a~ = a exp(-f/rho_a)``, ``b~ = b exp(-g/rho_b)`` (the
first-order optimality conditions ``f = -rho_a log(P1/a)``); partial ``a~_i = min(a_i, exp(lam/eps +
S_i(g)))``, ``b~_j = min(b_j, exp(T_j(f)))`` (the marginals the next row/column projections would give)
plus ``|sum P - m|``. POT's own ``err`` is different (L2 of the column marginal for ``sinkhorn_log``).

Zero weights behave as if the point were absent, at every iteration (a zero-weight point's potential is
still reported: the value its last c-transform update gave). POT differs: its balanced and partial starts
(``u = 0``, ``x = y = 0``) let zero-weight points into the first half-step and into partial's initial
normalisation; ``sinkhorn_unbalanced`` hits ``0/0`` at once and returns its initial iterate; partial's
``method="sinkhorn"`` returns NaN and ``"sinkhorn_log"`` stops after one iteration (``-inf`` in its
log-plan) -- as both also do for ``+inf`` costs. Compare with POT on the problem without those points
(and with a huge finite cost instead of ``+inf`` for partial).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import torch

__all__ = ["SinkhornReference", "sinkhorn_reference"]

_NEG_INF = -math.inf


class SinkhornReference(NamedTuple):
    """Result of :func:`sinkhorn_reference` (all float64, batch shape ``(...)``)."""

    f: torch.Tensor  # (..., n) row potential
    g: torch.Tensor  # (..., m) column potential
    plan: torch.Tensor  # (..., n, m)  P = a_i b_j exp((f_i + g_j - C_ij) / eps)
    value: torch.Tensor  # (...,)  <P, C>
    marginal_error: torch.Tensor  # (...,)  see the module docstring
    mass_potential: torch.Tensor | None = None  # (...,)  partial only: lam (already included in f)


# ----------------------------------------------------------------------------------------------------------
# validation


def _as_float64(x: Any, name: str, device: torch.device | None = None) -> torch.Tensor:
    if isinstance(x, bool):
        raise TypeError(f"{name} must be a real number or tensor, got bool")
    if isinstance(x, (int, float)):  # Python scalars straight to float64 (never through float32)
        return torch.tensor(float(x), dtype=torch.float64, device=device)
    try:
        t = torch.as_tensor(x, device=device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be a real number or tensor, got {type(x).__name__}") from exc
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must have a real dtype, got {t.dtype}")
    if t.dtype.is_floating_point and t.dtype != torch.float64 and not isinstance(x, torch.Tensor):
        t = torch.as_tensor(x, dtype=torch.float64, device=device)  # e.g. a list of floats
    if device is not None and t.device != device:
        t = t.to(device)
    return t.to(torch.float64)


def _check_weights(w: torch.Tensor, name: str, size: int) -> None:
    if w.ndim < 1 or w.shape[-1] != size:
        raise ValueError(f"{name} must have shape (..., {size}) to match the cost, got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    if bool((w < 0).any()):
        raise ValueError(f"{name} must be nonnegative")
    if bool((w.sum(-1) <= 0).any()):
        raise ValueError(f"{name} must have a positive total mass in every problem")


def _check_positive(t: torch.Tensor, name: str, allow_inf: bool = False) -> None:
    if bool(torch.isnan(t).any()):
        raise ValueError(f"{name} must not be NaN")
    if not allow_inf and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite")
    if bool((t <= 0).any()):
        raise ValueError(f"{name} must be positive, got a value <= 0")


def _batch_shape(name: str, shape: Sequence[int], batch: torch.Size) -> torch.Size:
    try:
        return torch.broadcast_shapes(batch, torch.Size(shape))
    except RuntimeError as exc:
        raise ValueError(
            f"{name} has batch shape {tuple(shape)}, which does not broadcast with {tuple(batch)}"
        ) from exc


# ----------------------------------------------------------------------------------------------------------
# the two soft c-transforms and the plan


def _row_lse(C: torch.Tensor, logb: torch.Tensor, g: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """S_i = LSE_j(log b_j + (g_j - C_ij)/eps) over j with b_j > 0 and C_ij < inf. eps: (..., 1, 1)."""
    terms = logb[..., None, :] + (g[..., None, :] - C) / eps
    keep = torch.isfinite(C) & (logb[..., None, :] > _NEG_INF)
    return torch.logsumexp(torch.where(keep, terms, _NEG_INF), dim=-1)


def _col_lse(C: torch.Tensor, loga: torch.Tensor, f: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """T_j = LSE_i(log a_i + (f_i - C_ij)/eps) over i with a_i > 0 and C_ij < inf."""
    terms = loga[..., :, None] + (f[..., :, None] - C) / eps
    keep = torch.isfinite(C) & (loga[..., :, None] > _NEG_INF)
    return torch.logsumexp(torch.where(keep, terms, _NEG_INF), dim=-2)


def _log_plan(C, loga, logb, f, g, eps) -> torch.Tensor:
    terms = loga[..., :, None] + logb[..., None, :] + (f[..., :, None] + g[..., None, :] - C) / eps
    keep = torch.isfinite(C) & (loga[..., :, None] > _NEG_INF) & (logb[..., None, :] > _NEG_INF)
    return torch.where(keep, terms, _NEG_INF)


# ----------------------------------------------------------------------------------------------------------
# public function


def sinkhorn_reference(
    C: Any,
    a: Any = None,
    b: Any = None,
    *,
    epsilon: Any,
    n_iter: int,
    reg_m: Any = None,
    mass: Any = None,
    f0: Any = None,
    g0: Any = None,
    first: Literal["f", "g"] | None = None,
) -> SinkhornReference:
    """Run ``n_iter`` log-domain Sinkhorn iterations in float64 (see the module docstring for the maths).

    Args:
        C: cost ``(..., n, m)`` (tensor or array, converted to float64 on its device); ``+inf`` forbids a
            pair.
        a, b: weights ``(..., n)``, ``(..., m)`` (batch dims broadcast with ``C``'s); default uniform
            ``1/n``, ``1/m``; zeros allowed.
        epsilon: absolute entropic regularisation (POT's ``reg``), a float or a ``(...)`` tensor, > 0.
        n_iter: number of iterations (POT's ``numItermax`` with ``stopThr=0``), >= 0.
        reg_m: KL marginal penalty, POT's ``reg_m``: a scalar / ``(...)`` tensor, or a pair
            ``(reg_m_a, reg_m_b)`` (tuple or list); ``inf`` allowed; ``None`` = not unbalanced.
        mass: total transported mass for partial transport (POT's ``m``), ``0 < mass <= min(|a|, |b|)``.
        f0, g0: warm-start potentials ``(..., n)``, ``(..., m)``; default POT's start (see above). The
            half-step that runs first overwrites its own potential.
        first: ``"f"`` (rows first) or ``"g"`` (columns first); default POT's order for the variant.

    Returns:
        :class:`SinkhornReference` ``(f, g, plan, value, marginal_error, mass_potential)``.
    """
    # ---- cost
    C = _as_float64(C, "C")
    device = C.device
    if C.ndim < 2:
        raise ValueError(f"C must have shape (..., n, m), got shape {tuple(C.shape)}")
    n, m = C.shape[-2], C.shape[-1]
    if n == 0 or m == 0:
        raise ValueError(f"C must have n >= 1 rows and m >= 1 columns, got shape {tuple(C.shape)}")
    if bool(torch.isnan(C).any()):
        raise ValueError("C must not contain NaN")
    if bool((C == _NEG_INF).any()):
        raise ValueError("C must not contain -inf (+inf marks a forbidden pair)")
    batch = C.shape[:-2]

    # ---- weights
    a = (
        torch.full((n,), 1.0 / n, dtype=torch.float64, device=device)
        if a is None
        else _as_float64(a, "a", device)
    )
    b = (
        torch.full((m,), 1.0 / m, dtype=torch.float64, device=device)
        if b is None
        else _as_float64(b, "b", device)
    )
    _check_weights(a, "a", n)
    _check_weights(b, "b", m)
    batch = _batch_shape("a", a.shape[:-1], batch)
    batch = _batch_shape("b", b.shape[:-1], batch)

    # ---- scalars (float or (...) tensors)
    if epsilon is None:
        raise TypeError("epsilon is required (absolute, POT's reg)")
    eps = _as_float64(epsilon, "epsilon", device)
    _check_positive(eps, "epsilon")
    batch = _batch_shape("epsilon", eps.shape, batch)

    if isinstance(n_iter, bool) or not isinstance(n_iter, int):
        raise TypeError(f"n_iter must be an int, got {type(n_iter).__name__}")
    if n_iter < 0:
        raise ValueError(f"n_iter must be >= 0, got {n_iter}")
    if first not in (None, "f", "g"):
        raise ValueError(f"first must be 'f', 'g' or None, got {first!r}")
    if reg_m is not None and mass is not None:
        raise ValueError("reg_m (unbalanced) and mass (partial) cannot both be given")

    rho_a = rho_b = None
    if reg_m is not None:
        if isinstance(reg_m, (tuple, list)):
            if len(reg_m) == 1:
                reg_m = (reg_m[0], reg_m[0])
            if len(reg_m) != 2:
                raise ValueError(
                    f"reg_m must be a scalar or a pair (reg_m_a, reg_m_b), got length {len(reg_m)}"
                )
            rho_a, rho_b = (
                _as_float64(reg_m[0], "reg_m[0]", device),
                _as_float64(reg_m[1], "reg_m[1]", device),
            )
        else:
            rho_a = rho_b = _as_float64(reg_m, "reg_m", device)
        _check_positive(rho_a, "reg_m", allow_inf=True)
        _check_positive(rho_b, "reg_m", allow_inf=True)
        batch = _batch_shape("reg_m", rho_a.shape, batch)
        batch = _batch_shape("reg_m", rho_b.shape, batch)

    mass_t = None
    if mass is not None:
        mass_t = _as_float64(mass, "mass", device)
        _check_positive(mass_t, "mass")
        batch = _batch_shape("mass", mass_t.shape, batch)

    for name, p, size in (("f0", f0, n), ("g0", g0, m)):
        if p is not None:
            pt = _as_float64(p, name, device)
            if pt.ndim < 1 or pt.shape[-1] != size:
                raise ValueError(f"{name} must have shape (..., {size}), got {tuple(pt.shape)}")
            if bool(torch.isnan(pt).any()):
                raise ValueError(f"{name} must not contain NaN")
            batch = _batch_shape(name, pt.shape[:-1], batch)

    # ---- broadcast everything to the batch
    C = C.expand(*batch, n, m)
    a = a.expand(*batch, n)
    b = b.expand(*batch, m)
    eps = eps.expand(batch)
    eps2 = eps[..., None]  # for (..., n) / (..., m) vectors
    eps3 = eps[..., None, None]  # for (..., n, m) matrices
    loga, logb = torch.log(a), torch.log(b)  # -inf for zero weights

    if mass_t is not None:
        mass_t = mass_t.expand(batch)
        cap = torch.minimum(a.sum(-1), b.sum(-1))
        if bool((mass_t > cap * (1 + 1e-12)).any()):
            raise ValueError("mass must be <= min(sum(a), sum(b)) in every problem")

    # balanced: a row (column) with positive weight and no allowed partner of positive weight is infeasible
    if reg_m is None and mass is None:
        allowed = torch.isfinite(C) & (a[..., :, None] > 0) & (b[..., None, :] > 0)
        if bool(((a > 0) & ~allowed.any(-1)).any()) or bool(((b > 0) & ~allowed.any(-2)).any()):
            raise ValueError("C is infeasible: a point of positive weight has only forbidden (+inf) pairs")

    zeros_n = torch.zeros(*batch, n, dtype=torch.float64, device=device)
    zeros_m = torch.zeros(*batch, m, dtype=torch.float64, device=device)
    f = zeros_n if f0 is None else _as_float64(f0, "f0", device).expand(*batch, n).clone()
    g = zeros_m if g0 is None else _as_float64(g0, "g0", device).expand(*batch, m).clone()
    if mass_t is not None or reg_m is None:
        # balanced and partial: POT's start u = v = 0 in its log-scalings u = log a + f/eps, v = log b + g/eps
        # (zero-weight points get 0: they never enter a sum)
        if f0 is None:
            f = torch.where(a > 0, -eps2 * loga, 0.0)
        if g0 is None:
            g = torch.where(b > 0, -eps2 * logb, 0.0)

    # ---- the three variants
    lam = None
    if mass_t is None:
        if reg_m is None:
            tau_a = tau_b = torch.ones((), dtype=torch.float64, device=device)
            order = first or "g"
        else:
            tau_a = torch.where(torch.isinf(rho_a), 1.0, rho_a / (rho_a + eps))  # POT: reg_m / (reg_m + reg)
            tau_b = torch.where(torch.isinf(rho_b), 1.0, rho_b / (rho_b + eps))
            tau_a, tau_b = tau_a.expand(batch)[..., None], tau_b.expand(batch)[..., None]
            order = first or "f"

        def row_step(f, g):
            return -tau_a * eps2 * _row_lse(C, logb, g, eps3)

        def col_step(f, g):
            return -tau_b * eps2 * _col_lse(C, loga, f, eps3)

        for _ in range(n_iter):
            if order == "f":
                f = row_step(f, g)
                g = col_step(f, g)
            else:
                g = col_step(f, g)
                f = row_step(f, g)
    else:
        order = first or "f"
        log_mass = torch.log(mass_t)
        if f0 is None:  # every row slack (POT's x = 0): lam makes exp(-C/eps + y + lam/eps) have mass m
            y_terms = _row_lse(C, logb, g, eps3)  # LSE_j(y_j - C_ij/eps)
            y_terms = torch.where(a > 0, y_terms, _NEG_INF)
            lam = eps * (log_mass - torch.logsumexp(y_terms, dim=-1))
            f = torch.where(a > 0, lam[..., None] - eps2 * loga, 0.0)
        else:  # the smallest lam consistent with f0 (f_i <= lam - eps log a_i)
            lam = torch.where(a > 0, f + eps2 * loga, _NEG_INF).amax(-1)

        def row_step(f, g):
            return torch.minimum(-eps2 * _row_lse(C, logb, g, eps3), lam[..., None] - eps2 * loga)

        def col_step(f, g):
            return torch.minimum(-eps2 * _col_lse(C, loga, f, eps3), -eps2 * logb)

        for _ in range(n_iter):
            if order == "f":
                f = row_step(f, g)
                g = col_step(f, g)
            else:
                g = col_step(f, g)
                f = row_step(f, g)
            log_total = torch.logsumexp(_log_plan(C, loga, logb, f, g, eps3), dim=(-2, -1))
            shift = eps * (log_mass - log_total)
            f = f + shift[..., None]
            lam = lam + shift

    # ---- outputs
    log_P = _log_plan(C, loga, logb, f, g, eps3)
    P = torch.exp(log_P)
    value = torch.where(P > 0, P * torch.where(torch.isfinite(C), C, 0.0), 0.0).sum((-2, -1))
    rows, cols = P.sum(-1), P.sum(-2)
    if mass_t is not None:
        row_target = torch.minimum(a, torch.exp(lam[..., None] / eps2 + _row_lse(C, logb, g, eps3)))
        col_target = torch.minimum(b, torch.exp(_col_lse(C, loga, f, eps3)))
    elif reg_m is not None:
        ra, rb = rho_a.expand(batch)[..., None], rho_b.expand(batch)[..., None]
        row_target = torch.where(torch.isinf(ra), a, a * torch.exp(-f / ra))
        col_target = torch.where(torch.isinf(rb), b, b * torch.exp(-g / rb))
    else:
        row_target, col_target = a, b
    err = (rows - row_target).abs().sum(-1) + (cols - col_target).abs().sum(-1)
    if mass_t is not None:
        err = err + (P.sum((-2, -1)) - mass_t).abs()
    return SinkhornReference(f, g, P, value, err, lam)
