"""Conditional flow matching in 2-D: 8 Gaussians -> two moons, with three couplings of the minibatch.

A small MLP ``v(x, t, y)`` learns to carry samples of 8 Gaussians (the source, independent of any label)
to the two moons, conditioned on the moon label ``y`` (0 = upper moon, 1 = lower moon). Three models
differ only in how each training batch of sources ``x0`` is paired with the data ``(x1, y1)``:

* ``independent``: as drawn (plain conditional flow matching). Correct, but the learned paths cross and
  bend, so few-step sampling is poor.
* ``exact OT``: ``fastot.couple(x0, x1)``, the exact minibatch assignment, ignoring labels (OT-CFM).
  Straight paths; but the sources paired with the upper moon are mostly the upper Gaussians, so the
  model learns ``v(x, t, y=0)`` only from there, and at sampling time, when sources of every Gaussian are
  given a label, the conditional distributions come out wrong (the "curse of conditions" of C²OT).
* ``C²OT``: ``fastot.couple(x0, x1, y0, y1)``: each source gets the label of a data sample (``y0 = y1``,
  which draws source labels from the data's label distribution, independently of the sources), and the
  labels enter the cost as a hard constraint (``cond_weight = inf``: the assignment is solved per
  class). Straight paths and the right conditional distributions.

Reported (and plotted): W2 between generated and fresh reference samples against the number of Euler
steps, per label (conditional) and for both labels together (marginal), computed exactly with
``fastot.linear_sum_assignment``; path straightness ``E sum_k dt |v_k - (x_1 - x_0)|^2`` of the learned
ODE (0 for straight paths); and the time spent in the coupling against the whole training step.

    python examples/ot_cfm_2d.py [--out bench/results/ot_cfm_2d.png] [--steps 4000] [--quick]

Writes the figure to ``--out`` and the numbers to the same path with ``.csv``. CPU, one thread by
default (``--threads``); about a minute per model.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import time
from pathlib import Path

import torch
from torch import nn

import fastot

COUPLINGS = ("independent", "exact OT", "C²OT")
COLOURS = {"independent": "tab:gray", "exact OT": "tab:blue", "C²OT": "tab:red"}


# ------------------------------------------------------------------------------------------- data
def eight_gaussians(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, 2)`` samples of 8 Gaussians on a circle of radius 4 (std 0.3), and their ``(n,)`` component."""
    k = torch.randint(0, 8, (n,), generator=g)
    angle = k * (2 * math.pi / 8)
    centres = 4.0 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return centres + 0.3 * torch.randn(n, 2, generator=g), k


