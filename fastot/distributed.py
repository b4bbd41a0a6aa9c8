"""Global minibatch coupling across the ranks of a ``torch.distributed`` process group.

With data parallelism each rank holds a slice of the global batch. Coupling each slice on its own
pairs noise with data from a small batch (a worse coupling: longer, more curved paths). This module
couples the *global* batch once per step and hands every rank the pairs of its own slice::

    import fastot.distributed

    out = fastot.distributed.couple(x0, x1)           # every rank calls it, with its local batch
    loss = flow_matching_loss(model, out.x0, out.x1)  # this rank's paired samples

All ranks of the group must call :func:`couple` in the same order (it is a collective call).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistributedCoupling", "couple"]

# Metadata exchanged before any data: one int64 row per rank (see _local_meta).
_STATUS, _MSG_LEN, _N0, _N1 = 0, 1, 2, 3
_X0_DTYPE, _X1_DTYPE, _X_NDIM, _X_NUMEL, _X_HASH = 4, 5, 6, 7, 8
_Y0, _Y1 = 9, 13  # each: present, dtype, feature numel, feature shape hash
_META_LEN = 17
_OK, _VALUE_ERROR, _TYPE_ERROR, _RUNTIME_ERROR = 0, 1, 2, 3
_ERRORS = {_VALUE_ERROR: ValueError, _TYPE_ERROR: TypeError, _RUNTIME_ERROR: RuntimeError}
# Dtypes that may cross the wire (moved as raw bytes, so every value arrives bit for bit).
_DTYPES = (
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
)


@dataclass(frozen=True, eq=False)
class DistributedCoupling:
    """This rank's share of a coupling of the global batch.

    The global batch is the concatenation of the ranks' local batches in group-rank order:
    ``X0 = cat([x0 of rank 0, x0 of rank 1, ...])`` (sizes ``counts0``), likewise ``X1`` (``counts1``).
    ``fastot.couple(X0, X1, ...)`` gives global pairs ``(I, J)``; this rank receives the pairs whose
    noise sample ``X0[I]`` is one of its own, in the global order (ascending ``I`` for ``method="exact"``).

    Attributes:
        i: ``(k,)`` int64 indices into this rank's ``x0`` (local rows).
        j: ``(k,)`` int64 indices into the global ``X1``.
        x0: ``(k, *dims)`` the paired rows of this rank's ``x0`` (``x0[i]``; keeps autograd).
        x1: ``(k, *dims)`` the paired rows ``X1[j]`` (gathered from whichever rank holds them; detached).
        y0: ``(k, *cdims)`` the paired conditions ``y0[i]``, or ``None``.
        y1: ``(k, *cdims)`` the paired conditions ``Y1[j]``, or ``None``.
        i_global: ``(k,)`` int64 indices of the same rows into the global ``X0``.
        counts0: ``(world,)`` int64 (CPU): every rank's ``x0`` batch size.
        counts1: ``(world,)`` int64 (CPU): every rank's ``x1`` batch size.

    For ``method="exact"`` with equal global sizes, every rank gets ``k = len(x0)`` pairs with
    ``i = arange(len(x0))`` (its own noise, in order) and ``j`` over the ranks is a permutation of the
    global data batch: no sample is duplicated or dropped anywhere in the job.
    """

    i: torch.Tensor
    j: torch.Tensor
    x0: torch.Tensor
    x1: torch.Tensor
    y0: torch.Tensor | None
    y1: torch.Tensor | None
    i_global: torch.Tensor
    counts0: torch.Tensor
    counts1: torch.Tensor


def couple(
    x0: torch.Tensor,
    x1: torch.Tensor,
    y0: torch.Tensor | None = None,
    y1: torch.Tensor | None = None,
    *,
    group: Any = None,
    **couple_kwargs: Any,
) -> DistributedCoupling:
    """``fastot.couple`` over the global batch of a process group; every rank gets its own slice.

    Args:
        x0: ``(n0_r, *dims)`` floating tensor: this rank's noise batch (sizes may differ between ranks,
            zero included; ``dims`` and dtype must be the same on every rank).
        x1: ``(n1_r, *dims)`` floating tensor: this rank's data batch.
        y0: optional ``(n0_r, *cdims)`` conditions of ``x0`` (class labels or embeddings), passed to
            ``fastot.couple`` as ``y0`` for the global batch; given on all ranks or on none.
        y1: optional ``(n1_r, *cdims)`` conditions of ``x1``.
        group: the process group (default: the world group).
        **couple_kwargs: passed to :func:`fastot.couple` (``method``, ``cond_weight``, ``generator``, ...).
            They must be the same on every rank: only rank 0's are used (a ``generator`` therefore only
            advances on rank 0).

    Returns:
        :class:`DistributedCoupling`: this rank's pairs (local ``i``, global ``j``, the paired rows).

    How it runs (collectives on the group, in this order, identical on every rank):

    1. *Validation*: each rank checks its own inputs (types, shapes, finiteness) and all ranks exchange
       one small int64 row of metadata (a validity flag, batch sizes, dtypes, sample shapes) with an
       all_gather. Every rank then takes the same decision from the same table: if any rank's input is
       bad, or ranks disagree on dtype or sample shape, every rank raises (the offending ranks' messages
       are exchanged first, so all ranks print the same reason). No rank reaches a data collective that
       another rank skips, so none hangs.
    2. *Gather*: ``x0`` (and ``y0``) are gathered to rank 0; ``x1`` (and ``y1``) are all-gathered, since
       every rank needs the data rows paired with its noise. Tensors travel as raw bytes, padded to the
       largest local batch, so any dtype arrives bit for bit.
    3. *Solve once*: rank 0 runs ``fastot.couple`` on the global batch and broadcasts the global index
       pairs (16 bytes per pair) with a status; if the solve raises there, the error type and message
       are broadcast instead and every rank raises it.
    4. *Slice*: each rank keeps the pairs whose ``x0`` row is its own.

    Why rank 0 solves and broadcasts, rather than every rank solving the same problem: the indices must
    agree bit for bit on every rank, and a redundant solve only guarantees that when every rank runs the
    same kernels with the same reduction order — not across CPU models (different SIMD code paths),
    thread counts or GPU models, nor for methods that sample pairs from a plan with a random generator.
    A broadcast of integers makes agreement hold by construction, costs one small message, and takes
    the same wall-clock time (the other ranks would have spent it solving the same problem). The
    broadcast status also carries a solve failure to every rank, so a raising solver cannot leave the
    other ranks waiting.

    Memory: every rank holds the global ``x1`` (``sum(n1_r) * prod(dims)`` elements) for the duration
    of the call, and rank 0 also the global ``x0`` and whatever the solver needs. With the NCCL backend
    the collectives run on the current CUDA device; with gloo on the CPU. Results are on the inputs'
    devices. Eager mode only (not traced by ``torch.compile``). Every rank of the group must call this
    function; a rank that never calls it makes the others wait until the group's timeout.

    Raises (on every rank):
        ValueError: bad input on any rank (non-finite values, shape mismatches, mixed dtypes or sample
            shapes across ranks), or a ``ValueError`` from the solve on rank 0.
        TypeError: non-tensor or non-floating ``x0``/``x1`` on any rank (the first offending rank's kind
            of error is raised everywhere).
        RuntimeError: the default process group is not initialised, or the solve raised another error.
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("fastot.distributed.couple needs an initialised torch.distributed process group")
    world = dist.get_world_size(group)
    rank = dist.get_rank(group)
    root = dist.get_global_rank(group, 0) if group is not None else 0
    comm = _comm_device(group)

    # ---- 1. validation: one all_gather of a metadata row per rank; the same decision everywhere
    status, message = _check_local(x0, x1, y0, y1)
    local = _local_meta(status, message, x0, x1, y0, y1)
    meta = _all_gather_rows(local.to(comm), world, group).cpu()  # (world, _META_LEN)
    bad = [r for r in range(world) if meta[r, _STATUS] != _OK]
    problem = f"invalid input on rank(s) {bad}"
    if not bad:
        bad, problem = _check_consistency(meta)
        if bad:
            message = _describe(x0, x1, y0, y1)
    if bad:
        messages = _exchange_messages(message if rank in bad else "", world, group, comm)
        kind = int(meta[bad[0], _STATUS]) if meta[bad[0], _STATUS] != _OK else _VALUE_ERROR
        detail = "; ".join(f"rank {r}: {messages[r]}" for r in bad)
        raise _ERRORS[kind](f"fastot.distributed.couple: {problem} — {detail}")

    counts0, counts1 = meta[:, _N0].clone(), meta[:, _N1].clone()
    dims = tuple(x0.shape[1:])
    has_y0, has_y1 = y0 is not None, y1 is not None

    # ---- 2. gather: x0 (y0) to rank 0, x1 (y1) to every rank
    X0 = _gather_rows(x0, counts0, world, group, comm, root, rank, to_all=False)
    X1 = _gather_rows(x1, counts1, world, group, comm, root, rank, to_all=True)
    Y0 = _gather_rows(y0, counts0, world, group, comm, root, rank, to_all=False) if has_y0 else None
    Y1 = _gather_rows(y1, counts1, world, group, comm, root, rank, to_all=True) if has_y1 else None

    # ---- 3. rank 0 solves, then broadcasts (status, number of pairs, message length) and the pairs
    header = torch.zeros(3, dtype=torch.int64, device=comm)
    pairs = None
    solve_message = ""
    if rank == 0:
        try:
            extra = {}
            if has_y0:
                extra["y0"] = Y0
            if has_y1:
                extra["y1"] = Y1
            I, J = _import_couple()(X0, X1, **extra, **couple_kwargs)
            I, J = _check_pairs(I, J, X0.shape[0], X1.shape[0])
            pairs = torch.stack([I, J]).to(comm)
            header[0], header[1] = _OK, pairs.shape[1]
        except Exception as err:  # every failure must reach the other ranks
            code = next((c for c, cls in _ERRORS.items() if type(err) is cls), _RUNTIME_ERROR)
            solve_message = f"{type(err).__name__}: {err}"
            header[0], header[2] = code, len(solve_message.encode())
    dist.broadcast(header, src=root, group=group)
    code, k, msg_len = (int(v) for v in header.cpu())
    if code != _OK:
        buf = torch.zeros(max(msg_len, 1), dtype=torch.uint8, device=comm)
        if rank == 0:
            buf[:msg_len] = torch.frombuffer(bytearray(solve_message.encode()), dtype=torch.uint8).to(comm)
        dist.broadcast(buf, src=root, group=group)
        text = bytes(buf[:msg_len].cpu().tolist()).decode(errors="replace")
        raise _ERRORS[code](f"fastot.distributed.couple: the solve on rank 0 failed: {text}")
    if rank != 0:
        pairs = torch.empty(2, k, dtype=torch.int64, device=comm)
    if k > 0:
        dist.broadcast(pairs, src=root, group=group)

    # ---- 4. this rank's slice: pairs whose x0 row lives here
    lo = int(counts0[:rank].sum())
    hi = lo + int(counts0[rank])
    I, J = pairs[0].cpu(), pairs[1].cpu()
    mask = (I >= lo) & (I < hi)
    i_global, j = I[mask], J[mask]
    i = i_global - lo
    x1_pairs = X1.index_select(0, j.to(X1.device)).reshape(-1, *dims).to(x1.device)
    out_y0 = y0.index_select(0, i.to(y0.device)) if has_y0 else None
    out_y1 = Y1.index_select(0, j.to(Y1.device)).to(y1.device) if has_y1 else None
    return DistributedCoupling(
        i=i.to(x0.device),
        j=j.to(x0.device),
        x0=x0.index_select(0, i.to(x0.device)),
        x1=x1_pairs,
        y0=out_y0,
        y1=out_y1,
        i_global=i_global.to(x0.device),
        counts0=counts0,
        counts1=counts1,
    )


