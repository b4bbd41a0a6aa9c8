"""GPU check of fastot's kernels: correctness against float64 references, then Sinkhorn and assignment timing.

    python bench/gpu_check.py OUT_DIR [--quick] [--cpu-smoke] [--no-checks] [--no-timing]
                              [--timing {all,sinkhorn,assignment}] [--budget-s S]

On a CUDA machine (DESIGN.md §6), in one process, under 5 minutes:

1. checks every Triton kernel of ``fastot._triton`` (``lse_dense`` both directions, ``lse_sqeuclidean``
   both directions, ``apply_sqeuclidean``) on CUDA tensors against float64 CPU references: float32 and
   float64, bfloat16/float16 inputs (error at most 2x a naive same-dtype torch computation), tf32 options,
   d from 1 to 3072, shapes off the block sizes, ``+inf`` costs, ``-inf`` weights, split reductions;
   ``fastot.sinkhorn`` (dense and online) on CUDA tensors against the float64 CPU solve; and
   ``fastot.linear_sum_assignment`` on CUDA tensors against scipy's optimal cost; the Triton
   assignment kernels (``fastot._triton.assignment.solve_lsa``: register-block and chunked kernels,
   float32/float64, integer ties) against scipy's optimal value, with their dual certificates, and
   their infeasible / invalid statuses;
2. times one log-domain Sinkhorn iteration (both c-transforms) at n = m up to 16384, d in {64, 3072},
   float32: fastot online (``lse_sqeuclidean``, ieee / tf32 / tf32x3 products), fastot on a
   materialised cost (``lse_dense``), plain PyTorch (``torch.logsumexp`` on the materialised cost), and
   flash-sinkhorn when importable; each provider's first iteration is checked against a float64 one
   before it is timed. The bound is the time of one dense float32 read + write of the n x m matrix
   (a copy); ``x_bound`` = time per iteration / bound; ``rel`` = time / best fastot online time;
3. times exact assignment of float32 squared-Euclidean costs from Gaussian point clouds (d in
   {64, 3072}) for B x n in {1x4096, 256x256, 1x1024, 64x64, 16x1024, 1x8192}: fastot on the device
   (the op, float64 solve, and the float32 kernel), fastot's CPU solver, scipy (all but 1 x 8192;
   its first call gives the reference optimum) and torch-linear-assignment when importable
   (n <= 1024); cost construction is timed on its own row; every solver's answer is checked against
   the optimum before it is timed; the table ends with issue 4's targets (n = 4096 in 10 ms and 50x
   scipy, 256 x 256 in 5 ms, never slower than fastot's CPU solver). ``--timing assignment`` runs
   only this timing section;
4. prints a short table last and writes ``gpu_check.csv`` and ``gpu_check.json`` (device, versions,
   commit, every row with its full error text) into OUT_DIR.

Every failure is caught and reported in its row (status ``FAIL``: outside tolerance; ``ERROR``: raised).
Exit status: 0 when every fastot row passed (peers' failures do not count), 1 otherwise; 0 with a
message when there is no CUDA device. ``--cpu-smoke`` runs the same code paths on CPU tensors in
Triton's interpreter (``TRITON_INTERPRET=1``) at tiny sizes, to test this script without a GPU.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
FIELDS = [
    "section",
    "case",
    "provider",
    "status",
    "ms_per_iter",
    "bound_ms",
    "x_bound",
    "rel",
    "max_err",
    "tol",
    "detail",
]
OK, FAIL, ERROR, SKIPPED, UNAVAILABLE = "ok", "FAIL", "ERROR", "skipped", "unavailable"


@dataclass
class Row:
    section: str  # "setup", "check" or "time"
    case: str
    provider: str
    status: str
    ms_per_iter: float | None = None
    bound_ms: float | None = None
    x_bound: float | None = None
    rel: float | None = None
    max_err: float | None = None
    tol: float | None = None
    detail: str = ""
    ours: bool = True  # a fastot row (counts for the exit status)
    trace: str = ""  # full traceback of an ERROR (JSON only)


class Report:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        err = f" err={row.max_err:.3g} tol={row.tol:.3g}" if row.max_err is not None and row.tol else ""
        ms = f" {row.ms_per_iter:.4g} ms/iter" if row.ms_per_iter is not None else ""
        print(f"[{row.section}] {row.case} | {row.provider}: {row.status}{ms}{err} {row.detail}", flush=True)
        return row

    def error(self, section: str, case: str, provider: str, exc: BaseException, ours: bool = True) -> Row:
        return self.add(
            Row(
                section, case, provider, ERROR, detail=_describe(exc), ours=ours, trace=traceback.format_exc()
            )
        )

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.ours and r.status in (FAIL, ERROR)]


def _describe(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    if len(lines) > 1:
        text += f" ... {lines[-1]}"
    return text[:300]


# --------------------------------------------------------------------------------------------------
# environment


def import_fastot(report: Report):
    """(fastot or None, the softmin kernel module): the installed fastot, else this checkout's; if the
    package cannot be imported (e.g. the C++ extension is not built), the kernel file on its own."""
    errors = []
    for attempt in ("installed", "checkout"):
        if attempt == "checkout":
            for name in [k for k in sys.modules if k == "fastot" or k.startswith("fastot.")]:
                del sys.modules[name]
            sys.path.insert(0, str(REPO_ROOT))
        try:
            fastot = importlib.import_module("fastot")
            softmin = importlib.import_module("fastot._triton.softmin")
            return fastot, softmin
        except Exception as exc:
            errors.append(f"{attempt}: {_describe(exc)}")
    report.add(Row("setup", "import fastot", "fastot", ERROR, detail="; ".join(errors)))
    path = REPO_ROOT / "fastot" / "_triton" / "softmin.py"
    spec = importlib.util.spec_from_file_location("_fastot_triton_softmin", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return None, module


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except Exception:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip()
    except Exception:
        return None


def metadata(torch, dev, fastot, args) -> dict[str, Any]:
    import triton

    meta: dict[str, Any] = {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": "cpu-smoke" if args.cpu_smoke else ("quick" if args.quick else "full"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "scipy": _version("scipy"),
        "flash_sinkhorn": _version("flash-sinkhorn") or _version("flash_sinkhorn"),
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "fastot_file": getattr(fastot, "__file__", None),
        "triton_interpret": os.environ.get("TRITON_INTERPRET", ""),
    }
    if dev.type == "cuda":
        prop = torch.cuda.get_device_properties(dev)
        meta.update(
            device=torch.cuda.get_device_name(dev),
            capability=".".join(map(str, torch.cuda.get_device_capability(dev))),
            sm_count=prop.multi_processor_count,
            memory_gib=round(prop.total_memory / 2**30, 1),
        )
    else:
        meta.update(device=f"cpu ({platform.processor() or platform.machine()}), Triton interpreter")
    return meta


# --------------------------------------------------------------------------------------------------
# references (float64, CPU) and inputs


def sqdist64(torch, x, y):
    """float64 squared distances on the CPU (expansion in float64: no cancellation that matters)."""
    x, y = x.detach().cpu().double(), y.detach().cpu().double()
    x2, y2 = (x * x).sum(-1), (y * y).sum(-1)
    return (x2[:, :, None] + y2[:, None, :] - 2 * (x @ y.transpose(1, 2))).clamp_min_(0)


def lse64(torch, C, h, s, transpose=False):
    C, h, s = C.cpu().double(), h.cpu().double(), s.cpu().double()
    if transpose:
        return torch.logsumexp(h[:, :, None] - s[:, None, None] * C, dim=1)
    return torch.logsumexp(h[:, None, :] - s[:, None, None] * C, dim=2)


def max_err(torch, out, ref) -> float:
    """Largest absolute error over finite entries; inf if the non-finite patterns differ."""
    out = out.detach().cpu().double()
    if out.shape != ref.shape:
        raise ValueError(f"shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    if bool(torch.isnan(out).any()):
        return math.inf
    fin = torch.isfinite(ref)
    if not torch.equal(fin, torch.isfinite(out)) or not torch.equal(out[~fin], ref[~fin]):
        return math.inf
    return float((out[fin] - ref[fin]).abs().max()) if bool(fin.any()) else 0.0


# --------------------------------------------------------------------------------------------------
# section 1: correctness checks


def run_checks(torch, sm, fastot, dev, report: Report, smoke: bool, quick: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    if smoke:
        small, big, d_big, splits_big = (2, 19, 23), (1, 37, 41), 70, 2
    else:
        small, big, d_big, splits_big = (3, 257, 131), (1, 4097, 2049), 3072, None
    f32, f64 = torch.float32, torch.float64
    low = (torch.bfloat16,) if quick else (torch.bfloat16, torch.float16)
    # Each (dtype, d tiling, precision, size divisibility) is a separate Triton compilation, times the
    # autotuning configs: the lists below cover every kernel path once without compiling everything.

    def rand_h(B, k):
        h = 2 * torch.randn(B, k, generator=gen, dtype=f64) - math.log(k)
        h[torch.rand(B, k, generator=gen) < 0.1] = -math.inf
        return h

    def scale(B, d=1):
        return (0.5 + 3.5 * torch.rand(B, generator=gen, dtype=f64)) / d

    def judge(case, provider, out, ref, tol, naive=None):
        """A given absolute tolerance, or for low precision 2x the error of a naive same-dtype run."""
        err = max_err(torch, out, ref)
        detail = ""
        if naive is not None:
            tol = 2 * max_err(torch, naive, ref)
            detail = f"2x naive same-dtype error ({tol / 2:.3g})"
        status = OK if err <= tol else FAIL
        report.add(Row("check", case, provider, status, max_err=err, tol=tol, detail=detail))

    # ---- lse_dense
    dense_cases = [(dt, tr, small) for dt in (f32, f64, torch.bfloat16) for tr in (False, True)]
    dense_cases += [(f32, tr, big) for tr in (False, True)]
    for dtype, transpose, (B, n, m) in dense_cases:
        case = f"lse_dense {'cols' if transpose else 'rows'} {str(dtype)[6:]} B={B} n={n} m={m}"

        def dense_check(dtype=dtype, transpose=transpose, B=B, n=n, m=m, case=case):
            C = 4 * torch.rand(B, n, m, generator=gen, dtype=f64)
            C[torch.rand(B, n, m, generator=gen) < 0.1] = math.inf
            C[:, 1, :] = math.inf  # an all-forbidden row
            h, s = rand_h(B, n if transpose else m), scale(B)
            Cl, hl, sl = C.to(dtype), h.to(dtype), s.to(dtype)
            ref = lse64(torch, Cl, hl, sl, transpose)
            Cd, hd, sd = Cl.to(dev), hl.to(dev), sl.to(dev)
            out = sm.lse_dense(Cd, hd, sd, transpose, splits=splits_big if n == big[1] else None)
            naive = None
            if dtype in (torch.bfloat16, torch.float16):
                z = (
                    hd[:, :, None] - sd[:, None, None] * Cd
                    if transpose
                    else hd[:, None] - sd[:, None, None] * Cd
                )
                naive = torch.logsumexp(z, dim=1 if transpose else 2)
            mag = float(4 * s.max() + h[torch.isfinite(h)].abs().max())
            judge(case, "fastot lse_dense", out, ref, (1e-11 if dtype == f64 else 1e-5) * (1 + mag), naive)

        _guarded_check(torch, dev, report, case, "fastot lse_dense", dense_check)

    # ---- lse_sqeuclidean (cols = the same kernel with x and y swapped)
    sq_cases = [(f32, "ieee", d, small) for d in (1, 64, 200)]
    sq_cases += [(f64, "ieee", d, small) for d in (3, 200)]
    sq_cases += [(f32, p, 64, small) for p in (("tf32",) if quick else ("tf32", "tf32x3"))]
    sq_cases += [(dt, "ieee", 64, small) for dt in low]
    sq_cases += [(f32, "ieee", 64, big), (f32, "ieee", d_big, (1, big[1] // 4 + 1, big[2] // 4 + 1))]
    for dtype, prec, d, (B, n, m) in sq_cases:
        for direction in ("rows", "cols"):
            case = f"lse_sqeuclidean {direction} {str(dtype)[6:]} {prec} B={B} n={n} m={m} d={d}"

            def sq_check(dtype=dtype, prec=prec, d=d, B=B, n=n, m=m, direction=direction, case=case):
                x = torch.randn(B, n, d, generator=gen, dtype=f64).to(dtype)
                y = (0.5 + torch.randn(B, m, d, generator=gen, dtype=f64)).to(dtype)
                if direction == "cols":
                    x, y = y, x
                h, s = rand_h(B, y.shape[1]).to(dtype), scale(B, d).to(dtype)
                ref = lse64(torch, sqdist64(torch, x, y), h, s)
                xd, yd, hd, sd = x.to(dev), y.to(dev), h.to(dev), s.to(dev)
                out = sm.lse_sqeuclidean(
                    xd, yd, hd, sd, precision=prec, splits=splits_big if n == big[1] else None
                )
                naive = None
                if dtype in (torch.bfloat16, torch.float16):
                    x2, y2 = (xd * xd).sum(-1), (yd * yd).sum(-1)
                    Cn = (x2[:, :, None] + y2[:, None] - 2 * (xd @ yd.transpose(1, 2))).clamp_min(0)
                    naive = torch.logsumexp(hd[:, None] - sd[:, None, None] * Cn, dim=2)
                norms = float((x.double() ** 2).sum(-1).max() + (y.double() ** 2).sum(-1).max())
                mag = float(s.double().max()) * norms + float(h.double()[torch.isfinite(h)].abs().max())
                unit = {"ieee": 2e-6, "tf32x3": 4e-6, "tf32": 4e-3}[prec] if dtype != f64 else 1e-12
                judge(case, f"fastot lse_sqeuclidean {prec}", out, ref, unit * (1 + mag), naive)

            _guarded_check(torch, dev, report, case, f"fastot lse_sqeuclidean {prec}", sq_check)

    # ---- apply_sqeuclidean (P @ v; P^T @ u is the same kernel with the roles swapped)
    ap_cases = [(f32, 3, 70, small), (f32, 200, 1, small), (f64, 3, 5, small), (f32, 64, 1, big)]
    for dtype, d, k, (B, n, m) in ap_cases:
        case = f"apply_sqeuclidean {str(dtype)[6:]} B={B} n={n} m={m} d={d} k={k}"

        def ap_check(dtype=dtype, d=d, k=k, B=B, n=n, m=m, case=case):
            x = torch.randn(B, n, d, generator=gen, dtype=f64).to(dtype)
            y = (0.5 + torch.randn(B, m, d, generator=gen, dtype=f64)).to(dtype)
            hr, hc, s = rand_h(B, n).to(dtype), rand_h(B, m).to(dtype), scale(B, d).to(dtype)
            v = torch.randn(B, m, k, generator=gen, dtype=f64).to(dtype)
            C = sqdist64(torch, x, y)
            P = torch.exp(hr.double()[:, :, None] + hc.double()[:, None] - s.double()[:, None, None] * C)
            ref = P @ v.double()
            out = sm.apply_sqeuclidean(
                *(t.to(dev) for t in (x, y, hr, hc, s, v)), splits=splits_big if n == big[1] else None
            )
            unit = 1e-11 if dtype == f64 else 1e-5
            judge(case, "fastot apply_sqeuclidean", out, ref, unit * float(ref.abs().max()))

        _guarded_check(torch, dev, report, case, "fastot apply_sqeuclidean", ap_check)

    # ---- the public Sinkhorn on device tensors (through the ops) vs the float64 CPU solve
    sk_shape = (2, 23, 19, 3) if smoke else (2, 300, 257, 16)
    for mode in ("dense", "online"):
        B, n, m, d = sk_shape
        case = f"fastot.sinkhorn {mode} float32 B={B} n={n} m={m} d={d} 30 it"
        if fastot is None:
            report.add(Row("check", case, "fastot.sinkhorn", ERROR, detail="fastot not importable"))
            continue

        def sk_check(mode=mode, B=B, n=n, m=m, d=d, case=case):
            x = torch.randn(B, n, d, generator=gen, dtype=f64)
            y = 0.5 + torch.randn(B, m, d, generator=gen, dtype=f64)
            eps = 0.1 * d
            kw = dict(epsilon=eps, mode=mode, max_iter=30, tol=None)
            out = fastot.sinkhorn(x.float().to(dev), y.float().to(dev), **kw)
            ref = fastot.sinkhorn(x, y, **kw)
            if out.f.device.type != dev.type:
                raise AssertionError(f"potentials on {out.f.device}, expected {dev}")
            err = max(max_err(torch, out.f, ref.f), max_err(torch, out.g, ref.g)) / eps
            verr = max_err(torch, out.value, ref.value) / float(ref.value.abs().max())
            tol = 1e-3
            status = OK if err <= tol and verr <= tol else FAIL
            detail = f"potentials err/eps; value rel err {verr:.2g}; vs float64 CPU solve"
            report.add(Row("check", case, "fastot.sinkhorn", status, max_err=err, tol=tol, detail=detail))

        _guarded_check(torch, dev, report, case, "fastot.sinkhorn", sk_check)

    # ---- exact assignment on device tensors vs scipy's optimal cost
    lsa_cases = [((300, 400), False), ((400, 300), True), ((4, 50, 60), False)]
    if smoke:
        lsa_cases = [((7, 9), False), ((9, 7), True), ((3, 5, 6), False)]
    for shape, maximize in lsa_cases:
        case = f"linear_sum_assignment {'x'.join(map(str, shape))} maximize={maximize}"
        if fastot is None:
            report.add(
                Row("check", case, "fastot.linear_sum_assignment", ERROR, detail="fastot not importable")
            )
            continue

        def lsa_check(shape=shape, maximize=maximize, case=case):
            cost = torch.rand(*shape, generator=gen, dtype=f64).to(torch.float32)
            rows, cols = fastot.linear_sum_assignment(cost.to(dev), maximize=maximize)
            if rows.device.type != dev.type or rows.dtype != torch.int64 or cols.dtype != torch.int64:
                raise AssertionError(f"outputs on {rows.device} / {rows.dtype}, expected {dev} / int64")
            c64 = cost.double().reshape(-1, *shape[-2:])
            r, c = rows.cpu().reshape(len(c64), -1), cols.cpu().reshape(len(c64), -1)
            if any(len(set(ci.tolist())) != ci.numel() for ci in c):
                raise AssertionError("a column is used twice")
            got = [float(c64[i][r[i], c[i]].sum()) for i in range(len(c64))]
            try:
                from scipy.optimize import linear_sum_assignment as scipy_lsa

                ref_name = "scipy"
                best = []
                for ci in c64:
                    ri, cj = scipy_lsa(ci.numpy(), maximize=maximize)
                    best.append(float(ci.numpy()[ri, cj].sum()))
            except ImportError:
                ref_name = "fastot CPU (scipy missing)"
                rr, cc = fastot.linear_sum_assignment(cost, maximize=maximize)
                rr, cc = rr.reshape(len(c64), -1), cc.reshape(len(c64), -1)
                best = [float(c64[i][rr[i], cc[i]].sum()) for i in range(len(c64))]
            err = max(abs(g - b) for g, b in zip(got, best, strict=True))
            tol = 1e-9 * (1 + max(abs(b) for b in best))
            report.add(
                Row(
                    "check",
                    case,
                    "fastot.linear_sum_assignment",
                    OK if err <= tol else FAIL,
                    max_err=err,
                    tol=tol,
                    detail=f"optimal cost vs {ref_name}",
                )
            )

        _guarded_check(torch, dev, report, case, "fastot.linear_sum_assignment", lsa_check)

    run_assignment_checks(torch, fastot, dev, report, smoke, quick)


# --------------------------------------------------------------------------------------------------
# exact assignment on the device (fastot._triton.assignment): checks and timing

LSA_KERNEL = "fastot._triton solve_lsa"
LSA_DEVICE = "fastot device (op)"


def lsa_value64(torch, C, col4row) -> list[float]:
    """Cost of each problem's assignment ``col4row (B, r)`` in float64 on the CPU (inf if invalid)."""
    C = C.detach().cpu().double()
    col4row = col4row.detach().cpu()
    out = []
    for b in range(C.shape[0]):
        cols = col4row[b]
        if bool((cols < 0).any()) or int(cols.unique().numel()) != cols.numel():
            out.append(math.inf)  # not an injective assignment
            continue
        out.append(float(C[b, torch.arange(C.shape[1]), cols].sum()))
    return out


