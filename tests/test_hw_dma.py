"""The DMA engines alone (amaranth.sim): DmaWriter and DmaReader on a MemPortArbiter, a Python memory.

The memory behind the port (``_memory``) takes commands and write words
with random back-pressure, answers writes with ``wresp`` after a random
delay, and returns read words of the two tags in random order with respect
to each other (in order within a tag, as the port allows).  The writer is
fed a golden-model image (``encode_image`` words and block lengths of real
tensors) as the packer would send it; the test checks the memory contents
(data and packed index), the writer's status, and that the reader returns
exactly the words and block lengths of every requested block range.
"""

from __future__ import annotations

import random

import pytest
from amaranth import Module
from amaranth.lib import wiring

from sfp.hw.dma_mem import MemPortArbiter
from sfp.hw.dma_reader import DmaReader
from sfp.hw.dma_writer import DmaWriter
from sfp.hw.params import HwParams
from sfp.model.formats import Settings
from sfp.sim_tests.packer_ref import cfg_value, make_case, real_tensor_bits
from streams import collector, send


class Pair(wiring.Component):
    def __init__(self, p, aw, burst):
        self.w = DmaWriter(p, aw, burst)
        self.r = DmaReader(p, aw, burst)
        self.arb = MemPortArbiter(p.word, aw)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.w, m.submodules.r, m.submodules.arb = self.w, self.r, self.arb
        wiring.connect(m, self.w.mem, self.arb.wr)
        wiring.connect(m, self.r.mem, self.arb.rd)
        return m


def _memory(bus, mem, rng, log):
    """Background testbench: the memory port's slave side (see the module docstring)."""
    async def run(ctx):
        wq = []          # [addr, words left]
        wresp = []       # [time, err]
        rq = {0: [], 1: []}
        now = 0
        cur = None
        while True:
            ctx.set(bus.cmd.ready, rng.random() < 0.7)
            ctx.set(bus.wdata.ready, bool(wq) and rng.random() < 0.7)
            if wresp and wresp[0][0] <= now:
                ctx.set(bus.wresp.valid, 1)
            else:
                ctx.set(bus.wresp.valid, 0)
            if cur is None or rng.random() < 0.3:
                tags = [t for t in (0, 1) if rq[t] and rq[t][0][0] <= now]
                cur = rng.choice(tags) if tags else None
            if cur is not None and rng.random() < 0.8:
                ctx.set(bus.rdata.valid, 1)
                ctx.set(bus.rdata.payload.data, mem.get(rq[cur][0][1], 0xBAD))
                ctx.set(bus.rdata.payload.tag, cur)
            else:
                ctx.set(bus.rdata.valid, 0)
            _, _, cv, cr, cp, wv, wr, wd, bv, br, rv, rr = await ctx.tick().sample(
                bus.cmd.valid, bus.cmd.ready, bus.cmd.payload, bus.wdata.valid, bus.wdata.ready, bus.wdata.payload,
                bus.wresp.valid, bus.wresp.ready, bus.rdata.valid, bus.rdata.ready)
            if cv and cr:
                log.append((cp.addr, cp.count + 1, cp.we, cp.tag))
                if cp.we:
                    wq.append([cp.addr, cp.count + 1])
                else:
                    for j in range(cp.count + 1):
                        rq[cp.tag].append([now + rng.randint(1, 12), cp.addr + j])
            if wv and wr:
                mem[wq[0][0]] = wd
                wq[0][0] += 1
                wq[0][1] -= 1
                if wq[0][1] == 0:
                    wq.pop(0)
                    wresp.append([now + rng.randint(1, 10), 0])
            if bv and br:
                wresp.pop(0)
            if rv and rr:
                rq[cur].pop(0)
                cur = None
            now += 1
    return run


def _cases(p):
    B = p.block
    specs = [("epoch10/weight/conv2.weight", 5 * B + 17, dict(man_bits=7, exp_bits=8, exp_base=0)),
             ("epoch10/act/relu1.out", 9 * B + 3, dict(man_bits=3, exp_bits=5)),
             ("epoch10/grad/fc1.weight", B, dict(man_bits=1, exp_bits=3))]
    out = []
    for key, n, kw in specs:
        s = Settings(source=p.source, block=B, word=p.word, **kw)
        out.append(make_case(real_tensor_bits(p.source, key, n), s))
    return out


