"""``sfp.model.quantize`` against an independent reference written from docs/format.md section 3.

The reference below does not use the model's integer rounding on ``X = E << M_w | M``.
It works on float64 *values*: the unbiased exponent from ``np.frexp``, the
kept-mantissa ulp ``2^(E-m)``, ``np.round`` (ties to even) / ``np.trunc`` /
floor-after-adding-random-bits for the three rounding modes, then the exponent
window of section 3.4 (below -> signed zero, above -> ``(2 - 2^-m) * 2^top``),
the Inf/NaN rules of 3.5 and sign elision of 3.6.  Float64 holds every
intermediate exactly (at most 24 significant bits, exponents within +-2^10).

It is compared bit for bit with ``quantize`` on every bf16 and fp16 bit
pattern, for every (m, e), several ``exp_base`` values (and ``auto``), all
rounding modes, sign stored/elided, specials kept/off, strict and hardware
(``strict=False``) behaviour; on large fp32 samples; and with ``ml_dtypes`` /
NumPy casts where a standard format coincides with a container.
"""

from __future__ import annotations

import functools

import ml_dtypes
import numpy as np
import pytest

from sfp.model.formats import FormatError, Settings
from sfp.model.quantize import quantize, resolve, stochastic_bits, to_fields

# name: (E_w, M_w, bias, numpy dtype holding the bit pattern, float dtype)
SRC = {
    "bf16": (8, 7, 127, np.uint16, ml_dtypes.bfloat16),
    "fp32": (8, 23, 127, np.uint32, np.float32),
    "fp16": (5, 10, 15, np.uint16, np.float16),
}
QNAN = {"bf16": 0x7FC0, "fp32": 0x7FC00000, "fp16": 0x7E00}
ALL16 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)


# ---------------------------------------------------------------------------
# Independent reference
# ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def spec_random_words(seed: int, n: int) -> tuple:
    """The 32-bit whitened Weyl words of format.md 3.3, in pure Python integers."""
    out = []
    for i in range(n):
        x = (seed + i * 0x9E3779B9) % 2**32
        x = x ^ ((x << 13) % 2**32)
        x = x ^ (x >> 17)
        x = x ^ ((x << 5) % 2**32)
        out.append(x)
    return tuple(out)


def spec_random_bits(seed: int, n: int, d: int) -> np.ndarray:
    """r_i = the top d bits of the spec's word (0 when d = 0)."""
    if d == 0:
        return np.zeros(n, np.float64)
    return np.array([x >> (32 - d) for x in spec_random_words(seed, n)], np.float64)


def to_f64(bits: np.ndarray, source: str) -> np.ndarray:
    with np.errstate(invalid="ignore"):          # signalling NaN patterns
        return _to_f64(bits, source)


def _to_f64(bits, source):
    if source == "bf16":
        return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    if source == "fp32":
        return bits.astype(np.uint32).view(np.float32).astype(np.float64)
    return bits.astype(np.uint16).view(np.float16).astype(np.float64)


def from_f64(v: np.ndarray, source: str) -> np.ndarray:
    """Exact conversion of representable float64 values (and signed zeros) to bit patterns."""
    if source == "bf16":
        b = v.astype(np.float32).view(np.uint32)
        fin = np.isfinite(v)
        assert not (b[fin] & 0xFFFF).any(), "reference produced a value not representable in bf16"
        out = (b >> 16).astype(np.uint16)
    elif source == "fp32":
        out = v.astype(np.float32).view(np.uint32)
    else:
        with np.errstate(over="ignore"):
            out = v.astype(np.float16).view(np.uint16)
    back = to_f64(out, source)
    ok = np.isnan(v) | (back == v)
    assert ok.all(), "reference produced a value not representable in the source format"
    return out


