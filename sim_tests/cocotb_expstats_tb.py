"""cocotb test of ``sfp_packer_stats`` (hw.expstats.PackerWithStats) over the generated Verilog.

Run by ``sim_tests/test_expstats_rtl.py``.  The pytest side packs everything
with the Amaranth layouts and computes the expected reports with the golden
model (``sfp.model.expstats``): ``sim_params()`` holds ``tensors`` (each a
``cfg`` integer and its ``beats`` as ``s_axis`` payload integers) and
``expected`` (the ``stats`` payload integers, in tensor order).
"""

from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from sfp.sim_tests.harness import sim_params


@cocotb.test()
async def stats_equal_model_at_full_rate(dut):
    """Every tensor back to back, sinks always ready: one report per tensor equal to the model's, 1 beat/clock."""
    P = sim_params()
    for name in ("s_axis__valid", "s_axis__payload", "cfg"):
        getattr(dut, name).value = 0
    for name in ("m_axis__ready", "m_len__ready", "stats__ready"):
        getattr(dut, name).value = 1
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    got, cycle = [], [0]

    async def monitor():
        while True:
            await ReadOnly()
            if int(dut.stats__valid.value):
                got.append(int(dut.stats__payload.value))
            await RisingEdge(dut.clk)
            cycle[0] += 1

    cocotb.start_soon(monitor())
    accepted = []
    for t in P["tensors"]:
        for beat in t["beats"]:
            dut.cfg.value = t["cfg"]
            dut.s_axis__payload.value = beat
            dut.s_axis__valid.value = 1
            while True:
                await ReadOnly()
                fire = int(dut.s_axis__ready.value)
                await RisingEdge(dut.clk)
                if fire:
                    accepted.append(cycle[0])
                    break
    dut.s_axis__valid.value = 0
    for _ in range(200):
        if len(got) >= len(P["expected"]):
            break
        await RisingEdge(dut.clk)
    await ClockCycles(dut.clk, 5)
    assert got == P["expected"], f"{len(got)} reports, first difference at " \
        f"{next((i for i, (a, b) in enumerate(zip(got, P['expected'])) if a != b), None)}"
    assert int(dut.stats_overrun.value) == 0
    span = accepted[-1] - accepted[0] + 1
    print(f"THROUGHPUT packer+stats {P['key']}: {len(accepted)} beats / {span} cycles")
    assert span == len(accepted), f"{len(accepted)} beats in {span} cycles"
