"""Yosys scripts per target and the parsing of ``stat -json`` into area figures.

Targets
-------
generic
    ``synth -flatten``; flip-flops legalised to plain D flip-flops
    (``dfflegalize``: enables and synchronous resets become gates in front of
    them); ``abc -g`` maps the logic onto simple 2-input gates and 2:1 muxes.
    Reported: cell counts by type, ``stat -tech cmos`` transistor estimate,
    and kGE (thousands of NAND2 equivalents, weights :data:`GATE_WEIGHTS`).
    With a Liberty file: ``dfflibmap`` + ``abc -liberty`` onto its cells and
    the area in its units (µm² for every common library) from ``stat -liberty``.
ecp5 / ice40 / xilinx
    ``synth_ecp5`` / ``synth_ice40`` / ``synth_xilinx -family xc7``; LUTs, FFs,
    carry cells, block RAMs, DSPs (:data:`FPGA_CELLS`).
"""

from __future__ import annotations

import json
import os
import re
import shutil

from .tools import ToolError, run, yosys

__all__ = ["TARGETS", "GATE_WEIGHTS", "FPGA_CELLS", "yosys_script", "synthesize", "parse_stat", "metrics_from_cells", "memory_bits"]

TARGETS = ("generic", "ecp5", "ice40", "xilinx")

#: NAND2-equivalent weights of the generic gate cells (NAND2 = 1 GE).  Rounded
#: area ratios of the like cells of a typical open 45 nm standard-cell library
#: (e.g. INV 0.53 µm², NAND2 0.80, AND2 1.06, XOR2 1.60, MUX2 1.86, DFF 4.52,
#: DFF with reset 5.32).  A D flip-flop counts 5.67 GE; its enable and
#: synchronous reset are in the gate counts (dfflegalize).  Approximate: for a
#: real library's figures pass --liberty.
GATE_WEIGHTS = {
    "$_BUF_": 1.0, "$_NOT_": 0.67,
    "$_NAND_": 1.0, "$_NOR_": 1.0,
    "$_AND_": 1.33, "$_OR_": 1.33, "$_ANDNOT_": 1.33, "$_ORNOT_": 1.33,
    "$_XOR_": 2.0, "$_XNOR_": 2.0,
    "$_MUX_": 2.33, "$_NMUX_": 2.33,
    "$_AOI3_": 1.33, "$_OAI3_": 1.33, "$_AOI4_": 1.67, "$_OAI4_": 1.67,
    "$_DFF_P_": 5.67, "$_DFF_N_": 5.67,
    "$_DFF_PP0_": 6.67, "$_DFF_PP1_": 6.67, "$_DFF_PN0_": 6.67, "$_DFF_PN1_": 6.67,
}
_GENERIC_GATES = "AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX"

#: ABC commands for mapping onto a Liberty library for area (commas are spaces).
ABC_AREA_SCRIPT = "strash;dc2;dch,-f;map,-a;topo"
#: The RTLIL dump of the memories left unmapped in a Liberty flow (see :func:`memory_bits`).
MEMORY_DUMP = "memories.il"

#: FPGA cell type -> metric.  A cell matching none is listed under "other".
FPGA_CELLS = {
    "ecp5": [
        ("lut", r"^LUT4$"), ("carry", r"^CCU2[CD]$"), ("ff", r"^TRELLIS_FF$"),
        ("lutram", r"^TRELLIS_DPR16X4$"), ("bram", r"^DP16KD$|^PDPW16KD$"),
        ("dsp", r"^MULT18X18D$|^ALU54B$"), ("mux", r"^PFUMX$|^L6MUX21$"), ("io", r"^TRELLIS_IO$"),
    ],
    "ice40": [
        ("lut", r"^SB_LUT4$"), ("carry", r"^SB_CARRY$"), ("ff", r"^SB_DFF"),
        ("bram", r"^SB_RAM40_4K"), ("dsp", r"^SB_MAC16$"), ("io", r"^SB_IO"),
    ],
    "xilinx": [
        ("lut", r"^LUT[1-6](_2)?$|^INV$"), ("carry", r"^CARRY[48]$"), ("ff", r"^FD[CPRSE]+$"),
        ("lutram", r"^RAM\d+[MSX]"), ("srl", r"^SRL"), ("bram", r"^RAMB(18|36)"),
        ("dsp", r"^DSP48"), ("mux", r"^MUXF[78]$"), ("io", r"^[IO]BUF"), ("clkbuf", r"^BUFG"),
    ],
}


