"""Valid/ready stream helpers for the amaranth.sim testbenches of tests/ (not the cocotb ones)."""

from __future__ import annotations

from amaranth.sim import Simulator


async def send(ctx, strm, payloads, rng, idle_prob=0.0):
    """Drive ``payloads`` into ``strm`` with random idle cycles."""
    for pl in payloads:
        while idle_prob and rng.random() < idle_prob:
            ctx.set(strm.valid, 0)
            await ctx.tick()
        ctx.set(strm.payload, pl)
        ctx.set(strm.valid, 1)
        await ctx.tick().until(strm.ready)
    ctx.set(strm.valid, 0)


def collector(strm, out, rng, ready_prob=1.0, times=None):
    """A background testbench taking every beat of ``strm`` into ``out``, ready with ``ready_prob``."""
    async def run(ctx):
        cycle = 0
        while True:
            ctx.set(strm.ready, ready_prob >= 1.0 or rng.random() < ready_prob)
            _, _, valid, ready, payload = await ctx.tick().sample(strm.valid, strm.ready, strm.payload)
            if valid and ready:
                out.append(payload)
                if times is not None:
                    times.append(cycle)
            cycle += 1
    return run


def run_sim(dut, testbench, collectors=(), *, vcd=None):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for c in collectors:
        sim.add_testbench(c, background=True)
    sim.add_testbench(testbench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
