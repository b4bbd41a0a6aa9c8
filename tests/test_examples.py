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
