"""Public exact-assignment API: ``linear_sum_assignment`` (scipy's contract) and ``solve_assignment``."""

from __future__ import annotations

from typing import Any

import torch

from . import ops as _ops  # noqa: F401  (registers torch.ops.fastot.*)
from .outputs import AssignmentOutput
from .problems import TORCH_SOLVE_DTYPES, check_assignment_cost, prepare_assignment, resolve_solve_dtype
from .solvers.assignment import solve_lsa

__all__ = ["linear_sum_assignment", "solve_assignment"]


def linear_sum_assignment(cost: Any, maximize: bool = False) -> tuple[Any, Any]:
    """Exact linear sum assignment, with :func:`scipy.optimize.linear_sum_assignment`'s contract.

    Finds the injective matching of rows to columns (or columns to rows when ``n > m``) of minimal
    (``maximize=False``) or maximal total cost.

    Args:
        cost: ``(n, m)`` or batched ``(..., n, m)``: a NumPy array, nested list or torch tensor (any device)
            of bool, integer or floating dtype. ``+inf`` marks a forbidden pair when minimising,
            ``-inf`` when maximising. The solve runs in float64 for every input dtype.
        maximize: maximise the total instead.

    Returns:
        ``(row_ind, col_ind)``, each ``(..., k)`` int64 with ``k = min(n, m)``: row ``row_ind[..., t]`` is
        matched to column ``col_ind[..., t]``; ``row_ind`` is ascending within each problem (``arange(n)``
        when ``n <= m``). NumPy arrays for NumPy/list input; tensors on ``cost``'s device for tensor
        input (through the ``fastot::linear_sum_assignment`` op, so this traces under
        ``torch.compile(fullgraph=True)``). On ties the optimal assignment may differ from scipy's.

    Raises:
        TypeError: ``cost`` has a non-real dtype (complex, object, strings).
        ValueError: ``cost`` has fewer than 2 dimensions; ``"matrix contains invalid numeric entries"``
            (NaN, ``-inf`` when minimising, ``+inf`` when maximising);
            ``"cost matrix is infeasible"`` (no assignment avoids the forbidden pairs).
    """
    if isinstance(cost, torch.Tensor):
        check_assignment_cost(cost)
        return torch.ops.fastot.linear_sum_assignment(cost, bool(maximize))
    out = solve_lsa(prepare_assignment(cost, maximize))
    return out.row_ind, out.col_ind


def solve_assignment(cost: Any, maximize: bool = False, *, solve_dtype: Any = None) -> AssignmentOutput:
    """Exact linear sum assignment with its value and certifying dual potentials.

    Args:
        cost: ``(..., n, m)`` as for :func:`linear_sum_assignment`.
        maximize: maximise the total instead.
        solve_dtype: ``float64`` (default, NumPy or torch dtype) or ``float32``: the kernel's arithmetic,
            and the dtype of ``u``, ``v`` and ``value``.

    Returns:
        :class:`~fastot.outputs.AssignmentOutput` with ``row_ind``, ``col_ind`` ``(..., k)`` int64,
        ``u (..., n)``, ``v (..., m)``, ``value (...)``; NumPy arrays for NumPy/list input, tensors on
        ``cost``'s device for tensor input. For a floating tensor ``cost``, ``value`` is differentiable
        with respect to ``cost`` (its gradient is the 0/1 assignment plan).

    Raises:
        The same errors as :func:`linear_sum_assignment`; ``ValueError`` for an unsupported
        ``solve_dtype``.
    """
    if isinstance(cost, torch.Tensor):
        check_assignment_cost(cost)
        dtype = TORCH_SOLVE_DTYPES[resolve_solve_dtype(solve_dtype)]
        row_ind, col_ind, u, v = torch.ops.fastot.solve_assignment(cost, bool(maximize), dtype)
        m = cost.shape[-1]
        # Gathered from the caller's tensor with torch ops (not by the op), so autograd sees it.
        entries = torch.gather(cost.flatten(-2), -1, row_ind * m + col_ind)
        value = entries.to(dtype).sum(-1)
        return AssignmentOutput(row_ind, col_ind, u, v, value, maximize=bool(maximize))
    return solve_lsa(prepare_assignment(cost, maximize, solve_dtype=solve_dtype))
