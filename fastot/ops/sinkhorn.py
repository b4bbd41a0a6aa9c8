"""torch.library ops for a whole Sinkhorn solve (the iteration loop inside one op).

``fastot::sinkhorn_dense(Tensor C, Tensor log_a, Tensor log_b, Tensor epsilon, Tensor? epsilon_init,
    Tensor? f0, Tensor? g0, Tensor? mass, float? reg_m_a, float? reg_m_b, int max_iter, float? tol,
    int check_every, float epsilon_decay) -> (Tensor f, Tensor g, Tensor n_iter, Tensor converged,
    Tensor error, Tensor value)``
``fastot::sinkhorn_sqeuclidean(Tensor x, Tensor y, ...same...)``: the cost ``|x_i - y_j|^2`` of
    ``x (B, n, d)``, ``y (B, m, d)`` computed on the fly (online mode, never ``n x m``).

Shapes: ``C (B, n, m)``; ``log_a (B, n)``, ``log_b (B, m)`` (``-inf`` for zero weights); ``epsilon``,
``epsilon_init``, ``mass`` ``(B,)``; ``f0 (B, n)``, ``g0 (B, m)``; all one floating dtype (float32 or
float64). Outputs: potentials ``f (B, n)``, ``g (B, m)``, ``n_iter (B,)`` int64, ``converged (B,)`` bool,
``error (B,)`` and ``value (B,)``, the linear cost ``<P, C>`` of the returned plan (computed without
forming it: one more pass over the cost). Arguments and semantics are those of
:func:`fastot.solvers.sinkhorn.sinkhorn_loop`.

Why an op per solve: the loop's convergence test reads a flag on the host, which would break a
``torch.compile`` graph, and unrolling ``max_iter`` iterations into a graph makes compilation scale with
``max_iter``. As one op with a fake kernel, a solve is one node of the graph for any ``tol`` and any
``max_iter`` (``fullgraph=True``, dynamic batch). CUDA graphs: with ``tol=None`` the op runs exactly
``max_iter`` iterations of kernel launches and never synchronises with the host, so it can be captured;
with a ``tol`` it reads the convergence flags on the host every ``check_every`` iterations and cannot.

Layering note: like the assignment ops, these ops sit above the solver (the op body builds a geometry
and runs the generic loop, whose reductions call the kernels directly: C++ on CPU, Triton on CUDA).
The outputs are potentials of a solve run under ``no_grad``; gradients of the Sinkhorn value come from
the envelope theorem in :func:`fastot.sinkhorn`, so the ops have no autograd formula.
"""

from __future__ import annotations

import torch

from ..geometry import DenseGeometry, Geometry, PointCloudGeometry
from ..solvers.sinkhorn import sinkhorn_loop

__all__ = [
    "sample_inputs_sinkhorn_dense",
    "sample_inputs_sinkhorn_sqeuclidean",
    "sinkhorn_dense",
    "sinkhorn_dense_impl",
    "sinkhorn_sqeuclidean",
    "sinkhorn_sqeuclidean_impl",
]

Out = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _solve(geom: Geometry, log_a, log_b, epsilon, epsilon_init, f0, g0, mass, reg_m_a, reg_m_b, max_iter,
           tol, check_every, epsilon_decay) -> Out:  # fmt: skip
    with torch.no_grad():
        st = sinkhorn_loop(
            geom,
            log_a.contiguous(),
            log_b.contiguous(),
            epsilon=epsilon.contiguous(),
            reg_m=(reg_m_a, reg_m_b),
            max_iter=max_iter,
            tol=tol,
            check_every=check_every,
            epsilon_init=epsilon_init,
            epsilon_decay=epsilon_decay,
            f0=f0,
            g0=g0,
            mass=mass,
        )
        scale = 1.0 / epsilon
        value = geom.cost_dot(log_a + st.f * scale[:, None], log_b + st.g * scale[:, None], scale)
    return st.f, st.g, st.n_iter, st.converged, st.error, value


def sinkhorn_dense_impl(
    C: torch.Tensor,
    log_a: torch.Tensor,
    log_b: torch.Tensor,
    epsilon: torch.Tensor,
    epsilon_init: torch.Tensor | None,
    f0: torch.Tensor | None,
    g0: torch.Tensor | None,
    mass: torch.Tensor | None,
    reg_m_a: float | None,
    reg_m_b: float | None,
    max_iter: int,
    tol: float | None,
    check_every: int,
    epsilon_decay: float,
) -> Out:
    """The ``fastot::sinkhorn_dense`` op's body, callable without the dispatcher."""
    return _solve(DenseGeometry(C), log_a, log_b, epsilon, epsilon_init, f0, g0, mass, reg_m_a, reg_m_b,
                  max_iter, tol, check_every, epsilon_decay)  # fmt: skip


