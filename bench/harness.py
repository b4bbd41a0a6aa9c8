"""Generic benchmark pieces shared by every op family.

- ``Config``: mode (quick/full), thread count, timing budgets.
- ``timed_call`` / ``Stats``: wall-clock timing with the GC off; median, quartiles, min, max.
- ``run_case``: the correctness gate (small instance, then the timed instance itself) followed by
  interleaved timing of every provider that passed, on the same inputs, in the same process.
- ``History``: per-series timings used to skip a provider whose next call would exceed the budget.
- ``machine_info``, ``write_csv``, ``plot_results``, ``print_table``: reporting.

Import this module only after ``bench.set_thread_env`` has run (``python -m bench`` does that).
"""

from __future__ import annotations

import csv
import datetime
import gc
import importlib.metadata
import math
import os
import platform
import statistics
import subprocess
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import THREAD_ENV_VARS

REPO_ROOT = Path(__file__).resolve().parent.parent

# Statuses of one (case, provider) row.
OK = "ok"
SKIPPED = "skipped"  # not run: too slow by estimate, or not applicable
UNAVAILABLE = "unavailable"  # not importable
MISMATCH = "mismatch"  # disagreed with the reference: not timed
ERROR = "error"  # raised


# --------------------------------------------------------------------------------------------------
# configuration and threads


@dataclass(frozen=True)
class Config:
    quick: bool
    threads: int
    out_dir: Path
    seed: int = 0
    target_s: float = 2.5  # timing time per (case, provider), warm-up excluded
    min_runs: int = 3  # at least this many timed calls where affordable
    max_runs: int = 100
    call_budget_s: float = 8.0  # skip a provider whose single call is estimated above this
    keep_warmup_s: float = 1.0  # a warm-up call at least this long also counts as a sample

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"

    @classmethod
    def make(cls, *, quick: bool, threads: int, out_dir: Path, seed: int = 0) -> Config:
        if quick:
            return cls(quick, threads, Path(out_dir), seed, target_s=0.4, max_runs=30, call_budget_s=4.0)
        return cls(quick, threads, Path(out_dir), seed)


def configure_threads(threads: int) -> None:
    """Size torch's intra-op pool (fastot reads ``torch.get_num_threads()``)."""
    import torch

    torch.set_num_threads(threads)


def thread_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {var: os.environ.get(var, "") for var in THREAD_ENV_VARS[:3]}
    info["torch_num_threads"] = torch.get_num_threads()
    return info


# --------------------------------------------------------------------------------------------------
# timing