def lsa_optimum64(torch, fastot, C) -> tuple[list[float], str]:
    """Optimal values of ``C (B, r, c)`` (float64): scipy, else fastot's CPU solver."""
    C64 = C.detach().cpu().double()
    try:
        from scipy.optimize import linear_sum_assignment as scipy_lsa

        vals = []
        for Cb in C64.numpy():
            r, c = scipy_lsa(Cb)
            vals.append(float(Cb[r, c].sum()))
        return vals, "scipy"
    except ImportError:
        _, cols = fastot.linear_sum_assignment(C64)
        return lsa_value64(torch, C64, cols), "fastot CPU (scipy missing)"


def lsa_certificate_err(torch, C, col4row, u, v) -> float:
    """Largest violation of the dual certificate (min form, r <= c), relative to max |C| finite:
    reduced costs >= 0, = 0 on the assignment, v = 0 on unassigned columns, primal = dual."""
    C64, u64, v64 = C.detach().cpu().double(), u.detach().cpu().double(), v.detach().cpu().double()
    col4row = col4row.detach().cpu()
    worst = 0.0
    for b in range(C64.shape[0]):
        Cb = C64[b]
        fin = torch.isfinite(Cb)
        scale = max(1.0, float(Cb[fin].abs().max())) if bool(fin.any()) else 1.0
        slack = torch.where(fin, Cb - u64[b][:, None] - v64[b][None, :], torch.inf)
        rows = torch.arange(Cb.shape[0])
        tight = slack[rows, col4row[b]].abs().max()
        free = torch.ones(Cb.shape[1], dtype=torch.bool)
        free[col4row[b]] = False
        v_free = v64[b][free].abs().max() if bool(free.any()) else torch.tensor(0.0)
        gap = abs(float(Cb[rows, col4row[b]].sum()) - float(u64[b].sum() + v64[b].sum()))
        errs = [max(0.0, -float(slack.min())), float(tight), float(v_free), gap / max(1, Cb.shape[0])]
        worst = max(worst, max(errs) / scale)
    return worst


