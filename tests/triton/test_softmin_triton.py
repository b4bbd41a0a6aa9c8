"""Triton Sinkhorn kernels (``fastot._triton.softmin``) against float64 torch references.

Without a GPU the kernels run on CPU tensors in Triton's interpreter (``conftest.py`` sets
``TRITON_INTERPRET=1``; one 16 x 16 block config there, so the shapes below cross block edges); on a
CUDA machine the same tests run the compiled kernels on CUDA tensors. References are computed in
float64 on the CPU from the very values the kernel saw. float16/bfloat16 inputs are accumulated in
float32: their error must be at most 2x that of a naive same-dtype torch computation.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

pytest.importorskip("triton")

from fastot._triton import softmin
from fastot._triton.softmin import apply_sqeuclidean, lse_dense, lse_sqeuclidean

F32, F64 = torch.float32, torch.float64
INTERPRET = softmin.interpreting()
DEVICES = ["cpu"] if INTERPRET else ["cuda"]
# the interpreter's block is 16 x 16; compiled configs use 32..128
BLOCK = 16 if INTERPRET else 64

# (B, n, m): block + 1, primes, n != m, batch 1 and 3, a single point
SHAPES = [(1, BLOCK + 1, BLOCK), (3, 13, 31), (2, 2 * BLOCK + 3, 7), (1, 1, 1)]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _scale(B: int, gen: torch.Generator) -> torch.Tensor:
    return 0.5 + 3.5 * torch.rand(B, generator=gen, dtype=F64)


def _h(B: int, k: int, gen: torch.Generator) -> torch.Tensor:
    return 2 * torch.randn(B, k, generator=gen, dtype=F64) - math.log(k)


def ref_lse_dense(C: torch.Tensor, h: torch.Tensor, s: torch.Tensor, transpose: bool) -> torch.Tensor:
    C, h, s = C.cpu().to(F64), h.cpu().to(F64), s.cpu().to(F64)
    if transpose:
        return torch.logsumexp(h[:, :, None] - s[:, None, None] * C, dim=1)
    return torch.logsumexp(h[:, None, :] - s[:, None, None] * C, dim=2)


def sqdist64(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x, y = x.cpu().to(F64), y.cpu().to(F64)
    return ((x[:, :, None, :] - y[:, None, :, :]) ** 2).sum(-1)


def ref_lse_sq(x, y, h, s) -> torch.Tensor:
    return ref_lse_dense(sqdist64(x, y), h, s, transpose=False)


def ref_apply(x, y, hr, hc, s, v) -> torch.Tensor:
    C = sqdist64(x, y)
    hr, hc, s, v = (t.cpu().to(F64) for t in (hr, hc, s, v))
    P = torch.exp(hr[:, :, None] + hc[:, None, :] - s[:, None, None] * C)
    return P @ v


def assert_matches(out: torch.Tensor, ref: torch.Tensor, atol: float, rtol: float = 0.0) -> None:
    # -inf must match -inf exactly (assert_close compares non-finite values for equality)
    torch.testing.assert_close(out.cpu().to(F64), ref, atol=atol, rtol=rtol)


def _acc(dtype: torch.dtype) -> torch.dtype:
    return F64 if dtype == F64 else F32


def _atol(dtype: torch.dtype, magnitude: float) -> float:
    """A few dozen units in the last place of the largest term of the sum."""
    unit = 1e-13 if dtype == F64 else 2e-6
    return unit * (1.0 + magnitude)


def _max_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out = out.cpu().to(F64)
    assert torch.equal(torch.isfinite(out), torch.isfinite(ref)), "non-finite entries differ"
    fin = torch.isfinite(ref)
    return float((out[fin] - ref[fin]).abs().max()) if bool(fin.any()) else 0.0


# --------------------------------------------------------------------------------------------------
# lse_dense


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("transpose", [False, True], ids=["rows", "cols"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
def test_lse_dense_matches_reference(device, dtype, transpose, shape, seed):
    gen = _gen(seed)
    B, n, m = shape
    C = 4 * torch.rand(B, n, m, generator=gen, dtype=F64)
    h = _h(B, n if transpose else m, gen)
    s = _scale(B, gen)
    ref = ref_lse_dense(C, h, s, transpose)
    out = lse_dense(C.to(dtype).to(device), h.to(dtype).to(device), s.to(dtype).to(device), transpose)
    assert out.shape == (B, m if transpose else n)
    assert out.dtype == _acc(dtype) and out.device.type == device
    magnitude = float((s[:, None, None] * C).abs().max() + h.abs().max())
    assert_matches(
        out, ref_lse_dense(C.to(dtype), h.to(dtype), s.to(dtype), transpose), _atol(dtype, magnitude)
    )
    assert_matches(out, ref, atol=_atol(dtype, magnitude) if dtype == F64 else 1e-5 * (1 + magnitude))


@pytest.mark.parametrize("transpose", [False, True], ids=["rows", "cols"])
def test_lse_dense_splits_and_strides(device, transpose, seed):
    """The reduced axis cut into chunks (merged afterwards); a non-contiguous C; a scalar scale."""
    gen = _gen(seed)
    B, n, m = 2, 3 * BLOCK + 5, 5 * BLOCK + 3
    base = 4 * torch.rand(B, m, n, generator=gen, dtype=F64)
    C = base.transpose(1, 2)  # (B, n, m), strides (n m, 1, n)
    h = _h(B, n if transpose else m, gen)
    ref = ref_lse_dense(C, h, torch.full((B,), 1.7, dtype=F64), transpose)
    for splits in (None, 2, 3, 50):
        out = lse_dense(C.to(device), h.to(device), 1.7, transpose, splits=splits)
        assert_matches(out, ref, atol=1e-12)


@pytest.mark.parametrize("transpose", [False, True], ids=["rows", "cols"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_lse_dense_low_precision_accumulates_in_fp32(device, dtype, transpose, seed):
    gen = _gen(seed)
    B, n, m = 3, 2 * BLOCK + 1, BLOCK + 7
    C = (4 * torch.rand(B, n, m, generator=gen)).to(dtype)
    h = _h(B, n if transpose else m, gen).to(dtype)
    s = _scale(B, gen).to(dtype)
    ref = ref_lse_dense(C, h, s, transpose)  # float64 from the same low-precision values
    out = lse_dense(C.to(device), h.to(device), s.to(device), transpose)
    assert out.dtype == F32
    Cd, hd, sd = C.to(device), h.to(device), s.to(device)
    if transpose:
        naive = torch.logsumexp(hd[:, :, None] - sd[:, None, None] * Cd, dim=1)
    else:
        naive = torch.logsumexp(hd[:, None, :] - sd[:, None, None] * Cd, dim=2)
    err, naive_err = _max_err(out, ref), _max_err(naive, ref)
    assert naive_err > 0
    assert err <= 2 * naive_err, f"{dtype}: kernel error {err:.3g} vs naive {dtype} error {naive_err:.3g}"


@pytest.mark.parametrize("transpose", [False, True], ids=["rows", "cols"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
def test_lse_dense_forbidden_pairs_and_zero_weights(device, dtype, transpose, seed):
    """+inf costs are terms of 0, -inf weights too; a row with no allowed term gives -inf."""
    gen = _gen(seed)
    B, n, m = 3, BLOCK + 3, 2 * BLOCK + 1
    C = 4 * torch.rand(B, n, m, generator=gen, dtype=F64)
    C[torch.rand(B, n, m, generator=gen) < 0.3] = math.inf
    C[:, 2, :] = math.inf  # an all-forbidden row
    C[:, :, 5] = math.inf  # an all-forbidden column
    C[:, 3, : BLOCK + 1] = math.inf  # a row whose first tiles are all forbidden, the rest not
    C[:, : BLOCK + 1, 7] = math.inf  # the same for a column
    h = _h(B, n if transpose else m, gen)
    h[torch.rand(h.shape, generator=gen) < 0.3] = -math.inf
    h[1] = -math.inf  # a problem whose weights are all zero
    s = _scale(B, gen)
    ref = ref_lse_dense(C, h, s, transpose)
    assert bool(torch.isfinite(ref[0, 7 if transpose else 3]))
    Cd, hd, sd = (t.to(dtype).to(device) for t in (C, h, s))
    for splits in (None, 2):
        out = lse_dense(Cd, hd, sd, transpose, splits=splits).cpu()
        assert not bool(torch.isnan(out).any())
        assert bool((out[:, 5 if transpose else 2] == -math.inf).all())
        assert bool((out[1] == -math.inf).all())
        assert_matches(out, ref, atol=1e-12 if dtype == F64 else 1e-4)


def test_lse_dense_rejects_bad_input(device):
    C = torch.rand(2, 3, 4, device=device)
    with pytest.raises(ValueError, match="h must have shape"):
        lse_dense(C, torch.zeros(2, 3, device=device), 1.0)
    with pytest.raises(ValueError, match="C must have shape"):
        lse_dense(C[0], torch.zeros(2, 4, device=device), 1.0)
    with pytest.raises(TypeError, match="C must be"):
        lse_dense(C.to(torch.int32), torch.zeros(2, 4, device=device), 1.0)
    with pytest.raises(ValueError, match="scale"):
        lse_dense(C, torch.zeros(2, 4, device=device), torch.ones(3, device=device))


# --------------------------------------------------------------------------------------------------
# lse_sqeuclidean

# (B, n, m, d, block_d): d = 1, primes, block + 1, d split into several feature tiles
SQ_SHAPES = [
    (1, BLOCK + 1, BLOCK, 1, None),
    (3, 13, 31, 3, None),
    (2, 2 * BLOCK + 3, 7, 37, 16),  # 3 feature tiles
    (1, 5, BLOCK + 9, 70, None),  # d > 64: feature tiles of 64
]


def _points(B, n, m, d, gen):
    x = torch.randn(B, n, d, generator=gen, dtype=F64)
    y = 0.5 + torch.randn(B, m, d, generator=gen, dtype=F64)
    return x, y


@pytest.mark.parametrize("shape", SQ_SHAPES, ids=str)
@pytest.mark.parametrize("direction", ["rows", "cols"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
def test_lse_sqeuclidean_matches_reference(device, dtype, direction, shape, seed):
    gen = _gen(seed)
    B, n, m, d, block_d = shape
    x, y = _points(B, n, m, d, gen)
    s = _scale(B, gen) / d
    if direction == "cols":  # the column c-transform is the same kernel with x and y swapped
        x, y = y, x
    h = _h(B, y.shape[1], gen)
    xs, ys, hs, ss = (t.to(dtype).to(device) for t in (x, y, h, s))
    out = lse_sqeuclidean(xs, ys, hs, ss, block_d=block_d)
    assert out.shape == (B, x.shape[1]) and out.dtype == _acc(dtype) and out.device.type == device
    x2 = (x * x).sum(-1).amax() + (y * y).sum(-1).amax()
    magnitude = float(s.max() * x2 + h.abs().max())
    assert_matches(out, ref_lse_sq(xs, ys, hs, ss), _atol(dtype, magnitude))


def test_lse_sqeuclidean_agrees_with_geometry(device, seed):
    """The kernels answer fastot.geometry's lse_rows / lse_cols."""
    from fastot.geometry import PointCloudGeometry

    gen = _gen(seed)
    x, y = _points(2, BLOCK + 2, 2 * BLOCK + 1, 4, gen)
    s = _scale(2, gen)
    g, f = _h(2, y.shape[1], gen), _h(2, x.shape[1], gen)
    geom = PointCloudGeometry(x, y)
    xd, yd = x.to(device), y.to(device)
    assert_matches(lse_sqeuclidean(xd, yd, g.to(device), s.to(device)), geom.lse_rows(g, s), 1e-11)
    assert_matches(lse_sqeuclidean(yd, xd, f.to(device), s.to(device)), geom.lse_cols(f, s), 1e-11)


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
def test_lse_sqeuclidean_splits_and_strides(device, dtype, seed):
    gen = _gen(seed)
    B, n, m, d = 2, BLOCK + 5, 6 * BLOCK + 1, 5
    x, y = _points(B, n, m, d, gen)
    h, s = _h(B, m, gen), _scale(B, gen)
    ref = ref_lse_sq(x.to(dtype), y.to(dtype), h.to(dtype), s.to(dtype))
    # non-contiguous points: feature axis with stride 2, batch stride padded
    xs = torch.zeros(B, n, 2 * d, dtype=dtype)[:, :, ::2].copy_(x.to(dtype)).to(device)
    ys = y.to(dtype).transpose(0, 1).contiguous().transpose(0, 1).to(device)
    magnitude = float(s.max() * ((x * x).sum(-1).amax() + (y * y).sum(-1).amax()) + h.abs().max())
    for splits in (None, 2, 5):
        out = lse_sqeuclidean(xs, ys, h.to(dtype).to(device), s.to(dtype).to(device), splits=splits)
        assert_matches(out, ref, _atol(dtype, magnitude))
    # precomputed squared norms give the same answer
    x2, y2 = (xs.to(_acc(dtype)) ** 2).sum(-1), (ys.to(_acc(dtype)) ** 2).sum(-1)
    out = lse_sqeuclidean(xs, ys, h.to(dtype).to(device), s.to(dtype).to(device), x2=x2, y2=y2, splits=2)
    assert_matches(out, ref, _atol(dtype, magnitude))


