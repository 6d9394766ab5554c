"""Exponent statistics: the golden model (model/expstats.py) against independent computations, and the
RTL tap (hw/expstats.py, on a real Packer) against the model, bit for bit, in Amaranth's simulator."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sfp.model.expstats import NBINS, expstats
from sfp.model.formats import Settings
from sfp.model.quantize import quantize
from sfp.model.container import encode_image
from sfp.sim_tests.packer_ref import real_tensor_bits as _real


def real_tensor_bits(*a, **k):
    return _real(*a, **k).astype(np.uint16)

from streams import collector, run_sim


def _independent(bits: np.ndarray, s: Settings) -> dict:
    """The same figures from float arithmetic: frexp exponents, quantize() results, numpy rounding."""
    x = bits.astype(np.uint16).view(ml_dtypes.bfloat16).astype(np.float64)
    fin = np.isfinite(x) & (x != 0)
    _, k = np.frexp(np.where(fin, x, 1.0))
    E = np.where(fin, k - 1 + 127, 0)                  # biased exponent of a normal value
    normal = fin & (E >= 1)
    En = E[normal]
    stored = normal & ((x > 0) | s.sign)
    q = quantize(bits.astype(np.uint16), s, strict=False).view(ml_dtypes.bfloat16).astype(np.float64)
    # the largest finite magnitude of the container: code min(cmax, 254 - base), mantissa all ones
    cmax = (1 << s.exp_bits) - (2 if s.specials else 1)
    cfin = min(cmax, 254 - s.exp_base)
    top = 2.0 ** (cfin + s.exp_base - 127) * (2 - 2.0 ** -s.man_bits)
    # |x| rounded to man_bits mantissa bits at its own binade, ties to an even stored magnitude: the
    # mantissa's last bit, or with no mantissa bit (m = 0) the exponent's (format.md 3.3 rounds E,M as one integer)
    ax = np.abs(np.where(normal, x, 1.0))
    ulp = 2.0 ** (np.floor(np.log2(ax)) - s.man_bits)
    lo = np.floor(ax / ulp)
    frac = ax / ulp - lo
    odd = (lo % 2 == 1) if s.man_bits else (E % 2 == 1)
    rounded = (lo + ((frac > 0.5) | ((frac == 0.5) & odd))) * ulp
    return {
        "values": bits.size, "emax": int(En.max()) if En.size else 0, "emin": int(En.min()) if En.size else 0,
        "hist": [int(((En >= 32 * b) & (En < 32 * b + 32)).sum()) for b in range(NBINS)],
        "saturated": int((stored & (rounded > top)).sum()),
        "flushed": int((stored & (q == 0)).sum()),
    }


SETTINGS = [Settings(man_bits=m, exp_bits=e, exp_base=b, sign=sg)
            for m, e, b, sg in ((2, 4, 115, True), (0, 3, 120, True), (7, 8, 0, True), (3, 5, 100, False),
                                (1, 2, 125, True), (5, 6, 97, True))]


@pytest.mark.parametrize("s", SETTINGS, ids=lambda s: f"m{s.man_bits}e{s.exp_bits}b{s.exp_base}s{int(s.sign)}")
def test_model_against_independent_reference_real_tensors(s):
    for key in ("act", "weight", "grad"):
        bits = real_tensor_bits("bf16", key, 6000)
        assert expstats(bits, s) == _independent(bits, s)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=300), st.integers(0, 7), st.integers(2, 8),
       st.integers(0, 253), st.booleans())
def test_model_against_independent_reference_any_patterns(pats, m, e, base, sign):
    bits = np.array(pats, np.uint16)
    finite = ((bits >> 7) & 0xFF) != 0xFF
    bits = bits[finite] if finite.any() else np.zeros(1, np.uint16)
    s = Settings(man_bits=m, exp_bits=e, exp_base=base, sign=sign)
    assert expstats(bits, s) == _independent(bits, s)


# ---------------------------------------------------------------------------------------------- RTL

TENSORS = [  # (bits, settings): real tensors, a tensor shorter than a beat, zeros and specials, rz, no sign
    (real_tensor_bits("bf16", "act", 1000), Settings(man_bits=2, exp_bits=4, exp_base=115)),
    (real_tensor_bits("bf16", "weight", 517), Settings(man_bits=0, exp_bits=3, exp_base=118, sign=True)),
    (np.array([0x3F80, 0x0000, 0x8001, 0x7F80], np.uint16), Settings(man_bits=7, exp_bits=8, exp_base=0)),
    (real_tensor_bits("bf16", "grad", 700), Settings(man_bits=3, exp_bits=5, exp_base=100, rounding="rz")),
    (real_tensor_bits("bf16", "act", 300) & 0x7FFF,
     Settings(man_bits=1, exp_bits=4, exp_base=110, sign=False)),
    (real_tensor_bits("bf16", "weight", 333, offset=400), Settings(man_bits=6, exp_bits=2, exp_base=124,
                                                                     specials=False)),
]


def _beats(bits, lanes):
    for t in range(0, bits.size, lanes):
        lane = bits[t:t + lanes]
        yield {"data": [int(v) for v in lane] + [0] * (lanes - lane.size),
               "keep": (1 << lane.size) - 1, "last": int(t + lanes >= bits.size)}


@pytest.mark.parametrize("lanes", [8, 2])
def test_rtl_stats_equal_model_back_to_back(lanes):
    from sfp.hw.expstats import PackerWithStats
    from sfp.hw.params import HwParams, cfg_fields

    p = HwParams(source="bf16", lanes=lanes, word=128, block=256)
    dut = PackerWithStats(p)
    reports, words, accepted = [], [], []
    rng = np.random.default_rng(0)

    async def tb(ctx):
        cycle = 0
        for bits, s in TENSORS:
            cfg = cfg_fields(s, bits.size)
            for beat in _beats(bits, lanes):
                ctx.set(dut.cfg, cfg)
                ctx.set(dut.s_axis.payload, beat)
                ctx.set(dut.s_axis.valid, 1)
                while True:
                    _, _, ready = await ctx.tick().sample(dut.s_axis.ready)
                    cycle += 1
                    if ready:
                        accepted.append(cycle)
                        break
        ctx.set(dut.s_axis.valid, 0)
        for _ in range(60):
            await ctx.tick()

    run_sim(dut, tb, [collector(dut.stats, reports, rng), collector(dut.m_axis, words, rng),
                      collector(dut.m_len, [], rng)])
    got = [{"values": int(r.values), "emax": int(r.emax), "emin": int(r.emin),
            "hist": [int(r.hist[k]) for k in range(NBINS)], "saturated": int(r.saturated),
            "flushed": int(r.flushed)} for r in reports]
    assert got == [expstats(b, s) for b, s in TENSORS]
    # the tap costs nothing: one beat per clock, and the packer still writes the golden image
    assert accepted[-1] - accepted[0] + 1 == len(accepted)
    ref = b"".join(encode_image(b.astype(np.uint16), s).payload for b, s in TENSORS)
    assert b"".join(int(w.data).to_bytes(16, "little") for w in words) == ref
    # the cases exercise every counter (a stats block stuck at zero would not pass)
    assert any(g["saturated"] for g in got) and any(g["flushed"] for g in got)


def test_rtl_overrun_flag():
    """A consumer that never takes a report: the second report sets the sticky overrun flag."""
    from sfp.hw.expstats import PackerWithStats
    from sfp.hw.params import HwParams, cfg_fields

    p = HwParams(source="bf16", lanes=4, word=128, block=256)
    dut = PackerWithStats(p)
    flags = []

    async def tb(ctx):
        ctx.set(dut.m_axis.ready, 1)
        ctx.set(dut.m_len.ready, 1)
        s = Settings(man_bits=3, exp_bits=4, exp_base=120)
        for k in range(2):
            bits = real_tensor_bits("bf16", "act", 16, offset=16 * k)
            for beat in _beats(bits, 4):
                ctx.set(dut.cfg, cfg_fields(s, bits.size))
                ctx.set(dut.s_axis.payload, beat)
                ctx.set(dut.s_axis.valid, 1)
                await ctx.tick().until(dut.s_axis.ready)
            ctx.set(dut.s_axis.valid, 0)
            for _ in range(4):
                await ctx.tick()
            flags.append(ctx.get(dut.stats_overrun))
        assert ctx.get(dut.stats.valid)

    run_sim(dut, tb)
    assert flags == [0, 1]