def timed_call(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Call ``fn()`` once with the garbage collector off; return (result, seconds)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        out = fn()
        elapsed = time.perf_counter() - t0
    finally:
        if was_enabled:
            gc.enable()
    return out, elapsed


@dataclass
class Stats:
    samples_s: list[float]

    @property
    def runs(self) -> int:
        return len(self.samples_s)

    @property
    def median(self) -> float:
        return statistics.median(self.samples_s)

    @property
    def q1(self) -> float:
        return self._quartiles()[0]

    @property
    def q3(self) -> float:
        return self._quartiles()[2]

    @property
    def min(self) -> float:
        return min(self.samples_s)

    @property
    def max(self) -> float:
        return max(self.samples_s)

    def _quartiles(self) -> tuple[float, float, float]:
        s = self.samples_s
        if len(s) == 1:
            return s[0], s[0], s[0]
        q = statistics.quantiles(s, n=4, method="inclusive")
        return q[0], q[1], q[2]

    def as_ms(self) -> dict[str, float]:
        return {
            "median_ms": 1e3 * self.median,
            "q1_ms": 1e3 * self.q1,
            "q3_ms": 1e3 * self.q3,
            "iqr_ms": 1e3 * (self.q3 - self.q1),
            "min_ms": 1e3 * self.min,
            "max_ms": 1e3 * self.max,
        }


def plan_runs(first_s: float, config: Config) -> tuple[int, bool]:
    """From the warm-up time, decide (timed calls to make, whether the warm-up counts as a sample)."""
    keep = first_s >= config.keep_warmup_s
    wanted = max(1, min(config.max_runs, math.ceil(config.target_s / max(first_s, 1e-9))))
    if wanted < config.min_runs and first_s * config.min_runs <= 1.5 * config.target_s:
        wanted = config.min_runs
    return wanted - (1 if keep else 0), keep


# --------------------------------------------------------------------------------------------------
# cases, providers, history


@dataclass
class Provider:
    """One implementation under test.

    ``fn(inputs)`` is the timed call. ``post(raw)`` (untimed) turns its raw output into what the
    family's ``score`` expects. ``unavailable`` holds the reason when the package is missing.
    """

    name: str
    fn: Callable[[Any], Any] | None
    impl: str = ""
    post: Callable[[Any], Any] = lambda raw: raw
    unavailable: str | None = None
    budget_scale: float = 1.0  # skipped when its estimated call time exceeds budget_scale * budget


@dataclass
class Case:
    """One benchmark instance. ``make(small)`` builds the inputs (untimed) of the full or small size."""

    name: str
    params: dict[str, Any]
    make: Callable[[bool], Any]
    series: str | None = None  # cases of one series differ only by ``size`` (for extrapolation)
    size: float | None = None


@dataclass
class History:
    """Timings per (series, provider), to estimate the next, larger call before making it."""

    exponent: float = 3.0
    times: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=dict)
    skipped: dict[tuple[str, str], float] = field(default_factory=dict)

    def record(self, series: str | None, provider: str, size: float | None, seconds: float) -> None:
        if series is not None and size is not None:
            self.times.setdefault((series, provider), []).append((size, seconds))

    def mark_skipped(self, series: str | None, provider: str, size: float | None) -> None:
        if series is not None and size is not None:
            self.skipped.setdefault((series, provider), size)

    def why_skip(self, series: str | None, provider: str, size: float | None, budget_s: float) -> str | None:
        if series is None or size is None:
            return None
        key = (series, provider)
        if key in self.skipped and self.skipped[key] < size:
            return f"skipped at smaller size {self.skipped[key]:g} of this series"
        smaller = [(s, t) for s, t in self.times.get(key, []) if s < size]
        if not smaller:
            return None
        s0, t0 = max(smaller)
        est = t0 * (size / s0) ** self.exponent
        if est > budget_s:
            return (
                f"estimated {est:.1f} s per call (from {1e3 * t0:.0f} ms at size {s0:g}, "
                f"exponent {self.exponent:g}) > budget {budget_s:g} s"
            )
        return None


def _short_error(exc: BaseException) -> str:
    msg = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return msg[:200]


