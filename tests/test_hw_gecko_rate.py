"""Gecko at full rate on adversarial exponents, with no slack: bf16 stored whole (m=7, e=8, s=1).

At N = 8 and W = 128 a full-width bf16 beat fills a word exactly, so any bit
Gecko added would cost a bubble; the block fallback (format.md 5) must keep
the packer and the unpacker at one beat per clock whatever the exponents,
and the bytes must still be the golden model's.
"""

from __future__ import annotations

import numpy as np
import pytest

from sfp.hw.params import HwParams
from sfp.hw.simulate import run_packer, run_unpacker
from sfp.model.container import encode_image
from sfp.model.formats import Settings
from sfp.model.quantize import quantize
from sfp.sim_tests.packer_ref import GECKO_KINDS, gecko_adversarial_bits


@pytest.mark.parametrize("kind", GECKO_KINDS)
def test_full_rate_on_adversarial_exponents(kind):
    p = HwParams(gecko=True)
    s = Settings(man_bits=7, exp_bits=8, exp_base=0, gecko=True, group=p.group, block=p.block, word=p.word)
    x = gecko_adversarial_bits(np.random.default_rng(7), 4 * p.block, s, kinds=(kind,)).astype(np.uint16)
    pk = run_packer(p, x, s)
    ref = encode_image(x, s, strict=False)
    assert b"".join(w.to_bytes(p.word // 8, "little") for w in pk.words) == ref.payload
    assert pk.lens == ref.block_words.tolist()
    up = run_unpacker(p, pk.words, pk.lens, s, x.size)
    assert np.array_equal(up.values.astype(np.uint16), quantize(x, s, strict=False))
    assert pk.beats_per_cycle == 1.0, pk
    assert up.beats_per_cycle == 1.0, up


@pytest.mark.parametrize("length", [8, 16])
def test_full_rate_on_short_tensors_back_to_back(length):
    """Tensors of one or two beats back to back: every tensor holds a block bank through its
    analysis and emission, and its m_status entry waits for its last word; neither may cost a
    bubble.  The words must still be the golden model's, tensor after tensor."""
    from amaranth.sim import Simulator

    from sfp.hw.packer import Packer
    from sfp.hw.params import cfg_fields
    from sfp.sim_tests.packer_ref import real_tensor_bits

    p = HwParams(gecko=True)
    s = Settings(man_bits=3, exp_bits=5, gecko=True, group=p.group, block=p.block, word=p.word)
    src = real_tensor_bits("bf16", "epoch10/act/relu1.out", 240 * length).astype(np.uint16)
    xs = [src[i:i + length] for i in range(0, src.size, length)]
    refs = [encode_image(x, s, strict=False) for x in xs]
    want = b"".join(r.payload for r in refs)
    dut = Packer(p)
    accepted, words = [], []

    async def source(ctx):
        cyc = 0
        for x, r in zip(xs, refs):
            ctx.set(dut.cfg, cfg_fields(r.settings, x.size))
            for t in range(0, x.size, p.lanes):
                ctx.set(dut.s_axis.payload, {"data": [int(v) for v in x[t:t + p.lanes]],
                                             "keep": 0xFF, "last": int(t + p.lanes >= x.size)})
                ctx.set(dut.s_axis.valid, 1)
                while True:
                    _, _, rdy = await ctx.tick().sample(dut.s_axis.ready)
                    cyc += 1
                    if rdy:
                        accepted.append(cyc)
                        break
        ctx.set(dut.s_axis.valid, 0)
        while len(words) * p.word // 8 < len(want):
            await ctx.tick()

    async def sink(ctx):
        ctx.set(dut.m_axis.ready, 1)
        ctx.set(dut.m_len.ready, 1)
        ctx.set(dut.m_status.ready, 1)
        async for _, _, v, w in ctx.tick().sample(dut.m_axis.valid, dut.m_axis.payload):
            if v:
                words.append(int(w.data))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink, background=True)
    sim.run()
    assert b"".join(w.to_bytes(p.word // 8, "little") for w in words) == want
    rate = (len(accepted) - 1) / (accepted[-1] - accepted[0])
    assert rate == 1.0, f"{len(xs)} tensors of {length} values: {rate:.3f} beats/clock"
