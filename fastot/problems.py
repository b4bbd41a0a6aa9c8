"""Problem building: validate inputs once and lay them out the way the kernels want them.

Everything that inspects a user's cost (shape, dtype, orientation, sign) happens here; the solvers
receive a prepared problem and never re-validate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "TORCH_SOLVE_DTYPES",
    "AssignmentProblem",
    "check_assignment_cost",
    "prepare_assignment",
    "resolve_solve_dtype",
]

# Solve dtypes the C++ assignment kernel has overloads for.
_SOLVE_DTYPES = {
    np.dtype(np.float64): np.dtype(np.float64),
    np.dtype(np.float32): np.dtype(np.float32),
    torch.float64: np.dtype(np.float64),
    torch.float32: np.dtype(np.float32),
}
# NumPy solve dtype -> the torch dtype of the same name.
TORCH_SOLVE_DTYPES = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}

_SHAPE_MSG = "cost must have shape (..., n, m) (a matrix or a batch of matrices)"


@dataclass(frozen=True)
class AssignmentProblem:
    """A batch of linear sum assignment problems, ready for the kernel.

    Attributes:
        cost: ``(B, r, c)`` C-contiguous NumPy array in the solve dtype with ``r <= c``: the caller's
            cost flattened over batch dimensions, transposed when ``transposed`` and negated when
            ``maximize`` (so the kernel always minimises). It may share memory with the caller's input
            (no copy is made when none is needed): treat it as read-only.
        batch_shape: the caller's leading dimensions ``...``; ``B = prod(batch_shape)``.
        n, m: rows and columns in the caller's orientation.
        transposed: ``n > m``: ``cost`` holds the caller's ``(m, n)`` transpose.
        maximize: the caller asked for a maximum; ``cost`` holds the negated matrix.
    """

    cost: np.ndarray
    batch_shape: tuple[int, ...]
    n: int
    m: int
    transposed: bool
    maximize: bool

    @property
    def k(self) -> int:
        """Number of assigned pairs per problem, ``min(n, m)``."""
        return min(self.n, self.m)

    @property
    def batch_size(self) -> int:
        return math.prod(self.batch_shape)

    @property
    def solve_dtype(self) -> np.dtype:
        return self.cost.dtype

    @property
    def is_empty(self) -> bool:
        """No entries at all (``n == 0``, ``m == 0`` or an empty batch): nothing to solve."""
        return self.n == 0 or self.m == 0 or self.batch_size == 0


def resolve_solve_dtype(solve_dtype: Any) -> np.dtype:
    """``None`` -> float64; float64 / float32 as NumPy or torch dtypes -> the NumPy dtype."""
    if solve_dtype is None:
        return np.dtype(np.float64)
    try:
        key = solve_dtype if isinstance(solve_dtype, torch.dtype) else np.dtype(solve_dtype)
        return _SOLVE_DTYPES[key]
    except (TypeError, KeyError):
        raise ValueError(f"solve_dtype must be float64 or float32, got {solve_dtype!r}") from None


_TORCH_INTS = frozenset(
    getattr(torch, name)
    for name in ("bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64")
    if hasattr(torch, name)
)


def _check_torch_dtype(dtype: torch.dtype) -> None:
    if not (dtype.is_floating_point or dtype in _TORCH_INTS):
        raise TypeError(f"cost must have a real (bool, integer or floating) dtype, got {dtype}")


def _check_numpy_dtype(dtype: np.dtype) -> None:
    if dtype.kind not in "biuf":
        raise TypeError(f"cost must have a real (bool, integer or floating) dtype, got {dtype}")


def check_assignment_cost(cost: torch.Tensor) -> None:
    """Shape and dtype checks for a tensor cost, using metadata only (safe under ``torch.compile``).

    Raises:
        TypeError: complex or otherwise non-real dtype.
        ValueError: fewer than 2 dimensions.
    """
    _check_torch_dtype(cost.dtype)
    if cost.dim() < 2:
        raise ValueError(f"{_SHAPE_MSG}, got shape {tuple(cost.shape)}")


def _as_numpy(cost: Any) -> np.ndarray:
    """NumPy view of array-likes (lists, NumPy arrays, anything with ``__array__``)."""
    try:
        arr = np.asarray(cost)
    except (ValueError, TypeError) as err:  # ragged nested lists and the like
        raise ValueError(f"cost must be a real array of shape (..., n, m): {err}") from err
    _check_numpy_dtype(arr.dtype)
    if arr.ndim < 2:
        raise ValueError(f"{_SHAPE_MSG}, got shape {arr.shape}")
    return arr


def prepare_assignment(cost: Any, maximize: bool = False, *, solve_dtype: Any = None) -> AssignmentProblem:
    """Validate a cost ``(..., n, m)`` and build the kernel's ``(B, min, max)`` buffer in one pass.

    Args:
        cost: ``(..., n, m)`` NumPy array, nested list or torch tensor (any device) of a real dtype
            (bool, integer, float16/bfloat16/float32/float64). ``+inf`` marks a forbidden pair when
            minimising, ``-inf`` when maximising (scipy's convention); NaN, and the opposite infinity,
            are invalid and reported by the solver.
        maximize: find the maximum-weight assignment instead.
        solve_dtype: dtype the kernel runs in: float64 (default, for every input dtype, so results
            match scipy exactly) or float32.

    Returns:
        An :class:`AssignmentProblem` whose ``cost`` is the caller's matrix converted to the solve dtype,
        transposed if ``n > m`` and negated if ``maximize``, made by a single copy, or by no copy at all
        when the input already is a C-contiguous CPU array in the solve dtype with ``n <= m`` and
        ``maximize`` is false.

    Raises:
        TypeError: non-real dtype (complex, object, strings).
        ValueError: fewer than 2 dimensions, bad ``solve_dtype``.
    """
    dtype = resolve_solve_dtype(solve_dtype)
    maximize = bool(maximize)
    if isinstance(cost, torch.Tensor):
        check_assignment_cost(cost)
        return _prepare_torch(cost, maximize, dtype)
    return _prepare_numpy(_as_numpy(cost), maximize, dtype)


def _problem(buf: np.ndarray, shape: tuple[int, ...], transposed: bool, maximize: bool) -> AssignmentProblem:
    *batch, n, m = shape
    r, c = (m, n) if transposed else (n, m)
    return AssignmentProblem(
        cost=buf.reshape(math.prod(batch), r, c),
        batch_shape=tuple(batch),
        n=n,
        m=m,
        transposed=transposed,
        maximize=maximize,
    )


def _empty_problem(
    shape: tuple[int, ...], transposed: bool, maximize: bool, dtype: np.dtype
) -> AssignmentProblem:
    *batch, n, m = shape
    buf = np.empty((*batch, m, n) if transposed else (*batch, n, m), dtype)
    return _problem(buf, shape, transposed, maximize)


def _prepare_numpy(arr: np.ndarray, maximize: bool, dtype: np.dtype) -> AssignmentProblem:
    n, m = arr.shape[-2:]
    transposed = n > m
    if arr.size == 0:
        return _empty_problem(arr.shape, transposed, maximize, dtype)
    # Fast path: the caller's buffer is already what the kernel reads (the kernel needs an aligned,
    # native-byte-order, C-contiguous array of exactly the solve dtype; it never writes to it).
    ready = arr.dtype == dtype and arr.flags.c_contiguous and arr.flags.aligned
    if ready and not transposed and not maximize:
        return _problem(arr, arr.shape, False, False)
    view = arr.swapaxes(-1, -2) if transposed else arr
    buf = np.empty(view.shape, dtype)
    # One pass does conversion, transposition and negation; the dtype was checked to be real.
    if maximize:
        np.negative(view, out=buf, dtype=dtype, casting="unsafe")
    else:
        np.copyto(buf, view, casting="unsafe")
    return _problem(buf, arr.shape, transposed, maximize)


def _prepare_torch(cost: torch.Tensor, maximize: bool, dtype: np.dtype) -> AssignmentProblem:
    # Conversion runs on the tensor's own device; a non-CPU tensor then makes one copy to host.
    t = cost.detach()
    tdtype = TORCH_SOLVE_DTYPES[dtype]
    shape = tuple(t.shape)
    n, m = shape[-2:]
    transposed = n > m
    if t.numel() == 0:
        return _empty_problem(shape, transposed, maximize, dtype)
    if not transposed and not maximize and t.dtype == tdtype:
        # Only a layout change at most: none for a contiguous CPU tensor, one copy otherwise.
        t = t.resolve_neg()
        on_cpu = t.device.type == "cpu"
        host = t.contiguous() if on_cpu else t.to("cpu", memory_format=torch.contiguous_format)
        return _problem(host.numpy(), shape, False, False)
    view = t.mT if transposed else t
    buf = torch.empty(view.shape, dtype=tdtype, device=t.device)
    if maximize:
        # torch.neg's out= must match the input dtype; multiplying by a 0-dim -1 of the solve dtype
        # converts and negates in one pass (exactly: for integer/bool inputs it computes in the solve
        # dtype, for floating ones the negation is exact in any precision).
        torch.mul(view, torch.tensor(-1, dtype=tdtype, device=t.device), out=buf)
    else:
        buf.copy_(view)
    return _problem(buf.cpu().numpy(), shape, transposed, maximize)