def ref_quantize(bits, source, m, e, base="auto", *, sign=True, specials=True,
                 rounding="rne", seed=0, strict=True):
    """(output bit patterns, resolved exp_base) following format.md 2-3 in float arithmetic."""
    E_w, M_w, bias, udt, _ = SRC[source]
    bits = np.asarray(bits).reshape(-1)
    d = M_w - m
    v = to_f64(bits, source)
    neg = np.signbit(v)
    a = np.abs(v)
    isnan, isinf = np.isnan(v), np.isinf(v)
    normal = np.isfinite(v) & (a >= 2.0 ** (1 - bias))
    negative = neg & (a != 0) & ~isnan                   # 3.6: sign set, not +-0, not NaN
    if strict and not sign and negative.any():
        raise AssertionError("reference: negative input with the sign elided")
    if strict and not specials and (isnan | isinf).any():
        raise AssertionError("reference: Inf/NaN with specials off")

    # 3.2 rounding, on the value: a = f * 2^ex with f in [1, 2)
    an = np.where(normal, a, 1.0)
    ex = np.frexp(an)[1] - 1
    ulp = np.ldexp(1.0, ex - m)
    t = an / ulp                                          # exact: d fractional bits
    if rounding == "rne":
        r = np.round(t)                                   # numpy rounds half to even
        if m == 0:
            # With no mantissa bit the spec's formula takes the LSB of X >> d, i.e. of the
            # biased exponent: a tie goes to the even *exponent* (1.5 * 2^k -> 2^(k+1) iff
            # the biased k is odd), which np.round(1.5) = 2 does not model.
            Eb = ex + bias
            r = np.where(t == 1.5, np.where(Eb % 2 == 1, 2.0, 1.0), r)
    elif rounding == "rz":
        r = np.trunc(t)
    else:
        r = np.floor(t + spec_random_bits(seed, bits.size, d) / 2.0 ** d)
    rv = r * ulp
    E1 = np.frexp(rv)[1] - 1 + bias                       # biased E' (may exceed E_fmax)

    top = (1 << e) - 1
    cmax = top - 1 if specials else top
    E_fmax = (1 << E_w) - 2
    if base == "auto":
        elig = normal if sign else normal & ~neg
        emax = min(int(E1[elig].max()), E_fmax) if elig.any() else 0
        base = max(0, emax - cmax)
    cfin = min(cmax, E_fmax - base)
    c = E1 - base
    largest = (2.0 - 2.0 ** -m) * 2.0 ** (base + cfin - bias)
    mag = np.where(c < 1, 0.0, np.where(c > cfin, largest, rv))
    mag = np.where(normal, mag, 0.0)                      # zeros and subnormals -> signed zero
    if not specials:                                      # hardware: Inf saturates, NaN -> +0
        mag = np.where(isinf, largest, mag)
    out = np.where(neg & ~(isnan & ~specials), -mag, mag)
    if not specials:
        out = np.where(isnan, 0.0, out)
    if not sign:
        out = np.where(negative, 0.0, np.abs(out))        # hardware: negatives -> +0; -0 -> +0
    res = from_f64(np.where(np.isnan(out), 0.0, out), source).astype(np.uint32)
    if specials:
        inf_bits = ((1 << E_w) - 1) << M_w
        sign_bit = 1 << (E_w + M_w)
        if m >= 1:
            res = np.where(isinf & (~negative | sign), inf_bits | np.where(neg & sign, sign_bit, 0), res)
        else:
            res = np.where(isinf & (~negative | sign), QNAN[source], res)
        res = np.where(isnan, QNAN[source], res)
    return res.astype(udt), base


def check_equal(got, want, x, what):
    got, want = np.asarray(got).reshape(-1), np.asarray(want).reshape(-1)
    bad = np.flatnonzero(got != want)
    if bad.size:
        i = bad[0]
        raise AssertionError(f"{what}: {bad.size} mismatches; first at input {int(np.asarray(x).reshape(-1)[i]):#x}: "
                             f"quantize {int(got[i]):#x}, reference {int(want[i]):#x}")


def sign_ok_inputs(bits, source):
    """Inputs allowed with the sign elided: non-negative, -0, NaN of either sign."""
    v = to_f64(bits, source)
    return bits[~np.signbit(v) | (v == 0) | np.isnan(v)]


