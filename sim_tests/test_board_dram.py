"""The ULX3S board design's top level (minus PLL, pins, LEDs) on LiteDRAM's SDRAM model.

:class:`sfp.hw.board_selftest.DramSelfTest` with the ``litedram_gen --sim``
controller (the same LiteDRAM SDR controller as the bitstream, its PHY
replaced by LiteDRAM's SDRAM model), under Verilator: a real training
tensor (512 bf16 weights) goes into the SDRAM in three containers and comes
back through the unpacker, checked value for value by the design itself
against ROMs filled by the golden model; the cocotb side checks that the
design reports two clean passes and catches an injected error
(``cocotb_board_tb``).  The expected values in the ROMs are checked here
against the golden model's container round trip, independently of the
plan's own arithmetic.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from sfp.hw.params import HwParams
from sfp.sim_tests.harness import run_sim
from sfp.sim_tests.packer_ref import real_tensor_bits

def board_plan(p: HwParams | None = None):
    from sfp.hw.board_selftest import BOARD_TENSOR, make_plan
    p = p or HwParams(block=64)
    return make_plan(p, real_tensor_bits(p.source, BOARD_TENSOR[0], BOARD_TENSOR[1]))


def test_plan_matches_model_files():
    """The plan's expected values and block index agree with a stored container decoded by the model."""
    import ml_dtypes
    from sfp.model.container import decode, encode
    plan = board_plan()
    x = plan.bits.astype(np.uint16).view(ml_dtypes.bfloat16)
    assert plan.names[0] == "bf16" and np.array_equal(plan.expected[0], plan.bits)    # lossless: the tensor itself
    for k, s in enumerate(plan.settings):
        y = decode(encode(x, s))
        assert np.array_equal(y.view(np.uint16).astype(np.uint32), plan.expected[k])
    assert plan.words[1] < plan.words[0] and plan.words[2] < plan.words[1]   # narrower containers, fewer words
    # single-block loads exist, and the addresses of two containers never overlap
    assert any(b1 - b0 == 1 for _, b0, b1 in plan.loads)
    spans = sorted([(a, a + w) for a, w in zip(plan.data_addr, plan.words)]
                   + [(a, a + -(-len(L) // 4)) for a, L in zip(plan.index_addr, plan.lens)])
    assert all(e <= s for (_, e), (s, _) in zip(spans, spans[1:])) and spans[-1][1] <= plan.region


def test_board_selftest_sim(monkeypatch):
    """Two passes of the board's self-test through the real LiteDRAM controller, then an injected error."""
    pytest.importorskip("litedram")
    # The build, not the run, is what this test costs (and it happens on every run: the generated Verilog
    # is not byte-identical from one process to the next, see the report): compile the model's C++ at -O0
    # (cocotb uses -Os; -O0 builds faster, and the 190 us of simulated time still run in ~20 s).
    monkeypatch.setenv("MAKEFLAGS", (os.environ.get("MAKEFLAGS", "") + " OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0").strip())
    from sfp.hw.board_selftest import DramSelfTest, FailCode, Phase
    from sfp.hw.litedram_gen import generate
    from sfp.sim_tests.test_dma import VERILATOR_ARGS

    core = generate("sdr", sim=True)
    plan = board_plan()
    sim = os.environ.get("SFP_DMA_SIM", "verilator")
    run_sim(lambda: DramSelfTest(plan, core, pause=64, timeout=1 << 16, init_delay_scale=0.01), top="board_top", key="board_selftest",
            test_module="sfp.sim_tests.cocotb_board_tb", simulator=sim,
            params={"clk_ps": 25000, "mem_clk_ps": 20000, "code_data": FailCode.DATA.value,
                    "phase_fail": Phase.FAIL.value},
            extra_sources=[core.verilog], build_args=VERILATOR_ARGS if sim == "verilator" else ())