def _agrees(value: Any, ref: Any, rtol: float, atol: float) -> tuple[bool, float]:
    v = np.asarray(value, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if v.shape != r.shape or not np.all(np.isfinite(v)):
        return False, math.inf
    err = np.abs(v - r) / np.maximum(np.abs(r), atol / rtol if rtol > 0 else 1.0)
    worst = float(err.max()) if err.size else 0.0
    return worst <= rtol, worst


def run_case(
    case: Case,
    providers: Sequence[Provider],
    *,
    score: Callable[[Any, Any], Any],
    reference: Sequence[str],
    config: Config,
    history: History,
    rtol: float = 1e-9,
    atol: float = 1e-12,
    verbose: bool = True,
) -> list[dict[str, Any]]:
    """Gate, then time, every provider on ``case``; one row per provider.

    ``score(inputs, post(raw))`` gives the value compared to the reference (e.g. the assignment cost,
    scalar or per problem of a batch); it must raise on an invalid output (e.g. not a permutation).
    The reference is the first provider of ``reference`` that produced a value; if none did on the
    timed instance, the element-wise minimum of all values is used (no provider can beat an optimum).
    A provider that disagrees on the small instance or on the timed instance is not timed.
    """
    rows: dict[str, dict[str, Any]] = {}
    order = [p.name for p in providers]
    for p in providers:
        rows[p.name] = {
            "case": case.name,
            **case.params,
            "provider": p.name,
            "impl": p.impl,
            "status": UNAVAILABLE if p.unavailable else OK,
            "reason": p.unavailable or "",
        }
    live = [p for p in providers if not p.unavailable and p.fn is not None]

    def mark(p: Provider, status: str, reason: str) -> None:
        rows[p.name]["status"] = status
        rows[p.name]["reason"] = reason

    def gate(
        inputs: Any, stage: str, runners: list[Provider], first_times: dict[str, float]
    ) -> list[Provider]:
        values: dict[str, Any] = {}
        for p in runners:
            try:
                raw, t = timed_call(lambda p=p: p.fn(inputs))
                values[p.name] = score(inputs, p.post(raw))
                first_times[p.name] = t
            except Exception as exc:  # a failing peer must not stop the run
                mark(p, ERROR, f"{stage}: {_short_error(exc)}")
                if verbose:
                    traceback.print_exc(limit=2)
        ref_name = next((r for r in reference if r in values), None)
        if ref_name is not None:
            ref = values[ref_name]
            ref_source = ref_name
        elif values:
            ref = np.min(np.stack([np.asarray(v, dtype=np.float64) for v in values.values()]), axis=0)
            ref_source = "min-of-providers"
        else:
            return []
        passed = []
        for p in runners:
            if p.name not in values:
                continue
            ok, err = _agrees(values[p.name], ref, rtol, atol)
            if stage == "timed":
                rows[p.name]["ref"] = ref_source
                rows[p.name]["rel_err"] = err
                rows[p.name]["score"] = float(np.sum(values[p.name]))
            if ok:
                passed.append(p)
            else:
                mark(p, MISMATCH, f"{stage} instance: rel err {err:.2e} vs {ref_source} > {rtol:g}")
        return passed

    # 1. small instance of the same case
    small_passed = gate(case.make(True), "small", live, {})
    # 2. timed instance: skip too-slow providers by estimate, warm-up call doubles as the check
    inputs = case.make(False)
    runners = []
    for p in small_passed:
        why = history.why_skip(case.series, p.name, case.size, p.budget_scale * config.call_budget_s)
        if why:
            mark(p, SKIPPED, why)
            history.mark_skipped(case.series, p.name, case.size)
        else:
            runners.append(p)
    first: dict[str, float] = {}
    timed = gate(inputs, "timed", runners, first)
    # 3. interleaved timing: one call per provider per round, until each has its quota
    samples: dict[str, list[float]] = {}
    remaining: dict[str, int] = {}
    for p in timed:
        extra, keep = plan_runs(first[p.name], config)
        samples[p.name] = [first[p.name]] if keep else []
        remaining[p.name] = extra
        rows[p.name]["warmup_counted"] = keep
    while any(remaining.values()):
        for p in timed:
            if remaining[p.name] > 0:
                _, t = timed_call(lambda p=p: p.fn(inputs))
                samples[p.name].append(t)
                remaining[p.name] -= 1
    for p in timed:
        stats = Stats(samples[p.name])
        rows[p.name].update(stats.as_ms())
        rows[p.name]["runs"] = stats.runs
        history.record(case.series, p.name, case.size, stats.median)
    return [rows[name] for name in order]


def add_ratios(rows: list[dict[str, Any]], baseline: str) -> None:
    """ratio = provider median / baseline median, per case (> 1: the baseline is faster)."""
    base = {r["case"]: r["median_ms"] for r in rows if r["provider"] == baseline and r["status"] == OK}
    for r in rows:
        if r["status"] == OK and r["case"] in base:
            r["ratio_vs_" + baseline] = r["median_ms"] / base[r["case"]]


# --------------------------------------------------------------------------------------------------
# machine and versions


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _extension_mtime() -> str:
    try:
        import importlib.util

        spec = importlib.util.find_spec("fastot._C")
        if spec is None or not spec.origin:
            return ""
        mtime = os.path.getmtime(spec.origin)
    except (ImportError, OSError):
        return ""
    return datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).isoformat(timespec="seconds")


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
    }
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    if hasattr(os, "getloadavg"):  # other work on the machine: read the spread with this in mind
        info["loadavg_1m_start"] = round(os.getloadavg()[0], 2)
    info["os"] = platform.platform()
    info["python"] = platform.python_version()
    for dist in ("numpy", "scipy", "torch", "pot", "lapx", "matplotlib", "fastot"):
        info[dist] = _version(dist)
    commit = _git("rev-parse", "--short", "HEAD")
    if commit and _git("status", "--porcelain", "--", "fastot", "csrc"):
        commit += "+dirty"
    info["fastot_commit"] = commit
    info["fastot_ext_built"] = _extension_mtime()  # the binary may predate the commit (editable installs)
    info.update(thread_info())
    return info


# --------------------------------------------------------------------------------------------------
# reporting


