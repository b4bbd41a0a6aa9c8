"""Work model of the GPU assignment solver: augmenting-path steps left by each warm start.

The Triton solver (``fastot/_triton/assignment.py``) runs its augmenting phase in one program per
problem; each Dijkstra step is one pass over a row of ``C`` whose latency (not bandwidth) sets the time
of a large single problem. This script counts those steps, with a NumPy model of the kernel's
algorithm (same tie rules; checked against the kernel's own ``stats`` under the interpreter at small
``n`` with ``--check``), after each candidate warm start:

- ``entropic``: what the solver does (``warm_start_state(..., "entropic")``: Sinkhorn sweeps on the
  whole GPU, then every row takes its cheapest column);
- ``multi-source``: every search starts from all free rows at once and stops at the nearest free
  column (one augmentation per search, as in Hungarian variants that grow one forest);
- ``auction``: a whole-GPU alternative, a Jacobi (parallel-bidding) epsilon-scaling auction started from
  the entropic potentials, then tightened (each row's own column lowered by its slack so it is a row
  minimum) before every row takes its cheapest column. ``rounds`` counts its bidding rounds: each
  is at least two kernel launches on a GPU (bids, then column updates), with no host synchronisation
  only if the round budget is fixed in advance.

The question it answers (issue 4, "choose by measurement"): does a whole-GPU auction shorten the
single-program phase by more than it costs? Run: ``python -m bench.assignment_model [--check]``
(under a minute on 2 cores; writes ``bench/results/assignment_model.csv``).
"""

from __future__ import annotations

import argparse
import csv
import os
import time

import numpy as np
import torch

from fastot._triton.assignment import _rows_take_best, warm_start_state

RESULTS = os.path.join(os.path.dirname(__file__), "results", "assignment_model.csv")


