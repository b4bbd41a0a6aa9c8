"""The C++ kernels' worker pool (csrc/thread_pool.cpp): results independent of the thread count,
concurrent callers (Python threads, GIL released), and a forked child (torch DataLoader workers)."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

from fastot import _C


def _inputs(rng):
    C = rng.random((4, 700, 700)).astype(np.float32)  # enough work for 2 threads
    h = rng.standard_normal((4, 700)).astype(np.float32)
    return C, h, np.ones(4, np.float32)


def test_concurrent_callers(rng):
    C, h, s = _inputs(rng)
    ht = rng.standard_normal((4, 700)).astype(np.float32)
    refs = {False: _C.lse_dense(C, h, s, False, 1), True: _C.lse_dense(C, ht, s, True, 1)}
    costs = rng.random((8, 60, 60))
    lsa_ref = _C.lsa_batch(costs, 1)[0]
    errors: list[str] = []

    def run(transpose: bool) -> None:
        for _ in range(20):
            if not np.array_equal(_C.lse_dense(C, ht if transpose else h, s, transpose, 2), refs[transpose]):
                errors.append(f"lse_dense(transpose={transpose}) differs")
            if not np.array_equal(_C.lsa_batch(costs, 2)[0], lsa_ref):
                errors.append("lsa_batch differs")

    threads = [threading.Thread(target=run, args=(k % 2 == 1,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    assert not errors, errors


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_forked_child_runs_kernels(rng):
    C, h, s = _inputs(rng)
    ref = _C.lse_dense(C, h, s, False, 2)  # the parent's pool has workers now
    pid = os.fork()
    if pid == 0:  # child: a new pool; the parent's workers do not exist here
        ok = np.array_equal(_C.lse_dense(C, h, s, False, 2), ref)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
