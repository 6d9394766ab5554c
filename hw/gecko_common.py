"""Shared pieces of the Gecko encoder and decoder (format.md section 5).

Parameter checks, the per-tensor settings the Gecko datapaths carry, and
the bound on one slice's bits that sizes their shifters and buffers.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import data

from .params import HwParams, ParamError

__all__ = ["SLICE", "QCAP", "check_gecko_params", "settings_layout", "slice_max_bits", "prefix_sums", "lane_mask"]

SLICE = 8        # values per slice (a constant of the format, model.gecko.SLICE)
QCAP = 8         # unary cap (model.gecko.Q)


def check_gecko_params(p: HwParams) -> None:
    """Refuse elaboration parameters the Gecko hardware does not build."""
    if p.lanes not in (1, 2, 4, 8):
        raise ParamError(f"the Gecko hardware is built for 1, 2, 4 or 8 lanes, got {p.lanes}")
    if p.group % SLICE or p.group < SLICE or p.group & (p.group - 1) or p.group > 256:
        raise ParamError(f"the Gecko hardware needs a group of 8..256 values (a power of two), got {p.group}")
    if p.block % p.group:
        raise ParamError(f"block ({p.block}) must be a multiple of the group ({p.group}) with Gecko")


def settings_layout() -> data.StructLayout:
    """The per-tensor settings the Gecko datapaths use (a subset of ``config_layout``)."""
    return data.StructLayout({"s": 1, "e": 4, "m": 5, "gecko": 1})


def slice_max_bits(p: HwParams) -> int:
    """Most bits one slice of 8 values can take (group header included), at the maxima of ``p``.

    Header e+3; exponent part at most 8*2 remainder bits + 8*9 unary bits +
    8*e exception bits (k = 2 with every value an escape; raw is 8*e); then
    8*(1+m) sign/mantissa bits.  A plain slice (8*(1+e+m)) is shorter.
    """
    e, mm = p.max_exp_bits, p.max_man_bits
    return (e + 3) + max(8 * e, SLICE * 2 + SLICE * (QCAP + 1) + SLICE * e) + SLICE * (1 + mm)


def prefix_sums(m: Module, terms, width: int, prefix: str):
    """Exclusive prefix sums of ``terms`` (unrolled adders); returns (exclusive list, total)."""
    out = []
    acc = None
    for i, t in enumerate(terms):
        s = Signal(width, name=f"{prefix}{i}")
        m.d.comb += s.eq(0 if acc is None else acc)
        out.append(s)
        acc = t if acc is None else acc + t
    tot = Signal(width, name=f"{prefix}_tot")
    m.d.comb += tot.eq(acc)
    return out, tot


def lane_mask(n, nbits: int):
    """``Cat(n > 0, n > 1, ...)``: a prefix mask of ``n`` ones."""
    return Cat(*(n > i for i in range(nbits)))
