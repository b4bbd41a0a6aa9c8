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
from .costs import augmented_points, check_cond_weight, fused_cost, resolve_cond_cost, sqeuclidean
from .geometry import Geometry
from .outputs import SinkhornOutput
from .sinkhorn import MODES, auto_online, sinkhorn
from .solvers.assignment import INVALID_MESSAGE

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
        sinkhorn: the :class:`~fastot.outputs.SinkhornOutput` of the entropic methods (potentials
            ``f (n0,)``, ``g (n1,)`` for a warm start, ``converged``, ``error``, ``n_iter``); ``None`` for the
            others. Its cost is the (centred) conditional cost in both modes (online: the squared distances
            of the augmented points, the same numbers up to rounding), so ``plan()`` and ``apply()`` agree.
            A hard class constraint in online mode is solved per class: ``f``, ``g`` are the per-class
            potentials scattered back to the global rows and columns (balanced: each class has its own
            additive constant), ``value`` the sum over classes, ``error`` the sum (balanced: the whole
            problem's column L1 error) or the largest (unbalanced), ``n_iter`` the largest, ``converged``
            whether all classes converged; ``plan()`` is the ``(n0, n1)`` plan, 0 across classes.
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
        mode: the entropic methods' cost, as :func:`fastot.sinkhorn`'s ``mode``. ``"dense"`` forms the
            ``(n0, n1)`` cost with the condition term fused in. ``"online"`` never forms an ``n0 x n1``
            matrix: Sinkhorn computes the cost tile by tile from points ``(n0, D)``, ``(n1, D)`` whose
            squared distances are the conditional cost (:func:`fastot.costs.augmented_points`: embeddings
            ``[x, sqrt(w) e]``, cosine ``[x, sqrt(w/2) e/|e|]``, labels with a finite weight
            ``[x, sqrt(w/2) onehot(label)]``, ``D = d + e`` or ``d`` + the number of labels), and pairs are
            drawn by blocks of at most 2^20 plan entries computed from the points (memory
            ``O((n0 + n1) D)`` plus the blocks). A hard class constraint is split instead: each class one
            problem of a single batched online solve, padded to the largest class with zero-weight points
            (eager only; not ``"partial"``, whose transported mass is shared by all classes). ``"auto"``
            (default): online beyond ``fastot.sinkhorn``'s threshold of 2^26 cost entries ``n0 * n1``
            where online applies (labels: eager mode; not ``"partial"`` with a hard constraint), dense
            otherwise. Both modes solve the same problem: same potentials and, from the same
            ``generator``, the same pairs up to rounding. Under ``torch.compile`` the online solve is one
            op but the pairs are drawn from one ``(n0, n1)`` block of logits (a loop over row blocks would
            recompile for every batch size). The other methods accept only ``"auto"``.
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
        generator: ``torch.Generator`` for the random draws (reproducible results). Eager mode only:
            torch.compile cannot take a generator into a graph (compiled, the global RNG draws).
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
    ``cond_weight=inf`` and equal class counts; ``mode="online"`` without labels) work under
    ``torch.compile(fullgraph=True)``. In eager
    mode non-finite inputs are reported by name; in a compiled graph they reach the assignment op as NaN
    costs and raise its ``ValueError("matrix contains invalid numeric entries")``.

    Raises:
        ValueError: unknown ``method`` or option; shapes, devices or option values that do not fit (the
            message names the argument); non-finite values; an infeasible hard class constraint (entropic
            methods: a class present on one side only); ``mode="online"`` where it cannot apply.
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
        "mode": "auto",
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
    hard = kind == "label" and isinstance(w, (int, float)) and w == math.inf

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
            overflow = (
                f"the cost overflows {C.dtype}: x0, x1 (or the conditions times cond_weight) are too large"
            )
            on_device = _without_host_sync(C)
            if on_device or compiling:
                # No host synchronisation here: non-finite costs become NaN, which the solver rejects with
                # its one status read (eager: re-raised below with this function's message).
                if hard:
                    forbidden = (C == math.inf) & (c0[:, None] != c1[None, :])
                    C = torch.where(torch.isfinite(C) | forbidden, C, torch.nan)
                else:
                    C = torch.where(torch.isfinite(C), C, torch.nan)
            else:
                # A non-finite input, or an overflow, makes some cost non-finite. Few coordinates: bound the
                # cost by the inputs (an (n + m) d pass); else one reduction over the cost.
                if kind is None and (n0 + n1) * d < n0 * n1:
                    big = float(torch.maximum(a.abs().amax(), b.abs().amax())) if n0 and n1 else 0.0
                    ok = math.isfinite(big) and 4 * d * big * big < torch.finfo(C.dtype).max / 4
                else:
                    ok = math.isfinite(float(C.max())) if C.numel() else True
                if not ok:
                    _check_finite(x0, x1)
                    raise ValueError(overflow)
            if C.dtype == torch.float32 and C.device.type == "cpu":
                # float32 (and lower) inputs: the cost is known to float32 rounding, and the CPU solver's
                # float32 arithmetic is 1.6-1.9x faster (measured n = 1024, d = 2 and 3072: same assignments
                # as the float64 solve, optimal against scipy on the float64 distances). The GPU solver
                # reads float32 costs and solves in float64 at no extra cost: it keeps float64.
                i, j, _, _ = torch.ops.fastot.solve_assignment(C, False, torch.float32)
            elif on_device and not compiling:
                try:
                    i, j = torch.ops.fastot.linear_sum_assignment(C, False)
                except ValueError as exc:
                    if INVALID_MESSAGE not in str(exc):
                        raise
                    _check_finite(x0, x1)
                    raise ValueError(overflow) from None
            else:
                i, j = torch.ops.fastot.linear_sum_assignment(C, False)
        i, j = _subset_pairs(i, j, opt["batch_size"], gen)
        return Coupling(i, j, cond_weight=_weight_out(w, kind), ratio=ratio)

    return _entropic(a, b, c0, c1, kind, w, hard, method, opt, ratio, compiling)


