"""Bit-exact quantization of a source tensor into container fields and back.

This module defines what the hardware stores for every value (the *fields*:
sign, exponent code, mantissa) and what it returns (the source bit pattern
rebuilt from the fields).  ``docs/format.md`` section 3 is the normative
text; every rule there has one line here.  All functions are vectorized.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .formats import FormatError, Settings, SourceFormat, SOURCES

__all__ = [
    "Fields", "as_bits", "from_bits", "stochastic_bits",
    "resolve", "to_fields", "from_fields", "quantize", "WEYL",
]

# Weyl increment of the stochastic-rounding generator: 2^32 / golden ratio, odd.
WEYL = 0x9E3779B9


@dataclass
class Fields:
    """Per-value container fields, flat arrays in tensor order."""

    sign: np.ndarray     # uint32, 0/1 (always 0 when the sign is elided)
    code: np.ndarray     # uint32, exponent code 0 .. 2^e-1
    man: np.ndarray      # uint32, the m kept mantissa bits
    neg_flag: int = 0    # values written as zero because the sign is elided
    special_flag: int = 0  # Inf/NaN met with specials off (saturated / zeroed)


def as_bits(x, source: str) -> np.ndarray:
    """Flat uint32 array of the source bit patterns of ``x``.

    Accepts the float dtype of the source (``ml_dtypes.bfloat16`` for bf16)
    or an unsigned integer array of the source's width holding bit patterns.
    """
    src = SOURCES[source]
    x = np.asarray(x)
    if x.dtype.itemsize != src.width // 8 or x.dtype.kind not in "uifV":
        raise FormatError(f"dtype {x.dtype} does not hold {src.name} values (expected {src.width}-bit floats or uint{src.width} bit patterns)")
    if x.dtype.kind == "i" or (x.dtype.kind == "f" and x.dtype != _float_dtype(src)):
        raise FormatError(f"dtype {x.dtype} does not hold {src.name} values")
    if x.dtype.kind == "V" and src.name != "bf16":
        raise FormatError(f"raw {x.dtype} records are only read as bf16")
    return np.ascontiguousarray(x).reshape(-1).view(src.dtype).astype(np.uint32)


def _float_dtype(src: SourceFormat):
    if src.name == "fp32":
        return np.dtype(np.float32)
    if src.name == "fp16":
        return np.dtype(np.float16)
    import ml_dtypes
    return np.dtype(ml_dtypes.bfloat16)


def from_bits(bits: np.ndarray, source: str, shape=None, as_float: bool = False) -> np.ndarray:
    """Bit patterns back to an array of the source's unsigned type (or float type)."""
    src = SOURCES[source]
    out = bits.astype(src.dtype)
    if as_float:
        out = out.view(_float_dtype(src))
    return out.reshape(shape) if shape is not None else out


