"""decode(encode(x)) == quantize(x), bit for bit, over every bf16 and fp16 bit pattern.

For every (m, e) in range, every exp_base class (auto and several fixed ones,
including the window running past the source's top exponent), Gecko off and
on, and rotating word / block / group sizes, rounding modes and seeds.  The
values themselves are checked against an independent reference in
test_model_reference.py; here the point is that the packed image carries
exactly those values.  fp32: large random samples plus edge patterns.
"""

from __future__ import annotations

import numpy as np
import pytest

from sfp.model.container import decode, encode, parse
from sfp.model.formats import Settings
from sfp.model.quantize import quantize

ALL16 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
WORDS = (64, 128, 256, 512)
BLOCKS = (1, 4, 32, 64, 256, 1024, 65536)    # 1 and 4 only without Gecko (B must be a multiple of G)
GROUPS = (4, 8, 32, 64, 256)


def finite_only(bits, E_w, M_w):
    return bits[((bits >> M_w) & ((1 << E_w) - 1)) != (1 << E_w) - 1]


def roundtrip(x, s):
    data = encode(x, s)
    y = decode(data)
    q = quantize(x, s)
    assert y.dtype == q.dtype == x.dtype and y.shape == q.shape == x.shape
    bad = np.flatnonzero(y.reshape(-1).view(np.uint8) != q.reshape(-1).view(np.uint8))
    if bad.size:
        i = bad[0] // x.dtype.itemsize
        raise AssertionError(f"{s}: decode != quantize at index {i} (input {int(x.reshape(-1)[i]):#x}): "
                             f"{int(y.reshape(-1)[i]):#x} vs {int(q.reshape(-1)[i]):#x}")
    return data


