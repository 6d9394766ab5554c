"""hw.lane (Quantizer, Dequantizer, cfg_supported) and hw.prng against the golden model.

pysim's per-step overhead dominates, so every test simulates a wide array of
lanes at once (one packed input integer, one packed output integer per step)
and compares the whole run with the NumPy model afterwards.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from amaranth.hdl import Cat, Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from sfp.hw.lane import Dequantizer, LaneConfig, Quantizer, cfg_supported
from sfp.hw.params import ROUNDING_CODES, HwParams, config_layout, fields_layout
from sfp.hw.prng import StochasticSource
from sfp.model.formats import Settings
from sfp.model.quantize import Fields, from_fields, quantize, stochastic_bits, to_fields

WEYL = 0x9E3779B9


# --------------------------------------------------------------------------
# the spec's generator (format.md 3.3), written out independently of the model

def spec_x(seed: int, idx: np.ndarray) -> np.ndarray:
    """Full 32-bit whitened word of format.md 3.3 for indices ``idx``."""
    x = ((np.uint64(seed) + idx.astype(np.uint64) * np.uint64(WEYL)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    x = x ^ (x << np.uint32(13))
    x = x ^ (x >> np.uint32(17))
    x = x ^ (x << np.uint32(5))
    return x


# --------------------------------------------------------------------------
# packing helpers

def pack(arr: np.ndarray, width: int) -> int:
    """Lane k of ``arr`` at bits [k*width, (k+1)*width) of one integer."""
    arr = np.asarray(arr, np.uint64)
    if width % 8 == 0 and width <= 64:
        raw = arr.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :width // 8]
        return int.from_bytes(raw.tobytes(), "little")
    out = 0
    for k, v in enumerate(arr.tolist()):
        out |= int(v) << (k * width)
    return out


def unpack_bits(values: list[int], lanes: int, width: int) -> np.ndarray:
    """Inverse of :func:`pack` as a bit matrix: (len(values) * lanes, width) uint8, bit 0 first."""
    nbytes = (lanes * width + 7) // 8
    raw = np.frombuffer(b"".join(v.to_bytes(nbytes, "little") for v in values), np.uint8)
    bits = np.unpackbits(raw.reshape(len(values), nbytes), axis=1, bitorder="little")[:, :lanes * width]
    return bits.reshape(-1, width)


def bitfield(bits: np.ndarray, lo: int, width: int) -> np.ndarray:
    """Columns lo .. lo+width-1 of a bit matrix as integers (width <= 64)."""
    cols = bits[:, lo:lo + width].astype(np.uint64)
    return (cols << np.arange(width, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def unpack(values: list[int], lanes: int, width: int) -> np.ndarray:
    """Inverse of :func:`pack` for a list of integers -> (len(values) * lanes,) uint64."""
    return bitfield(unpack_bits(values, lanes, width), 0, width)


def cfg_dict(s: Settings) -> dict:
    return {
        "man_bits": s.man_bits, "exp_bits": s.exp_bits, "exp_base": s.exp_base,
        "sign": int(s.sign), "specials": int(s.specials),
        "rounding": ROUNDING_CODES[s.rounding], "gecko": int(s.gecko),
        "seed": s.seed, "length": 0,
    }


# --------------------------------------------------------------------------
# test wrapper: `lanes` Quantizers, each feeding a Dequantizer, one shared cfg

class _LaneCell(wiring.Component):
    """One Quantizer feeding one Dequantizer; reads its slice of the shared input itself, so that
    pysim re-runs only small per-lane processes (the per-step cost is what bounds the test time)."""

    def __init__(self, p: HwParams, inp, cfg, k: int, out_w: int, predecoded: bool):
        self.p, self.inp, self.shared_cfg, self.k, self.predecoded = p, inp, cfg, k, predecoded
        super().__init__({"out": Out(out_w)})

    def elaborate(self, platform):
        m = Module()
        w, k = self.p.src.width, self.k
        lw = w + 32
        q = m.submodules.q = Quantizer(self.p, predecoded=self.predecoded)
        dq = m.submodules.dq = Dequantizer(self.p, predecoded=self.predecoded)
        if self.predecoded:
            m.d.comb += [q.lcfg.eq(self.shared_cfg), dq.lcfg.eq(self.shared_cfg)]
        else:
            m.d.comb += [q.cfg.eq(self.shared_cfg), dq.cfg.eq(self.shared_cfg)]
        m.d.comb += [
            q.value.eq(self.inp[k * lw:k * lw + w]),
            q.rnd.eq(self.inp[k * lw + w:(k + 1) * lw]),
            dq.fields.eq(q.fields),
            self.out.eq(Cat(q.fields.as_value(), q.negative, q.special, dq.value)),
        ]
        return m


class LaneArray(wiring.Component):
    """``lanes`` cells; input lane k = value | rnd << width at bits k*(width+32).
    With ``predecoded`` the lanes share one LaneConfig (as a packer would register it)."""

    def __init__(self, p: HwParams, lanes: int, predecoded: bool = False):
        self.p, self.lanes, self.predecoded = p, lanes, predecoded
        self.fl = fields_layout(p)
        self.out_w = self.fl.size + 2 + p.src.width
        super().__init__({
            "inp": In(lanes * (p.src.width + 32)),
            "cfg": In(config_layout()),
            "out": Out(lanes * self.out_w),
        })

    def elaborate(self, platform):
        m = Module()
        shared = self.cfg
        if self.predecoded:
            dec = m.submodules.dec = LaneConfig(self.p)
            m.d.comb += dec.cfg.eq(self.cfg)
            shared = dec.lcfg
        cells = []
        for k in range(self.lanes):
            cell = m.submodules[f"lane{k}"] = _LaneCell(self.p, self.inp, shared, k, self.out_w, self.predecoded)
            cells.append(cell.out)
        m.d.comb += self.out.eq(Cat(*cells))
        return m


def run_lanes(p: HwParams, jobs: list[tuple[Settings, np.ndarray, np.ndarray]], lanes: int = 64,
              predecoded: bool = False):
    """Simulate ``jobs`` = [(settings, bits, rnd words)] and return per job a dict of arrays."""
    dut = LaneArray(p, lanes, predecoded)
    w = p.src.width
    raw_all: list[list[int]] = []

    async def bench(ctx):
        for s, bits, rnd in jobs:
            ctx.set(dut.cfg, cfg_dict(s))
            n = bits.size
            pad = (-n) % lanes
            b = np.concatenate([bits.astype(np.uint64), np.zeros(pad, np.uint64)])
            r = np.concatenate([rnd.astype(np.uint64), np.zeros(pad, np.uint64)])
            raws = []
            for t in range(0, b.size, lanes):
                ctx.set(dut.inp, pack(b[t:t + lanes] | (r[t:t + lanes] << np.uint64(w)), w + 32))
                raws.append(ctx.get(dut.out))
            raw_all.append(raws)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()

    fl = dut.fl
    results = []
    for (s, bits, _), raws in zip(jobs, raw_all):
        o = unpack_bits(raws, lanes, dut.out_w)[:bits.size]

        def field(name):
            f = fl[name]
            return bitfield(o, f.offset, Shape.cast(f.shape).width).astype(np.uint32)

        results.append({
            "sign": field("sign"), "code": field("code"), "man": field("man"),
            "negative": o[:, fl.size].astype(bool),
            "special": o[:, fl.size + 1].astype(bool),
            "value": bitfield(o, fl.size + 2, p.src.width).astype(np.uint32),
        })
    return results


def golden(bits: np.ndarray, s: Settings):
    """Model fields, per-value flags and round trip for each value (flags per value via 1-value calls is
    too slow; the counts are checked against per-value masks computed from the spec)."""
    f, rs = to_fields(bits, s, strict=False)
    assert rs.exp_base == s.exp_base
    return f


def check(p: HwParams, jobs, lanes: int = 64, predecoded: bool = False):
    res = run_lanes(p, jobs, lanes, predecoded)
    src = p.src
    for (s, bits, rnd), r in zip(jobs, res):
        f = golden(bits, s)
        ctx = f"settings={s}"
        for name in ("sign", "code", "man"):
            got, exp = r[name], getattr(f, name).astype(np.uint32)
            bad = np.flatnonzero(got != exp)
            assert bad.size == 0, (f"{name} differs for {bad.size} values, first bits=0x{int(bits[bad[0]]):x}: "
                                   f"hw {int(got[bad[0]])} model {int(exp[bad[0]])}; {ctx}")
        # per-value flags: the model gives counts; the per-value masks must sum to them and match
        # the rules of format.md 3.5/3.6 (computed here from the source pattern)
        sign = (bits >> (src.width - 1)) & 1
        mag = bits & (src.sign_mask - 1)
        exp_ones = (mag >> src.man_width) == src.exp_all_ones
        nan = exp_ones & ((mag & src.man_mask) != 0)
        want_neg = (not s.sign) & (sign == 1) & (mag != 0) & ~nan
        want_spec = (not s.specials) & exp_ones
        assert np.array_equal(r["negative"], want_neg), ctx
        assert np.array_equal(r["special"], want_spec), ctx
        assert int(r["negative"].sum()) == f.neg_flag, ctx
        assert int(r["special"].sum()) == f.special_flag, ctx
        # Dequantizer on the quantizer's fields == from_fields == quantize(strict=False)
        exp_val = from_fields(f, s)
        bad = np.flatnonzero(r["value"] != exp_val)
        assert bad.size == 0, (f"dequantized value differs for {bad.size} values, first bits=0x{int(bits[bad[0]]):x}: "
                               f"hw 0x{int(r['value'][bad[0]]):x} model 0x{int(exp_val[bad[0]]):x}; {ctx}")
        q = quantize(bits.astype(src.dtype), s, strict=False).astype(np.uint32)
        assert np.array_equal(r["value"], q), ctx


# --------------------------------------------------------------------------
# bf16, exhaustive

BF16_ALL = np.arange(1 << 16, dtype=np.uint32)


def _bf16_settings():
    """Representative settings: every (m, e, rounding) of the brief's grid, cycling through
    exp_base / sign / specials; plus window-edge cases."""
    bases = {2: [0, 126, 253], 3: [120, 0, 250], 5: [100, 240, 0], 8: [0, 100, 253]}
    out = []
    for i, (m, e, rnd) in enumerate(itertools.product((0, 1, 3, 7), (2, 3, 5, 8), ("rne", "rz", "stochastic"))):
        base = bases[e][i % 3]
        sign = i % 2 == 0
        specials = (i // 2) % 2 == 0
        out.append(Settings("bf16", man_bits=m, exp_bits=e, exp_base=base, sign=sign,
                            specials=specials, rounding=rnd, seed=0x1234567 * (i + 1) & 0xFFFFFFFF))
    # window reaching past the source range (cfin < cmax), specials off; lossless; m = 0 specials
    out += [
        Settings("bf16", man_bits=7, exp_bits=8, exp_base=100, specials=False, rounding="rne"),
        Settings("bf16", man_bits=2, exp_bits=8, exp_base=1, specials=False, sign=False, rounding="stochastic", seed=7),
        Settings("bf16", man_bits=7, exp_bits=8, exp_base=0, rounding="rne"),
        Settings("bf16", man_bits=0, exp_bits=4, exp_base=240, specials=True, rounding="rne"),
        Settings("bf16", man_bits=5, exp_bits=6, exp_base=200, specials=True, sign=False, rounding="rz"),
    ]
    return out


#: The settings in this many parts, one test each, so that pytest-xdist spreads them over its
#: workers (the whole set is the test suite's longest single test, about 38 min on one core).
BF16_PARTS = 8


@pytest.mark.parametrize("part", range(BF16_PARTS))
def test_bf16_exhaustive(part):
    p = HwParams("bf16")
    jobs = [(s, BF16_ALL, spec_x(s.seed, BF16_ALL)) for s in _bf16_settings()[part::BF16_PARTS]]
    check(p, jobs, lanes=32)


def test_bf16_exhaustive_predecoded():
    """The lanes fed by one shared LaneConfig (the packer's registered-constants option)."""
    p = HwParams("bf16")
    rng = np.random.default_rng(8)
    jobs = []
    for m, e in itertools.product((0, 2, 4, 7), (2, 4, 8)):
        s = Settings("bf16", man_bits=m, exp_bits=e, exp_base=int(rng.choice([0, 120, 254 - (1 << e) + 2, 253])),
                     sign=bool(rng.integers(0, 2)), specials=bool(rng.integers(0, 2)),
                     rounding=str(rng.choice(["rne", "rz", "stochastic"])), seed=int(rng.integers(0, 1 << 32)))
        jobs.append((s, BF16_ALL, spec_x(s.seed, BF16_ALL)))
    check(p, jobs, lanes=32, predecoded=True)


def test_bf16_narrow_hardware():
    """Maxima below the source widths (m <= 3, e <= 5), no stochastic unit: the rnd port is ignored."""
    p = HwParams("bf16", max_man_bits=3, max_exp_bits=5, stochastic=False)
    rng = np.random.default_rng(5)
    junk = rng.integers(0, 1 << 32, BF16_ALL.size, dtype=np.uint64).astype(np.uint32)
    jobs = [
        (Settings("bf16", man_bits=3, exp_bits=5, exp_base=110, rounding="rne"), BF16_ALL, junk),
        (Settings("bf16", man_bits=0, exp_bits=2, exp_base=126, rounding="rz", specials=False), BF16_ALL, junk),
        (Settings("bf16", man_bits=2, exp_bits=4, exp_base=245, rounding="rne", sign=False), BF16_ALL, junk),
    ]
    check(p, jobs, lanes=32, predecoded=True)


def test_bf16_no_mantissa_hardware():
    p = HwParams("bf16", max_man_bits=0, max_exp_bits=3)
    x = BF16_ALL[::4]
    jobs = [(Settings("bf16", man_bits=0, exp_bits=3, exp_base=b, rounding=r, seed=99, specials=sp), x,
             spec_x(99, np.arange(x.size)))
            for b, r, sp in ((120, "rne", True), (0, "stochastic", False))]
    check(p, jobs, lanes=32, predecoded=True)


# --------------------------------------------------------------------------
# fp32, random patterns biased towards the interesting ones

def _fp32_patterns(rng, n: int, base: int, m: int) -> np.ndarray:
    d = 23 - m
    sign = rng.integers(0, 2, n, dtype=np.uint32) << np.uint32(31)
    exp = rng.integers(0, 256, n, dtype=np.uint32)
    # half of the exponents near the window edges and the source range ends
    near = np.array([0, 1, 2, 253, 254, 255, base, base + 1, base + 2] + [min(254, base + c) for c in (2, 3, 6, 7, 14, 15, 30, 31, 62, 63, 126, 127, 254, 255)], np.int64)
    near = np.clip(near, 0, 255).astype(np.uint32)
    pick = rng.random(n) < 0.5
    exp = np.where(pick, near[rng.integers(0, near.size, n)], exp)
    man = rng.integers(0, 1 << 23, n, dtype=np.uint32)
    kind = rng.integers(0, 6, n)
    if d:
        half = np.uint32(1 << (d - 1))
        kept = man & np.uint32(((1 << 23) - 1) ^ ((1 << d) - 1))
        man = np.where(kind == 0, kept | half, man)                      # exact ties
        man = np.where(kind == 1, kept | (half - np.uint32(1)), man)     # just below a tie
        man = np.where(kind == 2, np.uint32((1 << 23) - 1), man)         # all ones: carry into E
    man = np.where(kind == 3, np.uint32(0), man)                         # Inf / zero / powers of two
    return sign | (exp << np.uint32(23)) | man


def test_fp32_random():
    p = HwParams("fp32", lanes=4, word=128)
    rng = np.random.default_rng(2024)
    jobs = []
    cases = [
        (23, 8, 0, "rne", True, True), (10, 5, 120, "rne", True, False), (0, 2, 126, "rne", False, True),
        (1, 3, 250, "rz", True, True), (16, 8, 60, "stochastic", True, True), (7, 6, 200, "stochastic", False, False),
        (22, 4, 253, "rne", True, False), (3, 8, 100, "stochastic", True, False), (23, 7, 130, "rz", False, True),
        (0, 5, 30, "stochastic", True, True),
    ]
    for k, (m, e, base, rnd, sign, specials) in enumerate(cases):
        s = Settings("fp32", man_bits=m, exp_bits=e, exp_base=base, rounding=rnd, sign=sign,
                     specials=specials, seed=int(rng.integers(0, 1 << 32)))
        bits = _fp32_patterns(rng, 2048, base, m)
        jobs.append((s, bits, spec_x(s.seed, np.arange(bits.size))))
    check(p, jobs, lanes=64)


def test_fp32_narrow_hardware():
    p = HwParams("fp32", lanes=4, word=128, max_man_bits=12, max_exp_bits=6)
    rng = np.random.default_rng(99)
    jobs = []
    for m, e, base, rnd, sign, specials in ((12, 6, 100, "stochastic", True, True), (0, 2, 126, "rne", True, True),
                                            (5, 4, 245, "rne", False, False), (11, 6, 0, "rz", True, False)):
        s = Settings("fp32", man_bits=m, exp_bits=e, exp_base=base, rounding=rnd, sign=sign,
                     specials=specials, seed=int(rng.integers(0, 1 << 32)))
        bits = _fp32_patterns(rng, 1024, base, m)
        jobs.append((s, bits, spec_x(s.seed, np.arange(bits.size))))
    check(p, jobs, lanes=64, predecoded=True)


def test_rnd_word_used_as_spec_says():
    """The stochastic lane must use exactly the top d bits of rnd: model's stochastic_bits == spec_x >> (32-d)."""
    for seed, d in ((0, 1), (0xDEADBEEF, 7), (12345, 23), (0xFFFFFFFF, 16)):
        idx = np.arange(1000, 3000)
        assert np.array_equal(stochastic_bits(idx.size, seed, d, start=1000), spec_x(seed, idx) >> np.uint32(32 - d))


# --------------------------------------------------------------------------
# Dequantizer on arbitrary in-contract fields (not only the quantizer's)

class DeqArray(wiring.Component):
    def __init__(self, p: HwParams, lanes: int):
        self.p, self.lanes = p, lanes
        self.fw = fields_layout(p).size
        super().__init__({"fields": In(lanes * self.fw), "cfg": In(config_layout()),
                          "values": Out(lanes * p.src.width)})

    def elaborate(self, platform):
        m = Module()
        w = self.p.src.width
        for k in range(self.lanes):
            dq = m.submodules[f"dq{k}"] = Dequantizer(self.p)
            m.d.comb += [dq.cfg.eq(self.cfg), dq.fields.eq(self.fields[k * self.fw:(k + 1) * self.fw]),
                         self.values[k * w:(k + 1) * w].eq(dq.value)]
        return m


@pytest.mark.parametrize("source", ["bf16", "fp32"])
def test_dequantizer_random_fields(source):
    p = HwParams(source, lanes=4, word=128)
    lanes = 64
    fl = fields_layout(p)
    rng = np.random.default_rng(11)
    jobs = []
    for m, e, base, sign, specials in ((p.src.man_width, 8, 0, True, True), (0, 2, 200, True, True),
                                       (3, 5, 40, False, True), (1, 8, 253, True, False), (2, 3, 0, True, True)):
        s = Settings(source, man_bits=m, exp_bits=e, exp_base=base, sign=sign, specials=specials)
        n = 1024
        f = Fields(rng.integers(0, 2, n, dtype=np.uint32) * np.uint32(sign),
                   rng.integers(0, 1 << e, n, dtype=np.uint32),
                   rng.integers(0, 1 << m, n, dtype=np.uint32))
        f.code[:8] = (1 << e) - 1          # make sure the special code and zeros occur
        f.man[:4] = 0
        f.code[8:12] = 0
        jobs.append((s, f))
    dut = DeqArray(p, lanes)
    outs = []

    async def bench(ctx):
        for s, f in jobs:
            ctx.set(dut.cfg, cfg_dict(s))
            packed = (f.sign.astype(np.uint64) << np.uint64(fl["sign"].offset)) \
                | (f.code.astype(np.uint64) << np.uint64(fl["code"].offset)) \
                | (f.man.astype(np.uint64) << np.uint64(fl["man"].offset))
            got = []
            for t in range(0, packed.size, lanes):
                ctx.set(dut.fields, pack(packed[t:t + lanes], fl.size))
                got.append(ctx.get(dut.values))
            outs.append(unpack(got, lanes, p.src.width).astype(np.uint32))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    for (s, f), got in zip(jobs, outs):
        assert np.array_equal(got, from_fields(f, s)), s


# --------------------------------------------------------------------------
# cfg_supported

class SupportArray(wiring.Component):
    def __init__(self, p: HwParams, lanes: int):
        self.p, self.lanes = p, lanes
        self.cw = config_layout().size
        super().__init__({"cfgs": In(lanes * self.cw), "ok": Out(lanes)})

    def elaborate(self, platform):
        m = Module()
        for k in range(self.lanes):
            c = Signal(config_layout(), name=f"c{k}")
            m.d.comb += [c.eq(self.cfgs[k * self.cw:(k + 1) * self.cw]), self.ok[k].eq(cfg_supported(self.p, c))]
        return m


@pytest.mark.parametrize("p", [HwParams("bf16"), HwParams("bf16", max_man_bits=3, max_exp_bits=5, stochastic=False, gecko=True),
                               HwParams("fp32", lanes=4, word=128, max_man_bits=12)], ids=["bf16", "bf16narrow", "fp32"])
def test_cfg_supported(p):
    lay = config_layout()
    combos = list(itertools.product(range(0, 32, 1), range(0, 16), (0, 1, 200, 253, 254, 255), range(4), (0, 1)))
    rng = np.random.default_rng(3)
    combos = [combos[i] for i in rng.permutation(len(combos))[:4096]]
    combos += [(p.max_man_bits, p.max_exp_bits, 253, 0, 0), (p.max_man_bits + 1, 2, 0, 0, 0),
               (0, 2, 254, 1, 0), (0, 1, 0, 1, 0), (0, p.max_exp_bits + 1, 0, 1, 0), (0, 2, 0, 2, 0), (0, 2, 0, 3, 0),
               (0, 2, 0, 0, 1)]
    lanes = 128
    dut = SupportArray(p, lanes)

    def enc(c):
        mb, eb, base, rnd, gecko = c
        d = {"man_bits": mb, "exp_bits": eb, "exp_base": base, "rounding": rnd, "gecko": gecko,
             "sign": 1, "specials": 1, "seed": 0xFFFFFFFF, "length": 0xFFFFFFFF}
        return sum(v << lay[k].offset for k, v in d.items())

    got = []

    async def bench(ctx):
        for t in range(0, len(combos), lanes):
            chunk = combos[t:t + lanes]
            word = 0
            for k, c in enumerate(chunk):
                word |= enc(c) << (k * dut.cw)
            ctx.set(dut.cfgs, word)
            v = ctx.get(dut.ok)
            got.extend((v >> k) & 1 for k in range(len(chunk)))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    for c, g in zip(combos, got):
        mb, eb, base, rnd, gecko = c
        want = (mb <= p.max_man_bits and 2 <= eb <= p.max_exp_bits and rnd <= 2
                and (rnd != 2 or p.stochastic) and base <= 253 and (not gecko or p.gecko))
        assert g == int(want), (c, g)
    assert any(got) and not all(got)


# --------------------------------------------------------------------------
# StochasticSource

@pytest.mark.parametrize("lanes", [1, 3, 8, 16])
def test_prng(lanes):
    dut = StochasticSource(lanes)
    seeds = [0, 0x12345678, 0xFFFFFFFF, 0x9E3779B9 * 7 & 0xFFFFFFFF]
    # per cycle: (seed, restart, advance); expected index base computed by a reference counter
    rng = np.random.default_rng(lanes)
    script = []
    for seed in seeds:
        script.append((seed, 1, 0))                       # restart alone (shows 0..N-1)
        script += [(0xAAAAAAAA, 0, int(a)) for a in rng.random(12) < 0.7]   # seed ignored when not restarting
        script.append((seed ^ 0x55, 1, 1))                # restart with the first beat consumed
        script += [(0, 0, 1)] * 5
        script += [(seed, 1, 1), (seed, 1, 1), (0, 0, 1)]  # repeated restarts
    seen = []

    async def bench(ctx):
        for seed, restart, advance in script:
            ctx.set(dut.seed, seed)
            ctx.set(dut.restart, restart)
            ctx.set(dut.advance, advance)
            seen.append([ctx.get(dut.x[j]) for j in range(lanes)])
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()

    cur_seed, t = 0, 0               # after reset: seed 0, index 0
    for (seed, restart, advance), got in zip(script, seen):
        if restart:
            cur_seed, t = seed, 0
        want = spec_x(cur_seed, np.arange(t * lanes, (t + 1) * lanes))
        assert got == want.tolist(), (seed, restart, advance, t)
        # and the model's rounding bits for these indices are the top bits
        for d in (1, 7, 23):
            assert np.array_equal(np.array(got, np.uint32) >> np.uint32(32 - d),
                                  stochastic_bits(lanes, cur_seed, d, start=t * lanes))
        if advance:
            t += 1
