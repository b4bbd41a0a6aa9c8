"""Result objects. Values and potentials are fields; anything dense (a plan) is a method."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["AssignmentOutput", "SinkhornOutput"]

Array = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class AssignmentOutput:
    """Optimal assignment of a batch of ``(..., n, m)`` costs, with certifying dual potentials.

    All fields are NumPy arrays for NumPy/list input and tensors on the input's device for tensor input.
    ``k = min(n, m)``.

    Attributes:
        row_ind: ``(..., k)`` int64, ascending within each problem (``arange(n)`` when ``n <= m``).
        col_ind: ``(..., k)`` int64: row ``row_ind[..., t]`` is assigned column ``col_ind[..., t]``.
        u: ``(..., n)`` row potentials, in the solve dtype (float64 by default).
        v: ``(..., m)`` column potentials, in the solve dtype.
        value: ``(...)`` total cost of the assignment, ``sum_t C[row_ind[t], col_ind[t]]``, from the input
            entries converted to the solve dtype.
        maximize: whether the assignment maximises the total.

    Potentials are in the caller's orientation and certify optimality (LP duality):
    minimisation: ``u[i] + v[j] <= C[i, j]`` for all pairs, with equality on assigned pairs;
    maximisation: ``u[i] + v[j] >= C[i, j]``, with equality on assigned pairs.
    Potentials of unassigned rows/columns (rectangular case) are 0, and the ones of the longer side
    are ``<= 0`` (minimisation) or ``>= 0`` (maximisation), so ``dual_value() == value``
    up to rounding.
    """

    row_ind: Array
    col_ind: Array
    u: Array
    v: Array
    value: Array
    maximize: bool = False

    def dual_value(self) -> Array:
        """``(...)`` dual objective ``sum(u) + sum(v)``; equals ``value`` at the optimum (up to rounding)."""
        return self.u.sum(-1) + self.v.sum(-1)

    def plan(self) -> Array:
        """``(..., n, m)`` dense 0/1 transport plan ``P`` with ``P[i, j] = 1`` iff row i is assigned column j.

        Same dtype as the potentials; ``(P * C).sum((-2, -1)) == value``.
        """
        n, m = self.u.shape[-1], self.v.shape[-1]
        flat = self.row_ind * m + self.col_ind
        if isinstance(flat, torch.Tensor):
            P = self.u.new_zeros((*self.u.shape[:-1], n * m))
            P.scatter_(-1, flat, 1)
        else:
            P = np.zeros((*self.u.shape[:-1], n * m), dtype=self.u.dtype)
            np.put_along_axis(P, flat, 1, axis=-1)
        return P.reshape(*self.u.shape[:-1], n, m)


@dataclass(frozen=True, eq=False)
class SinkhornOutput:
    """Entropic (log-domain Sinkhorn) transport between weighted point sets, for a batch of problems.

    With ``B = ...`` the batch shape, ``n``/``m`` the two sides and ``eps`` the temperature, the plan is
    ``P[..., i, j] = a_i b_j exp((f_i + g_j - C_ij) / eps)`` (entropic term ``KL(P | a ⊗ b)``).

    Attributes:
        f: ``(..., n)`` potentials of the first marginal.
        g: ``(..., m)`` potentials of the second marginal.
        value: ``(...)`` linear cost ``<P, C>`` of the plan (POT's ``sinkhorn2``). Differentiable with
            respect to the cost (or the points) and the weights by the envelope theorem, as in POT: its
            gradient is ``P`` for a dense cost, ``f`` for ``a`` and ``g`` for ``b``.
        n_iter: ``(...)`` int64 iterations each problem ran.
        converged: ``(...)`` bool: the marginal error fell below ``tol`` at the final temperature.
        error: ``(...)`` the last measured error, that of the returned potentials (see
            :func:`fastot.sinkhorn`; ``inf`` if epsilon scaling had not reached ``epsilon``).
        epsilon: ``(...)`` the temperature used.
    """

    f: torch.Tensor
    g: torch.Tensor
    value: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor
    error: torch.Tensor
    epsilon: torch.Tensor
    _geometry: object
    _log_a: torch.Tensor
    _log_b: torch.Tensor

    def _log_scalings(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B = self._log_a.shape[0]
        eps = self.epsilon.reshape(B)
        hr = self._log_a + self.f.reshape(B, -1) / eps[:, None]
        hc = self._log_b + self.g.reshape(B, -1) / eps[:, None]
        return hr, hc, 1.0 / eps

    def plan(self) -> torch.Tensor:
        """``(..., n, m)`` dense transport plan (formed on request: ``n x m`` memory)."""
        P = self._geometry.plan(*self._log_scalings())
        return P.reshape(*self.f.shape[:-1], *P.shape[-2:])

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        """``P @ v`` for ``v`` of shape ``(..., m)`` or ``(..., m, k)``, without forming ``P`` in online mode.

        Returns ``(..., n)`` or ``(..., n, k)``.
        """
        B = self._log_a.shape[0]
        vector = v.dim() == self.g.dim()
        vv = (v[..., None] if vector else v).reshape(B, self._log_b.shape[1], -1)
        out = self._geometry.apply(*self._log_scalings(), vv.to(self.f.dtype))
        out = out.reshape(*self.f.shape, out.shape[-1])
        return out[..., 0] if vector else out
