"""Property tests of the container over random shapes, lengths and settings, plus real training tensors.

* decode(encode(x)) == quantize(x) bit for bit, in x's dtype and shape, for
  all sources and settings; lengths are arbitrary (not multiples of the
  block, group or word); shapes are 0-d (the model flattens with reshape(-1),
  so a 0-d array is one value and its shape () is stored with ndim = 0),
  empty, and up to 3-d.
* Gecko on and off decode to the same values.
* The block index matches format.md 4.3 without Gecko and never exceeds the
  5.2 bound with it.
* quantize is idempotent.
* The header round-trips through model.container.parse.
* The payload equals, byte for byte, an image packed by an independent
  pure-Python writer that follows format.md sections 4 and 5 (fields derived
  from quantize's output, not from the model's packer).
* Real training tensors (train.tensors) go through encode/decode with several
  settings; Gecko spends fewer than 8 bits per exponent and stays within the
  worst-case bound.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from sfp.model.container import decode, encode, parse
from sfp.model.formats import Settings
from sfp.model.quantize import quantize, resolve
from sfp.model.stats import footprint

SRC = {"bf16": (8, 7, np.uint16, ml_dtypes.bfloat16),
       "fp32": (8, 23, np.uint32, np.float32),
       "fp16": (5, 10, np.uint16, np.float16)}


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

@st.composite
def container_settings(draw, source=None):
    source = source or draw(st.sampled_from(sorted(SRC)))
    E_w, M_w = SRC[source][:2]
    m = draw(st.integers(0, M_w))
    e = draw(st.integers(2, min(8, E_w)))
    E_fmax = (1 << E_w) - 2
    base = draw(st.one_of(st.just("auto"), st.integers(0, E_fmax - 1)))
    gecko = draw(st.booleans())
    group = 1 << draw(st.integers(2, 8))
    block = 1 << draw(st.integers(0, 10))
    if gecko:
        block = max(block, group)      # both powers of two: now a multiple of the group
    sign = draw(st.booleans())
    return Settings(source=source, man_bits=m, exp_bits=e, exp_base=base, sign=sign,
                    specials=draw(st.booleans()), rounding=draw(st.sampled_from(["rne", "rz", "stochastic"])),
                    seed=draw(st.integers(0, 2**32 - 1)), gecko=gecko, group=group, block=block,
                    word=draw(st.sampled_from([64, 128, 256, 512])))


shapes = st.one_of(
    st.just(()),
    st.lists(st.integers(0, 40), min_size=1, max_size=3).filter(lambda s: math.prod(s) <= 3000),
)


@st.composite
def tensor_for(draw, s: Settings):
    """Bit patterns or floats of s.source, legal for s (no negatives with the sign
    elided, no Inf/NaN with specials off), concentrated on a few exponents like real data."""
    E_w, M_w, udt, fdt = SRC[s.source]
    shape = draw(shapes)
    n = math.prod(shape)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    width = 1 + E_w + M_w
    kind = draw(st.sampled_from(["uniform", "clustered", "mixed"]))
    bits = rng.integers(0, 1 << width, n, dtype=np.uint64)
    if kind != "uniform":
        centre = int(rng.integers(1, (1 << E_w) - 1))
        spread = int(rng.integers(0, 12))
        exps = np.clip(centre - rng.geometric(0.45, n) + 1 - rng.integers(0, spread + 1, n), 0, (1 << E_w) - 1)
        bits = (bits & ~np.uint64(((1 << E_w) - 1) << M_w)) | (exps.astype(np.uint64) << np.uint64(M_w))
        if kind == "mixed":   # sprinkle zeros, subnormals, Inf, NaN, extremes
            specials = np.array([0, 1 << (width - 1), 1, ((1 << E_w) - 1) << M_w,
                                 (((1 << E_w) - 1) << M_w) | 1, ((1 << E_w) - 2) << M_w | ((1 << M_w) - 1),
                                 1 << M_w], np.uint64)
            pick = rng.random(n) < 0.2
            bits[pick] = specials[rng.integers(0, specials.size, int(pick.sum()))] | (
                rng.integers(0, 2, int(pick.sum())).astype(np.uint64) << np.uint64(width - 1))
    bits = bits.astype(udt)
    exp = (bits >> M_w) & ((1 << E_w) - 1)
    is_special = exp == (1 << E_w) - 1
    if not s.specials:
        bits = np.where(is_special, udt(0), bits).astype(udt)
    if not s.sign:
        nan = is_special & ((bits & ((1 << M_w) - 1)) != 0) & s.specials
        bits = np.where(nan, bits, bits & udt((1 << (width - 1)) - 1)).astype(udt)
    bits = bits.reshape(shape)
    if draw(st.booleans()):
        return bits.view(fdt)
    return bits


@st.composite
def case(draw, source=None):
    s = draw(container_settings(source))
    return s, draw(tensor_for(s))


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


PROP = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# ---------------------------------------------------------------------------
# Independent image writer (format.md 4 and 5)
# ---------------------------------------------------------------------------

class BitWriter:
    def __init__(self):
        self.bits: list[int] = []

    def put(self, value: int, n: int):
        assert 0 <= value < (1 << n) or n == 0 and value == 0
        self.bits.extend((value >> j) & 1 for j in range(n))

    def pad(self, W: int):
        self.bits.extend([0] * (-len(self.bits) % W))

    def tobytes(self) -> bytes:
        assert len(self.bits) % 8 == 0
        return bytes(sum(self.bits[8 * i + j] << j for j in range(8)) for i in range(len(self.bits) // 8))


def fields_from_output(q: np.ndarray, s: Settings):
    """(S, C, Q) of every value, read off quantize's output with format.md 3.7 inverted."""
    E_w, M_w = SRC[s.source][:2]
    width, ones = 1 + E_w + M_w, (1 << E_w) - 1
    m, d, top = s.man_bits, M_w - s.man_bits, (1 << s.exp_bits) - 1
    out = []
    for p in np.asarray(q).reshape(-1).view(SRC[s.source][2]).tolist():
        S = (p >> (width - 1)) & 1 if s.sign else 0
        E, M = (p >> M_w) & ones, p & ((1 << M_w) - 1)
        if E == ones:
            assert s.specials
            if M == 0:
                assert m >= 1
                out.append((S, top, 0))
            else:
                out.append((0, top, (1 << (m - 1)) if m else 0))
        elif E == 0:
            assert M == 0
            out.append((S, 0, 0))
        else:
            C = E - s.exp_base
            assert 1 <= C <= (top - 1 if s.specials else top) and M & ((1 << d) - 1) == 0
            out.append((S, C, M >> d))
    return out


