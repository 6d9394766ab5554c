"""The exponent-statistics tap (hw/expstats.py) on the generated Verilog, Icarus and Verilator, vs the golden model."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sfp.hw.expstats import PackerWithStats, stats_layout
from sfp.hw.packer import value_beat_layout
from sfp.hw.params import HwParams, cfg_fields, config_layout
from sfp.model.expstats import expstats
from sfp.model.formats import Settings
from sfp.sim_tests.harness import SIMULATORS, run_sim
from sfp.sim_tests.packer_ref import real_tensor_bits


def _cases():
    bits = lambda key, n, off=0: real_tensor_bits("bf16", key, n, off).astype(np.uint16)
    return [
        (bits("act", 1500), Settings(man_bits=2, exp_bits=4, exp_base=115)),
        (bits("weight", 517), Settings(man_bits=0, exp_bits=3, exp_base=118)),
        (np.array([0x3F80, 0x0000, 0x8001, 0x7F80, 0xFF81], np.uint16), Settings(man_bits=7, exp_bits=8, exp_base=0)),
        (bits("grad", 901), Settings(man_bits=3, exp_bits=5, exp_base=100, rounding="rz")),
        (bits("act", 300) & 0x7FFF, Settings(man_bits=1, exp_bits=4, exp_base=110, sign=False)),
        (bits("weight", 333, 400), Settings(man_bits=6, exp_bits=2, exp_base=124, specials=False)),
    ]


# Icarus in the default suite; Verilator's C++ build of the whole packer costs minutes: SFP_SLOW=1 adds it.
RUN_ON = [s for s in SIMULATORS if s == "icarus" or os.environ.get("SFP_SLOW")]


@pytest.mark.parametrize("simulator", RUN_ON)
def test_expstats_rtl(simulator):
    p = HwParams(source="bf16", lanes=8, word=128, block=256)
    beat_l, cfg_l, st_l = value_beat_layout(p), config_layout(), stats_layout(p)
    tensors, expected = [], []
    for x, s in _cases():
        beats = []
        for t in range(0, x.size, p.lanes):
            lane = x[t:t + p.lanes]
            beats.append(beat_l.const({"data": [int(v) for v in lane] + [0] * (p.lanes - lane.size),
                                       "keep": (1 << lane.size) - 1,
                                       "last": int(t + p.lanes >= x.size)}).as_value().value)
        tensors.append({"cfg": cfg_l.const(cfg_fields(s, x.size)).as_value().value, "beats": beats})
        expected.append(st_l.const(expstats(x, s)).as_value().value)
    run_sim(lambda: PackerWithStats(p), top="sfp_packer_stats", key="packer_stats_n8",
            test_module="sfp.sim_tests.cocotb_expstats_tb", simulator=simulator,
            params={"tensors": tensors, "expected": expected, "key": "packer_stats_n8"})
