"""Fast amaranth.sim tests of the packer/unpacker datapaths (the quick inner loop).

The RTL simulations over the generated Verilog are in ``sim_tests/test_packer.py``.
Expected results come from the golden model via ``sfp.sim_tests.packer_ref``.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from sfp.hw.params import HwParams
from sfp.hw.wordpack import WordPacker
from sfp.model.formats import Settings
from sfp.sim_tests.packer_ref import adversarial_bits, make_case, records
from streams import collector, run_sim, send  # noqa: E402  (tests/streams.py)


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

    async def tb(ctx):
        beats = [b for c in cases for b in record_beats(c, p)]
        await send(ctx, dut.i, beats, prng, idle_prob=0.3 if stall else 0.0)
        for _ in range(20):
            await ctx.tick()

    run_sim(dut, tb, collectors=[
        collector(dut.words, words, random.Random(2), 0.5 if stall else 1.0),
        collector(dut.lens, lens, random.Random(3), 0.6 if stall else 1.0),
    ])
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


# (the unpacker's word side is tested through the whole Unpacker: tests/test_hw_unpacker.py)

def _word_beats(case):
    return [{"data": w, "last": int(k == len(case.words) - 1)} for k, w in enumerate(case.words)]


# -- Packer / Unpacker (with hw.lane and hw.prng) --------------------------------

JUNK_CFG = {"man_bits": 31, "exp_bits": 15, "exp_base": 255, "sign": 1, "specials": 0, "rounding": 3,
            "gecko": 1, "seed": 0xDEADBEEF, "length": 7}


def value_beats(case, lanes):
    from sfp.sim_tests.packer_ref import beats_of

    return [{"data": d, "keep": (1 << cnt) - 1, "last": last} for d, cnt, last in beats_of(case.bits, lanes)]


async def send_tensors(ctx, dut, cases, rng, idle_prob, cfg_of, beats_of, cycles=None):
    """Drive tensors back to back; cfg is valid only with each tensor's first beat (junk otherwise)."""
    n_beats = 0
    n_cycles = 0
    for c in cases:
        for k, b in enumerate(beats_of(c)):
            while idle_prob and rng.random() < idle_prob:
                ctx.set(dut.s_axis.valid, 0)
                await ctx.tick()
            ctx.set(dut.cfg, cfg_of(c) if k == 0 else JUNK_CFG)
            ctx.set(dut.s_axis.payload, b)
            ctx.set(dut.s_axis.valid, 1)
            while True:
                _, _, rdy = await ctx.tick().sample(dut.s_axis.ready)
                n_cycles += 1
                if rdy:
                    break
            n_beats += 1
    ctx.set(dut.s_axis.valid, 0)
    if cycles is not None:
        cycles.append((n_beats, n_cycles))


def expected_stream(cases, field):
    out = []
    for c in cases:
        if not c.supported:
            continue
        items = getattr(c, field)
        out += [(int(w), int(k == len(items) - 1)) for k, w in enumerate(items)]
    return out


def unsupported_case(p, bits):
    s = _settings(p, {})
    c = make_case(bits, s)
    c.supported = False
    return c


def _unsup_cfg(c):
    from sfp.sim_tests.packer_ref import cfg_value

    d = cfg_value(c.settings, c.n)
    if not c.supported:
        d["exp_bits"] = 1                      # below the format's minimum: refused
    return d


PK_CONFIGS = [
    HwParams(source="bf16", lanes=8, word=128, block=32),
    HwParams(source="bf16", lanes=4, word=128, block=16),
    HwParams(source="fp32", lanes=4, word=128, block=16),
    HwParams(source="bf16", lanes=1, word=64, block=8),
    HwParams(source="fp32", lanes=2, word=64, block=8, max_man_bits=12, max_exp_bits=7),
]