def stochastic_bits(n: int, seed: int, drop: int, start: int = 0) -> np.ndarray:
    """The ``drop`` random bits for values ``start .. start+n-1`` (format.md 3.3).

    x = seed + i * 0x9E3779B9 (mod 2^32), then xorshift x ^= x<<13,
    x ^= x>>17, x ^= x<<5, and the top ``drop`` bits of x.  Counter-based, so
    value i gets the same bits whatever the hardware's lane count.
    """
    if drop == 0:
        return np.zeros(n, np.uint32)
    i = np.arange(start, start + n, dtype=np.uint64)
    x = ((np.uint64(seed) + i * np.uint64(WEYL)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    x ^= x << np.uint32(13)
    x ^= x >> np.uint32(17)
    x ^= x << np.uint32(5)
    return x >> np.uint32(32 - drop)


class _Rounded:
    """Classification and mantissa rounding: everything that does not depend on exp_base."""

    def __init__(self, bits: np.ndarray, s: Settings, start: int = 0):
        src = s.src
        m, drop = s.man_bits, src.man_width - s.man_bits
        self.sign = (bits >> np.uint32(src.width - 1)) & np.uint32(1)
        mag = bits & np.uint32(src.sign_mask - 1)
        exp = mag >> np.uint32(src.man_width)
        special = exp == src.exp_all_ones
        self.nan = special & ((mag & np.uint32(src.man_mask)) != 0)
        self.inf = special & ~self.nan
        self.normal = (exp != 0) & ~special
        # Rounding on the magnitude (E,M) as one integer lets the mantissa carry bump E.
        if drop == 0:
            r = mag
        elif s.rounding == "rne":
            r = (mag + np.uint32((1 << (drop - 1)) - 1) + ((mag >> np.uint32(drop)) & np.uint32(1))) >> np.uint32(drop)
        elif s.rounding == "rz":
            r = mag >> np.uint32(drop)
        else:
            r = (mag + stochastic_bits(mag.size, s.seed, drop, start)) >> np.uint32(drop)
        self.exp = (r >> np.uint32(m)).astype(np.int32)
        self.man = r & np.uint32((1 << m) - 1)
        self.negative = (self.sign == 1) & (mag != 0) & ~self.nan

    def max_exp(self, s: Settings) -> int:
        """Largest rounded exponent among values that will be stored as finite nonzero."""
        ok = self.normal if s.sign else self.normal & (self.sign == 0)
        if not ok.any():
            return 0
        return min(int(self.exp[ok].max()), s.src.max_finite_exp)


def _check_strict(r: _Rounded, s: Settings, start: int = 0) -> None:
    if not s.sign and r.negative.any():
        i = start + int(np.flatnonzero(r.negative)[0])
        raise FormatError(f"negative value at index {i} but the sign is elided (--no-sign)")
    if not s.specials and (r.nan | r.inf).any():
        i = start + int(np.flatnonzero(r.nan | r.inf)[0])
        raise FormatError(f"Inf/NaN at index {i} but specials are off")


def resolve(x, s: Settings, chunk: int = 1 << 18) -> Settings:
    """Settings with ``exp_base='auto'`` replaced by the tensor's base (format.md 2)."""
    if s.exp_base != "auto":
        return s
    bits = as_bits(x, s.source)
    emax = max((_Rounded(bits[i:i + chunk], s, i).max_exp(s) for i in range(0, bits.size, chunk)), default=0)
    return s.with_(exp_base=max(0, emax - s.max_code))


def _auto_base(r: _Rounded, s: Settings) -> int:
    return max(0, r.max_exp(s) - s.max_code)


def to_fields(bits: np.ndarray, s: Settings, strict: bool = True, start: int = 0) -> tuple[Fields, Settings]:
    """Fields of every value and the resolved settings.

    ``strict`` (model and CLI) raises :class:`FormatError` on a negative value
    with the sign elided, or Inf/NaN with specials off.  With ``strict=False``
    the hardware's behaviour is modelled instead: such values are written as
    +0 (negatives, NaN) or saturated (Inf) and counted in sticky flags.
    ``start`` is the tensor index of ``bits[0]`` (for the stochastic source
    and error messages) when a tensor is processed in pieces.
    """
    r = _Rounded(bits, s, start)
    if strict:
        _check_strict(r, s, start)
    if s.exp_base == "auto":
        s = s.with_(exp_base=_auto_base(r, s))
    m = s.man_bits
    cmax = s.max_finite_code()
    code = r.exp - np.int32(s.exp_base)
    below = r.normal & (code < 1)
    above = r.normal & (code > cmax)
    code = np.where(r.normal & ~below, np.minimum(code, cmax), 0).astype(np.uint32)
    man = np.where(r.normal & ~below, r.man, np.uint32(0))
    man = np.where(above, np.uint32((1 << m) - 1), man)
    sign = r.sign.copy()
    special_flag = 0
    if s.specials:
        code[r.nan | r.inf] = s.top_code
        if m >= 1:
            man[r.nan] = 1 << (m - 1)
            sign[r.nan] = 0
        else:  # no mantissa bit to tell Inf from NaN: the top code is NaN (format.md 3.4)
            sign[r.nan | r.inf] = 0
    else:
        special_flag = int((r.nan | r.inf).sum())
        code[r.inf] = cmax
        man[r.inf] = (1 << m) - 1
        sign[r.nan] = 0
    neg_flag = 0
    if not s.sign:
        neg = r.negative
        neg_flag = int(neg.sum())
        code[neg] = 0
        man[neg] = 0
        sign[:] = 0
    return Fields(sign, code, man, neg_flag, special_flag), s


def from_fields(f: Fields, s: Settings) -> np.ndarray:
    """Source bit patterns (uint32) rebuilt from fields (format.md 3.5)."""
    src = s.src
    m, drop = s.man_bits, src.man_width - s.man_bits
    out = np.where(f.code == 0, np.uint32(0),
                   ((f.code.astype(np.uint32) + np.uint32(s.exp_base)) << np.uint32(src.man_width))
                   | (f.man.astype(np.uint32) << np.uint32(drop)))
    if s.specials:
        top = f.code == s.top_code
        special = np.uint32(src.exp_all_ones << src.man_width)
        if m >= 1:
            out = np.where(top, np.where(f.man == 0, special, np.uint32(src.qnan)), out)
        else:
            out = np.where(top, np.uint32(src.qnan), out)
        is_nan = top & ((f.man != 0) | (m == 0))
    else:
        is_nan = np.zeros(out.shape, bool)
    if s.sign:
        out = out | np.where(is_nan, np.uint32(0), f.sign.astype(np.uint32) << np.uint32(src.width - 1))
    return out.astype(np.uint32)


def quantize(x, s: Settings, strict: bool = True):
    """The values exactly as the hardware reconstructs them, in ``x``'s dtype and shape."""
    x = np.asarray(x)
    fields, s = to_fields(as_bits(x, s.source), s, strict=strict)
    out = from_fields(fields, s)
    return out.astype(SOURCES[s.source].dtype).view(x.dtype).reshape(x.shape)