def write_csv(rows: list[dict[str, Any]], path: Path, meta: dict[str, Any]) -> Path:
    """One line per (case, provider) row, with every ``meta`` column repeated on each line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    columns += [k for k in meta if k not in columns]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for r in rows:
            line = {**r, **meta}
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in line.items()})
    return path


def _fmt_ms(ms: float) -> str:
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def print_table(rows: list[dict[str, Any]], baseline: str, header: bool = True) -> None:
    ratio_key = "ratio_vs_" + baseline
    if header:
        print(
            f"{'case':<22} {'provider':<20} {'median ms':>10} {'IQR ms':>9} {'[min, max] ms':>19} "
            f"{'runs':>4} {f'x {baseline}':>9}  note"
        )
    for r in rows:
        if r["status"] == OK:
            spread = f"[{_fmt_ms(r['min_ms'])}, {_fmt_ms(r['max_ms'])}]" if r["runs"] > 1 else "-"
            iqr = _fmt_ms(r["iqr_ms"]) if r["runs"] > 1 else "-"
            ratio = f"{r[ratio_key]:.2f}" if ratio_key in r else "-"
            print(
                f"{r['case']:<22} {r['provider']:<20} {_fmt_ms(r['median_ms']):>10} "
                f"{iqr:>9} {spread:>19} {r['runs']:>4} {ratio:>9}"
            )
        else:
            print(f"{r['case']:<22} {r['provider']:<20} {r['status'].upper():>10}  {r['reason']}")


def plot_results(rows: list[dict[str, Any]], path: Path, baseline: str, title: str) -> Path | None:
    """Two log-scale grouped bar panels per case: median time, and provider/baseline ratio."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return None
    ok = [r for r in rows if r["status"] == OK]
    cases = list(dict.fromkeys(r["case"] for r in ok))
    providers = list(dict.fromkeys(r["provider"] for r in rows))
    if not cases:
        return None
    ratio_key = "ratio_vs_" + baseline
    width = 0.8 / max(1, len(providers))
    fig, axes = plt.subplots(2, 1, figsize=(min(24.0, max(8.0, 0.75 * len(cases) + 3)), 8), sharex=True)
    x = np.arange(len(cases))
    for k, prov in enumerate(providers):
        by_case = {r["case"]: r for r in ok if r["provider"] == prov}
        xs = [i for i, c in enumerate(cases) if c in by_case]
        if not xs:
            continue
        pos = x[xs] - 0.4 + (k + 0.5) * width
        med = np.array([by_case[cases[i]]["median_ms"] for i in xs])
        lo = med - np.array([by_case[cases[i]]["q1_ms"] for i in xs])
        hi = np.array([by_case[cases[i]]["q3_ms"] for i in xs]) - med
        color = f"C{k % 10}"  # same colour for a provider in both panels
        axes[0].bar(pos, med, width, yerr=[lo, hi], label=prov, capsize=2, color=color)
        rs = [(p, by_case[cases[i]].get(ratio_key)) for p, i in zip(pos, xs, strict=True)]
        rs = [(p, v) for p, v in rs if v is not None]
        if rs and prov != baseline:
            axes[1].bar([p for p, _ in rs], [v for _, v in rs], width, label=prov, color=color)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("median time [ms] (bars: IQR)")
    axes[0].set_title(title, fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(providers), 6), fontsize=8)
    axes[1].set_yscale("log")
    axes[1].axhline(1.0, color="k", lw=0.8)
    axes[1].set_ylabel(f"time / {baseline} time (>1: {baseline} faster)")
    axes[1].set_xticks(x)
    axes[1].set_xticklabels(cases, rotation=35, ha="right", fontsize=8)
    for ax in axes:
        ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def ok_row(rows: list[dict[str, Any]], case: str, provider: str) -> dict[str, Any] | None:
    """The row of ``provider`` on ``case`` if it was timed successfully, else ``None``."""
    r = next((r for r in rows if r["case"] == case and r["provider"] == provider), None)
    return r if r is not None and r["status"] == OK else None


def verdict(ratio: float, need: float) -> str:
    """PASS/FAIL of a target ratio; noise here is up to 30-45%, so a ratio within 1.5x of its threshold
    is also called "close"."""
    word = "PASS" if ratio >= need else "FAIL"
    return word + (" (close: within 1.5x of threshold)" if need / 1.5 < ratio < need * 1.5 else "")