PK_SETTINGS = [
    dict(),
    dict(man_bits=3, exp_bits=4, rounding="stochastic", seed=12345),
    dict(man_bits=2, exp_bits=3, sign=False),
    dict(man_bits=5, exp_bits=5, specials=False, rounding="rz"),
    dict(man_bits=0, exp_bits=2, exp_base=120),
    dict(man_bits=1, exp_bits=6, rounding="stochastic", seed=0xFFFFFFFF, exp_base=100),
]


def _pk_cases(p, rng, lengths=None):
    cases = []
    for i, kw in enumerate(PK_SETTINGS):
        n = lengths[i] if lengths else int(rng.integers(1, 2 * p.block + 5))
        cases.append(make_case(adversarial_bits(p.source, rng, n), _settings(p, kw)))
        if i == 2:
            cases.append(unsupported_case(p, adversarial_bits(p.source, rng, 2 * p.lanes + 1)))
    return cases


def _pid(p):
    return f"{p.source}_N{p.lanes}_W{p.word}_B{p.block}"


def expected_packer_status(cases):
    """The ``m_status`` entries the model implies: flags from ``to_fields``, words from ``encode_image``."""
    return [{"negative": int(c.neg) if c.supported else 0, "special": int(c.special) if c.supported else 0,
             "unsupported": int(not c.supported), "corrupt": 0, "length_error": 0,
             "values": c.n, "words": len(c.words) if c.supported else 0} for c in cases]


def status_entries(entries):
    return [{f: int(getattr(e, f)) for f in ("negative", "special", "unsupported", "corrupt", "length_error",
                                             "values", "words")} for e in entries]


@pytest.mark.parametrize("p", PK_CONFIGS, ids=_pid)
@pytest.mark.parametrize("stall", [False, True])
def test_packer(p, stall):
    from sfp.hw.packer import Packer

    rng = np.random.default_rng(p.lanes + p.word)
    cases = _pk_cases(p, rng)
    dut = Packer(p)
    words, lens, stat = [], [], []
    prng = random.Random(7)
    cycles = []

    async def tb(ctx):
        await send_tensors(ctx, dut, cases, prng, 0.3 if stall else 0.0, _unsup_cfg,
                           lambda c: value_beats(c, p.lanes), cycles)
        for _ in range(80):
            await ctx.tick()
        st = ctx.get(dut.status)
        last = cases[-1]
        assert (st.negative, st.special, st.unsupported, st.lost) == (last.neg, last.special, 0, 0)

    run_sim(dut, tb, collectors=[
        collector(dut.m_axis, words, random.Random(8), 0.5 if stall else 1.0),
        collector(dut.m_len, lens, random.Random(9), 0.6 if stall else 1.0),
        collector(dut.m_status, stat, random.Random(10), 0.5 if stall else 1.0),
    ])
    got = [(int(w.data), int(w.last)) for w in words]
    exp = expected_stream(cases, "words")
    for k, (g, e) in enumerate(zip(got, exp)):
        assert g == e, f"word {k}: got {g[0]:#x} last={g[1]}, expected {e[0]:#x} last={e[1]}"
    assert len(got) == len(exp)
    assert [(int(x.data), int(x.last)) for x in lens] == expected_stream(cases, "lens")
    assert status_entries(stat) == expected_packer_status(cases)
    print(f"{len(got)} words, {len(lens)} blocks, beats/cycles {cycles[0]}")
    if not stall:
        nb, nc = cycles[0]
        assert nb == nc, f"{nb} beats took {nc} cycles"


