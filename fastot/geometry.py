"""Geometries: who owns the cost, and the reductions over it that Sinkhorn needs.

A geometry holds a batch of costs ``C (B, n, m)``, either materialised (:class:`DenseGeometry`) or
implied by two point clouds (:class:`PointCloudGeometry`, computed block by block, never stored), and
answers the log-sum-exp reductions of log-domain Sinkhorn (the c-transforms):

    lse_rows(h, scale)[b, i] = log sum_j exp(h[b, j] - scale[b] * C[b, i, j])      h (B, m) -> (B, n)
    lse_cols(h, scale)[b, j] = log sum_i exp(h[b, i] - scale[b] * C[b, i, j])      h (B, n) -> (B, m)

plus the plan-weighted products that outputs need (``apply``, ``<P, C>``), where the plan is
``P[b, i, j] = exp(hr[b, i] + hc[b, j] - scale[b] * C[b, i, j])``. Solvers only talk to a geometry:
they never read a cost. ``+inf`` costs are forbidden pairs (their terms are 0); ``-inf`` in ``h`` is a
zero weight.
"""

from __future__ import annotations

import torch

from . import _C
from .ops.softmin import lse, lse_dense, lse_dense_impl, lse_sqeuclidean, lse_sqeuclidean_impl, num_threads

__all__ = ["DenseGeometry", "Geometry", "PointCloudGeometry"]