def finite_inputs(bits, source):
    return bits[np.isfinite(to_f64(bits, source))]


# ---------------------------------------------------------------------------
# Sanity of the reference itself on hand-computed values (so a shared blind
# spot cannot make both agree on something the spec forbids).
# ---------------------------------------------------------------------------

def bf(x):
    return int(np.array([x], ml_dtypes.bfloat16).view(np.uint16)[0])


@pytest.mark.parametrize("x, m, e, base, rounding, want", [
    (1.0, 7, 8, "auto", "rne", 1.0),
    (1.5, 0, 8, 0, "rne", 2.0),           # m = 0 tie: biased exponent 127 is odd -> up to 128
    (3.0, 0, 8, 0, "rne", 2.0),           # m = 0 tie: biased exponent 128 is even -> stays
    (6.0, 0, 8, 0, "rne", 8.0),
    (1.25, 1, 8, 0, "rne", 1.0),          # tie 1.01b -> 1.0b
    (1.75, 1, 8, 0, "rne", 2.0),          # tie 1.11b -> 10.0b (carry into the exponent)
    (1.75, 1, 8, 0, "rz", 1.5),
    (3.0, 0, 8, 0, "rz", 2.0),
    (-3.0, 0, 8, 0, "rne", -2.0),
    (-3.5, 1, 8, 0, "rne", -4.0),         # tie 1.11b -> 10.0b
    (1.0, 3, 2, 127, "rne", 0.0),         # code 0 is below the window
    (2.0, 3, 2, 127, "rne", 2.0),         # code 1
    (4.0, 3, 2, 127, "rne", 4.0),         # code 2 = cmax with specials (top = 3)
    (8.0, 3, 2, 127, "rne", 7.5),         # above: saturates to 1.1111b * 2^2
    (-1e30, 3, 2, 127, "rne", -7.5),
    (2.0 ** -120, 7, 8, 0, "rne", 2.0 ** -120),
])
def test_reference_sanity(x, m, e, base, rounding, want):
    got, _ = ref_quantize(np.array([bf(x)], np.uint16), "bf16", m, e, base, rounding=rounding)
    assert int(got[0]) == bf(want)
    q = quantize(np.array([bf(x)], np.uint16), Settings(man_bits=m, exp_bits=e, exp_base=base, rounding=rounding))
    assert int(q[0]) == bf(want)


def test_auto_base_hand_computed():
    # largest value 1.0 (E = 127), e = 3 with specials: cmax = 6 -> base 121; 2^-6 is code 0: zero.
    x = np.array([bf(1.0), bf(0.5), bf(2.0 ** -6), bf(-0.25)], np.uint16)
    s = Settings(man_bits=7, exp_bits=3)
    assert resolve(x, s).exp_base == 121
    assert list(quantize(x, s)) == [bf(1.0), bf(0.5), 0, bf(-0.25)]
    # rounding carry raises Emax: 1.99 rounds to 2.0 with m = 2
    x = np.array([bf(1.99)], np.uint16)
    assert resolve(x, Settings(man_bits=2, exp_bits=3)).exp_base == 122
    # sign elided: negative values are ignored by auto, but are errors strict; a NaN counts as nothing
    x = np.array([bf(4.0), bf(0.5), 0x7FC0, 0xFFC1], np.uint16)
    assert resolve(x, Settings(exp_bits=3, sign=False)).exp_base == 129 - 6
    assert resolve(np.array([0, 0x8000, 1], np.uint16), Settings()).exp_base == 0   # no normal value


# ---------------------------------------------------------------------------
# Exhaustive bf16 and fp16 against the reference
# ---------------------------------------------------------------------------

BASES = {"bf16": ["auto", 0, 1, 60, 100, 120, 127, 200, 252, 253],
         "fp16": ["auto", 0, 1, 7, 15, 20, 28, 29]}
CONFIGS = [  # (sign, specials, rounding, seed)
    (True, True, "rne", 0),
    (True, True, "rz", 0),
    (True, True, "stochastic", 0),
    (True, True, "stochastic", 0xDEADBEEF),
    (False, True, "rne", 0),
    (True, False, "rne", 0),
    (False, False, "rz", 0),
    (False, True, "stochastic", 12345),
]


