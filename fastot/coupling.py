"""Minibatch couplings for flow matching: which noise sample goes with which data sample.

``couple(x0, x1, y0, y1, method=...)`` builds the cost (points plus an optional condition term, as in
C²OT), solves it with the chosen method and returns index pairs ``(i, j)``: ``(x0[i], x1[j])`` are the
coupled samples. :class:`Coupler` keeps state between training steps (adaptive condition weight, warm-start
potentials, timings).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from . import ops as _ops  # noqa: F401  (registers torch.ops.fastot.*)
from .costs import check_cond_weight, fused_cost, resolve_cond_cost, sqeuclidean
from .outputs import SinkhornOutput
from .sinkhorn import sinkhorn

__all__ = [
    "METHODS",
    "Coupler",
    "Coupling",
    "adapt_cond_weight",
    "couple",
    "search_cond_weight",
    "solve_coupling",
]

METHODS = ("exact", "sinkhorn", "unbalanced", "partial", "knn", "bomb")
_ENTROPIC = ("sinkhorn", "unbalanced", "partial")


@dataclass
class Coupling:
    """What :func:`solve_coupling` found: the pairs and how they were obtained.

    Attributes:
        i: ``(k,)`` int64 indices into ``x0``.
        j: ``(k,)`` int64 indices into ``x1``.
        cond_weight: the condition weight used (a float, a 0-d tensor, or ``None`` without conditions).
        ratio: with ``target_r``: the fraction of (sampled) cost entries below the independent pairs' point
            cost reached by ``cond_weight`` (C²OT's ``r``); else ``None``.
        sinkhorn: the :class:`~fastot.outputs.SinkhornOutput` of the entropic methods (potentials for a warm
            start, ``converged``, ``error``, ``n_iter``); ``None`` for the others.
        epsilon: the absolute temperature of the entropic methods (float or 0-d tensor), else ``None``.
    """

    i: torch.Tensor
    j: torch.Tensor
    cond_weight: Any = None
    ratio: float | None = None
    sinkhorn: SinkhornOutput | None = None
    epsilon: Any = None


def couple(
    x0: torch.Tensor,
    x1: torch.Tensor,
    y0: torch.Tensor | None = None,
    y1: torch.Tensor | None = None,
    *,
    method: str = "exact",
    **options: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair the samples of two minibatches by optimal transport (the coupling step of OT flow matching).

    The cost between noise ``x0_i`` and data ``x1_j`` is ``|x0_i - x1_j|^2 + cond_weight * c(y0_i, y1_j)``
    (the condition term only with conditions, as in C²OT), samples flattened to vectors.

    Args:
        x0: ``(n0, *dims)`` floating tensor (e.g. noise).
        x1: ``(n1, *dims)`` floating tensor (e.g. data), same ``dims`` and device.
        y0: optional conditions of ``x0``: ``(n0,)`` integer/bool class labels or ``(n0, e)`` floating
            embeddings.
        y1: conditions of ``x1``: ``(n1,)`` labels or ``(n1, e)`` embeddings (same kind as ``y0``).
        method:
            ``"exact"``: the optimal assignment (a permutation for ``n0 == n1``: no duplicates, none
            dropped; ``k = min(n0, n1)`` distinct pairs otherwise).
            ``"sinkhorn"``: entropic OT (balanced), pairs drawn from the plan.
            ``"unbalanced"``: KL-relaxed marginals (``reg_m``), pairs drawn from the plan.
            ``"partial"``: move only a fraction ``mass`` of the mass, pairs drawn from the plan.
            ``"knn"``: Immiscible Diffusion: ``x0`` holds ``k`` noise candidates per data sample
            (``n0 = k * n1``; candidates of ``x1[j]`` are ``x0[j*k:(j+1)*k]``), and each data sample takes
            its nearest candidate (under the same cost). Returns ``i (n1,)``, ``j = arange(n1)``.
            ``"bomb"``: BoMb-OT: ``x0`` and ``x1`` are cut into consecutive mini-batches of
            ``minibatch_size``; each pair of mini-batches is solved exactly (one batched assignment), an
            exact outer assignment between mini-batches uses those optimal costs, and the pairs of the
            matched mini-batches are returned (``n0 == n1``; a permutation of ``x1``; labels need a finite
            ``cond_weight``).
        **options: see below.

    Options:
        cond_weight: weight ``w >= 0`` of the condition term (number or 0-d tensor). Default: ``inf`` for
            labels (a hard constraint: never pair different classes; ``"exact"`` then solves every class as
            one problem of a single batched assignment, so class counts may differ: each class gives
            ``min(n0_c, n1_c)`` pairs), and required for embeddings unless ``target_r`` is given.
        cond_cost: ``"auto"`` (labels: mismatch ``1[y0_i != y1_j]``; embeddings: squared Euclidean),
            ``"label"``, ``"sqeuclidean"`` or ``"cosine"`` (``1 - cos``).
        target_r: adapt ``cond_weight`` (C²OT's ``target_r``): the weight is searched (x4 or /4 steps from
            ``cond_weight`` or 1, then bisection, at most ``max_weight_iter`` evaluations, stop when within
            ``target_r_tol``) so that a fraction ``target_r`` of the entries ``(i, j)`` satisfy
            ``M_ij + w C_ij <= M_ii`` (``M`` the point cost; at most 1024 rows are sampled for the count).
            Eager mode only. :class:`Coupler` keeps the weight between steps, as C²OT does.
        epsilon: absolute temperature of the entropic methods (POT's ``reg`` on this cost). Default
            ``None``: ``epsilon_rel * s`` with ``s`` the root-mean-square of the double-centred cost
            ``C_ij - mean_j C_ij - mean_i C_ij + mean C`` (of at most 256 x 256 evenly spaced rows and
            columns), the part of the cost a balanced plan depends on
            (row and column constants do not change it). For the squared Euclidean cost ``s`` is about
            ``2 sqrt(tr(S0 S1))`` (``S0, S1`` the clouds' covariances) — ``2 sqrt(d)`` for two standard
            Gaussians — so the default is as sharp at d = 3072 as at d = 2, where torchcfm's fixed
            ``reg = 0.05`` underflows.
        epsilon_rel: default 0.1 (measured on 2 cores: at d = 2 and d = 3072, n = 1024, the balanced
            solve then needs 50-150 iterations; 0.05 gives sharper plans for 2-7x more iterations).
        reg_m: ``"unbalanced"``: KL marginal penalty (absolute, POT's ``reg_m``); default ``None``: ``s``
            (the scale above).
        mass: ``"partial"``: the fraction of the (unit) total mass transported, in ``(0, 1]``; default 0.9.
        max_iter, tol: Sinkhorn budget and stopping tolerance (defaults 2000 and 1e-4: the L1 error of
            a marginal of the unit-mass plan, ample for drawing pairs; see :func:`fastot.sinkhorn`).
            Under ``torch.compile`` the solve is one op that stops at ``tol`` too, but a solve that
            did not converge cannot raise inside the graph: read ``solve_coupling(...).sinkhorn
            .converged`` there, or call eagerly.
        strict: default ``True``: a Sinkhorn solve that did not converge raises ``RuntimeError``;
            ``False``: it warns (``RuntimeWarning``) and the pairs are drawn from the unconverged plan.
            There is no fallback to another plan.
        f_init, g_init: warm-start potentials ``(n0,)``, ``(n1,)`` for the entropic methods.
        batch_size: number of pairs returned (default: ``min(n0, n1)``; ``n1`` for ``"knn"``). Smaller than
            the OT batch: C²OT's oversampling (solve a large OT batch, train on a random subset of its
            pairs: a random subset of the exact pairs, or ``batch_size`` draws from the plan).
        replace: entropic plans: ``False`` (default): every returned ``x0`` sample is distinct (rows drawn
            without replacement in proportion to their mass — all rows when ``batch_size == n0`` — then
            each row's partner drawn from its row of the plan; ``x1`` indices can repeat where the plan is
            not a permutation). ``True``: ``batch_size`` independent draws of ``(i, j)`` from the whole
            plan (torchcfm's sampling: duplicates and dropped samples).
        generator: ``torch.Generator`` for the random draws (reproducible results).
        k: ``"knn"``: number of candidates per data sample (default ``n0 // n1``).
        minibatch_size: ``"bomb"``: the mini-batch size (required; divides ``n0``).

    Returns:
        ``(i, j)``, each ``(k,)`` int64 on the inputs' device, such that ``(x0[i], x1[j])`` are the pairs.
        ``"exact"`` without subsetting: for ``n0 == n1``, ``i = arange(n0)`` and ``j`` a permutation; for
        ``n0 < n1``, ``i = arange(n0)``, ``j`` distinct; for ``n0 > n1``, ``i`` ascending distinct and ``j``
        a permutation of ``arange(n1)``. Plan-based methods with ``replace=False``: ``i`` ascending, distinct.

    ``"exact"`` forms the cost in float32 for float32 (and float16/bfloat16) inputs and, on the CPU, also
    solves in float32 (optimal for the float32 cost up to float32 rounding in the solver); float64 inputs,
    and CUDA tensors, are solved in float64.

    ``"exact"`` and ``"sinkhorn"`` (without ``target_r``, and labels with a finite weight or with
    ``cond_weight=inf`` and equal class counts) work under ``torch.compile(fullgraph=True)``. In eager
    mode non-finite inputs are reported by name; in a compiled graph they reach the assignment op as NaN
    costs and raise its ``ValueError("matrix contains invalid numeric entries")``.

    Raises:
        ValueError: unknown ``method`` or option; shapes, devices or option values that do not fit (the
            message names the argument); non-finite values; an infeasible hard class constraint.
        TypeError: non-tensor or non-floating points; labels mixed with embeddings.
        RuntimeError: an entropic solve did not converge (with ``strict=True``).
    """
    out = solve_coupling(x0, x1, y0, y1, method=method, **options)
    return out.i, out.j


def _default_options() -> dict[str, Any]:
    # A literal in code (not a module-level dict): under torch.compile(dynamic=True), floats read from a
    # global would become symbolic inputs, and specialising them restarts the analysis (a recompile).
    return {
        "cond_weight": None,
        "cond_cost": "auto",
        "target_r": None,
        "target_r_tol": 1e-3,
        "max_weight_iter": 10,
        "epsilon": None,
        "epsilon_rel": 0.1,
        "reg_m": None,
        "mass": 0.9,
        "max_iter": 2000,
        "tol": 1e-4,
        "strict": True,
        "f_init": None,
        "g_init": None,
        "batch_size": None,
        "replace": False,
        "generator": None,
        "k": None,
        "minibatch_size": None,
    }


_OPTION_NAMES = tuple(_default_options())


def solve_coupling(
    x0: torch.Tensor,
    x1: torch.Tensor,
    y0: torch.Tensor | None = None,
    y1: torch.Tensor | None = None,
    *,
    method: str = "exact",
    **options: Any,
) -> Coupling:
    """:func:`couple` returning a :class:`Coupling` (the pairs plus the weight, potentials and flags)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    unknown = sorted(set(options) - set(_OPTION_NAMES))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for couple(); expected some of {sorted(_OPTION_NAMES)}"
        )
    opt = {**_default_options(), **options}
    _check_batches(x0, x1)
    compiling = torch.compiler.is_compiling()
    if not compiling and method != "exact":
        # Eager only: a data-dependent check would break a compiled graph (see the NaN mapping below).
        # "exact" checks its cost instead (one reduction over n0 x n1 rather than three passes over the
        # inputs, which at d = 3072 cost as much as the assignment).
        _check_finite(x0, x1)
    _check_options(opt, method)

    compute = torch.promote_types(torch.promote_types(x0.dtype, x1.dtype), torch.float32)
    d = math.prod(x0.shape[1:])  # explicit (not -1): batches may be empty
    a = x0.detach().reshape(x0.shape[0], d).to(compute)
    b = x1.detach().reshape(x1.shape[0], d).to(compute)
    n0, n1 = a.shape[0], b.shape[0]

    # ---- conditions
    kind = None
    c0 = c1 = None
    w = opt["cond_weight"]
    ratio = None
    if (y0 is None) != (y1 is None):
        raise ValueError("give both conditions y0 and y1, or neither")
    if y0 is not None:
        kind = resolve_cond_cost(y0, y1, opt["cond_cost"])
        c0, c1 = _prepare_conditions(y0, y1, kind, n0, n1, x0.device, compute)
        if opt["target_r"] is not None:
            if compiling:
                raise ValueError("target_r searches the weight with host synchronisations: eager mode only")
            w, ratio = adapt_cond_weight(
                a, b, c0, c1, kind, opt["target_r"], w, opt["target_r_tol"], opt["max_weight_iter"]
            )
        elif w is None:
            if kind != "label":
                raise ValueError(
                    "conditions given as embeddings need cond_weight (a number >= 0) or target_r"
                )
            w = math.inf
        check_cond_weight(w, kind)
    elif opt["target_r"] is not None:
        raise ValueError("target_r needs conditions y0, y1")
    hard = kind == "label" and isinstance(w, (int, float)) and math.isinf(w)

    gen = opt["generator"]
    if method == "knn":
        return _knn(a, b, c0, c1, kind, w, opt, ratio)
    if method == "bomb":
        return _bomb(a, b, c0, c1, kind, w, opt, ratio)
    if method == "exact":
        if hard and not compiling:
            i, j = _exact_class_split(a, b, c0, c1)
        else:
            # Square: any row/column constant may be dropped. Few features: keep the centred squared
            # distances (the Jonker-Volgenant solver runs 2-2.5x faster on them than on -2<a_i, b_j> at
            # d = 2, measured at n = 1024); many features: the product alone (no norm or clamp passes).
            center = ("interaction" if d > 64 else "separate") if n0 == n1 else "common"
            C = fused_cost(a, b, c0, c1, w, kind, center=center, clamp=False)
            # A non-finite input propagates to NaN through the centring (inf - inf); an overflowing cost is
            # +inf, which the solver would read as a forbidden pair: make both NaN so the solver rejects
            # them. Forbidden pairs of a hard class constraint stay +inf.
            if not compiling:
                # A non-finite input, or an overflow, makes some cost non-finite. Few coordinates: bound the
                # cost by the inputs (an (n + m) d pass); else one reduction over the cost.
                if kind is None and (n0 + n1) * d < n0 * n1:
                    big = float(torch.maximum(a.abs().amax(), b.abs().amax())) if n0 and n1 else 0.0
                    ok = math.isfinite(big) and 4 * d * big * big < torch.finfo(C.dtype).max / 4
                else:
                    ok = math.isfinite(float(C.max())) if C.numel() else True
                if not ok:
                    _check_finite(x0, x1)
                    raise ValueError(
                        f"the cost overflows {C.dtype}: x0, x1 (or the conditions times cond_weight) "
                        "are too large"
                    )
            elif hard:
                C = torch.where(torch.isnan(C) | (C == math.inf) & (c0[:, None] == c1[None, :]), torch.nan, C)
            else:
                C = torch.where(torch.isfinite(C), C, torch.nan)
            if C.dtype == torch.float32 and C.device.type == "cpu":
                # float32 (and lower) inputs: the cost is known to float32 rounding, and the CPU solver's
                # float32 arithmetic is 1.6-1.9x faster (measured n = 1024, d = 2 and 3072: same assignments
                # as the float64 solve, optimal against scipy on the float64 distances). The GPU solver
                # reads float32 costs and solves in float64 at no extra cost: it keeps float64.
                i, j, _, _ = torch.ops.fastot.solve_assignment(C, False, torch.float32)
            else:
                i, j = torch.ops.fastot.linear_sum_assignment(C, False)
        i, j = _subset_pairs(i, j, opt["batch_size"], gen)
        return Coupling(i, j, cond_weight=_weight_out(w, kind), ratio=ratio)

    # ---- entropic methods
    # Balanced plans do not change when a row or a column constant is added to the cost: centre each cloud
    # (better conditioned, as for "exact"). Unbalanced and partial plans do change: shift both by one vector.
    center = "separate" if method == "sinkhorn" else "common"
    C = fused_cost(a, b, c0, c1, 0.0 if hard else w, None if hard else kind, center=center)
    scale = _cost_scale(C)
    if hard:
        C = C.masked_fill(c0[:, None] != c1[None, :], math.inf)
    eps = opt["epsilon"] if opt["epsilon"] is not None else opt["epsilon_rel"] * scale
    reg_m = None
    mass = None
    if method == "unbalanced":
        reg_m = opt["reg_m"] if opt["reg_m"] is not None else scale
        if isinstance(reg_m, torch.Tensor):
            reg_m = float(reg_m)  # fastot.sinkhorn takes reg_m as a number
    elif method == "partial":
        mass = opt["mass"]
    warm = opt["f_init"] is not None or opt["g_init"] is not None
    out = sinkhorn(
        cost=C,
        epsilon=eps,
        reg_m=reg_m,
        mass=mass,
        max_iter=opt["max_iter"],
        tol=opt["tol"],
        epsilon_init=None if warm else eps / opt["epsilon_rel"] if opt["epsilon"] is None else None,
        f_init=opt["f_init"],
        g_init=opt["g_init"],
    )
    if not compiling and not bool(out.converged.all()):
        msg = (
            f"couple(method={method!r}): Sinkhorn did not converge within max_iter={opt['max_iter']} "
            f"(marginal error {float(out.error):.3g} > tol={opt['tol']}, epsilon={float(eps):.4g}); raise "
            "max_iter or epsilon, or pass strict=False to use the unconverged plan"
        )
        if hard:
            msg += " (a hard class constraint with different class counts has no balanced plan)"
        if opt["strict"]:
            raise RuntimeError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
    i, j = _sample_sinkhorn(C, out, opt["batch_size"], opt["replace"], gen)
    return Coupling(i, j, cond_weight=_weight_out(w, kind), ratio=ratio, sinkhorn=out, epsilon=eps)


# ----------------------------------------------------------------------------------------------- helpers


def _weight_out(w: Any, kind: str | None) -> Any:
    return None if kind is None else w


def _check_batches(x0: torch.Tensor, x1: torch.Tensor) -> None:
    for x, name in ((x0, "x0"), (x1, "x1")):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
        if x.dim() < 1:
            raise ValueError(f"{name} must have shape (n, *dims), got a 0-d tensor")
    if x0.shape[1:] != x1.shape[1:]:
        raise ValueError(
            f"x0 (n0, *dims) and x1 (n1, *dims) must have the same sample shape dims, got x0 of shape "
            f"{tuple(x0.shape)} and x1 of shape {tuple(x1.shape)}"
        )
    if x0.device != x1.device:
        raise ValueError(f"x0 and x1 must be on the same device, got {x0.device} and {x1.device}")


def _check_finite(x0: torch.Tensor, x1: torch.Tensor) -> None:
    for x, name in ((x0, "x0"), (x1, "x1")):
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains non-finite values (NaN or inf)")


def _check_options(opt: dict, method: str) -> None:
    for name in ("max_iter", "max_weight_iter"):
        v = opt[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    for name in ("batch_size", "k", "minibatch_size"):
        v = opt[name]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {v!r}")
    if not isinstance(opt["epsilon_rel"], (int, float)) or not opt["epsilon_rel"] > 0:
        raise ValueError(f"epsilon_rel must be a positive number, got {opt['epsilon_rel']!r}")
    eps = opt["epsilon"]
    if (
        eps is not None
        and not isinstance(eps, torch.Tensor)
        and not (isinstance(eps, (int, float)) and eps > 0 and math.isfinite(eps))
    ):
        raise ValueError(
            f"epsilon must be a positive number (or None for the scale-aware default), got {eps!r}"
        )
    mass = opt["mass"]
    if not isinstance(mass, (int, float)) or not 0 < mass <= 1:
        raise ValueError(f"mass must be a fraction in (0, 1], got {mass!r}")
    reg_m = opt["reg_m"]
    if reg_m is not None and not (isinstance(reg_m, (int, float)) and reg_m > 0):
        raise ValueError(f"reg_m must be a positive number or None, got {reg_m!r}")
    r = opt["target_r"]
    if r is not None and not (isinstance(r, (int, float)) and 0 < r < 1):
        raise ValueError(f"target_r must be a fraction in (0, 1), got {r!r}")
    if not isinstance(opt["replace"], bool):
        raise TypeError(f"replace must be a bool, got {type(opt['replace']).__name__}")
    gen = opt["generator"]
    if gen is not None and not isinstance(gen, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(gen).__name__}")
    if method not in _ENTROPIC:
        for name in ("epsilon", "reg_m", "f_init", "g_init"):
            if opt[name] is not None:
                raise ValueError(f"{name} applies to the entropic methods {_ENTROPIC}, not method={method!r}")


def _prepare_conditions(y0, y1, kind, n0, n1, device, compute):
    for t, name, n in ((y0, "y0", n0), (y1, "y1", n1)):
        if t.device != device:
            raise ValueError(f"{name} must be on the points' device {device}, got {t.device}")
        if kind == "label":
            if t.dim() != 1 or t.shape[0] != n:
                raise ValueError(f"{name} labels must have shape ({n},), got {tuple(t.shape)}")
        elif t.dim() < 2 or t.shape[0] != n:
            raise ValueError(f"{name} embeddings must have shape ({n}, e), got {tuple(t.shape)}")
    if kind == "label":
        return y0, y1
    e0, e1 = y0.reshape(n0, -1), y1.reshape(n1, -1)
    if e0.shape[1] != e1.shape[1]:
        raise ValueError(
            f"y0 and y1 must have the same embedding size, got {tuple(y0.shape)} and {tuple(y1.shape)}"
        )
    if not torch.compiler.is_compiling():
        for t, name in ((e0, "y0"), (e1, "y1")):
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return e0.detach().to(compute), e1.detach().to(compute)


def _cost_scale(C: torch.Tensor, max_side: int = 256) -> torch.Tensor:
    """Root-mean-square of the double-centred cost (0-d tensor, detached); 1 where that is 0.

    Beyond ``max_side`` rows or columns, it is that of the block of ``max_side`` evenly spaced rows and
    columns (an estimate: the scale only sets the default temperature)."""
    C = C.detach()
    n, m = C.shape[-2], C.shape[-1]
    if n > max_side:
        C = C[..., torch.linspace(0, n - 1, max_side, device=C.device).long(), :]
    if m > max_side:
        C = C[..., torch.linspace(0, m - 1, max_side, device=C.device).long()]
    Cc = C - C.mean(-1, keepdim=True) - C.mean(-2, keepdim=True) + C.mean((-2, -1), keepdim=True)
    s = Cc.square().mean((-2, -1)).sqrt()
    return torch.where(s > 0, s, torch.ones_like(s))


def _subset_pairs(i, j, batch_size, gen):
    """C²OT oversampling: a random subset of ``batch_size`` pairs (kept in ascending order of ``i``)."""
    k = i.shape[0]
    if batch_size is None or batch_size == k:
        return i, j
    if batch_size > k:
        raise ValueError(f"batch_size={batch_size} exceeds the {k} pairs an exact coupling gives")
    if gen is None:
        keep = torch.randperm(k, device=i.device)[:batch_size]
    else:
        keep = torch.randperm(k, generator=gen, device=gen.device)[:batch_size].to(i.device)
    keep = keep.sort().values
    return i[keep], j[keep]


def _log_exponential_like(t: torch.Tensor, gen) -> torch.Tensor:
    """``log E`` with ``E ~ Exp(1)`` i.i.d., shaped like ``t``: ``argmax(L - log E)`` draws from
    ``softmax(L)`` (the exponential race: Gumbel-max's law with one logarithm per entry instead of two)."""
    if gen is None:
        e = torch.empty_like(t).exponential_()  # (symbolic shapes trace through empty_like)
    else:
        e = torch.empty(t.shape, dtype=t.dtype, device=gen.device).exponential_(generator=gen).to(t.device)
    return e.clamp_min_(torch.finfo(t.dtype).tiny).log_()


def _sample_logits(L: torch.Tensor, batch_size, replace: bool, gen):
    """Pairs drawn from the plan ``P ∝ exp(L)``, ``L (n, m)`` its log up to a constant (``-inf``: no mass).

    See ``replace`` in :func:`couple`. ``L`` may be overwritten.
    """
    n, m = L.shape
    k = min(n, m) if batch_size is None else batch_size
    if replace:
        # Inverse-CDF draws from the flattened plan (torch.multinomial is limited to 2^24 categories).
        P = (L - L.max()).exp_().double()
        cdf = P.flatten().cumsum(0)
        if gen is None:
            u = torch.rand(k, dtype=torch.float64, device=P.device)
        else:
            u = torch.rand(k, generator=gen, dtype=torch.float64, device=gen.device).to(P.device)
        flat = torch.searchsorted(cdf, u * cdf[-1], right=True).clamp_max(n * m - 1)
        return flat // m, flat % m
    if k > n:
        raise ValueError(f"batch_size={k} exceeds n0={n}: without replacement each x0 sample is used once")
    if k == n:
        i = torch.arange(n, device=L.device)
    else:
        # k distinct rows with probability in proportion to their mass (exponential-race top-k).
        rows = torch.logsumexp(L, 1)
        i = (rows - _log_exponential_like(rows, gen)).topk(k).indices.sort().values
        L = L[i]
    # Each row's partner by inverse CDF along the row: one uniform number per row (drawing an (n, m)
    # array of noise for Gumbel-max costs more than the rest together on a CPU).
    L = L.sub_(L.amax(1, keepdim=True)).exp_()
    cdf = L.cumsum(1) if L.dtype == torch.float64 or L.shape[1] <= 4096 else L.double().cumsum(1)
    if gen is None:
        u = torch.rand_like(cdf[:, :1])
    else:
        u = torch.rand((cdf.shape[0], 1), generator=gen, dtype=cdf.dtype, device=gen.device).to(cdf.device)
    j = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(1).clamp_max(m - 1)
    return i, j


def _sample_plan(P: torch.Tensor, batch_size, replace: bool, gen):
    """Pairs drawn from a dense plan ``P (n, m)`` (see ``replace`` in :func:`couple`)."""
    return _sample_logits(P.log(), batch_size, replace, gen)


def _sample_sinkhorn(C: torch.Tensor, out: SinkhornOutput, batch_size, replace: bool, gen):
    """Pairs drawn from the plan of ``out`` on the dense cost ``C (n, m)`` with uniform marginals, whose
    log is ``(f_i + g_j - C_ij) / epsilon`` up to a constant: formed in three passes, never as ``P``."""
    eps = out.epsilon.to(C.dtype)
    L = out.g.to(C.dtype)[None, :] - C
    n = C.shape[0]
    k = min(n, C.shape[1]) if batch_size is None else batch_size
    if replace or k != n:
        L.add_(out.f.to(C.dtype)[:, None])  # row masses matter; for all rows, f_i only shifts row i
    return _sample_logits(L.mul_(1.0 / eps), batch_size, replace, gen)


# ------------------------------------------------------------------------------ exact, per-class batches


def _exact_class_split(a, b, y0, y1):
    """Hard class constraint: every class solved as one problem of one batched assignment.

    Each class's points are gathered into a ``(K, L, L)`` batch (``L`` the largest class count on either
    side); padding rows/columns cost 0 among themselves and ``big`` against real points, so every block's
    real rows and columns are matched as far as the class counts allow (``min(n0_c, n1_c)`` pairs), at the
    optimal cost. Eager only (the shapes depend on the labels).
    """
    dev = a.device
    labels, inv = torch.unique(torch.cat([y0, y1]), return_inverse=True)
    inv0, inv1 = inv[: y0.shape[0]], inv[y0.shape[0] :]
    K = labels.shape[0]
    if K == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=dev)
        return empty, empty

    def blocks(inv_s):
        counts = torch.bincount(inv_s, minlength=K)
        order = torch.argsort(inv_s, stable=True)
        start = torch.cumsum(counts, 0) - counts
        rank = torch.arange(inv_s.shape[0], device=dev) - start[inv_s[order]]
        return counts, order, rank

    cnt0, ord0, rank0 = blocks(inv0)
    cnt1, ord1, rank1 = blocks(inv1)
    L = int(torch.maximum(cnt0, cnt1).max())
    idx0 = torch.full((K, L), -1, dtype=torch.int64, device=dev)
    idx1 = torch.full((K, L), -1, dtype=torch.int64, device=dev)
    idx0[inv0[ord0], rank0] = ord0
    idx1[inv1[ord1], rank1] = ord1
    v0, v1 = idx0 >= 0, idx1 >= 0
    A = a[idx0.clamp_min(0)]  # (K, L, d)
    B = b[idx1.clamp_min(0)]
    same = bool((cnt0 == cnt1).all())
    if same:  # every block square and full: centring each side only adds row/column constants
        A = A - (A * v0[..., None]).sum(1, keepdim=True) / cnt0.clamp_min(1)[:, None, None]
        B = B - (B * v1[..., None]).sum(1, keepdim=True) / cnt1.clamp_min(1)[:, None, None]
    else:
        tot = (A * v0[..., None]).sum(1, keepdim=True) + (B * v1[..., None]).sum(1, keepdim=True)
        centre = tot / (cnt0 + cnt1).clamp_min(1)[:, None, None]
        A, B = A - centre, B - centre
    C = sqeuclidean(A, B).double()
    both = v0[:, :, None] & v1[:, None, :]
    none = ~v0[:, :, None] & ~v1[:, None, :]
    big = (C * both).amax((1, 2), keepdim=True) * (2 * L + 2) + 1
    C = torch.where(both, C, torch.where(none, torch.zeros_like(C), big.expand_as(C)))
    if not math.isfinite(float(C.max())):
        _check_finite(a, b)
        raise ValueError("the cost overflows: x0, x1 are too large")
    rows, cols = torch.ops.fastot.linear_sum_assignment(C, False)  # (K, L)
    gi = torch.gather(idx0, 1, rows)
    gj = torch.gather(idx1, 1, cols)
    keep = (gi >= 0) & (gj >= 0)
    i, j = gi[keep], gj[keep]
    order = torch.argsort(i)
    return i[order], j[order]


# ---------------------------------------------------------------------------------------- knn, BoMb-OT


def _knn(a, b, c0, c1, kind, w, opt, ratio):
    n0, n1 = a.shape[0], b.shape[0]
    k = opt["k"] if opt["k"] is not None else (n0 // n1 if n1 else 0)
    if n1 == 0 or k < 1 or n0 != k * n1:
        raise ValueError(
            f'method="knn" needs x0 to hold k noise candidates per x1 sample (n0 = k * n1); got n0={n0}, '
            f"n1={n1}, k={opt['k']!r}"
        )
    A = a.reshape(n1, k, -1)
    C = (A - b[:, None, :]).square().sum(-1)  # (n1, k)
    if kind == "label":
        differ = c0.reshape(n1, k) != c1[:, None]
        C = C.masked_fill(differ, math.inf) if isinstance(w, float) and math.isinf(w) else C + w * differ
    elif kind is not None:
        u0, u1 = c0.reshape(n1, k, -1), c1[:, None, :]
        if kind == "cosine":
            u0 = u0 / u0.norm(dim=-1, keepdim=True).clamp_min(1e-30)
            u1 = u1 / u1.norm(dim=-1, keepdim=True).clamp_min(1e-30)
            C = C + w * (1 - (u0 * u1).sum(-1))
        else:
            C = C + w * (u0 - u1).square().sum(-1)
    best = C.argmin(1)
    i = torch.arange(n1, device=a.device) * k + best
    j = torch.arange(n1, device=a.device)
    if opt["batch_size"] is not None:
        i, j = _subset_pairs(i, j, opt["batch_size"], opt["generator"])
    return Coupling(i, j, cond_weight=_weight_out(w, kind), ratio=ratio)


def _bomb(a, b, c0, c1, kind, w, opt, ratio):
    n0, n1 = a.shape[0], b.shape[0]
    s = opt["minibatch_size"]
    if s is None:
        raise ValueError('method="bomb" needs minibatch_size (the size of the inner mini-batches)')
    if n0 != n1 or n0 % s:
        raise ValueError(
            f'method="bomb" needs n0 == n1, a multiple of minibatch_size={s}; got n0={n0}, n1={n1}'
        )
    nb = n0 // s
    A = a.reshape(nb, 1, s, -1)
    B = b.reshape(1, nb, s, -1)
    if kind == "label":
        u0, u1 = c0.reshape(nb, 1, s), c1.reshape(1, nb, s)
    elif kind is not None:
        u0, u1 = c0.reshape(nb, 1, s, -1), c1.reshape(1, nb, s, -1)
    else:
        u0 = u1 = None
    if kind == "label" and isinstance(w, (int, float)) and math.isinf(w):
        raise ValueError(
            'method="bomb" needs a finite cond_weight for labels (a hard constraint can leave a pair of '
            "mini-batches without any feasible coupling)"
        )
    # (nb, nb, s, s): every pair of mini-batches, one batched exact assignment
    C = fused_cost(A, B, u0, u1, w if kind is not None else 0.0, kind, center="common").double()
    rows, cols = torch.ops.fastot.linear_sum_assignment(C, False)
    inner = torch.gather(C.flatten(-2), -1, rows * s + cols).sum(-1)  # (nb, nb) optimal inner costs
    outer_r, outer_c = torch.ops.fastot.linear_sum_assignment(inner, False)  # (nb,)
    sel = cols[outer_r, outer_c]  # (nb, s)
    i = (outer_r[:, None] * s + torch.arange(s, device=a.device)).flatten()
    j = (outer_c[:, None] * s + sel).flatten()
    if opt["batch_size"] is not None:
        i, j = _subset_pairs(i, j, opt["batch_size"], opt["generator"])
    return Coupling(i, j, cond_weight=_weight_out(w, kind), ratio=ratio)


# ------------------------------------------------------------------------------------- adaptive weight


def adapt_cond_weight(a, b, c0, c1, kind, target_r, w_init=None, tol=1e-3, max_iter=10):
    """C²OT's weight search: ``w`` with ``mean[M_ij + w C_ij <= M_ii] ~= target_r`` (eager).

    ``a (n0, d)``, ``b (n1, d)`` points; ``c0``, ``c1`` prepared conditions. At most 1024 rows (evenly
    spaced) of the ``min(n0, n1)`` independent pairs ``(i, i)`` are used. Returns ``(w, ratio)`` (floats).
    """
    n = min(a.shape[0], b.shape[0])
    if n == 0:
        return (1.0 if w_init is None else float(w_init)), 0.0
    rows = torch.linspace(0, n - 1, min(n, 1024), device=a.device).round().long().unique()
    ar = a[rows]
    centre = (a.mean(0) + b.mean(0)) / 2
    M = sqeuclidean(ar - centre, b - centre).double()  # (r, n1)
    diag = M[torch.arange(rows.shape[0], device=a.device), rows][:, None]
    if kind == "label":
        Cc = (c0[rows][:, None] != c1[None, :]).double()
    elif kind == "cosine":
        u0 = c0[rows] / c0[rows].norm(dim=-1, keepdim=True).clamp_min(1e-30)
        u1 = c1 / c1.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        Cc = (1 - u0 @ u1.T).double()
    else:
        Cc = sqeuclidean(c0[rows], c1).double()

    return search_cond_weight(M, Cc, diag, target_r, w_init, tol, max_iter)


def search_cond_weight(M, Cc, diag, target_r, w_init=None, tol=1e-3, max_iter=10):
    """The weight search on explicit matrices: ``M (r, m)`` point costs, ``Cc (r, m)`` condition costs,
    ``diag (r, 1)`` the reference point cost of each row. Returns ``(w, ratio)`` with
    ``ratio = mean[M + w Cc <= diag]``: grows (x4) or shrinks (/4) ``w`` until the target is bracketed,
    then bisects; at most ``max_iter`` evaluations, stopping within ``tol`` of ``target_r``."""

    def ratio_at(w: float) -> float:
        return float(((M + w * Cc) <= diag).double().mean())

    w = 1.0 if w_init is None else float(w_init)
    if not (w > 0 and math.isfinite(w)):
        w = 1.0
    r = ratio_at(w)
    lo, hi = None, None  # ratio(lo) > target >= ratio(hi)
    steps = 1
    while abs(r - target_r) > tol and steps < max_iter:
        if r > target_r:
            lo = w
            w = w * 4 if hi is None else (w + hi) / 2
        else:
            hi = w
            w = w / 4 if lo is None else (lo + w) / 2
        r = ratio_at(w)
        steps += 1
    return w, r


# ------------------------------------------------------------------------------------------- Coupler


@dataclass
class CouplerStats:
    """Per-call timing and solver statistics kept by :class:`Coupler`."""

    calls: int = 0
    total_s: float = 0.0
    last_s: float = 0.0
    times_s: list = field(default_factory=list)
    sinkhorn_iters: list = field(default_factory=list)
    cond_weights: list = field(default_factory=list)
    ratios: list = field(default_factory=list)

    def summary(self) -> dict:
        ts = sorted(self.times_s)
        med = ts[len(ts) // 2] if ts else float("nan")
        return {"calls": self.calls, "total_s": self.total_s, "median_s": med, "last_s": self.last_s}


class Coupler:
    """A coupling step for training loops: options fixed once, state carried between steps.

    ``coupler = fastot.Coupler(method="sinkhorn", target_r=0.2, cond_cost="cosine")``, then each step
    ``i, j = coupler(x0, x1, y0, y1)``. Compared with calling :func:`couple` each step it

    - keeps the adapted condition weight (``target_r``: C²OT's search starts from the last weight, so it
      usually takes one or two evaluations), available as ``coupler.cond_weight``;
    - warm-starts the entropic methods from the previous step's potentials when the batch sizes are the
      same (``warm_start=True``; the potentials of a fresh batch are a good start because the cost scale
      and the marginals repeat);
    - records timings and solver statistics in ``coupler.stats`` (``stats.summary()``) and keeps the last
      :class:`Coupling` as ``coupler.last``.

    Args:
        method: as :func:`couple`.
        warm_start: reuse potentials between steps (entropic methods).
        keep_history: how many per-call records ``stats`` keeps (the oldest are dropped).
        **options: any option of :func:`couple` (``cond_weight`` is the initial weight with ``target_r``).
    """

    def __init__(
        self, method: str = "exact", *, warm_start: bool = True, keep_history: int = 1000, **options
    ):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        unknown = sorted(set(options) - set(_OPTION_NAMES))
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for Coupler; expected some of {sorted(_OPTION_NAMES)}"
            )
        for name in ("f_init", "g_init"):
            if name in options:
                raise ValueError(f"{name} is managed by Coupler (warm_start); do not pass it")
        self.method = method
        self.options = dict(options)
        self.warm_start = bool(warm_start)
        self.keep_history = int(keep_history)
        self.cond_weight = options.get("cond_weight")
        self.stats = CouplerStats()
        self.last: Coupling | None = None
        self._potentials: tuple[torch.Tensor, torch.Tensor] | None = None

    def reset(self) -> None:
        """Forget the adapted weight, the potentials and the statistics."""
        self.cond_weight = self.options.get("cond_weight")
        self.stats = CouplerStats()
        self.last = None
        self._potentials = None

    def __call__(self, x0, x1, y0=None, y1=None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.solve(x0, x1, y0, y1)
        return out.i, out.j

    def solve(self, x0, x1, y0=None, y1=None) -> Coupling:
        """One coupling step; returns the :class:`Coupling` (also kept as ``self.last``)."""
        opts = dict(self.options)
        if self.cond_weight is not None:
            opts["cond_weight"] = self.cond_weight
        if self.method in _ENTROPIC and self.warm_start and self._potentials is not None:
            f, g = self._potentials
            if f.shape[0] == x0.shape[0] and g.shape[0] == x1.shape[0] and f.device == x0.device:
                opts["f_init"], opts["g_init"] = f, g
        start = time.perf_counter()
        out = solve_coupling(x0, x1, y0, y1, method=self.method, **opts)
        if out.i.device.type == "cuda":
            torch.cuda.synchronize(out.i.device)
        elapsed = time.perf_counter() - start
        if self.options.get("target_r") is not None:
            self.cond_weight = out.cond_weight
        if out.sinkhorn is not None:
            self._potentials = (out.sinkhorn.f, out.sinkhorn.g)
        st = self.stats
        st.calls += 1
        st.total_s += elapsed
        st.last_s = elapsed
        st.times_s.append(elapsed)
        if out.sinkhorn is not None:
            st.sinkhorn_iters.append(int(out.sinkhorn.n_iter))
        if out.cond_weight is not None:
            st.cond_weights.append(float(out.cond_weight))
        if out.ratio is not None:
            st.ratios.append(out.ratio)
        for lst in (st.times_s, st.sinkhorn_iters, st.cond_weights, st.ratios):
            del lst[: max(0, len(lst) - self.keep_history)]
        self.last = out
        return out
