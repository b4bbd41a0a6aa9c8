"""fastot._C log-sum-exp kernels (the c-transform of log-domain Sinkhorn) against float64 torch.

Accuracy is measured, per output, as |out - ref| with ref = ``torch.logsumexp`` in float64, against
``mag = 1 + max |h - scale * C|`` over the finite terms (the size of the numbers whose rounding the
result inherits):
  * float64: |err| <= 4 eps * mag (measured: at most 0.95 eps * mag, median 0.19);
  * float32: |err| <= 2x the error of a naive float32 torch run on the same inputs + 2 eps * mag
    (measured: at most 0.89 eps * mag, median 0.18; the naive run: 0.81 and 0.17);
  * the vectorised exp: <= 1 eps relative on a dense grid (measured: 0.6-0.8 eps).
Every instruction-set copy in ``_C.available_isas()`` is checked.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastot import _C

ISAS = _C.available_isas()
DTYPES = [np.float32, np.float64]
EXP_LO = {np.float32: -87.0, np.float64: -708.0}  # below: exactly 0
EXP_HI = {np.float32: 88.72, np.float64: 709.78}  # full-range variant: above, +inf

# Shapes (B, n, m) around the kernels' blocks: chunks of 2048/1024 elements along rows, slabs of
# 512/256 columns and blocks of 16 rows for the column direction, vector tails, primes, n or m = 1.
DENSE_SHAPES = [
    (1, 1, 1),
    (3, 1, 7),
    (3, 7, 1),
    (1, 13, 2049),
    (2, 5, 4096),
    (2, 33, 1025),
    (1, 17, 513),
    (1, 131, 257),
    (3, 61, 67),
]
# (B, n, m, d) around the online kernel's tiles: 32-64 rows per task, 768 columns per tile, depth
# blocks of 128 (float32) / 64 (float64), d = 1.
ONLINE_SHAPES = [
    (1, 1, 1, 1),
    (3, 5, 9, 1),
    (1, 65, 769, 3),
    (2, 49, 37, 129),
    (1, 33, 100, 65),
    (3, 7, 11, 16),
]


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def terms(C: np.ndarray, h: np.ndarray, scale: np.ndarray, transpose: bool, dtype=np.float64) -> torch.Tensor:
    """h - scale * C as a (B, n, m) tensor, in ``dtype`` arithmetic (the naive computation)."""
    Ct, ht, st = (torch.from_numpy(np.ascontiguousarray(a, dtype=dtype)) for a in (C, h, scale))
    hb = ht[:, :, None] if transpose else ht[:, None, :]
    return hb - st[:, None, None] * Ct


def lse(v: torch.Tensor, transpose: bool) -> np.ndarray:
    return torch.logsumexp(v, dim=1 if transpose else 2).numpy()


def magnitude(v: torch.Tensor) -> float:
    fin = v[torch.isfinite(v)]
    return 1.0 + (float(fin.abs().max()) if fin.numel() else 0.0)


def check(out: np.ndarray, ref: np.ndarray, dtype, mag: float, naive: np.ndarray | None = None) -> None:
    """-inf exactly where the reference has it; elsewhere within the module docstring's tolerance."""
    assert out.shape == ref.shape
    assert not np.isnan(out).any()
    np.testing.assert_array_equal(np.isneginf(out), np.isneginf(ref))
    fin = np.isfinite(ref)
    eps = float(np.finfo(dtype).eps)
    if dtype == np.float64:
        tol = 4 * eps * mag
    else:
        naive_err = float(np.abs(naive[fin] - ref[fin]).max(initial=0.0))
        tol = 2 * naive_err + 2 * eps * mag
    np.testing.assert_allclose(out[fin], ref[fin], rtol=0, atol=tol)


def dense_inputs(rng, B, n, m, dtype, transpose):
    C = rng.uniform(0.0, 4.0, (B, n, m)).astype(dtype)
    h = rng.normal(0.0, 2.0, (B, n if transpose else m)).astype(dtype)
    scale = rng.uniform(0.5, 5.0, B).astype(dtype)
    return C, h, scale


