"""Type stub for fastot's torch-free C++ extension (csrc/bindings.cpp)."""

from typing import overload

import numpy as np
import numpy.typing as npt

STATUS_OK: int
STATUS_INFEASIBLE: int
STATUS_INVALID: int
HAVE_OPENMP: bool

@overload
def lsa_batch(
    cost: npt.NDArray[np.float64], num_threads: int = 1, isa: str = "auto"
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int32]]:
    """Exact assignment of a C-contiguous ``(B, n, m)`` float64 batch with ``n <= m`` (minimisation, ``+inf``
    forbidden). Returns ``(col4row (B, n) int64, u (B, n), v (B, m), status (B,) int32)`` with
    ``u[i] + v[j] <= C[i, j]``, equality on assigned pairs, ``v == 0`` on unassigned columns;
    status ``STATUS_OK``, ``STATUS_INFEASIBLE`` or ``STATUS_INVALID`` (NaN or ``-inf``). Releases the GIL and
    runs the problems on ``num_threads`` threads. ``isa`` selects the compiled copy of the kernel: ``"auto"``
    (the widest this CPU runs) or one of ``available_isas()``; anything else raises ``ValueError``."""

@overload
def lsa_batch(
    cost: npt.NDArray[np.float32], num_threads: int = 1, isa: str = "auto"
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """float32 overload, solved in float32 arithmetic."""

def available_isas() -> list[str]:
    """Instruction-set copies of the CPU kernels that this build holds and this CPU runs, widest first
    (e.g. ``["avx512", "avx2", "generic"]``); ``"generic"`` is always last."""
