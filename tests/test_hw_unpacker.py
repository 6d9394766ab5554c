"""The RTL unpacker (hw/unpacker.py) on valid and damaged word streams, against sfp.model.stream.

Every tensor of a back-to-back sequence -- valid images of real training
tensors and adversarial values, streams cut short, streams too long,
random words, ``cfg.length`` off in both directions, refused settings,
length 0 -- must come out as exactly ``unpack_stream`` says: the same
beats (count, values, ``keep``, ``last``) and the same ``m_status`` entry,
and the tensor after a damaged one exact; with random stalls on both sides.
The rate test checks one beat per clock across blocks and tensors.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from sfp.hw.params import HwParams, cfg_fields
from sfp.hw.unpacker import Unpacker
from sfp.model.container import encode_image
from sfp.model.formats import Settings
from sfp.model.stream import unpack_stream
from sfp.sim_tests.packer_ref import adversarial_bits, real_tensor_bits
from streams import collector, run_sim  # noqa: E402  (tests/streams.py)

PLAIN = [
    HwParams(),                                                           # bf16 N=8 W=128 B=256
    HwParams(source="bf16", lanes=4, word=64, block=16),
    HwParams(source="fp32", lanes=2, word=128, block=8, max_man_bits=12, max_exp_bits=7),
    HwParams(source="bf16", lanes=1, word=64, block=4),
    HwParams(source="bf16", lanes=16, word=256, block=32),
]
#: cfg changes that make a tensor refused (exp_bits 15 > every build's max once made +Inf lanes)
REFUSED_CFGS = [{"exp_bits": 1}, {"exp_bits": 15}, {"man_bits": 31}, {"rounding": 3}, {"exp_base": 254}]


def _pid(p):
    return f"{p.source}_N{p.lanes}_W{p.word}_B{p.block}"


def _settings(p: HwParams, rng) -> Settings:
    mw = p.max_man_bits
    e = int(rng.integers(2, min(p.max_exp_bits, p.src.exp_width) + 1))
    return Settings(source=p.source, man_bits=int(rng.integers(0, mw + 1)), exp_bits=e,
                    exp_base=int(rng.integers(0, p.src.max_finite_exp - 1)) if e < p.src.exp_width else 0,
                    sign=bool(rng.integers(0, 2)), specials=bool(rng.integers(0, 2)),
                    block=p.block, word=p.word)


def _words(payload: bytes, W: int) -> list[int]:
    nb = W // 8
    return [int.from_bytes(payload[i:i + nb], "little") for i in range(0, len(payload), nb)]


def make_stream(p: HwParams, rng, kind: str):
    """(words, cfg dict, model result) of one tensor of the given kind."""
    s = _settings(p, rng)
    n = int(rng.integers(1, 4 * p.block + 3 * p.lanes))
    if kind == "real":
        bits = real_tensor_bits(p.source, ("act", "grad", "weight")[int(rng.integers(0, 3))], n, int(rng.integers(0, 5000)))
    else:
        bits = adversarial_bits(p.source, rng, n)
    x = bits.astype(p.src.dtype)
    e = encode_image(x, s.with_(exp_base="auto") if kind == "real" else s, strict=False)
    s = e.settings
    words = _words(e.payload, p.word)
    length = n
    if kind == "short":
        words = words[:int(rng.integers(1, len(words) + 1))] if len(words) > 1 else words
        if len(words) == len(e.payload) * 8 // p.word:
            length += p.lanes * 3
    elif kind == "long":
        words = words + [int(rng.integers(0, 1 << 62)) for _ in range(int(rng.integers(1, 6)))]
    elif kind == "random":
        words = [int.from_bytes(rng.bytes(p.word // 8), "little") for _ in range(int(rng.integers(1, 3 * len(words) + 2)))]
    elif kind == "len+":
        length += int(rng.integers(1, 3 * p.block))
    elif kind == "len-":
        length = max(1, length - int(rng.integers(1, n + 1)))
    cfg = cfg_fields(s, length)
    if kind == "refused":
        cfg.update(REFUSED_CFGS[int(rng.integers(0, len(REFUSED_CFGS)))])
        r = unpack_stream(words, None, length, p.lanes, supported=False)
    elif kind == "zero":
        cfg["length"] = 0
        r = unpack_stream(words, s, 0, p.lanes)
    else:
        r = unpack_stream(words, s, length, p.lanes)
    return words, cfg, r


KINDS = ["real", "adv", "short", "long", "random", "len+", "len-", "refused", "zero", "refused"]


def run_streams(p, tensors, stall, seed=1):
    dut = Unpacker(p)
    beats, stats, times = [], [], []
    rng = random.Random(seed)
    junk = dict(tensors[0][1], exp_bits=15, man_bits=31, length=12345)

    async def tb(ctx):
        for words, cfg, _ in tensors:
            for k, w in enumerate(words):
                while stall and rng.random() < 0.3:
                    ctx.set(dut.s_axis.valid, 0)
                    await ctx.tick()
                ctx.set(dut.s_axis.payload, {"data": w, "last": int(k == len(words) - 1)})
                ctx.set(dut.s_axis.valid, 1)
                ctx.set(dut.cfg, cfg if k == 0 else junk)          # cfg matters with the first word only
                await ctx.tick().until(dut.s_axis.ready)
        ctx.set(dut.s_axis.valid, 0)
        want = sum(r.beats for _, _, r in tensors)
        for _ in range(100 + 4 * want):               # drain (the output may be slow to take them)
            if len(beats) == want and len(stats) == len(tensors):
                break
            await ctx.tick()

    run_sim(dut, tb, collectors=[collector(dut.m_axis, beats, random.Random(seed + 1), 0.6 if stall else 1.0, times),
                                 collector(dut.m_status, stats, random.Random(seed + 2), 0.5 if stall else 1.0)])
    return beats, stats, times


def check(p, tensors, beats, stats):
    k = 0
    for i, (words, cfg, r) in enumerate(tensors):
        got = []
        for t in range(r.beats):
            b = beats[k]
            k += 1
            cnt = min(p.lanes, cfg["length"] - t * p.lanes)
            assert (int(b.last), int(b.keep)) == (int(t == r.beats - 1), (1 << cnt) - 1), f"tensor {i} beat {t}"
            got += [int(b.data[j]) for j in range(p.lanes)]
        assert got == [int(v) for v in r.values], (
            f"tensor {i} ({r.error}, good {r.good}): first difference at value "
            f"{next(j for j in range(len(got)) if got[j] != r.values[j])}")
        st = stats[i]
        assert {f: int(getattr(st, f)) for f in r.status} == r.status, f"tensor {i}"
    assert k == len(beats) and len(stats) == len(tensors)


@pytest.mark.parametrize("p", PLAIN, ids=_pid)
@pytest.mark.parametrize("stall", [False, True])
def test_unpacker_damaged_streams(p, stall):
    rng = np.random.default_rng(p.lanes * 7 + p.word + stall)
    kinds = KINDS * 2
    random.Random(p.word + stall).shuffle(kinds)
    tensors = [make_stream(p, rng, k) for k in ["real"] + kinds + ["adv"]]
    beats, stats, _ = run_streams(p, tensors, stall)
    check(p, tensors, beats, stats)
    assert any(r.error == "length" and r.good < r.status["values"] for _, _, r in tensors)


@pytest.mark.parametrize("p", PLAIN[:2], ids=_pid)
def test_unpacker_rate(p):
    """Valid tensors back to back (settings change at each, >= 3 beats): one beat per clock."""
    rng = np.random.default_rng(3)
    tensors = []
    for i in range(8):
        s = _settings(p, rng)
        n = 3 * p.lanes + 1 if i % 3 == 1 else int(rng.integers(3 * p.lanes, 3 * p.block))
        e = encode_image(adversarial_bits(p.source, rng, n).astype(p.src.dtype), s, strict=False)
        words = _words(e.payload, p.word)
        tensors.append((words, cfg_fields(e.settings, n), unpack_stream(words, e.settings, n, p.lanes)))
    beats, stats, times = run_streams(p, tensors, False)
    check(p, tensors, beats, stats)
    assert times[-1] - times[0] + 1 == len(beats), f"{len(beats)} beats over {times[-1] - times[0] + 1} clocks"


# -- Gecko build: damaged Gecko images, wrong block-index entries ---------------------------

GECKO = [HwParams(gecko=True, lanes=8, block=64, group=16), HwParams(gecko=True, lanes=2, word=64, block=32, group=8)]
GKINDS = ["ok", "flip", "flip3", "short", "long", "lenoff", "random", "refused", "zero", "len-"]


def make_gecko_stream(p: HwParams, rng, kind: str):
    """(words, s_len entries, cfg, model result) of one tensor of a Gecko build."""
    n = int(rng.integers(1, 5 * p.block))
    x = real_tensor_bits("bf16", ("act", "grad", "weight")[int(rng.integers(0, 3))], n,
                         int(rng.integers(0, 5000))).astype(np.uint16)
    s = Settings(man_bits=int(rng.integers(0, 4)), exp_bits=int(rng.integers(3, 9)), gecko=bool(rng.integers(0, 5)),
                 sign=True, block=p.block, group=p.group, word=p.word, exp_base="auto")
    e = encode_image(x, s, strict=False)
    words, lens, length = _words(e.payload, p.word), [int(v) for v in e.block_words], n
    cfg = cfg_fields(e.settings, n)
    sup = True
    W = p.word
    if kind.startswith("flip"):
        for _ in range(int(kind[4:] or 1)):
            b = int(rng.integers(0, len(words) * W))
            words[b // W] ^= 1 << (b % W)
    elif kind == "short":
        words = words[:max(1, len(words) - int(rng.integers(1, 4)))]
    elif kind == "long":
        words = words + [int(rng.integers(0, 1 << 60)) for _ in range(int(rng.integers(1, 4)))]
    elif kind == "lenoff":
        i = int(rng.integers(0, len(lens)))
        lens[i] = max(0, lens[i] + int(rng.choice([-1, 1])))
    elif kind == "random":
        words = [int.from_bytes(rng.bytes(W // 8), "little") for _ in range(len(words))]
    elif kind == "refused":
        cfg.update(REFUSED_CFGS[int(rng.integers(0, len(REFUSED_CFGS)))])
        sup = False
    elif kind == "zero":
        cfg["length"] = length = 0
        lens = []
    elif kind == "len-":
        length = max(1, n - int(rng.integers(1, n + 1)))
        cfg["length"] = length
        lens = lens[:-(-length // p.block)]
    r = unpack_stream(words, e.settings, length, p.lanes, s_len=lens, supported=sup, gecko_build=True)
    return words, lens, cfg, r


@pytest.mark.parametrize("p", GECKO, ids=_pid)
def test_gecko_unpacker_damaged_streams(p):
    from streams import send

    rng = np.random.default_rng(p.lanes + p.word + 2)
    kinds = GKINDS * 2 + ["flip3", "random"]
    random.Random(p.word).shuffle(kinds)
    tensors = [make_gecko_stream(p, rng, k) for k in ["ok"] + kinds + ["ok"]]
    assert any(r.error == "corrupt" for *_, r in tensors) and any(r.error == "length" for *_, r in tensors)
    dut = Unpacker(p)
    beats, stats = [], []
    want = sum(r.beats for *_, r in tensors)
    prng = random.Random(5)

    async def tb(ctx):
        for words, _, cfg, _ in tensors:
            for k, w in enumerate(words):
                while prng.random() < 0.2:
                    ctx.set(dut.s_axis.valid, 0)
                    await ctx.tick()
                ctx.set(dut.s_axis.payload, {"data": w, "last": int(k == len(words) - 1)})
                ctx.set(dut.s_axis.valid, 1)
                ctx.set(dut.cfg, cfg)
                await ctx.tick().until(dut.s_axis.ready)
        ctx.set(dut.s_axis.valid, 0)
        for _ in range(200 + 4 * want):
            if len(beats) == want and len(stats) == len(tensors):
                break
            await ctx.tick()

    async def lens(ctx):
        # every tensor's ceil(length/B) entries (a refused one's are dropped by the unpacker)
        ent = []
        for _, ls, cfg, _ in tensors:
            nb = -(-cfg["length"] // p.block)
            ent += (ls + [0] * nb)[:nb]
        await send(ctx, dut.s_len, [{"data": v, "last": 0} for v in ent], random.Random(6), 0.3)

    run_sim(dut, tb, collectors=[collector(dut.m_axis, beats, random.Random(7), 0.6),
                                 collector(dut.m_status, stats, random.Random(8), 0.7), lens])
    check(p, [(w, c, r) for w, _, c, r in tensors], beats, stats)
