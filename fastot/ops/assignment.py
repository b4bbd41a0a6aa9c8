"""torch.library ops for exact linear sum assignment.

``fastot::linear_sum_assignment(Tensor cost, bool maximize) -> (Tensor row_ind, Tensor col_ind)``
``fastot::solve_assignment(Tensor cost, bool maximize, ScalarType solve_dtype=float64)
    -> (Tensor row_ind, Tensor col_ind, Tensor u, Tensor v)``

``cost (..., n, m)`` of any real dtype (bool, integer, floating); ``row_ind``, ``col_ind`` are
``(..., k)`` int64 with ``k = min(n, m)``, rows ascending within each problem; ``u (..., n)`` and
``v (..., m)`` are the dual potentials in ``solve_dtype`` (see :class:`fastot.outputs.AssignmentOutput`).
All outputs are on ``cost``'s device.

Devices (which path runs when):

- CPU tensors: the C++ Jonker-Volgenant solver (``fastot._C``), reached through a NumPy view of the
  tensor (no copy for a contiguous float64 ``cost`` with ``n <= m``).
- CUDA tensors, Triton importable: the Triton kernels of :mod:`fastot._triton.assignment` (shortest
  augmenting paths with dual potentials, one program per problem). Everything stays on the device:
  the arithmetic runs in the solve dtype (float64 for ``linear_sum_assignment``, ``solve_dtype`` for
  ``solve_assignment``; float16/bfloat16/float32 costs are kept in float32 and converted exactly in
  the kernel), the cost is transposed when ``n > m`` and negated for ``maximize`` with torch ops on
  the GPU; results are mapped back (sorting rows for ``n > m``) with torch ops too. The one host
  synchronisation is reading the per-problem status, to raise scipy's errors (NaN / ``-inf``,
  infeasible) exactly as on CPU.
- CUDA tensors, Triton not importable: a host round trip. The cost is converted on the GPU, copied
  to the host, solved by the CPU kernel, and the results are copied back (one synchronisation).

Both device paths return the optimum (certified by the potentials); on ties the chosen optimal
assignment may differ between the CPU and the GPU kernels.

Outputs are indices (and potentials, which are not a differentiable function worth exposing): the ops
have no autograd formula. Calling them on a cost that requires grad works and returns the same results;
the index outputs are integers and carry no gradient. ``torch.autograd.backward`` through ``u``/``v``
raises instead of returning a silently wrong gradient. For a differentiable optimal value use
:func:`fastot.solve_assignment`, whose ``value`` is gathered from the cost with ordinary torch ops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..problems import check_assignment_cost, prepare_assignment, resolve_solve_dtype
from ..solvers.assignment import _raise_on_status, solve_lsa

__all__ = [
    "linear_sum_assignment",
    "sample_inputs_linear_sum_assignment",
    "sample_inputs_solve_assignment",
    "solve_assignment",
]


def _to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t if device.type == "cpu" else t.to(device, non_blocking=False)


def _solve(cost: torch.Tensor, maximize: bool, solve_dtype: torch.dtype):
    return solve_lsa(prepare_assignment(cost, maximize, solve_dtype=solve_dtype))


def _triton_solver() -> Callable[..., Any] | None:
    """The Triton batch solver, or ``None`` when Triton cannot be imported (then CUDA costs take the
    host round trip)."""
    try:
        from .._triton.assignment import solve_lsa as triton_solve_lsa
    except ImportError:
        return None
    return triton_solve_lsa


def _solve_on_device(
    cost: torch.Tensor, maximize: bool, solve_dtype: torch.dtype, solver: Callable[..., Any]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(row_ind, col_ind, u, v)`` in the caller's orientation and sign, all on ``cost``'s device.

    ``solver`` is :func:`fastot._triton.assignment.solve_lsa` (any device: CUDA, or CPU tensors under
    ``TRITON_INTERPRET=1`` in tests). Preparation (dtype, transposition of ``n > m``, negation for
    ``maximize``) and the mapping back are torch ops on the device; the status is read once.
    """
    check_assignment_cost(cost)
    t = cost.detach()
    *batch, n, m = t.shape
    k = min(n, m)
    transposed = n > m
    dev = t.device
    if t.numel() == 0:
        # scipy returns empty index arrays; zero potentials certify the value 0
        empty = torch.empty((*batch, k), dtype=torch.int64, device=dev)
        return (
            empty,
            empty.clone(),
            torch.zeros((*batch, n), dtype=solve_dtype, device=dev),
            torch.zeros((*batch, m), dtype=solve_dtype, device=dev),
        )
    view = t.mT if transposed else t
    r, c = (m, n) if transposed else (n, m)
    # Storage: float32 for float16/bfloat16/float32 costs even when solving in float64 (exact: the
    # kernel converts on load; half the bytes per step), else the solve dtype. Negation is exact.
    narrow = t.dtype in (torch.float16, torch.bfloat16, torch.float32)
    buf = view.to(torch.float32 if narrow else solve_dtype)
    if maximize:
        buf = torch.neg(buf)
    buf = buf.reshape(-1, r, c)
    col4row, u_k, v_k, status = solver(buf, dtype=solve_dtype)
    _raise_on_status(status.cpu().numpy(), tuple(batch))  # the one host synchronisation
    if maximize:
        u_k, v_k = torch.neg(u_k), torch.neg(v_k)
    if transposed:
        # the kernel solved C^T: its rows are our columns; sort by our row index as scipy does
        row_ind, col_ind = torch.sort(col4row, dim=1, stable=True)
        u, v = v_k, u_k
    else:
        row_ind = torch.arange(r, dtype=torch.int64, device=dev).expand(col4row.shape[0], r).clone()
        col_ind = col4row
        u, v = u_k, v_k
    return (
        row_ind.reshape(*batch, k),
        col_ind.reshape(*batch, k),
        u.reshape(*batch, n),
        v.reshape(*batch, m),
    )


