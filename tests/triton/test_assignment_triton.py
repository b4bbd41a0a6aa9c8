"""Triton assignment kernels (``fastot._triton.assignment``) against scipy, with dual certificates.

Without a GPU the kernels run on CPU tensors in Triton's interpreter (``conftest.py`` sets
``TRITON_INTERPRET=1``); on a CUDA machine the same tests run the compiled kernels on CUDA tensors.
Both kernels are exercised: the register-block kernel (every column in one block) and the chunked
kernel (``block_cap=16``: columns walked in chunks of 16, so shapes above 16 columns cross chunk
edges). Assignments can differ from scipy's on ties, so results are compared by their cost and
checked to be valid; the duals must certify optimality. float32 costs are solved in float32: their
tolerance is float32's unit roundoff in place of float64's.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from lsa_checks import (
    assert_dual_certificate,
    assert_dual_certificate_any,
    assert_optimal,
    cost_tol,
)

pytest.importorskip("triton")

from scipy.optimize import linear_sum_assignment as scipy_lsa

from fastot._triton import assignment as tas
from fastot._triton.softmin import interpreting
from fastot.ops import assignment as ops_assignment

F32, F64 = torch.float32, torch.float64
DEVICE = "cpu" if interpreting() else "cuda"
CAPS = [None, 16]  # register block / chunked kernel with chunks of 16 columns
EPS = {F32: float(np.finfo(np.float32).eps), F64: float(np.finfo(np.float64).eps)}


def _tol(C: np.ndarray, dtype: torch.dtype) -> float:
    return cost_tol(C, eps=EPS[dtype])


def _solve(C: torch.Tensor, **kwargs):
    col4row, u, v, status = tas.solve_lsa(C.to(DEVICE), **kwargs)
    assert col4row.device.type == DEVICE and col4row.dtype == torch.int64
    assert u.dtype == v.dtype == kwargs.get("dtype", C.dtype) and status.dtype == torch.int32
    return col4row.cpu(), u.cpu(), v.cpu(), status.cpu()


def _check_batch(C: torch.Tensor, col4row, u, v, status, certify: bool = True) -> None:
    """Every problem of ``C (B, r, c)``: status OK, optimal cost, dual certificate."""
    np.testing.assert_array_equal(status.numpy(), 0)
    B, r, _ = C.shape
    for b in range(B):
        Cb = C[b].double().numpy()
        tol = _tol(Cb, C.dtype)
        cols = col4row[b].numpy()
        assert_optimal(Cb, np.arange(r), cols, tol=tol)
        if certify:
            assert_dual_certificate(Cb, cols, u[b].double().numpy(), v[b].double().numpy(), tol=tol)


def _device_solve(C: torch.Tensor, maximize: bool = False, solve_dtype: torch.dtype = F64):
    """The op's device path (preparation, kernel, mapping back) on this machine's device."""
    out = ops_assignment._solve_on_device(C.to(DEVICE), maximize, solve_dtype, tas.solve_lsa)
    assert all(t.device.type == DEVICE for t in out)
    return tuple(t.cpu() for t in out)


# -- random costs, both kernels, both dtypes -------------------------------------------------------


@pytest.mark.parametrize("cap", CAPS)
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("shape", [(3, 17, 17), (2, 11, 23), (1, 24, 24), (2, 1, 5), (1, 1, 1)])
def test_random_costs(torch_gen, shape, dtype, cap):
    C = torch.rand(shape, generator=torch_gen, dtype=F64).to(dtype)
    _check_batch(C, *_solve(C, block_cap=cap))


@pytest.mark.parametrize("cap", CAPS)
@pytest.mark.parametrize("warm_start", [False, "columns", "entropic", True])
def test_warm_starts_give_the_optimum(torch_gen, warm_start, cap):
    # shifted clouds: column reduction leaves most rows free, the entropic start few
    x = torch.randn(2, 20, 3, generator=torch_gen, dtype=F64)
    y = torch.randn(2, 20, 3, generator=torch_gen, dtype=F64) + 2.0
    C = torch.cdist(x, y) ** 2
    stats: dict = {}
    _check_batch(C, *_solve(C, warm_start=warm_start, block_cap=cap, stats=stats))
    free, steps = stats["free"].cpu(), stats["steps"].cpu()
    assert free.shape == steps.shape == (2,)
    assert (steps >= free).all() and (free <= 20).all()
    if warm_start is False:
        assert (free == 20).all()
    else:
        assert (free < 20).all()


@pytest.mark.parametrize("cap", CAPS)
def test_tuning_overrides_keep_the_optimum(torch_gen, cap):
    # bench/gpu_check.py times these knobs on a GPU; any value must give the same optimum
    x = torch.randn(2, 20, 3, generator=torch_gen, dtype=F64)
    C = torch.cdist(x, torch.randn(2, 20, 3, generator=torch_gen, dtype=F64) + 1.0) ** 2
    for kw in ({"num_warps": 2}, {"sweeps": 1}, {"sweeps": 12}, {"num_warps": 4, "sweeps": 3}):
        _check_batch(C, *_solve(C, block_cap=cap, warm_start="entropic", **kw))
    for bad in ({"num_warps": 3}, {"num_warps": 64}, {"sweeps": 0}, {"sweeps": 2.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            tas.solve_lsa(C.to(DEVICE), **bad)


def test_entropic_sweeps_kernel_and_torch_agree(torch_gen):
    # on CUDA the sweeps run fastot's lse_dense kernel; elsewhere the same formula in torch
    x = torch.randn(2, 13, 3, generator=torch_gen, dtype=F64)
    C = (torch.cdist(x, torch.randn(2, 13, 3, generator=torch_gen, dtype=F64) + 1.0) ** 2).to(DEVICE)
    C[0, 3, :5] = float("inf")
    g_kernel = tas._entropic_potentials(C, kernel=True)
    g_torch = tas._entropic_potentials(C, kernel=False)
    assert g_kernel.dtype == F32 and torch.isfinite(g_kernel).all()
    scale = float(C[torch.isfinite(C)].abs().max())
    torch.testing.assert_close(g_kernel, g_torch, rtol=0, atol=1e-5 * scale)


def test_warm_start_state_is_a_valid_start(torch_gen):
    C = torch.rand(3, 15, 15, generator=torch_gen, dtype=F64)
    C[0, :, 4] = float("inf")  # a column nobody may use (infeasible problem)
    C[1, 2, :] = float("inf")  # a row that may use nothing
    for kind in ("columns", "entropic", "auto"):
        v, row4col = tas.warm_start_state(C, kind)
        assert v.dtype == F64 and row4col.dtype == torch.int32 and torch.isfinite(v).all()
        red = C - v[:, None, :]
        for b in range(3):
            owned = torch.nonzero(row4col[b] >= 0).flatten()
            rows = row4col[b, owned].long()
            assert rows.unique().numel() == rows.numel()  # a row owns at most one column
            # an owner is tight at its row minimum: a valid start for the augmenting phase
            torch.testing.assert_close(red[b, rows, owned], red[b, rows].amin(1), rtol=0, atol=0)
    _, _, _, status = _solve(C)
    assert status.tolist() == [tas.STATUS_INFEASIBLE, tas.STATUS_INFEASIBLE, 0]


@pytest.mark.parametrize("cap", CAPS)
@pytest.mark.parametrize("shape", [(2, 18, 18), (1, 7, 20)])
def test_float32_cost_solved_in_float64_is_converting_first(torch_gen, shape, cap):
    # entries convert exactly on load: bit for bit what solving C.double() gives
    C = torch.randn(shape, generator=torch_gen, dtype=F64).to(F32)
    C[0, 1, 2] = float("inf")
    col4row, u, v, status = _solve(C, block_cap=cap, dtype=F64)
    assert u.dtype == v.dtype == F64
    ref = _solve(C.double(), block_cap=cap)
    for got, want in zip((col4row, u, v, status), ref, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    _check_batch(C.double(), col4row, u, v, status)


@pytest.mark.parametrize("cap", CAPS)
def test_batched_equals_loop(torch_gen, cap):
    C = torch.randn(4, 9, 21, generator=torch_gen, dtype=F64)
    col4row, u, v, status = _solve(C, block_cap=cap)
    for b in range(C.shape[0]):
        c1, u1, v1, s1 = _solve(C[b : b + 1], block_cap=cap)
        torch.testing.assert_close(c1[0], col4row[b], rtol=0, atol=0)
        torch.testing.assert_close(u1[0], u[b], rtol=0, atol=0)
        torch.testing.assert_close(v1[0], v[b], rtol=0, atol=0)
        assert int(s1[0]) == int(status[b]) == 0


@pytest.mark.parametrize("cap", CAPS)
@pytest.mark.parametrize("fused", [False, True])
def test_fused_and_separate_reductions_agree(torch_gen, fused, cap):
    # the GPU default picks each step's column with one 4-operand reduction (per chunk in the chunked
    # kernel, carrying the column's row and potential); the interpreter runs such a reduction lane by
    # lane in Python, so it is checked here on small problems only (with cap 16: 2-3 chunks)
    C = torch.randint(0, 5, (2, 9, 21), generator=torch_gen).to(F64)  # ties
    W = torch.rand(1, 5, 40, generator=torch_gen, dtype=F32)
    S = torch.rand(1, 24, 24, generator=torch_gen, dtype=F64)  # square: from the warm start
    for cost, warm in ((C, False), (W, False), (S, True)):
        out = _solve(cost, fused_argmin=fused, warm_start=warm, block_cap=cap)
        _check_batch(cost, *out)
        ref = _solve(cost, fused_argmin=not fused, warm_start=warm, block_cap=cap)
        torch.testing.assert_close(out[0], ref[0], rtol=0, atol=0)  # same tie rules, same answer


def test_kernels_agree_across_block_and_chunks(torch_gen):
    # same algorithm, same tie rules: the register block and the chunked walk give the same optimum
    C = torch.randint(0, 4, (2, 19, 19), generator=torch_gen).to(F64)
    a = _solve(C)
    b = _solve(C, block_cap=16)
    _check_batch(C, *a)
    _check_batch(C, *b)


# -- adversarial instances --------------------------------------------------------------------------


def _adversarial(kind: str, gen: torch.Generator, B: int, r: int, c: int) -> torch.Tensor:
    if kind == "all ties":
        return torch.ones(B, r, c, dtype=F64)
    if kind == "few values":  # integer costs with massive ties
        return torch.randint(0, 3, (B, r, c), generator=gen).to(F64)
    if kind == "integers":
        return torch.randint(-1000, 1000, (B, r, c), generator=gen).to(F64)
    if kind == "dynamic range":  # log-uniform in [1e-6, 1e6]
        return 10.0 ** (12 * torch.rand(B, r, c, generator=gen, dtype=F64) - 6)
    if kind == "nearly degenerate":  # every assignment within ~1e-9 of the others
        a = torch.randn(B, r, 1, generator=gen, dtype=F64)
        b = torch.randn(B, 1, c, generator=gen, dtype=F64)
        return a + b + 1e-9 * torch.rand(B, r, c, generator=gen, dtype=F64)
    if kind == "rank one":  # C_ij = x_i y_j: sorted pairing, many near ties
        x = torch.rand(B, r, 1, generator=gen, dtype=F64)
        y = torch.rand(B, 1, c, generator=gen, dtype=F64)
        return x * y
    raise AssertionError(kind)


KINDS = ["all ties", "few values", "integers", "dynamic range", "nearly degenerate", "rank one"]


@pytest.mark.parametrize("cap", CAPS)
@pytest.mark.parametrize("kind", KINDS)
def test_adversarial(torch_gen, kind, cap):
    C = _adversarial(kind, torch_gen, 2, 18, 18)
    _check_batch(C, *_solve(C, block_cap=cap))
    W = _adversarial(kind, torch_gen, 1, 7, 19)  # rectangular: v stays 0 on unassigned columns
    _check_batch(W, *_solve(W, block_cap=cap))


@pytest.mark.parametrize("kind", ["few values", "integers", "dynamic range"])
def test_adversarial_float32(torch_gen, kind):
    C = _adversarial(kind, torch_gen, 2, 17, 20).to(F32)
    _check_batch(C, *_solve(C))


# -- forbidden pairs, infeasible and invalid problems -----------------------------------------------


@pytest.mark.parametrize("cap", CAPS)
@pytest.mark.parametrize("shape", [(2, 18, 18), (1, 9, 20)])
def test_forbidden_pairs(torch_gen, shape, cap):
    B, r, c = shape
    C = torch.rand(shape, generator=torch_gen, dtype=F64)
    C[torch.rand(shape, generator=torch_gen) < 0.6] = float("inf")
    for b in range(B):  # keep a feasible assignment
        perm = torch.randperm(c, generator=torch_gen)[:r]
        C[b, torch.arange(r), perm] = torch.rand(r, generator=torch_gen, dtype=F64)
    _check_batch(C, *_solve(C, block_cap=cap))


@pytest.mark.parametrize("cap", CAPS)
def test_infeasible_detected_per_problem(torch_gen, cap):
    C = torch.rand(4, 17, 17, generator=torch_gen, dtype=F64)
    C[1, 5, :] = float("inf")  # a row with no allowed column
    C[2, :3, :] = float("inf")  # three rows that may only use two columns (Hall's condition)
    C[2, :3, 4:6] = 1.0
    col4row, u, v, status = _solve(C, block_cap=cap)
    assert status.tolist() == [0, tas.STATUS_INFEASIBLE, tas.STATUS_INFEASIBLE, 0]
    assert (col4row[1:3] == -1).all() and u[1:3].isnan().all() and v[1:3].isnan().all()
    _check_batch(C[[0, 3]], col4row[[0, 3]], u[[0, 3]], v[[0, 3]], status[[0, 3]])


@pytest.mark.parametrize("shape", [(3, 5, 6), (3, 6, 6)])  # rectangular; square (warm start)
def test_invalid_entries_status(torch_gen, shape):
    C = torch.rand(shape, generator=torch_gen, dtype=F64)
    C[0, 1, 2] = float("nan")
    C[2, 4, 0] = float("-inf")
    col4row, u, v, status = _solve(C)
    assert status.tolist() == [tas.STATUS_INVALID, 0, tas.STATUS_INVALID]
    assert (col4row[[0, 2]] == -1).all() and u[[0, 2]].isnan().all() and v[[0, 2]].isnan().all()
    _check_batch(C[1:2], col4row[1:2], u[1:2], v[1:2], status[1:2])


def test_device_path_errors_match_scipy(torch_gen):
    C = torch.rand(6, 6, generator=torch_gen, dtype=F64)
    C[2] = float("inf")
    with pytest.raises(ValueError, match=r"^cost matrix is infeasible$"):
        _device_solve(C)
    nan = torch.rand(4, 4, generator=torch_gen, dtype=F64)
    nan[1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"^matrix contains invalid numeric entries$"):
        _device_solve(nan)
    bad = torch.rand(4, 4, generator=torch_gen, dtype=F64)
    bad[0, 0] = float("inf")  # +inf is invalid when maximising (scipy's convention)
    with pytest.raises(ValueError, match="invalid numeric entries"):
        _device_solve(bad, maximize=True)
    batch = torch.rand(2, 3, 4, 4, generator=torch_gen, dtype=F64)
    batch[1, 2, 0] = float("inf")
    with pytest.raises(ValueError, match=r"infeasible \(problem at batch index \(1, 2\)"):
        _device_solve(batch)


# -- through the op's device path: orientation, maximize, dtypes -------------------------------------


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("shape", [(6, 19), (19, 6), (2, 3, 9, 5), (17, 17)])
def test_device_path_parity(torch_gen, shape, maximize):
    C = torch.randn(shape, generator=torch_gen, dtype=F64)
    if maximize:
        C[..., 0, 1] = float("-inf")  # forbidden when maximising
    row_ind, col_ind, u, v = _device_solve(C, maximize)
    *batch, n, m = shape
    k = min(n, m)
    assert row_ind.shape == col_ind.shape == (*batch, k) and row_ind.dtype == torch.int64
    assert u.shape == (*batch, n) and v.shape == (*batch, m) and u.dtype == F64
    Cn = C.numpy().reshape(-1, n, m)
    rn, cn = row_ind.numpy().reshape(-1, k), col_ind.numpy().reshape(-1, k)
    un, vn = u.numpy().reshape(-1, n), v.numpy().reshape(-1, m)
    for b in range(Cn.shape[0]):
        assert_optimal(Cn[b], rn[b], cn[b], maximize=maximize)
        assert_dual_certificate_any(Cn[b], rn[b], cn[b], un[b], vn[b], maximize=maximize)


@st.composite
def _costs(draw):
    # small integer (tie-heavy) or float costs, any orientation, a batch of 1-2, some forbidden pairs
    B, n, m = draw(st.integers(1, 2)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    elements = draw(st.sampled_from([st.integers(0, 3).map(float), st.floats(-1e3, 1e3, width=64)]))
    C = draw(hnp.arrays(np.float64, (B, n, m), elements=elements))
    if draw(st.booleans()):
        C[draw(hnp.arrays(np.bool_, (B, n, m)))] = np.inf
    return C, draw(st.booleans())


@settings(max_examples=25)
@given(_costs())
def test_device_path_properties(problem):
    C, maximize = problem
    if maximize:
        C = np.where(np.isinf(C), -np.inf, C)  # forbidden when maximising
    feasible = []
    for Cb in C:
        try:
            scipy_lsa(Cb, maximize=maximize)
            feasible.append(True)
        except ValueError:
            feasible.append(False)
    if not all(feasible):
        with pytest.raises(ValueError, match="infeasible"):
            _device_solve(torch.from_numpy(C), maximize)
        return
    row_ind, col_ind, u, v = _device_solve(torch.from_numpy(C), maximize)
    for b in range(C.shape[0]):
        r, c = row_ind[b].numpy(), col_ind[b].numpy()
        assert_optimal(C[b], r, c, maximize=maximize)
        assert_dual_certificate_any(C[b], r, c, u[b].numpy(), v[b].numpy(), maximize=maximize)


@pytest.mark.parametrize(
    "dtype", [torch.bool, torch.int32, torch.int64, torch.float16, torch.bfloat16, torch.float32]
)
def test_device_path_input_dtypes(torch_gen, dtype):
    C = (10 * torch.rand(7, 9, generator=torch_gen, dtype=F64)).to(dtype)
    row_ind, col_ind, u, v = _device_solve(C)
    assert u.dtype == v.dtype == F64  # linear_sum_assignment's solve dtype
    assert_optimal(C.double().numpy(), row_ind.numpy(), col_ind.numpy())


@pytest.mark.parametrize("maximize", [False, True])
def test_device_path_float32_solve(torch_gen, maximize):
    C = torch.rand(3, 13, 11, generator=torch_gen, dtype=F64).to(F32)
    row_ind, col_ind, u, v = _device_solve(C, maximize, solve_dtype=F32)
    assert u.dtype == v.dtype == F32
    for b in range(3):
        Cb = C[b].double().numpy()
        tol = _tol(Cb, F32)
        assert_optimal(Cb, row_ind[b].numpy(), col_ind[b].numpy(), maximize=maximize, tol=tol)
        assert_dual_certificate_any(
            Cb, row_ind[b].numpy(), col_ind[b].numpy(), u[b].numpy(), v[b].numpy(), tol=tol, maximize=maximize
        )


@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (0, 3, 3), (2, 0, 5)])
def test_device_path_empty(shape):
    row_ind, col_ind, u, v = _device_solve(torch.zeros(shape, dtype=F64))
    k = min(shape[-2:])
    assert row_ind.shape == col_ind.shape == (*shape[:-2], k)
    assert u.shape == shape[:-1] and v.shape == (*shape[:-2], shape[-1])


def test_non_contiguous_and_requires_grad(torch_gen):
    C = torch.randn(9, 7, generator=torch_gen, dtype=F64).t().requires_grad_()
    row_ind, col_ind, _, _ = _device_solve(C)
    assert_optimal(C.detach().numpy(), row_ind.numpy(), col_ind.numpy())


# -- launcher contract -------------------------------------------------------------------------------


def test_launcher_empty_and_errors():
    with pytest.raises(ValueError, match="warm_start"):
        tas.solve_lsa(torch.zeros(1, 3, 3, dtype=F64, device=DEVICE), warm_start="sinkhorn")
    for shape in [(0, 3, 3), (2, 0, 3)]:
        col4row, _, v, status = tas.solve_lsa(torch.zeros(shape, dtype=F64, device=DEVICE))
        assert col4row.shape == shape[:2] and v.shape == (shape[0], shape[2])
        assert status.shape == (shape[0],)
    with pytest.raises(TypeError, match="float32 or float64"):
        tas.solve_lsa(torch.zeros(1, 3, 3, dtype=torch.int64, device=DEVICE))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        tas.solve_lsa(np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="r <= c"):
        tas.solve_lsa(torch.zeros(1, 4, 3, dtype=F64, device=DEVICE))
    with pytest.raises(ValueError, match="no narrowing"):
        tas.solve_lsa(torch.zeros(1, 3, 3, dtype=F64, device=DEVICE), dtype=F32)
    with pytest.raises(ValueError, match="block_cap"):
        tas.solve_lsa(torch.zeros(1, 3, 3, dtype=F64, device=DEVICE), block_cap=24)


def test_cpu_tensors_stay_on_the_cpu_kernel():
    # the op's CPU path is the C++ solver whatever is importable; only CUDA costs reach Triton
    assert ops_assignment._cuda_solver(torch.zeros(2, 2)) is None
    assert ops_assignment._triton_solver() is tas.solve_lsa


def test_without_triton_cuda_costs_take_the_host_round_trip(monkeypatch):
    # an unimportable kernel module (e.g. no triton) leaves no solver: the op then copies to the host
    monkeypatch.setitem(sys.modules, "fastot._triton.assignment", None)
    assert ops_assignment._triton_solver() is None
