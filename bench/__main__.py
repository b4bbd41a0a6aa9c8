"""Command line entry: ``python -m bench [--quick] [--only assignment] [--threads 2]``."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from bench import set_thread_env

# Registered op families: name -> module under bench/. Each module exposes ``run(config) -> int``.
FAMILIES: dict[str, str] = {
    "assignment": "bench.assignment",
    "sinkhorn": "bench.sinkhorn",
    "coupling": "bench.coupling",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small case set, few repeats (~1 minute)")
    parser.add_argument(
        "--only",
        default=",".join(FAMILIES),
        help=f"comma-separated families to run (default: all of {', '.join(FAMILIES)})",
    )
    parser.add_argument("--threads", type=int, default=2, help="threads for every library (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the random inputs")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="folder for the CSV and PNG files (default bench/results)",
    )
    args = parser.parse_args(argv)
    names = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in names if s not in FAMILIES]
    if unknown:
        parser.error(f"--only: unknown family {unknown}; expected some of {list(FAMILIES)}")
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    args.families = names
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preloaded = [m for m in ("numpy", "torch", "scipy") if m in sys.modules]
    set_thread_env(args.threads)  # before NumPy / torch load their thread pools
    from bench import harness

    if preloaded:
        print(f"warning: {preloaded} imported before the thread variables were set", file=sys.stderr)
    config = harness.Config.make(quick=args.quick, threads=args.threads, out_dir=args.out, seed=args.seed)
    harness.configure_threads(args.threads)
    start = time.perf_counter()
    rc = 0
    for name in args.families:
        module = importlib.import_module(FAMILIES[name])
        rc |= module.run(config)
    print(f"\ntotal wall time: {time.perf_counter() - start:.1f} s")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
