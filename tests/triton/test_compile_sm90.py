"""The Triton kernels compile for an H100/H200 (sm_90) with this machine's triton and ptxas, no GPU needed.

The interpreter runs the kernels' logic on CPU; this checks what it cannot: that the code generator
and ptxas accept every kernel path (dtypes, tiling of the feature axis, dot precisions) for the GPU
configs the autotuner will try (and the assignment kernels' register-block and chunked variants at
the warp counts their launcher picks), and that none of them spills heavily (ptxas stack frame). It runs in
a subprocess without ``TRITON_INTERPRET`` (this process builds interpreted kernels). Skipped on CUDA
machines, where the other tests run the compiled kernels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

triton = pytest.importorskip("triton")

_NVIDIA_BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")

pytestmark = [
    pytest.mark.skipif(torch.cuda.is_available(), reason="the CUDA tests run the compiled kernels"),
    pytest.mark.skipif(
        not os.path.exists(os.path.join(_NVIDIA_BIN, "ptxas")), reason="triton without the NVIDIA ptxas"
    ),
]

_SCRIPT = r"""
import json, os, re, subprocess, tempfile
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from fastot._triton import assignment, cost, softmin

BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
PTR = {torch.float32: "*fp32", torch.float64: "*fp64", torch.bfloat16: "*bf16", torch.float16: "*fp16"}
UNIT_STRIDES = ("stride_ck", "stride_hk", "stride_xd", "stride_yd", "stride_vk")  # specialised to 1
F32, F64, BF16 = torch.float32, torch.float64, torch.bfloat16
CFG = softmin._GPU_CONFIGS

def sq(prec, d, **extra):
    block_d, resident = softmin._d_blocking(d, None, prec)
    return {"BLOCK_D": block_d, "X_RESIDENT": resident, "PRECISION": prec, **extra}

cases = [("lse_dense", F32, cfg, {}) for cfg in CFG["lse_dense"]]
cases += [("lse_dense", F64, CFG["lse_dense"][0], {})]
cases += [("lse_sqeuclidean", F32, cfg, sq("tf32", 64)) for cfg in CFG["lse_sqeuclidean"]]
cases += [
    ("lse_sqeuclidean", F32, CFG["lse_sqeuclidean"][0], sq("ieee", 3072)),
    ("lse_sqeuclidean", F32, CFG["lse_sqeuclidean"][0], sq("tf32x3", 3072)),
    ("lse_sqeuclidean", F64, CFG["lse_sqeuclidean"][1], sq("ieee", 64)),
    ("lse_sqeuclidean", BF16, CFG["lse_sqeuclidean"][0], sq("tf32", 200)),
]
cases += [("apply_sqeuclidean", F32, cfg, sq("ieee", 64, BLOCK_K=64)) for cfg in CFG["apply_sqeuclidean"]]
cases += [("apply_sqeuclidean", F64, CFG["apply_sqeuclidean"][0], sq("ieee", 3, BLOCK_K=16))]

def compile_case(name, in_dtype, config, constexprs):
    softmin._kernel(name, False)  # sets the reduction combine functions as the launcher would
    fn = triton.jit(softmin._BODIES[name])
    acc = F64 if in_dtype == F64 else F32
    bm, bn, warps, stages = config
    consts = {**constexprs, "BLOCK_M": bm, "BLOCK_N": bn}
    signature = {}
    for arg in fn.arg_names:
        if arg in ("C", "X", "Y", "V"):
            signature[arg] = PTR[in_dtype]
        elif arg in ("H", "S", "OUT", "X2", "Y2", "HR", "HC"):
            signature[arg] = PTR[acc]
        elif arg in consts or arg in UNIT_STRIDES:
            signature[arg] = "constexpr"
            consts.setdefault(arg, 1)
        else:
            signature[arg] = "i32"
    src = ASTSource(fn=fn, signature=signature, constexprs=consts)
    options = {"num_warps": warps, "num_stages": stages}
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
    return resources(kernel)

def compile_assignment(name, dtype, warps, constexprs):
    # fastot._triton.assignment: one program per problem; every size is a runtime i32. dtype: the
    # arithmetic's; C is float32 when constexprs holds "C_F32" (a float32 cost solved in float64)
    constexprs = dict(constexprs)
    c_dtype = F32 if constexprs.pop("C_F32", False) else dtype
    assignment._kernel(name, False)
    fn = triton.jit(assignment._BODIES[name])
    ptrs = {"C": PTR[c_dtype], "U": PTR[dtype], "V": PTR[dtype], "DIST": PTR[dtype], "COL4ROW": "*i64",
            "STATUS": "*i32", "STEPS": "*i32", "PRED": "*i32", "ROW4COL": "*i32", "SCAN": "*i8"}
    signature = {a: "constexpr" if a in constexprs else ptrs.get(a, "i32") for a in fn.arg_names}
    src = ASTSource(fn=fn, signature=signature, constexprs=dict(constexprs))
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    return resources(kernel)