def run_assignment_checks(torch, fastot, dev, report: Report, smoke: bool, quick: bool) -> None:
    """The Triton assignment kernels on device tensors: optimal value vs scipy, dual certificate,
    both kernels (register block and chunked), float32 and float64, infeasible/invalid statuses."""
    gen = torch.Generator().manual_seed(2)
    f32, f64 = torch.float32, torch.float64
    if fastot is None:
        report.add(Row("check", "assignment kernels", LSA_KERNEL, ERROR, detail="fastot not importable"))
        return
    try:
        tas = importlib.import_module("fastot._triton.assignment")
    except Exception as exc:
        report.error("check", "assignment kernels", LSA_KERNEL, exc)
        return
    # (B, r, c, dtype, block_cap, kind): block kernel square/wide, chunked kernel, integer ties
    if smoke:
        cases = [(3, 20, 20, f64, None, "rand"), (2, 9, 21, f32, None, "rand"), (1, 18, 37, f64, 16, "rand"),
                 (2, 17, 17, f32, 16, "int")]  # fmt: skip
    else:
        cases = [(64, 64, 64, f32, None, "rand"), (8, 300, 300, f64, None, "rand"),
                 (4, 200, 700, f32, None, "rand"), (2, 1000, 1000, f64, None, "int"),
                 (1, 700, 5000, f64, None, "rand"), (2, 600, 600, f32, 256, "rand")]  # fmt: skip
        if quick:
            cases = cases[:2] + cases[4:5]
    for B, r, c, dtype, cap, kind in cases:
        default_cap = tas._INTERPRET_BLOCK_CAP if tas.interpreting() else tas._BLOCK_CAP
        kernel = "chunked" if c > (cap if cap is not None else default_cap) else "block"
        case = f"assignment {kernel} {str(dtype)[6:]} B={B} r={r} c={c} {kind}"

        def check(B=B, r=r, c=c, dtype=dtype, cap=cap, kind=kind, case=case):
            if kind == "int":
                C = torch.randint(0, 8, (B, r, c), generator=gen).to(dtype)
            else:
                C = torch.rand(B, r, c, generator=gen, dtype=f64).to(dtype)
            col4row, u, v, status = tas.solve_lsa(C.to(dev), block_cap=cap)
            if col4row.device.type != dev.type:
                raise AssertionError(f"outputs on {col4row.device}, expected {dev}")
            if bool((status.cpu() != 0).any()):
                raise AssertionError(f"status {status.cpu().tolist()} on a feasible problem")
            got = lsa_value64(torch, C, col4row)
            best, ref_name = lsa_optimum64(torch, fastot, C)
            eps = 1.2e-7 if dtype == f32 else 2.3e-16
            scale = float(C.abs().max())
            err = max(abs(g - b) for g, b in zip(got, best, strict=True))
            tol = 8 * eps * max(r, c) * max(scale, 1.0)
            cert = lsa_certificate_err(torch, C, col4row, u, v)
            ok = err <= tol and cert <= 8 * eps * max(r, c)
            detail = f"optimal value vs {ref_name}; dual certificate rel err {cert:.2g}"
            report.add(
                Row("check", case, LSA_KERNEL, OK if ok else FAIL, max_err=err, tol=tol, detail=detail)
            )

        _guarded_check(torch, dev, report, case, LSA_KERNEL, check)

    case = "assignment statuses: infeasible / invalid / ok"

    def statuses():
        n = 12 if smoke else 100
        C = torch.rand(3, n, n, generator=gen, dtype=f64)
        C[0, 3, :] = math.inf  # a row with no allowed column
        C[1, 2, 5] = math.nan
        _, _, _, status = tas.solve_lsa(C.to(dev))
        got = status.cpu().tolist()
        want = [tas.STATUS_INFEASIBLE, tas.STATUS_INVALID, tas.STATUS_OK]
        report.add(Row("check", case, LSA_KERNEL, OK if got == want else FAIL, detail=f"status {got}"))

    _guarded_check(torch, dev, report, case, LSA_KERNEL, statuses)