def sinkhorn_sqeuclidean_impl(
    x: torch.Tensor,
    y: torch.Tensor,
    log_a: torch.Tensor,
    log_b: torch.Tensor,
    epsilon: torch.Tensor,
    epsilon_init: torch.Tensor | None,
    f0: torch.Tensor | None,
    g0: torch.Tensor | None,
    mass: torch.Tensor | None,
    reg_m_a: float | None,
    reg_m_b: float | None,
    max_iter: int,
    tol: float | None,
    check_every: int,
    epsilon_decay: float,
) -> Out:
    """The ``fastot::sinkhorn_sqeuclidean`` op's body, callable without the dispatcher."""
    return _solve(PointCloudGeometry(x, y), log_a, log_b, epsilon, epsilon_init, f0, g0, mass, reg_m_a,
                  reg_m_b, max_iter, tol, check_every, epsilon_decay)  # fmt: skip


sinkhorn_dense = torch.library.custom_op(
    "fastot::sinkhorn_dense", sinkhorn_dense_impl, mutates_args=(), device_types=("cpu", "cuda")
)
sinkhorn_sqeuclidean = torch.library.custom_op(
    "fastot::sinkhorn_sqeuclidean", sinkhorn_sqeuclidean_impl, mutates_args=(), device_types=("cpu", "cuda")
)


def _fake_outputs(ref: torch.Tensor, B, n, m) -> Out:
    return (
        ref.new_empty((B, n)),
        ref.new_empty((B, m)),
        ref.new_empty((B,), dtype=torch.int64),
        ref.new_empty((B,), dtype=torch.bool),
        ref.new_empty((B,)),
        ref.new_empty((B,)),
    )


@sinkhorn_dense.register_fake
def _(C, log_a, log_b, epsilon, epsilon_init, f0, g0, mass, reg_m_a, reg_m_b, max_iter, tol, check_every,
      epsilon_decay) -> Out:  # fmt: skip
    torch._check(C.dim() == 3, lambda: f"C must have shape (B, n, m), got {tuple(C.shape)}")
    B, n, m = C.shape
    return _fake_outputs(C, B, n, m)


@sinkhorn_sqeuclidean.register_fake
def _(x, y, log_a, log_b, epsilon, epsilon_init, f0, g0, mass, reg_m_a, reg_m_b, max_iter, tol, check_every,
      epsilon_decay) -> Out:  # fmt: skip
    torch._check(x.dim() == 3 and y.dim() == 3, lambda: "x and y must have shape (B, n, d), (B, m, d)")
    return _fake_outputs(x, x.shape[0], x.shape[1], y.shape[1])


def _sample_options(g: torch.Generator, B: int, n: int, m: int, dtype, device) -> list[tuple]:
    """Argument tails after the geometry: balanced (fixed iterations and tol), unbalanced with epsilon
    scaling and a warm start, partial."""
    a = torch.rand(B, n, generator=g, dtype=dtype) + 0.1
    b = torch.rand(B, m, generator=g, dtype=dtype) + 0.1
    a[:, 0] = 0  # a zero weight
    log_a, log_b = (a / a.sum(1, keepdim=True)).log(), (b / b.sum(1, keepdim=True)).log()
    eps = torch.rand(B, generator=g, dtype=dtype) + 0.5
    f0 = torch.randn(B, n, generator=g, dtype=dtype)
    g0 = torch.randn(B, m, generator=g, dtype=dtype)
    to = lambda t: None if t is None else t.to(device)  # noqa: E731
    la, lb, e = to(log_a), to(log_b), to(eps)
    return [
        (la, lb, e, None, None, None, None, None, None, 5, None, 1, 0.5),
        (la, lb, e, None, None, None, None, None, None, 50, 1e-6, 3, 0.5),
        (la, lb, e, to(4 * eps), to(f0), to(g0), None, 2.0, None, 7, 1e-4, 2, 0.5),
        (la, lb, e, None, None, None, to(torch.full((B,), 0.5, dtype=dtype)), None, None, 6, None, 1, 0.5),
    ]


def sample_inputs_sinkhorn_dense(device: str = "cpu") -> list[tuple[tuple, dict]]:
    g = torch.Generator().manual_seed(2)
    out = []
    for dtype, (B, n, m) in ((torch.float64, (2, 5, 7)), (torch.float32, (3, 9, 4))):
        C = (torch.rand(B, n, m, generator=g, dtype=dtype) * 2).to(device)
        for tail in _sample_options(g, B, n, m, dtype, device):
            out.append(((C, *tail), {}))
    return out


def sample_inputs_sinkhorn_sqeuclidean(device: str = "cpu") -> list[tuple[tuple, dict]]:
    g = torch.Generator().manual_seed(3)
    out = []
    for dtype, (B, n, m, d) in ((torch.float64, (2, 6, 9, 2)), (torch.float32, (3, 4, 5, 7))):
        x = torch.randn(B, n, d, generator=g, dtype=dtype).to(device)
        y = torch.randn(B, m, d, generator=g, dtype=dtype).to(device)
        for tail in _sample_options(g, B, n, m, dtype, device):
            out.append(((x, y, *tail), {}))
    return out