@pytest.mark.parametrize("direction", ["rows", "cols"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_lse_sqeuclidean_low_precision_accumulates_in_fp32(device, dtype, direction, seed):
    gen = _gen(seed)
    B, n, m, d = 3, BLOCK + 1, 2 * BLOCK + 3, 19
    x, y = (t.to(dtype) for t in _points(B, n, m, d, gen))
    if direction == "cols":
        x, y = y, x
    h = _h(B, y.shape[1], gen).to(dtype)
    s = (_scale(B, gen) / d).to(dtype)
    xd, yd, hd, sd = (t.to(device) for t in (x, y, h, s))
    out = lse_sqeuclidean(xd, yd, hd, sd)
    assert out.dtype == F32
    # naive same-dtype: the geometry's formula evaluated in the input dtype
    x2, y2 = (xd * xd).sum(-1), (yd * yd).sum(-1)
    C = (x2[:, :, None] + y2[:, None, :] - 2 * (xd @ yd.transpose(1, 2))).clamp_min(0)
    naive = torch.logsumexp(hd[:, None, :] - sd[:, None, None] * C, dim=2)
    ref = ref_lse_sq(x, y, h, s)
    err, naive_err = _max_err(out, ref), _max_err(naive, ref)
    assert naive_err > 0
    assert err <= 2 * naive_err, f"{dtype}: kernel error {err:.3g} vs naive {dtype} error {naive_err:.3g}"


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
def test_lse_sqeuclidean_zero_weights(device, dtype, seed):
    gen = _gen(seed)
    B, n, m, d = 3, BLOCK + 2, BLOCK + 5, 2
    x, y = _points(B, n, m, d, gen)
    h = _h(B, m, gen)
    h[torch.rand(h.shape, generator=gen) < 0.4] = -math.inf
    h[0, : BLOCK + 1] = -math.inf  # the first column tiles carry no weight, the rest do
    h[2] = -math.inf  # all zero weights: every row gives -inf
    s = _scale(B, gen)
    out = lse_sqeuclidean(*(t.to(dtype).to(device) for t in (x, y, h, s))).cpu()
    assert bool((out[2] == -math.inf).all()) and bool(torch.isfinite(out[:2]).all())
    magnitude = float(s.max() * ((x * x).sum(-1).amax() + (y * y).sum(-1).amax()) + 2 * math.log(m) + 10)
    assert_matches(out, ref_lse_sq(*(t.to(dtype) for t in (x, y, h, s))), _atol(dtype, magnitude))


@pytest.mark.parametrize("precision", ["tf32", "tf32x3"])
def test_lse_sqeuclidean_precision_option(device, precision, seed):
    """tf32 products (GPU tensor cores) are a kernel option; the interpreter's tl.dot is exact."""
    gen = _gen(seed)
    B, n, m, d = 2, BLOCK + 1, BLOCK + 3, 8
    x, y = _points(B, n, m, d, gen)
    h, s = _h(B, m, gen), _scale(B, gen) / d
    xs, ys, hs, ss = (t.to(F32).to(device) for t in (x, y, h, s))
    out = lse_sqeuclidean(xs, ys, hs, ss, precision=precision)
    norms = float((x * x).sum(-1).amax() + (y * y).sum(-1).amax())
    magnitude = float(s.max()) * norms + float(h.abs().max())
    rel = 4e-3 if (precision == "tf32" and not INTERPRET) else 2e-6
    assert_matches(out, ref_lse_sq(xs, ys, hs, ss), atol=rel * (1 + magnitude))
    with pytest.raises(ValueError, match="precision"):
        lse_sqeuclidean(xs, ys, hs, ss, precision="fp8")
    # float64 always uses exact products whatever precision says
    out64 = lse_sqeuclidean(x.to(device), y.to(device), h.to(device), s.to(device), precision=precision)
    assert_matches(out64, ref_lse_sq(x, y, h, s), 1e-12 * (1 + magnitude))


def test_lse_sqeuclidean_rejects_bad_input(device):
    x, y = torch.rand(2, 3, 4, device=device), torch.rand(2, 5, 4, device=device)
    with pytest.raises(ValueError, match="h must have shape"):
        lse_sqeuclidean(x, y, torch.zeros(2, 3, device=device), 1.0)
    with pytest.raises(ValueError, match="agree"):
        lse_sqeuclidean(x, y[..., :3], torch.zeros(2, 5, device=device), 1.0)
    with pytest.raises(ValueError, match="block_d"):
        lse_sqeuclidean(x, y, torch.zeros(2, 5, device=device), 1.0, block_d=24)
    with pytest.raises(ValueError, match="splits"):
        lse_sqeuclidean(x, y, torch.zeros(2, 5, device=device), 1.0, splits=0)


# --------------------------------------------------------------------------------------------------
# apply_sqeuclidean


@pytest.mark.parametrize(
    "shape",
    [(1, BLOCK + 1, BLOCK, 1, 1), (3, 13, 31, 3, 3), (2, 2 * BLOCK + 3, 7, 37, 70)],  # (B, n, m, d, k)
    ids=str,
)
@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
def test_apply_sqeuclidean_matches_reference(device, dtype, shape, seed):
    gen = _gen(seed)
    B, n, m, d, k = shape
    x, y = _points(B, n, m, d, gen)
    s = _scale(B, gen) / d
    hr, hc = _h(B, n, gen), _h(B, m, gen)
    hr[0, 0] = -math.inf  # a zero-weight row: its output is 0
    hc[:, -1] = -math.inf
    if B > 1:
        hc[-1, : BLOCK + 1] = -math.inf  # the first column tiles carry no weight
    v = torch.randn(B, m, k, generator=gen, dtype=F64)
    args = [t.to(dtype).to(device) for t in (x, y, hr, hc, s, v)]
    out = apply_sqeuclidean(*args, block_d=16 if d > 16 else None)
    assert out.shape == (B, n, k) and out.dtype == _acc(dtype)
    ref = ref_apply(*args)
    assert bool((out[0, 0].cpu() == 0).all())
    unit = 1e-12 if dtype == F64 else 1e-5
    assert_matches(out, ref, atol=unit * float(ref.abs().max()), rtol=unit)
    # P^T u: the same kernel with the roles swapped
    u = torch.randn(B, n, 2, generator=gen, dtype=F64).to(dtype).to(device)
    out_t = apply_sqeuclidean(args[1], args[0], args[3], args[2], args[4], u, splits=2)
    ref_t = ref_apply(args[1], args[0], args[3], args[2], args[4], u)
    assert_matches(out_t, ref_t, atol=unit * float(ref_t.abs().max()), rtol=unit)


def test_apply_sqeuclidean_low_precision_and_marginals(device, seed):
    """bf16 points and vectors accumulate in fp32; P @ 1 equals exp of the row c-transform."""
    gen = _gen(seed)
    B, n, m, d = 2, BLOCK + 3, 3 * BLOCK + 1, 6
    x, y = (t.to(torch.bfloat16) for t in _points(B, n, m, d, gen))
    hr, hc, s = _h(B, n, gen).float(), _h(B, m, gen).float(), (_scale(B, gen) / d).float()
    ones = torch.ones(B, m, 1, dtype=torch.bfloat16)
    args = [t.to(device) for t in (x, y, hr, hc, s, ones)]
    out = apply_sqeuclidean(*args, splits=3)
    assert out.dtype == F32
    ref = ref_apply(*args)
    assert_matches(out, ref, atol=1e-5 * float(ref.abs().max()), rtol=1e-5)
    row_mass = torch.exp(hr.to(F64) + ref_lse_sq(x, y, hc, s))
    assert_matches(out[..., 0], row_mass, atol=1e-5 * float(row_mass.abs().max()), rtol=1e-5)


_LATE_INTERPRET_SCRIPT = """
import os
import triton.language  # imported before TRITON_INTERPRET is set, as a full test session may do
os.environ["TRITON_INTERPRET"] = "1"
import torch
from fastot._triton import apply_sqeuclidean, lse_dense, lse_sqeuclidean
g = torch.Generator().manual_seed(0)
x, y = torch.randn(2, 19, 3, generator=g), torch.randn(2, 21, 3, generator=g)
h, hr = torch.randn(2, 21, generator=g), torch.randn(2, 19, generator=g)
C = ((x[:, :, None] - y[:, None]) ** 2).sum(-1)
ref = torch.logsumexp(h[:, None] - 0.5 * C, 2)
torch.testing.assert_close(lse_sqeuclidean(x, y, h, 0.5), ref, atol=1e-4, rtol=1e-5)
torch.testing.assert_close(lse_dense(C, h, 0.5), ref, atol=1e-4, rtol=1e-5)
P = torch.exp(hr[:, :, None] + h[:, None] - 0.5 * C)
v = torch.randn(2, 21, 2, generator=g)
torch.testing.assert_close(apply_sqeuclidean(x, y, hr, h, 0.5, v), P @ v, atol=1e-4, rtol=1e-4)
print("OK")
"""


@pytest.mark.skipif(not INTERPRET, reason="interpreter only")
def test_interpreter_works_when_triton_was_imported_first():
    """The kernels call no @triton.jit helper of triton.language, which would be compiled-mode
    functions (uncallable in the interpreter) when triton was imported before TRITON_INTERPRET=1."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, "-c", _LATE_INTERPRET_SCRIPT], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stderr[-3000:]


def test_empty_shapes(device):
    """Empty sums give -inf (apply: 0); empty outputs keep their shapes."""
    z = functools.partial(torch.zeros, device=device)
    r = functools.partial(torch.rand, device=device)
    assert bool((lse_dense(r(2, 3, 0), z(2, 0), 1.0).cpu() == -math.inf).all())
    assert lse_dense(r(2, 0, 4), z(2, 4), 1.0).shape == (2, 0)
    assert lse_dense(r(2, 3, 0), z(2, 3), 1.0, transpose=True).shape == (2, 0)
    assert lse_dense(r(0, 3, 4), z(0, 4), z(0)).shape == (0, 3)
    assert bool((lse_sqeuclidean(r(2, 3, 2), r(2, 0, 2), z(2, 0), 1.0).cpu() == -math.inf).all())
    out = lse_sqeuclidean(r(2, 3, 0), r(2, 4, 0), z(2, 4), 1.0)  # d = 0: every cost is 0
    assert_matches(out, torch.full((2, 3), math.log(4), dtype=F64), 1e-6)
    out = apply_sqeuclidean(r(2, 3, 2), r(2, 0, 2), z(2, 3), z(2, 0), 1.0, r(2, 0, 4))
    assert out.shape == (2, 3, 4) and bool((out.cpu() == 0).all())
