"""Run one tensor through the packer and the unpacker in Amaranth's simulator.

For a quick look without an HDL simulator (``sfp demo`` uses it): the words
and block lengths the packer writes, the values the unpacker returns, and
beats per cycle with every sink ready and the source never idle.  The
regression proper runs cocotb over the generated Verilog (``sim_tests/``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator

from sfp.model.formats import Settings
from sfp.model.quantize import as_bits, resolve

from .params import HwParams, cfg_fields

__all__ = ["RunResult", "run_packer", "run_unpacker"]


@dataclass
class RunResult:
    beats: int          # beats accepted (packer) or delivered (unpacker)
    cycles: int         # clock cycles from the first to the last of them, inclusive
    words: list         # packer: the W-bit words written; unpacker: unused
    lens: list          # packer: the block lengths; unpacker: unused
    values: np.ndarray  # unpacker: the returned bit patterns

    @property
    def beats_per_cycle(self) -> float:
        return self.beats / self.cycles if self.cycles else 0.0


def _beats(bits: np.ndarray, lanes: int):
    n = bits.size
    for t in range(0, n, lanes):
        lane = bits[t:t + lanes]
        data = [int(v) for v in lane] + [0] * (lanes - lane.size)
        yield {"data": data, "keep": (1 << lane.size) - 1, "last": int(t + lanes >= n)}


async def _send(ctx, strm, payloads, before=None):
    """Drive ``payloads`` on a valid/ready stream, one per accepted beat; the cycle
    numbers of the accepting clocks.  ``before(ctx)`` runs before each beat is offered."""
    accepted, cycle = [], 0
    for payload in payloads:
        if before is not None:
            before(ctx)
        ctx.set(strm.payload, payload)
        ctx.set(strm.valid, 1)
        while True:
            _, _, ready = await ctx.tick().sample(strm.ready)
            cycle += 1
            if ready:
                accepted.append(cycle)
                break
    ctx.set(strm.valid, 0)
    return accepted


def _last_flagged(values):
    return [{"data": v, "last": int(k == len(values) - 1)} for k, v in enumerate(values)]


def _simulate(dut, testbenches):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb, background=tb is not testbenches[0])
    sim.run()


def run_packer(p: HwParams, x, s: Settings) -> RunResult:
    """Pack tensor ``x`` with settings ``s`` (resolved here if ``exp_base`` is auto)."""
    from .packer import Packer

    s = resolve(x, s)
    bits = as_bits(x, s.source)
    dut = Packer(p)
    words, lens, accepted = [], [], []
    nwords = None

    cfg = cfg_fields(s, bits.size)

    async def source(ctx):
        accepted.extend(await _send(ctx, dut.s_axis, _beats(bits, p.lanes), lambda c: c.set(dut.cfg, cfg)))
        while nwords is None or len(words) < nwords:
            await ctx.tick()

    async def sink(ctx):
        nonlocal nwords
        ctx.set(dut.m_axis.ready, 1)
        ctx.set(dut.m_len.ready, 1)
        async for _, _, wv, wp, lv, lp in ctx.tick().sample(dut.m_axis.valid, dut.m_axis.payload,
                                                            dut.m_len.valid, dut.m_len.payload):
            if wv:
                words.append(int(wp.data))
            if lv:
                lens.append(int(lp.data))
                if lp.last:
                    nwords = sum(lens)

    _simulate(dut, [source, sink])
    cycles = accepted[-1] - accepted[0] + 1 if accepted else 0
    return RunResult(len(accepted), cycles, words, lens, np.zeros(0))


def run_unpacker(p: HwParams, words: list, lens: list, s: Settings, n: int) -> RunResult:
    """Unpack ``words`` (with their block ``lens``) of a tensor of ``n`` values stored with resolved ``s``."""
    from .unpacker import Unpacker

    dut = Unpacker(p)
    out, delivered = [], []
    has_len = hasattr(dut, "s_len")

    cfg = cfg_fields(s, n)

    async def source(ctx):
        await _send(ctx, dut.s_axis, _last_flagged(words), lambda c: c.set(dut.cfg, cfg))
        while len(out) < n:
            await ctx.tick()

    async def len_source(ctx):
        await _send(ctx, dut.s_len, _last_flagged(lens))

    async def sink(ctx):
        ctx.set(dut.m_axis.ready, 1)
        cycle = 0
        async for _, _, v, pl in ctx.tick().sample(dut.m_axis.valid, dut.m_axis.payload):
            cycle += 1
            if v:
                delivered.append(cycle)
                keep = int(pl.keep)
                for j in range(p.lanes):
                    if keep >> j & 1:
                        out.append(int(pl.data[j]))

    _simulate(dut, [source, sink] + ([len_source] if has_len else []))
    cycles = delivered[-1] - delivered[0] + 1 if delivered else 0
    return RunResult(len(delivered), cycles, [], [], np.array(out, dtype=np.uint32))
