"""cocotb test of packer -> unpacker in a loop (sim_tests.test_packer.LoopbackTop).

The packer's words go straight into the unpacker; the unpacker's cfg
(``u_cfg_*``, with ``length``) is switched to the next tensor's right after
the unpacker accepted the previous tensor's last word.  The output must be
``quantize(x)`` of every tensor, with stalls on the input and the output.
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from sfp.sim_tests.cocotb_packer_tb import FlatDriver, FlatSink, Tensors, _bit, compare, start


@cocotb.test()
async def loopback(dut):
    T = Tensors()
    cyc = await start(dut)
    idx = [i for i in T.group("stream") if T.meta[i]["supported"]]
    order = list(idx)

    def set_ucfg(i):
        for k, v in T.cfg(i).items():
            getattr(dut, f"u_cfg_{k}").value = v

    async def ucfg_follower():
        pos = 0
        set_ucfg(order[0])
        while True:
            await ReadOnly()
            done = _bit(dut.u_s_axis_tvalid) and _bit(dut.u_s_axis_tready) and _bit(dut.u_s_axis_tlast)
            await RisingEdge(dut.clk)
            if done:
                pos += 1
                if pos < len(order):
                    set_ucfg(order[pos])

    cocotb.start_soon(ucfg_follower())
    drv = FlatDriver(dut, "s_axis", dut.clk, cyc, seed=21, idle_prob=0.2)
    sink = FlatSink(dut, "m_axis", dut.clk, cyc, ["data", "keep", "last"], seed=22, ready_prob=0.7)
    FlatSink(dut, "m_len", dut.clk, cyc, ["data", "last"], seed=23, ready_prob=0.8)
    for i in order:
        await drv.send(T.value_beats(i))
    exp = T.expected_values(order)
    await sink.wait_for(len(exp))
    await ClockCycles(dut.clk, 20)
    compare(sink.beats, exp, "m_axis")
    dut._log.info("loopback: %d tensors, %d beats OK", len(order), len(exp))
