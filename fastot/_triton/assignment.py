"""Triton kernels for exact linear sum assignment: shortest augmenting paths with dual potentials.

``solve_lsa(C)`` solves every problem of a batch ``C (B, r, c)`` with ``r <= c`` (minimisation;
``+inf`` = forbidden pair) exactly and returns ``col4row (B, r)`` int64, the dual potentials
``u (B, r)``, ``v (B, c)`` in the arithmetic's dtype (float32 or float64: ``C``'s, or float64 for a
float32 ``C``, whose entries the kernel converts exactly on load) and a status per problem
(:data:`STATUS_OK`, :data:`STATUS_INFEASIBLE`, :data:`STATUS_INVALID`, the codes of ``fastot._C``).
The duals certify the optimum: ``u_i + v_j <= C_ij`` for every pair, with equality on the
assignment, ``v_j = 0`` on unassigned columns (so ``v <= 0`` when ``r < c``) and ``sum u + sum v`` =
the assignment's cost, all up to rounding in the arithmetic's dtype.

Algorithm (one program per problem, the batch is the grid): Jonker-Volgenant's shortest augmenting
paths. Only the column potentials ``v`` are kept; a row's potential is implied (``u_i = C[i, j] -
v[j]`` on its assigned column ``j``). For each free row, Dijkstra over the columns on reduced costs:
a step relaxes one row of ``C`` against the labels of every column at once (a vector operation over
the column block), then picks the unscanned column of least label, preferring an unassigned one on a
tie (the path ends there). The labels of the scanned columns then update ``v``, and the path flips.
Warm start (square problems; torch ops over the whole batch, so on a GPU this part uses every SM):
column potentials from column reduction (``v_j = min_i C_ij``) or from log-domain Sinkhorn sweeps
at a decreasing temperature (fastot's fused ``lse_dense`` kernel on CUDA; from 256 rows, below which
their launches cost more than they save), per problem whichever leaves fewer rows free after every
row takes its cheapest column under ``v`` (a column wanted twice
goes to the lower row). Any finite ``v`` is a valid start, so the optimum never depends on it; it
only decides how many augmenting paths the single program must search. Counted with a NumPy
emulation of this kernel on float64 costs of N(0, I) clouds (``stats`` reports the same counts):

    =====================  ==============  ===================  ==========================
    n, d                   cold (v = 0)    column reduction     entropic (8 / 32 / 64 sw.)
    =====================  ==============  ===================  ==========================
    256, 64                5.1k steps      2.2k                 628 / 226 / 80
    1024, 64               53k             24k                  5.7k / 2.0k (40 sw.) / 1.5k
    1024, 3072             57k             28k                  5.4k / 1.7k / 0.7k
    4096, 64               490k            185k                 30k / 13k / 8.2k
    =====================  ==============  ===================  ==========================

(``python -m bench.assignment_model`` counts the shipped schedule on other instances, 1.9k / 1.5k / 9.8k
for the last three rows, with a model checked against the kernel's counts, and shows why the
augmenting phase stays in one program: a whole-GPU Jacobi auction before it would need ~11k bidding
rounds at n = 4096 to cut the steps 5x, and searches from all free rows at once take ~3x more steps.)

Rectangular problems start from ``v = 0`` with every row free (so ``v`` stays 0 on columns that end
unassigned).

Two kernels, chosen by the number of columns:

- ``block`` (``c <= block_cap``): the column state (labels, predecessors, ``v``, the column's row,
  the scanned mask) lives in registers as one block of ``next_power_of_2(c)`` lanes; one warp for up
  to 256 columns (reductions are warp shuffles), more warps above;
- ``chunked`` (larger ``c``): the same algorithm with the column state in a global scratch buffer,
  walked in chunks of ``block_cap`` columns per step (barriers order the scalar updates).

Limits: ``r * c`` below 2**31 (row offsets are 32-bit). Exactness: the floating-point result is
optimal up to the rounding of the potentials (the same guarantee as the CPU kernel, ``csrc/lsa.cpp``);
float64 is the safe choice when costs span many orders of magnitude. NaN or ``-inf`` entries are
reported as :data:`STATUS_INVALID` (checked with torch before the launch; such problems are not
solved).

Launchers accept tensors on any device: CUDA tensors run the compiled kernels; CPU tensors need
``TRITON_INTERPRET=1`` in the environment before the first launch (Triton's interpreter). Kernels are
built on first use. This module imports only torch and triton.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import triton
import triton.language as tl

from .softmin import interpreting, lse_dense

__all__ = [
    "STATUS_INFEASIBLE",
    "STATUS_INVALID",
    "STATUS_OK",
    "solve_lsa",
]

# The codes of fastot._C (csrc/lsa.h), so callers can share one error path.
STATUS_OK, STATUS_INFEASIBLE, STATUS_INVALID = 0, 1, 2

_BLOCK_CAP = 4096  # largest column block held in registers on a GPU (see _block_warps)
_CHUNK = 2048  # column chunk of the chunked kernel on a GPU
_INTERPRET_BLOCK_CAP = 64  # under the interpreter (tests pass smaller caps to reach the chunked kernel)


# --------------------------------------------------------------------------------------------------
# kernels (plain functions; decorated with triton.jit on first use, see _kernel). As in softmin.py,
# only Triton builtins are called (reductions are tl.reduce with the standard library's combine
# functions), so the kernels also run when triton was imported before TRITON_INTERPRET=1 was set.


def _min_combine_fallback(a, b):
    return tl.minimum(a, b)


def _max_combine_fallback(a, b):
    return tl.maximum(a, b)


def _sum_combine_fallback(a, b):
    return a + b


def _lex_min_combine(d1, k1, r1, v1, d2, k2, r2, v2):
    # the lane of least (label, key), carrying that column's row and potential along
    first = (d1 < d2) | ((d1 == d2) & (k1 < k2))
    return tl.where(first, d1, d2), tl.where(first, k1, k2), tl.where(first, r1, r2), tl.where(first, v1, v2)


_lex_min = None  # the jitted _lex_min_combine, set by _kernel
_min_combine = getattr(tl.standard, "_elementwise_min", None)
_max_combine = getattr(tl.standard, "_elementwise_max", None)
_sum_combine = getattr(tl.standard, "_sum_combine", None)


def _lsa_block_kernel(
    C,
    COL4ROW,
    U,
    V,
    ROW4COL,
    STATUS,
    STEPS,
    R,
    M,
    stride_cb,
    BLOCK_M: tl.constexpr,
    INIT: tl.constexpr,
    FUSED: tl.constexpr,
):
    # One problem C[b] (R x M, row-major, R <= M <= BLOCK_M); column state in registers. With INIT,
    # the starting v and column owners are read from V and ROW4COL (a warm start); else v = 0 and
    # every row is free.
    dt = V.dtype.element_ty  # the arithmetic's dtype (C may be stored narrower: loads convert exactly)
    b = tl.program_id(0).to(tl.int64)
    c_base = C + b * stride_cb
    idx = tl.arange(0, BLOCK_M)
    cmask = idx < M
    inf_v = tl.full([BLOCK_M], float("inf"), dt)
    zero = tl.reduce(tl.full([BLOCK_M], 0.0, dt), 0, _sum_combine)  # a 0-d tensor of dtype dt
    status = tl.load(STATUS + b)
    if INIT:
        v = tl.load(V + b * M + idx, mask=cmask, other=0.0)
        row4col = tl.load(ROW4COL + b * M + idx, mask=cmask, other=-1)
    else:
        v = tl.full([BLOCK_M], 0.0, dt)
        row4col = tl.full([BLOCK_M], -1, tl.int32)
    steps = tl.reduce(tl.full([BLOCK_M], 0, tl.int32), 0, _sum_combine)

    for f in range(0, R):
        is_free = tl.reduce(tl.where(row4col == f, 0, 1), 0, _min_combine)
        # Dijkstra from row f; labels are relative to u_f. A loop that must not run starts with sink >= 0.
        sink = tl.where((is_free == 1) & (status == 0), -1, 0)
        dist = inf_v
        pred = tl.full([BLOCK_M], 0, tl.int32) + f
        scanned = tl.full([BLOCK_M], 0, tl.int32)
        i = f + 0
        h = zero
        lowest = zero
        # Row f's costs; later rows are loaded at the end of the step that picks them, together with
        # their entry C_ij (two independent loads in flight instead of two dependent ones per step).
        c = tl.load(c_base + f * M + idx, mask=cmask & (sink < 0), other=float("inf")).to(dt)
        while sink < 0:
            steps += 1
            x = c - v - h
            upd = (x < dist) & (scanned == 0)
            dist = tl.where(upd, x, dist)
            pred = tl.where(upd, i, pred)
            dm = tl.where(scanned == 0, dist, inf_v)
            # The least label; among equal labels an unassigned column first (it ends the path), then
            # the lowest index. The next row is the one assigned to that column j; its potential
            # u_i = C_ij - v_j gives the offset h of its relaxation.
            key = idx + tl.where(row4col < 0, 0, BLOCK_M)
            if FUSED:  # one reduction (fewer barriers on a GPU)
                lowest, kmin, i_next, vj = tl.reduce((dm, key, row4col, v), 0, _lex_min)
            else:  # per-operand reductions (what the interpreter runs fast)
                lowest = tl.reduce(dm, 0, _min_combine)
                kmin = tl.reduce(tl.where(dm == lowest, key, 2 * BLOCK_M), 0, _min_combine)
                at_k = idx == tl.where(kmin < BLOCK_M, kmin, kmin - BLOCK_M)
                i_next = tl.reduce(tl.where(at_k, row4col, -1), 0, _max_combine)
                vj = tl.reduce(tl.where(at_k, v, 0.0), 0, _sum_combine)
            feasible = lowest < float("inf")
            j = tl.where(kmin < BLOCK_M, kmin, kmin - BLOCK_M)
            status = tl.where(feasible, status, 1)  # STATUS_INFEASIBLE
            sink = tl.where(feasible, tl.where(kmin < BLOCK_M, j, -1), 0)
            scanned = tl.where(idx == j, 1, scanned)
            i_next = tl.where(feasible, i_next, -1)
            go_on = (i_next >= 0) & (sink < 0)
            i = tl.maximum(i_next, 0)
            c = tl.load(c_base + i * M + idx, mask=cmask & go_on, other=float("inf")).to(dt)
            cij = tl.load(c_base + i * M + j, mask=go_on, other=0.0).to(dt)
            h = tl.where(feasible, cij - vj - lowest, zero)
        ok = (is_free == 1) & (status == 0)
        # dual update on the scanned columns (the sink's label is `lowest`: unchanged), then the flip
        lowest = tl.where(ok, lowest, zero)  # (an infeasible search ends at lowest = inf)
        v = tl.where((scanned != 0) & ok, v + dist - lowest, v)
        j = tl.where(ok, sink, -1)
        while j >= 0:
            at_j = idx == j
            i = tl.reduce(tl.where(at_j, pred, -1), 0, _max_combine)
            prev = tl.reduce(tl.where(row4col == i, idx, BLOCK_M), 0, _min_combine)
            row4col = tl.where(at_j, i, row4col)
            j = tl.where(i == f, -1, prev)

    tl.store(STATUS + b, status)
    tl.store(STEPS + b, steps)
    ok = status == 0
    assigned = (row4col >= 0) & cmask & ok
    rows = tl.maximum(row4col, 0)
    tl.store(COL4ROW + b * R + rows, idx.to(tl.int64), mask=assigned)
    c_assigned = tl.load(c_base + rows * M + idx, mask=assigned, other=0.0).to(dt)
    tl.store(U + b * R + rows, c_assigned - v, mask=assigned)
    tl.store(V + b * M + idx, v, mask=cmask)


def _lsa_chunked_kernel(
    C,
    COL4ROW,
    V,
    DIST,
    PRED,
    ROW4COL,
    SCAN,
    STATUS,
    STEPS,
    R,
    M,
    stride_cb,
    BLOCK: tl.constexpr,
    FUSED: tl.constexpr,
):
    # One problem C[b] (R x M, R <= M); column state in global scratch rows of length M, walked in
    # chunks of BLOCK. Vector loads and stores of a chunk use one layout (each lane touches what it
    # wrote); scalar updates are followed by a barrier before any lane may read them.
    # On entry (launcher): the starting V, ROW4COL and COL4ROW (v = 0 and -1: every row free; or a
    # warm start).
    dt = V.dtype.element_ty
    b = tl.program_id(0).to(tl.int64)
    c_base = C + b * stride_cb
    v_base = V + b * M
    d_base = DIST + b * M
    p_base = PRED + b * M
    r_base = ROW4COL + b * M
    s_base = SCAN + b * M
    cr_base = COL4ROW + b * R
    idx = tl.arange(0, BLOCK)
    zero = tl.reduce(tl.full([BLOCK], 0.0, dt), 0, _sum_combine)
    status = tl.load(STATUS + b)

    steps = tl.reduce(tl.full([BLOCK], 0, tl.int32), 0, _sum_combine)

    for f in range(0, R):
        active = (tl.load(cr_base + f) < 0) & (status == 0)
        sink = tl.where(active, -1, 0)
        if active:
            for c0 in range(0, M, BLOCK):
                offs = c0 + idx
                cm = offs < M
                tl.store(d_base + offs, tl.full([BLOCK], float("inf"), dt), mask=cm)
                tl.store(p_base + offs, tl.full([BLOCK], 0, tl.int32) + f, mask=cm)
                tl.store(s_base + offs, tl.full([BLOCK], 0, tl.int8), mask=cm)
            tl.debug_barrier()
        i = f + 0
        h = zero
        lowest = zero
        while sink < 0:
            steps += 1
            row = c_base + i * M
            best = zero + float("inf")
            kbest = 2 * M
            ibest = -1  # FUSED: the row and potential of column kbest, carried by the reductions
            vbest = zero
            for c0 in range(0, M, BLOCK):
                offs = c0 + idx
                cm = offs < M
                c = tl.load(row + offs, mask=cm, other=float("inf")).to(dt)
                vc = tl.load(v_base + offs, mask=cm, other=0.0)
                d = tl.load(d_base + offs, mask=cm, other=float("inf"))
                free_col = tl.load(s_base + offs, mask=cm, other=1) == 0
                x = c - vc - h
                upd = (x < d) & free_col
                d = tl.where(upd, x, d)
                tl.store(d_base + offs, d, mask=cm)
                tl.store(p_base + offs, tl.full([BLOCK], 0, tl.int32) + i, mask=cm & upd)
                dm = tl.where(free_col, d, float("inf"))
                r4c = tl.load(r_base + offs, mask=cm, other=0)
                if FUSED:  # one reduction carrying the column's row and potential (no loads after it)
                    key = tl.where(cm, offs + tl.where(r4c < 0, 0, M), 2 * M)
                    cl, kc, ic, vjc = tl.reduce((dm, key, r4c, vc), 0, _lex_min)
                    take = (cl < best) | ((cl == best) & (kc < kbest))
                    ibest = tl.where(take, ic, ibest)
                    vbest = tl.where(take, vjc, vbest)
                    kbest = tl.where(take, kc, kbest)
                else:  # per-operand reductions (what the interpreter runs fast)
                    cl = tl.reduce(dm, 0, _min_combine)
                    key = tl.where((dm == cl) & cm, offs + tl.where(r4c < 0, 0, M), 2 * M)
                    kc = tl.reduce(key, 0, _min_combine)
                    kbest = tl.where(cl < best, kc, tl.where(cl == best, tl.minimum(kbest, kc), kbest))
                best = tl.minimum(best, cl)
            lowest = best
            feasible = lowest < float("inf")
            j = tl.where(kbest < M, kbest, kbest - M)
            status = tl.where(feasible, status, 1)  # STATUS_INFEASIBLE
            sink = tl.where(feasible, tl.where(kbest < M, j, -1), 0)
            scan = sink < 0
            tl.store(s_base + j, tl.full([], 1, tl.int8), mask=scan)
            if FUSED:
                i_next = tl.where(scan, ibest, -1)
                vj = tl.where(scan, vbest, zero)
            else:
                i_next = tl.load(r_base + j, mask=scan, other=-1)
                vj = tl.load(v_base + j, mask=scan, other=0.0)
            cij = tl.load(c_base + i_next * M + j, mask=scan & (i_next >= 0), other=0.0).to(dt)
            h = tl.where(feasible, cij - vj - lowest, zero)
            i = tl.maximum(i_next, 0)
            tl.debug_barrier()
        ok = active & (status == 0)
        if ok:
            for c0 in range(0, M, BLOCK):
                offs = c0 + idx
                cm = offs < M
                scanned = tl.load(s_base + offs, mask=cm, other=0) != 0
                vc = tl.load(v_base + offs, mask=cm, other=0.0)
                d = tl.load(d_base + offs, mask=cm, other=0.0)
                tl.store(v_base + offs, tl.where(scanned, vc + d - lowest, vc), mask=cm)
            tl.debug_barrier()
        j = tl.where(ok, sink, -1)
        while j >= 0:
            i = tl.load(p_base + j)
            prev = tl.load(cr_base + i)
            tl.store(r_base + j, i)
            tl.store(cr_base + i, j.to(tl.int64))
            j = tl.where(i == f, -1, prev.to(tl.int32))
        tl.debug_barrier()

    tl.store(STATUS + b, status)
    tl.store(STEPS + b, steps)


# --------------------------------------------------------------------------------------------------
# kernel construction

_BODIES: dict[str, Callable[..., Any]] = {"block": _lsa_block_kernel, "chunked": _lsa_chunked_kernel}


@functools.cache
def _kernel(name: str, interpret: bool):
    """The jitted kernel ``name`` (one per interpreter mode, built on first use)."""
    global _lex_min, _min_combine, _max_combine, _sum_combine
    if _lex_min is None:
        _lex_min = triton.jit(_lex_min_combine)
    if _min_combine is None:  # not in this triton version's standard library: our own
        _min_combine = triton.jit(_min_combine_fallback)
    if _max_combine is None:
        _max_combine = triton.jit(_max_combine_fallback)
    if _sum_combine is None:
        _sum_combine = triton.jit(_sum_combine_fallback)
    return triton.jit(_BODIES[name])


def _get(name: str, device: torch.device):
    interpret = interpreting()
    if device.type != "cuda" and not interpret:
        raise RuntimeError(
            f"fastot._triton: the assignment kernel got {device.type} tensors; Triton kernels need CUDA "
            "tensors, or TRITON_INTERPRET=1 in the environment (Triton's CPU interpreter) before the "
            "first launch"
        )
    return _kernel(name, interpret), interpret


def _block_warps(block_m: int) -> int:
    """Warps for a register-resident column block: one up to 256 lanes (warp-shuffle reductions only),
    then about 8 lanes per thread."""
    return max(1, min(16, block_m // 256))


# --------------------------------------------------------------------------------------------------
# warm start (torch ops on the whole batch, in parallel on the device)

_WARM_STARTS = (True, False, "auto", "columns", "entropic")
# Entropic sweeps: the temperature starts at _EPS0 x the mean spread of a row's finite costs and
# shrinks geometrically to a final fraction of that spread. On a GPU a sweep (two fused passes over C) costs
# about as much as a few dozen Dijkstra steps of the single-program kernel, and on Gaussian clouds
# more sweeps keep removing far more steps than that (numbers in the module docstring), so large
# problems get many sweeps (the CPU kernel, whose steps are cheap, makes 4).
_EPS0 = 0.25
# (smallest n, sweeps, final eps / spread), largest n first. Chosen from step counts only (see the
# module docstring); the GPU trade-off (sweep cost ~ B n^2 bandwidth, step phase ~ steps x latency
# of the slowest problem) is not measured yet.
_SWEEPS = ((2048, 64, 5e-5), (512, 32, 1e-4), (0, 4, 6.75e-3))  # small n: the CPU kernel's 4 sweeps


# Below this many rows "auto" starts from column reduction alone. The entropic start is about 70 small
# torch/Triton launches (~0.3 ms of launch overhead on a GPU, whatever the batch); below n = 256 it saves
# fewer Dijkstra steps than that costs (bench/assignment_model's kernel model, d = 64: n = 64, 280 -> 90
# steps; n = 128, 790 -> 220; n = 256, 3.3k -> 1.1k), steps of a one-warp program taking a fraction of
# a microsecond. Unmeasured on a GPU: bench/gpu_check.py times both starts at B = 64, n = 64.
_ENTROPIC_MIN_N = 256


def _sweep_schedule(n: int, sweeps: int | None = None) -> tuple[int, float]:
    """(number of sweeps, temperature decay per sweep) for problems with n rows; ``sweeps`` overrides
    the count (same final temperature)."""
    count, end = next((s, e) for lo, s, e in _SWEEPS if n >= lo)
    count = count if sweeps is None else sweeps
    return count, (end / _EPS0) ** (1.0 / max(count - 1, 1))


def _rows_take_best(C: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every row takes its cheapest column under ``v`` (reduced cost ``C_ij - v_j``); a column wanted
    by several rows goes to the lowest of them, the others stay free. Returns ``(row4col (B, m)``
    int32 with -1 for unowned columns, ``free (B,)`` the number of free rows). Assigned rows are then
    tight at a row minimum, so with any finite ``v`` this is a valid start for the augmenting phase."""
    B, n, m = C.shape
    best, jbest = (C - v[:, None, :]).min(dim=2)  # in v's dtype (float64 v promotes a float32 C exactly)
    rows = torch.arange(n, device=C.device).expand(B, n)
    # rows whose every entry is forbidden own nothing (the augmenting phase reports them infeasible)
    bid = torch.where(torch.isfinite(best), rows, n)
    owner = torch.full((B, m), n, dtype=torch.int64, device=C.device)
    owner.scatter_reduce_(1, jbest, bid, reduce="amin")
    row4col = torch.where(owner < n, owner, -1).to(torch.int32)
    return row4col, n - (owner < n).sum(1)