def _guarded_check(torch, dev, report, case, provider, fn) -> None:
    try:
        fn()
    except Exception as exc:
        report.error("check", case, provider, exc)
    finally:
        if dev.type == "cuda":
            torch.cuda.synchronize()


def _time_adaptive(torch, dev, fn, target_s: float, max_reps: int) -> tuple[float, int]:
    """Median seconds per call; slow calls (over target_s / 3) are timed once or twice."""
    timer = Timer(torch, dev, target_s, max_reps)
    samples = [timer.once(fn)]
    while len(samples) < max_reps and sum(samples) + samples[0] <= target_s:
        samples.append(timer.once(fn))
    return statistics.median(samples), len(samples)


def run_assignment_timing(torch, fastot, dev, report: Report, smoke: bool, quick: bool, deadline: float):
    """Exact assignment of float32 squared-Euclidean costs from Gaussian point clouds: fastot on the
    device (the op: float64 solve; and the float32 kernel), fastot's CPU solver, scipy and
    torch-linear-assignment where present. Cost construction is timed on its own row. Every solver's
    first answer is checked against the optimum (scipy, or fastot CPU above scipy's size limit)
    before it is timed."""
    if smoke:
        cases = [(1, 24, 5), (3, 12, 70), (1, 66, 5)]  # (B, n, d); n = 66 crosses the chunk of 64
        target_s, max_reps, scipy_work, tla_max_n = 0.05, 3, math.inf, 10**9
        tune_cases = {(1, 24, 5): "large", (3, 12, 70): "small"}
    else:
        tune_cases = {(1, 4096, 64): "large", (64, 64, 64): "small"}
        # B x n in {1x1024, 1x4096, 1x8192, 64x64, 256x256, 16x1024}, d in {64, 3072}
        sizes = [(1, 4096), (256, 256), (1, 1024), (64, 64), (16, 1024), (1, 8192)]
        cases = [(B, n, d) for B, n in sizes for d in (64, 3072)]
        if quick:
            cases = [(1, 4096, 64), (256, 256, 64), (1, 1024, 3072)]
        # scipy runs where B n^3 <= 4096^3 (about 5 s a call): all sizes but 1 x 8192
        target_s, max_reps, scipy_work, tla_max_n = (0.5 if quick else 1.0), 10, 4096**3, 1024
    f32, f64 = torch.float32, torch.float64
    if fastot is None:
        report.add(Row("assign", "assignment timing", "all", ERROR, detail="fastot not importable"))
        return
    try:
        tas = importlib.import_module("fastot._triton.assignment")
        lsa_ops = importlib.import_module("fastot.ops.assignment")
    except Exception as exc:
        report.error("assign", "assignment timing", "all", exc)
        return
    try:
        from scipy.optimize import linear_sum_assignment as scipy_lsa

        scipy_error = None
    except Exception as exc:
        scipy_lsa, scipy_error = None, _describe(exc)
    try:
        from torch_linear_assignment import batch_linear_assignment

        tla_error = None if dev.type == "cuda" else "CUDA only"
    except Exception as exc:
        batch_linear_assignment, tla_error = None, _describe(exc)

    def device_op(C, solve_dtype):
        # On CUDA this is exactly what fastot.linear_sum_assignment / solve_assignment run; under
        # --cpu-smoke the same device path is called directly (the CPU op would take the C++ kernel).
        if dev.type == "cuda":
            if solve_dtype == f64:
                return fastot.linear_sum_assignment(C)[1].reshape(C.shape[0], -1)
            return torch.ops.fastot.solve_assignment(C, False, f32)[1].reshape(C.shape[0], -1)
        return lsa_ops._solve_on_device(C, False, solve_dtype, tas.solve_lsa)[1]

    def scipy_loop(C):
        return torch.stack([torch.from_numpy(scipy_lsa(Cb)[1]) for Cb in C.detach().cpu().double().numpy()])

    gen = torch.Generator(device=dev).manual_seed(3)
    for B, n, d in cases:
        case = f"B={B} n={n} d={d}"
        if time.monotonic() > deadline:
            report.add(Row("assign", case, "all", SKIPPED, detail="time budget spent", ours=False))
            continue
        try:
            x = torch.randn(B, n, d, device=dev, generator=gen)
            y = torch.randn(B, n, d, device=dev, generator=gen)
            C = fastot.cost_matrix(x, y)
            sec, reps = _time_adaptive(
                torch, dev, lambda x=x, y=y: fastot.cost_matrix(x, y), target_s / 4, max_reps
            )
            report.add(Row("assign", case, "cost: fastot.cost_matrix fp32", OK, ms_per_iter=1e3 * sec,
                           detail=f"{reps} reps; not included in the solve times"))  # fmt: skip
            C_cpu = C.cpu()
            # the optimum: scipy where it runs (its first call is also its first timing), else fastot CPU
            scipy_first = None
            if scipy_lsa is not None and B * n**3 <= scipy_work:
                t0 = time.perf_counter()
                best, ref_name = lsa_value64(torch, C_cpu, scipy_loop(C_cpu)), "scipy"
                scipy_first = time.perf_counter() - t0
            else:
                _, cols = fastot.linear_sum_assignment(C_cpu)
                best, ref_name = lsa_value64(torch, C_cpu, cols.reshape(B, n)), "fastot CPU"
        except Exception as exc:
            report.error("assign", case, "setup", exc)
            continue
        scale = float(C_cpu.abs().max())
        rows: list[Row] = []
        zeros = torch.zeros_like(C)

        def tla(C):
            return batch_linear_assignment(C)

        providers = [
            (LSA_DEVICE, lambda C: device_op(C, f64), C, True, 64, "float64 arithmetic on the float32 cost"),
            (f"{LSA_DEVICE} fp32", lambda C: device_op(C, f32), C, True, 32, "float32 solve"),
            ("fastot cpu", lambda C: fastot.linear_sum_assignment(C)[1].reshape(C.shape[0], -1), C_cpu, True,
             64, "C++ JV, float64 solve, cost already on host"),
            ("scipy", scipy_loop, C_cpu, False, 64, "loop over the batch"),
            ("torch-linear-assignment", tla, C, False, 32, "batch_linear_assignment"),
        ]  # fmt: skip
        for name, solve, Cin, ours, bits, note in providers:
            if name == "scipy" and scipy_first is None:
                why = scipy_error or "too slow for the 5-minute budget"
                status = UNAVAILABLE if scipy_lsa is None else SKIPPED
                rows.append(report.add(Row("assign", case, name, status, detail=why, ours=False)))
                continue
            if name == "scipy" and scipy_first > target_s / 3:  # the reference call was its timing
                detail = f"{note}; 1 rep (the reference call)"
                row = Row("assign", case, name, OK, ms_per_iter=1e3 * scipy_first, ours=False, detail=detail)
                rows.append(report.add(row))
                continue
            if name == "torch-linear-assignment" and (tla_error is not None or n > tla_max_n):
                why = tla_error or f"n > {tla_max_n}: too slow for the budget (one thread per problem)"
                status = UNAVAILABLE if tla_error is not None else SKIPPED
                rows.append(report.add(Row("assign", case, name, status, detail=why, ours=False)))
                continue
            if time.monotonic() > deadline:
                rows.append(
                    report.add(Row("assign", case, name, SKIPPED, detail="time budget spent", ours=False))
                )
                continue
            try:
                if Cin.device.type == "cuda" and name.startswith("fastot"):
                    solve(zeros if Cin is C else zeros.cpu())  # compile the kernels of this shape
                cols = solve(Cin)
                got = lsa_value64(torch, C_cpu, cols.reshape(B, n))
                err = max(abs(g - b) for g, b in zip(got, best, strict=True))
                eps = 1.2e-7 if bits == 32 else 2.3e-16
                tol = 8 * eps * n * max(scale, 1.0)
                if not err <= tol:
                    rows.append(report.add(Row("assign", case, name, FAIL, max_err=err, tol=tol, ours=ours,
                                               detail=f"value vs {ref_name}: not timed")))  # fmt: skip
                    continue
                sec, reps = _time_adaptive(torch, dev, lambda s=solve, c=Cin: s(c), target_s, max_reps)
                if name.startswith(LSA_DEVICE):  # where the time goes: work left after the warm start
                    st: dict = {}
                    tas.solve_lsa(Cin, dtype=f64 if bits == 64 else f32, stats=st)
                    note += (
                        f"; max free rows {int(st['free'].max())}, Dijkstra steps {int(st['steps'].max())}"
                    )
                rows.append(report.add(Row("assign", case, name, OK, ms_per_iter=1e3 * sec, max_err=err,
                                           tol=tol, ours=ours, detail=f"{note}; {reps} reps")))  # fmt: skip
            except Exception as exc:
                rows.append(report.error("assign", case, name, exc, ours=ours))
            finally:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
        if (B, n, d) in tune_cases:
            rows += _tune_solve_lsa(torch, tas, dev, report, case, C, C_cpu, best, scale, smoke, target_s,
                                    max_reps, deadline, tune_cases[(B, n, d)])  # fmt: skip
        ref = next((r for r in rows if r.provider == LSA_DEVICE and r.status == OK), None)
        for r in rows:
            if ref is not None and r.ms_per_iter is not None:
                r.rel = r.ms_per_iter / ref.ms_per_iter  # > 1: slower than fastot on the device
        del x, y, C, zeros
        if dev.type == "cuda":
            torch.cuda.empty_cache()


