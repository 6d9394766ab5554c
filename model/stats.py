"""Footprint statistics of a tensor in a container: what it costs in DRAM and how far from the entropy limit."""

from __future__ import annotations

import numpy as np

from . import gecko
from .blocks import pack_image
from .formats import Settings
from .quantize import as_bits, to_fields

__all__ = ["entropy_bits", "footprint", "combine"]


def entropy_bits(symbols: np.ndarray) -> float:
    """Order-0 (memoryless) entropy in bits per symbol."""
    if symbols.size == 0:
        return 0.0
    counts = np.bincount(np.asarray(symbols).reshape(-1).astype(np.int64))
    p = counts[counts > 0] / symbols.size
    return max(0.0, float(-(p * np.log2(p)).sum()))   # never -0.0


def footprint(x, s: Settings) -> dict:
    """Footprint of ``x`` stored with settings ``s``.

    ``bits_per_value`` counts the whole DRAM image (block padding included,
    the file header excluded).  ``exp_entropy_bits`` is the order-0 entropy
    of the exponent codes, the limit for any memoryless exponent code;
    ``gecko_exp_bits`` is what Gecko spends per exponent (headers included)
    whether or not ``s.gecko`` is set, beside ``raw_exp_bits`` = e.
    """
    fields, r = to_fields(as_bits(x, s.source), s)
    n = fields.code.size
    words, block_words = pack_image(fields, r)
    total_bits = int(block_words.sum()) * r.word
    bpv = total_bits / n if n else 0.0
    gc = gecko.code_groups(fields.code, r.group, r.exp_bits)
    gbits = int(gc.bits.sum())
    return {
        "values": int(n),
        "settings": {"source": r.source, "man_bits": r.man_bits, "exp_bits": r.exp_bits,
                     "exp_base": int(r.exp_base), "sign": r.sign, "rounding": r.rounding,
                     "specials": r.specials, "gecko": r.gecko, "group": r.group,
                     "block": r.block, "word": r.word},
        "image_bits": total_bits,
        "bits_per_value": bpv,
        "ratio_vs_fp32": 32 / bpv if bpv else None,     # None (JSON null) for an empty tensor
        "ratio_vs_bf16": 16 / bpv if bpv else None,
        "raw_exp_bits": r.exp_bits,
        "exp_entropy_bits": entropy_bits(fields.code),
        "gecko_exp_bits": gbits / n if n else 0.0,
        "gecko_worst_exp_bits": gecko.worst_case_bits(r.exp_bits, r.group) / r.group,
        "zero_fraction": float((fields.code == 0).mean()) if n else 0.0,
    }


def combine(parts: list[dict]) -> dict:
    """Totals over several tensors: bit counts add, entropies are value-weighted."""
    n = sum(p["values"] for p in parts)
    bits = sum(p["image_bits"] for p in parts)
    bpv = bits / n if n else 0.0
    w = lambda k: sum(p[k] * p["values"] for p in parts) / n if n else 0.0
    return {
        "values": n, "image_bits": bits, "bits_per_value": bpv,
        "ratio_vs_fp32": 32 / bpv if bpv else None,
        "ratio_vs_bf16": 16 / bpv if bpv else None,
        "raw_exp_bits": w("raw_exp_bits"),
        "exp_entropy_bits": w("exp_entropy_bits"),
        "gecko_exp_bits": w("gecko_exp_bits"),
        "zero_fraction": w("zero_fraction"),
    }
