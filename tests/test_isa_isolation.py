"""The built extension holds AVX2/AVX-512 copies of the kernels next to the baseline copy. Code that is
shared between the copies (out-of-line std:: templates: vector growth, thread start-up, ...) is kept
once by the linker; it must be the baseline copy, or a CPU without AVX2 would meet an AVX instruction
outside the dispatch. Checked on the binary: every function outside the fastot::avx2 / fastot::avx512
namespaces (and not instantiated on their types) uses no ymm/zmm register."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess

import pytest

from fastot import _C

pytestmark = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or shutil.which("objdump") is None,
    reason="needs an x86-64 build and binutils' objdump",
)

WIDE = re.compile(r"%[yz]mm\d+")
ISA_SCOPED = ("fastot::avx2::", "fastot::avx512::")


def functions(path: str) -> dict[str, list[str]]:
    text = subprocess.run(
        ["objdump", "-d", "-C", "--no-show-raw-insn", path], capture_output=True, text=True, check=True
    ).stdout
    out: dict[str, list[str]] = {}
    name = None
    for line in text.splitlines():
        header = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if header:
            name = header.group(1)
            out[name] = []
        elif name is not None and line.strip():
            out[name].append(line)
    return out


def test_wide_instructions_only_inside_isa_copies():
    funcs = functions(_C.__file__)
    assert any("fastot::generic::" in f for f in funcs)  # the demangled names are readable
    offenders = [
        name
        for name, body in funcs.items()
        if not any(scope in name for scope in ISA_SCOPED) and any(WIDE.search(ln) for ln in body)
    ]
    assert offenders == []


@pytest.mark.skipif("avx512" not in _C.available_isas(), reason="this CPU does not run the AVX-512 copy")
def test_isa_copies_were_built_and_use_wide_registers():
    funcs = functions(_C.__file__)
    wide = [n for n, body in funcs.items() if "fastot::avx512::" in n and any(WIDE.search(ln) for ln in body)]
    assert wide, "the AVX-512 copy should use ymm/zmm registers"
