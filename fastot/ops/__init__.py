"""torch.library ops (``torch.ops.fastot.*``), one per kernel, each with a fake kernel.

``OPS`` lists every op with a function returning ``torch.library.opcheck`` samples: a list of
``(args, kwargs)`` pairs; the function takes an optional ``device`` (default ``"cpu"``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .assignment import sample_inputs_linear_sum_assignment, sample_inputs_solve_assignment
from .sinkhorn import sample_inputs_sinkhorn_dense, sample_inputs_sinkhorn_sqeuclidean
from .softmin import sample_inputs_lse_dense, sample_inputs_lse_sqeuclidean

__all__ = ["OPS"]

OPS: list[tuple[torch._ops.OpOverload, Callable[..., list[tuple[tuple, dict]]]]] = [
    (torch.ops.fastot.linear_sum_assignment.default, sample_inputs_linear_sum_assignment),
    (torch.ops.fastot.solve_assignment.default, sample_inputs_solve_assignment),
    (torch.ops.fastot.lse_dense.default, sample_inputs_lse_dense),
    (torch.ops.fastot.lse_sqeuclidean.default, sample_inputs_lse_sqeuclidean),
    (torch.ops.fastot.sinkhorn_dense.default, sample_inputs_sinkhorn_dense),
    (torch.ops.fastot.sinkhorn_sqeuclidean.default, sample_inputs_sinkhorn_sqeuclidean),
]