def _lse(
    C32: torch.Tensor, h: torch.Tensor, scale: torch.Tensor, transpose: bool, kernel: bool
) -> torch.Tensor:
    """``log sum exp(h - scale C)`` over columns (over rows with ``transpose``): fastot's fused Triton
    kernel (one read of ``C`` per pass; the default on CUDA), or plain torch (elsewhere, e.g. under the
    interpreter, where the kernel would be slow)."""
    if kernel:
        return lse_dense(C32, h, scale, transpose)
    s = scale[:, None, None]
    if transpose:
        return torch.logsumexp(h[:, :, None] - s * C32, dim=1)
    return torch.logsumexp(h[:, None, :] - s * C32, dim=2)


def _entropic_potentials(
    C: torch.Tensor, kernel: bool | None = None, sweeps: int | None = None
) -> torch.Tensor:
    """Column potentials ``g (B, m)`` from log-domain Sinkhorn sweeps (float32, uniform weights, a
    decreasing temperature); ``+inf`` entries are zero-weight terms, non-finite results become 0.
    ``kernel``: use the fused Triton LSE kernel (default: on CUDA)."""
    if kernel is None:
        kernel = C.device.type == "cuda"
    C32 = C.to(torch.float32)
    fin = torch.isfinite(C32)
    hi = torch.where(fin, C32, float("-inf")).amax(2)
    lo = C32.amin(2)
    spread = torch.where(torch.isfinite(hi) & torch.isfinite(lo), hi - lo, 0.0).mean(1)
    eps = torch.where(spread > 0, _EPS0 * spread, 1.0)
    sweeps, decay = _sweep_schedule(C.shape[1], sweeps)
    g = torch.zeros(C.shape[0], C.shape[2], dtype=torch.float32, device=C.device)
    for _ in range(sweeps):
        # f_i = softmin_eps_j (C_ij - g_j), then g_j = softmin_eps_i (C_ij - f_i)
        f = -eps[:, None] * _lse(C32, g / eps[:, None], 1.0 / eps, False, kernel)
        f = torch.where(torch.isfinite(f), f, 0.0)
        g = -eps[:, None] * _lse(C32, f / eps[:, None], 1.0 / eps, True, kernel)
        g = torch.where(torch.isfinite(g), g, 0.0)
        eps = eps * decay
    return g


