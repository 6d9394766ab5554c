"""Fast amaranth.sim tests of the packer/unpacker datapaths (the quick inner loop).

The RTL simulations over the generated Verilog are in ``sim_tests/test_packer.py``.
Expected results come from the golden model via ``sim_tests.packer_ref``.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.params import HwParams
from hw.wordpack import WordPacker
from model.formats import Settings
from sim_tests.packer_ref import adversarial_bits, make_case, records


# -- generic stream helpers for amaranth.sim testbenches -----------------------

async def send(ctx, strm, payloads, rng, idle_prob=0.0, accepted=None):
    """Drive ``payloads`` into ``strm`` with random idle cycles; record accept times in ``accepted``."""
    for pl in payloads:
        while idle_prob and rng.random() < idle_prob:
            ctx.set(strm.valid, 0)
            await ctx.tick()
        ctx.set(strm.payload, pl)
        ctx.set(strm.valid, 1)
        await ctx.tick().until(strm.ready)
        if accepted is not None:
            accepted.append(ctx.get(cycle_counter[0]) if cycle_counter else 0)
    ctx.set(strm.valid, 0)


cycle_counter: list = []


def collector(strm, out, rng, ready_prob=1.0):
    async def run(ctx):
        while True:
            ctx.set(strm.ready, ready_prob >= 1.0 or rng.random() < ready_prob)
            _, _, valid, ready, payload = await ctx.tick().sample(strm.valid, strm.ready, strm.payload)
            if valid and ready:
                out.append(payload)
    return run


def run_sim(dut, testbench, *, collectors=(), vcd=None):
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


# -- WordPacker with records from the model -------------------------------------

def record_beats(case, p: HwParams):
    recs = records(case.bits, case.settings)
    s = case.settings
    n, N, B = case.n, p.lanes, p.block
    beats = []
    for t in range(0, n, N):
        chunk = [int(r) for r in recs[t:t + N]]
        cnt = len(chunk)
        last = t + N >= n
        flush = last or (t + N) % B == 0
        beats.append({"recs": chunk + [0] * (N - cnt), "v": s.value_bits, "count": cnt,
                      "flush": int(flush), "last": int(last)})
    return beats


WP_CONFIGS = [
    HwParams(source="bf16", lanes=8, word=128, block=32),
    HwParams(source="bf16", lanes=1, word=64, block=16),
    HwParams(source="fp32", lanes=2, word=64, block=8, max_man_bits=12, max_exp_bits=7),
    HwParams(source="fp32", lanes=4, word=128, block=64),
]

WP_SETTINGS = [
    dict(),                                             # full width
    dict(man_bits=3, exp_bits=4, rounding="rz"),
    dict(man_bits=2, exp_bits=3, sign=False),
    dict(man_bits=5, exp_bits=5, specials=False),
    dict(man_bits=0, exp_bits=2),
]


def _settings(p: HwParams, kw: dict) -> Settings:
    kw = dict(kw)
    src = p.src
    kw.setdefault("man_bits", p.max_man_bits)
    kw["man_bits"] = min(kw["man_bits"], p.max_man_bits)
    kw["exp_bits"] = min(kw.get("exp_bits", p.max_exp_bits), p.max_exp_bits)
    return Settings(source=p.source, block=p.block, word=p.word, **kw)


@pytest.mark.parametrize("p", WP_CONFIGS, ids=lambda p: f"{p.source}_N{p.lanes}_W{p.word}_B{p.block}")
@pytest.mark.parametrize("stall", [False, True])
def test_wordpacker(p, stall):
    rng = np.random.default_rng(p.lanes * 7 + p.word)
    cases = []
    for i, kw in enumerate(WP_SETTINGS):
        n = int(rng.integers(1, 3 * p.block + 5)) if i else 2 * p.block + p.lanes * 3 + 1
        cases.append(make_case(adversarial_bits(p.source, rng, n), _settings(p, kw)))
    dut = WordPacker(p)
    words, lens = [], []
    prng = random.Random(1)
    accepted = []
    cyc = [0]

    async def tb(ctx):
        beats = [b for c in cases for b in record_beats(c, p)]
        await send(ctx, dut.i, beats, prng, idle_prob=0.3 if stall else 0.0, accepted=accepted)
        for _ in range(20):
            await ctx.tick()

    async def counter(ctx):
        while True:
            await ctx.tick()
            cyc[0] += 1

    run_sim(dut, tb, collectors=[
        collector(dut.words, words, random.Random(2), 0.5 if stall else 1.0),
        collector(dut.lens, lens, random.Random(3), 0.6 if stall else 1.0),
    ])
    exp_words = [(w, 0) for c in cases for w in c.words[:-1] + [None]]
    got = [(int(w.data), int(w.last)) for w in words]
    exp = []
    for c in cases:
        exp += [(w, int(k == len(c.words) - 1)) for k, w in enumerate(c.words)]
    assert len(got) == len(exp) and len(exp) > 10, (len(got), len(exp))
    print(f"{len(got)} words, {len(lens)} blocks")
    for k, (g, e) in enumerate(zip(got, exp)):
        assert g == e, f"word {k}: got {g[0]:#x} last={g[1]}, expected {e[0]:#x} last={e[1]}"
    exp_lens = []
    for c in cases:
        exp_lens += [(L, int(k == len(c.lens) - 1)) for k, L in enumerate(c.lens)]
    assert [(int(x.data), int(x.last)) for x in lens] == exp_lens


# -- WordUnpacker: model image in, model fields out ----------------------------

def _word_beats(case):
    return [{"data": w, "last": int(k == len(case.words) - 1)} for k, w in enumerate(case.words)]


@pytest.mark.parametrize("p", WP_CONFIGS, ids=lambda p: f"{p.source}_N{p.lanes}_W{p.word}_B{p.block}")
@pytest.mark.parametrize("stall", [False, True])
def test_wordunpacker(p, stall):
    from hw.wordunpack import WordUnpacker
    from model.quantize import as_bits, to_fields
    from sim_tests.packer_ref import cfg_value

    rng = np.random.default_rng(p.lanes * 5 + p.word)
    cases = []
    for i, kw in enumerate(WP_SETTINGS):
        n = int(rng.integers(1, 3 * p.block + 5)) if i else 2 * p.block + p.lanes * 3 + 1
        cases.append(make_case(adversarial_bits(p.source, rng, n), _settings(p, kw)))
    dut = WordUnpacker(p)
    beats = []
    prng = random.Random(4)

    async def tb(ctx):
        ctx.set(dut.cfg_ok, 1)
        for c in cases:
            cfgv = cfg_value(c.settings, c.n)
            first = True
            for wb in _word_beats(c):
                while stall and prng.random() < 0.3:
                    ctx.set(dut.i.valid, 0)
                    await ctx.tick()
                ctx.set(dut.i.payload, wb)
                ctx.set(dut.i.valid, 1)
                if first:
                    ctx.set(dut.cfg, cfgv)
                await ctx.tick().until(dut.i.ready)
                first = False
        ctx.set(dut.i.valid, 0)
        for _ in range(300):
            await ctx.tick()

    run_sim(dut, tb, collectors=[collector(dut.o, beats, random.Random(5), 0.5 if stall else 1.0)])
    k = 0
    for c in cases:
        f, _ = to_fields(as_bits(c.bits.astype(c.settings.src.dtype), c.settings.source), c.settings, strict=False)
        sign = f.sign & (1 if c.settings.sign else 0)
        for t in range(0, c.n, p.lanes):
            b = beats[k]
            k += 1
            cnt = min(p.lanes, c.n - t)
            assert int(b.last) == int(t + p.lanes >= c.n)
            assert int(b.keep) == (1 << cnt) - 1
            for j in range(cnt):
                got = (int(b.fields[j].sign), int(b.fields[j].code), int(b.fields[j].man))
                exp = (int(sign[t + j]), int(f.code[t + j]), int(f.man[t + j]))
                assert got == exp, f"value {t + j}: got {got}, expected {exp}"
    assert k == len(beats)