def layouts(k, gecko):
    """Deterministic rotation of (word, block, group) so that all of them occur."""
    w = WORDS[k % len(WORDS)]
    g = GROUPS[(k // 2) % len(GROUPS)]
    # Gecko decoding walks a block's lanes serially (B steps per tensor): big blocks are slow,
    # so they get their own test below.
    blocks = [b for b in BLOCKS if not gecko or (b % g == 0 and b <= 1024)]
    b = blocks[(k // 3) % len(blocks)]
    return w, b, g


BF16_BASES = ("auto", 0, 64, 120, 127, 200, 252, 253)


@pytest.mark.parametrize("gecko", [False, True])
@pytest.mark.parametrize("m", range(8))
def test_bf16_all_patterns_roundtrip(m, gecko):
    """Sign stored, specials kept: all 65,536 patterns, every e and base."""
    k = m * 7
    for e in range(2, 9):
        for base in BF16_BASES:
            w, b, g = layouts(k, gecko)
            k += 1
            rounding = ("rne", "rz", "stochastic")[k % 3]
            s = Settings(man_bits=m, exp_bits=e, exp_base=base, gecko=gecko, word=w, block=b, group=g,
                         rounding=rounding, seed=(k * 0x1234567) & 0xFFFFFFFF)
            roundtrip(ALL16, s)


@pytest.mark.parametrize("gecko", [False, True])
@pytest.mark.parametrize("sign, specials", [(False, True), (True, False), (False, False)])
def test_bf16_sign_and_specials_variants(sign, specials, gecko):
    x = ALL16
    if not sign:
        x = x[((x >> 15) == 0) | ((x & 0x7FFF) == 0) | (((x & 0x7F80) == 0x7F80) & ((x & 0x7F) != 0))]
    if not specials:
        x = finite_only(x, 8, 7)
    k = 0
    for m in range(8):
        for e in range(2, 9):
            for base in ("auto", 0, 121, 253):
                w, b, g = layouts(k, gecko)
                k += 1
                s = Settings(man_bits=m, exp_bits=e, exp_base=base, sign=sign, specials=specials,
                             gecko=gecko, word=w, block=b, group=g, rounding=("rne", "rz", "stochastic")[k % 3])
                roundtrip(x, s)


@pytest.mark.parametrize("gecko", [False, True])
def test_fp16_all_patterns_roundtrip(gecko):
    k = 0
    finite = finite_only(ALL16, 5, 10)
    nonneg = finite[(finite >> 15) == 0]
    for m in range(11):
        for e in range(2, 6):
            for base in ("auto", 0, 9, 29):
                w, b, g = layouts(k, gecko)
                k += 1
                s = Settings(source="fp16", man_bits=m, exp_bits=e, exp_base=base, gecko=gecko,
                             word=w, block=b, group=g, rounding=("rne", "rz", "stochastic")[k % 3], seed=k)
                roundtrip(ALL16.view(np.float16) if k % 2 else ALL16, s)   # float16 or uint16 in and out
                if k % 4 == 0:
                    roundtrip(nonneg, s.with_(sign=False, specials=False))


def test_bf16_float_input_and_shapes():
    """ml_dtypes.bfloat16 input decodes as bfloat16, in the input's shape."""
    import ml_dtypes
    xf = ALL16.view(ml_dtypes.bfloat16).reshape(256, 16, 16)
    for gecko in (False, True):
        data = roundtrip(xf, Settings(man_bits=3, exp_bits=4, gecko=gecko))
        assert parse(data).shape == (256, 16, 16)
        assert not parse(data).raw_bits
    assert parse(encode(ALL16, Settings())).raw_bits


def fp32_patterns(n, seed):
    rng = np.random.default_rng(seed)
    rand = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    # concentrated exponents (realistic tensors) so that small windows hold many values
    conc = ((rng.integers(110, 135, n).astype(np.uint32) << 23) | rng.integers(0, 1 << 23, n).astype(np.uint32)
            | (rng.integers(0, 2, n).astype(np.uint32) << 31))
    edges = [sgn << 31 | ex << 23 | man
             for sgn in (0, 1) for ex in (0, 1, 2, 126, 127, 128, 253, 254, 255)
             for man in (0, 1, 0x400000, 0x7FFFFF, 0x3FFFFF, 0x8000, 0x7FFF)]
    return np.concatenate([rand, conc, np.array(edges, np.uint32)])


@pytest.mark.parametrize("gecko", [False, True])
def test_fp32_samples_roundtrip(gecko):
    x = fp32_patterns(15_000, 11)
    xf = x.view(np.float32).reshape(-1, 7) if x.size % 7 == 0 else x.view(np.float32)
    k = 0
    for m in (0, 1, 4, 7, 11, 16, 22, 23):
        for e in range(2, 9):
            for base in ("auto", 0, 110, 253):
                w, b, g = layouts(k, gecko)
                k += 1
                s = Settings(source="fp32", man_bits=m, exp_bits=e, exp_base=base, gecko=gecko,
                             word=w, block=b, group=g, rounding=("rne", "rz", "stochastic")[k % 3], seed=k * 77)
                roundtrip(x if k % 2 else xf, s)


def test_gecko_large_blocks():
    """Blocks of 4096 and 65536 values (the largest) with Gecko, over all bf16 patterns."""
    for b, g, m, e in [(65536, 32, 3, 5), (65536, 256, 7, 8), (4096, 4, 0, 2)]:
        roundtrip(ALL16, Settings(man_bits=m, exp_bits=e, gecko=True, block=b, group=g))
        roundtrip(ALL16[::-1].copy(), Settings(man_bits=m, exp_bits=e, exp_base=100, gecko=True, block=b, group=g, word=512))


def test_gecko_zero_width_records():
    # Regression: with the sign elided and m = 0 the sign/mantissa records are 0 bits wide and
    # the last one sits at offset == total_bits when the block ends on a word boundary.
    # one group of 59 equal codes: header 2+1+2 bits, k = 0, 59 one-bit unary codes = 64 bits = 1 word
    x = np.full(59, 0x3F80, np.uint16)
    s = Settings(man_bits=0, exp_bits=2, sign=False, gecko=True, group=64, block=64, word=64)
    roundtrip(x, s)


@pytest.mark.parametrize("gecko", [False, True])
def test_tensor_larger_than_a_processing_chunk(gecko):
    """encode/decode work in pieces of whole blocks (2^18 values); quantize on the whole tensor.
    Stochastic bits must follow the tensor index across pieces, and auto base the whole tensor."""
    rng = np.random.default_rng(5)
    n = 600_001
    x = ((rng.integers(100, 140, n).astype(np.uint32) << 23) | rng.integers(0, 1 << 23, n).astype(np.uint32)
         | (rng.integers(0, 2, n).astype(np.uint32) << 31))
    x[-1] = 0x4F000000                      # the largest value is in the last piece: auto base sees it
    for s in (Settings(source="fp32", man_bits=5, exp_bits=4, rounding="stochastic", seed=9, gecko=gecko, block=64),
              Settings(source="fp32", man_bits=0, exp_bits=3, rounding="stochastic", seed=1, gecko=gecko, block=1024, word=512)):
        roundtrip(x, s)
        assert parse(encode(x, s)).settings.exp_base == 158 - s.max_code


def test_strict_error_index_across_pieces():
    from sfp.model.formats import FormatError
    x = np.ones(700_000, np.float32)
    x[500_000] = -1.0
    with pytest.raises(FormatError, match="index 500000"):
        encode(x, Settings(source="fp32", sign=False))