@pytest.mark.parametrize("p", PK_CONFIGS[:1], ids=_pid)
def test_packer_status(p):
    """Flags per tensor: set by its values, replaced by the next tensor, refusal writes nothing;
    m_status: one entry per tensor; entries not read are dropped (lost), the data path never waits."""
    from sfp.hw.packer import Packer

    rng = np.random.default_rng(3)
    neg = make_case(np.array([0x3F80, 0xBF80, 0x4000], np.uint32), _settings(p, dict(sign=False)))
    clean = make_case(np.array([0x3F80, 0x4000], np.uint32), _settings(p, {}))
    spec = make_case(np.array([0x7F80, 0x3F80], np.uint32), _settings(p, dict(specials=False)))
    bad = unsupported_case(p, adversarial_bits(p.source, rng, 9))
    seq = [(neg, (1, 0, 0)), (clean, (0, 0, 0)), (spec, (0, 1, 0)), (bad, (0, 0, 1)), (clean, (0, 0, 0))]
    dut = Packer(p)
    words, stat = [], []

    async def tb(ctx):
        for c, flags in seq:
            await send_tensors(ctx, dut, [c], None, 0.0, _unsup_cfg, lambda c: value_beats(c, p.lanes))
            for _ in range(12):
                await ctx.tick()
            st = ctx.get(dut.status)
            assert (st.negative, st.special, st.unsupported) == flags
        for _ in range(40):
            await ctx.tick()
        assert len(stat) == len(seq)
        # m_status not read: 8 entries are queued, the rest dropped (lost), words still flow
        ctx.set(dut.m_status.ready, 0)
        n_extra = 12
        await send_tensors(ctx, dut, [clean] * n_extra, None, 0.0, _unsup_cfg, lambda c: value_beats(c, p.lanes))
        for _ in range(60):
            await ctx.tick()
        assert ctx.get(dut.status.lost) == 1
        assert len(words) == len(expected_stream([c for c, _ in seq] + [clean] * n_extra, "words"))

    async def status_reader(ctx):
        # reads m_status until the testbench above drops ready
        while True:
            _, _, valid, ready, payload = await ctx.tick().sample(dut.m_status.valid, dut.m_status.ready,
                                                                  dut.m_status.payload)
            if valid and ready:
                stat.append(payload)

    async def drive_ready(ctx):
        ctx.set(dut.m_status.ready, 1)

    run_sim(dut, tb, collectors=[collector(dut.m_axis, words, random.Random(1)),
                                 collector(dut.m_len, [], random.Random(1)), drive_ready, status_reader])
    assert status_entries(stat[:len(seq)]) == expected_packer_status([c for c, _ in seq])
    assert len(stat) == len(seq)


def test_packer_empty_last_beat():
    """A ``tlast`` beat with ``tkeep`` = 0 is taken as ``tkeep`` = 1 (lane 0 stored): a tensor whose
    earlier beats end exactly at a block end still gets its final word (``tlast``) and its m_status
    entry.  Without that rule the empty block writes no word and an ``L_b`` of 0, so the tensor's
    words carry no ``tlast`` and its status entry never comes (the status proof found it)."""
    from sfp.hw.packer import Packer

    p = PK_CONFIGS[1]                                   # N = 4, B = 16
    rng = np.random.default_rng(11)
    lane0 = adversarial_bits(p.source, rng, 2)
    block = [adversarial_bits(p.source, rng, p.block), adversarial_bits(p.source, rng, 2 * p.block)]
    cases = [make_case(np.concatenate([b, lane0[k:k + 1]]), _settings(p, {})) for k, b in enumerate(block)]
    junk = int(rng.integers(0, 1 << 16))

    def beats(c):
        full = [{"data": list(map(int, c.bits[i:i + p.lanes])), "keep": (1 << p.lanes) - 1, "last": 0}
                for i in range(0, c.n - 1, p.lanes)]
        # the value that lane 0 carries on the empty last beat, then junk in the other lanes
        return full + [{"data": [int(c.bits[-1])] + [junk] * (p.lanes - 1), "keep": 0, "last": 1}]

    dut = Packer(p)
    words, lens, stat = [], [], []

    async def tb(ctx):
        await send_tensors(ctx, dut, cases, None, 0.0, _unsup_cfg, beats)
        for _ in range(100):
            await ctx.tick()

    run_sim(dut, tb, collectors=[collector(dut.m_axis, words, random.Random(2)),
                                 collector(dut.m_len, lens, random.Random(3)),
                                 collector(dut.m_status, stat, random.Random(4))])
    assert [(int(w.data), int(w.last)) for w in words] == expected_stream(cases, "words")
    assert [(int(x.data), int(x.last)) for x in lens] == expected_stream(cases, "lens")
    assert status_entries(stat) == expected_packer_status(cases)