def two_moons(
    n: int, g: torch.Generator, labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, 2)`` samples of two interleaved half circles (scaled by 2.5, centred), and ``(n,)`` labels.

    Label 0: the upper moon ``(cos s, sin s)``; label 1: the lower ``(1 - cos s, 1/2 - sin s)``,
    ``s ~ U(0, pi)``, plus Gaussian noise of std 0.1 (before scaling). ``labels`` fixes the labels.
    """
    y = torch.randint(0, 2, (n,), generator=g) if labels is None else labels
    s = torch.rand(n, generator=g) * math.pi
    upper = torch.stack([torch.cos(s), torch.sin(s)], dim=1)
    lower = torch.stack([1 - torch.cos(s), 0.5 - torch.sin(s)], dim=1)
    x = torch.where(y[:, None] == 0, upper, lower) + 0.1 * torch.randn(n, 2, generator=g)
    return 2.5 * (x - torch.tensor([0.5, 0.25])), y


# ------------------------------------------------------------------------------------------ model
class VelocityField(nn.Module):
    """``v(x, t, y)``: ``(n, 2), (n,), (n,) labels -> (n, 2)``."""

    def __init__(self, width: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 + 1 + 2, width),
            nn.SiLU(),
            nn.Linear(width, width),
            nn.SiLU(),
            nn.Linear(width, width),
            nn.SiLU(),
            nn.Linear(width, 2),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        onehot = nn.functional.one_hot(y, 2).to(x.dtype)
        return self.net(torch.cat([x, t[:, None], onehot], dim=1))


def pair(coupling: str, x0: torch.Tensor, x1: torch.Tensor, y1: torch.Tensor):
    """The training pairs ``(x0, x1, y)`` of one batch under a coupling (``y`` = the data's label)."""
    if coupling == "independent":
        return x0, x1, y1
    if coupling == "exact OT":
        i, j = fastot.couple(x0, x1)
    else:  # C²OT: the sources take the data's labels; labels are a hard constraint (one problem per class)
        i, j = fastot.couple(x0, x1, y1, y1)
    return x0[i], x1[j], y1[j]


def train(coupling: str, steps: int, batch: int, seed: int) -> tuple[VelocityField, dict]:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = VelocityField()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-4)
    t_couple = t_step = pair_cost = 0.0
    for step in range(steps):
        start = time.perf_counter()
        x0, _ = eight_gaussians(batch, g)
        x1, y1 = two_moons(batch, g)
        c0 = time.perf_counter()
        x0, x1, y = pair(coupling, x0, x1, y1)
        c1 = time.perf_counter()
        t = torch.rand(batch, generator=g)
        xt = (1 - t[:, None]) * x0 + t[:, None] * x1
        loss = (model(xt, t, y) - (x1 - x0)).pow(2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        end = time.perf_counter()
        if step >= 10:  # skip the warm-up steps (first custom-op call, allocator)
            t_couple += c1 - c0
            t_step += end - start
        pair_cost += float((x1 - x0).pow(2).sum(1).mean())
    timed = max(1, steps - 10)
    stats = {
        "coupling_ms_per_step": 1e3 * t_couple / timed,
        "step_ms": 1e3 * t_step / timed,
        "pair_cost": pair_cost / steps,
        "final_loss": float(loss.detach()),
    }
    return model, stats


# ------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def euler(model: VelocityField, x0: torch.Tensor, y: torch.Tensor, n_steps: int, keep_path: bool = False):
    """Integrate ``dx/dt = v(x, t, y)`` from ``t = 0`` to 1; returns ``x(1)``, the path, straightness."""
    x, dt = x0.clone(), 1.0 / n_steps
    path, velocities = [x], []
    for k in range(n_steps):
        v = model(x, torch.full((x.shape[0],), k * dt), y)
        velocities.append(v)
        x = x + dt * v
        if keep_path:
            path.append(x)
    # straightness (Liu et al., rectified flow): E sum_k dt |v_k - (x(1) - x(0))|^2, 0 iff straight
    chord = x - x0
    straightness = float(sum(dt * (v - chord).pow(2).sum(1).mean() for v in velocities))
    return x, (torch.stack(path) if keep_path else None), straightness


def w2(a: torch.Tensor, b: torch.Tensor) -> float:
    """Exact W2 between two equal-size empirical measures: sqrt of the optimal mean squared distance."""
    C = fastot.cost_matrix(a.double(), b.double())
    i, j = fastot.linear_sum_assignment(C)
    return math.sqrt(float(C[i, j].mean()))


def evaluate(model: VelocityField, euler_steps: list[int], n_eval: int, seed: int) -> dict:
    """W2 (per label and marginal) against Euler steps, straightness of the finest path, sample paths."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(2).repeat_interleave(n_eval)  # n_eval samples of each label
    x0, _ = eight_gaussians(2 * n_eval, g)
    ref, _ = two_moons(2 * n_eval, g, labels)
    rows = []
    for k in euler_steps:
        x, _, _ = euler(model, x0, labels, k)
        per_label = [w2(x[labels == c], ref[labels == c]) for c in (0, 1)]
        rows.append({"euler_steps": k, "w2_conditional": sum(per_label) / 2, "w2_marginal": w2(x, ref)})
    _, _, straight = euler(model, x0, labels, max(euler_steps))
    _, path, _ = euler(model, x0[::8], labels[::8], 16, keep_path=True)
    return {"w2": rows, "straightness": straight, "path": path, "path_labels": labels[::8]}


def noise_floor(n_eval: int, seed: int) -> float:
    """W2 between two independent reference samples of the same size (what a perfect model would get)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(2).repeat_interleave(n_eval)
    a, _ = two_moons(2 * n_eval, g, labels)
    b, _ = two_moons(2 * n_eval, g, labels)
    return w2(a, b)


# ------------------------------------------------------------------------------------------ output
def write_csv(path: Path, results: dict, floor: float, meta: dict) -> None:
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["coupling", "quantity", "euler_steps", "value"])
        for name, res in results.items():
            for row in res["eval"]["w2"]:
                out.writerow([name, "w2_conditional", row["euler_steps"], f"{row['w2_conditional']:.5f}"])
                out.writerow([name, "w2_marginal", row["euler_steps"], f"{row['w2_marginal']:.5f}"])
            out.writerow(
                [
                    name,
                    "straightness",
                    max(r["euler_steps"] for r in res["eval"]["w2"]),
                    f"{res['eval']['straightness']:.5f}",
                ]
            )
            for key in ("coupling_ms_per_step", "step_ms", "pair_cost", "final_loss"):
                out.writerow([name, key, "", f"{res['train'][key]:.5f}"])
        out.writerow(["reference", "w2_noise_floor", "", f"{floor:.5f}"])
        for key, value in meta.items():
            out.writerow(["meta", key, "", value])


