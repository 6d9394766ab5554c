"""The MX quantizer (model/mx.py) against an independent exact reference written from the OCP MX v1.0 text.

The reference enumerates every element value of the format from its bit fields (sign, exponent with
bias 2^(E-1)-1, mantissa; subnormals at exponent field 0; no Inf/NaN codes used), computes the scale
from the block's largest magnitude with exact rationals, rounds each scaled value to the nearest element
(ties to the even code), saturating to the largest normal.  No ml_dtypes, no floating-point rounding.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sfp.model.mx import BLOCK, MX_FORMATS, mx_bits, mx_quantize

ELEMENT = {  # name: (exponent bits, mantissa bits, codes that are not finite numbers)
    "mxfp8_e4m3": (4, 3, lambda e, m: e == 15 and m == 7),      # S.1111.111 is NaN (no Inf)
    "mxfp8_e5m2": (5, 2, lambda e, m: e == 31),                 # IEEE-like: top exponent is Inf/NaN
    "mxfp6_e3m2": (3, 2, lambda e, m: False),
    "mxfp6_e2m3": (2, 3, lambda e, m: False),
    "mxfp4_e2m1": (2, 1, lambda e, m: False),
}


def _elements(name):
    """Non-negative finite element values, with their codes, ascending."""
    E, M, special = ELEMENT[name]
    bias = (1 << (E - 1)) - 1
    vals = []
    for e in range(1 << E):
        for m in range(1 << M):
            if special(e, m):
                continue
            if e == 0:
                v = Fraction(m, 1 << M) * Fraction(2) ** (1 - bias)
            else:
                v = (1 + Fraction(m, 1 << M)) * Fraction(2) ** (e - bias)
            vals.append((v, (e << M) | m))
    return sorted(vals)


_TABLES = {n: _elements(n) for n in ELEMENT}


def _round(v: Fraction, name) -> Fraction:
    table = _TABLES[name]
    a = abs(v)
    if a >= table[-1][0]:
        r = table[-1][0]                                   # saturate
    else:
        i = next(k for k, (t, _) in enumerate(table) if t >= a)
        hi, hc = table[i]
        lo, lc = table[i - 1] if i else table[0]
        if a - lo < hi - a:
            r = lo
        elif hi - a < a - lo:
            r = hi
        else:
            r = lo if lc % 2 == 0 else hi                  # tie: the even code
    return -r if v < 0 else r


def _reference(x: np.ndarray, name) -> tuple[list, list]:
    emax = int(math.log2(_TABLES[name][-1][0]))            # exponent of the largest normal
    out, scales = [], []
    flat = [Fraction(float(v)) for v in x.reshape(-1)]
    for b in range(0, len(flat), BLOCK):
        blk = flat[b:b + BLOCK]
        amax = max(abs(v) for v in blk)
        if amax == 0:
            X = -127
        else:
            k = amax.numerator.bit_length() - amax.denominator.bit_length()   # floor(log2(amax)), exactly
            if Fraction(2) ** k > amax:
                k -= 1
            X = max(-127, min(127, k - emax))
        scales.append(X + 127)
        out += [_round(v / Fraction(2) ** X, name) * Fraction(2) ** X for v in blk]
    return [float(v) for v in out], scales


def test_element_tables_match_the_spec_maxima():
    for name, f in MX_FORMATS.items():
        assert float(_TABLES[name][-1][0]) == f.max_normal
        assert int(math.log2(f.max_normal)) == f.emax


@pytest.mark.parametrize("name", list(MX_FORMATS))
def test_real_training_tensors(name):
    from sfp.sim_tests.packer_ref import real_tensor_bits
    for key in ("act", "weight", "grad"):
        x = real_tensor_bits("fp32", key, 32 * 40 + 7).astype(np.uint32).view(np.float32)
        got, sc = mx_quantize(x, name)
        ref, rsc = _reference(x, name)
        assert np.array_equal(got, np.array(ref, np.float32)), key
        assert sc.tolist() == rsc


@pytest.mark.parametrize("name", list(MX_FORMATS))
@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-2.0 ** 100, 2.0 ** 100, width=32, allow_subnormal=True), min_size=1, max_size=70),
       st.integers(-40, 40))
def test_random_tensors(name, vals, shift):
    with np.errstate(over="ignore"):
        x = (np.array(vals, np.float32) * np.float32(2.0 ** shift)).astype(np.float32)
    x = np.where(np.isfinite(x), x, 0).astype(np.float32)
    got, sc = mx_quantize(x, name)
    ref, rsc = _reference(x, name)
    assert np.array_equal(got, np.array(ref, np.float32))
    assert sc.tolist() == rsc


def test_ties_saturation_and_zero_block():
    # block amax 1.0 -> X = -emax; 1.0625 in e4m3 units is a tie between 1 and 1.125 -> even code (1.0)
    x = np.zeros(64, np.float32)
    x[0], x[1], x[2] = 1.0, 1.0625 / 256, 1.1875 / 256     # e4m3: emax 8, elements scaled by 2^8
    x[3] = 1.99                                            # amax 1.99 -> 1.99 * 2^8 = 509 > 448: saturates
    got, sc = mx_quantize(x, "mxfp8_e4m3")
    assert sc[0] == 127 - 8 and sc[1] == 0                 # second block all zero: X = -127
    assert got[1] * 256 == 1.0 and got[2] * 256 == 1.25 and got[3] == 448 / 256
    assert not got[32:].any()


def test_footprint_counts_scales():
    assert mx_bits(64, "mxfp4_e2m1") == 64 * 4 + 2 * 8
    assert mx_bits(33, "mxfp8_e4m3") == 33 * 8 + 2 * 8