COST_KERNEL = "fastot._triton sqeuclidean_cost"


def run_cost(
    torch, fastot, dev, report: Report, smoke: bool, quick: bool, checks: bool, deadline: float | None
) -> None:
    """The fused conditional cost kernel: checks against float64 (labels with finite and infinite
    weights, d off the tile sizes), then times it against the torch formulations at n = m = 4096 with
    10 classes: ``fastot.cost_matrix`` (what it runs on this device) and C²OT's two matrices
    ``M + w * C`` (the squared distances, then a label-mismatch matrix)."""
    f32, f64 = torch.float32, torch.float64
    try:
        cost = importlib.import_module("fastot._triton.cost")
    except Exception as exc:
        report.error("check", "cost kernel", COST_KERNEL, exc)
        return
    gen = torch.Generator().manual_seed(4)
    cases = [(2, 37, 41, 3, 0.7), (1, 20, 19, 70, math.inf)] if smoke else [
        (2, 300, 257, 3, 0.7), (1, 1000, 999, 64, math.inf), (3, 129, 200, 3072, 2.0)]  # fmt: skip
    for B, n, m, d, w in cases if checks else []:
        for dtype in (f32, f64):
            case = f"cost {str(dtype)[6:]} B={B} n={n} m={m} d={d} w={w}"

            def check(B=B, n=n, m=m, d=d, w=w, dtype=dtype, case=case):
                x = torch.randn(B, n, d, generator=gen, dtype=f64)
                y = torch.randn(B, m, d, generator=gen, dtype=f64) + 0.3
                l0 = torch.randint(0, 4, (B, n), generator=gen)
                l1 = torch.randint(0, 4, (B, m), generator=gen)
                ref = sqdist64(torch, x.to(dtype), y.to(dtype))
                differ = l0[:, :, None] != l1[:, None, :]
                ref = torch.where(differ, ref + w, ref)
                xd, yd = x.to(dtype).to(dev), y.to(dtype).to(dev)
                out = cost.sqeuclidean_cost(xd, yd, l0.to(dev), l1.to(dev), w).cpu()
                same_inf = bool(torch.equal(torch.isinf(out), torch.isinf(ref)))
                fin = torch.isfinite(ref)
                eps = 1.2e-7 if dtype == f32 else 2.3e-16
                tol = 16 * eps * d * float(ref[fin].abs().max())
                err = float((out.to(f64)[fin] - ref[fin]).abs().max())
                status = OK if same_inf and err <= tol else FAIL
                detail = "" if same_inf else "+inf pattern differs"
                report.add(Row("check", case, COST_KERNEL, status, max_err=err, tol=tol, detail=detail))

            _guarded_check(torch, dev, report, case, COST_KERNEL, check)
    if deadline is None:  # no timing
        return
    n = 48 if smoke else 4096
    target_s, max_reps = (0.05, 3) if smoke else ((0.3, 10) if quick else (0.6, 20))
    for d in (2, 64) if smoke else (2, 64, 3072):
        case = f"n=m={n} d={d} 10 classes"
        if time.monotonic() > deadline:
            report.add(Row("cost", case, "all", SKIPPED, detail="time budget spent", ours=False))
            continue
        g = torch.Generator(device=dev).manual_seed(5)
        x = torch.randn(n, d, device=dev, generator=g)
        y = torch.randn(n, d, device=dev, generator=g)
        l0 = torch.randint(0, 10, (n,), device=dev, generator=g)
        l1 = torch.randint(0, 10, (n,), device=dev, generator=g)

        def fused(x=x, y=y, l0=l0, l1=l1):
            return cost.sqeuclidean_cost(x[None], y[None], l0[None], l1[None], 1.0)

        def matrix(x=x, y=y, l0=l0, l1=l1):
            return fastot.cost_matrix(x, y, l0, l1, cond_weight=1.0)

        def two_matrices(x=x, y=y, l0=l0, l1=l1):
            return fastot.cost_matrix(x, y) + 1.0 * (l0[:, None] != l1[None, :])

        providers = [
            (COST_KERNEL, fused, True),
            ("fastot.cost_matrix", matrix, True),
            ("two matrices M + w*C", two_matrices, False),
        ]
        ref = None
        rows = []
        for name, fn, ours in providers:
            try:
                out = fn().reshape(n, n)
                if ref is None:
                    ref = out.double()
                err = float((out.double() - ref).abs().max())
                tol = 64 * 1.2e-7 * d * float(ref.abs().max())
                if not err <= tol:
                    rows.append(report.add(Row("cost", case, name, FAIL, max_err=err, tol=tol, ours=ours)))
                    continue
                sec, reps = _time_adaptive(torch, dev, fn, target_s, max_reps)
                row = Row("cost", case, name, OK, ms_per_iter=1e3 * sec, max_err=err, tol=tol, ours=ours)
                row.detail = f"{reps} reps"
                rows.append(report.add(row))
            except Exception as exc:
                rows.append(report.error("cost", case, name, exc, ours=ours))
            finally:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
        base = next((r for r in rows if r.provider == COST_KERNEL and r.status == OK), None)
        for r in rows:
            if base is not None and r.ms_per_iter is not None:
                r.rel = r.ms_per_iter / base.ms_per_iter


