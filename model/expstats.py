"""Exponent statistics of a tensor as the packer sees it (the golden model of ``hw/expstats.py``).

What the hardware reports for each tensor it stores, computed here bit for
bit (``tests/test_expstats.py`` compares the two in simulation):

* ``emax`` / ``emin``: the largest and the smallest biased source exponent
  among the tensor's *normal* values (exponent field neither 0 nor all
  ones: zeros, subnormals, Inf and NaN are not counted); 0 / 0 if there is
  no normal value.
* ``hist``: :data:`NBINS` counts of normal values by exponent band,
  bin ``k`` = biased exponent ``E >> (E_w - 3)`` (8 bands of 32 exponents
  for bf16 and fp32).
* ``saturated``: stored values (normal, and not a negative value whose sign
  is elided, which is stored as +0) whose rounded exponent lies above the
  window: ``E' - exp_base > min(cmax, 254 - exp_base)``, clamped to the
  largest finite code (format.md 3.5); ``flushed``: those whose rounded
  exponent is below it, ``E' - exp_base < 1``, written as zero.  ``E'`` is the
  exponent after the mantissa is rounded to ``man_bits`` (rne or rz: a
  carry bumps it).  With stochastic rounding the statistics use the
  unrounded exponent (``E' = E``): the counting tap sits before the
  random source; the counts may then differ from the stored result by the
  values a random carry moves across an edge.
* ``values``: number of values in the tensor.

``exp_base`` must be resolved (an integer): the hardware gets it on ``cfg``.
"""

from __future__ import annotations

import numpy as np

from .formats import Settings
from .quantize import as_bits

__all__ = ["NBINS", "expstats"]

NBINS = 8


def expstats(x, s: Settings) -> dict:
    """The statistics of tensor ``x`` (values or bit patterns of ``s.source``) stored with ``s``."""
    if s.exp_base == "auto":
        raise ValueError("expstats: exp_base must be resolved (the hardware gets an integer)")
    src = s.src
    bits = as_bits(x, s.source).astype(np.int64).reshape(-1)
    sign = (bits >> (src.width - 1)) & 1
    mag = bits & (src.sign_mask - 1)
    E = mag >> src.man_width
    normal = (E != 0) & (E != src.exp_all_ones)
    drop = src.man_width - s.man_bits
    if drop and s.rounding == "rne":
        inc = ((1 << (drop - 1)) - 1) + ((mag >> drop) & 1)
    else:                                   # rz, stochastic (unrounded), or no bit dropped
        inc = 0
    Ep = (mag + inc) >> src.man_width
    cmax = (1 << s.exp_bits) - (2 if s.specials else 1)
    cfin = min(cmax, src.max_finite_exp - int(s.exp_base))
    stored = normal & ((sign == 0) | bool(s.sign))
    c = Ep - int(s.exp_base)
    En = E[normal]
    hist = np.bincount(En >> (src.exp_width - 3), minlength=NBINS) if En.size else np.zeros(NBINS, np.int64)
    return {
        "values": int(bits.size),
        "emax": int(En.max()) if En.size else 0,
        "emin": int(En.min()) if En.size else 0,
        "hist": [int(v) for v in hist],
        "saturated": int((stored & (c > cfin)).sum()),
        "flushed": int((stored & (c < 1)).sum()),
    }