def gecko_choose(C: list[int], e: int):
    """(b, z, k, symbols) of a group's codes: the mode with the shortest exponent part, smallest k on a tie."""
    b = max(C)
    z = 1 if (b > 0 and 0 in C) else 0
    if b == 0:
        return 0, 0, 0, [0] * len(C)
    sym = [0 if (z and c == 0) else b - c + z for c in C]

    def cost(k):
        if k == 3:
            return len(C) * e
        return sum(k + min(y >> k, 8) + 1 + (e if (y >> k) >= 8 else 0) for y in sym)

    return b, z, min(range(4), key=lambda k: (cost(k), k)), sym


def gecko_slice_exponents(bw: BitWriter, C: list[int], sym: list[int], b: int, k: int, e: int):
    """One slice's exponent part (format.md 5.1): nothing, raw codes, or remainders + unary + exceptions."""
    if b == 0:
        return
    if k == 3:
        for c in C:
            bw.put(c, e)
        return
    esc = [(y >> k) >= 8 for y in sym]
    for y, x in zip(sym, esc):
        bw.put(0 if x else y & ((1 << k) - 1), k)
    for y, x in zip(sym, esc):
        q = 8 if x else y >> k
        bw.put((1 << q) - 1, q), bw.put(0, 1)
    for c, x in zip(C, esc):
        if x:
            bw.put(c, e)


def gecko_exponent_part(bw: BitWriter, C: list[int], e: int):
    """Header and exponent part of a group that is a single slice."""
    b, z, k, sym = gecko_choose(C, e)
    bw.put(b, e), bw.put(z, 1), bw.put(k, 2)
    gecko_slice_exponents(bw, C, sym, b, k, e)


