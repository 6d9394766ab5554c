"""Latency of the Gecko packer in amaranth.sim: clocks from the edge that accepts a one-block
tensor's last beat to the clock its first word is valid on ``m_axis`` (sinks ready, idle unit).

    .venv/bin/python scripts/gecko_packer_latency.py
"""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from sfp.hw.packer import Packer
from sfp.hw.params import HwParams, cfg_fields
from sfp.model.formats import Settings


def measure(p: HwParams) -> int:
    s = Settings(source=p.source, gecko=True, group=p.group, block=p.block, word=p.word, exp_base=0)
    x = np.random.default_rng(1).integers(0x3c00, 0x4000, p.block).astype(np.uint16)   # one block
    dut = Packer(p)
    cfg = cfg_fields(s, x.size)
    out = {}

    async def tb(ctx):
        ctx.set(dut.cfg, cfg)
        ctx.set(dut.m_axis.ready, 1)
        ctx.set(dut.m_len.ready, 1)
        ctx.set(dut.m_status.ready, 1)
        cyc = 0
        for t in range(0, x.size, p.lanes):
            ctx.set(dut.s_axis.payload, {"data": [int(v) for v in x[t:t + p.lanes]], "keep": (1 << p.lanes) - 1,
                                         "last": int(t + p.lanes >= x.size)})
            ctx.set(dut.s_axis.valid, 1)
            while True:
                _, _, rdy = await ctx.tick().sample(dut.s_axis.ready)
                cyc += 1
                if rdy:
                    break
        ctx.set(dut.s_axis.valid, 0)
        out["last"] = cyc
        while True:
            _, _, v = await ctx.tick().sample(dut.m_axis.valid)
            cyc += 1
            if v:
                out["first"] = cyc
                return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return out["first"] - out["last"]


if __name__ == "__main__":
    for p in (HwParams(gecko=True), HwParams(gecko=True, block=64), HwParams(gecko=True, stochastic=False),
              HwParams(source="fp32", lanes=4, block=128, group=16, gecko=True)):
        print(f"{p.source} N={p.lanes} W={p.word} B={p.block} G={p.group} stochastic={p.stochastic}: "
              f"first word {measure(p)} clocks after the block's last beat is accepted")