def _state(n: int, v: np.ndarray, row4col: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Own copies of the start (float64 ``v``, int64 ``row4col``) and the implied ``col4row (n,)``."""
    row4col = row4col.astype(np.int64)  # (a copy)
    col4row = np.full(n, -1, np.int64)
    col4row[row4col[row4col >= 0]] = np.flatnonzero(row4col >= 0)
    return v.astype(np.float64), row4col, col4row


def dijkstra_steps(C: np.ndarray, v: np.ndarray, row4col: np.ndarray) -> tuple[int, np.ndarray]:
    """Augment every free row of the square ``C (n, n)`` from column potentials ``v`` and owners
    ``row4col`` (``-1``: free) as the block kernel does; returns (steps, final row4col)."""
    n, m = C.shape
    v, row4col, col4row = _state(n, v, row4col)
    steps = 0
    for f in np.flatnonzero(col4row < 0):
        dist = np.full(m, np.inf)
        pred = np.full(m, f)
        scanned = np.zeros(m, bool)
        i, h = f, 0.0
        while True:
            steps += 1
            x = C[i] - v - h
            upd = (x < dist) & ~scanned
            dist[upd] = x[upd]
            pred[upd] = i
            label = np.where(scanned, np.inf, dist)
            lowest = label.min()
            cand = np.flatnonzero(label == lowest)
            free = cand[row4col[cand] < 0]
            j = free[0] if len(free) else cand[0]  # an unassigned column ends the path on a tie
            if row4col[j] < 0:
                break
            scanned[j] = True
            i = row4col[j]
            h = C[i, j] - v[j] - lowest
        v[scanned] += dist[scanned] - lowest
        while True:  # flip the path
            i = pred[j]
            row4col[j] = i
            j, col4row[i] = col4row[i], j
            if i == f:
                break
    return steps, row4col


def multi_source_steps(C: np.ndarray, v: np.ndarray, row4col: np.ndarray) -> int:
    """Like :func:`dijkstra_steps`, but each search starts from every free row (labels: the least
    reduced cost over them) and augments the path to the nearest free column. Returns the steps (one
    row relaxed per step, the initial relaxation of each free row counted as one)."""
    n, m = C.shape
    v, row4col, col4row = _state(n, v, row4col)
    steps = 0
    while (col4row < 0).any():
        free = np.flatnonzero(col4row < 0)
        red = C[free] - v
        red -= red.min(1, keepdims=True)  # free rows at their own row minimum
        src = red.argmin(0)
        dist = red[src, np.arange(m)]
        pred = free[src]
        steps += len(free)
        scanned = np.zeros(m, bool)
        while True:
            label = np.where(scanned, np.inf, dist)
            lowest = label.min()
            cand = np.flatnonzero(label == lowest)
            open_ = cand[row4col[cand] < 0]
            j = open_[0] if len(open_) else cand[0]
            if row4col[j] < 0:
                break
            steps += 1
            scanned[j] = True
            i = row4col[j]
            x = C[i] - v - (C[i, j] - v[j] - lowest)
            upd = (x < dist) & ~scanned
            dist[upd] = x[upd]
            pred[upd] = i
        v[scanned] += dist[scanned] - lowest
        while j >= 0:  # flip the path back to its free row
            i = pred[j]
            row4col[j] = i
            j, col4row[i] = col4row[i], j
    return steps


def jacobi_auction(C: torch.Tensor, v: torch.Tensor, eps_list: list[float], budget: int | None):
    """Parallel-bidding auction (minimisation) on ``C (n, n)`` from prices ``-v``: each round every free
    row bids for its cheapest column (raising its price by the gap to the second cheapest plus
    epsilon), each column goes to its highest bidder. Returns (prices, col4row, rounds)."""
    n, m = C.shape
    p = -v.clone()
    rows = torch.arange(n)
    row4col = _rows_take_best(C[None], v[None])[0][0].long()
    col4row = torch.full((n,), -1)
    own = row4col >= 0
    col4row[row4col[own]] = torch.arange(m)[own]
    rounds = 0
    for eps in eps_list:
        w = C + p
        slack = w[rows, col4row.clamp_min(0)] - w.min(1).values
        drop = (col4row >= 0) & (slack > eps)  # rows out of eps-complementary slackness start over
        row4col[col4row[drop]] = -1
        col4row[drop] = -1
        r = 0
        while budget is None or r < budget:
            free = (col4row < 0).nonzero().squeeze(1)
            if free.numel() == 0:
                break
            r += 1
            top = (C[free] + p).topk(2, dim=1, largest=False)
            j1 = top.indices[:, 0]
            bid = p[j1] + (top.values[:, 1] - top.values[:, 0]) + eps
            best = torch.full((m,), -torch.inf, dtype=C.dtype).scatter_reduce(0, j1, bid, "amax")
            winner = torch.full((m,), n).scatter_reduce(0, j1, torch.where(bid == best[j1], free, n), "amin")
            cols = (winner < n).nonzero().squeeze(1)
            old = row4col[cols]
            col4row[old[old >= 0]] = -1
            row4col[cols] = winner[cols]
            col4row[winner[cols]] = cols
            p[cols] = best[cols]
        rounds += r
    return p, col4row, rounds


def tightened_start(C: torch.Tensor, p: torch.Tensor, col4row: torch.Tensor):
    """Column potentials in which every auction row's own column is a row minimum (its column's
    potential raised by the row's slack), then the solver's start rule (every row takes its cheapest
    column, a column wanted twice goes to the lower row)."""
    v = -p.clone()
    red = C - v
    u = red.min(1).values
    own = col4row >= 0
    rows = torch.arange(C.shape[0])[own]
    v[col4row[own]] += red[rows, col4row[own]] - u[rows]
    return v, _rows_take_best(C[None], v[None])[0][0]


def check_against_kernel(n: int = 96, d: int = 8) -> None:
    """The model's step count equals the Triton kernel's (interpreter) on a few random problems."""
    os.environ["TRITON_INTERPRET"] = "1"
    from fastot._triton.assignment import solve_lsa

    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        C = (
            torch.cdist(
                torch.randn(n, d, generator=g, dtype=torch.float64),
                torch.randn(n, d, generator=g, dtype=torch.float64),
            )
            ** 2
        )
        stats: dict = {}
        solve_lsa(C[None], warm_start="entropic", block_cap=128, stats=stats)
        v, r4c = warm_start_state(C[None], "entropic", torch.float64)
        steps, _ = dijkstra_steps(C.numpy(), v[0].numpy(), r4c[0].numpy())
        assert steps == int(stats["steps"][0]), (seed, steps, int(stats["steps"][0]))
    print(f"model == kernel step counts (n = {n}, 3 problems, interpreter)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="first check the model against the kernel")
    ap.add_argument("--sizes", default="1024x64,1024x3072,4096x64")
    args = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if args.check:
        check_against_kernel()
    rows = []
    for size in args.sizes.split(","):
        n, d = map(int, size.split("x"))
        g = torch.Generator().manual_seed(n + d)
        C = (
            torch.cdist(
                torch.randn(n, d, generator=g, dtype=torch.float64),
                torch.randn(n, d, generator=g, dtype=torch.float64),
            )
            ** 2
        )
        spread = float((C.amax(1) - C.amin(1)).mean())
        v, r4c = warm_start_state(C[None], "entropic", torch.float64)
        v, r4c = v[0], r4c[0]
        steps, _ = dijkstra_steps(C.numpy(), v.numpy(), r4c.numpy())
        starts = [("entropic", 0, int((r4c < 0).sum()), steps)]
        ms = multi_source_steps(C.numpy(), v.numpy(), r4c.numpy())
        starts.append(("entropic, multi-source", 0, int((r4c < 0).sum()), ms))
        for label, eps_rel, budget in (
            ("auction converged", [1e-5, 1e-7], None),
            ("auction 64 rounds", [1e-6], 64),
        ):
            p, c4r, rounds = jacobi_auction(C, v, [e * spread for e in eps_rel], budget)
            va, ra = tightened_start(C, p, c4r)
            steps, _ = dijkstra_steps(C.numpy(), va.numpy(), ra.numpy())
            starts.append((label, rounds, int((ra < 0).sum()), steps))
        for label, rounds, free, steps in starts:
            row = {
                "n": n,
                "d": d,
                "start": label,
                "auction_rounds": rounds,
                "free_rows": free,
                "steps": steps,
            }
            rows.append(row)
            print(
                f"n={n:5d} d={d:5d} {label:22s} rounds={rounds:6d} free rows={free:5d} steps={steps:6d}",
                flush=True,
            )
    with open(RESULTS, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"{time.time() - t0:.0f} s")