def cost_lines(report: Report) -> list[str]:
    """The conditional cost timing rows (ms; rel = time / the fused kernel's)."""
    rows = [r for r in report.rows if r.section == "cost"]
    if not rows:
        return []
    out = ["", "conditional cost matrix (C²OT labels), float32:"]
    for r in rows:
        ms = _fmt(r.ms_per_iter, ".4g")
        out.append(f"  {r.case:26s} {r.provider:34s} {r.status:8s} {ms:>9s} ms  rel {_fmt(r.rel, '.2f')}")
    return out


def _tune_solve_lsa(
    torch, tas, dev, report, case, C, C_cpu, best, scale, smoke, target_s, max_reps, deadline, regime
):
    """The solver's knobs, timed on one case per regime so the defaults can be chosen by measurement.
    ``"large"`` (one big problem): warps per program (the Dijkstra step's reductions span them) and the
    number of Sinkhorn sweeps of the warm start (whole-GPU passes traded against single-program steps).
    ``"small"`` (many small problems): the warm start, column reduction (the default below
    ``_ENTROPIC_MIN_N`` rows: few launches) against the entropic sweeps (fewer steps, ~70 launches)."""
    rows = []
    if regime == "small":
        knobs = [(f"warm_start={k}", {"warm_start": k}) for k in ("columns", "entropic")]
    else:
        warps = (1, 2) if smoke else (4, 8, 16, 32)
        sweeps = (4, 8) if smoke else (16, 32, 64, 128)
        knobs = [(f"warps={w}", {"num_warps": w}) for w in warps] + [
            (f"entropic sweeps={k}", {"sweeps": k, "warm_start": "entropic"}) for k in sweeps
        ]
    for label, kw in knobs:
        name = f"tune solve_lsa {label}"
        if time.monotonic() > deadline:
            rows.append(
                report.add(Row("assign", case, name, SKIPPED, detail="time budget spent", ours=False))
            )
            continue
        try:
            st: dict = {}
            col4row, _, _, status = tas.solve_lsa(C, dtype=torch.float64, stats=st, **kw)
            if bool((status.cpu() != 0).any()):
                raise AssertionError(f"status {status.cpu().tolist()}")
            got = lsa_value64(torch, C_cpu, col4row.cpu())
            err = max(abs(g - b) for g, b in zip(got, best, strict=True))
            tol = 8 * 2.3e-16 * C.shape[-1] * max(scale, 1.0)
            if not err <= tol:
                rows.append(report.add(Row("assign", case, name, FAIL, max_err=err, tol=tol)))
                continue
            sec, reps = _time_adaptive(
                torch, dev, lambda kw=kw: tas.solve_lsa(C, dtype=torch.float64, **kw), target_s / 2, max_reps
            )
            detail = f"kernel + warm start; free rows {int(st['free'].max())}, steps {int(st['steps'].max())}"
            row = Row("assign", case, name, OK, ms_per_iter=1e3 * sec, max_err=err, tol=tol)
            row.detail = f"{detail}; {reps} reps"
            rows.append(report.add(row))
        except Exception as exc:
            rows.append(report.error("assign", case, name, exc))
        finally:
            if dev.type == "cuda":
                torch.cuda.synchronize()
    return rows


def assignment_lines(report: Report) -> list[str]:
    """The assignment timing table and issue 4's targets."""
    rows = [r for r in report.rows if r.section == "assign"]
    if not rows:
        return []
    header = ("case", "provider", "status", "ms", "x fastot device", "value err", "detail")
    table = [header]
    for r in rows:
        shown = r.status != OK or r.provider.startswith(("cost", "tune", LSA_DEVICE))
        detail = r.detail if shown else ""
        table.append((r.case, r.provider, r.status, _fmt(r.ms_per_iter, ".4g"), _fmt(r.rel, ".2f"),
                      _fmt(r.max_err, ".1e"), detail[:100]))  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["", "exact assignment (float32 sq-Euclidean costs; x fastot device = time / fastot device (op))"]
    for i, row in enumerate(table):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    timed = {(r.case, r.provider): r.ms_per_iter for r in rows if r.status == OK and r.ms_per_iter}
    lines.append("\nassignment targets (issue 4):")
    for case, provider, limit in (
        ("B=1 n=4096 d=64", LSA_DEVICE, 10.0),
        ("B=256 n=256 d=64", LSA_DEVICE, 5.0),
    ):
        ms = timed.get((case, provider))
        if ms is None:
            lines.append(f"  {case}: not timed")
            continue
        lines.append(f"  {case}: {ms:.4g} ms (target <= {limit:g} ms) {'met' if ms <= limit else 'NOT met'}")
        sp = timed.get((case, "scipy"))
        if case.startswith("B=1 n=4096") and sp is not None:
            verdict = "met" if sp >= 50 * ms else "NOT met"
            lines.append(f"    vs scipy {sp:.4g} ms: {sp / ms:.1f}x (target >= 50x) {verdict}")
    cases = sorted(
        {r.case for r in rows if (r.case, LSA_DEVICE) in timed and (r.case, "fastot cpu") in timed}
    )
    slower = [c for c in cases if timed[(c, LSA_DEVICE)] > timed[(c, "fastot cpu")]]
    if cases:
        verdict = "met" if not slower else "NOT met at " + ", ".join(slower)
        lines.append(f"  never slower than fastot's CPU solver ({len(cases)} cases): {verdict}")
    return lines


# --------------------------------------------------------------------------------------------------
# section 2: timing


class Timer:
    def __init__(self, torch, dev, target_s: float, max_reps: int):
        self.torch, self.dev, self.target_s, self.max_reps = torch, dev, target_s, max_reps

    def once(self, fn: Callable[[], Any]) -> float:
        torch = self.torch
        if self.dev.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def median(self, fn: Callable[[], Any]) -> tuple[float, int]:
        """Median seconds per call after one warm-up call (compilation, autotuning)."""
        self.once(fn)
        first = self.once(fn)
        reps = max(3, min(self.max_reps, int(self.target_s / max(first, 1e-6))))
        samples = [first] + [self.once(fn) for _ in range(reps - 1)]
        return statistics.median(samples), len(samples)