# ----------------------------------------------------------------------------------------- helpers


def _import_couple():
    from .coupling import couple as single_couple

    return single_couple


def _comm_device(group: Any) -> torch.device:
    backend = str(dist.get_backend(group)).lower()
    if "nccl" in backend and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _check_local(x0: Any, x1: Any, y0: Any, y1: Any) -> tuple[int, str]:
    """This rank's own checks: ``(status, message)``; never raises."""
    for x, name in ((x0, "x0"), (x1, "x1")):
        if not isinstance(x, torch.Tensor):
            return _TYPE_ERROR, f"{name} must be a torch tensor, got {type(x).__name__}"
        if not x.is_floating_point():
            return _TYPE_ERROR, f"{name} must have a floating dtype, got {x.dtype}"
        if x.dtype not in _DTYPES:
            return _TYPE_ERROR, f"{name} has an unsupported dtype {x.dtype}"
        if x.dim() < 1:
            return _VALUE_ERROR, f"{name} must have shape (n, *dims), got a 0-d tensor"
    if x0.shape[1:] != x1.shape[1:]:
        return _VALUE_ERROR, (
            f"x0 (n0, *dims) and x1 (n1, *dims) must have the same sample shape dims, got x0 of shape "
            f"{tuple(x0.shape)} and x1 of shape {tuple(x1.shape)}"
        )
    if x0.device != x1.device:
        return _VALUE_ERROR, f"x0 and x1 must be on the same device, got {x0.device} and {x1.device}"
    for y, x, name, xname in ((y0, x0, "y0", "x0"), (y1, x1, "y1", "x1")):
        if y is None:
            continue
        if not isinstance(y, torch.Tensor):
            return _TYPE_ERROR, f"{name} must be a torch tensor or None, got {type(y).__name__}"
        if y.dtype not in _DTYPES:
            return _TYPE_ERROR, f"{name} has an unsupported dtype {y.dtype}"
        if y.dim() < 1 or y.shape[0] != x.shape[0]:
            return _VALUE_ERROR, (
                f"{name} must have shape ({xname}.shape[0], ...) = ({x.shape[0]}, ...), got {tuple(y.shape)}"
            )
    for t, name in ((x0, "x0"), (x1, "x1"), (y0, "y0"), (y1, "y1")):
        if t is not None and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return _VALUE_ERROR, f"{name} contains non-finite values (NaN or inf)"
    return _OK, ""