def warm_start_state(
    C: torch.Tensor, kind: bool | str = "auto", dtype: torch.dtype | None = None, sweeps: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Starting column potentials ``v (B, m)`` (in ``dtype``, default ``C``'s) and column owners
    ``row4col (B, m)`` int32 for square problems ``C (B, n, n)``.

    ``"columns"``: column reduction (``v_j = min_i C_ij``); ``"entropic"``: potentials from a few
    Sinkhorn sweeps (shifted or high-dimensional clouds, where column reduction leaves most rows free);
    ``"auto"``/``True``: per problem, whichever leaves fewer rows free (column reduction alone below
    ``_ENTROPIC_MIN_N`` rows, where the sweeps' launches cost more than they save). Then every row takes its
    cheapest column (:func:`_rows_take_best`). The optimum never depends on the choice. ``sweeps``
    overrides the number of Sinkhorn sweeps (default: by size, see ``_SWEEPS``).
    """
    dtype = C.dtype if dtype is None else dtype
    colmin = C.amin(1).to(dtype)
    v_cols = torch.where(torch.isfinite(colmin), colmin, 0.0)
    if kind == "columns" or (kind in (True, "auto") and C.shape[1] < _ENTROPIC_MIN_N):
        return v_cols, _rows_take_best(C, v_cols)[0]
    v_ent = _entropic_potentials(C, sweeps=sweeps).to(dtype)
    if kind == "entropic":
        return v_ent, _rows_take_best(C, v_ent)[0]
    r_cols, free_cols = _rows_take_best(C, v_cols)
    r_ent, free_ent = _rows_take_best(C, v_ent)
    use_ent = (free_ent < free_cols)[:, None]
    return torch.where(use_ent, v_ent, v_cols), torch.where(use_ent, r_ent, r_cols)


# --------------------------------------------------------------------------------------------------
# launcher


def solve_lsa(
    C: torch.Tensor,
    *,
    warm_start: bool | str = True,
    block_cap: int | None = None,
    wrap: Callable[[Any], Any] | None = None,
    fused_argmin: bool | None = None,
    stats: dict[str, torch.Tensor] | None = None,
    dtype: torch.dtype | None = None,
    num_warps: int | None = None,
    sweeps: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Solve a batch of (minimisation) assignment problems exactly, one program per problem.

    Args:
        C: ``(B, r, c)`` float32 or float64 cost with ``r <= c`` (transpose taller problems first),
            any device (CUDA, or CPU under ``TRITON_INTERPRET=1``), any strides (made contiguous).
            ``+inf`` = forbidden pair; NaN and ``-inf`` make a problem invalid.
        warm_start: how square problems start (rectangular ones always start from ``v = 0`` with
            every row free): ``True``/``"auto"`` (default), ``"columns"``, ``"entropic"`` (see
            :func:`warm_start_state`; torch ops over the whole batch), or ``False`` (every row free).
            The optimum does not depend on it; it saves augmenting paths.
        block_cap: largest column count held in registers (a power of two >= 16); problems with more
            columns use the chunked kernel with chunks of ``block_cap`` columns. Default: 4096 on a
            GPU, 64 under the interpreter.
        wrap: applied to the kernels before launching (``torch.library.wrap_triton`` in a ``triton_op``).
        fused_argmin: pick each Dijkstra step's column with one 4-operand reduction (default on a
            GPU) instead of four reductions (default under the interpreter, which runs those fast).
        dtype: the arithmetic's dtype, float32 or float64 (default ``C``'s). A float32 ``C`` may be
            solved in float64 (its entries convert exactly on load): the same answer as converting
            ``C`` first, with half the memory and half the bytes read per step.
        num_warps, sweeps: tuning overrides (``bench/gpu_check.py`` sweeps them on a GPU): warps per
            program (default: by column count, see ``_block_warps``; 1 under the interpreter) and the
            number of Sinkhorn sweeps of the entropic warm start (default: by size, ``_SWEEPS``).
        stats: if a dict is given, it receives ``"free"`` (B,) (rows left free by the warm start,
            i.e. augmenting paths searched) and ``"steps"`` (B,) (Dijkstra steps, each one pass over a
            row of ``C``): the work that sets the kernel's time.

    Returns:
        ``(col4row, u, v, status)``: ``col4row (B, r)`` int64, the column of each row; ``u (B, r)``,
        ``v (B, c)`` dual potentials in ``dtype``; ``status (B,)`` int32 (:data:`STATUS_OK`,
        :data:`STATUS_INFEASIBLE`, :data:`STATUS_INVALID`). A problem whose status is not OK has
        ``col4row = -1`` and NaN potentials. Nothing is synchronised with the host.
    """
    if not isinstance(C, torch.Tensor):
        raise TypeError(f"C must be a torch.Tensor, got {type(C).__name__}")
    if C.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"C must be float32 or float64, got {C.dtype}")
    if C.dim() != 3 or C.shape[1] > C.shape[2]:
        raise ValueError(f"C must have shape (B, r, c) with r <= c, got {tuple(C.shape)}")
    dtype = C.dtype if dtype is None else dtype
    if dtype not in (C.dtype, torch.float64):
        raise ValueError(f"dtype must be C's dtype or float64 (no narrowing of C), got {dtype}")
    B, R, M = C.shape
    if R * M >= 2**31:
        raise ValueError(f"C must have r * c < 2**31 entries per problem, got {R} x {M}")
    dev = C.device
    kernel_name = "block"
    interpret = interpreting()
    cap = block_cap if block_cap is not None else (_INTERPRET_BLOCK_CAP if interpret else _BLOCK_CAP)
    if not isinstance(cap, int) or cap < 16 or cap & (cap - 1):
        raise ValueError(f"block_cap must be a power of two >= 16, got {block_cap!r}")
    if not any(warm_start is w for w in _WARM_STARTS[:2]) and warm_start not in _WARM_STARTS[2:]:
        raise ValueError(f"warm_start must be one of {_WARM_STARTS}, got {warm_start!r}")
    if num_warps is not None and (not isinstance(num_warps, int) or num_warps not in (1, 2, 4, 8, 16, 32)):
        raise ValueError(f"num_warps must be a power of two from 1 to 32, got {num_warps!r}")
    if sweeps is not None and (not isinstance(sweeps, int) or sweeps < 1):
        raise ValueError(f"sweeps must be a positive integer, got {sweeps!r}")
    if M > cap:
        kernel_name = "chunked"
    kernel, interpret = _get(kernel_name, dev)
    col4row = torch.full((B, R), -1, dtype=torch.int64, device=dev)
    u = torch.zeros(B, R, dtype=dtype, device=dev)
    v = torch.zeros(B, M, dtype=dtype, device=dev)
    status = torch.zeros(B, dtype=torch.int32, device=dev)
    if B == 0 or R == 0:
        return col4row, u, v, status
    C = C.detach().contiguous()
    # NaN and -inf are invalid (one pass with torch; the kernels skip such problems)
    invalid = (~(C > float("-inf"))).flatten(1).any(1)
    status = torch.where(invalid, STATUS_INVALID, STATUS_OK).to(torch.int32)
    warm = warm_start is not False and R == M
    if warm:
        v, row4col = warm_start_state(C, warm_start, dtype, sweeps)
        free = R - (row4col >= 0).sum(1)
    else:
        row4col = torch.full((B, M), -1, dtype=torch.int32, device=dev)
        free = torch.full((B,), R, dtype=torch.int64, device=dev)
    steps = torch.zeros(B, dtype=torch.int32, device=dev)
    launch = wrap(kernel) if wrap is not None else kernel
    if kernel_name == "block":
        block_m = max(16, triton.next_power_of_2(M))
        launch[(B,)](
            C, col4row, u, v, row4col, status, steps, R, M, C.stride(0),
            BLOCK_M=block_m, INIT=warm, FUSED=not interpret if fused_argmin is None else bool(fused_argmin),
            num_warps=num_warps or (1 if interpret else _block_warps(block_m)),
        )  # fmt: skip
    else:
        chunk = cap if block_cap is not None or interpret else _CHUNK
        dist = torch.empty(B, M, dtype=dtype, device=dev)
        pred = torch.empty(B, M, dtype=torch.int32, device=dev)
        scan = torch.empty(B, M, dtype=torch.int8, device=dev)
        if warm:  # the chunked kernel also keeps each row's column (slot R collects unowned columns)
            rows_of = torch.where(row4col >= 0, row4col.to(torch.int64), R)
            col_ids = torch.arange(M, device=dev).expand(B, M)
            full = torch.full((B, R + 1), -1, dtype=torch.int64, device=dev)
            col4row = full.scatter_(1, rows_of, col_ids)[:, :R].contiguous()
        launch[(B,)](
            C, col4row, v, dist, pred, row4col, scan, status, steps, R, M, C.stride(0),
            BLOCK=chunk, FUSED=not interpret if fused_argmin is None else bool(fused_argmin),
            num_warps=num_warps or (1 if interpret else _block_warps(chunk)),
        )  # fmt: skip
        # u_i = C_i,col4row[i] - v_col4row[i] (the chunked kernel keeps only v)
        cols = col4row.clamp_min(0)
        u = torch.gather(C, 2, cols[:, :, None])[:, :, 0].to(dtype) - torch.gather(v, 1, cols)
    if stats is not None:
        stats["free"] = free
        stats["steps"] = steps
    bad = status != STATUS_OK
    col4row = torch.where(bad[:, None], -1, col4row)
    u = torch.where(bad[:, None], float("nan"), u)
    v = torch.where(bad[:, None], float("nan"), v)
    return col4row, u, v, status