def run_timing(torch, sm, dev, report: Report, smoke: bool, quick: bool, deadline: float) -> None:
    # the headline case first, so that a spent budget skips the least informative ones
    if smoke:
        cases, precisions = [(48, 64), (48, 70)], ["ieee", "tf32"]
        timer = Timer(torch, dev, target_s=0.05, max_reps=3)
    elif quick:
        cases, precisions = [(16384, 64), (4096, 64), (16384, 3072)], ["ieee", "tf32"]
        timer = Timer(torch, dev, target_s=0.2, max_reps=20)
    else:
        cases = [(16384, 64), (4096, 64), (16384, 3072), (4096, 3072), (1024, 64), (1024, 3072)]
        precisions = ["ieee", "tf32", "tf32x3"]
        timer = Timer(torch, dev, target_s=0.3, max_reps=30)
    try:
        import flash_sinkhorn  # noqa: F401

        flash_error = None
    except Exception as exc:
        flash_error = _describe(exc)

    gen = torch.Generator(device=dev).manual_seed(1)
    bounds: dict[int, float | None] = {}
    for n, d in cases:
        if time.monotonic() > deadline:
            report.add(Row("time", f"n=m={n} d={d}", "all", SKIPPED, detail="time budget spent", ours=False))
            continue
        if n not in bounds:
            bounds[n] = _copy_bound(torch, dev, report, timer, n, gen)
        _time_case(torch, sm, dev, report, timer, n, d, precisions, bounds[n], flash_error, deadline, gen)
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def _copy_bound(torch, dev, report, timer, n, gen) -> float | None:
    """Seconds of one dense float32 read + write of an n x n matrix (a device copy)."""
    try:
        src = torch.rand(n, n, device=dev, generator=gen)
        dst = torch.empty_like(src)
        sec, reps = timer.median(lambda: dst.copy_(src))
        report.add(
            Row(
                "time",
                f"n=m={n}",
                "bound: copy n x m fp32",
                OK,
                ms_per_iter=1e3 * sec,
                bound_ms=1e3 * sec,
                x_bound=1.0,
                detail=f"{2 * 4 * n * n / sec / 1e9:.0f} GB/s, {reps} reps",
            )
        )
        return sec
    except Exception as exc:
        report.error("time", f"n=m={n}", "bound: copy n x m fp32", exc)
        return None


def _time_case(torch, sm, dev, report, timer, n, d, precisions, bound, flash_error, deadline, gen):
    case = f"n=m={n} d={d}"
    f32 = torch.float32
    x = torch.randn(1, n, d, device=dev, generator=gen)
    y = 0.5 + torch.randn(1, n, d, device=dev, generator=gen)
    eps = 0.1 * 2 * d  # costs are about 2 d: C / eps about 10
    s = torch.full((1,), 1.0 / eps, device=dev)
    log_w = torch.full((1, n), -math.log(n), device=dev)
    rows: list[Row] = []

    # float64 reference of one iteration from f = 0 (g = c-transform of f, then f of g)
    try:
        C64 = sqdist64(torch, x, y) if dev.type == "cpu" else _sqdist_dev(torch, x.double(), y.double())
        g_ref = -eps * torch.logsumexp(log_w.double()[:, :, None] - C64 / eps, dim=1)
        f_ref = -eps * torch.logsumexp((log_w.double() + g_ref / eps)[:, None, :] - C64 / eps, dim=2)
        f_ref = f_ref.cpu()
        C32 = C64.to(f32)
        del C64
    except Exception as exc:
        report.error("time", case, "float64 reference", exc)
        return
    x2, y2 = (x * x).sum(-1), (y * y).sum(-1)

    def online(prec):
        def it(f):
            g = -eps * sm.lse_sqeuclidean(y, x, log_w + f / eps, s, precision=prec, x2=y2, y2=x2)
            return -eps * sm.lse_sqeuclidean(x, y, log_w + g / eps, s, precision=prec, x2=x2, y2=y2)

        return it

    def dense_kernel(f):
        g = -eps * sm.lse_dense(C32, log_w + f / eps, s, transpose=True)
        return -eps * sm.lse_dense(C32, log_w + g / eps, s)

    def torch_dense(f):
        g = -eps * torch.logsumexp((log_w + f / eps)[:, :, None] - C32 / eps, dim=1)
        return -eps * torch.logsumexp((log_w + g / eps)[:, None, :] - C32 / eps, dim=2)

    providers: list[tuple[str, Callable, float, bool]] = [
        (f"fastot online {p}", online(p), 5e-2 if p == "tf32" else 1e-3, True) for p in precisions
    ]
    providers += [
        ("fastot dense lse_dense", dense_kernel, 1e-3, True),
        ("torch dense logsumexp", torch_dense, 1e-3, False),
    ]
    f0 = torch.zeros(1, n, device=dev)
    for name, it, tol, ours in providers:
        if time.monotonic() > deadline:
            rows.append(report.add(Row("time", case, name, SKIPPED, detail="time budget spent", ours=False)))
            continue
        try:
            f1 = it(f0)
            err = max_err(torch, f1, f_ref) / eps  # in units of epsilon (log-domain units)
            if not err <= tol:
                rows.append(report.add(Row("time", case, name, FAIL, max_err=err, tol=tol, ours=ours,
                                           detail="first iteration vs float64: not timed")))  # fmt: skip
                continue
            state = {"f": f0}

            def step(it=it, state=state):
                state["f"] = it(state["f"])

            sec, reps = timer.median(step)
            rows.append(report.add(Row("time", case, name, OK, ms_per_iter=1e3 * sec, max_err=err, tol=tol,
                                       ours=ours, detail=f"{reps} reps")))  # fmt: skip
        except Exception as exc:
            rows.append(report.error("time", case, name, exc, ours=ours))
        finally:
            if dev.type == "cuda":
                torch.cuda.synchronize()

    # flash-sinkhorn: alternating (OTT-style) updates at a fixed epsilon, per iteration from two run lengths
    for tf32 in (True, False):
        name = f"flash-sinkhorn alternating {'tf32' if tf32 else 'fp32'}"
        if flash_error is not None:
            rows.append(report.add(Row("time", case, name, UNAVAILABLE, detail=flash_error, ours=False)))
            continue
        if time.monotonic() > deadline:
            rows.append(report.add(Row("time", case, name, SKIPPED, detail="time budget spent", ours=False)))
            continue
        try:
            from flash_sinkhorn import SamplesLoss

            def run(iters, tf32=tf32):
                loss = SamplesLoss(
                    "sinkhorn",
                    backend="alternating",
                    use_epsilon_scaling=False,
                    eps=eps,
                    n_iters=iters,
                    allow_tf32=tf32,
                    debias=False,
                    potentials=True,
                )
                return loss(x[0], y[0])

            t_short, _ = timer.median(lambda: run(10))
            t_long, _ = timer.median(lambda: run(30))
            sec = (t_long - t_short) / 20
            rows.append(report.add(Row("time", case, name, OK, ms_per_iter=1e3 * sec, ours=False,
                                       detail="(t(30 it) - t(10 it)) / 20; values not checked")))  # fmt: skip
        except Exception as exc:
            rows.append(report.error("time", case, name, exc, ours=False))

    best = min((r.ms_per_iter for r in rows if r.provider.startswith("fastot online") and r.status == OK),
               default=None)  # fmt: skip
    for r in rows:
        if r.ms_per_iter is None:
            continue
        if bound:
            r.bound_ms = 1e3 * bound
            r.x_bound = r.ms_per_iter / r.bound_ms
        if best:
            r.rel = r.ms_per_iter / best