def plot(path: Path, results: dict, floor: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 8.2), constrained_layout=True)
    grid = fig.add_gridspec(2, 3)
    for col, (name, res) in enumerate(results.items()):
        ax = fig.add_subplot(grid[0, col])
        path_xy, labels = res["eval"]["path"], res["eval"]["path_labels"]
        for c, colour in ((0, "tab:orange"), (1, "tab:purple")):
            sel = labels == c
            ax.plot(path_xy[:, sel, 0], path_xy[:, sel, 1], color=colour, alpha=0.25, lw=0.6)
            ax.scatter(path_xy[-1, sel, 0], path_xy[-1, sel, 1], s=3, color=colour, label=f"y = {c}")
        ax.scatter(path_xy[0, :, 0], path_xy[0, :, 1], s=2, color="black", alpha=0.4)
        at16 = next((r for r in res["eval"]["w2"] if r["euler_steps"] == 16), res["eval"]["w2"][-1])
        ax.set_title(
            f"{name}: paths of 16 Euler steps\nW2 per label {at16['w2_conditional']:.3f}, "
            f"straightness {res['eval']['straightness']:.3f}",
            fontsize=10,
        )
        ax.set_aspect("equal")
        ax.set_xlim(-6, 6)
        ax.set_ylim(-6, 6)
        if col == 0:
            ax.legend(loc="lower left", markerscale=4, fontsize=8)

    ax = fig.add_subplot(grid[1, 0:2])
    for name, res in results.items():
        ks = [r["euler_steps"] for r in res["eval"]["w2"]]
        ax.plot(
            ks,
            [r["w2_conditional"] for r in res["eval"]["w2"]],
            "o-",
            color=COLOURS[name],
            label=f"{name}: per label",
        )
        ax.plot(
            ks,
            [r["w2_marginal"] for r in res["eval"]["w2"]],
            "s--",
            color=COLOURS[name],
            alpha=0.7,
            label=f"{name}: both labels",
        )
    ax.axhline(floor, color="black", lw=0.8, ls=":", label="two reference samples")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, top * 3)  # room for the legend above the curves
    ax.set_xlabel("Euler steps")
    ax.set_ylabel("W2 to reference (exact, fastot.linear_sum_assignment)")
    ax.legend(fontsize=8, ncol=3, loc="upper center")
    ax.grid(True, which="both", alpha=0.3)

    ax = fig.add_subplot(grid[1, 2])
    names = list(results)
    coupling = [results[n]["train"]["coupling_ms_per_step"] for n in names]
    rest = [results[n]["train"]["step_ms"] - c for n, c in zip(names, coupling, strict=True)]
    ax.bar(names, rest, color="lightgray", label="rest of the step")
    ax.bar(names, coupling, bottom=rest, color=[COLOURS[n] for n in names], label="coupling")
    for k, n in enumerate(names):
        share = coupling[k] / results[n]["train"]["step_ms"]
        ax.text(
            k,
            rest[k] + coupling[k],
            f"{coupling[k]:.2f} ms\n({share:.0%})",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel("ms per training step")
    ax.set_title("time per training step")
    ax.legend(fontsize=8, loc="lower right")
    ax.margins(y=0.2)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=Path("bench/results/ot_cfm_2d.png"), help="figure path (.png)"
    )
    parser.add_argument("--steps", type=int, default=4000, help="training steps per model")
    parser.add_argument("--batch", type=int, default=256, help="training batch (= OT batch)")
    parser.add_argument("--n-eval", type=int, default=1000, help="generated samples per label for W2")
    # One thread by default: the model is tiny, a second thread does not speed up a step, and when the
    # other core is busy it made steps 10-50x slower here (intra-op threads waiting on each other).
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run (tiny sizes)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.batch, args.n_eval = 60, 64, 64
    euler_steps = [1, 4, 16] if args.quick else [1, 2, 4, 8, 16, 32, 64]
    torch.set_num_threads(args.threads)

    results = {}
    for name in COUPLINGS:
        start = time.perf_counter()
        model, stats = train(name, args.steps, args.batch, args.seed)
        ev = evaluate(model, euler_steps, args.n_eval, seed=args.seed + 1)
        results[name] = {"train": stats, "eval": ev}
        print(
            f"{name:>12}: trained in {time.perf_counter() - start:5.1f} s, "
            f"coupling {stats['coupling_ms_per_step']:.3f} ms of {stats['step_ms']:.3f} ms per step "
            f"({stats['coupling_ms_per_step'] / stats['step_ms']:.0%}), "
            f"mean pair cost {stats['pair_cost']:.2f}, straightness {ev['straightness']:.4f}"
        )
    floor = noise_floor(args.n_eval, seed=args.seed + 2)

    print(f"\nW2 to reference samples (per label / both labels); two reference samples: {floor:.3f}")
    print("Euler steps " + "".join(f"{name:>22}" for name in COUPLINGS))
    for row in range(len(euler_steps)):
        w = [results[n]["eval"]["w2"][row] for n in COUPLINGS]
        cells = "".join(f"{r['w2_conditional']:>12.3f} /{r['w2_marginal']:>7.3f}" for r in w)
        print(f"{euler_steps[row]:>11} {cells}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "steps": args.steps,
        "batch": args.batch,
        "n_eval_per_label": args.n_eval,
        "threads": args.threads,
        "torch": torch.__version__,
        "fastot": fastot.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "load_average_1min_at_end": f"{os.getloadavg()[0]:.2f}",  # other work on the machine skews times
    }
    write_csv(args.out.with_suffix(".csv"), results, floor, meta)
    title = (
        f"Conditional flow matching, 8 Gaussians → two moons: {args.steps} steps of batch {args.batch} "
        f"per model, CPU ({args.threads} thread{'s' if args.threads > 1 else ''}); "
        f"W2 on {args.n_eval} samples per label"
    )
    plot(args.out, results, floor, title)
    print(f"\nwrote {args.out} and {args.out.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
