"""The examples run (small sizes) and show what they claim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("args", [["--n", "128"], ["--n", "48", "--d", "48"]])
def test_exact_coupling_example(args):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "exact_coupling.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    independent = float(out.split("independent pairs:")[1].split()[0])
    coupled = float(out.split("fastot.couple:")[1].split()[0])
    assert coupled < independent  # the exact coupling shortens the pairs
    assert "compiled step" in out


def test_ot_cfm_2d_quick(tmp_path):
    """The 2-D flow-matching example runs end to end (--quick) and writes its figure and numbers."""
    import csv

    out = tmp_path / "ot_cfm_2d.png"
    stdout = subprocess.run(
        [sys.executable, str(EXAMPLES / "ot_cfm_2d.py"), "--quick", "--threads", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert out.stat().st_size > 10_000  # a real PNG, not an empty file
    assert "W2 to reference samples" in stdout
    with out.with_suffix(".csv").open() as fh:
        rows = list(csv.DictReader(fh))
    value = {(r["coupling"], r["quantity"], r["euler_steps"]): r["value"] for r in rows}
    for coupling in ("independent", "exact OT", "C²OT"):
        for steps in ("1", "4", "16"):
            assert 0 < float(value[coupling, "w2_conditional", steps]) < 100
            assert 0 < float(value[coupling, "w2_marginal", steps]) < 100
        assert float(value[coupling, "step_ms", ""]) > float(value[coupling, "coupling_ms_per_step", ""]) >= 0
    # what the couplings claim, whatever the training: OT pairs are closer than independent ones, and the
    # class constraint costs some of that
    independent = float(value["independent", "pair_cost", ""])
    exact = float(value["exact OT", "pair_cost", ""])
    c2ot = float(value["C²OT", "pair_cost", ""])
    assert exact < c2ot < independent