def _sqdist_dev(torch, x, y):
    x2, y2 = (x * x).sum(-1), (y * y).sum(-1)
    return (x2[:, :, None] + y2[:, None, :] - 2 * (x @ y.transpose(1, 2))).clamp_min_(0)


# --------------------------------------------------------------------------------------------------
# output


def _fmt(v: Any, spec: str = ".3g") -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def write_outputs(out_dir: Path, meta: dict[str, Any], report: Report) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "gpu_check.csv", out_dir / "gpu_check.json"
    meta_cols = ["device", "torch", "triton", "python", "commit", "mode"]
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*FIELDS, "ours", *meta_cols])
        for r in report.rows:
            d = asdict(r)
            w.writerow(
                [d[k] if d[k] is not None else "" for k in FIELDS]
                + [r.ours]
                + [meta.get(k, "") for k in meta_cols]
            )
    with json_path.open("w") as fh:
        json.dump({"meta": meta, "rows": [asdict(r) for r in report.rows]}, fh, indent=1, default=str)
    return csv_path, json_path


def print_table(meta: dict[str, Any], report: Report, files: tuple[Path, Path] | None) -> None:
    checks = [r for r in report.rows if r.section in ("setup", "check")]
    bad = [r for r in checks if r.status != OK]
    lines = [
        "",
        f"fastot gpu_check [{meta.get('mode')}] on {meta.get('device')}: torch {meta.get('torch')}, "
        f"triton {meta.get('triton')}, python {meta.get('python')}, commit {str(meta.get('commit'))[:12]}"
        + (" (dirty)" if meta.get("dirty") else ""),
        f"checks: {len(checks) - len(bad)}/{len(checks)} ok"
        + ("" if not bad else "; not ok: " + "; ".join(f"{r.case} [{r.status}]" for r in bad[:8])),
    ]
    for r in bad:
        lines.append(
            f"  {r.status} {r.case} | {r.provider}: err={_fmt(r.max_err)} tol={_fmt(r.tol)} {r.detail}"
        )
    header = ("case", "provider", "status", "ms/iter", "x bound", "rel", "err/eps", "detail")
    table = [header]
    for r in report.rows:
        if r.section != "time":
            continue
        detail = r.detail if r.status != OK else ""
        table.append(
            (
                r.case,
                r.provider,
                r.status,
                _fmt(r.ms_per_iter, ".4g"),
                _fmt(r.x_bound, ".2f"),
                _fmt(r.rel, ".2f"),
                _fmt(r.max_err, ".1e"),
                detail[:70],
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines.append("")
    for i, row in enumerate(table):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.extend(target_lines(report))
    lines.extend(assignment_lines(report))
    lines.extend(cost_lines(report))
    if files:
        lines.append(f"\nwritten: {files[0]}  {files[1]}")
    print("\n".join(lines), flush=True)


def target_lines(report: Report) -> list[str]:
    """Issue 3's GPU target at the largest n with d = 64: online within 1.5x of the copy bound, and
    no slower than flash-sinkhorn."""
    timed = [r for r in report.rows if r.section == "time" and r.status == OK and r.ms_per_iter is not None]
    cases = [r.case for r in timed if r.case.endswith(" d=64")]
    if not cases:
        return []
    case = max(cases, key=lambda c: int(c.split("=")[2].split()[0]))
    rows = [r for r in timed if r.case == case]
    ours = [r for r in rows if r.provider.startswith("fastot online")]
    if not ours:
        return []
    best = min(ours, key=lambda r: r.ms_per_iter)
    out = [f"\ntarget at {case}: best fastot online = {best.provider} {best.ms_per_iter:.4g} ms/iter"]
    if best.x_bound is not None:
        verdict = "met" if best.x_bound <= 1.5 else "NOT met"
        bound = f"one dense fp32 read+write ({best.bound_ms:.4g} ms)"
        out.append(f"  within 1.5x of {bound}: x{best.x_bound:.2f} {verdict}")
    peers = [r for r in rows if r.provider.startswith("flash-sinkhorn")]
    if peers:
        peer = min(peers, key=lambda r: r.ms_per_iter)
        verdict = "met" if best.ms_per_iter <= peer.ms_per_iter else "NOT met"
        out.append(f"  no slower than {peer.provider} ({peer.ms_per_iter:.4g} ms): {verdict}")
    else:
        out.append("  flash-sinkhorn: not timed here")
    return out


# --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python bench/gpu_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path, help="folder for gpu_check.csv and gpu_check.json")
    p.add_argument("--quick", action="store_true", help="fewer sizes and options (about 2 minutes)")
    p.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="run the same code paths on CPU tensors in Triton's interpreter at tiny sizes",
    )
    p.add_argument("--no-checks", action="store_true", help="skip section 1 (correctness checks)")
    p.add_argument("--no-timing", action="store_true", help="skip sections 2 and 3 (timing)")
    p.add_argument(
        "--timing",
        choices=("all", "sinkhorn", "assignment", "cost"),
        default="all",
        help="which timing sections run (default all: Sinkhorn, exact assignment, conditional cost)",
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="seconds from the start after which no new timing starts (default 250, quick 150); "
        "with --timing all, Sinkhorn timing stops starting new work at 55%% of it",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.monotonic()
    if args.cpu_smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before any kernel is built (they are built on first use)
    else:
        os.environ.pop("TRITON_INTERPRET", None)
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing checked. "
            "Use --cpu-smoke to run this script's code paths on CPU tensors in Triton's interpreter."
        )
        return 0
    dev = torch.device("cpu") if args.cpu_smoke else torch.device("cuda")
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # references and the dense baseline in true fp32
        torch.backends.cudnn.allow_tf32 = False
    report = Report()
    meta: dict[str, Any] = {"mode": "cpu-smoke" if args.cpu_smoke else ("quick" if args.quick else "full")}
    files = None
    try:
        fastot, sm = import_fastot(report)
        meta = metadata(torch, dev, fastot, args)
        print(f"gpu_check: {meta.get('device')} torch {meta['torch']} triton {meta['triton']}", flush=True)
        try:
            if not args.no_checks:
                run_checks(torch, sm, fastot, dev, report, args.cpu_smoke, args.quick)
        except Exception as exc:
            report.error("check", "section 1", "checks", exc)
        # the whole run stays under 5 minutes: timing stops starting new work at the deadline
        budget = args.budget_s if args.budget_s is not None else (150.0 if args.quick else 250.0)
        deadline = t_start + budget
        sinkhorn_deadline = t_start + 0.55 * budget if args.timing == "all" else deadline
        try:
            if not args.no_timing and args.timing in ("all", "sinkhorn"):
                run_timing(torch, sm, dev, report, args.cpu_smoke, args.quick, sinkhorn_deadline)
        except Exception as exc:
            report.error("time", "section 2", "timing", exc)
        try:
            if not args.no_timing and args.timing in ("all", "assignment"):
                run_assignment_timing(torch, fastot, dev, report, args.cpu_smoke, args.quick, deadline)
        except Exception as exc:
            report.error("assign", "section 3", "assignment timing", exc)
        try:  # its checks belong to section 1; its timing (seconds) may run past the deadline
            timing = not args.no_timing and args.timing in ("all", "cost")
            run_cost(torch, fastot, dev, report, args.cpu_smoke, args.quick, not args.no_checks,
                     deadline + 20.0 if timing else None)  # fmt: skip
        except Exception as exc:
            report.error("cost", "section 4", "conditional cost", exc)
    except Exception as exc:
        report.error("setup", "gpu_check", "setup", exc)
    finally:
        meta["elapsed_s"] = round(time.monotonic() - t_start, 1)
        try:
            files = write_outputs(args.out_dir, meta, report)
        except Exception as exc:
            print(f"gpu_check: could not write results to {args.out_dir}: {_describe(exc)}", flush=True)
        print_table(meta, report, files)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
