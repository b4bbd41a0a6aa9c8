"""Result objects. Values and potentials are fields; anything dense (a plan) is a method."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["AssignmentOutput"]

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