class Geometry:
    """Interface; see the module docstring for the reductions' definitions."""

    batch: int
    n: int
    m: int
    dtype: torch.dtype
    device: torch.device

    def lse_rows(self, h: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def lse_cols(self, h: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def step(
        self,
        hg: torch.Tensor,
        sf: torch.Tensor,
        log_a: torch.Tensor,
        coef: torch.Tensor,
        sg: torch.Tensor,
        cap: torch.Tensor | None = None,
        active: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One Sinkhorn step: the row c-transform and, from the ``f`` it gives, the next column one.

        ``S = lse_rows(hg, sf)`` ``(B, n)``; ``f = min(coef * S, cap)`` (``coef (B,)``, ``cap (B, n)``
        or ``None``); ``T = lse_cols(log_a + sg * f, sg)`` ``(B, m)``. Returns ``(S, T)``; rows of
        problems with ``active[b] == False`` are unspecified. On CPU one pass over the cost computes
        both (``_C.sinkhorn_step_*``); elsewhere the two reductions run one after the other.
        """
        S = self.lse_rows(hg, sf)
        f = coef[:, None] * S
        if cap is not None:
            f = torch.minimum(f, cap)
        return S, self.lse_cols(log_a + sg[:, None] * f, sg)

    def plan(self, hr: torch.Tensor, hc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``(B, n, m)`` dense plan ``exp(hr_i + hc_j - scale * C_ij)``."""
        raise NotImplementedError

    def apply(self, hr: torch.Tensor, hc: torch.Tensor, scale: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``P @ v``: ``v (B, m, k)`` -> ``(B, n, k)``, without forming ``P`` where the geometry can."""
        raise NotImplementedError

    def apply_transpose(
        self, hr: torch.Tensor, hc: torch.Tensor, scale: torch.Tensor, u: torch.Tensor
    ) -> torch.Tensor:
        """``P^T @ u``: ``u (B, n, k)`` -> ``(B, m, k)``."""
        raise NotImplementedError

    def cost_dot(self, hr: torch.Tensor, hc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``(B,)`` linear cost ``<P, C>`` of the plan (0 * inf counts as 0)."""
        raise NotImplementedError


def _np(t: torch.Tensor | None):
    return None if t is None else t.detach().contiguous().numpy()


def _step_cpu(kernel, operands, hg, sf, log_a, coef, sg, cap, active, work: int):
    """Runs a fused C++ step kernel on CPU tensors (see :meth:`Geometry.step`)."""
    act = None if active is None else _np(active.to(torch.uint8))
    S, T = kernel(
        *(_np(t) for t in operands),
        _np(hg),
        _np(sf),
        _np(log_a),
        _np(coef),
        _np(sg),
        cap=_np(cap),
        active=act,
        num_threads=num_threads(work),
    )
    return torch.from_numpy(S), torch.from_numpy(T)


def _plan_block(log_kernel: torch.Tensor) -> torch.Tensor:
    # exp(-inf) = 0 handles forbidden pairs and zero weights.
    return torch.exp(log_kernel)


class DenseGeometry(Geometry):
    """A materialised cost ``C (B, n, m)`` (float32 or float64). The reductions are the
    ``fastot::lse_dense`` op (C++ on CPU, Triton on CUDA), one pass over ``C`` each; on CPU a Sinkhorn
    ``step`` does both in one pass (``_C.sinkhorn_step_dense``) and ``<P, C>`` is one more
    (``_C.plan_dot_dense``). ``plan`` forms ``P``; ``apply`` and ``<P, C>`` elsewhere go by blocks of
    rows (a few MB of temporaries)."""

    def __init__(self, C: torch.Tensor):
        self.C = C.contiguous()
        self.batch, self.n, self.m = C.shape
        self.dtype, self.device = C.dtype, C.device

    def _log_kernel(self, hr, hc, scale):
        return hr[:, :, None] + hc[:, None, :] - scale[:, None, None] * self.C

    def lse_rows(self, h, scale):
        return lse(lse_dense, lse_dense_impl, self.C, h.contiguous(), scale.contiguous(), False)

    def lse_cols(self, h, scale):
        return lse(lse_dense, lse_dense_impl, self.C, h.contiguous(), scale.contiguous(), True)

    def step(self, hg, sf, log_a, coef, sg, cap=None, active=None):
        if self.device.type != "cpu":
            return super().step(hg, sf, log_a, coef, sg, cap, active)
        return _step_cpu(
            _C.sinkhorn_step_dense, (self.C,), hg, sf, log_a, coef, sg, cap, active, self.C.numel()
        )

    def plan(self, hr, hc, scale):
        return _plan_block(self._log_kernel(hr, hc, scale))

    def _row_blocks(self):
        """Row slices of at most ~2^22 entries over the batch (eager), or one slice (compiled: the
        compiler fuses it, and a shape-dependent loop would recompile)."""
        rows = self.n if torch.compiler.is_compiling() else max(1, (1 << 22) // max(1, self.batch * self.m))
        return [slice(s, min(s + rows, self.n)) for s in range(0, self.n, rows)]

    def _plan_rows(self, hr, hc, scale, sl):
        return _plan_block(hr[:, sl, None] + hc[:, None, :] - scale[:, None, None] * self.C[:, sl])

    def apply(self, hr, hc, scale, v):
        return torch.cat([self._plan_rows(hr, hc, scale, sl) @ v for sl in self._row_blocks()], dim=1)

    def apply_transpose(self, hr, hc, scale, u):
        out = 0
        for sl in self._row_blocks():
            out = out + self._plan_rows(hr, hc, scale, sl).transpose(1, 2) @ u[:, sl]
        return out

    def cost_dot(self, hr, hc, scale):
        if self.device.type == "cpu" and not torch.compiler.is_compiling():
            out = _C.plan_dot_dense(
                *map(_np, (self.C, hr, hc, scale)), num_threads=num_threads(self.C.numel())
            )
            return torch.from_numpy(out)
        return self._cost_dot_blocks(hr, hc, scale)

    def _cost_dot_blocks(self, hr, hc, scale):
        total = torch.zeros(self.batch, dtype=self.dtype, device=self.device)
        for sl in self._row_blocks():
            P = self._plan_rows(hr, hc, scale, sl)
            # Forbidden pairs carry P = 0 and C = inf: their product counts as 0.
            total = total + torch.where(P > 0, P * self.C[:, sl], 0).sum((1, 2))
        return total


class PointCloudGeometry(Geometry):
    """Squared Euclidean cost between ``x (B, n, d)`` and ``y (B, m, d)``, never stored.

    The per-iteration reductions are the ``fastot::lse_sqeuclidean`` op (tiles of the cost computed
    in registers: memory ``O((n + m) d)``); on CPU a Sinkhorn ``step`` computes each tile once for both
    c-transforms (``_C.sinkhorn_step_sqeuclidean``, a panel of at most 1 MB per thread) and ``<P, C>``
    is ``_C.plan_dot_sqeuclidean``. ``apply`` (and ``<P, C>`` on other devices) go through blocks of
    rows holding at most ``block_entries`` cost entries each (default 2^16 per problem: a few hundred
    kB of temporaries, independent of ``n * m``).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, block_entries: int = 1 << 16):
        self.x, self.y = x.contiguous(), y.contiguous()
        self.batch, self.n, _ = x.shape
        self.m = y.shape[1]
        self.dtype, self.device = x.dtype, x.device
        self.block_entries = block_entries
        # squared norms without an (n, d) temporary (online mode exists to keep memory O((n + m) d))
        self.x2 = torch.linalg.vector_norm(x, dim=-1).square()
        self.y2 = torch.linalg.vector_norm(y, dim=-1).square()

    @staticmethod
    def _cost(a, a2, b, b2):
        # |a_i - b_j|^2 by one matrix product; clamped at 0 against cancellation.
        return (a2[:, :, None] + b2[:, None, :] - 2 * (a @ b.transpose(1, 2))).clamp_min_(0)

    def _blocks(self, transpose: bool):
        """Yields (rows slice, cost block (B, rows, cols)); ``transpose`` swaps the roles of x and y."""
        a, a2, b, b2 = (self.y, self.y2, self.x, self.x2) if transpose else (self.x, self.x2, self.y, self.y2)
        block = max(1, self.block_entries // max(1, b.shape[1]))
        for start in range(0, a.shape[1], block):
            rows = slice(start, min(start + block, a.shape[1]))
            yield rows, self._cost(a[:, rows], a2[:, rows], b, b2)

    def lse_rows(self, h, scale):
        return lse(lse_sqeuclidean, lse_sqeuclidean_impl, self.x, self.y, h.contiguous(), scale.contiguous())

    def lse_cols(self, h, scale):
        return lse(lse_sqeuclidean, lse_sqeuclidean_impl, self.y, self.x, h.contiguous(), scale.contiguous())

    def step(self, hg, sf, log_a, coef, sg, cap=None, active=None):
        if self.device.type != "cpu":
            return super().step(hg, sf, log_a, coef, sg, cap, active)
        work = self.batch * self.n * self.m * self.x.shape[2]
        return _step_cpu(
            _C.sinkhorn_step_sqeuclidean, (self.x, self.y), hg, sf, log_a, coef, sg, cap, active, work
        )

    def plan(self, hr, hc, scale):
        C = self._cost(self.x, self.x2, self.y, self.y2)
        return _plan_block(hr[:, :, None] + hc[:, None, :] - scale[:, None, None] * C)

    def apply(self, hr, hc, scale, v):
        out = []
        for rows, C in self._blocks(transpose=False):
            P = _plan_block(hr[:, rows, None] + hc[:, None, :] - scale[:, None, None] * C)
            out.append(P @ v)
        return torch.cat(out, dim=1)

    def apply_transpose(self, hr, hc, scale, u):
        out = []
        for cols, C in self._blocks(transpose=True):
            P_t = _plan_block(hc[:, cols, None] + hr[:, None, :] - scale[:, None, None] * C)
            out.append(P_t @ u)
        return torch.cat(out, dim=1)

    def cost_dot(self, hr, hc, scale):
        if self.device.type == "cpu" and not torch.compiler.is_compiling():
            work = self.batch * self.n * self.m * self.x.shape[2]
            out = _C.plan_dot_sqeuclidean(
                *map(_np, (self.x, self.y, hr, hc, scale)), num_threads=num_threads(work)
            )
            return torch.from_numpy(out)
        return self._cost_dot_blocks(hr, hc, scale)

    def _cost_dot_blocks(self, hr, hc, scale):
        total = torch.zeros(self.batch, dtype=self.dtype, device=self.device)
        for rows, C in self._blocks(transpose=False):
            P = _plan_block(hr[:, rows, None] + hc[:, None, :] - scale[:, None, None] * C)
            total = total + (P * C).sum((1, 2))
        return total