def compile_cost(in_dtype, config, constexprs):
    # fastot._triton.cost: the fused conditional cost, labels int64, weight and norms in acc dtype
    acc = F64 if in_dtype == F64 else F32
    bm, bn, warps, stages = config
    consts = {**constexprs, "BLOCK_M": bm, "BLOCK_N": bn}
    fn = triton.jit(cost._sqeuclidean_cost_kernel)
    ptrs = {"X": PTR[in_dtype], "Y": PTR[in_dtype], "X2": PTR[acc], "Y2": PTR[acc], "W": PTR[acc],
            "L0": "*i64", "L1": "*i64", "OUT": PTR[acc]}
    signature = {}
    for arg in fn.arg_names:
        if arg in consts or arg == "stride_xd" or arg == "stride_yd":
            signature[arg] = "constexpr"
            consts.setdefault(arg, 1)
        else:
            signature[arg] = ptrs.get(arg, "i32")
    src = ASTSource(fn=fn, signature=signature, constexprs=consts)
    options = {"num_warps": warps, "num_stages": stages}
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
    return resources(kernel)

def resources(kernel):
    with tempfile.NamedTemporaryFile(suffix=".cubin") as fh:
        fh.write(kernel.asm["cubin"])
        fh.flush()
        usage = subprocess.run([os.path.join(BIN, "cuobjdump"), "--dump-resource-usage", fh.name],
                               capture_output=True, text=True).stdout
    m = re.search(r"REG:(\d+).*?STACK:(\d+)", usage)
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)

# (kernel, dtype, num_warps as the launcher picks them, constexprs)
BW, CAP = assignment._block_warps, assignment._BLOCK_CAP
assignment_cases = [
    ("block", F32, BW(64), {"BLOCK_M": 64, "INIT": True, "FUSED": True}),
    ("block", F64, BW(256), {"BLOCK_M": 256, "INIT": False, "FUSED": True}),
    ("block", F32, BW(1024), {"BLOCK_M": 1024, "INIT": True, "FUSED": True}),
    ("block", F64, BW(CAP), {"BLOCK_M": CAP, "INIT": True, "FUSED": True}),
    ("block", F32, BW(CAP), {"BLOCK_M": CAP, "INIT": True, "FUSED": False}),
    ("block", F64, BW(1024), {"BLOCK_M": 1024, "INIT": True, "FUSED": True, "C_F32": True}),
    ("chunked", F32, 8, {"BLOCK": assignment._CHUNK, "FUSED": True}),
    ("chunked", F64, 8, {"BLOCK": assignment._CHUNK, "FUSED": True}),
    ("chunked", F64, 8, {"BLOCK": assignment._CHUNK, "FUSED": True, "C_F32": True}),
    ("chunked", F64, 8, {"BLOCK": assignment._CHUNK, "FUSED": False}),
]
cases += [("assignment " + name, dtype, warps, c) for name, dtype, warps, c in assignment_cases]
def cost_consts(prec, d, labels):
    block_d = softmin._d_blocking(d, None, prec)[0]
    return {"BLOCK_D": block_d, "PRECISION": prec, "LABELS": labels, "CLAMP": True}
cases += [("cost", F32, cfg, cost_consts("ieee", 64, True)) for cfg in cost._GPU_CONFIGS]
cases += [
    ("cost", F32, cost._GPU_CONFIGS[0], cost_consts("tf32x3", 3072, False)),
    ("cost", F64, cost._GPU_CONFIGS[0], cost_consts("ieee", 8, True)),
    ("cost", BF16, cost._GPU_CONFIGS[1], cost_consts("tf32", 200, False)),
]

for name, dtype, config, constexprs in cases:
    case = f"{name} {str(dtype)[6:]} {config} {constexprs}"
    try:
        if name.startswith("assignment "):
            regs, stack = compile_assignment(name.split()[1], dtype, config, constexprs)
        elif name == "cost":
            regs, stack = compile_cost(dtype, config, constexprs)
        else:
            regs, stack = compile_case(name, dtype, config, constexprs)
        print(json.dumps({"case": case, "ok": True, "regs": regs, "stack": stack}), flush=True)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[-2000:]
        print(json.dumps({"case": case, "ok": False, "error": error}), flush=True)
"""

MAX_STACK = 512  # bytes of spill stack per thread tolerated


def test_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) >= 30, proc.stdout[-3000:] + proc.stderr[-3000:]
    failed = [r for r in results if not r["ok"]]
    assert not failed, "\n".join(f"{r['case']}: {r['error']}" for r in failed)
    spilled = [r for r in results if r["stack"] is not None and r["stack"] > MAX_STACK]
    assert not spilled, "\n".join(f"{r['case']}: {r['stack']} bytes of spills" for r in spilled)