# ---------------------------------------------------------------------------------------- entropic methods


def _entropic(a, b, c0, c1, kind, w, hard, method, opt, ratio, compiling) -> Coupling:
    """``"sinkhorn"``, ``"unbalanced"``, ``"partial"`` on ``a (n0, d)``, ``b (n1, d)`` with prepared
    conditions: the cost dense (``fused_cost``) or online (points whose squared distances are the cost,
    :func:`~fastot.costs.augmented_points`; per class for a hard constraint), then pairs drawn from the
    plan."""
    n0, n1 = a.shape[0], b.shape[0]
    if hard and not compiling:
        _check_classes_on_both_sides(c0, c1)
    features = a.shape[1] + (c0.shape[-1] if kind in ("sqeuclidean", "cosine") else 0)  # (labels: a few more)
    online = _use_online(opt["mode"], method, kind, hard, n0, n1, features, compiling)
    # Balanced plans do not change when a row or a column constant is added to the cost: centre each cloud
    # (better conditioned, as for "exact"). Unbalanced and partial plans do change: shift both by one vector.
    center = "separate" if method == "sinkhorn" else "common"
    # A hard constraint: the scale (and the default epsilon) is that of the point cost; the classes mask
    # the cost (dense) or split the problem (online).
    cw, ck = (0.0, None) if hard else (w, kind)
    if online:
        x, y = augmented_points(a, b, c0, c1, cw, ck, center=center)  # (n0, D), (n1, D)
        scale = _cost_scale(_cost_sample(x, y))
    else:
        C = fused_cost(a, b, c0, c1, cw, ck, center=center)  # (n0, n1)
        scale = _cost_scale(C)
        if hard:  # (in place: C is our own, detached)
            C = C.masked_fill_(c0[:, None] != c1[None, :], math.inf)
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
    solve = {
        "epsilon": eps,
        "reg_m": reg_m,
        "mass": mass,
        "max_iter": opt["max_iter"],
        "tol": opt["tol"],
        "epsilon_init": None if warm else eps / opt["epsilon_rel"] if opt["epsilon"] is None else None,
    }
    if online and hard:
        out, row_lse, partners = _solve_class_split(x, y, c0, c1, opt, solve)
    elif online:
        out = sinkhorn(x=x, y=y, mode="online", f_init=opt["f_init"], g_init=opt["g_init"], **solve)
        row_lse, partners = _points_sampler(x, y, out)
    else:
        out = sinkhorn(cost=C, f_init=opt["f_init"], g_init=opt["g_init"], **solve)
        row_lse, partners = _dense_sampler(C, out)
    if not compiling and not bool(out.converged.all()):
        msg = (
            f"couple(method={method!r}): Sinkhorn did not converge within max_iter={opt['max_iter']} "
            f"(marginal error {float(out.error):.3g} > tol={opt['tol']}, epsilon={float(eps):.4g}); raise "
            "max_iter or epsilon, or pass strict=False to use the unconverged plan"
        )
        if hard and method == "sinkhorn" and _class_shares_differ(c0, c1):
            msg += (
                " (a hard class constraint with different class shares on the two sides has no balanced plan)"
            )
        if opt["strict"]:
            raise RuntimeError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=4)
    gen = opt["generator"]
    i, j = _sample_pairs(n0, n1, row_lse, partners, opt["batch_size"], opt["replace"], gen, a.device)
    return Coupling(i, j, cond_weight=_weight_out(w, kind), ratio=ratio, sinkhorn=out, epsilon=eps)


