"""fastot._C fused Sinkhorn step (``sinkhorn_step_dense`` / ``sinkhorn_step_sqeuclidean``) against a
float64 torch composition of the two c-transforms:

    S[b, i] = LSE_j (hg[b, j] - sf[b] C[b, i, j]);   f = min(coef[b] S, cap)
    T[b, j] = LSE_i (log_a[b, i] + sg[b] f[b, i] - sg[b] C[b, i, j])

Tolerances as in tests/test_C_softmin.py: relative to ``1 + max |exponent|`` (the size of the numbers
whose rounding the result inherits), a few eps in float64; for float32, T also inherits the rounding of
f (|coef| * eps * |S| relative to epsilon), so it gets 2x the naive float32 composition's error.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastot import _C

ISAS = _C.available_isas()
DTYPES = [np.float32, np.float64]
EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}

# (B, n, m, d) around the blocks: dense panels of 256 kB (R = 64 rows at m = 1024 in float32),
# 16 column-accumulator groups per problem, online row blocks of whole micro-tiles, vector tails, n or
# m = 1, many row blocks per group (n = 2100 at m = 1500).
SHAPES = [
    (1, 1, 1, 1),
    (3, 1, 7, 2),
    (3, 7, 1, 2),
    (2, 33, 1025, 3),
    (1, 2100, 1500, 2),
    (4, 61, 67, 17),
    (1, 130, 777, 65),
    (2, 9, 4100, 5),
]


def make(rng, B, n, m, d, dtype, *, with_cap=False, zero_weights=False):
    x = rng.standard_normal((B, n, d))
    y = rng.standard_normal((B, m, d))
    a = rng.random((B, n)) + 0.05
    if zero_weights:
        a[:, ::3] = 0
    a = a / a.sum(1, keepdims=True)
    inputs = dict(
        hg=rng.standard_normal((B, m)) * 3,
        sf=rng.random(B) + 0.5,
        log_a=np.log(a, out=np.full_like(a, -np.inf), where=a > 0),
        coef=-(rng.random(B) + 0.5),
        sg=rng.random(B) + 0.5,
    )
    cap = rng.standard_normal((B, n)) + 2 if with_cap else None
    cast = {k: v.astype(dtype) for k, v in inputs.items()}
    return x.astype(dtype), y.astype(dtype), cast, None if cap is None else cap.astype(dtype)


def reference(C, hg, sf, log_a, coef, sg, cap, dtype=np.float64):
    """The composition in ``dtype`` torch arithmetic; returns (S, T, mag_S, mag_T)."""
    t = lambda a: torch.from_numpy(np.asarray(a, dtype=dtype))  # noqa: E731
    C, hg, sf, log_a, coef, sg = map(t, (C, hg, sf, log_a, coef, sg))
    vS = hg[:, None, :] - sf[:, None, None] * C
    S = torch.logsumexp(vS, 2)
    f = coef[:, None] * S
    if cap is not None:
        f = torch.minimum(f, t(cap))
    vT = (log_a + sg[:, None] * f)[:, :, None] - sg[:, None, None] * C
    T = torch.logsumexp(vT, 1)
    fin = lambda v, dim: torch.where(torch.isfinite(v), v.abs(), 0).amax(dim)  # noqa: E731
    return S, T, 1 + fin(vS, 2), 1 + fin(vT, 1)


def sqdist(x, y):
    return ((x[:, :, None, :].astype(np.float64) - y[:, None, :, :]) ** 2).sum(-1)


def check(dtype, got, x, y, inputs, cap, C):
    S, T = (torch.from_numpy(np.asarray(v, dtype=np.float64)) for v in got)
    S0, T0, magS, magT = reference(C, **inputs, cap=cap)
    if dtype == np.float64:
        torch.testing.assert_close(S, S0, rtol=0, atol=float((8 * EPS[dtype] * magS).max()))
        torch.testing.assert_close(T, T0, rtol=0, atol=float((8 * EPS[dtype] * magT).max()))
        return
    # float32: at most 2x the naive float32 composition's error (+ a few eps of the magnitudes).
    S32, T32, _, _ = reference(C.astype(np.float32), **inputs, cap=cap, dtype=np.float32)
    naive_S = (S32.double() - S0).abs().max()
    naive_T = (T32.double() - T0).abs().max()
    assert (S - S0).abs().max() <= 2 * naive_S + 4 * EPS[dtype] * magS.max()
    assert (T - T0).abs().max() <= 2 * naive_T + 4 * EPS[dtype] * magT.max()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("one_temperature", [False, True])
def test_dense_step_matches_composition(rng, isa, dtype, shape, one_temperature):
    """one_temperature (sf == sg, every step but those of epsilon scaling): the column pass reuses the
    row pass's exponentials."""
    x, y, inputs, cap = make(rng, *shape, dtype, with_cap=shape[1] % 2 == 1)
    if one_temperature:
        inputs["sg"] = inputs["sf"].copy()
    C = sqdist(x, y).astype(dtype)
    got = _C.sinkhorn_step_dense(C, **inputs, cap=cap, num_threads=2, isa=isa)
    check(dtype, got, x, y, inputs, cap, C)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_sqeuclidean_step_matches_composition(rng, isa, dtype, shape):
    x, y, inputs, cap = make(rng, *shape, dtype, with_cap=shape[1] % 2 == 0)
    got = _C.sinkhorn_step_sqeuclidean(x, y, **inputs, cap=cap, num_threads=2, isa=isa)
    # The kernel's cost is max(0, |x|^2 + |y|^2 - 2 <x, y>) in the input precision: compare with the
    # exact cost, the difference being what that formula costs (a few eps of |x|^2 + |y|^2).
    check(dtype, got, x, y, inputs, cap, sqdist(x, y))


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_weights_and_forbidden_pairs(rng, dtype):
    x, y, inputs, _cap = make(rng, 2, 40, 300, 3, dtype, zero_weights=True)
    C = sqdist(x, y)
    C[:, 1, :7] = np.inf
    C[:, 3:9, 5] = np.inf
    C = C.astype(dtype)
    S, T = _C.sinkhorn_step_dense(C, **inputs, num_threads=2)
    assert np.isfinite(S).all() and np.isfinite(T).all()
    check(dtype, (S, T), x, y, inputs, None, C)