def _shape_hash(shape: tuple[int, ...]) -> int:
    h = len(shape)
    for s in shape:
        h = (h * 1_000_003 + s + 1) % (2**61 - 1)
    return h


def _local_meta(status: int, message: str, x0: Any, x1: Any, y0: Any, y1: Any) -> torch.Tensor:
    row = torch.full((_META_LEN,), -1, dtype=torch.int64)
    row[_STATUS] = status
    row[_MSG_LEN] = len(message.encode())
    if status != _OK:
        return row
    dims = tuple(x0.shape[1:])
    row[_N0], row[_N1] = x0.shape[0], x1.shape[0]
    row[_X0_DTYPE], row[_X1_DTYPE] = _DTYPES.index(x0.dtype), _DTYPES.index(x1.dtype)
    row[_X_NDIM], row[_X_NUMEL], row[_X_HASH] = len(dims), math.prod(dims), _shape_hash(dims)
    for y, at in ((y0, _Y0), (y1, _Y1)):
        row[at] = int(y is not None)
        if y is not None:
            cdims = tuple(y.shape[1:])
            row[at + 1], row[at + 2], row[at + 3] = (
                _DTYPES.index(y.dtype),
                math.prod(cdims),
                _shape_hash(cdims),
            )
    return row


def _check_consistency(meta: torch.Tensor) -> tuple[list[int], str]:
    """Ranks whose dtypes or sample shapes differ from rank 0's (the same answer on every rank)."""
    checks = (
        ((_X0_DTYPE, _X1_DTYPE), "x0/x1 dtypes differ across ranks"),
        ((_X_NDIM, _X_NUMEL, _X_HASH), "x0/x1 sample shapes dims differ across ranks"),
        ((_Y0, _Y1), "y0/y1 are given on some ranks and not on others"),
        ((_Y0 + 1, _Y0 + 2, _Y0 + 3), "y0 dtypes or shapes differ across ranks"),
        ((_Y1 + 1, _Y1 + 2, _Y1 + 3), "y1 dtypes or shapes differ across ranks"),
    )
    for cols, problem in checks:
        ref = meta[0, list(cols)]
        bad = [r for r in range(meta.shape[0]) if not torch.equal(meta[r, list(cols)], ref)]
        if bad:
            return [0, *bad], f"{problem}: rank(s) {bad} differ from rank 0"
    return [], ""