@pytest.mark.parametrize("p", PK_CONFIGS, ids=_pid)
@pytest.mark.parametrize("stall", [False, True])
def test_unpacker(p, stall):
    from sfp.hw.unpacker import Unpacker

    rng = np.random.default_rng(p.lanes * 3 + p.word)
    cases = _pk_cases(p, rng)
    dut = Unpacker(p)
    beats = []
    prng = random.Random(11)
    cycles = []

    def word_beats(c):
        if not c.supported:                    # a refused tensor: some words, dropped
            return [{"data": 0x1234, "last": 0}, {"data": 0x5678, "last": 1}]
        return _word_beats(c)

    async def tb(ctx):
        await send_tensors(ctx, dut, cases, prng, 0.3 if stall else 0.0, _unsup_cfg, word_beats, cycles)
        for _ in range(200):
            await ctx.tick()
        assert ctx.get(dut.status.unsupported) == 0

    run_sim(dut, tb, collectors=[collector(dut.m_axis, beats, random.Random(12), 0.5 if stall else 1.0),
                                 collector(dut.m_status, [], random.Random(13))])
    k = 0
    for c in cases:
        if not c.supported:                    # refused: its beats, all zero (m_status says why)
            for t in range(0, c.n, p.lanes):
                assert not any(int(beats[k].data[j]) for j in range(p.lanes))
                k += 1
            continue
        for t in range(0, c.n, p.lanes):
            b = beats[k]
            k += 1
            cnt = min(p.lanes, c.n - t)
            assert int(b.last) == int(t + p.lanes >= c.n)
            assert int(b.keep) == (1 << cnt) - 1
            got = [int(b.data[j]) for j in range(p.lanes)]
            exp = [int(v) for v in c.out[t:t + cnt]] + [0] * (p.lanes - cnt)
            assert got == exp, f"values {t}..: got {[hex(v) for v in got]}, expected {[hex(v) for v in exp]}"
    assert k == len(beats)
    print(f"{k} beats, words in/cycles {cycles[0]}")


# -- throughput: long tensors, settings changing at every tensor, no stalls ----------

TP_SETTINGS = [dict(), dict(man_bits=3, exp_bits=4, rounding="stochastic", seed=5), dict(man_bits=1, exp_bits=2),
               dict(man_bits=6, exp_bits=7, sign=False), dict(man_bits=4, exp_bits=5, specials=False, rounding="rz")]