@pytest.mark.parametrize("dtype", DTYPES)
def test_inactive_problems_are_skipped(rng, dtype):
    x, y, inputs, _cap = make(rng, 4, 30, 50, 4, dtype)
    C = sqdist(x, y).astype(dtype)
    active = np.array([1, 0, 1, 0], dtype=np.uint8)
    for got in (
        _C.sinkhorn_step_dense(C, **inputs, active=active),
        _C.sinkhorn_step_sqeuclidean(x, y, **inputs, active=active),
    ):
        full = _C.sinkhorn_step_dense(C, **inputs)
        for out, ref in zip(got, full, strict=True):
            assert np.isnan(out[active == 0]).all()
            np.testing.assert_allclose(
                out[active == 1], ref[active == 1], rtol=1e-5 if dtype == np.float32 else 1e-12
            )


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_identical(rng, dtype):
    x, y, inputs, _ = make(rng, 2, 1100, 700, 9, dtype)
    C = sqdist(x, y).astype(dtype)
    for fn, args in ((_C.sinkhorn_step_dense, (C,)), (_C.sinkhorn_step_sqeuclidean, (x, y))):
        one = fn(*args, **inputs, num_threads=1)
        for k in (2, 3):
            for a, b in zip(one, fn(*args, **inputs, num_threads=k), strict=True):
                np.testing.assert_array_equal(a, b)


def test_row_output_matches_lse_kernels_bitwise(rng):
    """S is the same row reduction as lse_dense / lse_sqeuclidean (same kernel, same order)."""
    x, y, inputs, _ = make(rng, 2, 70, 900, 5, np.float32)
    C = sqdist(x, y).astype(np.float32)
    S, _ = _C.sinkhorn_step_dense(C, **inputs)
    np.testing.assert_array_equal(S, _C.lse_dense(C, inputs["hg"], inputs["sf"], False))
    S, _ = _C.sinkhorn_step_sqeuclidean(x, y, **inputs)
    np.testing.assert_array_equal(S, _C.lse_sqeuclidean(x, y, inputs["hg"], inputs["sf"]))


