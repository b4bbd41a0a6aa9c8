"""fastot.distributed.couple on 2 and 4 CPU processes (gloo backend, file:// rendezvous).

Each world runs once per test session (a module fixture): every rank executes the same list of
scenarios in one process group and saves what it got; the tests then compare the ranks' slices with
the single-process ``fastot.couple`` on the concatenated batch, and check that bad input on one rank
made every rank raise. This file is also the worker script (``python test_distributed.py --worker``);
every wait on a worker has a timeout, so a hang fails the test instead of stalling CI.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch

WORLD_TIMEOUT_S = 120  # the whole world (start-up included); a collective itself times out at 30 s
COLLECTIVE_TIMEOUT_S = 30


# --------------------------------------------------------------------------------------- scenarios
# Each scenario builds a rank's local inputs from a seed, so the test process can rebuild the global
# batch. "ok" scenarios must match fastot.couple on the concatenation; "bad" ones must raise everywhere.


def make_inputs(name: str, rank: int, world: int) -> dict:
    g = torch.Generator().manual_seed(1000 * hash_name(name) + rank)
    if name in ("exact", "exact_again"):
        x0, x1 = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g) + 2.0
        return dict(x0=x0, x1=x1, kwargs=dict(method="exact"))
    if name == "exact_uneven":  # different local sizes (one rank may have none), equal global sizes
        n0, n1 = 3 * rank, 3 * (world - 1 - rank)
        x0 = torch.randn(n0, 2, generator=g, dtype=torch.float64)
        x1 = torch.randn(n1, 2, generator=g, dtype=torch.float64)
        return dict(x0=x0, x1=x1, kwargs=dict(method="exact"))
    if name == "exact_rect_images":  # (n, 2, 3) samples, fewer noise than data samples globally
        x0, x1 = torch.randn(4, 2, 3, generator=g), torch.rand(7, 2, 3, generator=g)
        return dict(x0=x0, x1=x1, kwargs=dict(method="exact"))
    if name == "sinkhorn":
        x0, x1 = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g) * 2.0
        # the pairs are drawn from the plan: a seeded generator (only rank 0's is used)
        # strict=False: these tests are about agreement, not about Sinkhorn's convergence
        kwargs = dict(method="sinkhorn", strict=False, generator=torch.Generator().manual_seed(7))
        return dict(x0=x0, x1=x1, kwargs=kwargs)
    if name == "labels":  # C2OT-style class conditions
        x0, x1 = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
        y1 = torch.randint(0, 3, (6,), generator=g)
        return dict(x0=x0, x1=x1, y0=y1.flip(0), y1=y1, kwargs=dict(method="exact", cond_weight=100.0))
    if name == "embeddings_bf16":  # bfloat16 points and float embeddings travel as raw bytes
        x0 = torch.randn(5, 2, generator=g).bfloat16()
        x1 = torch.randn(5, 2, generator=g).bfloat16()
        y0, y1 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
        return dict(x0=x0, x1=x1, y0=y0, y1=y1, kwargs=dict(method="exact", cond_weight=0.5))
    if name == "labels_hard":  # labels with the default hard constraint (one problem per class)
        x0, x1 = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
        y1 = torch.randint(0, 2, (6,), generator=g)
        return dict(x0=x0, x1=x1, y0=y1.flip(0), y1=y1, kwargs=dict(method="exact"))
    if name == "labels_sinkhorn":  # an entropic plan with a soft condition term
        x0, x1 = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
        y1 = torch.randint(0, 2, (6,), generator=g)
        kwargs = dict(
            method="sinkhorn", cond_weight=2.0, strict=False, generator=torch.Generator().manual_seed(3)
        )
        return dict(x0=x0, x1=x1, y0=y1.flip(0), y1=y1, kwargs=kwargs)
    if name == "subgroup":  # a group of the last two ranks; rank 0 of the world is not in it
        x0, x1 = torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g)
        return dict(x0=x0, x1=x1, kwargs=dict(method="exact"))
    # bad input on one rank (the last one), good input everywhere else
    x0, x1 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    kwargs = dict(method="exact")
    last = rank == world - 1
    if name == "nan_one_rank" and last:
        x0[2, 1] = float("nan")
    elif name == "inf_one_rank" and last:
        x1[0, 0] = float("inf")
    elif name == "shape_one_rank" and last:  # x1 has other sample dims than x0 on that rank
        x1 = torch.randn(5, 4, generator=g)
    elif name == "dims_across_ranks" and last:  # consistent on the rank, different from the others
        x0, x1 = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    elif name == "dtype_across_ranks" and last:
        x0, x1 = x0.double(), x1.double()
    elif name == "int_one_rank" and last:
        x0 = torch.randint(0, 5, (5, 3), generator=g)
    elif name == "labels_length_one_rank":
        n = 4 if last else 5
        y0, y1 = torch.zeros(n, dtype=torch.int64), torch.zeros(5, dtype=torch.int64)
        return dict(x0=x0, x1=x1, y0=y0, y1=y1, kwargs=kwargs)
    elif name == "solve_fails":  # the same bad argument everywhere: raised by the solve on rank 0
        kwargs = dict(method="no-such-method")
    return dict(x0=x0, x1=x1, kwargs=kwargs)


def hash_name(name: str) -> int:
    return sum(ord(c) * (i + 1) for i, c in enumerate(name)) % 997


OK_SCENARIOS = (
    "exact",
    "exact_uneven",
    "exact_rect_images",
    "sinkhorn",
    "labels",
    "labels_hard",
    "labels_sinkhorn",
    "embeddings_bf16",
)
BAD_SCENARIOS = {  # name -> (exception type, words the message must contain)
    "nan_one_rank": (ValueError, ["x0", "non-finite", "rank(s) [{last}]"]),
    "inf_one_rank": (ValueError, ["x1", "non-finite", "rank(s) [{last}]"]),
    "shape_one_rank": (ValueError, ["sample shape", "rank(s) [{last}]"]),
    "dims_across_ranks": (ValueError, ["sample shapes dims differ across ranks: rank(s) [{last}]", "(5, 4)"]),
    "dtype_across_ranks": (ValueError, ["dtypes differ across ranks: rank(s) [{last}]", "torch.float64"]),
    "int_one_rank": (TypeError, ["x0 must have a floating dtype", "rank(s) [{last}]"]),
    "labels_length_one_rank": (ValueError, ["y0 must have shape", "rank(s) [{last}]"]),
    "solve_fails": (ValueError, ["solve on rank 0 failed", "method"]),
}
# "exact_again" runs after every bad scenario: the group is still usable (no rank was left behind).
SCHEDULE = (*OK_SCENARIOS, *BAD_SCENARIOS, "exact_again", "subgroup")


def _run_scenario(name: str, rank: int, world: int) -> dict:
    import torch.distributed as dist

    import fastot.distributed

    group = None
    if name == "subgroup":
        members = list(range(max(0, world - 2), world))
        group = dist.new_group(members)  # every rank must take part in creating it
        if rank not in members:
            return {"skipped": True}
        rank, world = members.index(rank), len(members)
    inp = make_inputs(name, rank, world)
    out = fastot.distributed.couple(
        inp["x0"], inp["x1"], inp.get("y0"), inp.get("y1"), group=group, **inp["kwargs"]
    )
    return {f: getattr(out, f) for f in ("i", "j", "x0", "x1", "y0", "y1", "i_global", "counts0", "counts1")}


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S),
    )
    results = {}
    for name in SCHEDULE:
        try:
            results[name] = ("ok", _run_scenario(name, rank, world))
        except Exception as err:  # recorded, checked by the tests
            results[name] = ("raised", type(err).__name__, str(err))
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def run_world(world: int) -> list[dict]:
    """Start ``world`` worker processes, wait (with a deadline) and load what each rank saved."""
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "rendezvous")
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", str(r), str(world), init_file, tmp],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for r in range(world)
        ]
        logs = []
        try:
            for p in procs:
                out, _ = p.communicate(timeout=WORLD_TIMEOUT_S)
                logs.append(out)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            for p in procs:
                p.communicate(timeout=10)
            raise AssertionError(
                f"a world of {world} ranks did not finish within {WORLD_TIMEOUT_S} s"
            ) from None
        for r, p in enumerate(procs):
            assert p.returncode == 0, f"rank {r} exited with {p.returncode}:\n{logs[r]}"
        return [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=False) for r in range(world)]


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--worker":
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=4)
    rank_s, world_s, init, out_dir = parser.parse_args().worker
    _worker(int(rank_s), int(world_s), init, out_dir)
    sys.exit(0)

# ------------------------------------------------------------------------------------------- tests
import pytest  # noqa: E402

import fastot  # noqa: E402
import fastot.distributed  # noqa: E402


@pytest.fixture(scope="module", params=[2, 4], ids=lambda w: f"world{w}")
def world_results(request):
    return request.param, run_world(request.param)


def _global(name: str, world: int, members: list[int] | None = None) -> dict:
    ranks = members if members is not None else list(range(world))
    local = [make_inputs(name, k, len(ranks)) for k in range(len(ranks))]
    cat = {key: torch.cat([inp[key] for inp in local]) for key in ("x0", "x1", "y0", "y1") if key in local[0]}
    return {"local": local, "cat": cat, "kwargs": local[0]["kwargs"]}


def _expected(name: str, glob: dict):
    cat = glob["cat"]
    extra = {k: cat[k] for k in ("y0", "y1") if k in cat}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an unconverged plan (strict=False) warns
        return fastot.couple(cat["x0"], cat["x1"], **extra, **glob["kwargs"])


@pytest.mark.parametrize("name", [*OK_SCENARIOS, "exact_again"])
def test_slices_match_single_process_couple(world_results, name):
    world, results = world_results
    got = [results[r][name] for r in range(world)]
    for r in range(world):
        assert got[r][0] == "ok", f"rank {r} raised: {got[r][1:]}"
    glob = _global(name, world)
    I, J = _expected(name, glob)
    cat = glob["cat"]
    # every rank's pairs, concatenated in rank order, are the single-process pairs, bit for bit
    torch.testing.assert_close(torch.cat([g[1]["i_global"] for g in got]), I, rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([g[1]["j"] for g in got]), J, rtol=0, atol=0)
    offset = 0
    for r in range(world):
        out, inp = got[r][1], glob["local"][r]
        n0 = inp["x0"].shape[0]
        assert out["counts0"].tolist() == [glob["local"][k]["x0"].shape[0] for k in range(world)]
        assert out["counts1"].tolist() == [glob["local"][k]["x1"].shape[0] for k in range(world)]
        torch.testing.assert_close(out["i"] + offset, out["i_global"], rtol=0, atol=0)
        assert bool(((out["i"] >= 0) & (out["i"] < n0)).all())
        torch.testing.assert_close(out["x0"], inp["x0"][out["i"]], rtol=0, atol=0)
        torch.testing.assert_close(out["x1"], cat["x1"][out["j"]], rtol=0, atol=0)  # exact bytes
        assert out["x1"].dtype == inp["x1"].dtype
        if "y1" in cat:
            torch.testing.assert_close(out["y0"], inp["y0"][out["i"]], rtol=0, atol=0)
            torch.testing.assert_close(out["y1"], cat["y1"][out["j"]], rtol=0, atol=0)
        else:
            assert out["y0"] is None and out["y1"] is None
        offset += n0
    if glob["kwargs"].get("method") == "exact" and cat["x0"].shape[0] == cat["x1"].shape[0]:
        # a permutation of the global data batch: no sample duplicated or dropped anywhere in the job
        j_all = torch.cat([g[1]["j"] for g in got])
        torch.testing.assert_close(j_all.sort().values, torch.arange(cat["x1"].shape[0]), rtol=0, atol=0)


def test_subgroup(world_results):
    world, results = world_results
    members = list(range(max(0, world - 2), world))
    for r in range(world):
        status, out = results[r]["subgroup"][:2]
        assert status == "ok", f"rank {r} raised: {results[r]['subgroup'][1:]}"
        assert out.get("skipped", False) == (r not in members)
    glob = _global("subgroup", world, members)
    I, J = _expected("subgroup", glob)
    torch.testing.assert_close(
        torch.cat([results[r]["subgroup"][1]["j"] for r in members]), J, rtol=0, atol=0
    )
    torch.testing.assert_close(
        torch.cat([results[r]["subgroup"][1]["i_global"] for r in members]), I, rtol=0, atol=0
    )


@pytest.mark.parametrize("name", list(BAD_SCENARIOS))
def test_bad_input_on_one_rank_raises_on_every_rank(world_results, name):
    world, results = world_results
    cls, words = BAD_SCENARIOS[name]
    messages = []
    for r in range(world):
        got = results[r][name]
        assert got[0] == "raised", f"rank {r} did not raise in {name!r}"
        assert got[1] == cls.__name__, f"rank {r} raised {got[1]}: {got[2]}"
        for word in words:
            assert word.format(last=world - 1) in got[2], f"rank {r}: {word!r} not in {got[2]!r}"
        messages.append(got[2])
    assert len(set(messages)) == 1  # every rank gives the same reason


def test_not_initialised_raises():
    x = torch.randn(3, 2)
    with pytest.raises(RuntimeError, match="process group"):
        fastot.distributed.couple(x, x)