@pytest.mark.parametrize("sign, specials, rounding, seed", CONFIGS)
@pytest.mark.parametrize("source", ["bf16", "fp16"])
def test_all_patterns_vs_reference(source, sign, specials, rounding, seed):
    E_w, M_w = SRC[source][:2]
    x = ALL16
    if not sign:
        x = sign_ok_inputs(x, source)
    if not specials:
        x = finite_inputs(x, source)
    for m in range(M_w + 1):
        for e in range(2, min(8, E_w) + 1):
            for base in BASES[source]:
                s = Settings(source=source, man_bits=m, exp_bits=e, exp_base=base, sign=sign,
                             specials=specials, rounding=rounding, seed=seed)
                want, rbase = ref_quantize(x, source, m, e, base, sign=sign, specials=specials,
                                           rounding=rounding, seed=seed)
                got = quantize(x, s)
                assert got.dtype == np.uint16 and got.shape == x.shape
                check_equal(got, want, x, f"{s}")
                if base == "auto":
                    assert resolve(x, s).exp_base == rbase, s


@pytest.mark.parametrize("source", ["bf16", "fp16"])
@pytest.mark.parametrize("sign, specials", [(False, True), (True, False), (False, False)])
def test_hardware_behaviour_nonstrict(source, sign, specials):
    """strict=False: negatives with the sign elided -> +0, Inf saturates and NaN -> +0 with specials off."""
    E_w, M_w = SRC[source][:2]
    x = ALL16
    v = to_f64(x, source)
    n_neg = int((np.signbit(v) & (v != 0) & ~np.isnan(v)).sum())
    n_spec = int((~np.isfinite(v)).sum())
    for m in (0, 1, M_w // 2, M_w):
        for e in (2, 4, min(8, E_w)):
            for base in ("auto", 3, 20):
                s = Settings(source=source, man_bits=m, exp_bits=e, exp_base=base, sign=sign, specials=specials)
                want, _ = ref_quantize(x, source, m, e, base, sign=sign, specials=specials, strict=False)
                check_equal(quantize(x, s, strict=False), want, x, f"nonstrict {s}")
                fields, _ = to_fields(x.astype(np.uint32), s, strict=False)
                assert fields.neg_flag == (0 if sign else n_neg)
                assert fields.special_flag == (0 if specials else n_spec)
                with pytest.raises(FormatError):
                    quantize(x, s)                         # strict (default) refuses the same input


def test_strict_errors_name_the_problem():
    neg = np.array([bf(1.0), bf(-2.0)], np.uint16)
    with pytest.raises(FormatError, match="index 1"):
        quantize(neg, Settings(sign=False))
    for bad in (0x7F80, 0xFF80, 0x7FC0, 0xFFFF, 0x7F81):
        with pytest.raises(FormatError):
            quantize(np.array([bf(1.0), bad], np.uint16), Settings(specials=False))
    # negative subnormal is "not +-0" (3.6): an error with the sign elided; -0 and -NaN are not
    with pytest.raises(FormatError):
        quantize(np.array([0x8001], np.uint16), Settings(sign=False))
    out = quantize(np.array([0x8000, 0xFFC1, 0x0001], np.uint16), Settings(sign=False))
    assert list(out) == [0, 0x7FC0, 0]


def test_lossless_identity_bf16_fp16():
    for source in ("bf16", "fp16"):
        E_w, M_w = SRC[source][:2]
        s = Settings(source=source, man_bits=M_w, exp_bits=min(8, E_w), exp_base=0)
        v = to_f64(ALL16, source)
        out = quantize(ALL16, s)
        normal = np.isfinite(v) & (np.abs(v) >= 2.0 ** (1 - SRC[source][2]))
        if source == "bf16":   # section 3.7: every normal bf16 input round-trips
            assert np.array_equal(out[normal], ALL16[normal])
        else:                  # fp16 with e = 5: cmax = 30 = E_fmax, the whole normal range fits
            assert np.array_equal(out[normal], ALL16[normal])
        assert np.array_equal(out[np.isinf(v)], ALL16[np.isinf(v)])
        assert (out[np.isnan(v)] == QNAN[source]).all()
        sub = (v == 0) | (np.isfinite(v) & ~normal)
        assert np.array_equal(out[sub], ALL16[sub] & np.uint16(1 << (E_w + M_w)))  # signed zero
        # the defaults (auto base) are lossless too for a tensor holding the largest normal
        assert np.array_equal(quantize(ALL16, Settings(source=source))[normal], ALL16[normal])


def fp32_samples(n=300_000, seed=1):
    rng = np.random.default_rng(seed)
    rand = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    edges = []
    for ex in (0, 1, 2, 60, 126, 127, 128, 200, 253, 254, 255):
        for man in (0, 1, 2, 0x3FFFFF, 0x400000, 0x400001, 0x7FFFFE, 0x7FFFFF, 0x8000, 0x7FFF,
                    0x10000, 0x18000, 0x17FFF, 0x8001, 0x4000, 0xC000, 0x1FFFF, 0x0FFFF, 0x2FFF):
            for sgn in (0, 1):
                edges.append(sgn << 31 | ex << 23 | man)
    # every rounding boundary pattern (low bits = tie-ish) for all m at random exponents
    ties = []
    for d in range(1, 24):
        half = 1 << (d - 1)
        for low in (half - 1, half, half + 1):
            for hi in (0, 1 << d, (0x7FFFFF >> d) << d):
                ties.append((int(rng.integers(1, 255)) << 23) | (hi & 0x7FFFFF) | low)
    return np.concatenate([rand, np.array(edges + ties, np.uint32)])


@pytest.mark.parametrize("sign, specials, rounding, seed", CONFIGS[:6])
def test_fp32_samples_vs_reference(sign, specials, rounding, seed):
    x = fp32_samples(40_000 if rounding == "stochastic" else 120_000)
    if not sign:
        x = sign_ok_inputs(x, "fp32")
    if not specials:
        x = finite_inputs(x, "fp32")
    for m in (0, 1, 2, 3, 5, 7, 10, 15, 22, 23):
        for e in range(2, 9):
            for base in ("auto", 0, 100, 125, 253):
                s = Settings(source="fp32", man_bits=m, exp_bits=e, exp_base=base, sign=sign,
                             specials=specials, rounding=rounding, seed=seed)
                want, rbase = ref_quantize(x, "fp32", m, e, base, sign=sign, specials=specials,
                                           rounding=rounding, seed=seed)
                got = quantize(x, s)
                assert got.dtype == np.uint32
                check_equal(got, want, x, f"{s}")


def test_fp32_lossless_identity():
    x = fp32_samples()
    v = to_f64(x, "fp32")
    out = quantize(x, Settings(source="fp32", exp_base=0))
    normal = np.isfinite(v) & (np.abs(v) >= 2.0 ** -126)
    assert np.array_equal(out[normal | np.isinf(v)], x[normal | np.isinf(v)])
    assert (out[np.isnan(v)] == QNAN["fp32"]).all()
    # float32 input keeps its dtype and shape
    xf = x[normal][:1000].view(np.float32).reshape(10, 100)
    q = quantize(xf, Settings(source="fp32", exp_base=0))
    assert q.dtype == np.float32 and q.shape == (10, 100)
    assert np.array_equal(q.view(np.uint32), xf.view(np.uint32))


# ---------------------------------------------------------------------------
# Standard formats that coincide with a container (cast by ml_dtypes / NumPy)
# ---------------------------------------------------------------------------

def _standard_case(x_bits, source, target, m, e, base, min_normal):
    """Compare quantize with a cast to ``target`` on inputs where both formats agree.

    Excluded inputs (the container differs from IEEE there by design):
    * |x| < min_normal of the target, and zero/subnormal inputs: the container
      flushes everything below the window to zero, IEEE rounds on the
      subnormal grid (whose ulp differs), so even results that round up to the
      smallest normal may differ;
    * inputs whose IEEE result overflows to Inf: the container saturates.
    Inf and NaN inputs are kept: both give Inf / NaN (NaN payloads: the
    container canonicalizes, so NaN is compared as "is NaN").
    """
    _, _, _, udt, fdt = SRC[source]
    xf = x_bits.astype(udt).view(fdt)
    with np.errstate(over="ignore", invalid="ignore"):
        ieee = xf.astype(target)
        back = ieee.astype(np.float64)
    v = to_f64(x_bits, source)
    keep = (np.isnan(v) | np.isinf(v)) | ((np.abs(v) >= min_normal) & np.isfinite(back))
    assert keep.sum() > 1000
    x = x_bits[keep]
    q = quantize(x.astype(udt), Settings(source=source, man_bits=m, exp_bits=e, exp_base=base))
    qv = to_f64(q, source)
    back = back[keep]
    nan = np.isnan(back)
    assert np.array_equal(np.isnan(qv), nan)
    bad = np.flatnonzero((qv[~nan] != back[~nan]) | (np.signbit(qv[~nan]) != np.signbit(back[~nan])))
    assert bad.size == 0, f"first mismatch at input {int(x[~nan][bad[0]]):#x}: {qv[~nan][bad[0]]} vs {back[~nan][bad[0]]}"
    return int(keep.sum())


def test_bf16_as_float8_e4m3():
    # IEEE-like e4m3: bias 7, exponents 1..14 normal, 15 Inf/NaN. Container code c = E_bf16 - 120.
    assert float(ml_dtypes.finfo(ml_dtypes.float8_e4m3).max) == 240.0
    assert np.isinf(np.array(np.inf, np.float32).astype(ml_dtypes.float8_e4m3).astype(np.float32))
    _standard_case(ALL16, "bf16", ml_dtypes.float8_e4m3, 3, 4, 120, 2.0 ** -6)


def test_bf16_as_float8_e5m2():
    # e5m2: bias 15; container code c = E_bf16 - 112.
    _standard_case(ALL16, "bf16", ml_dtypes.float8_e5m2, 2, 5, 112, 2.0 ** -14)


def test_bf16_as_float8_e3m4():
    # e3m4 (ml_dtypes): bias 3, IEEE-like with Inf/NaN. Container code c = E_bf16 - 124.
    assert np.isinf(np.array(np.inf, np.float32).astype(ml_dtypes.float8_e3m4).astype(np.float32))
    _standard_case(ALL16, "bf16", ml_dtypes.float8_e3m4, 4, 3, 124, 2.0 ** -2)


def test_fp16_as_float8_e4m3():
    # fp16 source (bias 15) into e4m3 (bias 7): base 8.
    _standard_case(ALL16, "fp16", ml_dtypes.float8_e4m3, 3, 4, 8, 2.0 ** -6)


def test_fp32_to_bf16_matches_ml_dtypes():
    # m = 7, e = 8, exp_base = 0: the container is bf16 without subnormals (cfin = 254).
    x = fp32_samples(400_000, seed=7)
    _standard_case(x, "fp32", ml_dtypes.bfloat16, 7, 8, 0, 2.0 ** -126)


def test_fp32_to_fp16_matches_numpy():
    # m = 10, e = 5, exp_base = 112: codes 1..30 are fp16's normal exponents.
    rng = np.random.default_rng(3)
    x = np.concatenate([fp32_samples(100_000, seed=8),
                        (rng.integers(100, 145, 300_000).astype(np.uint32) << 23)
                        | rng.integers(0, 1 << 23, 300_000).astype(np.uint32)
                        | (rng.integers(0, 2, 300_000).astype(np.uint32) << 31)])
    n = _standard_case(x, "fp32", np.float16, 10, 5, 112, 2.0 ** -14)
    assert n > 200_000


# ---------------------------------------------------------------------------
# Stochastic rounding
# ---------------------------------------------------------------------------

def test_stochastic_bits_match_spec_formula():
    for seed in (0, 1, 0xDEADBEEF, 2**32 - 1):
        words = spec_random_words(seed, 4096)
        for d in (1, 5, 16, 23):
            want = np.array([x >> (32 - d) for x in words], np.uint32)
            assert np.array_equal(stochastic_bits(4096, seed, d), want)
        assert not stochastic_bits(10, seed, 0).any()
    # start offset: value i's bits do not depend on where the run starts
    w = spec_random_words(7, 5000)
    assert np.array_equal(stochastic_bits(1000, 7, 9, start=4000), np.array([x >> 23 for x in w[4000:]], np.uint32))
    # first words by hand: seed 0, i = 0 -> 0; i = 1 -> xorshift(0x9E3779B9)
    x = 0x9E3779B9
    x ^= (x << 13) & 0xFFFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFFFFFF
    assert spec_random_words(0, 2) == (0, x)


@pytest.mark.parametrize("seed", [0, 99, 0xFFFFFFFF])
def test_stochastic_neighbours_and_exact_choice(seed):
    """Each result is one of the two neighbours; which one is fixed by the spec's r_i."""
    rng = np.random.default_rng(seed & 0xFFFF)
    n = 50_000
    x = (rng.integers(1, 200, n).astype(np.uint32) << 23) | rng.integers(0, 1 << 23, n).astype(np.uint32)
    v = to_f64(x, "fp32")
    for m in (0, 3, 10, 22):
        d = 23 - m
        out = quantize(x, Settings(source="fp32", man_bits=m, exp_base=0, rounding="stochastic", seed=seed))
        q = to_f64(out, "fp32")
        ex = np.frexp(v)[1] - 1
        ulp = np.ldexp(1.0, ex - m)
        lo = np.trunc(v / ulp) * ulp
        hi = lo + ulp
        assert ((q == lo) | (q == hi)).all()
        r = spec_random_bits(seed, n, d)
        low = (x & ((1 << d) - 1)).astype(np.float64)          # the dropped bits, as an integer
        assert np.array_equal(q == hi, low + r >= 2 ** d)


@pytest.mark.parametrize("value, m", [(1.0 + 2**-9, 2), (1.3, 0), (3.14159, 4), (1 + 2**-20 + 2**-22, 0), (0.7, 11)])
def test_stochastic_unbiased(value, m):
    """Mean of N stochastic roundings of one value at different indices ~= the value.

    If r_i were i.i.d. uniform on 0..2^d-1, each result would be lo + ulp*Bernoulli(p)
    with p = the dropped fraction, so the mean's standard deviation is at most
    ulp / (2 sqrt(N)).  We allow 5 of those (a false alarm rate below 1e-6 under
    that model).  (Over all 2^32 indices the bits are exactly uniform, since
    i -> Weyl -> xorshift is a bijection of 32-bit words.)
    """
    N = 1 << 16
    x = np.full(N, value, np.float32)
    for seed in (0, 5, 0xC0FFEE):
        q = quantize(x, Settings(source="fp32", man_bits=m, exp_base=0, rounding="stochastic", seed=seed))
        v = float(np.float32(value))
        ulp = 2.0 ** (np.frexp(v)[1] - 1 - m)
        lo = np.floor(v / ulp) * ulp
        assert set(np.unique(q.astype(np.float64))) <= {lo, lo + ulp}
        assert abs(q.astype(np.float64).mean() - v) <= 5 * ulp / (2 * np.sqrt(N))


def test_unbiased_bound_has_teeth():
    """The bound of test_stochastic_unbiased rejects a biased rounding (rne, rz) of the same data."""
    N = 1 << 16
    x = np.full(N, 1.0 + 2**-4, np.float32)
    for rounding in ("rne", "rz"):
        q = quantize(x, Settings(source="fp32", man_bits=2, exp_base=0, rounding=rounding))
        assert abs(q.astype(np.float64).mean() - (1.0 + 2**-4)) > 5 * 0.25 / (2 * np.sqrt(N))
