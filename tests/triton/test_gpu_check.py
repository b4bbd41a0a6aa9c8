"""bench/gpu_check.py: its code paths run on CPU tensors (``--cpu-smoke``, Triton's interpreter)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("TRITON_INTERPRET", None)  # the script decides
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_cpu_smoke_writes_table_csv_and_json(tmp_path):
    proc = _run(str(tmp_path / "out"), "--cpu-smoke")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    # the short table comes last: checks summary, then the timing table, then the files
    assert "checks: " in out and " ok" in out
    tail = out[out.index("checks: ") :]
    for name in ("fastot online ieee", "fastot dense lse_dense", "torch dense logsumexp", "bound: copy"):
        assert name in tail
    assert "target at n=m=48 d=64: best fastot online" in tail
    # the assignment table and its target lines come after the Sinkhorn ones
    assign = tail[tail.index("exact assignment (") :]
    for name in ("fastot device (op)", "fastot device (op) fp32", "fastot cpu", "cost: fastot.cost_matrix"):
        assert name in assign
    assert "assignment targets (issue 4):" in assign and "never slower than fastot's CPU solver" in assign
    cost = tail[tail.index("conditional cost matrix") :]
    for name in ("fastot._triton sqeuclidean_cost", "fastot.cost_matrix", "two matrices M + w*C"):
        assert name in cost
    assert "written:" in out.splitlines()[-1]
    rows = list(csv.DictReader((tmp_path / "out" / "gpu_check.csv").open()))
    providers = {r["provider"] for r in rows}
    assert {
        "fastot lse_dense",
        "fastot lse_sqeuclidean ieee",
        "fastot apply_sqeuclidean",
        "fastot.linear_sum_assignment",
        "fastot online ieee",
        "fastot._triton solve_lsa",
        "fastot device (op)",
        "fastot cpu",
    } <= providers
    costs = [r for r in rows if r["provider"] == "fastot._triton sqeuclidean_cost"]
    assert {r["section"] for r in costs} == {"check", "cost"} and all(r["status"] == "ok" for r in costs)
    kernels = [r for r in rows if r["provider"] == "fastot._triton solve_lsa"]
    assert any("chunked" in r["case"] for r in kernels) and any("block" in r["case"] for r in kernels)
    assert any("statuses" in r["case"] for r in kernels)
    solved = [r for r in rows if r["section"] == "assign" and r["provider"].startswith("fastot device")]
    assert len(solved) == 6 and all(r["status"] == "ok" and float(r["ms_per_iter"]) > 0 for r in solved)
    assert any(r["case"].endswith("n=66 d=5") for r in solved)  # the chunked kernel under the op's path
    ours = [r for r in rows if r["ours"] == "True"]
    assert ours and all(r["status"] in ("ok", "skipped") for r in ours), [
        (r["case"], r["provider"], r["status"], r["detail"]) for r in ours if r["status"] != "ok"
    ]
    timed = [r for r in rows if r["provider"] == "fastot online ieee"]
    assert timed and all(float(r["ms_per_iter"]) > 0 and r["x_bound"] for r in timed)
    data = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert {"device", "torch", "triton", "python", "commit", "mode"} <= set(data["meta"])
    assert data["meta"]["mode"] == "cpu-smoke" and len(data["rows"]) == len(rows)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_exits_cleanly(tmp_path):
    proc = _run(str(tmp_path / "out"), timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no CUDA device" in proc.stdout
    assert not (tmp_path / "out").exists()


def _load_gpu_check():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_gpu_check_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class _BrokenKernels:
    """Stands in for fastot._triton.softmin: one kernel raises, one is wrong, one has a bad shape."""

    @staticmethod
    def lse_dense(C, h, scale, transpose=False, **kwargs):
        raise RuntimeError("boom: illegal memory access")

    @staticmethod
    def lse_sqeuclidean(x, y, h, scale, **kwargs):
        return torch.zeros(x.shape[0], x.shape[1])

    @staticmethod
    def apply_sqeuclidean(x, y, hr, hc, scale, v, **kwargs):
        return torch.zeros(1)


def test_failures_are_caught_and_reported(capsys):
    gc = _load_gpu_check()
    report = gc.Report()
    cpu = torch.device("cpu")
    gc.run_checks(torch, _BrokenKernels, None, cpu, report, smoke=True, quick=True)
    gc.run_timing(torch, _BrokenKernels, cpu, report, smoke=True, quick=True, deadline=float("inf"))
    gc.run_assignment_timing(torch, None, cpu, report, smoke=True, quick=True, deadline=float("inf"))
    by = {}
    for r in report.rows:
        by.setdefault(r.provider, set()).add(r.status)
    assert by["fastot lse_dense"] == {"ERROR"}
    assert by["fastot lse_sqeuclidean ieee"] == {"FAIL"}
    assert by["fastot apply_sqeuclidean"] == {"ERROR"}
    assert by["fastot.linear_sum_assignment"] == {"ERROR"}  # no fastot module given
    assert by["fastot online ieee"] == {"FAIL"} and by["fastot dense lse_dense"] == {"ERROR"}
    assert by["torch dense logsumexp"] == {"ok"}
    assert by["fastot._triton solve_lsa"] == {"ERROR"}  # no fastot module given
    assert {(r.section, r.status) for r in report.rows if r.provider == "all"} == {("assign", "ERROR")}
    dense_err = next(r for r in report.rows if r.provider == "fastot lse_dense")
    assert "RuntimeError: boom: illegal memory access" in dense_err.detail and "boom" in dense_err.trace
    assert report.failed
    gc.print_table({"mode": "test", "device": "cpu"}, report, None)
    out = capsys.readouterr().out
    assert "not ok:" in out and "ERROR" in out and "FAIL" in out