def _cuda_solver(cost: torch.Tensor) -> Callable[..., Any] | None:
    return _triton_solver() if cost.device.type == "cuda" else None


@torch.library.custom_op("fastot::linear_sum_assignment", mutates_args=(), device_types=("cpu", "cuda"))
def linear_sum_assignment(cost: torch.Tensor, maximize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimal assignment ``(row_ind, col_ind)``, each ``(..., min(n, m))`` int64 on ``cost``'s device."""
    solver = _cuda_solver(cost)
    if solver is not None:
        row_ind, col_ind, _, _ = _solve_on_device(cost, maximize, torch.float64, solver)
        return row_ind, col_ind
    out = _solve(cost, maximize, torch.float64)
    return _to_device(out.row_ind, cost.device), _to_device(out.col_ind, cost.device)


@linear_sum_assignment.register_fake
def _(cost: torch.Tensor, maximize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    check_assignment_cost(cost)
    shape = (*cost.shape[:-2], torch.sym_min(cost.shape[-2], cost.shape[-1]))
    return cost.new_empty(shape, dtype=torch.int64), cost.new_empty(shape, dtype=torch.int64)


@torch.library.custom_op("fastot::solve_assignment", mutates_args=(), device_types=("cpu", "cuda"))
def solve_assignment(
    cost: torch.Tensor, maximize: bool, solve_dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Optimal assignment with dual potentials: ``(row_ind, col_ind, u, v)`` on ``cost``'s device."""
    solver = _cuda_solver(cost)
    if solver is not None:
        resolve_solve_dtype(solve_dtype)
        return _solve_on_device(cost, maximize, solve_dtype, solver)
    out = _solve(cost, maximize, solve_dtype)
    return tuple(_to_device(a, cost.device) for a in (out.row_ind, out.col_ind, out.u, out.v))  # type: ignore[return-value]


@solve_assignment.register_fake
def _(
    cost: torch.Tensor, maximize: bool, solve_dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    check_assignment_cost(cost)
    resolve_solve_dtype(solve_dtype)
    *batch, n, m = cost.shape
    k = torch.sym_min(n, m)
    return (
        cost.new_empty((*batch, k), dtype=torch.int64),
        cost.new_empty((*batch, k), dtype=torch.int64),
        cost.new_empty((*batch, n), dtype=solve_dtype),
        cost.new_empty((*batch, m), dtype=solve_dtype),
    )


def _sample_costs(device: str | torch.device) -> list[tuple[torch.Tensor, bool]]:
    g = torch.Generator().manual_seed(0)

    def randn(*shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)

    inf_cost = randn(5, 5)
    inf_cost[0, 1:] = float("inf")  # row 0 may only take column 0
    return [
        (randn(5, 5), False),  # square
        (randn(4, 7), False),  # wide
        (randn(7, 4), False),  # tall: solved transposed
        (randn(3, 4, 6), False),  # batched
        (randn(2, 3, 6, 4), True),  # batched, two batch dims, tall, maximize
        (randn(6, 6), True),  # maximize
        (randn(5, 8, dtype=torch.float32), False),
        (randn(8, 5, dtype=torch.float32), True),
        (torch.randint(0, 10, (6, 6), generator=g).to(device), False),  # int64
        (torch.randint(0, 10, (2, 5, 3), generator=g, dtype=torch.int32).to(device), True),
        (inf_cost, False),  # +inf = forbidden pair
        (randn(6, 6).t(), False),  # non-contiguous
        (randn(0, 4), False),  # empty
        (randn(3, 0, 4), False),  # empty batch
        (randn(4, 4, dtype=torch.float32).requires_grad_(), False),  # requires grad: indices only
    ]


def sample_inputs_linear_sum_assignment(device: str | torch.device = "cpu") -> list[tuple[tuple, dict]]:
    """``(args, kwargs)`` pairs for ``torch.library.opcheck`` of ``fastot::linear_sum_assignment``."""
    return [((cost, maximize), {}) for cost, maximize in _sample_costs(device)]


def sample_inputs_solve_assignment(device: str | torch.device = "cpu") -> list[tuple[tuple, dict]]:
    """``(args, kwargs)`` pairs for ``torch.library.opcheck`` of ``fastot::solve_assignment``."""
    samples: list[tuple[tuple, dict]] = [
        ((cost.detach(), maximize), {}) for cost, maximize in _sample_costs(device)
    ]
    samples.append(((samples[1][0][0], False), {"solve_dtype": torch.float32}))
    return samples
