"""Coupling overhead per training step: fastot's drop-ins against torchcfm's and a C²OT-style sampler.

Every case draws a training batch of noise ``x0 ~ N(0, I)`` and data ``x1 ~ N(0, I)`` (``gauss``, the
instance of PEERS.md and the issue's targets) or ``x1 ~ 0.5 N(0, I) + 1`` (``shift``), float32 tensors of
``n`` samples and ``d`` features, and times one coupling call, as a training step makes it:

- ``exact``: ``fastot.compat.torchcfm.OTPlanSampler("exact").sample_plan(x0, x1)`` (baseline) against
  torchcfm's ``OTPlanSampler("exact").sample_plan`` (POT ``emd`` on ``cdist**2``).
- ``sinkhorn``: the same drop-in with torchcfm's parameters (``reg = 0.05`` on the raw cost: log-domain
  here, so it converges to a sharp plan instead of underflowing) against torchcfm's, plus
  ``fastot.couple(method="sinkhorn")`` with its scale-aware default temperature.
- ``c2ot``: conditional exact OT with 16-dimensional embeddings, cosine condition cost, ``w = 1``:
  ``fastot.compat.c2ot.OTConditionalPlanSampler`` (fused cost) against a C²OT-style sampler (the two
  matrices ``M = cdist**2``, ``C = 1 - cos`` in torch, ``M + w C``, scipy's ``linear_sum_assignment``).

Correctness gate (small instance, then the timed one): exact couplings are checked against certified
float64 duals ``u, v`` of the reference problem (fastot's ``solve_assignment`` in float64; the
certificate ``u_i + v_j <= C_ij``, equality on its pairs, primal = dual, is checked, so the reference does
not rest on fastot being right): every returned pair must have reduced cost ``C_ij - u_i - v_j`` at most
``1e-6`` of the cost scale (such pairs belong to an optimal plan). Entropic samplers are random: their
outputs are only checked for shape, and two quality columns are reported, untimed: ``pair_gap`` (mean
reduced cost of the returned pairs over the mean reduced cost of independent pairs: 0 = exact OT,
1 = random pairing, e.g. torchcfm's uniform fallback) and ``distinct_x0`` (fraction of distinct noise
samples among the returned pairs).

A second table compares the conditional cost matrix of C²OT's ImageNet-32 OT batch (n = 6400 noise and
data samples, d = 3072, 512-dimensional CLIP-like embeddings, cosine, w = 0.5): ``fastot.cost_matrix(x, y,
y0, y1, cond_weight=w, cond_cost="cosine")`` (fused: one product over d + e coordinates) against the
two-matrix formulation ``cdist(x, y)**2 + w * (1 - y0n @ y1n.T)``; time and peak resident memory above
the inputs, each measured in a fresh worker process (Linux ``VmHWM``).

A third table runs the whole conditional Sinkhorn coupling on that instance,
``fastot.couple(x, y, y0, y1, method="sinkhorn", cond_weight=w, cond_cost="cosine", mode=...)``, with
``mode="online"`` (the conditional cost computed tile by tile from augmented points, pairs drawn by row
blocks: no n x n matrix) against ``mode="dense"`` (the fused cost matrix), for 20 fixed Sinkhorn
iterations (``tol=None``, so both run the same work; the default epsilon; not converged, hence
``strict=False``): total time, time per Sinkhorn iteration (``(T(k) - T(2)) / (k - 2)``, k = 20 online,
k = 200 dense with medians of 3, so the iterations outweigh the noise of the rest: the cost scale, the
dense cost, the plan's value and the sampling pass) and peak resident memory above
the inputs (after a warm-up call at full size and ``malloc_trim``), each mode in a fresh worker.
Quick mode runs it at n = 2048. A small float64 instance first checks that both modes give the same
potentials.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
import zlib
from typing import Any

import numpy as np

from bench import harness
from bench.harness import Case, Config, Provider

BASELINE = "fastot"
# Issue targets: the OTPlanSampler drop-in, exact OT, vs torchcfm's, same process.
TARGETS = (("exact-n1024-d2", 5.0), ("exact-n1024-d3072", 3.0))
COND_DIM = 16
COND_WEIGHT = 1.0
BASELINE_BUDGET_SCALE = 4.0
GAP_TOL = 1e-6  # largest reduced cost of an accepted pair, relative to the largest cost


# --------------------------------------------------------------------------------------------------
# inputs and the float64 reference


class Inputs:
    """A training batch (torch float32) and the certified float64 duals of its exact problem."""

    def __init__(self, n: int, d: int, seed: int, conditional: bool, need_duals: bool, dist: str = "gauss"):
        import torch

        g = torch.Generator().manual_seed(seed)
        self.x0 = torch.randn(n, d, generator=g)
        self.x1 = torch.randn(n, d, generator=g)
        if dist == "shift":
            self.x1 = 0.5 * self.x1 + 1.0
        self.y0 = self.y1 = None
        if conditional:
            self.y1 = torch.randn(n, COND_DIM, generator=g)
            self.y0 = self.y1 + 0.5 * torch.randn(n, COND_DIM, generator=g)
        self.n, self.d = n, d
        self._keys0 = {self._key(r): k for k, r in enumerate(self.x0.numpy())}
        self._keys1 = {self._key(r): k for k, r in enumerate(self.x1.numpy())}
        self.C64 = self._cost64()
        self.u = self.v = None
        if need_duals:
            self._certify()
        # reduced cost of independent pairs (i, i): the scale of "random pairing" for pair_gap
        self.indep_gap = None

    @staticmethod
    def _key(row: np.ndarray) -> tuple[float, ...]:
        return tuple(np.asarray(row[:2], dtype=np.float64).tolist())

    def _cost64(self) -> np.ndarray:
        from scipy.spatial.distance import cdist

        M = cdist(self.x0.double().numpy(), self.x1.double().numpy(), "sqeuclidean")
        if self.y0 is not None:
            M = M + COND_WEIGHT * cdist(self.y0.double().numpy(), self.y1.double().numpy(), "cosine")
        return M

    def _certify(self) -> None:
        import fastot

        out = fastot.solve_assignment(self.C64)
        u, v = np.asarray(out.u), np.asarray(out.v)
        scale = float(np.abs(self.C64).max())
        slack = self.C64 - u[:, None] - v[None, :]
        tol = 1e-9 * scale * self.n
        if slack.min() < -tol or abs(float(out.value) - float(u.sum() + v.sum())) > tol:
            raise RuntimeError("reference duals do not certify optimality")
        self.u, self.v, self.scale = u, v, scale

    def indices(self, a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
        """Row indices in x0, x1 of the returned samples ``a``, ``b`` (float32 rows, matched by value)."""
        A, B = np.asarray(a.detach().cpu()), np.asarray(b.detach().cpu())
        i = np.array([self._keys0[self._key(r)] for r in A], dtype=np.int64)
        j = np.array([self._keys1[self._key(r)] for r in B], dtype=np.int64)
        return i, j

    def reduced(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return self.C64[i, j] - self.u[i] - self.v[j]


def make_case(kind: str, n: int, d: int, seed: int, dist: str = "gauss") -> Case:
    name = f"{kind}-n{n}-d{d}" + ("" if dist == "gauss" else f"-{dist}")
    base = seed + zlib.crc32(name.encode())
    conditional = kind == "c2ot"

    def make(small: bool) -> Inputs:
        return Inputs(32 if small else n, d, base + int(small), conditional, need_duals=True, dist=dist)

    params = {"kind": kind, "n": n, "d": d, "dist": dist}
    return Case(name, params, make, series=f"{kind}-d{d}-{dist}", size=float(n))


def cases(quick: bool, seed: int) -> list[Case]:
    """``gauss``: x0, x1 ~ N(0, I) (the instance of PEERS.md and of the issue's targets); ``shift``:
    x1 ~ 0.5 N(0, I) + 1 (data away from the noise, harder for Jonker-Volgenant-type solvers)."""
    if quick:  # the target cases, a shifted one, one entropic case (d = 3072: torchcfm falls back), C²OT
        plan = [
            ("exact", (2, 3072), (128, 1024), "gauss"),
            ("exact", (2,), (1024,), "shift"),
            ("sinkhorn", (3072,), (1024,), "gauss"),
            ("c2ot", (2, 3072), (1024,), "gauss"),
        ]
    else:
        plan = [(k, (2, 3072), (128, 256, 1024), "gauss") for k in ("exact", "sinkhorn", "c2ot")]
        plan.append(("exact", (2, 3072), (128, 256, 1024), "shift"))
    return [make_case(kind, n, d, seed, dist) for kind, ds, ns, dist in plan for d in ds for n in ns]


# --------------------------------------------------------------------------------------------------
# providers: fn(inputs) is timed and returns (x0', x1'); score checks and scores it


def exact_score(inputs: Inputs, out: Any) -> float:
    """Largest reduced cost of the returned pairs over the cost scale (0 for optimal pairs)."""
    i, j = inputs.indices(out[0], out[1])
    if len(i) != inputs.n:
        raise ValueError(f"returned {len(i)} pairs, expected {inputs.n}")
    gap = float(np.max(inputs.reduced(i, j)) / inputs.scale)
    if gap > GAP_TOL:
        raise ValueError(f"a returned pair has reduced cost {gap:.2e} x the cost scale: not an optimal pair")
    return gap


def shape_score(inputs: Inputs, out: Any) -> float:
    if out[0].shape != inputs.x0.shape or out[1].shape != inputs.x1.shape:
        raise ValueError(f"returned shapes {tuple(out[0].shape)}, {tuple(out[1].shape)}")
    return 0.0


def _torchcfm_sampler(method: str) -> Any:
    from torchcfm.optimal_transport import OTPlanSampler

    return OTPlanSampler(method=method)


def providers(kind: str) -> list[Provider]:
    out: list[Provider] = []
    if kind in ("exact", "sinkhorn"):
        from fastot.compat.torchcfm import OTPlanSampler

        ours = OTPlanSampler(kind)
        out.append(
            Provider(
                BASELINE,
                lambda inp: ours.sample_plan(inp.x0, inp.x1),
                impl=f'fastot.compat.torchcfm.OTPlanSampler("{kind}").sample_plan',
                budget_scale=BASELINE_BUDGET_SCALE,
            )
        )
        if kind == "sinkhorn":
            import fastot

            def scale_aware(inp: Inputs) -> Any:
                i, j = fastot.couple(inp.x0, inp.x1, method="sinkhorn")
                return inp.x0[i], inp.x1[j]

            out.append(
                Provider(
                    "fastot.couple",
                    scale_aware,
                    impl='fastot.couple(method="sinkhorn") (epsilon = 0.1 x cost scale)',
                    budget_scale=BASELINE_BUDGET_SCALE,
                )
            )
        try:
            theirs = _torchcfm_sampler(kind)
            out.append(
                Provider(
                    "torchcfm",
                    lambda inp: theirs.sample_plan(inp.x0, inp.x1),
                    impl=f'torchcfm.optimal_transport.OTPlanSampler("{kind}").sample_plan',
                    budget_scale=BASELINE_BUDGET_SCALE,  # the target's comparison: do not skip it
                )
            )
        except ImportError as exc:
            out.append(Provider("torchcfm", None, unavailable=f"not importable: {exc}"))
        return out

    from fastot.compat.c2ot import OTConditionalPlanSampler

    ours_c = OTConditionalPlanSampler(condition_weight=COND_WEIGHT, condition_norm="cosine")
    out.append(
        Provider(
            BASELINE,
            lambda inp: ours_c.sample_plan_with_labels(inp.x0, inp.x1, inp.y0, inp.y1)[:2],
            impl="fastot.compat.c2ot.OTConditionalPlanSampler(w=1, cosine) (fused M + wC)",
            budget_scale=BASELINE_BUDGET_SCALE,
        )
    )
    try:
        import torch
        from scipy.optimize import linear_sum_assignment

        def c2ot_style(inp: Inputs) -> Any:
            M = torch.cdist(inp.x0, inp.x1) ** 2
            y0 = inp.y0 / inp.y0.norm(dim=-1, keepdim=True)
            y1 = inp.y1 / inp.y1.norm(dim=-1, keepdim=True)
            C = 1 - y0 @ y1.T
            i, j = linear_sum_assignment((M + COND_WEIGHT * C).numpy())
            return inp.x0[i], inp.x1[j]

        out.append(
            Provider(
                "c2ot-style",
                c2ot_style,
                impl="torch cdist**2 + w * (1 - cos), scipy linear_sum_assignment (C²OT's sampler)",
            )
        )
    except ImportError as exc:
        out.append(Provider("c2ot-style", None, unavailable=f"not importable: {exc}"))
    return out


def quality(inputs: Inputs, prov: Provider, row: dict[str, Any]) -> None:
    """Untimed: pair_gap and distinct_x0 of one more call (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = prov.fn(inputs)
    i, j = inputs.indices(a, b)
    idx = np.arange(inputs.n)
    indep = float(np.mean(inputs.reduced(idx, idx)))
    row["pair_gap"] = float(np.mean(inputs.reduced(i, j))) / indep if indep > 0 else float("nan")
    row["distinct_x0"] = len(set(i.tolist())) / inputs.n


# --------------------------------------------------------------------------------------------------
# fused conditional cost vs two matrices (worker processes)

MEM_N, MEM_D, MEM_E, MEM_W = 6400, 3072, 512, 0.5


def _proc_status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(val.split()[0]) * 1024
    return out


def _mem_instance(n: int):
    """The conditional-cost instance: ``x (n, d)`` noise, ``y (n, d)`` data, ``y0``, ``y1`` ``(n, e)``
    embeddings, float32 (d = MEM_D, e = MEM_E)."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, MEM_D, generator=g)
    y = 0.5 * torch.randn(n, MEM_D, generator=g) + 1.0
    return x, y, torch.randn(n, MEM_E, generator=g), torch.randn(n, MEM_E, generator=g)


def _mem_worker(variant: str, n: int, repeats: int, threads: int) -> None:
    """Runs in a fresh process: times ``variant`` and reads its peak resident memory; prints JSON."""
    import torch

    torch.set_num_threads(threads)
    import fastot

    x, y, y0, y1 = _mem_instance(n)

    def fused(x, y, y0, y1):
        return fastot.cost_matrix(x, y, y0, y1, cond_weight=MEM_W, cond_cost="cosine")

    def two_matrix(x, y, y0, y1):
        M = torch.cdist(x, y) ** 2
        C = 1 - (y0 / y0.norm(dim=-1, keepdim=True)) @ (y1 / y1.norm(dim=-1, keepdim=True)).T
        return M + MEM_W * C

    fn = fused if variant == "fused" else two_matrix
    small = [t[:64] for t in (x, y, y0, y1)]
    ref = two_matrix(*(t.double() for t in small))
    err = float((fn(*small).double() - ref).abs().max() / ref.abs().max())
    times, peak_mb = [], 0.0
    for _ in range(repeats):
        rss0 = _proc_status()["VmRSS"]
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident set
        t0 = time.perf_counter()
        out = fn(x, y, y0, y1)
        times.append(time.perf_counter() - t0)
        peak_mb = max(peak_mb, (_proc_status()["VmHWM"] - rss0) / 2**20)
        del out
    print(json.dumps({"times_s": times, "peak_mb": peak_mb, "rel_err_small": err}))


CSK_ITERS, CSK_N_QUICK = 20, 2048  # conditional Sinkhorn coupling: fixed iterations; quick-mode n


def _coupling_worker(mode: str, n: int, iters: int, threads: int) -> None:
    """Runs in a fresh process: the conditional Sinkhorn coupling (``mode`` online or dense) on the
    instance of :func:`_mem_worker`; prints JSON with its time, time per iteration and peak memory."""
    import torch

    torch.set_num_threads(threads)
    import fastot

    x, y, y0, y1 = _mem_instance(n)
    opts = {"method": "sinkhorn", "cond_weight": MEM_W, "cond_cost": "cosine", "tol": None, "strict": False}

    def run(k: int, *tensors: Any, mode: str = mode) -> tuple[float, Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # 20 fixed iterations: "did not converge"
            t0 = time.perf_counter()
            out = fastot.coupling.solve_coupling(
                *tensors, mode=mode, max_iter=k, generator=torch.Generator().manual_seed(1), **opts
            )
            return time.perf_counter() - t0, out

    # correctness gate: the same potentials as the dense path on a small float64 instance
    small = [t[:64].double() for t in (x, y, y0, y1)]
    ref = run(iters, *small, mode="dense")[1].sinkhorn
    got = run(iters, *small)[1].sinkhorn
    shift = (ref.f - got.f).mean()  # balanced potentials: up to (f + c, g - c)
    err = float(torch.maximum((got.f + shift - ref.f).abs().max(), (got.g - shift - ref.g).abs().max()))
    err /= float(ref.f.abs().max())

    run(2, x, y, y0, y1)  # warm-up at full size (one-time allocations: thread pools, allocator arenas)
    try:  # hand the warm-up's freed heap back to the OS: the baseline is then the live memory
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    rss0 = _proc_status()["VmRSS"]
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    total, out = run(iters, x, y, y0, y1)
    peak_mb = (_proc_status()["VmHWM"] - rss0) / 2**20
    assert int(out.sinkhorn.n_iter) == iters
    # Time per iteration: (T(long) - T(2)) / (long - 2), medians. The iterations of the difference must
    # outweigh the noise of the rest (the cost product alone takes ~1 s at n = 6400, d = 3584): a dense
    # iteration takes ~10 ms there, so dense runs 10x more iterations, 3 times each.
    long, reps = (iters, 1) if mode == "online" else (10 * iters, 3)
    t_long = statistics.median(run(long, x, y, y0, y1)[0] for _ in range(reps))
    t_short = statistics.median(run(2, x, y, y0, y1)[0] for _ in range(reps))
    print(
        json.dumps(
            {
                "total_s": total,
                "per_iter_s": (t_long - t_short) / (long - 2),
                "peak_mb": peak_mb,
                "rel_err": err,
            }
        )
    )


def _worker_row(row: dict[str, Any], args: list[str], out_mb: float, fill) -> dict[str, Any]:
    """Runs ``python -m bench.coupling ARGS`` in a fresh process (its peak memory is its own) and fills
    ``row`` from the JSON it prints last: ``fill(data)`` returns ``times_s`` (a list), ``peak_mb`` and
    any other columns (it may raise ``ValueError`` to refuse the result)."""
    cmd = [sys.executable, "-m", "bench.coupling", *args]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True, env=os.environ)
        cols = fill(json.loads(res.stdout.strip().splitlines()[-1]))
        stats = harness.Stats(cols.pop("times_s"))
        row.update(stats.as_ms())
        row.update(
            status=harness.OK, reason="", runs=stats.runs, peak_over_nm=cols["peak_mb"] / out_mb, **cols
        )
    except (subprocess.SubprocessError, OSError, ValueError, KeyError) as exc:
        row.update(status=harness.ERROR, reason=str(exc)[:200])
    return row


def run_coupling_memory_cases(config: Config) -> list[dict[str, Any]]:
    n = CSK_N_QUICK if config.quick else MEM_N
    out_mb = n * n * 4 / 2**20
    rows = []
    for mode in ("online", "dense"):
        row: dict[str, Any] = {
            "case": f"condsinkhorn-n{n}-d{MEM_D}-e{MEM_E}-it{CSK_ITERS}",
            "kind": "condsinkhorn",
            "n": n,
            "d": MEM_D,
            "provider": BASELINE if mode == "online" else "fastot-dense",
            "impl": (
                f'fastot.couple(x, y, y0, y1, method="sinkhorn", cond_weight=w, cond_cost="cosine", '
                f'mode="{mode}"), {CSK_ITERS} fixed iterations (tol=None)'
            ),
        }
        args = ["--coupling-worker", mode, str(n), str(CSK_ITERS), str(config.threads)]

        def fill(data: dict[str, Any]) -> dict[str, Any]:
            if not data["rel_err"] < 1e-6:
                raise ValueError(
                    f"potentials differ from the dense path's by {data['rel_err']:.1e} (small n)"
                )
            return {"times_s": [data["total_s"]], "per_iter_ms": 1e3 * data["per_iter_s"],
                    "peak_mb": data["peak_mb"], "rel_err": data["rel_err"]}  # fmt: skip

        rows.append(_worker_row(row, args, out_mb, fill))
    harness.add_ratios(rows, BASELINE)
    return rows


def run_memory_cases(config: Config, meta: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    repeats = 1 if config.quick else 3
    out_mb = MEM_N * MEM_N * 4 / 2**20
    for variant, impl in (
        ("fused", 'fastot.cost_matrix(x, y, y0, y1, cond_weight=w, cond_cost="cosine")'),
        ("two-matrix", "torch.cdist(x, y)**2 + w * (1 - y0n @ y1n.T) (C²OT)"),
    ):
        row: dict[str, Any] = {
            "case": f"condcost-n{MEM_N}-d{MEM_D}-e{MEM_E}",
            "kind": "condcost",
            "n": MEM_N,
            "d": MEM_D,
            "provider": "fastot" if variant == "fused" else "two-matrix",
            "impl": impl,
        }
        args = ["--mem-worker", variant, str(MEM_N), str(repeats), str(config.threads)]

        def fill(data: dict[str, Any]) -> dict[str, Any]:
            return {"times_s": data["times_s"], "peak_mb": data["peak_mb"], "rel_err": data["rel_err_small"]}

        rows.append(_worker_row(row, args, out_mb, fill))
    harness.add_ratios(rows, BASELINE)
    return rows


# --------------------------------------------------------------------------------------------------
# driver


def check_targets(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for case, need in TARGETS:
        base, peer = harness.ok_row(rows, case, BASELINE), harness.ok_row(rows, case, "torchcfm")
        if base is None or peer is None:
            lines.append(f"  {case:<20} drop-in >= {need:g}x torchcfm: N/A (not timed)")
            continue
        ratio = peer["median_ms"] / base["median_ms"]
        lines.append(
            f"  {case:<20} drop-in >= {need:g}x torchcfm: torchcfm / fastot = {ratio:5.2f}: "
            f"{harness.verdict(ratio, need)}"
        )
    return lines


def run(config: Config) -> int:
    start = time.perf_counter()
    meta = {"family": "coupling", "mode": config.mode, "dtype": "float32", **harness.machine_info()}
    try:
        meta["torchcfm"] = importlib.metadata.version("torchcfm")
    except importlib.metadata.PackageNotFoundError:
        meta["torchcfm"] = ""
    print(f"== coupling ({config.mode}) ==")
    print("  " + ", ".join(f"{k}={v}" for k, v in meta.items() if k not in ("family", "mode")))
    print("  ratio column = provider median / fastot median (> 1: fastot faster); noise up to 30-45%\n")
    history = harness.History(
        exponent=2.0
    )  # cost product ~ n^2 d, JV ~ n^2 to n^3: torchcfm at n = 1024 ~ 0.5 s
    rows: list[dict[str, Any]] = []
    first = True
    for case in cases(config.quick, config.seed):
        kind = case.params["kind"]
        provs = providers(kind)
        score = shape_score if kind == "sinkhorn" else exact_score
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchcfm's fallback warning; quality columns report it
            case_rows = harness.run_case(
                case, provs, score=score, reference=(), config=config, history=history, rtol=1.0, atol=1e-6
            )
        if kind == "sinkhorn":
            inputs = case.make(False)
            for p in provs:
                row = next(r for r in case_rows if r["provider"] == p.name)
                if row["status"] == harness.OK:
                    quality(inputs, p, row)
        harness.add_ratios(case_rows, BASELINE)
        harness.print_table(case_rows, BASELINE, header=first)
        for r in case_rows:
            if "pair_gap" in r:
                print(
                    f"{'':<22} {r['provider']:<20} pair_gap {r['pair_gap']:.3f}  "
                    f"distinct_x0 {r['distinct_x0']:.2f}"
                )
        first = False
        rows += case_rows

    print("\n== conditional cost matrix: fused vs two matrices (fresh worker per variant) ==")
    mem_rows = run_memory_cases(config, meta)
    for r in mem_rows:
        if r["status"] == harness.OK:
            ratio = r.get("ratio_vs_" + BASELINE, float("nan"))
            print(
                f"  {r['provider']:<11} median {r['median_ms']:8.0f} ms  peak +{r['peak_mb']:7.0f} MiB "
                f"({r['peak_over_nm']:.2f} x n*n float32)  time x fastot {ratio:.2f}  "
                f"rel err {r['rel_err']:.1e}"
            )
        else:
            print(f"  {r['provider']:<11} {r['status'].upper()}: {r['reason']}")
    rows += mem_rows

    print(
        f"\n== conditional Sinkhorn coupling: online vs dense ({CSK_ITERS} fixed iterations, tol=None; "
        "fresh worker per mode) =="
    )
    csk_rows = run_coupling_memory_cases(config)
    for r in csk_rows:
        if r["status"] == harness.OK:
            label = "online" if r["provider"] == BASELINE else "dense"
            print(
                f"  {label:<7} n={r['n']}  total {r['median_ms']:7.0f} ms  "
                f"per iteration {r['per_iter_ms']:6.0f} ms  peak +{r['peak_mb']:6.0f} MiB "
                f"({r['peak_over_nm']:.2f} x n*n float32)  rel err (n=64, f64) {r['rel_err']:.1e}"
            )
        else:
            print(f"  {r['provider']:<11} {r['status'].upper()}: {r['reason']}")
    rows += csk_rows

    if hasattr(os, "getloadavg"):
        meta["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    stem = f"coupling_{config.mode}"
    csv_path = harness.write_csv(rows, config.out_dir / f"{stem}.csv", meta)
    title = (
        f"fastot coupling overhead per step ({config.mode}, float32, {config.threads} threads) — "
        f"{meta['cpu']}, commit {meta['fastot_commit']}"
    )
    png_path = harness.plot_results(rows, config.out_dir / f"{stem}.png", BASELINE, title)
    print("\n== issue targets (median vs median) ==")
    for line in check_targets(rows):
        print(line)
    bad = [r for r in rows if r["status"] in (harness.MISMATCH, harness.ERROR)]
    for r in bad:
        print(f"  WARNING {r['case']} {r['provider']}: {r['status']} — {r['reason']}")
    print(f"\nwrote {csv_path}" + (f" and {png_path}" if png_path else ""))
    print(f"coupling wall time: {time.perf_counter() - start:.1f} s")
    return 1 if any(r["provider"] == BASELINE for r in bad) else 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--mem-worker":
        _mem_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif len(sys.argv) == 6 and sys.argv[1] == "--coupling-worker":
        _coupling_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        raise SystemExit("run the benchmarks with: python -m bench --only coupling")