def _use_online(
    mode: str, method: str, kind, hard: bool, n0: int, n1: int, features: int, compiling: bool
) -> bool:
    """Resolves ``mode``: ``"online"`` where asked (or an error where it cannot apply), ``"auto"``:
    ``fastot.sinkhorn``'s rule (:func:`fastot.sinkhorn.auto_online`: many cost entries, points much
    smaller than the cost), where online applies."""
    if mode == "dense":
        return False
    # Labels in online mode need eager execution: the one-hot width (finite weight) and the per-class
    # batch (hard constraint) depend on the label values.
    needs_eager = kind == "label" and compiling
    # Partial transport moves a total mass shared by all classes: its problem does not split per class.
    no_split = hard and method == "partial"
    if mode == "online":
        if needs_eager:
            raise ValueError(
                'mode="online" with labels y0, y1 needs eager mode (the one-hot width, and a hard class '
                'constraint\'s per-class split, depend on the label values); use mode="dense" under '
                "torch.compile"
            )
        if no_split:
            raise ValueError(
                'mode="online" cannot solve method="partial" with a hard class constraint (cond_weight=inf): '
                "the transported mass is shared by all classes, so the problem does not split per class; "
                'use mode="dense" or a finite cond_weight'
            )
        return True
    return auto_online(n0 * n1, (n0 + n1) * features) and not needs_eager and not no_split


def _check_classes_on_both_sides(y0: torch.Tensor, y1: torch.Tensor) -> None:
    """Entropic plans under a hard class constraint pair every sample within its class: a class on one
    side only leaves its samples without any partner (no plan, balanced or not: the solver would only
    produce NaN potentials)."""
    u0, u1 = torch.unique(y0), torch.unique(y1)
    only0 = u0[~torch.isin(u0, u1)]
    only1 = u1[~torch.isin(u1, u0)]
    if only0.numel() or only1.numel():
        raise ValueError(
            "a hard class constraint (labels with cond_weight=inf) needs every class on both sides for the "
            f"entropic methods: classes {only0.tolist()[:8]} appear only in y0 and {only1.tolist()[:8]} only "
            'in y1; pass a finite cond_weight, or use method="exact" (it pairs min(n0_c, n1_c) per class)'
        )


def _cost_sample(x: torch.Tensor, y: torch.Tensor, max_side: int = 256) -> torch.Tensor:
    """The cost block of at most ``max_side`` evenly spaced rows and columns (those :func:`_cost_scale`
    reads from a dense cost), from points ``x (n, D)``, ``y (m, D)``: ``(min(n, max_side), min(m,
    max_side))``."""
    return sqeuclidean(x[_spaced(x.shape[0], max_side, x.device)], y[_spaced(y.shape[0], max_side, y.device)])