def run_dense_check(C, h, scale, transpose, dtype, isa):
    out = _C.lse_dense(C, h, scale, transpose, 1, isa)
    assert out.dtype == dtype
    v64 = terms(C, h, scale, transpose)
    naive = lse(terms(C, h, scale, transpose, dtype), transpose) if dtype == np.float32 else None
    check(out, lse(v64, transpose), dtype, magnitude(v64), naive)
    return out


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=str)
def test_dense_matches_torch(rng, isa, dtype, transpose, shape):
    C, h, scale = dense_inputs(rng, *shape, dtype, transpose)
    run_dense_check(C, h, scale, transpose, dtype, isa)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("transpose", [False, True])
def test_dense_forbidden_pairs_and_zero_weights(rng, isa, dtype, transpose):
    B, n, m = 2, 37, 530
    C, h, scale = dense_inputs(rng, B, n, m, dtype, transpose)
    C[rng.random(C.shape) < 0.3] = np.inf
    h[rng.random(h.shape) < 0.2] = -np.inf
    # An all-forbidden output line, and one whose only allowed pairs have zero weight.
    if transpose:
        C[0, :, 5] = np.inf
        C[1, :, 7] = np.inf
        C[1, 3, 7] = 1.0
        h[1, 3] = -np.inf
    else:
        C[0, 5, :] = np.inf
        C[1, 7, :] = np.inf
        C[1, 7, 3] = 1.0
        h[1, 3] = -np.inf
    out = run_dense_check(C, h, scale, transpose, dtype, isa)
    assert out[0, 5] == -np.inf and out[1, 7] == -np.inf
    # Everything forbidden, or every weight zero: -inf everywhere.
    assert np.all(_C.lse_dense(np.full_like(C, np.inf), h, scale, transpose, 1, isa) == -np.inf)
    assert np.all(_C.lse_dense(C, np.full_like(h, -np.inf), scale, transpose, 1, isa) == -np.inf)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("transpose", [False, True])
def test_dense_small_epsilon(rng, isa, dtype, transpose):
    """Costs ~1e4 with scale 1e3 (epsilon = 1e-3): exponents ~ -1e7, no overflow, no NaN."""
    B, n, m = 2, 40, 300
    C = rng.uniform(0.0, 1e4, (B, n, m)).astype(dtype)
    h = rng.uniform(0.0, 1e7, (B, n if transpose else m)).astype(dtype)
    scale = np.array([1e3, 3e2], dtype=dtype)
    out = run_dense_check(C, h, scale, transpose, dtype, isa)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("transpose", [False, True])