@pytest.mark.parametrize("burst,gecko", [(4, True), (32, False)])
def test_writer_reader_roundtrip(burst, gecko):
    p = HwParams(lanes=8, word=128, block=32, gecko=gecko)
    aw = 16
    dut = Pair(p, aw, burst)
    rng = random.Random(burst)
    cases = _cases(p)
    E = p.word // 32
    place = []
    a, ia = 250, 1000
    for c in cases:
        place.append((a, ia))
        a += len(c.words) + 7
        ia += -(-len(c.lens) // E) + 1
    mem, log, wst, rst, words, lens = {}, [], [], [], [], []

    loads = []
    for i, c in enumerate(cases):
        nb = len(c.lens)
        loads += [(i, 0, nb), (i, nb - 1, nb), (i, min(5, nb - 1), nb + 3), (i, nb // 2, nb // 2 + 1)]
    loads.append((0, 2, 2))             # refused

    async def tb(ctx):
        wbeats = [{"data": w, "last": int(j == len(c.words) - 1)} for c in cases for j, w in enumerate(c.words)]
        await send(ctx, dut.w.words, wbeats, rng, 0.2)
        for _ in range(5000):
            if len(wst) == len(cases):
                break
            await ctx.tick()
        assert len(wst) == len(cases), f"{len(wst)} writer statuses"
        for c, st, (d, ix) in zip(cases, wst, place):
            assert (st.words, st.blocks, st.err) == (len(c.words), len(c.lens), 0)
            for j, w in enumerate(c.words):
                assert mem.get(d + j) == w, f"data word {j}"
            for j in range(0, len(c.lens), E):
                assert mem.get(ix + j // E) == sum(v << (32 * q) for q, v in enumerate(c.lens[j:j + E]))
        rdescs = []
        for i, b0, b1 in loads:
            c = cases[i]
            rdescs.append({"cfg": cfg_value(c.settings, c.n), "data_addr": place[i][0], "index_addr": place[i][1],
                           "b0": b0, "b1": b1})
        await send(ctx, dut.r.desc, rdescs, rng, 0.3)
        for _ in range(20000):
            if len(rst) == len(loads):
                break
            await ctx.tick()
        assert len(rst) == len(loads)
        exp_words, exp_lens = [], []
        for (i, b0, b1), st in zip(loads, rst):
            c = cases[i]
            b1c = min(b1, len(c.lens))
            if b0 >= b1c:
                assert st.refused == 1
                continue
            assert (st.refused, st.err, st.blocks) == (0, 0, b1c - b0)
            off = sum(c.lens[:b0])
            n = sum(c.lens[b0:b1c])
            assert st.words == n
            exp_words += [(w, int(j == n - 1)) for j, w in enumerate(c.words[off:off + n])]
            exp_lens += c.lens[b0:b1c]
        for _ in range(50):
            await ctx.tick()
        assert [(w.data, w.last) for w in words] == exp_words
        if p.gecko:
            assert [x.data for x in lens] == exp_lens

    async def desc_bg(ctx):
        await send(ctx, dut.w.desc, [{"data_addr": d, "index_addr": ix} for d, ix in place], random.Random(7), 0.3)

    async def lens_bg(ctx):
        lbeats = [{"data": v, "last": int(j == len(c.lens) - 1)} for c in cases for j, v in enumerate(c.lens)]
        await send(ctx, dut.w.lens, lbeats, random.Random(5), 0.5)

    cols = [collector(dut.w.status, wst, random.Random(1), 0.7), collector(dut.r.status, rst, random.Random(2), 0.7),
            collector(dut.r.words, words, random.Random(3), 0.6), _memory(dut.arb.bus, mem, random.Random(4), log)]
    if p.gecko:
        cols.append(collector(dut.r.lens, lens, random.Random(6), 0.8))
    from amaranth.sim import Simulator
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for c in cols:
        sim.add_testbench(c, background=True)
    sim.add_testbench(lens_bg, background=True)
    sim.add_testbench(desc_bg, background=True)
    sim.add_testbench(tb)
    sim.run()
    # bursts never longer than asked
    assert max(n for _, n, we, tag in log if tag == 0) <= burst


def _native_memory(nat, mem, rng, width):
    """Background testbench: LiteDRAM's native port as the user sees it (in-order, rdata_ready ignored)."""
    async def run(ctx):
        wq, rq, now = [], [], 0
        while True:
            ctx.set(nat.cmd_ready, rng.random() < 0.6)
            ctx.set(nat.wdata_ready, bool(wq) and rng.random() < 0.6)
            out = rq[0] if rq and rq[0][0] <= now else None
            ctx.set(nat.rdata_valid, out is not None)
            if out is not None:
                ctx.set(nat.rdata_data, mem.get(out[1], 0x5A5A & ((1 << width) - 1)))
            _, _, cv, cr, we, addr, wv, wr, wd, wm, rr = await ctx.tick().sample(
                nat.cmd_valid, nat.cmd_ready, nat.cmd_we, nat.cmd_addr, nat.wdata_valid, nat.wdata_ready,
                nat.wdata_data, nat.wdata_we, nat.rdata_ready)
            if out is not None:
                assert rr, "read data lost: rdata_ready low"
                rq.pop(0)
            if cv and cr:
                if we:
                    wq.append(addr)
                else:
                    rq.append([max(now + rng.randint(3, 15), rq[-1][0] + 1 if rq else 0), addr])
            if wv and wr:
                assert wm == (1 << (width // 8)) - 1
                mem[wq.pop(0)] = wd
            now += 1
    return run


class NativePair(wiring.Component):
    def __init__(self, p, aw, burst, width):
        from sfp.hw.litedram_port import LiteDramNative
        self.pair = Pair(p, aw, burst)
        self.w, self.r = self.pair.w, self.pair.r
        self.ad = LiteDramNative(p.word, width, aw + 4, aw)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.pair, m.submodules.ad = self.pair, self.ad
        wiring.connect(m, self.pair.arb.bus, self.ad.port)
        return m


@pytest.mark.parametrize("width", [16, 128])
def test_native_adapter_roundtrip(width):
    """Writer/reader through LiteDramNative (width adapter k = 128/width) on a native-port memory."""
    p = HwParams(lanes=8, word=128, block=32)
    dut = NativePair(p, 16, 8, width)
    cases = _cases(p)[:2]
    k = 128 // width
    place = [(250, 1000), (400, 1010)]
    nmem, wst, rst, words = {}, [], [], []
    loads = [(0, 0, 6), (0, 3, 4), (1, 0, 10), (1, 9, 10)]

    async def desc_bg(ctx):
        await send(ctx, dut.w.desc, [{"data_addr": d, "index_addr": ix} for d, ix in place], random.Random(7), 0.3)

    async def lens_bg(ctx):
        await send(ctx, dut.w.lens, [{"data": v, "last": int(j == len(c.lens) - 1)}
                                     for c in cases for j, v in enumerate(c.lens)], random.Random(5), 0.5)

    async def tb(ctx):
        await send(ctx, dut.w.words, [{"data": w, "last": int(j == len(c.words) - 1)}
                                      for c in cases for j, w in enumerate(c.words)], random.Random(1), 0.2)
        for _ in range(20000):
            if len(wst) == len(cases):
                break
            await ctx.tick()
        assert [(s.words, s.blocks, s.err) for s in wst] == [(len(c.words), len(c.lens), 0) for c in cases]
        for c, (d, _) in zip(cases, place):
            for j, w in enumerate(c.words):
                got = sum(nmem.get((d + j) * k + q, 0) << (q * width) for q in range(k))
                assert got == w, f"word {j}"
        await send(ctx, dut.r.desc, [{"cfg": cfg_value(cases[i].settings, cases[i].n), "data_addr": place[i][0],
                                      "index_addr": place[i][1], "b0": b0, "b1": b1} for i, b0, b1 in loads],
                   random.Random(2), 0.3)
        for _ in range(40000):
            if len(rst) == len(loads):
                break
            await ctx.tick()
        exp = []
        for i, b0, b1 in loads:
            c = cases[i]
            off, n = sum(c.lens[:b0]), sum(c.lens[b0:b1])
            exp += [(w, int(j == n - 1)) for j, w in enumerate(c.words[off:off + n])]
        for _ in range(50):
            await ctx.tick()
        assert [(w.data, w.last) for w in words] == exp
        assert all(s.err == 0 and s.refused == 0 for s in rst)

    from amaranth.sim import Simulator
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for c in [collector(dut.w.status, wst, random.Random(1), 0.7), collector(dut.r.status, rst, random.Random(2)),
              collector(dut.r.words, words, random.Random(3), 0.6),
              _native_memory(dut.ad.native, nmem, random.Random(4), width), desc_bg, lens_bg]:
        sim.add_testbench(c, background=True)
    sim.add_testbench(tb)
    sim.run()
