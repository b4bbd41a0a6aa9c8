"""Log-domain Sinkhorn: one generic loop over a geometry's log-sum-exp reductions.

Notation (all batched over ``B`` problems): weights ``a (B, n)``, ``b (B, m)``, potentials ``f (B, n)``,
``g (B, m)``, temperature ``eps`` and the plan ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``, i.e. the
entropic term is ``KL(P | a ⊗ b)``. One iteration updates ``g`` then ``f`` (the order of POT's
``sinkhorn_log``, so that fixed-iteration runs from the same start agree with it):

    g_j = -tau_b * eps * log sum_i a_i exp((f_i - C_ij) / eps)
    f_i = -tau_a * eps * log sum_j b_j exp((g_j - C_ij) / eps)

with ``tau = 1`` for balanced transport and ``tau = reg_m / (reg_m + eps)`` for the KL-unbalanced problem
(marginal penalty ``reg_m * KL(P 1 | a)``, POT's ``reg_m``). Partial transport (total mass ``mass``,
``P 1 <= a``, ``P^T 1 <= b``; POT's ``entropic_partial_wasserstein``) runs the same two c-transforms as
Bregman projections plus a mass step, with a scalar total-mass potential ``lam`` kept inside ``f``:

    g_j = min(-eps T_j(f), -eps log b_j)
    f_i = min(-eps S_i(g), lam - eps log a_i);   d = eps (log mass - log sum P);   f += d, lam += d

(``fastot._ref.sinkhorn`` documents the correspondence with POT's iterates.) The loop never reads a cost:
it only calls the geometry's ``lse_rows`` / ``lse_cols``.

Each iteration after the first column update is one ``geom.step``: the rows of iteration ``k`` and,
from the ``f`` they give, the columns of iteration ``k + 1`` (on CPU one pass over the cost computes
both). Stopping: every ``check_every`` iterations, the error is measured and problems below ``tol``
stop updating (each problem of a batch has its own flag, converged problems are skipped by the
kernels; the loop ends when all have converged or at ``max_iter``). Balanced: ``error = sum_j
|(P^T 1)_j - b_j|`` of the plan after the checked iteration, the plan returned if the loop stops there
(its row marginals are exact: ``f`` was updated last); unbalanced and partial: ``error = max |Δf|,
|Δg|`` over the checked iteration, divided by ``eps`` (the change of the log-scalings, POT's criterion
up to its relative form).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..geometry import Geometry

__all__ = ["SinkhornState", "sinkhorn_loop"]


@dataclass
class SinkhornState:
    f: torch.Tensor  # (B, n)
    g: torch.Tensor  # (B, m)
    n_iter: torch.Tensor  # (B,) int64: iterations each problem ran
    converged: torch.Tensor  # (B,) bool
    error: torch.Tensor  # (B,) last measured error


def _tau(reg_m: float | None, eps: torch.Tensor) -> torch.Tensor | float:
    """``(B, 1)`` exponent of the unbalanced c-transform (1 for an exact marginal)."""
    if reg_m is None or math.isinf(reg_m):
        return 1.0
    return (reg_m / (reg_m + eps))[:, None]


def sinkhorn_loop(
    geom: Geometry,
    log_a: torch.Tensor,
    log_b: torch.Tensor,
    *,
    epsilon: torch.Tensor,
    reg_m: tuple[float | None, float | None] = (None, None),
    max_iter: int,
    tol: float | None,
    check_every: int,
    epsilon_init: torch.Tensor | None = None,
    epsilon_decay: float = 0.5,
    f0: torch.Tensor | None = None,
    g0: torch.Tensor | None = None,
    mass: torch.Tensor | None = None,
) -> SinkhornState:
    """Runs Sinkhorn on ``geom``; see the module docstring.

    Args:
        geom: the batch of costs.
        log_a, log_b: ``(B, n)``, ``(B, m)`` log-weights (``-inf`` for zero weights).
        epsilon: ``(B,)`` final temperature.
        reg_m: KL marginal penalties for the row and column marginals (``None``: balanced side).
        max_iter: iteration budget (also the exact count when ``tol is None``).
        tol: stop a problem when its error is below ``tol`` (``None``: run exactly ``max_iter``).
        check_every: measure the error every this many iterations (a host sync in eager mode).
        epsilon_init: ``(B,)`` starting temperature for epsilon scaling (``None``: start at ``epsilon``);
            the temperature is ``max(epsilon, epsilon_init * epsilon_decay**k)`` at iteration ``k``.
        f0, g0: warm-start potentials (default zeros).
        mass: ``(B,)`` total mass for partial transport (``None``: not partial); ``reg_m`` must then be
            ``(None, None)``.
    """
    B, n, m = geom.batch, geom.n, geom.m
    f = torch.zeros(B, n, dtype=geom.dtype, device=geom.device) if f0 is None else f0.clone()
    g = torch.zeros(B, m, dtype=geom.dtype, device=geom.device) if g0 is None else g0.clone()
    done = torch.zeros(B, dtype=torch.bool, device=geom.device)
    n_iter = torch.zeros(B, dtype=torch.int64, device=geom.device)
    error = torch.full((B,), math.inf, dtype=geom.dtype, device=geom.device)
    balanced = reg_m[0] is None and reg_m[1] is None and mass is None

    def eps_at(it: int) -> torch.Tensor:
        return epsilon if epsilon_init is None else torch.maximum(epsilon, epsilon_init * epsilon_decay**it)

    def col_update(T: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """``g`` from the column log-sum-exp ``T = LSE_i(log a_i + f_i / eps - C_ij / eps)``."""
        g_new = -_tau(reg_m[1], eps) * eps[:, None] * T
        if mass is not None:  # column projection: P^T 1 <= b
            g_new = torch.minimum(g_new, -eps[:, None] * log_b)
        return g_new

    if mass is not None:
        # Partial: lam is the total-mass potential (kept inside f); the smallest value consistent with f.
        lam = (f + eps_at(0)[:, None] * log_a).amax(1)
        log_mass = mass.log()
    # Iteration 0's column update; afterwards each fused step computes the rows of iteration `it` and,
    # from them, the columns of iteration `it + 1` (one pass over the cost for both on CPU).
    eps = eps_at(0)
    g_new = col_update(geom.lse_cols(log_a + f / eps[:, None], 1.0 / eps), eps)

    def temperatures(it: int):
        """``eps``, ``eps_next``, their inverses and ``coef`` (``f = coef * S`` before the partial
        projections) of iteration ``it``."""
        eps, eps_next = eps_at(it), eps_at(it + 1)
        coef = (-_tau(reg_m[0], eps) * eps[:, None]).expand(B, 1)[:, 0].contiguous()
        return eps, eps_next, 1.0 / eps, 1.0 / eps_next, coef

    fixed = temperatures(0) if epsilon_init is None else None  # no scaling: the same every iteration
    for it in range(max_iter):
        eps, eps_next, scale, scale_next, coef = fixed or temperatures(it)
        cap = lam[:, None] - eps[:, None] * log_a if mass is not None else None  # row projection P 1 <= a
        S, T = geom.step(
            log_b + g_new * scale[:, None],
            scale,
            log_a,
            coef,
            scale_next,
            cap,
            None if tol is None else ~done,
        )
        f_new = coef[:, None] * S
        if cap is not None:
            f_new = torch.minimum(f_new, cap)
        if mass is not None:
            # The total mass: log sum P = LSE_i(log a_i + f_i / eps + S_i). Shifting f by d shifts T by
            # d / eps_next (a constant inside the log-sum-exp).
            log_total = torch.logsumexp(log_a + f_new * scale[:, None] + S, dim=1)
            shift = eps * (log_mass - log_total)
            f_new = f_new + shift[:, None]
            T = T + (shift * scale_next)[:, None]
            lam = torch.where(done, lam, lam + shift)
        last = it + 1 == max_iter
        measure = last or (tol is not None and (it + 1) % check_every == 0)
        if measure:
            if balanced:
                # Column marginals of the plan (f_new, g_new): b_j exp(g_new_j / eps + T_j); its row
                # marginals are exact (f was the last update). T is at eps_next: while epsilon is still
                # being scaled down the error is not measured (inf).
                col = torch.exp(log_b + g_new * scale[:, None] + T)
                new_error = torch.where(eps_next == eps, (col - log_b.exp()).abs().sum(1), math.inf)
            else:
                change = torch.maximum((f_new - f).abs().amax(1), (g_new - g).abs().amax(1))
                new_error = change * scale
            error = torch.where(done, error, new_error)  # converged problems keep their last error
        keep = done[:, None]
        f = torch.where(keep, f, f_new)
        g = torch.where(keep, g, g_new)
        n_iter = n_iter + (~done).to(torch.int64)
        if measure and tol is not None:
            # Only problems at the final temperature may stop.
            at_final = eps <= epsilon
            done = done | ((error <= tol) & at_final)
            if bool(done.all()):
                break
        g_new = col_update(T, eps_next)
    return SinkhornState(f=f, g=g, n_iter=n_iter, converged=done, error=error)