def test_dense_long_reductions_float32(rng, isa, transpose):
    """Sums over 60000 terms in float32 stay within 2x the naive float32 error (partial sums)."""
    n, m = (60000, 19) if transpose else (19, 60000)
    C, h, scale = dense_inputs(rng, 1, n, m, np.float32, transpose)
    run_dense_check(C, h, scale, transpose, np.float32, isa)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_threads_identical(rng, dtype):
    # Many tasks in both directions (rows: blocks of rows; columns: slabs of columns).
    C, h, scale = dense_inputs(rng, 2, 300, 1100, dtype, False)
    ht = rng.normal(size=(2, 300)).astype(dtype)
    for isa in ISAS:
        np.testing.assert_array_equal(
            _C.lse_dense(C, h, scale, False, 1, isa), _C.lse_dense(C, h, scale, False, 2, isa)
        )
        np.testing.assert_array_equal(
            _C.lse_dense(C, ht, scale, True, 1, isa), _C.lse_dense(C, ht, scale, True, 2, isa)
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_empty_shapes(dtype):
    s = np.ones(2, dtype)
    for n, m in ((0, 5), (5, 0), (0, 0)):
        C = np.zeros((2, n, m), dtype)
        out = _C.lse_dense(C, np.zeros((2, m), dtype), s)
        assert out.shape == (2, n) and np.all(out == -np.inf)  # m = 0: empty sums
        out_t = _C.lse_dense(C, np.zeros((2, n), dtype), s, transpose=True)
        assert out_t.shape == (2, m) and np.all(out_t == -np.inf)
    out = _C.lse_dense(np.zeros((0, 3, 4), dtype), np.zeros((0, 4), dtype), np.ones(0, dtype))
    assert out.shape == (0, 3)


@pytest.mark.parametrize("transpose", [False, True])
def test_dense_nan_gives_nan(rng, transpose):
    """Documented: NaN in C gives NaN in the outputs that reduce over it (the solver validates inputs)."""
    C, h, scale = dense_inputs(rng, 1, 20, 30, np.float64, transpose)
    C[0, 4, 6] = np.nan
    out = _C.lse_dense(C, h, scale, transpose)
    bad = 6 if transpose else 4
    assert np.isnan(out[0, bad])
    assert np.isfinite(np.delete(out[0], bad)).all()


# ---------------------------------------------------------------------------------------------------
# Online squared-Euclidean cost.


def sqeuclidean64(x: np.ndarray, y: np.ndarray) -> torch.Tensor:
    xt, yt = _t(x), _t(y)
    return ((xt[:, :, None, :] - yt[:, None, :, :]) ** 2).sum(-1)


def naive_sqeuclidean32(x: np.ndarray, y: np.ndarray) -> torch.Tensor:
    """cost_matrix-style float32 expansion |x|^2 + |y|^2 - 2 <x, y>, clamped at 0."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    c = (xt * xt).sum(-1)[:, :, None] + (yt * yt).sum(-1)[:, None, :] - 2 * xt @ yt.transpose(1, 2)
    return c.clamp_min(0)


def run_online_check(x, y, h, scale, dtype, isa, threads=1):
    out = _C.lse_sqeuclidean(x, y, h, scale, threads, isa)
    assert out.dtype == dtype and out.shape == x.shape[:2]
    C64 = sqeuclidean64(x, y)
    v64 = _t(h)[:, None, :] - _t(scale)[:, None, None] * C64
    # The expansion's rounding scales with |x|^2 + |y|^2, not with C: include it in the magnitude.
    xx, yy = (_t(a).pow(2).sum(-1) for a in (x, y))
    mag = magnitude(v64) + float(_t(scale).max()) * float(xx.max() + yy.max()) if x.size and y.size else 1.0
    naive = None
    if dtype == np.float32:
        C32 = naive_sqeuclidean32(x, y)
        hv = torch.from_numpy(h)[:, None, :] - torch.from_numpy(scale)[:, None, None] * C32
        naive = torch.logsumexp(hv, dim=2).numpy()
    check(out, torch.logsumexp(v64, dim=2).numpy(), dtype, mag, naive)
    return out


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ONLINE_SHAPES, ids=str)
def test_sqeuclidean_matches_torch(rng, isa, dtype, shape):
    B, n, m, d = shape
    x = rng.normal(size=(B, n, d)).astype(dtype)
    y = (rng.normal(size=(B, m, d)) + 0.5).astype(dtype)
    h = rng.normal(size=(B, m)).astype(dtype)
    scale = rng.uniform(0.2, 3.0, B).astype(dtype) / d
    run_online_check(x, y, h, scale, dtype, isa)
    # The column direction is the same call with x and y swapped.
    g = rng.normal(size=(B, n)).astype(dtype)
    run_online_check(y, x, g, scale, dtype, isa)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sqeuclidean_zero_weights_and_small_epsilon(rng, isa, dtype):
    B, n, m, d = 2, 70, 800, 5
    x = rng.normal(size=(B, n, d)).astype(dtype) * 30
    y = rng.normal(size=(B, m, d)).astype(dtype) * 30
    h = rng.uniform(0, 1e6, (B, m)).astype(dtype)
    h[rng.random(h.shape) < 0.3] = -np.inf
    scale = np.array([1e3, 10.0], dtype)  # costs ~1e4, epsilon = 1e-3
    out = run_online_check(x, y, h, scale, dtype, isa)
    assert np.isfinite(out).all()
    h[1] = -np.inf  # no weight at all: -inf
    out = _C.lse_sqeuclidean(x, y, h, scale, 1, isa)
    assert np.all(out[1] == -np.inf) and np.isfinite(out[0]).all()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sqeuclidean_self_distance_is_exactly_zero(rng, isa, dtype):
    """Norms and dot products are accumulated alike, so |x_i - x_i|^2 comes out exactly 0: with a huge
    scale only the diagonal term survives and the result is h_i itself."""
    x = (rng.normal(size=(1, 50, 40)) * 10 + 3).astype(dtype)
    h = rng.normal(size=(1, 50)).astype(dtype)
    out = _C.lse_sqeuclidean(x, x.copy(), h, np.array([1e6], dtype), 1, isa)
    np.testing.assert_array_equal(out, h)


@pytest.mark.parametrize("isa", ISAS)
def test_sqeuclidean_long_reductions_float32(rng, isa):
    """Sums over 60000 terms in float32 stay within 2x the naive float32 error (partial sums)."""
    x = rng.normal(size=(1, 19, 3)).astype(np.float32)
    y = rng.normal(size=(1, 60000, 3)).astype(np.float32)
    h = rng.normal(size=(1, 60000)).astype(np.float32)
    run_online_check(x, y, h, np.array([0.3], np.float32), np.float32, isa)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sqeuclidean_threads_identical(rng, dtype):
    x = rng.normal(size=(2, 150, 20)).astype(dtype)
    y = rng.normal(size=(2, 900, 20)).astype(dtype)
    h = rng.normal(size=(2, 900)).astype(dtype)
    s = np.array([0.5, 2.0], dtype)
    for isa in ISAS:
        np.testing.assert_array_equal(
            _C.lse_sqeuclidean(x, y, h, s, 1, isa), _C.lse_sqeuclidean(x, y, h, s, 2, isa)
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_sqeuclidean_empty_shapes(dtype):
    s = np.ones(2, dtype)
    z = np.zeros
    out = _C.lse_sqeuclidean(z((2, 3, 4), dtype), z((2, 0, 4), dtype), z((2, 0), dtype), s)
    assert out.shape == (2, 3) and np.all(out == -np.inf)
    out = _C.lse_sqeuclidean(z((2, 0, 4), dtype), z((2, 5, 4), dtype), z((2, 5), dtype), s)
    assert out.shape == (2, 0)
    # d = 0: every cost is 0, so the result is logsumexp(h).
    h = np.array([[0.5, -1.0, 2.0]] * 2, dtype)
    out = _C.lse_sqeuclidean(np.zeros((2, 4, 0), dtype), np.zeros((2, 3, 0), dtype), h, s)
    ref = np.broadcast_to(torch.logsumexp(_t(h), 1).numpy()[:, None], (2, 4))
    np.testing.assert_allclose(out, ref, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------
# The vectorised exp.


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_accuracy(isa, dtype):
    eps = float(np.finfo(dtype).eps)
    lo, hi = EXP_LO[dtype], EXP_HI[dtype]
    grid = np.linspace(lo, 0.0, 1_000_003)
    # Plus a fine grid on [-1, 0], and points around the range reduction's boundaries (k ln2 / 2).
    near0 = np.arange(-(2**20), 1, dtype=np.int64) * (2.0**-20)
    kinks = (np.arange(-30, 1)[:, None] * np.log(2) / 2 + np.array([-1e-9, 0, 1e-9])).ravel()
    x = np.concatenate([grid, near0, kinks[kinks >= lo]]).astype(dtype)
    ref = np.exp(x.astype(np.longdouble))
    for full in (False, True):
        got = _C._exp_approx(x, full, isa)
        rel = float(np.max(np.abs(got.astype(np.longdouble) / ref - 1)))
        assert rel <= 1.0 * eps, (full, rel / eps)
    # The full-range variant up to the overflow threshold.
    xp = np.linspace(0.0, hi, 200_001).astype(dtype)
    got = _C._exp_approx(xp, True, isa)
    rel = float(np.max(np.abs(got.astype(np.longdouble) / np.exp(xp.astype(np.longdouble)) - 1)))
    assert rel <= 1.0 * eps, rel / eps
    # Special values: -inf and anything below Lo give exactly 0 (never a subnormal), NaN stays NaN.
    special = np.array([-np.inf, lo - 1e-3, -1e30, -0.0, 0.0, np.nan], dtype)
    for full in (False, True):
        got = _C._exp_approx(special, full, isa)
        np.testing.assert_array_equal(got[:5], [0, 0, 0, 1, 1])
        assert np.isnan(got[5])
    got = _C._exp_approx(np.array([hi * 1.0001, np.inf, 1e30], dtype), True, isa)
    assert np.all(got == np.inf)
    # Odd lengths exercise the vector tail; results do not depend on the position in the array.
    y = np.linspace(-20, 0, 37).astype(dtype)
    np.testing.assert_array_equal(_C._exp_approx(y, False, isa)[5:], _C._exp_approx(y[5:], False, isa))


# ---------------------------------------------------------------------------------------------------
# Errors.


def test_bad_input_raises():
    f32, f64 = np.float32, np.float64
    C = np.zeros((2, 3, 4))
    h = np.zeros((2, 4))
    s = np.ones(2)
    with pytest.raises(ValueError, match=r"C must have shape \(B, n, m\)"):
        _C.lse_dense(np.zeros((3, 4)), h, s)
    with pytest.raises(ValueError, match=r"h must have shape \(B, m\) = \(2, 4\)"):
        _C.lse_dense(C, np.zeros((2, 3)), s)
    with pytest.raises(ValueError, match=r"h must have shape \(B, n\) = \(2, 3\)"):
        _C.lse_dense(C, h, s, transpose=True)
    with pytest.raises(ValueError, match=r"scale must have shape \(B,\)"):
        _C.lse_dense(C, h, np.ones(3))
    for bad in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="scale must be positive and finite"):
            _C.lse_dense(C, h, np.array([1.0, bad]))
    with pytest.raises(ValueError, match="num_threads"):
        _C.lse_dense(C, h, s, num_threads=0)
    with pytest.raises(ValueError, match="isa must be 'auto' or one of"):
        _C.lse_dense(C, h, s, isa="sse9")
    # Mixed dtypes and non-contiguous arrays match no overload: TypeError, never a silent copy.
    with pytest.raises(TypeError):
        _C.lse_dense(C.astype(f32), h, s)
    with pytest.raises(TypeError):
        _C.lse_dense(np.zeros((2, 4, 3)).transpose(0, 2, 1), h, s)
    with pytest.raises(TypeError):
        _C.lse_dense(C.astype(np.int64), h.astype(np.int64), s.astype(np.int64))
    x, y = np.zeros((2, 3, 5)), np.zeros((2, 4, 5))
    with pytest.raises(ValueError, match=r"x must have shape \(B, n, d\)"):
        _C.lse_sqeuclidean(np.zeros((3, 5)), y, h, s)
    with pytest.raises(ValueError, match=r"y must have shape \(B, m, d\) with B = 2, d = 5"):
        _C.lse_sqeuclidean(x, np.zeros((2, 4, 6)), h, s)
    with pytest.raises(ValueError, match=r"h must have shape \(B, m\) = \(2, 4\)"):
        _C.lse_sqeuclidean(x, y, np.zeros((2, 3)), s)
    with pytest.raises(ValueError, match="scale must be positive"):
        _C.lse_sqeuclidean(x, y, h, -s)
    with pytest.raises(ValueError, match="isa must be"):
        _C.lse_sqeuclidean(x, y, h, s, isa="")
    with pytest.raises(TypeError):
        _C.lse_sqeuclidean(x.astype(f32), y, h, s)
    assert _C.lse_sqeuclidean(x.astype(f32), y.astype(f32), h.astype(f32), s.astype(f32)).dtype == f32
    assert _C.lse_sqeuclidean(x, y, h, s.astype(f64)).dtype == f64