def _describe(x0: torch.Tensor, x1: torch.Tensor, y0: Any, y1: Any) -> str:
    text = f"x0 {tuple(x0.shape)} {x0.dtype}, x1 {tuple(x1.shape)} {x1.dtype}"
    for y, name in ((y0, "y0"), (y1, "y1")):
        text += f", {name} " + ("None" if y is None else f"{tuple(y.shape)} {y.dtype}")
    return text


def _all_gather_rows(row: torch.Tensor, world: int, group: Any) -> torch.Tensor:
    out = [torch.empty_like(row) for _ in range(world)]
    dist.all_gather(out, row.contiguous(), group=group)
    return torch.stack(out)


def _exchange_messages(message: str, world: int, group: Any, comm: torch.device) -> list[str]:
    data = message.encode()
    size = torch.tensor([len(data)], dtype=torch.int64, device=comm)
    sizes = _all_gather_rows(size, world, group).cpu().reshape(-1).tolist()
    buf = torch.zeros(max(1, max(sizes)), dtype=torch.uint8)
    if data:
        buf[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    bufs = _all_gather_rows(buf.to(comm), world, group).cpu()
    return [bytes(bufs[r, : sizes[r]].tolist()).decode(errors="replace") for r in range(world)]


def _gather_rows(
    t: torch.Tensor,
    counts: torch.Tensor,
    world: int,
    group: Any,
    comm: torch.device,
    root: int,
    rank: int,
    *,
    to_all: bool,
) -> torch.Tensor | None:
    """Concatenate the ranks' ``(n_r, *feat)`` tensors in rank order, moved as raw bytes.

    ``to_all``: every rank gets the result (all_gather); otherwise only rank 0 (gather) and the others
    get ``None``.
    """
    feat = tuple(t.shape[1:])
    row_bytes = math.prod(feat) * t.element_size()
    width = max(1, int(counts.max()) * row_bytes)  # equal-size buffers for the collective
    buf = torch.zeros(width, dtype=torch.uint8, device=comm)
    local = t.detach().contiguous().reshape(-1).view(torch.uint8)
    buf[: local.numel()] = local.to(comm)
    if to_all:
        bufs = [torch.empty_like(buf) for _ in range(world)]
        dist.all_gather(bufs, buf, group=group)
    else:
        bufs = [torch.empty_like(buf) for _ in range(world)] if rank == 0 else None
        dist.gather(buf, bufs, dst=root, group=group)
        if rank != 0:
            return None
    flat = torch.cat([bufs[r][: int(counts[r]) * row_bytes] for r in range(world)])
    return flat.view(t.dtype).reshape(-1, *feat)


def _check_pairs(I: Any, J: Any, n0: int, n1: int) -> tuple[torch.Tensor, torch.Tensor]:
    for v, name, n in ((I, "i", n0), (J, "j", n1)):
        if not isinstance(v, torch.Tensor) or v.dim() != 1 or v.dtype != torch.int64:
            raise RuntimeError(f"fastot.couple returned an unexpected {name}: expected a 1-D int64 tensor")
        if v.numel() and not (0 <= int(v.min()) and int(v.max()) < n):
            raise RuntimeError(f"fastot.couple returned {name} out of range [0, {n})")
    if I.shape != J.shape:
        raise RuntimeError("fastot.couple returned i and j of different lengths")
    return I.cpu(), J.cpu()