def yosys_script(target: str, verilog: str, top: str, stat_json: str, *, liberty: str | None = None,
                 netlist_json: str | None = None) -> str:
    """The Yosys script for ``target`` (one command per line)."""
    lines = [f"read_verilog {verilog}", f"hierarchy -check -top {top}"]
    if target == "generic":
        if liberty:
            # Memories stay $mem_v2 cells (synth's fine stage without memory_map): an ASIC
            # would use SRAM macros, so they are reported in bits (MEMORY_DUMP), not as
            # flip-flops in the logic area.  ABC maps for area with `map -a` on the
            # library's cells (the default `&nf` script needs delay tables, which an
            # area-only library has not).
            lines += [f"synth -flatten -top {top} -run :fine", "opt -fast -full", "techmap", "opt -fast",
                      f"tee -q -o {MEMORY_DUMP} dump t:$mem_v2",
                      f"dfflibmap -liberty {liberty}",
                      f'abc -liberty {liberty} -script "+{ABC_AREA_SCRIPT}"', "opt_clean",
                      f"tee -q -o {stat_json} stat -json -liberty {liberty}"]
        else:
            # Memories are kept as $mem_v2 cells and reported in bits apart from the
            # logic (an ASIC puts them in SRAM macros or register files): the kGE
            # figure is logic and flip-flops only.
            lines += [f"synth -flatten -top {top} -run :fine", "opt -fast -full", "techmap", "opt -fast",
                      f"tee -q -o {MEMORY_DUMP} dump t:$mem_v2"]
            lines += ["dfflegalize -cell $_DFF_P_ 01 -cell $_DFF_PP0_ 01 -cell $_DFF_PP1_ 01",
                      f"abc -g {_GENERIC_GATES}", "opt_clean",
                      f"tee -q -o {stat_json} stat -json -tech cmos"]
    elif target in ("ecp5", "ice40"):
        out = f" -json {netlist_json}" if netlist_json else ""
        lines += [f"synth_{target} -top {top}{out}", f"tee -q -o {stat_json} stat -json"]
    elif target == "xilinx":
        lines += [f"synth_xilinx -flatten -noiopad -family xc7 -top {top}", f"tee -q -o {stat_json} stat -json"]
    else:
        raise ValueError(f"unknown target {target!r} (one of {', '.join(TARGETS)})")
    return "\n".join(lines) + "\n"


def parse_stat(text: str, top: str | None = None) -> dict:
    """The top module's record of ``stat -json`` output.

    Accepts the whole file (possibly with log lines before the JSON object).
    Returns ``{"cells": {type: count}, "num_cells": int, "transistors": int|None,
    "transistors_partial": bool, "area": float|None}``, the cell type names
    without Yosys' leading backslash.
    """
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in the stat output")
    try:
        obj = json.loads(text[start:])
    except json.JSONDecodeError as exc:
        raise ValueError(f"stat output is not JSON: {exc}")
    mods = obj.get("modules") or {}
    rec = None
    if top is not None:
        rec = mods.get("\\" + top) or mods.get(top)
    if rec is None:
        rec = obj.get("design")
    if rec is None and len(mods) == 1:
        rec = next(iter(mods.values()))
    if rec is None:
        raise ValueError("stat output has neither the top module nor a design summary")
    raw = rec.get("num_cells_by_type") or {}
    # $scopeinfo cells only carry hierarchy names for debugging: not logic.
    cells = {k.lstrip("\\"): int(v) for k, v in raw.items() if not k.startswith("$scopeinfo")}
    tr = rec.get("estimated_num_transistors")
    partial = isinstance(tr, str) and tr.endswith("+")
    if isinstance(tr, str):
        m = re.match(r"\d+", tr)
        tr = int(m.group(0)) if m else None
    area = rec.get("area")
    seq = rec.get("sequential_area")
    return {"cells": cells, "num_cells": int(rec.get("num_cells", sum(cells.values()))),
            "transistors": tr, "transistors_partial": partial,
            "area": float(area) if area is not None else None,
            "sequential_area": float(seq) if seq is not None else None}


def metrics_from_cells(target: str, stat: dict, *, liberty: bool = False) -> dict:
    """Area metrics of one target from :func:`parse_stat`'s record (``liberty``: mapped onto a library)."""
    cells = stat["cells"]
    if target == "generic":
        out = {"cells": sum(cells.values()), "ff": sum(n for c, n in cells.items() if c.startswith("$_DFF") or c.startswith("$_SDFF")),
               "transistors": stat["transistors"]}
        if liberty or (stat["area"] is not None and any(not c.startswith("$") for c in cells)):
            # Library cells; memories ($mem_v2) are left out of the logic and reported in bits.
            lib = {c: n for c, n in cells.items() if not c.startswith("$mem")}
            out["cells"] = sum(lib.values())
            out["area_um2"] = round(stat["area"] or 0.0, 3)
            if stat.get("sequential_area") is not None:
                out["sequential_area_um2"] = round(stat["sequential_area"], 3)
            out["ff"] = None   # library cell names: flip-flops are in sequential_area_um2
            out["cell_types"] = dict(sorted(lib.items()))
            return out
        gates = {c: n for c, n in cells.items() if not c.startswith("$mem")}   # memories: in bits, apart
        unknown = sorted(c for c in gates if c not in GATE_WEIGHTS)
        if unknown:
            raise ValueError(f"no gate weight for cell type(s) {', '.join(unknown)}")
        out["cells"] = sum(gates.values())
        out["kge"] = round(sum(GATE_WEIGHTS[c] * n for c, n in gates.items()) / 1000.0, 3)
        out["gates"] = dict(sorted(gates.items()))
        return out
    out = {k: 0 for k, _ in FPGA_CELLS[target]}
    other = {}
    for cell, n in cells.items():
        for key, pat in FPGA_CELLS[target]:
            if re.search(pat, cell):
                out[key] += n
                break
        else:
            other[cell] = n
    if target == "xilinx":   # a RAMB18 is half a RAMB36
        r18 = sum(n for c, n in cells.items() if c.startswith("RAMB18"))
        r36 = sum(n for c, n in cells.items() if c.startswith("RAMB36"))
        out["bram"] = r36 + r18 / 2
    if other:
        out["other"] = other
    return out