@pytest.mark.parametrize("p", PK_CONFIGS, ids=_pid)
def test_throughput(p):
    """Packer: every cycle accepts a beat; unpacker: every cycle emits a beat (block and tensor boundaries too)."""
    from sfp.hw.packer import Packer
    from sfp.hw.unpacker import Unpacker

    rng = np.random.default_rng(21)
    cases = [make_case(adversarial_bits(p.source, rng, 3 * p.block + (i * 3) % p.lanes + 1 + 5 * p.lanes),
                       _settings(p, kw)) for i, kw in enumerate(TP_SETTINGS)]
    dut = Packer(p)
    words, cycles = [], []

    async def tb(ctx):
        await send_tensors(ctx, dut, cases, None, 0.0, _unsup_cfg, lambda c: value_beats(c, p.lanes), cycles)
        for _ in range(100):        # the pipelined packer's latency is ~25 clocks (docs/hardware.md)
            await ctx.tick()

    run_sim(dut, tb, collectors=[collector(dut.m_axis, words, random.Random(1)),
                                 collector(dut.m_len, [], random.Random(1))])
    assert [(int(w.data), int(w.last)) for w in words] == expected_stream(cases, "words")
    nb, nc = cycles[0]
    assert nb == nc, f"packer: {nb} beats took {nc} cycles"

    dut = Unpacker(p)
    beats, times = [], []

    async def tb2(ctx):
        await send_tensors(ctx, dut, cases, None, 0.0, _unsup_cfg, _word_beats)
        for _ in range(200):        # the pipelined unpacker's latency is ~29 clocks (docs/hardware.md)
            await ctx.tick()

    run_sim(dut, tb2, collectors=[collector(dut.m_axis, beats, random.Random(1), times=times),
                                  collector(dut.m_status, [], random.Random(2))])
    assert len(beats) == sum(-(-c.n // p.lanes) for c in cases)
    span = times[-1] - times[0] + 1
    assert span == len(beats), f"unpacker: {len(beats)} beats over {span} cycles"


# -- Gecko builds (HwParams.gecko): GeckoWordPacker / the GeckoParser stage behind the same ports ----------

GK_CONFIGS = [
    HwParams(source="bf16", lanes=8, word=128, block=64, group=32, gecko=True),
    HwParams(source="fp32", lanes=4, word=128, block=32, group=8, gecko=True),
    HwParams(source="bf16", lanes=2, word=64, block=16, group=8, gecko=True, max_man_bits=5, max_exp_bits=6),
]

# (gecko, settings): Gecko on and off back to back, settings changing at every tensor
GK_SETTINGS = [
    (True, dict(exp_base=0)),
    (True, dict(man_bits=3, exp_bits=4, exp_base=120, rounding="stochastic", seed=77)),
    (False, dict(man_bits=2, exp_bits=3, exp_base=124, sign=False)),
    (True, dict(man_bits=0, exp_bits=3, exp_base=125, specials=False)),
    (True, dict(man_bits=5, exp_bits=5, exp_base=110, rounding="rz")),
    (False, dict(exp_base=0)),
    (True, dict(man_bits=1, exp_bits=6, exp_base=90, sign=False)),
]


def _gk_settings(p: HwParams, gecko: bool, kw: dict) -> Settings:
    return _settings(p, kw).with_(gecko=gecko, group=p.group)


def _gk_cases(p, rng):
    """Gecko stress patterns and real tensors, Gecko on/off, a refused (Gecko) tensor, odd lengths."""
    from sfp.sim_tests.packer_ref import gecko_adversarial_bits, real_tensor_bits

    cases = []
    for i, (gk, kw) in enumerate(GK_SETTINGS):
        s = _gk_settings(p, gk, kw)
        n = int(rng.integers(1, 3 * p.block + 5)) if i % 3 else 3 * p.block + 2 * p.group + 3
        cases.append(make_case(gecko_adversarial_bits(rng, n, s), s))
        if i == 2:
            bad = make_case(adversarial_bits(p.source, rng, 2 * p.block + 1), _gk_settings(p, True, {}))
            bad.supported = False
            cases.append(bad)
    s = _gk_settings(p, True, dict(man_bits=min(3, p.max_man_bits), exp_bits=min(5, p.max_exp_bits)))
    cases.append(make_case(real_tensor_bits(p.source, "epoch10/act/relu1.out", 2 * p.block + 7), s))
    cases.append(make_case(real_tensor_bits(p.source, "epoch10/grad/fc1.weight", 2 * p.block + 1),
                           _gk_settings(p, True, {})))
    assert any(c.supported and c.settings.gecko and any(
        L == -(-min(p.block, c.n - b * p.block) * c.settings.value_bits // p.word)
        for b, L in enumerate(c.lens)) for c in cases), "no block fell back to plain"
    return cases


def _len_entries(cases):
    """What s_len carries: every tensor's block index (a refused tensor's: ceil(n/B) junk entries)."""
    out = []
    for c in cases:
        ls = c.lens if c.supported else [0xABCDE] * len(c.lens)
        out += [{"data": int(L), "last": int(k == len(ls) - 1)} for k, L in enumerate(ls)]
    return out


def len_driver(strm, entries, rng, idle_prob=0.0):
    async def run(ctx):
        await send(ctx, strm, entries, rng, idle_prob)
    return run


def test_gecko_lanes_refused():
    from sfp.hw.packer import Packer
    from sfp.hw.params import ParamError
    from sfp.hw.top import generate_verilog
    from sfp.hw.unpacker import Unpacker

    p = HwParams(source="bf16", lanes=16, word=512, gecko=True)
    for cls in (Packer, Unpacker):
        with pytest.raises(ParamError, match="1, 2, 4 or 8 lanes"):
            cls(p)
    with pytest.raises(ParamError, match="1, 2, 4 or 8 lanes"):
        generate_verilog(p, "/nonexistent/never-written")


@pytest.mark.parametrize("p", GK_CONFIGS, ids=_pid)
@pytest.mark.parametrize("stall", [False, True])
def test_packer_gecko(p, stall):
    """Integrated Packer with Gecko: words == encode_image(...).payload, lengths == block_words."""
    from sfp.hw.packer import Packer

    rng = np.random.default_rng(p.lanes + p.word + 1)
    cases = _gk_cases(p, rng)
    dut = Packer(p)
    words, lens, cycles = [], [], []

    async def tb(ctx):
        await send_tensors(ctx, dut, cases, random.Random(17), 0.3 if stall else 0.0, _unsup_cfg,
                           lambda c: value_beats(c, p.lanes), cycles)
        for _ in range(60 + p.block):
            await ctx.tick()
        st = ctx.get(dut.status)
        assert (st.negative, st.special, st.unsupported) == (cases[-1].neg, cases[-1].special, 0)

    run_sim(dut, tb, collectors=[
        collector(dut.m_axis, words, random.Random(18), 0.5 if stall else 1.0),
        collector(dut.m_len, lens, random.Random(19), 0.4 if stall else 1.0),
    ])
    got = [(int(w.data), int(w.last)) for w in words]
    exp = expected_stream(cases, "words")
    for k, (g, e) in enumerate(zip(got, exp)):
        assert g == e, f"word {k}: got {g[0]:#x} last={g[1]}, expected {e[0]:#x} last={e[1]}"
    assert len(got) == len(exp)
    assert [(int(x.data), int(x.last)) for x in lens] == expected_stream(cases, "lens")
    nb, nc = cycles[0]
    # Not one beat per clock here: short tensors hold a bank for its analysis and
    # emission (~B/4 clocks) after one beat of fill (GeckoStage); see test_gecko_throughput.
    print(f"{len(got)} words, {len(lens)} blocks, beats/cycles {nb}/{nc}")


@pytest.mark.parametrize("p", GK_CONFIGS, ids=_pid)
@pytest.mark.parametrize("stall", [False, True])
def test_unpacker_gecko(p, stall):
    """Integrated Unpacker with Gecko: words + s_len (the packer's lengths) in, quantize(x) out."""
    from sfp.hw.unpacker import Unpacker

    rng = np.random.default_rng(p.lanes * 5 + p.word)
    cases = _gk_cases(p, rng)
    dut = Unpacker(p)
    beats, times = [], []

    def word_beats(c):
        if not c.supported:
            return [{"data": 0x1234, "last": 0}, {"data": 0x5678, "last": 1}]
        return _word_beats(c)

    want = sum(-(-c.n // p.lanes) for c in cases)      # refused tensors too (zero beats)

    async def tb(ctx):
        await send_tensors(ctx, dut, cases, random.Random(21), 0.3 if stall else 0.0, _unsup_cfg, word_beats)
        for _ in range(100 + p.block + 8 * want):
            if len(beats) == want:
                break
            await ctx.tick()
        for _ in range(20):
            await ctx.tick()
        assert ctx.get(dut.status.unsupported) == 0
        assert not ctx.get(dut.s_len.valid) or not ctx.get(dut.s_len.ready)

    run_sim(dut, tb, collectors=[
        collector(dut.m_axis, beats, random.Random(22), 0.5 if stall else 1.0, times=times),
        len_driver(dut.s_len, _len_entries(cases), random.Random(23), 0.5 if stall else 0.0),
    ])
    k = 0
    for c in cases:
        if not c.supported:                    # refused: its beats, all zero
            for t in range(0, c.n, p.lanes):
                assert not any(int(beats[k].data[j]) for j in range(p.lanes))
                k += 1
            continue
        for t in range(0, c.n, p.lanes):
            b = beats[k]
            k += 1
            cnt = min(p.lanes, c.n - t)
            assert (int(b.last), int(b.keep)) == (int(t + p.lanes >= c.n), (1 << cnt) - 1), f"beat {k - 1}"
            got = [int(b.data[j]) for j in range(p.lanes)]
            exp = [int(v) for v in c.out[t:t + cnt]] + [0] * (p.lanes - cnt)
            assert got == exp, f"values {t}..: got {[hex(v) for v in got]}, expected {[hex(v) for v in exp]}"
    assert k == len(beats)


def test_gecko_refusal_status():
    """Gecko build: a refused tensor consumes its words and block-index entries, emits zero beats; the next decodes exactly."""
    from sfp.hw.unpacker import Unpacker

    p = GK_CONFIGS[0]
    rng = np.random.default_rng(5)
    from sfp.sim_tests.packer_ref import gecko_adversarial_bits

    s = _gk_settings(p, True, dict(exp_base=0))
    good = make_case(gecko_adversarial_bits(rng, 2 * p.block + 9, s), s)
    bad = make_case(adversarial_bits(p.source, rng, 3 * p.block + 1), s)
    bad.supported = False
    seq = [(bad, 1), (good, 0), (bad, 1), (bad, 1), (good, 0)]
    dut = Unpacker(p)
    beats = []

    def word_beats(c):
        if not c.supported:
            return [{"data": 0x1234, "last": 0}, {"data": 0x5678, "last": 1}]
        return _word_beats(c)

    async def tb(ctx):
        for c, flag in seq:
            await send_tensors(ctx, dut, [c], None, 0.0, _unsup_cfg, word_beats)
            for _ in range(20 + p.block):
                await ctx.tick()
            assert ctx.get(dut.status.unsupported) == flag

    run_sim(dut, tb, collectors=[collector(dut.m_axis, beats, random.Random(1)),
                                 len_driver(dut.s_len, _len_entries([c for c, _ in seq]), random.Random(2))])
    # a refused tensor's beats are all zero (its status entry says why)
    got = [int(b.data[j]) for b in beats for j in range(p.lanes)]
    exp = []
    for c, flag in seq:
        exp += [0] * (-(-c.n // p.lanes) * p.lanes) if flag else [int(v) for v in c.out] + [0] * (-c.n % p.lanes)
    assert got == exp


@pytest.mark.parametrize("p", GK_CONFIGS[:2], ids=_pid)
def test_gecko_throughput(p):
    """Gecko on, long tensors back to back, no stalls: packer and unpacker at one beat per clock."""
    from sfp.hw.packer import Packer
    from sfp.hw.unpacker import Unpacker
    from sfp.sim_tests.packer_ref import real_tensor_bits

    rng = np.random.default_rng(31)
    from sfp.sim_tests.packer_ref import gecko_adversarial_bits

    nt = 24 * p.block + 3
    s1 = _gk_settings(p, True, dict(exp_base=0))
    s2 = _gk_settings(p, True, dict(man_bits=2, exp_bits=4))
    s3 = _gk_settings(p, False, dict(man_bits=4, exp_bits=5))
    cases = [make_case(real_tensor_bits(p.source, "epoch10/act/conv2.out", nt), s1),
             make_case(gecko_adversarial_bits(rng, nt, s1), s1),
             make_case(real_tensor_bits(p.source, "epoch10/grad/conv2.out", nt), s2),
             make_case(real_tensor_bits(p.source, "epoch10/weight/fc1.weight", nt), s3)]
    dut = Packer(p)
    words, cycles = [], []

    async def tb(ctx):
        await send_tensors(ctx, dut, cases, None, 0.0, _unsup_cfg, lambda c: value_beats(c, p.lanes), cycles)
        for _ in range(60 + p.block):
            await ctx.tick()

    run_sim(dut, tb, collectors=[collector(dut.m_axis, words, random.Random(1)),
                                 collector(dut.m_len, [], random.Random(1))])
    assert [(int(w.data), int(w.last)) for w in words] == expected_stream(cases, "words")
    nb, nc = cycles[0]
    print(f"packer gecko {_pid(p)}: {nb} beats / {nc} cycles = {nb / nc:.4f}")
    assert nb / nc >= 0.99, f"packer: {nb} beats took {nc} cycles"

    dut = Unpacker(p)
    beats, times = [], []

    async def tb2(ctx):
        await send_tensors(ctx, dut, cases, None, 0.0, _unsup_cfg, _word_beats)
        for _ in range(100):
            await ctx.tick()

    run_sim(dut, tb2, collectors=[collector(dut.m_axis, beats, random.Random(1), times=times),
                                  len_driver(dut.s_len, _len_entries(cases), None)])
    assert len(beats) == sum(-(-c.n // p.lanes) for c in cases)
    got = [int(b.data[j]) for b in beats for j in range(p.lanes)]
    exp = []
    for c in cases:
        exp += [int(v) for v in c.out] + [0] * (-c.n % p.lanes)
    assert got == exp
    span = times[-1] - times[0] + 1
    print(f"unpacker gecko {_pid(p)}: {len(beats)} beats / {span} cycles = {len(beats) / span:.4f}")
    assert len(beats) / span >= 0.99, f"unpacker: {len(beats)} beats over {span} cycles"


# -- generated Verilog: lint and compile ----------------------------------------

from sfp.hw.top import LINT_WAIVERS  # noqa: E402  (waivers explained in hw/top.py)


@pytest.mark.parametrize("p", [HwParams(), HwParams(gecko=True), HwParams(source="fp32", lanes=4, gecko=True)],
                         ids=["bf16_n8", "bf16_n8_gecko", "fp32_n4_gecko"])
def test_generated_verilog_lint(tmp_path, p):
    import json
    import shutil
    import subprocess

    from sfp.hw.top import generate_verilog
    from sfp.sim_tests.simenv import sim_env

    man = generate_verilog(p, tmp_path)
    assert set(man["modules"]) == {"sfp_packer", "sfp_unpacker"}
    assert json.loads((tmp_path / "sfp_manifest.json").read_text()) == man
    names = {q["name"] for q in man["modules"]["sfp_packer"]["ports"]}
    assert {"s_axis_tdata", "s_axis_tkeep", "m_axis_tdata", "m_len_tdata", "cfg_man_bits",
            "status_negative", "status_unsupported", "clk", "rst"} <= names
    unames = {q["name"] for q in man["modules"]["sfp_unpacker"]["ports"]}
    s_len = {"s_len_tdata", "s_len_tlast", "s_len_tvalid", "s_len_tready"}
    assert (s_len <= unames) if p.gecko else not (s_len & unames)
    env = sim_env()
    for mod in ("sfp_packer", "sfp_unpacker"):
        v = tmp_path / f"{mod}.v"
        text = v.read_text()
        assert f"module {mod}(" in text
        if shutil.which("verilator", path=env.get("PATH")):
            r = subprocess.run(["verilator", "--lint-only", "-Wall", *LINT_WAIVERS, str(v)],
                               env=env, capture_output=True, text=True, cwd=tmp_path)
            assert r.returncode == 0, r.stderr[-3000:]
        if shutil.which("iverilog"):
            r = subprocess.run(["iverilog", "-o", str(tmp_path / f"{mod}.vvp"), str(v)], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr[-3000:]