def test_bad_arguments(rng):
    x, y, inputs, _ = make(rng, 2, 5, 6, 3, np.float64)
    C = sqdist(x, y)
    with pytest.raises(ValueError, match="hg must have shape"):
        _C.sinkhorn_step_dense(C, **{**inputs, "hg": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="log_a must have shape"):
        _C.sinkhorn_step_dense(C, **{**inputs, "log_a": np.zeros((1, 5))})
    with pytest.raises(ValueError, match="scale must be positive"):
        _C.sinkhorn_step_dense(C, **{**inputs, "sg": -inputs["sg"]})
    with pytest.raises(ValueError, match="cap must have shape"):
        _C.sinkhorn_step_dense(C, **inputs, cap=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="y must have shape"):
        _C.sinkhorn_step_sqeuclidean(x, np.ascontiguousarray(y[:, :, :2]), **inputs)
    with pytest.raises(TypeError):
        _C.sinkhorn_step_dense(C.astype(np.float32), **inputs)  # mixed dtypes: no silent conversion


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_plan_dot_matches_float64(rng, isa, dtype, shape):
    """<P, C> with P = exp(hr_i + hc_j - s C_ij): exponents of both signs (an unconverged plan)."""
    B, n, m, d = shape
    x, y = rng.standard_normal((B, n, d)), rng.standard_normal((B, m, d))
    hr, hc, s = rng.standard_normal((B, n)), rng.standard_normal((B, m)), rng.random(B) + 0.5
    C = sqdist(x, y)
    C[:, 0, 0] = np.inf  # a forbidden pair counts 0
    P = np.exp(hr[:, :, None] + hc[:, None, :] - s[:, None, None] * C)
    want = np.where(P > 0, P * np.where(np.isfinite(C), C, 0), 0).sum((1, 2))
    cast = lambda *a: [v.astype(dtype) for v in a]  # noqa: E731
    got = _C.plan_dot_dense(*cast(C, hr, hc, s), num_threads=2, isa=isa)
    # Each term inherits the rounding of its exponent: relative error ~ eps * |exponent|.
    v = hr[:, :, None] + hc[:, None, :] - s[:, None, None] * np.where(np.isfinite(C), C, 0)
    rtol = 8 * EPS[dtype] * (1 + float(np.abs(v).max()))
    np.testing.assert_allclose(got, want, rtol=rtol)
    # Online: the kernel's own cost formula (no forbidden pairs there).
    C[:, 0, 0] = ((x[:, 0] - y[:, 0]) ** 2).sum(-1)
    P = np.exp(hr[:, :, None] + hc[:, None, :] - s[:, None, None] * C)
    got = _C.plan_dot_sqeuclidean(*cast(x, y, hr, hc, s), num_threads=2, isa=isa)
    np.testing.assert_allclose(got, (P * C).sum((1, 2)), rtol=rtol * (1 if dtype == np.float64 else 4))


def test_plan_dot_threads_identical(rng):
    x, y = rng.standard_normal((2, 900, 7)), rng.standard_normal((2, 800, 7))
    hr, hc, s = rng.standard_normal((2, 900)), rng.standard_normal((2, 800)), rng.random(2) + 0.5
    C = sqdist(x, y)
    for fn, args in ((_C.plan_dot_dense, (C,)), (_C.plan_dot_sqeuclidean, (x, y))):
        np.testing.assert_array_equal(
            fn(*args, hr, hc, s, num_threads=1), fn(*args, hr, hc, s, num_threads=3)
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_temperature_far_columns_and_zero_weights(rng, dtype):
    """Columns whose terms all vanish relative to their rows' maxima (a far-away point, b_j = 0:
    hg_j = -inf) are recomputed exactly, not returned as -inf."""
    x, y, inputs, _ = make(rng, 2, 50, 70, 3, dtype)
    y[:, 5] += 40.0  # far from every x: exp(-s C) is below the floor relative to each row's max
    inputs["hg"][:, 9] = -np.inf  # a zero weight
    inputs["sg"] = inputs["sf"].copy()
    C = sqdist(x, y).astype(dtype)
    S, T = _C.sinkhorn_step_dense(C, **inputs, num_threads=2)
    assert np.isfinite(S).all() and np.isfinite(T).all()
    check(dtype, (S, T), x, y, inputs, None, C)
