"""cocotb test of :class:`sfp.hw.board_selftest.DramSelfTest` on LiteDRAM's SDRAM model.

Run by ``sim_tests/test_board_dram.py``, which builds the component (the
board's top level minus PLL, pins and LEDs) with the ``litedram_gen --sim``
core.  The component checks itself against ROMs the golden model filled;
this test checks that it reports what it should: two clean passes (the
second at the other address region), then, with ``inject`` high, a failure
with code ``DATA`` -- so a pass is not something the design reports
whatever happens.
"""

from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from sfp.sim_tests.harness import sim_params


def _v(h) -> int:
    try:
        return int(h.value)
    except ValueError:
        return -1


async def _until(dut, cond, limit, what):
    for _ in range(limit // 64):
        await ClockCycles(dut.clk, 64)
        if cond():
            return
    raise AssertionError(f"timeout waiting for {what}: phase {_v(dut.phase)}, passes {_v(dut.passes)}, "
                         f"fail_code {_v(dut.fail_code)}, init_done {_v(dut.init_done)}")


@cocotb.test()
async def self_test(dut):
    P = sim_params()
    cocotb.start_soon(Clock(dut.clk, P["clk_ps"], unit="ps").start())
    cocotb.start_soon(Clock(dut.mem_clk, P["mem_clk_ps"], unit="ps").start())
    dut.inject.value = 0
    dut.rst.value = 1
    dut.mem_rst.value = 1
    await ClockCycles(dut.mem_clk, 8)
    dut.rst.value = 0
    dut.mem_rst.value = 0
    await RisingEdge(dut.clk)

    await _until(dut, lambda: _v(dut.init_done) == 1 or _v(dut.fail) == 1, 200_000, "the controller's init")
    assert _v(dut.fail) == 0, f"failed during init, code {_v(dut.fail_code)}"
    assert _v(dut.busy) == 1

    await _until(dut, lambda: _v(dut.passes) >= 2 or _v(dut.fail) == 1, 400_000, "two passes")
    assert _v(dut.fail) == 0, f"self-test failed, code {_v(dut.fail_code)} (phase {_v(dut.phase)})"
    dut._log.info("two clean passes")

    # Flip bit 0 of every stored value: the bf16 container is lossless, so the first load must mismatch.
    dut.inject.value = 1
    await _until(dut, lambda: _v(dut.fail) == 1, 400_000, "the injected error to be caught")
    assert _v(dut.fail_code) == P["code_data"], f"fail code {_v(dut.fail_code)}, expected DATA"
    assert _v(dut.phase) == P["phase_fail"]
    assert _v(dut.busy) == 0
    passes = _v(dut.passes)
    await ClockCycles(dut.clk, 2000)
    assert _v(dut.passes) == passes and _v(dut.fail) == 1, "a failure must be sticky"
