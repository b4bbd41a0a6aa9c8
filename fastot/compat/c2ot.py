"""``OTConditionalPlanSampler`` with the C²OT reference code's constructor, computed by fastot.

C²OT (conditional OT flow matching) pairs noise and data by exact OT on the cost ``M + w C``: ``M`` the
point cost (squared or plain Euclidean), ``C`` the condition cost (cosine or squared Euclidean between the
flattened conditions), ``w`` given or searched each call so that a fraction ``target_r`` of the entries
satisfy ``M_ij + w C_ij <= M_ii``, the search starting from the last weight.

What changes here: with ``x_norm="l2_squared"`` the cost ``M + w C`` is formed in one fused pass (the
conditions are appended to the points as extra coordinates; no separate ``C`` or ``M`` matrix), and the
ratio is counted on at most 1024 sampled rows; the assignment is fastot's exact solver, on the inputs'
device, instead of scipy's on the host. ``x_norm="l2"`` forms the two matrices (it is not a squared
Euclidean cost). As in C²OT, conditions are used as vectors (``y.reshape(n, -1)`` converted to the points'
dtype; one-hot encode class labels, or pass them to :func:`fastot.couple` as labels), and a falsy
``condition_weight`` (``None`` or 0) means no condition term. A zero condition vector counts as orthogonal
to everything under the cosine cost (C²OT divides by its zero norm).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..costs import check_point_clouds, cost_matrix, sqeuclidean
from ..coupling import couple, search_cond_weight, solve_coupling

__all__ = ["OTConditionalPlanSampler"]

_X_NORMS = ("l2_squared", "l2")
_COND_NORMS = ("cosine", "l2_squared")


class OTConditionalPlanSampler:
    """Conditional exact OT couplings (C²OT's interface).

    Args:
        condition_weight: ``w``; with ``target_r``, the initial weight of the search (updated after every
            call, as C²OT does). ``None`` or 0: no condition term.
        target_r: adapt ``w`` to this ratio each call (see the module docstring).
        max_num_iter: C²OT's search budget per phase (growth, then bisection): at most ``2 * max_num_iter``
            ratio evaluations.
        target_r_tol: absolute tolerance on the ratio.
        x_norm: ``"l2_squared"`` (``|x0_i - x1_j|^2``) or ``"l2"`` (``|x0_i - x1_j|``).
        condition_norm: ``"cosine"`` (``1 - cos``) or ``"l2_squared"``.

    Raises:
        ValueError: unknown ``x_norm`` / ``condition_norm``; negative ``condition_weight``; ``target_r``
            outside ``(0, 1)``.
    """

    def __init__(
        self,
        condition_weight: float | None = None,
        target_r: float | None = None,
        max_num_iter: int = 10,
        target_r_tol: float = 1e-3,
        x_norm: str = "l2_squared",
        condition_norm: str = "cosine",
    ) -> None:
        if x_norm not in _X_NORMS:
            raise ValueError(f"x_norm must be one of {_X_NORMS}, got {x_norm!r}")
        if condition_norm not in _COND_NORMS:
            raise ValueError(f"condition_norm must be one of {_COND_NORMS}, got {condition_norm!r}")
        if condition_weight is not None and not (
            isinstance(condition_weight, (int, float))
            and condition_weight >= 0
            and math.isfinite(condition_weight)
        ):
            raise ValueError(
                f"condition_weight must be a finite number >= 0 or None, got {condition_weight!r}"
            )
        if target_r is not None and not (isinstance(target_r, (int, float)) and 0 < target_r < 1):
            raise ValueError(f"target_r must be a fraction in (0, 1) or None, got {target_r!r}")
        if isinstance(max_num_iter, bool) or not isinstance(max_num_iter, int) or max_num_iter < 1:
            raise ValueError(f"max_num_iter must be a positive integer, got {max_num_iter!r}")
        self.condition_weight = condition_weight
        self.target_r = target_r
        self.max_num_iter = max_num_iter
        self.target_r_tol = float(target_r_tol)
        self.x_norm = x_norm
        self.condition_norm = condition_norm
        self.last_ratio: float | None = None

    @property
    def _cond_cost(self) -> str:
        return "cosine" if self.condition_norm == "cosine" else "sqeuclidean"

    def get_x_cost_matrix(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """``(N, N)`` point cost ``M`` of the flattened samples (``x_norm``)."""
        a, b = x0.reshape(x0.shape[0], -1), x1.reshape(x1.shape[0], -1)
        return cost_matrix(a, b, cost="sqeuclidean" if self.x_norm == "l2_squared" else "euclidean")

    def get_condition_cost_matrix(self, y0: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
        """``(N, N)`` condition cost ``C`` of the flattened conditions (``condition_norm``)."""
        e0, e1 = _vectors(y0, y1, torch.promote_types(_float(y0.dtype), _float(y1.dtype)))
        if self.condition_norm == "cosine":
            u0 = e0 / e0.norm(dim=-1, keepdim=True).clamp_min(1e-30)
            u1 = e1 / e1.norm(dim=-1, keepdim=True).clamp_min(1e-30)
            return 1 - u0 @ u1.T
        return sqeuclidean(e0, e1)

    @torch.inference_mode()
    def sample_plan_with_labels(
        self, x0: torch.Tensor, x1: torch.Tensor, y0: Any = None, y1: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor, Any, Any]:
        """``(x0[i], x1[j], y0[i], y1[j])`` for the exact coupling of ``M + w C`` (``None`` for absent y)."""
        a, b = x0.reshape(x0.shape[0], -1), x1.reshape(x1.shape[0], -1)
        check_point_clouds(a, b, ("x0", "x1"))
        if not self.condition_weight:
            if self.x_norm == "l2_squared":
                i, j = couple(x0, x1, method="exact")
            else:
                i, j = torch.ops.fastot.linear_sum_assignment(self.get_x_cost_matrix(x0, x1), False)
        else:
            if y0 is None or y1 is None:
                raise ValueError("y0 and y1 must be given when condition_weight is set")
            e0, e1 = _vectors(y0, y1, a.dtype)
            if self.x_norm == "l2_squared":
                out = solve_coupling(
                    x0,
                    x1,
                    e0,
                    e1,
                    method="exact",
                    cond_weight=float(self.condition_weight),
                    cond_cost=self._cond_cost,
                    target_r=self.target_r,
                    target_r_tol=self.target_r_tol,
                    max_weight_iter=2 * self.max_num_iter,
                )
                i, j = out.i, out.j
                w, self.last_ratio = out.cond_weight, out.ratio
            else:
                M = self.get_x_cost_matrix(x0, x1)
                C = self.get_condition_cost_matrix(e0, e1).to(M.dtype)
                w = float(self.condition_weight)
                if self.target_r is not None:
                    diag = torch.diagonal(M)[:, None]
                    w, self.last_ratio = search_cond_weight(
                        M.double(),
                        C.double(),
                        diag.double(),
                        self.target_r,
                        w,
                        self.target_r_tol,
                        2 * self.max_num_iter,
                    )
                i, j = torch.ops.fastot.linear_sum_assignment(M + w * C, False)
            if self.target_r is not None:
                self.condition_weight = w
        return (
            x0[i],
            x1[j],
            y0[i.to(y0.device)] if y0 is not None else None,
            y1[j.to(y1.device)] if y1 is not None else None,
        )


def _float(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype.is_floating_point else torch.float32


def _vectors(y0: Any, y1: Any, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    for y, name in ((y0, "y0"), (y1, "y1")):
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"{name} must be a torch tensor, got {type(y).__name__}")
    e0 = y0.reshape(y0.shape[0], -1).to(dtype)
    e1 = y1.reshape(y1.shape[0], -1).to(dtype)
    if e0.shape[1] != e1.shape[1]:
        raise ValueError(
            f"y0 and y1 must have the same condition size, got {tuple(y0.shape)} and {tuple(y1.shape)}"
        )
    return e0, e1