def _spaced(n: int, max_side: int, device) -> torch.Tensor | slice:
    """``max_side`` evenly spaced indices of ``n`` (all of them, as a slice, when ``n <= max_side``)."""
    return torch.linspace(0, n - 1, max_side, device=device).long() if n > max_side else slice(None)


# ------------------------------------------------------------------------------ online, per-class batches


@dataclass
class _ClassBlocks:
    """Samples gathered by class: block ``k`` holds class ``k``'s samples in ascending order, padded.

    ``idx0 (K, L0)``, ``idx1 (K, L1)``: global indices of the block entries (``-1``: padding; real entries
    first); ``cnt0``, ``cnt1`` ``(K,)`` class counts; ``cls0 (n0,)``, ``cls1 (n1,)`` each sample's block and
    ``pos0``, ``pos1`` its position in that block."""

    idx0: torch.Tensor
    idx1: torch.Tensor
    cnt0: torch.Tensor
    cnt1: torch.Tensor
    cls0: torch.Tensor
    cls1: torch.Tensor
    pos0: torch.Tensor
    pos1: torch.Tensor


def _class_ids(y0: torch.Tensor, y1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Each sample's class as an index into the ``K`` labels present in ``y0`` or ``y1``:
    ``(cls0 (n0,), cls1 (n1,), K)``."""
    labels, inv = torch.unique(torch.cat([y0, y1]), return_inverse=True)
    return inv[: y0.shape[0]], inv[y0.shape[0] :], labels.shape[0]


def _class_blocks(y0: torch.Tensor, y1: torch.Tensor, square: bool) -> _ClassBlocks:
    """Gathers the labels' classes into padded blocks (eager: shapes depend on the labels). ``square``:
    ``L0 = L1`` = the largest class count on either side; else ``L0``, ``L1`` the largest per side."""
    dev = y0.device
    cls0, cls1, K = _class_ids(y0, y1)

    def blocks(cls):
        counts = torch.bincount(cls, minlength=K)
        order = torch.argsort(cls, stable=True)
        start = torch.cumsum(counts, 0) - counts
        rank = torch.arange(cls.shape[0], device=dev) - start[cls[order]]
        pos = torch.empty_like(rank)
        pos[order] = rank
        return counts, order, rank, pos

    cnt0, ord0, rank0, pos0 = blocks(cls0)
    cnt1, ord1, rank1, pos1 = blocks(cls1)
    L0 = int(cnt0.max()) if K else 0
    L1 = int(cnt1.max()) if K else 0
    if square:
        L0 = L1 = max(L0, L1)
    idx0 = torch.full((K, L0), -1, dtype=torch.int64, device=dev)
    idx1 = torch.full((K, L1), -1, dtype=torch.int64, device=dev)
    idx0[cls0[ord0], rank0] = ord0
    idx1[cls1[ord1], rank1] = ord1
    return _ClassBlocks(idx0, idx1, cnt0, cnt1, cls0, cls1, pos0, pos1)


def _gather_rows(t: torch.Tensor, idx: torch.Tensor, fill: float) -> torch.Tensor:
    """``t (n, *rest)`` gathered into blocks ``(K, L, *rest)`` by ``idx (K, L)``; padding set to ``fill``."""
    out = t[idx.clamp_min(0)]
    pad = (idx < 0).reshape(*idx.shape, *([1] * (t.dim() - 1)))
    return out.masked_fill(pad, fill)


def _scatter_rows(blocks: torch.Tensor, idx: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`_gather_rows`: ``blocks (K, L, *rest)`` -> ``(n, *rest)`` (padding dropped)."""
    real = idx >= 0
    out = blocks.new_zeros((n, *blocks.shape[2:]))
    out[idx[real]] = blocks[real]
    return out


def _solve_class_split(x, y, y0, y1, opt, solve):
    """A hard class constraint in online mode: every class one problem of one batched online solve.

    ``x (n0, D)``, ``y (n1, D)`` are the centred points. Each class is gathered into a ``(K, L0, D)``,
    ``(K, L1, D)`` batch padded with zero-weight points; real points keep the whole problem's weights
    ``1/n0``, ``1/n1`` (which need not sum to 1 per class). The masked dense problem decouples into these
    blocks (its cross-class entries carry no mass), so with equal class shares the plans are the dense
    masked problem's. Returns the :class:`SinkhornOutput` of the whole problem (potentials scattered back
    to the global rows and columns; see :class:`_ClassBlockGeometry`) and the sampler callbacks.
    """
    n0, n1 = x.shape[0], y.shape[0]
    blk = _class_blocks(y0, y1, square=False)
    K = blk.idx0.shape[0]
    real0, real1 = blk.idx0 >= 0, blk.idx1 >= 0
    wa = real0.to(x.dtype) / n0  # (K, L0): the global uniform weights on the class, 0 on padding
    wb = real1.to(x.dtype) / n1
    f0 = None if opt["f_init"] is None else _gather_rows(opt["f_init"].to(x.dtype), blk.idx0, 0.0)
    g0 = None if opt["g_init"] is None else _gather_rows(opt["g_init"].to(x.dtype), blk.idx1, 0.0)
    balanced = solve["reg_m"] is None
    tol = solve["tol"]
    if balanced and tol is not None:
        # The whole problem's error, the L1 error of its column marginal, is the sum of the blocks' errors.
        tol = tol / K
    out_b = sinkhorn(
        x=_gather_rows(x, blk.idx0, 0.0),
        y=_gather_rows(y, blk.idx1, 0.0),
        a=wa,
        b=wb,
        mode="online",
        f_init=f0,
        g_init=g0,
        **{**solve, "tol": tol},
    )
    eps = out_b.epsilon[0]
    out = SinkhornOutput(
        f=_scatter_rows(out_b.f, blk.idx0, n0),
        g=_scatter_rows(out_b.g, blk.idx1, n1),
        value=out_b.value.sum(),
        n_iter=out_b.n_iter.amax(),
        converged=out_b.converged.all(),
        error=out_b.error.sum() if balanced else out_b.error.amax(),
        epsilon=eps,
        _geometry=_ClassBlockGeometry(out_b._geometry, blk.idx0, blk.idx1, n0, n1),
        _log_a=torch.full((1, n0), -math.log(n0), dtype=x.dtype, device=x.device),
        _log_b=torch.full((1, n1), -math.log(n1), dtype=x.dtype, device=x.device),
    )
    return (out, *_class_sampler(out_b, blk, n0))


class _ClassBlockGeometry(Geometry):
    """The masked cost of a hard class constraint, held as its class blocks (online).

    ``blocks`` is the ``(K, L0, L1)`` point-cloud geometry of the per-class problems; ``idx0 (K, L0)``,
    ``idx1 (K, L1)`` map block rows and columns to the global ``(n0, n1)`` ones (``-1``: padding). It answers
    what a :class:`SinkhornOutput` asks of its geometry (``plan``, ``apply``, ``apply_transpose``,
    ``cost_dot``) in the global layout ``(1, n0, n1)``: cross-class entries carry no mass."""

    def __init__(self, blocks: Geometry, idx0: torch.Tensor, idx1: torch.Tensor, n0: int, n1: int):
        self.blocks, self.idx0, self.idx1 = blocks, idx0, idx1
        self.batch, self.n, self.m = 1, n0, n1
        self.dtype, self.device = blocks.dtype, blocks.device

    def _split(self, hr, hc, scale):
        """Global log-scalings ``hr (1, n0)``, ``hc (1, n1)`` -> the blocks' (``-inf``: padding)."""
        K = self.idx0.shape[0]
        return (
            _gather_rows(hr[0], self.idx0, -math.inf),
            _gather_rows(hc[0], self.idx1, -math.inf),
            scale.expand(K).contiguous(),
        )

    def plan(self, hr, hc, scale):
        P = self.blocks.plan(*self._split(hr, hc, scale))  # (K, L0, L1)
        real = (self.idx0 >= 0)[:, :, None] & (self.idx1 >= 0)[:, None, :]
        rows = self.idx0[:, :, None].expand_as(P)[real]
        cols = self.idx1[:, None, :].expand_as(P)[real]
        out = P.new_zeros((1, self.n, self.m))
        out[0, rows, cols] = P[real]
        return out

    def apply(self, hr, hc, scale, v):
        vb = _gather_rows(v[0], self.idx1, 0.0)  # (K, L1, k)
        return _scatter_rows(self.blocks.apply(*self._split(hr, hc, scale), vb), self.idx0, self.n)[None]

    def apply_transpose(self, hr, hc, scale, u):
        ub = _gather_rows(u[0], self.idx0, 0.0)  # (K, L0, k)
        out = self.blocks.apply_transpose(*self._split(hr, hc, scale), ub)
        return _scatter_rows(out, self.idx1, self.m)[None]

    def cost_dot(self, hr, hc, scale):
        return self.blocks.cost_dot(*self._split(hr, hc, scale)).sum()[None]


# ----------------------------------------------------------------------------------------------- helpers


def _class_shares_differ(y0: torch.Tensor, y1: torch.Tensor) -> bool:
    """Whether some class has a different share of ``y0 (n0,)`` than of ``y1 (n1,)`` (eager)."""
    cls0, cls1, k = _class_ids(y0, y1)
    c0, c1 = torch.bincount(cls0, minlength=k), torch.bincount(cls1, minlength=k)
    return bool((c0 * y1.shape[0] != c1 * y0.shape[0]).any())


def _without_host_sync(C: torch.Tensor) -> bool:
    """Whether the exact path must not read the cost on the host (an accelerator: its one host
    synchronisation is the solver's status read)."""
    return C.device.type != "cpu"


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
    if gen is not None and torch.compiler.is_compiling():
        raise ValueError(
            "generator: torch.compile cannot take a torch.Generator into a graph; leave it out under "
            "compile (the global RNG draws) or call couple in eager mode"
        )
    mode = opt["mode"]
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if method not in _ENTROPIC and mode != "auto":
        raise ValueError(
            f"mode={mode!r} applies to the entropic methods {_ENTROPIC}; method={method!r} always forms "
            'its costs (leave mode="auto")'
        )
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
        C = C[..., _spaced(n, max_side, C.device), :]
    if m > max_side:
        C = C[..., _spaced(m, max_side, C.device)]
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


# Pair sampling. A plan P (n, m) is given by two callbacks, never as a matrix: its log row masses
# (row_lse) and a partner step (partners) that draws, for given rows, one column each by inverse CDF along
# the row. Dense plans answer both from their (n, m) logits, online plans from blocks of rows whose cost
# they compute from the points: the draws are the same either way (each row's step reads only its row).

# Row blocks of the partner step and of the row masses hold at most this many logits (float32: 4 MiB),
# so the temporaries of a sampling pass stay far below an n x m matrix.
_SAMPLE_BLOCK_ENTRIES = 1 << 20


def _row_chunks(n: int, width: int) -> list[slice]:
    """Slices of ``n`` rows of ``width`` entries each, at most ``_SAMPLE_BLOCK_ENTRIES`` per slice (eager),
    or one slice (compiled: a shape-dependent loop would recompile for every ``n``)."""
    if torch.compiler.is_compiling():
        return [slice(0, n)]
    rows = max(1, _SAMPLE_BLOCK_ENTRIES // max(1, width))
    return [slice(s, min(s + rows, n)) for s in range(0, n, rows)]


def _uniform(k: int, gen, device) -> torch.Tensor:
    """``(k,)`` float64 uniforms in ``[0, 1)`` from ``gen`` (or the global generator), on ``device``."""
    if gen is None:
        return torch.rand(k, dtype=torch.float64, device=device)
    return torch.rand(k, generator=gen, dtype=torch.float64, device=gen.device).to(device)


def _row_partners(L: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Each row's partner by inverse CDF along its row: ``L (r, m)`` logits up to a constant per row
    (``-inf``: no mass; overwritten), ``u (r,)`` uniforms. Returns ``(r,)`` int64 columns. One uniform per
    row: drawing an ``(r, m)`` array of noise for Gumbel-max costs more than the rest together on a CPU."""
    m = L.shape[1]
    L = L.sub_(L.amax(1, keepdim=True)).exp_()
    cdf = L.cumsum(1) if L.dtype == torch.float64 or m <= 4096 else L.double().cumsum(1)
    # u < 1 after rounding to the cdf's dtype, so the target stays below the row's total mass
    u = u.to(cdf.dtype).clamp_max(1.0 - torch.finfo(cdf.dtype).eps / 2)
    return torch.searchsorted(cdf, u[:, None] * cdf[:, -1:], right=True).squeeze(1).clamp_max(m - 1)


def _sample_pairs(n: int, m: int, row_lse, partners, batch_size, replace: bool, gen, device):
    """Pairs ``(i, j)``, each ``(k,)`` int64, drawn from a plan ``P (n, m)`` (see ``replace`` in
    :func:`couple`).

    ``row_lse()`` returns the ``(n,)`` log row masses ``log sum_j P_ij`` (up to one constant); it is only
    called when rows are drawn. ``partners(i, u)`` returns a column for each row of ``i (k,)`` (``None``: all
    rows in order) drawn from that row of ``P`` by inverse CDF with the uniform ``u (k,)``.
    """
    k = min(n, m) if batch_size is None else batch_size
    if replace:
        # Rows by their masses, then a partner per draw: P(i) P(j | i) is the law of the flattened plan
        # (torch.multinomial is limited to 2^24 categories; inverse CDF is not).
        r = row_lse()
        cdf = (r - r.max()).exp_().double().cumsum(0)
        i = torch.searchsorted(cdf, _uniform(k, gen, device) * cdf[-1], right=True).clamp_max(n - 1)
        return i, partners(i, _uniform(k, gen, device))
    if k > n:
        raise ValueError(f"batch_size={k} exceeds n0={n}: without replacement each x0 sample is used once")
    if k == n:
        return torch.arange(n, device=device), partners(None, _uniform(n, gen, device))
    # k distinct rows with probability in proportion to their mass (exponential-race top-k).
    r = row_lse()
    i = (r - _log_exponential_like(r, gen)).topk(k).indices.sort().values
    return i, partners(i, _uniform(k, gen, device))


def _dense_partners(L: torch.Tensor):
    """The partner step on dense logits ``L (n, m)`` (overwritten), by row blocks."""
    n, m = L.shape

    def partners(i, u):
        if i is None:  # all rows: in place
            return torch.cat([_row_partners(L[sl], u[sl]) for sl in _row_chunks(n, m)])
        return torch.cat([_row_partners(L[i[sl]], u[sl]) for sl in _row_chunks(i.shape[0], m)])

    return partners


def _sample_logits(L: torch.Tensor, batch_size, replace: bool, gen):
    """Pairs drawn from the plan ``P ∝ exp(L)``, ``L (n, m)`` its log up to a constant (``-inf``: no mass).

    See ``replace`` in :func:`couple`. ``L`` may be overwritten.
    """
    n, m = L.shape
    return _sample_pairs(
        n, m, lambda: torch.logsumexp(L, 1), _dense_partners(L), batch_size, replace, gen, L.device
    )


def _sample_plan(P: torch.Tensor, batch_size, replace: bool, gen):
    """Pairs drawn from a dense plan ``P (n, m)`` (see ``replace`` in :func:`couple`)."""
    return _sample_logits(P.log(), batch_size, replace, gen)


def _dense_sampler(C: torch.Tensor, out: SinkhornOutput):
    """Sampler callbacks of the plan of ``out`` on the dense cost ``C (n, m)`` with uniform marginals: its
    log is ``(f_i + g_j - C_ij) / epsilon`` up to a constant. ``L = (g_j - C_ij) / epsilon`` is formed once
    (in three passes, never ``P``); ``f_i`` only enters the row masses."""
    inv_eps = 1.0 / out.epsilon.to(C.dtype)
    L = (out.g.to(C.dtype)[None, :] - C).mul_(inv_eps)
    return lambda: torch.logsumexp(L, 1) + out.f.to(C.dtype) * inv_eps, _dense_partners(L)


def _points_sampler(x: torch.Tensor, y: torch.Tensor, out: SinkhornOutput):
    """Sampler callbacks of the plan of ``out`` on the cost ``|x_i - y_j|^2`` (``x (n, D)``, ``y (m, D)``)
    with uniform marginals, the logits computed by blocks of rows as :func:`_dense_sampler` forms them."""
    n, m = x.shape[0], y.shape[0]
    inv_eps = 1.0 / out.epsilon.to(x.dtype)
    g = out.g.to(x.dtype)

    def logits(rows):  # (r, m)
        return (g[None, :] - sqeuclidean(x[rows], y)).mul_(inv_eps)

    def row_lse():
        lse = [torch.logsumexp(logits(sl), 1) for sl in _row_chunks(n, m)]
        return torch.cat(lse) + out.f.to(x.dtype) * inv_eps

    def partners(i, u):
        if i is None:
            return torch.cat([_row_partners(logits(sl), u[sl]) for sl in _row_chunks(n, m)])
        return torch.cat([_row_partners(logits(i[sl]), u[sl]) for sl in _row_chunks(i.shape[0], m)])

    return row_lse, partners


def _class_sampler(out_b: SinkhornOutput, blk: _ClassBlocks, n0: int):
    """Sampler callbacks of the per-class plans of ``out_b`` (batch of ``K`` class problems on points,
    :func:`_solve_class_split`), in global row and column indices: rows are drawn from their class's
    block, partners among its columns (padding columns carry no mass)."""
    geom = out_b._geometry
    X, Y = geom.x, geom.y  # (K, L0, D), (K, L1, D)
    K, L1 = blk.idx1.shape
    inv_eps = 1.0 / out_b.epsilon[0]
    F = out_b.f * inv_eps  # (K, L0)
    G = out_b.g.masked_fill(blk.idx1 < 0, -math.inf)  # (K, L1): zero-weight padding, no mass

    def logits(c, rows):  # class c's rows (slice or local indices) -> (r, L1)
        return (G[c][None, :] - sqeuclidean(X[c, rows], Y[c])).mul_(inv_eps)

    def row_lse():
        lse = torch.empty(n0, dtype=X.dtype, device=X.device)
        for c, cnt in enumerate(blk.cnt0.tolist()):
            for sl in _row_chunks(cnt, L1):  # real rows come first in a block
                lse[blk.idx0[c, sl]] = torch.logsumexp(logits(c, sl), 1) + F[c, sl]
        return lse

    def partners(i, u):
        rows = torch.arange(n0, device=X.device) if i is None else i
        j = torch.empty_like(rows)
        cls = blk.cls0[rows]
        order = torch.argsort(cls, stable=True)
        counts = torch.bincount(cls, minlength=K).tolist()
        for c, sel in enumerate(torch.split(order, counts)):
            for sl in _row_chunks(sel.shape[0], L1):
                s = sel[sl]
                local = _row_partners(logits(c, blk.pos0[rows[s]]), u[s])
                j[s] = blk.idx1[c, local]
        return j

    return row_lse, partners


# ------------------------------------------------------------------------------ exact, per-class batches


def _exact_class_split(a, b, y0, y1):
    """Hard class constraint: every class solved as one problem of one batched assignment.

    Each class's points are gathered into a ``(K, L, L)`` batch (``L`` the largest class count on either
    side); padding rows/columns cost 0 among themselves and ``big`` against real points, so every block's
    real rows and columns are matched as far as the class counts allow (``min(n0_c, n1_c)`` pairs), at the
    optimal cost. Eager only (the shapes depend on the labels).
    """
    blk = _class_blocks(y0, y1, square=True)
    idx0, idx1, cnt0, cnt1 = blk.idx0, blk.idx1, blk.cnt0, blk.cnt1
    K, L = idx0.shape
    if K == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=a.device)
        return empty, empty
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
        C = C.masked_fill(differ, math.inf) if isinstance(w, float) and w == math.inf else C + w * differ
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
    if kind == "label" and isinstance(w, (int, float)) and w == math.inf:
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
