"""Beats per clock of the Gecko packer on runs of short tensors back to back (amaranth.sim, sinks ready).

A tensor shorter than a block still holds one of GeckoStage's 4 block banks through its
fill, analysis and emission, so runs of short tensors are slower than one beat per clock.

    .venv/bin/python scripts/gecko_packer_short_tensors.py
"""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from sfp.hw.packer import Packer
from sfp.hw.params import HwParams, cfg_fields
from sfp.model.formats import Settings


def measure(p: HwParams, length: int, beats: int = 1200) -> tuple[int, float]:
    """(tensors, beats per clock) over about ``beats`` beats: far more than the queues in front of the stage hold."""
    tensors = max(8, beats // -(-length // p.lanes))
    s = Settings(source=p.source, gecko=True, group=p.group, block=p.block, word=p.word, exp_base=0)
    rng = np.random.default_rng(length)
    xs = [rng.integers(0x3c00, 0x4000, length).astype(np.uint16) for _ in range(tensors)]
    dut = Packer(p)
    acc = []

    async def tb(ctx):
        ctx.set(dut.m_axis.ready, 1)
        ctx.set(dut.m_len.ready, 1)
        ctx.set(dut.m_status.ready, 1)
        cyc = 0
        for x in xs:
            ctx.set(dut.cfg, cfg_fields(s, x.size))
            for t in range(0, x.size, p.lanes):
                lane = x[t:t + p.lanes]
                ctx.set(dut.s_axis.payload, {"data": [int(v) for v in lane] + [0] * (p.lanes - lane.size),
                                             "keep": (1 << lane.size) - 1, "last": int(t + p.lanes >= x.size)})
                ctx.set(dut.s_axis.valid, 1)
                while True:
                    _, _, rdy = await ctx.tick().sample(dut.s_axis.ready)
                    cyc += 1
                    if rdy:
                        acc.append(cyc)
                        break
        ctx.set(dut.s_axis.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return tensors, (len(acc) - 1) / (acc[-1] - acc[0])


if __name__ == "__main__":
    p = HwParams(gecko=True)
    for length in (8, 16, 24, 64, 256, 1000, 4096):
        n, rate = measure(p, length)
        print(f"bf16 N=8 W=128 B=256: {n} tensors of {length} values back to back: {rate:.3f} beats/clock")
