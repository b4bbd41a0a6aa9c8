"""fastot: fast exact optimal-transport couplings for PyTorch.

Public API:
    linear_sum_assignment(cost, maximize=False) -> (row_ind, col_ind)   scipy's contract, batched, torch ops
    solve_assignment(cost, maximize=False, *, solve_dtype=None) -> AssignmentOutput   with dual potentials
    cost_matrix(x, y, y0=None, y1=None, *, cost="sqeuclidean", cond_weight, cond_cost) -> (..., n, m)
    couple(x0, x1, y0=None, y1=None, *, method="exact", ...) -> (i, j)   minibatch (conditional) OT coupling
    Coupler(method, **options)   stateful coupling step for training loops (adaptive weight, warm start)
    sinkhorn(x, y, a, b, *, cost=..., epsilon, reg_m=None, ...) -> SinkhornOutput   entropic OT
"""

from __future__ import annotations

from importlib import metadata as _metadata

from . import (
    distributed,  # noqa: F401  (fastot.distributed.couple: global coupling under DDP)
    ops,  # noqa: F401  (registers torch.ops.fastot.*)
)
from .assignment import linear_sum_assignment, solve_assignment
from .costs import cost_matrix
from .coupling import Coupler, Coupling, couple
from .outputs import AssignmentOutput, SinkhornOutput
from .sinkhorn import sinkhorn

__all__ = [
    "AssignmentOutput",
    "Coupler",
    "Coupling",
    "SinkhornOutput",
    "cost_matrix",
    "couple",
    "linear_sum_assignment",
    "sinkhorn",
    "solve_assignment",
]

__version__ = _metadata.version("fastot")
