"""The ULX3S SDRAM board design up to the files the toolchain reads (no Yosys/nextpnr run here).

What the bitstream build needs from us and can be checked in seconds: the
top level elaborates with the real-PHY LiteDRAM core, the PLL, the SDRAM
clock output and every SDRAM pin are in the netlist with the ULX3S's pin
sites in the constraints file, and the core's DQ pins are bidirectional in
the Verilog the build reads.  The full build (``sfp board ulx3s``, Yosys +
nextpnr, ~10 minutes) is run by hand; docs/results.md has its figures.
The same top level's behaviour is simulated in sim_tests/test_board_dram.py.
"""

from __future__ import annotations

import json
import re

import pytest

from sfp.cli import main as sfp_main
from sfp.hw.params import HwParams

# the ULX3S's SDRAM pin sites (schematic / amaranth-boards), by signal
SITES = {"clk": "F19", "cke": "F20", "cs_n": "P20", "we_n": "T20", "cas_n": "T19", "ras_n": "R20",
         "dq0": "J16", "dq15": "J17", "a0": "M20", "a12": "G19", "ba0": "P19", "dm1": "E20"}


@pytest.fixture(scope="module")
def prepared():
    pytest.importorskip("litedram")
    pytest.importorskip("amaranth_boards")
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    from sfp.hw.board_selftest import BOARD_TENSOR, make_plan
    from sfp.hw.board_ulx3s import Ulx3sDramTop, patched_core_verilog
    from sfp.hw.litedram_gen import generate
    from sfp.sim_tests.packer_ref import real_tensor_bits
    p = HwParams(block=64)
    core = generate("sdr", sim=False)
    plat = ULX3S_85F_Platform()
    plat.add_file(f"{core.name}.v", patched_core_verilog(core))
    plan = make_plan(p, real_tensor_bits(p.source, *BOARD_TENSOR))
    files = plat.prepare(Ulx3sDramTop(plan, core), name="sfp_dram", nextpnr_opts="--seed 2").files    # as --seed 2
    return core, files


def test_top_netlist(prepared):
    core, files = prepared
    il = files["sfp_dram.il"]
    il = il if isinstance(il, str) else il.decode()
    for cell in ("EHXPLLL", "ODDRX1F", core.name):
        assert re.search(rf"cell \\?{cell}\b", il), f"no {cell} instance in the netlist"
    # the core's pins reach top-level ports
    for port in ("sdram_0__a__io", "sdram_0__dq__io", "sdram_0__clk__io", "sdram_0__cs__io"):
        assert re.search(rf"wire width \d+ (inout|output) \d+\s+\\{port}\b", il), port


def test_top_constraints_and_core(prepared):
    core, files = prepared
    lpf = files["sfp_dram.lpf"]
    lpf = lpf if isinstance(lpf, str) else lpf.decode()
    sites = set(re.findall(r'SITE "(\w+)"', lpf))
    assert set(SITES.values()) <= sites
    assert 'FREQUENCY PORT "clk25_0__io" 25000000.0 HZ' in lpf
    v = files[f"{core.name}.v"]
    v = v if isinstance(v, str) else v.decode()
    assert "inout  wire   [15:0] sdram_dq," in v and "input  wire   [15:0] sdram_dq," not in v
    script = files["build_sfp_dram.sh"]
    script = script if isinstance(script, str) else script.decode()
    assert re.search(r"NEXTPNR_ECP5.*--seed 2", script)          # how build_ulx3s(seed=2) reaches nextpnr


def test_cli_board_refuses(tmp_path, capsys):
    """Bad board input: one line, status 2, no build directory."""
    pytest.importorskip("litedram")
    cfg = tmp_path / "g.json"
    cfg.write_text(json.dumps({"gecko": True}))
    out = tmp_path / "b"
    rc = sfp_main(["board", "ulx3s", "--config", str(cfg), "--outdir", str(out), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "gecko" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_cli_board_bad_design(capsys):
    with pytest.raises(SystemExit) as e:
        sfp_main(["board", "ulx3s", "--design", "nope"])
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_without_litedram(monkeypatch, tmp_path, capsys):
    """Machines without the dram extra: `sfp board ulx3s` refuses in one line, the demo's DRAM stage says
    in one line what is missing and does not fail."""
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "litedram" else real(name, *a))
    out = tmp_path / "b"
    assert sfp_main(["board", "ulx3s", "--outdir", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "LiteDRAM" in err and len(err.strip().splitlines()) == 1 and not out.exists()
    import sfp.demo
    sfp.demo._dram(True)
    text = capsys.readouterr().out.strip()
    assert text.startswith("DRAM stage skipped: LiteDRAM is not installed") and len(text.splitlines()) == 1
