"""``OTPlanSampler`` with torchcfm's constructor and methods, computed by fastot.

Use it as the ``ot_sampler`` of torchcfm's flow matchers::

    from torchcfm.conditional_flow_matching import ExactOptimalTransportConditionalFlowMatcher
    from fastot.compat.torchcfm import OTPlanSampler

    fm = ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)
    fm.ot_sampler = OTPlanSampler(method="exact")

Differences from torchcfm 1.0.7, all deliberate:

- ``"exact"``: ``sample_plan`` returns the optimal permutation itself (``x0`` in its order, ``x1[j]``):
  every sample once, none duplicated or dropped. (torchcfm draws ``n`` pairs with replacement from the
  permutation plan, which keeps ~63% of the distinct samples.) Unequal batch sizes give the optimal
  rectangular assignment (``min(n0, n1)`` pairs, plan entries ``1/min(n0, n1)``), where POT's ``emd``
  would split mass.
- Entropic methods run log-domain Sinkhorn on the cost as given (``reg`` is POT's ``reg``, absolute), so
  they never underflow; torchcfm's scaling-domain solvers underflow at d = 3072 and then silently return a
  uniform plan. A plan that did not converge within ``max_iter`` is used as it is (its row marginal is
  exact) with a ``RuntimeWarning`` (``warn=True``) — never replaced by a uniform plan; a plan that is not
  finite raises ``RuntimeError``.
- Random draws use torch's generator (``generator=`` or torch's global RNG), not NumPy's global RNG.
  ``replace=False`` means: each ``x0`` sample at most once (rows without replacement, each row's partner
  drawn from its row of the plan), not distinct flat entries.
- Tensors stay on the input device; ``get_map`` returns a NumPy array as torchcfm's does (a host copy).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from ..costs import cost_matrix, fused_cost
from ..coupling import _cost_scale, _sample_plan, couple
from ..sinkhorn import sinkhorn

__all__ = ["OTPlanSampler"]

_METHODS = ("exact", "sinkhorn", "unbalanced", "partial")


class OTPlanSampler:
    """Minibatch OT plans and pair sampling (torchcfm's ``OTPlanSampler`` interface).

    Args:
        method: ``"exact"``, ``"sinkhorn"``, ``"unbalanced"`` or ``"partial"``.
        reg: entropic regularisation of the Sinkhorn-based methods (POT's ``reg``, absolute on the cost).
        reg_m: KL marginal penalty of ``"unbalanced"`` (POT's ``reg_m``).
        normalize_cost: divide the cost by its maximum before solving (as torchcfm).
        num_threads: accepted for compatibility; fastot uses ``torch.get_num_threads()``.
        warn: warn when a Sinkhorn solve did not converge.
        max_iter: Sinkhorn iteration budget (keyword only; POT's default 1000).
        tol: Sinkhorn stopping tolerance on the L1 marginal error (keyword only).
        generator: ``torch.Generator`` for the random draws (keyword only).

    Raises:
        ValueError: unknown ``method``; ``reg`` or ``reg_m`` not positive.
    """

    def __init__(
        self,
        method: str,
        reg: float = 0.05,
        reg_m: float = 1.0,
        normalize_cost: bool = False,
        num_threads: int | str = 1,
        warn: bool = True,
        *,
        max_iter: int = 1000,
        tol: float = 1e-4,
        generator: torch.Generator | None = None,
    ) -> None:
        if method not in _METHODS:
            raise ValueError(f"Unknown method: {method!r}; method must be one of {_METHODS}")
        if not (isinstance(reg, (int, float)) and reg > 0 and math.isfinite(reg)):
            raise ValueError(f"reg must be a positive number, got {reg!r}")
        if not (isinstance(reg_m, (int, float)) and reg_m > 0):
            raise ValueError(f"reg_m must be a positive number, got {reg_m!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.method = method
        self.reg = float(reg)
        self.reg_m = float(reg_m)
        self.normalize_cost = bool(normalize_cost)
        self.num_threads = num_threads
        self.warn = bool(warn)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.generator = generator

    # ------------------------------------------------------------------------------------------- plans

    def _plan(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """``(n0, n1)`` plan on the inputs' device (float32, or float64 for float64 inputs)."""
        _check(x0, x1)
        if self.method == "exact":
            i, j = couple(x0, x1, method="exact")
            dtype = torch.float64 if torch.float64 in (x0.dtype, x1.dtype) else torch.float32
            P = torch.zeros(x0.shape[0], x1.shape[0], dtype=dtype, device=x0.device)
            P[i, j] = 1.0 / max(i.shape[0], 1)
            return P
        a = x0.detach().reshape(x0.shape[0], -1)
        b = x1.detach().reshape(x1.shape[0], -1)
        if self.method == "sinkhorn" and not self.normalize_cost:
            # A balanced plan does not change when row or column constants are added to the cost: drop
            # |a_i - p|^2 and |b_j - q|^2 (p, q the means) and keep -2 <a_i - p, b_j - q>. Its entries are
            # ~sqrt(d) instead of ~d, so float32 rounding of the cost moves (f + g - C) / reg 15x less at
            # d = 3072 (the plan is exp of that, with reg = 0.05 against costs of ~6000).
            compute = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
            M = fused_cost(a.to(compute), b.to(compute), None, None, None, None, center="interaction")
        else:
            M = cost_matrix(a, b)
            if M.dtype not in (torch.float32, torch.float64):
                M = M.float()
            if self.normalize_cost:
                M = M / M.max()
        # Epsilon scaling from the cost's own scale down to reg: same fixed point, far fewer iterations
        # when reg is small against the cost (reg = 0.05 on squared distances ~ 6000 at d = 3072).
        scale = float(_cost_scale(M))
        out = sinkhorn(
            cost=M,
            epsilon=self.reg,
            reg_m=self.reg_m if self.method == "unbalanced" else None,
            mass=1.0 if self.method == "partial" else None,
            max_iter=self.max_iter,
            tol=self.tol,
            epsilon_init=scale if scale > self.reg else None,
        )
        P = out.plan()
        if not bool(torch.isfinite(P).all()) or not float(P.sum()) > 0:
            raise RuntimeError(
                f"OTPlanSampler({self.method!r}): the plan is not finite or is all zero (after "
                f"{int(out.n_iter)} iterations, converged={bool(out.converged)}); raise max_iter or reg"
            )
        if self.warn and not bool(out.converged):
            warnings.warn(
                f"OTPlanSampler({self.method!r}): Sinkhorn did not converge within max_iter={self.max_iter} "
                f"(marginal error {float(out.error):.3g}, reg={self.reg}); pairs are drawn from the "
                "unconverged plan (no uniform fallback). Raise max_iter or reg to converge.",
                RuntimeWarning,
                stacklevel=3,
            )
        return P

    def get_map(self, x0: torch.Tensor, x1: torch.Tensor) -> np.ndarray:
        """The OT plan between two minibatches ``x0 (n0, *dim)``, ``x1 (n1, *dim)`` (squared Euclidean cost
        of the flattened samples) as a NumPy ``(n0, n1)`` float64 array summing to 1."""
        return self._plan(x0, x1).detach().cpu().double().numpy()

    def sample_map(self, pi: Any, batch_size: int, replace: bool = True) -> tuple[Any, Any]:
        """Draw ``batch_size`` index pairs ``(i, j)`` from the plan ``pi (n0, n1)`` (NumPy array or tensor).

        ``replace=True``: independent draws from the whole plan (torchcfm's sampling). ``replace=False``:
        each row at most once (``batch_size <= n0``). Returns NumPy int64 arrays for a NumPy ``pi``,
        tensors on its device for a tensor.
        """
        is_np = not isinstance(pi, torch.Tensor)
        P = torch.from_numpy(np.asarray(pi, dtype=np.float64)) if is_np else pi.detach()
        if P.dim() != 2:
            raise ValueError(f"pi must be a (n0, n1) plan, got shape {tuple(P.shape)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
            raise ValueError(f"batch_size must be a nonnegative integer, got {batch_size!r}")
        if not bool(torch.isfinite(P).all()) or bool((P < 0).any()) or not float(P.sum()) > 0:
            raise ValueError("pi must be finite, nonnegative and not all zero")
        i, j = _sample_plan(P, batch_size, bool(replace), self.generator)
        if is_np:
            return i.cpu().numpy(), j.cpu().numpy()
        return i, j

    # ------------------------------------------------------------------------------------------ pairs

    def _pairs(self, x0: torch.Tensor, x1: torch.Tensor, replace: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if self.method == "exact":
            _check(x0, x1)
            return couple(x0, x1, method="exact")
        P = self._plan(x0, x1)
        return _sample_plan(P, x0.shape[0], bool(replace), self.generator)

    def sample_plan(self, x0: torch.Tensor, x1: torch.Tensor, replace: bool = True):
        """``(x0[i], x1[j])``: ``x0.shape[0]`` coupled pairs (exact: the optimal permutation, ``x0`` itself
        in its order when ``n0 <= n1``, as ``i = arange(n0)`` then)."""
        i, j = self._pairs(x0, x1, replace)
        if self.method == "exact" and x0.shape[0] <= x1.shape[0]:
            return x0, x1[j]
        return x0[i], x1[j]

    def sample_plan_with_labels(self, x0, x1, y0=None, y1=None, replace: bool = True):
        """``(x0[i], x1[j], y0[i], y1[j])`` (``None`` for absent labels); labels do not enter the cost."""
        i, j = self._pairs(x0, x1, replace)
        return (
            x0[i],
            x1[j],
            y0[i.to(y0.device)] if y0 is not None else None,
            y1[j.to(y1.device)] if y1 is not None else None,
        )

    def sample_plan_with_scipy(self, x0: torch.Tensor, x1: torch.Tensor):
        """Exact assignment, ``x0`` kept in its order: ``(x0, x1[j])`` (fastot's solver, not scipy's)."""
        _check(x0, x1)
        i, j = couple(x0, x1, method="exact")
        if x0.shape[0] <= x1.shape[0]:
            return x0, x1[j]
        return x0[i], x1[j]

    def sample_trajectory(self, X: torch.Tensor) -> np.ndarray:
        """``X (bs, times, *dim)``: chain the plans between consecutive times, each row's successor drawn
        from its row of the plan; returns a NumPy ``(bs, times, *dim)`` array as torchcfm does."""
        if not isinstance(X, torch.Tensor) or X.dim() < 3:
            raise ValueError("X must be a tensor of shape (bs, times, *dim)")
        idx = [torch.arange(X.shape[0], device=X.device)]
        for t in range(X.shape[1] - 1):
            P = self._plan(X[:, t], X[:, t + 1])
            rows = P[idx[-1]]
            logits = rows.double().log()
            u = torch.rand(logits.shape, generator=self.generator, dtype=torch.float64, device="cpu")
            g = -torch.log(-torch.log(u.to(logits.device).clamp_min(1e-300)))
            idx.append((logits + g).argmax(1))
        return torch.stack([X[:, t][idx[t]] for t in range(X.shape[1])], dim=1).detach().cpu().numpy()


def _check(x0: Any, x1: Any) -> None:
    for x, name in ((x0, "x0"), (x1, "x1")):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch tensor, got {type(x).__name__}")
        if x.dim() < 1:
            raise ValueError(f"{name} must have shape (bs, *dim), got a 0-d tensor")
    if x0.shape[1:] != x1.shape[1:]:
        raise ValueError(
            f"x0 and x1 must have the same sample shape, got {tuple(x0.shape)} and {tuple(x1.shape)}"
        )
    if x0.shape[0] == 0 or x1.shape[0] == 0:
        raise ValueError(f"x0 and x1 must be non-empty, got {x0.shape[0]} and {x1.shape[0]} samples")
