"""The solve copies the cost at most once (into one contiguous buffer in the solve dtype) and otherwise
uses O(n + m) memory: measured with tracemalloc, which sees NumPy's and torch's CPU allocations."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

import fastot

N, M = 300, 400  # cost: 960 kB in float64


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def small_overhead() -> int:
    # Outputs, duals and O(n + m) scratch, generously: a few hundred bytes per row/column.
    return 400 * (N + M) + 64 * 1024


@pytest.mark.parametrize("as_tensor", [False, True])
def test_contiguous_float64_is_not_copied(rng, as_tensor):
    cost = rng.random((N, M))
    arg = torch.from_numpy(cost) if as_tensor else cost
    fastot.linear_sum_assignment(arg)  # warm-up: op registration, caches
    assert peak_bytes(lambda: fastot.linear_sum_assignment(arg)) < small_overhead()


@pytest.mark.parametrize(
    "make",
    [
        lambda c: c.astype(np.float32),  # dtype conversion
        lambda c: np.ascontiguousarray(c.T),  # n > m: transposition
        lambda c: (c * 100).astype(np.int32),  # integer input
        lambda c: np.asfortranarray(c),  # layout only
    ],
    ids=["float32", "tall", "int32", "fortran"],
)
@pytest.mark.parametrize("maximize", [False, True])
def test_at_most_one_float64_copy(rng, make, maximize):
    cost = make(rng.random((N, M)))
    fastot.linear_sum_assignment(cost, maximize=maximize)
    one_copy = cost.size * 8
    peak = peak_bytes(lambda: fastot.linear_sum_assignment(cost, maximize=maximize))
    assert one_copy <= peak < one_copy + small_overhead()  # the copy is seen, and it is the only one
