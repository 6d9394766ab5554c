"""OCP Microscaling (MX) formats, v1.0: the fixed-container baselines (MXFP8/6/4).

A tensor is cut into blocks of :data:`BLOCK` = 32 consecutive values (row-major
order of the flattened tensor; the last block may be shorter).  Each block
stores one shared scale ``X`` as E8M0 (8 bits, ``2^(X)``, byte ``X + 127``,
0xFF = NaN) and 32 elements in a small float type.  Rule implemented (OCP MX
specification v1.0, section 6.3, "quantize to MX"):

* shared exponent ``X = floor(log2(amax)) - emax_elem``, where ``amax`` is
  the block's largest magnitude and ``emax_elem`` the exponent of the
  element type's largest normal (e4m3: 8, e5m2: 15, e3m2: 4, e2m3: 2,
  e2m1: 2); clamped to the E8M0 range [-127, 127].  A block of zeros gets
  ``X = -127``; a block holding Inf or NaN gets the NaN scale (0xFF) and
  NaN elements (the spec's rule for non-finite inputs).
* each element ``P_i = V_i / 2^X`` (exact: a power-of-two scaling, done in
  float64) is cast to the element type with round-to-nearest-even and
  **saturation**: a magnitude above the element's largest normal becomes that
  normal (``amax / 2^X`` can reach ``2^(emax_elem+1)``, beyond it).
  Subnormal elements are kept.
* the decoded value is ``P_i * 2^X``.

Footprint: ``n * element_bits + ceil(n / 32) * 8`` bits (scales included).
Element casts use ``ml_dtypes``; ``tests/test_mx.py`` checks the whole
quantizer against an independent exact (fractions) reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["BLOCK", "MXFormat", "MX_FORMATS", "mx_quantize", "mx_bits"]

BLOCK = 32


@dataclass(frozen=True)
class MXFormat:
    name: str
    exp_bits: int
    man_bits: int
    emax: int          # exponent of the largest normal
    max_normal: float
    dtype_name: str    # ml_dtypes type

    @property
    def element_bits(self) -> int:
        return 1 + self.exp_bits + self.man_bits

    @property
    def dtype(self):
        import ml_dtypes
        return getattr(ml_dtypes, self.dtype_name)


MX_FORMATS = {f.name: f for f in (
    MXFormat("mxfp8_e4m3", 4, 3, 8, 448.0, "float8_e4m3fn"),
    MXFormat("mxfp8_e5m2", 5, 2, 15, 57344.0, "float8_e5m2"),
    MXFormat("mxfp6_e3m2", 3, 2, 4, 28.0, "float6_e3m2fn"),
    MXFormat("mxfp6_e2m3", 2, 3, 2, 7.5, "float6_e2m3fn"),
    MXFormat("mxfp4_e2m1", 2, 1, 2, 6.0, "float4_e2m1fn"),
)}


def _fmt(fmt) -> MXFormat:
    if isinstance(fmt, MXFormat):
        return fmt
    try:
        return MX_FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown MX format {fmt!r} (one of {', '.join(MX_FORMATS)})") from None


def mx_quantize(x, fmt) -> tuple[np.ndarray, np.ndarray]:
    """``(values, scales)``: ``x`` (float32 array) through MX format ``fmt``.

    ``values``: float32, the decoded tensor, same shape as ``x``; ``scales``:
    uint8 E8M0 bytes, one per block of 32.
    """
    f = _fmt(fmt)
    x = np.asarray(x, dtype=np.float32)
    flat = x.reshape(-1).astype(np.float64)
    n = flat.size
    nb = -(-n // BLOCK)
    pad = np.zeros(nb * BLOCK)
    pad[:n] = flat
    blocks = pad.reshape(nb, BLOCK)
    finite = np.isfinite(blocks).all(axis=1)
    amax = np.where(np.isfinite(blocks), np.abs(blocks), 0).max(axis=1)
    # floor(log2(amax)), exactly: frexp gives amax = f * 2^k with f in [0.5, 1)
    fl = np.frexp(np.where(amax > 0, amax, 1.0))[1].astype(np.int64) - 1
    X = np.where(amax > 0, fl - f.emax, -127)
    X = np.clip(X, -127, 127)
    scaled = blocks / np.exp2(X.astype(np.float64))[:, None]
    scaled = np.clip(scaled, -f.max_normal, f.max_normal)
    elem = np.where(finite[:, None], scaled, 0.0).astype(f.dtype).astype(np.float64)
    out = elem * np.exp2(X.astype(np.float64))[:, None]
    out[~finite] = np.nan
    scales = np.where(finite, X + 127, 0xFF).astype(np.uint8)
    return out.reshape(-1)[:n].astype(np.float32).reshape(x.shape), scales


def mx_bits(n: int, fmt) -> int:
    """Stored bits of an ``n``-value tensor in MX format ``fmt`` (elements + one 8-bit scale per block)."""
    f = _fmt(fmt)
    return n * f.element_bits + math.ceil(n / BLOCK) * 8
