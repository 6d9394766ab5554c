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