def gecko_group(bw: BitWriter, grp, e: int, m: int, sb: int, G: int):
    """A whole group: header, then slice by slice (8 values, or G if smaller) exponents then sign/mantissa."""
    C = [c for _, c, _ in grp]
    b, z, k, sym = gecko_choose(C, e)
    bw.put(b, e), bw.put(z, 1), bw.put(k, 2)
    S = min(8, G)
    for i in range(0, len(grp), S):
        gecko_slice_exponents(bw, C[i:i + S], sym[i:i + S], b, k, e)
        for sgn, _, q in grp[i:i + S]:
            bw.put(sgn << m | q, sb + m)


def independent_image(fields, s: Settings):
    """(payload bytes, block index, which blocks are Gecko-coded) per format.md 4-5.

    With Gecko a block is stored Gecko-coded only if that takes fewer words
    than the plain layout; a tie goes to plain (section 5)."""
    W, B, G, e, m, sb = s.word, s.block, s.group, s.exp_bits, s.man_bits, s.sign_bits
    image, index, coded = b"", [], []
    for start in range(0, len(fields), B):
        blk = fields[start:start + B]
        plain = BitWriter()
        for S, C, Q in blk:
            plain.put(S << (e + m) | C << m | Q, sb + e + m)
        plain.pad(W)
        bw, is_coded = plain, False
        if s.gecko:
            gk = BitWriter()
            for g0 in range(0, len(blk), G):
                gecko_group(gk, blk[g0:g0 + G], e, m, sb, G)
            gk.pad(W)
            if len(gk.bits) < len(plain.bits):
                bw, is_coded = gk, True
        index.append(len(bw.bits) // W)
        coded.append(is_coded)
        image += bw.tobytes()
    return image, index, coded


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

@PROP
@given(case())
def test_roundtrip_equals_quantize(c):
    s, x = c
    data = encode(x, s)
    y = decode(data)
    assert same_bits(y, quantize(x, s))


@PROP
@given(case())
def test_gecko_on_and_off_decode_identically(c):
    s, x = c
    on = s.with_(gecko=True, block=max(s.block, s.group))
    off = on.with_(gecko=False)
    a, b = decode(encode(x, on)), decode(encode(x, off))
    assert same_bits(a, b)
    assert parse(encode(x, on)).settings.exp_base == parse(encode(x, off)).settings.exp_base


@PROP
@given(case())
def test_block_index_lengths(c):
    s, x = c
    enc = parse(encode(x, s))
    n = int(np.asarray(x).size)
    counts = [min(s.block, n - i) for i in range(0, n, s.block)]
    assert len(enc.block_words) == len(counts) == -(-n // s.block)
    v = s.sign_bits + s.exp_bits + s.man_bits
    for L, cnt in zip(enc.block_words.tolist(), counts):
        plain = -(-(cnt * v) // s.word)                  # 4.3
        if not s.gecko:
            assert L == plain
        else:                                            # 5.2: never longer than plain; and a coded
            assert L <= plain                            # block holds at most e + 3 bits per group over raw
            assert L <= -(-(-(-cnt // s.group) * (s.exp_bits + 3) + cnt * v) // s.word)
    assert len(enc.payload) == sum(enc.block_words.tolist()) * s.word // 8


@PROP
@given(case())
def test_quantize_idempotent(c):
    s, x = c
    q = quantize(x, s)
    assert same_bits(quantize(q, s), q)
    r = resolve(x, s)
    assert same_bits(quantize(q, r), q)
    if s.exp_base == "auto":   # auto puts the largest value at the top of the window: nothing moves
        assert resolve(q, s).exp_base == r.exp_base


@PROP
@given(case())
def test_header_roundtrip(c):
    s, x = c
    x = np.asarray(x)
    enc = parse(encode(x, s))
    assert enc.settings == resolve(x, s)
    assert isinstance(enc.settings.exp_base, int)
    assert enc.shape == x.shape and enc.n == x.size
    assert enc.raw_bits == (x.dtype.kind == "u")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(case())
def test_payload_matches_independent_writer(c):
    s, x = c
    assume(np.asarray(x).size <= 1500)
    enc = parse(encode(x, s))
    fields = fields_from_output(quantize(x, s), enc.settings)
    image, index, _ = independent_image(fields, enc.settings)
    assert enc.block_words.tolist() == index
    assert enc.payload == image


def test_independent_writer_known_bits():
    """A hand-assembled image, to pin the writer itself (format.md 4.2, 5.1)."""
    # bf16 1.0 and -2.0, m = 1, e = 2, base 126: codes 1 and 2; records S<<3 | C<<1 | Q (4 bits)
    x = np.array([0x3F80, 0xC000], np.uint16)
    s = Settings(man_bits=1, exp_bits=2, exp_base=126, word=64)
    rec0, rec1 = 0 << 3 | 1 << 1 | 0, 1 << 3 | 2 << 1 | 0
    want = (rec0 | rec1 << 4).to_bytes(8, "little")
    assert parse(encode(x, s)).payload == want
    fields = fields_from_output(quantize(x, s), resolve(x, s))
    assert independent_image(fields, resolve(x, s)) == (want, [1], [False])
    # Gecko exponent part of the codes [3, 3, 0, 2] (e = 2): b = 3, z = 1, symbols [1, 1, 0, 2].
    # Bodies: k = 0: unary 2+2+1+3 = 8 bits; k = 1: 4 remainder bits + 1+1+1+2 = 9; k = 2: 12;
    # raw: 8. Tie between k = 0 and raw: the smaller k = 0.
    bw = BitWriter()
    gecko_exponent_part(bw, [3, 3, 0, 2], 2)
    assert bw.bits == [1, 1, 1, 0, 0] + [1, 0, 1, 0, 0, 1, 1, 0]
    # As a tensor (4.0 4.0 0 2.0, base 126, specials off so that code 3 is finite) the Gecko block
    # (13 + 4 sign bits) and the plain block (4 * 3 bits) both take one 64-bit word: a tie, so plain.
    x = np.array([0x4080, 0x4080, 0x0000, 0x4000], np.uint16)
    s = Settings(man_bits=0, exp_bits=2, exp_base=126, specials=False, gecko=True, group=4, block=4, word=64)
    bits = [1, 1, 0] + [1, 1, 0] + [0, 0, 0] + [0, 1, 0]
    assert parse(encode(x, s)).payload == _bytes(bits + [0] * (64 - len(bits)))
    # Eight values +-1.0 (m = 0, e = 8, base 0: code 127), G = 4, B = 8: plain 8 * 9 = 72 bits = 2 words,
    # Gecko 2 * (11 + 4 + 4) = 38 bits = 1 word: Gecko-coded, k = 0 with all symbols 0.
    x = np.array([0x3F80, 0xBF80, 0x3F80, 0x3F80, 0x3F80, 0x3F80, 0x3F80, 0xBF80], np.uint16)
    s = Settings(man_bits=0, exp_bits=8, exp_base=0, gecko=True, group=4, block=8, word=64)
    head = [1, 1, 1, 1, 1, 1, 1, 0] + [0] + [0, 0]          # b = 127, z = 0, k = 0
    bits = head + [0, 0, 0, 0] + [0, 1, 0, 0] + head + [0, 0, 0, 0] + [0, 0, 0, 1]
    enc = parse(encode(x, s))
    assert enc.block_words.tolist() == [1]
    assert enc.payload == _bytes(bits + [0] * (64 - len(bits)))


def _bytes(bits):
    return bytes(sum(bits[8 * i + j] << j for j in range(8)) for i in range(len(bits) // 8))


# ---------------------------------------------------------------------------
# Real training tensors
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real():
    pytest.importorskip("torch")
    from sfp.train.tensors import ensure_tensors
    with np.load(ensure_tensors()) as z:
        return {k: z[k] for k in z.files}


REAL_SETTINGS = [
    dict(source="bf16"),
    dict(source="bf16", man_bits=3, exp_bits=5, gecko=True),
    dict(source="bf16", man_bits=2, exp_bits=4, rounding="stochastic", seed=7, gecko=True, group=64, block=1024, word=512),
    dict(source="fp32", man_bits=10, exp_bits=8, exp_base=0, rounding="rz", block=4096, word=64),
    dict(source="fp16", man_bits=5, exp_bits=5, gecko=True, group=16, block=64, word=256),
]


def _as_source(arr, source):
    return arr.astype({"bf16": ml_dtypes.bfloat16, "fp32": np.float32, "fp16": np.float16}[source])


def independent_gecko_bits(codes: np.ndarray, G: int, e: int) -> int:
    """Exponent bits of Gecko over ``codes`` (format.md 5.1), vectorized from the spec's words."""
    n = codes.size
    ng = -(-n // G)
    c = np.full(ng * G, -1, np.int64)
    c[:n] = codes
    c = c.reshape(ng, G)
    valid = c >= 0
    g = valid.sum(1)
    b = c.max(1)
    z = ((np.where(valid, c, 1 << 20).min(1) == 0) & (b > 0)).astype(np.int64)
    sym = np.where((c == 0) & (z[:, None] == 1), 0, b[:, None] - c + z[:, None])
    costs = [g * e]
    for k in (0, 1, 2):
        q = sym >> k
        costs.insert(k, (np.where(valid, k + np.minimum(q, 8) + 1 + np.where(q >= 8, e, 0), 0)).sum(1))
    body = np.where(b > 0, np.min(np.stack(costs), 0), 0)
    return int((e + 3) * ng + body.sum())


def test_real_tensors_roundtrip(real):
    keys = sorted(real)
    assert len(keys) > 20
    for i, kw in enumerate(REAL_SETTINGS):
        for key in keys[i::2]:          # every setting sees half of the tensors (all kinds)
            s = Settings(**kw)
            x = _as_source(real[key], s.source)
            if not s.sign:
                x = np.abs(x)
            assert same_bits(decode(encode(x, s)), quantize(x, s)), (key, kw)


def test_real_tensors_gecko_exponent_bits(real):
    totals = {}
    for key in sorted(real):
        x = _as_source(real[key], "bf16")
        n = x.size
        for e, G in ((8, 32), (5, 32), (8, 8)):
            s = Settings(man_bits=3, exp_bits=e, group=G, gecko=True)
            fp = footprint(x, s)
            ng = -(-n // G)
            # exponent codes read off quantize's output (no Inf/NaN in training tensors)
            q = quantize(x, s).view(np.uint16).reshape(-1).astype(np.int64)
            E = (q >> 7) & 0xFF
            assert (E != 0xFF).all()
            codes = np.where(E == 0, 0, E - resolve(x, s).exp_base)
            want = independent_gecko_bits(codes, G, e)
            assert fp["gecko_exp_bits"] * n == pytest.approx(want, abs=1e-6), key
            assert want <= ng * (e + 3) + n * e, key           # 5.2: never worse than raw + header
            assert want / n < 8, key
            # the Gecko image is never larger than raw plus per-group headers plus padding
            raw = footprint(x, s.with_(gecko=False))["image_bits"]
            assert fp["image_bits"] <= raw + ng * (e + 3) + s.word * (-(-n // s.block)), key
            t = totals.setdefault((e, G), [0, 0])
            t[0] += want
            t[1] += n
    for (e, G), (bits, n) in totals.items():
        assert bits / n < min(e, 8)
    print({k: round(b / n, 3) for k, (b, n) in totals.items()})


def test_real_tensor_slices_match_independent_writer(real):
    """Slices of real tensors, where Gecko-coded blocks actually occur, byte for byte."""
    n_coded = 0
    for key in sorted(real)[::5]:
        x = _as_source(real[key].reshape(-1)[:1200], "bf16")
        for s in (Settings(man_bits=2, exp_bits=8, gecko=True, group=32, block=256, word=64),
                  Settings(man_bits=0, exp_bits=5, gecko=True, group=8, block=64, word=128),
                  Settings(man_bits=3, exp_bits=4, gecko=True, group=16, block=32, word=64, rounding="stochastic", seed=3)):
            enc = parse(encode(x, s))
            image, index, coded = independent_image(fields_from_output(quantize(x, s), enc.settings), enc.settings)
            assert enc.block_words.tolist() == index, key
            assert enc.payload == image, key
            n_coded += sum(coded)
    assert n_coded > 20
