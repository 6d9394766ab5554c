"""amaranth.sim tests of the Gecko back end (hw/gecko_stage.py) and decoder stage (hw/gecko_parse.py, in the Unpacker) vs the golden model.

Expected words/lengths come from ``sfp.model.blocks.pack_image`` (what
``sfp.model.container.encode_image`` packs; checked equal to ``encode_image``'s
payload for the real tensors) and expected fields from
``sfp.model.quantize.to_fields`` (the decoder: the Unpacker's values,
``from_fields`` of them).  Stimuli: real training tensors (bf16) and
fields with adversarial exponent patterns built directly (every Gecko
mode, b = 0 groups, escapes, blocks that fall back to plain).  The packer's
Gecko back end (:class:`GeckoWordPacker`) takes records: the test forms them
from the fields by format.md 4.2 (``S << (e+m) | C << m | Q``).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from sfp.hw.gecko_stage import GeckoWordPacker
from sfp.hw.params import HwParams, ParamError
from sfp.model import bitpack, gecko
from sfp.model.blocks import pack_image, unpack_image
from sfp.model.formats import Settings
from sfp.model.quantize import Fields, as_bits, from_fields, to_fields
from streams import collector, run_sim, send  # noqa: E402  (tests/streams.py)

# -- stimulus --------------------------------------------------------------------


def settings_for(p: HwParams, **kw) -> Settings:
    kw.setdefault("gecko", True)
    kw.setdefault("exp_base", 0)
    return Settings(source=p.source, group=p.group, block=p.block, word=p.word, **kw)


def adversarial_fields(rng: np.random.Generator, n: int, s: Settings) -> Fields:
    """Fields whose exponent codes exercise every Gecko case, chosen group by group."""
    e, m, G = s.exp_bits, s.man_bits, s.group
    top = (1 << e) - 1
    codes = np.zeros(n, np.int64)
    for g0 in range(0, n, G):
        g = min(G, n - g0)
        kind = rng.integers(0, 11)
        hi = int(rng.integers(1, top + 1))
        if kind == 0:                                   # all equal (incl. all zero: b = 0)
            c = np.full(g, int(rng.choice([0, hi])))
        elif kind == 1:                                 # alternating extremes
            c = np.where(np.arange(g) % 2 == 0, 0, top)
        elif kind == 2:                                 # zeros scattered among large codes
            c = np.where(rng.random(g) < 0.3, 0, top - rng.integers(0, 2, g))
        elif kind == 3:                                 # one outlier per group (an escape when far)
            c = top - rng.integers(0, 2, g)
            c[rng.integers(0, g)] = int(rng.integers(0, top + 1))
        elif kind in (4, 5, 6):                         # geometric below the max: k = 0, 1, 2
            hi = top - int(rng.integers(0, 2))
            c = hi - np.minimum(rng.geometric(1 / (1.5 * (1 << (kind - 4))), g) - 1, hi)
            c = np.where(rng.random(g) < 0.1, 0, c)
        elif kind == 7:                                 # uniform: raw mode, plain fallback
            c = rng.integers(0, top + 1, g)
        elif kind == 8:                                 # escapes: far below the max
            c = np.where(rng.random(g) < 0.5, top, rng.integers(1, max(2, top - 20), g))
        elif kind == 9:                                 # b = 0 group
            c = np.zeros(g, np.int64)
        else:                                           # a whole slice of escapes in a Rice group (a burst)
            c = np.full(g, top)
            s0 = 8 * int(rng.integers(0, -(-g // 8)))
            c[s0:s0 + 8] = rng.integers(1, max(2, top - 16), min(8, g - s0)) if top > 17 else 0
        codes[g0:g0 + g] = c
    sign = rng.integers(0, 2, n) * (1 if s.sign else 0)
    man = rng.integers(0, 1 << m, n) if m else np.zeros(n, np.int64)
    return Fields(sign.astype(np.uint32), codes.astype(np.uint32), man.astype(np.uint32))


_REAL: dict = {}


def real_fields(key_like: str, n: int, offset: int, s: Settings):
    """(fields, resolved settings, bf16 bits) of ``n`` values of a real training tensor."""
    import ml_dtypes

    from sfp.train.tensors import ensure_tensors

    if key_like not in _REAL:
        with np.load(ensure_tensors()) as z:
            key = next(k for k in sorted(z.files) if key_like in k)
            _REAL[key_like] = np.asarray(z[key], np.float32).reshape(-1)
    a = _REAL[key_like]
    a = np.resize(a[offset:], n)
    x = a.astype(ml_dtypes.bfloat16)
    f, rs = to_fields(as_bits(x, "bf16"), s.with_(exp_base="auto"), strict=False)
    return f, rs, x


def expected_image(f: Fields, s: Settings):
    words32, block_words = pack_image(f, s)
    payload = bitpack.to_bytes(words32, int(block_words.sum()) * s.word // 8)
    nb = s.word // 8
    words = [int.from_bytes(payload[i:i + nb], "little") for i in range(0, len(payload), nb)]
    return words, [int(x) for x in block_words], payload


def cfg_of(s: Settings, n: int) -> dict:
    return {"man_bits": s.man_bits, "exp_bits": s.exp_bits, "exp_base": int(s.exp_base), "sign": int(s.sign),
            "specials": int(s.specials), "rounding": 0, "gecko": int(s.gecko), "seed": 0, "length": n}


def enc_beats(f: Fields, s: Settings, N: int) -> list[dict]:
    """Record beats (format.md 4.2) of N values, zero beyond ``count`` as the record former sends them."""
    n = f.code.size
    e, m = s.exp_bits, s.man_bits
    recs = [((int(f.sign[i]) & int(s.sign)) << (e + m)) | (int(f.code[i]) << m) | int(f.man[i]) for i in range(n)]
    st = {"s": int(s.sign), "e": e, "m": m, "gecko": int(s.gecko)}
    beats = []
    for t in range(0, n, N):
        cnt = min(N, n - t)
        beats.append({"recs": recs[t:t + cnt] + [0] * (N - cnt), "count": cnt, "last": int(t + N >= n), "set": st})
    return beats


# -- simulation helpers (stream drivers: tests/streams.py) ---------------------------

def run_encoder(p: HwParams, tensors, *, idle=0.0, ready=1.0, seed=0, accept_times=None):
    """Feed ``tensors`` [(fields, settings)] back to back; return (words [(data, last)], lens [(L, last)])."""
    dut = GeckoWordPacker(p)
    words, lens = [], []
    rng = random.Random(seed)
    beats = [b for f, s in tensors for b in enc_beats(f, s, p.lanes)]
    total_words = sum(len(expected_image(f, s)[0]) for f, s in tensors)

    async def tb(ctx):
        if accept_times is not None:
            cyc = 0
            for b in beats:
                ctx.set(dut.i.payload, b)
                ctx.set(dut.i.valid, 1)
                while True:
                    _, _, rd = await ctx.tick().sample(dut.i.ready)
                    cyc += 1
                    if rd:
                        break
                accept_times.append(cyc)
            ctx.set(dut.i.valid, 0)
        else:
            await send(ctx, dut.i, beats, rng, idle)
        for _ in range(20000):
            if len(words) >= total_words:
                break
            await ctx.tick()
        for _ in range(10):
            await ctx.tick()

    run_sim(dut, tb, [collector(dut.words, words, random.Random(seed + 1), ready),
                      collector(dut.lens, lens, random.Random(seed + 2), ready)])
    return ([(int(w.data), int(w.last)) for w in words], [(int(x.data), int(x.last)) for x in lens])


def check_encoder(p, tensors, **kw):
    got_w, got_l = run_encoder(p, tensors, **kw)
    exp_w, exp_l = [], []
    for f, s in tensors:
        w, lb, _ = expected_image(f, s)
        exp_w += [(x, int(k == len(w) - 1)) for k, x in enumerate(w)]
        exp_l += [(x, int(k == len(lb) - 1)) for k, x in enumerate(lb)]
    assert got_l == exp_l, f"block lengths differ:\n got {got_l}\n exp {exp_l}"
    assert len(got_w) == len(exp_w), (len(got_w), len(exp_w))
    for k, (g, e) in enumerate(zip(got_w, exp_w)):
        assert g == e, f"word {k}: got {g[0]:#x} last={g[1]}, expected {e[0]:#x} last={e[1]}"
    return exp_l


# -- encoder tests ----------------------------------------------------------------

def test_param_refusal():
    for bad in (HwParams(lanes=16, word=512, gecko=True), HwParams(group=4, block=256, gecko=True),
                HwParams(lanes=8, block=16, group=32, gecko=True)):
        with pytest.raises(ParamError):
            GeckoWordPacker(bad)


def test_encoder_adversarial_smoke():
    p = HwParams(source="bf16", lanes=8, word=128, block=64, group=16, gecko=True, stochastic=False)
    rng = np.random.default_rng(1)
    s = settings_for(p)
    f = adversarial_fields(rng, 64 * 5 + 21, s)
    lens = check_encoder(p, [(f, s)])
    print(lens)


ENC_CONFIGS = [
    HwParams(source="bf16", lanes=8, word=128, block=64, group=32, gecko=True, stochastic=False),
    HwParams(source="bf16", lanes=4, word=64, block=32, group=16, gecko=True, stochastic=False),
    HwParams(source="fp32", lanes=2, word=128, block=64, group=8, gecko=True, stochastic=False),
    HwParams(source="bf16", lanes=1, word=64, block=16, group=8, gecko=True, stochastic=False, max_exp_bits=6, max_man_bits=4),
]

SETTINGS_MIX = [dict(), dict(man_bits=0, exp_bits=3), dict(man_bits=2, exp_bits=5, sign=False),
                dict(man_bits=1, exp_bits=2, gecko=False), dict(man_bits=3, exp_bits=8, sign=False)]


def _mix(p: HwParams, rng, kinds=SETTINGS_MIX):
    out = []
    for i, kw in enumerate(kinds):
        kw = dict(kw)
        kw["man_bits"] = min(kw.get("man_bits", p.max_man_bits), p.max_man_bits)
        kw["exp_bits"] = min(kw.get("exp_bits", p.max_exp_bits), p.max_exp_bits)
        s = settings_for(p, **kw)
        n = int(rng.integers(1, 3 * p.block + 7)) if i else 2 * p.block + 3 * p.group // 2 + 5
        out.append((adversarial_fields(rng, n, s), s))
    return out


@pytest.mark.parametrize("p", ENC_CONFIGS, ids=lambda p: f"{p.source}_N{p.lanes}_W{p.word}_B{p.block}_G{p.group}")
@pytest.mark.parametrize("stall", [False, True])
def test_encoder_back_to_back(p, stall):
    rng = np.random.default_rng(p.lanes * 31 + p.word + stall)
    tensors = _mix(p, rng)
    lens = check_encoder(p, tensors, idle=0.3 if stall else 0.0, ready=0.4 if stall else 1.0, seed=p.lanes)
    plain = sum(1 for f, s in tensors for c, L in zip(*_plain_words(f, s)) if c == L)
    assert 0 < plain < len(lens), "the mix must have both coded and plain blocks"


def _plain_words(f, s):
    from sfp.model.blocks import block_counts
    counts = block_counts(f.code.size, s.block)
    pw = (counts * s.value_bits + s.word - 1) // s.word
    return pw, expected_image(f, s)[1]


# -- decoder -------------------------------------------------------------------------

def run_decoder(p: HwParams, tensors, *, idle=0.0, ready=1.0, seed=0, out_times=None):
    """Feed the model images of ``tensors`` [(fields, settings)] to the Unpacker (whose Gecko stage,
    ``hw/gecko_parse.py``, decodes them); return its output beats and status entries."""
    from sfp.hw.unpacker import Unpacker

    dut = Unpacker(p)
    beats, stats = [], []
    rng = random.Random(seed)
    total_beats = sum(-(-f.code.size // p.lanes) for f, s in tensors)
    words, lens = [], []
    for f, s in tensors:
        w, lb, _ = expected_image(f, s)
        cfg = cfg_of(s, f.code.size)
        for k, x in enumerate(w):
            words.append(({"data": x, "last": int(k == len(w) - 1)}, cfg if k == 0 else None))
        # every tensor's entries, also a cfg.gecko = 0 one's (the unpacker drops those)
        lens += [{"data": x, "last": int(k == len(lb) - 1)} for k, x in enumerate(lb)]

    async def tb_words(ctx):
        for pl, cfg in words:
            while idle and rng.random() < idle:
                ctx.set(dut.s_axis.valid, 0)
                await ctx.tick()
            ctx.set(dut.s_axis.payload, pl)
            ctx.set(dut.s_axis.valid, 1)
            if cfg is not None:
                ctx.set(dut.cfg, cfg)
            await ctx.tick().until(dut.s_axis.ready)
        ctx.set(dut.s_axis.valid, 0)

    async def tb(ctx):
        for _ in range(40000):
            if len(beats) >= total_beats and len(stats) >= len(tensors):
                break
            await ctx.tick()
        for _ in range(10):
            await ctx.tick()

    lrng = random.Random(seed + 7)

    async def tb_lens(ctx):
        await send(ctx, dut.s_len, lens, lrng, idle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(collector(dut.m_axis, beats, random.Random(seed + 3), ready, out_times), background=True)
    sim.add_testbench(collector(dut.m_status, stats, random.Random(seed + 4), 1.0), background=True)
    sim.add_testbench(tb_words, background=True)
    sim.add_testbench(tb_lens, background=True)
    sim.add_testbench(tb)
    sim.run()
    return beats, stats


def check_decoder(p, tensors, **kw):
    beats, stats = run_decoder(p, tensors, **kw)
    N = p.lanes
    k = 0
    for ti, (f, s) in enumerate(tensors):
        n = f.code.size
        # the model's decode of the image equals the fields the image was built from, and the
        # unpacker must return those fields' values (from_fields, format.md 3.7)
        words32, block_words = pack_image(f, s)
        ref = unpack_image(words32, block_words, s, n)
        assert np.array_equal(ref.code, f.code) and np.array_equal(ref.man, f.man)
        want = from_fields(f, s)
        for t in range(0, n, N):
            assert k < len(beats), f"tensor {ti}: only {len(beats)} beats out"
            b = beats[k]
            cnt = min(N, n - t)
            assert int(b.keep) == (1 << cnt) - 1, (ti, t, int(b.keep))
            assert int(b.last) == int(t + N >= n), (ti, t)
            for j in range(N):
                got = int(b.data[j])
                exp = int(want[t + j]) if j < cnt else 0
                assert got == exp, f"tensor {ti} value {t + j}: got {got:#x}, expected {exp:#x}"
            k += 1
        st = stats[ti]
        assert (int(st.unsupported), int(st.corrupt), int(st.length_error)) == (0, 0, 0), ti
        assert (int(st.values), int(st.words)) == (n, int(block_words.sum())), ti
    assert k == len(beats) and len(stats) == len(tensors)


def test_decoder_adversarial_smoke():
    p = HwParams(source="bf16", lanes=8, word=128, block=64, group=16, gecko=True, stochastic=False)
    rng = np.random.default_rng(1)
    s = settings_for(p)
    f = adversarial_fields(rng, 64 * 5 + 21, s)
    check_decoder(p, [(f, s)])


@pytest.mark.parametrize("p", ENC_CONFIGS, ids=lambda p: f"{p.source}_N{p.lanes}_W{p.word}_B{p.block}_G{p.group}")
@pytest.mark.parametrize("stall", [False, True])
def test_decoder_back_to_back(p, stall):
    rng = np.random.default_rng(p.lanes * 17 + p.word + stall)
    tensors = _mix(p, rng)
    check_decoder(p, tensors, idle=0.3 if stall else 0.0, ready=0.4 if stall else 1.0, seed=p.lanes + 5)


# -- real training tensors, default parameters ----------------------------------------

P_DEFAULT = HwParams(source="bf16", lanes=8, word=128, block=256, group=32, gecko=True, stochastic=False)

REAL = [("act/relu2.out", 3001, 0, dict()),                                  # ReLU zeros: z flag
        ("grad/conv2.out", 2777, 4096, dict(man_bits=3, exp_bits=4)),
        ("weight/fc1.weight", 2061, 1000, dict(man_bits=2, exp_bits=5, sign=False)),
        ("act/conv1.out", 1500, 77, dict(man_bits=7, exp_bits=3))]


def _real_tensors(p):
    from sfp.model.container import encode_image

    out = []
    for key, n, off, kw in REAL:
        f, rs, x = real_fields(key, n, off, settings_for(p, **kw))
        enc = encode_image(x, rs, strict=False)
        w, lb, payload = expected_image(f, rs)
        assert payload == enc.payload and lb == [int(v) for v in enc.block_words]   # pack_image == encode_image
        out.append((f, rs))
    return out


def test_encoder_real_tensors():
    tensors = _real_tensors(P_DEFAULT)
    lens = check_encoder(P_DEFAULT, tensors, idle=0.1, ready=0.8, seed=11)
    coded = sum(1 for f, s in tensors for pw, L in zip(*_plain_words(f, s)) if L < pw)
    assert coded > len(lens) // 2, "real tensors are mostly Gecko-coded"


def test_decoder_real_tensors():
    tensors = _real_tensors(P_DEFAULT)
    check_decoder(P_DEFAULT, tensors, idle=0.1, ready=0.8, seed=12)


def test_adversarial_mix_covers_every_case():
    """The adversarial generator reaches every mode, b = 0, escapes, coded and plain blocks."""
    modes, zero_groups, escapes, coded, plain = set(), 0, 0, 0, 0
    for p, stall in [(p, st) for p in ENC_CONFIGS for st in (False, True)]:
      for f, s in _mix(p, np.random.default_rng(p.lanes * 31 + p.word + stall)):
        if not s.gecko:
            continue
        gc = gecko.code_groups(f.code, s.group, s.exp_bits)
        modes |= set(int(k) for k in gc.mode[gc.base > 0])
        zero_groups += int((gc.base == 0).sum())
        escapes += int(gc.escape.sum())
        pw, lb = _plain_words(f, s)
        coded += int((np.array(lb) < pw).sum())
        plain += int((np.array(lb) == pw).sum())
    print(modes, zero_groups, escapes, coded, plain)
    assert escapes > 20 and modes == {0, 1, 2, 3} and zero_groups and escapes and coded and plain, (modes, zero_groups, escapes, coded, plain)


# -- throughput -------------------------------------------------------------------------

def _long_tensor(n=16384):
    return real_fields("act/relu2.out", n, 0, settings_for(P_DEFAULT))[:2]


def test_encoder_throughput():
    f, s = _long_tensor()
    times = []
    check_encoder(P_DEFAULT, [(f, s)], accept_times=times)
    rate = (len(times) - 1) / (times[-1] - times[0])
    print(f"encoder: {len(times)} beats accepted in {times[-1] - times[0] + 1} cycles: {rate:.4f} beats/cycle")
    assert rate >= 0.99


def test_decoder_throughput():
    f, s = _long_tensor()
    times = []
    check_decoder(P_DEFAULT, [(f, s)], out_times=times)
    rate = (len(times) - 1) / (times[-1] - times[0])
    print(f"decoder: {len(times)} beats out in {times[-1] - times[0] + 1} cycles: {rate:.4f} beats/cycle")
    assert rate >= 0.99


# -- structure: the Gecko decoder is one stage of the plain unpacker (issue #9 item 1) ----------

def _modules(p: HwParams) -> set[str]:
    import re

    from amaranth.back import rtlil

    from sfp.hw.unpacker import Unpacker

    return set(re.findall(r"^module \\(\S+)$", rtlil.convert(Unpacker(p)), re.M))


def test_gecko_unpacker_is_the_plain_pipeline_plus_one_stage():
    """The Gecko build's unpacker has the plain build's units and only the Gecko stage (with its
    block index FIFO) and the s_len route queue besides; the plain build has no Gecko logic."""
    plain = _modules(HwParams())
    gk = _modules(HwParams(gecko=True))
    assert not any("gecko" in name or "route" in name for name in plain), plain
    assert gk - plain == {"top.cut.gecko", "top.cut.gecko.lfifo", "top.route_q"}, gk - plain
    assert plain <= gk
