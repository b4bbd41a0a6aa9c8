"""Exact linear sum assignment on a prepared problem: runs the C++ Jonker-Volgenant kernel and maps
its answer back to the caller's orientation and sign."""

from __future__ import annotations

import numpy as np
import torch

from .. import _C
from ..outputs import AssignmentOutput
from ..problems import AssignmentProblem

__all__ = ["INFEASIBLE_MESSAGE", "INVALID_MESSAGE", "solve_lsa"]

# scipy.optimize.linear_sum_assignment's messages, verbatim for 2-D inputs.
INVALID_MESSAGE = "matrix contains invalid numeric entries"
INFEASIBLE_MESSAGE = "cost matrix is infeasible"


def solve_lsa(problem: AssignmentProblem, *, num_threads: int | None = None) -> AssignmentOutput:
    """Solve every problem of the batch exactly.

    Args:
        problem: from :func:`fastot.problems.prepare_assignment`.
        num_threads: threads for the batch (problems run in parallel); default
            ``torch.get_num_threads()``, never more than the batch size.

    Returns:
        :class:`AssignmentOutput` of NumPy arrays in the caller's orientation: ``row_ind``, ``col_ind``
        ``(..., k)`` int64 with rows ascending, potentials ``u (..., n)``, ``v (..., m)`` and ``value (...)``
        in the solve dtype.

    Raises:
        ValueError: ``"matrix contains invalid numeric entries"`` (NaN, ``-inf`` when minimising,
            ``+inf`` when maximising) or ``"cost matrix is infeasible"`` (every assignment uses a
            forbidden pair). For batched input the message adds the index of the first bad problem.
    """
    p = problem
    dtype = p.solve_dtype
    batch, n, m, k = p.batch_shape, p.n, p.m, p.k
    if p.is_empty:
        # scipy returns empty index arrays for (0, m) and (n, 0); zero potentials certify value 0.
        # (With an empty batch k may be positive: the outputs are (0, ..., k), still empty.)
        return AssignmentOutput(
            row_ind=np.empty((*batch, k), dtype=np.int64),
            col_ind=np.empty((*batch, k), dtype=np.int64),
            u=np.zeros((*batch, n), dtype),
            v=np.zeros((*batch, m), dtype),
            value=np.zeros(batch, dtype),
            maximize=p.maximize,
        )

    B, r, _ = p.cost.shape
    if num_threads is None:
        num_threads = torch.get_num_threads()
    num_threads = max(1, min(int(num_threads), B))
    col4row, u_k, v_k, status = _C.lsa_batch(p.cost, num_threads)
    _raise_on_status(status, batch)

    # Cost of the assignment, read from the prepared buffer: its entries are the caller's converted to
    # the solve dtype (transposition and negation are exact), summed in the solve dtype.
    value = np.take_along_axis(p.cost, col4row[:, :, None], axis=2)[:, :, 0].sum(axis=1)
    if p.maximize:
        value = -value
        u_k = np.negative(u_k, out=u_k)
        v_k = np.negative(v_k, out=v_k)

    if p.transposed:
        # The kernel solved C^T (m, n): its rows are our columns. Sort by our row index as scipy does.
        order = np.argsort(col4row, axis=1, kind="stable")
        row_ind = np.take_along_axis(col4row, order, axis=1)
        col_ind = order.astype(np.int64, copy=False)
        u, v = v_k, u_k
    else:
        row_ind = np.broadcast_to(np.arange(r, dtype=np.int64), (B, r)).copy()
        col_ind = col4row
        u, v = u_k, v_k

    return AssignmentOutput(
        row_ind=row_ind.reshape(*batch, k),
        col_ind=col_ind.reshape(*batch, k),
        u=u.reshape(*batch, n),
        v=v.reshape(*batch, m),
        value=value.reshape(batch),
        maximize=p.maximize,
    )


def _raise_on_status(status: np.ndarray, batch: tuple[int, ...]) -> None:
    if not status.any():
        return
    # Invalid entries take precedence, as in scipy, which checks them before solving.
    for code, message in ((_C.STATUS_INVALID, INVALID_MESSAGE), (_C.STATUS_INFEASIBLE, INFEASIBLE_MESSAGE)):
        bad = np.flatnonzero(status == code)
        if bad.size:
            if batch:
                where = tuple(int(i) for i in np.unravel_index(bad[0], batch))
                message = f"{message} (problem at batch index {where}, {bad.size} bad in all)"
            raise ValueError(message)
    raise RuntimeError(f"fastot._C.lsa_batch returned unknown status codes {np.unique(status).tolist()}")