def memory_bits(dump: str) -> list[dict]:
    """The memories of an RTLIL ``dump t:$mem_v2``: name, width, depth (words) and bits of each."""
    mems = []
    for m in re.finditer(r"^\s*cell \$mem_v2 (\S+)\n(.*?)^\s*end", dump, re.M | re.S):
        params = dict(re.findall(r"parameter \\(\w+) (\S+)", m.group(2)))
        width, size = _rtlil_int(params.get("WIDTH", "0")), _rtlil_int(params.get("SIZE", "0"))
        mems.append({"name": m.group(1).lstrip("\\"), "width": width, "depth": size, "bits": width * size})
    return mems


def _rtlil_int(text: str) -> int:
    """An RTLIL parameter value: a decimal integer or a sized constant such as 32'00000101."""
    if "'" in text:
        return int(text.split("'", 1)[1] or "0", 2)
    return int(text)


def _local(path: str, workdir: str) -> str:
    """``path`` relative to ``workdir``; copied into it when it lies outside."""
    ap, wd = os.path.abspath(path), os.path.abspath(workdir)
    if os.path.commonpath([ap, wd]) != wd:
        dest = os.path.join(wd, os.path.basename(ap))
        shutil.copyfile(ap, dest)
        ap = dest
    return os.path.relpath(ap, wd)


def synthesize(verilog: str, top: str, target: str, workdir: str, *, liberty: str | None = None,
               netlist_json: str | None = None) -> dict:
    """Run Yosys for ``target`` on ``verilog``; the metrics dict (see :func:`metrics_from_cells`)."""
    # YoWASP tools see the working directory only: every file is named relative to it.
    os.makedirs(workdir, exist_ok=True)
    verilog = _local(verilog, workdir)
    liberty = _local(liberty, workdir) if liberty else None
    stat_json = f"stat_{target}.json"
    script = yosys_script(target, verilog, top, stat_json, liberty=liberty, netlist_json=netlist_json)
    ys = os.path.join(workdir, f"synth_{target}.ys")
    with open(ys, "w") as f:
        f.write(script)
    note = None
    try:
        _run_yosys(workdir, target, ys)
    except ToolError as exc:
        # Yosys 0.70's abc9 asserts in ABC_OPS_REINTEGRATE on some large designs
        # (seen: fp32 N=8 W=256 packer, synth_ecp5, which has no -noabc9 any more):
        # retry with the script's LUT mapping step done by the classic ABC.
        if target != "ecp5" or "Assert" not in str(exc):
            raise
        note = f"abc9 failed ({exc}); LUTs mapped with 'abc -lut 4' instead"
        cmd = next(ln for ln in script.splitlines() if ln.startswith("synth_ecp5 "))
        alt = "\n".join([cmd.replace("synth_ecp5 ", "synth_ecp5 -run :map_luts ", 1), "abc -lut 4", "clean",
                         cmd.replace("synth_ecp5 ", "synth_ecp5 -run map_cells: ", 1)])
        with open(ys, "w") as f:
            f.write(script.replace(cmd, alt))
        _run_yosys(workdir, target, ys)
    try:
        with open(os.path.join(workdir, stat_json)) as f:
            stat = parse_stat(f.read(), top)
    except (OSError, ValueError) as exc:
        raise ToolError(f"cannot read Yosys statistics in {workdir}: {exc}")
    out = metrics_from_cells(target, stat, liberty=bool(liberty))
    if target == "generic":
        try:
            with open(os.path.join(workdir, MEMORY_DUMP)) as f:
                mems = memory_bits(f.read())
        except OSError as exc:
            raise ToolError(f"cannot read the memory dump in {workdir}: {exc}")
        out["memory_bits"] = sum(m["bits"] for m in mems)
        out["memories"] = mems
    if note:
        out["yosys_note"] = note
    return out


def _run_yosys(workdir: str, target: str, ys: str) -> None:
    run([yosys(), "-q", "-l", f"yosys_{target}.log", "-s", os.path.basename(ys)],
        os.path.join(workdir, f"yosys_{target}.stdout"), cwd=workdir,
        extra_logs=(os.path.join(workdir, f"yosys_{target}.log"),))
