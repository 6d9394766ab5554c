"""The unpacker's record split: a beat's two words in, N records' fields out, pipelined.

:class:`RecordSplitter` is a free-running pipeline (no stall: the unit that
issues beats holds a slot of the output FIFO for each, see
:mod:`sfp.hw.pipeline`) of three parts, each cut into register stages of
one 4-to-1 multiplexer level (2 shift bits):

1. funnel: the beat's ``N*Vmax`` bits ``= {w1, w0} >> off``;
2. split tree (the mirror of the packer's concat tree): level by level a
   chunk of k records becomes its low half (delayed) and its high half
   ``>> (k/2)*v`` (``v`` is a per-tensor constant that travels with the beat);
3. fields: ``man = rec & (2^m - 1)``, ``code = (rec >> m) & (2^e - 1)``,
   ``sign = bit m+e`` (when stored).  In a Gecko build a coded beat's
   records are sign/mantissa records (the beat's ``k.v = s + m``, ``k.me = m``)
   and its ``codes`` (decoded by :class:`sfp.hw.gecko_parse.GeckoParser`,
   delayed alongside) take the code field's place.

Lanes beyond ``keep`` and every lane of a ``zero`` beat come out as zero fields.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import HwParams, fields_layout
from .pipeline import delay, shift_right_stages, shift_stage_count
from .unpack_seq import tensor_consts_layout
from .wordunpack import window_beat_layout

__all__ = ["RecordSplitter", "field_beat_layout", "splitter_latency"]


def field_beat_layout(p: HwParams) -> data.StructLayout:
    """N values' container fields with the beat's sideband."""
    return data.StructLayout({
        "fields": data.ArrayLayout(fields_layout(p), p.lanes),
        "keep": p.lanes,
        "last": 1,
        "zero": 1,
        "k": tensor_consts_layout(p),
    })


def _bits(x: int) -> int:
    return max(x, 1).bit_length()


def splitter_latency(p: HwParams) -> int:
    """Clocks from a beat on ``i`` to its fields on ``o``."""
    lat = shift_stage_count(_bits(p.word - 1))
    lat += shift_stage_count(_bits(p.max_value_bits)) * (p.lanes.bit_length() - 1)
    lat += max(shift_stage_count(_bits(p.max_man_bits)), shift_stage_count(_bits(p.max_value_bits - 1)))
    return lat + 1                                        # + the masking register


class RecordSplitter(wiring.Component):
    """Beat window -> N records' fields; latency :func:`splitter_latency`, one beat per clock.

    Ports: ``i: In(stream of window_beat_layout, always ready)``,
    ``o: Out(stream of field_beat_layout, always ready)``.
    """

    def __init__(self, p: HwParams):
        self.p = p
        super().__init__({
            "i": In(stream.Signature(window_beat_layout(p), always_ready=True)),
            "o": Out(stream.Signature(field_beat_layout(p), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        N, W, vmax = p.lanes, p.word, p.max_value_bits
        ib = self.i.payload
        # a Gecko build's coded beats carry their exponent codes beside the records
        gk = {"coded": 1, "codes": data.ArrayLayout(p.max_exp_bits, N)} if p.gecko else {}
        side = Signal(data.StructLayout({"valid": 1, "keep": N, "last": 1, "zero": 1, "k": tensor_consts_layout(p), **gk}))
        m.d.comb += [side.valid.eq(self.i.valid), side.keep.eq(ib.keep), side.last.eq(ib.last),
                     side.zero.eq(ib.zero), side.k.eq(ib.k)]
        if p.gecko:
            m.d.comb += [side.coded.eq(ib.coded), side.codes.eq(ib.codes)]

        # 1. funnel
        off = Signal(_bits(W - 1))
        m.d.comb += off.eq(ib.off)
        raw = shift_right_stages(m, ib.win, off, N * vmax, name="fun")
        side = delay(m, side, shift_stage_count(len(off)), "fun_side")

        # 2. split tree
        vbits = _bits(vmax)
        chunks = [raw]
        k = N
        level = 0
        while k > 1:
            h = k // 2
            v = Signal(vbits, name=f"split{level}_v")
            m.d.comb += v.eq(side.k.v)
            lat = shift_stage_count(vbits)
            nxt = []
            for ci, ch in enumerate(chunks):
                lo = delay(m, ch[:h * vmax], lat, f"split{level}_{ci}_lo")
                hi = shift_right_stages(m, ch, v, h * vmax, unit=h, name=f"split{level}_{ci}_hi")
                nxt += [lo, hi]
            chunks = nxt
            side = delay(m, side, lat, f"split{level}_side")
            k = h
            level += 1
        recs = [ch[:vmax] for ch in chunks]

        # 3. fields
        mb = _bits(p.max_man_bits)
        sb = _bits(vmax - 1)
        lat_m, lat_s = shift_stage_count(mb), shift_stage_count(sb)
        lat = max(lat_m, lat_s)
        mamt = Signal(mb)
        samt = Signal(sb)
        m.d.comb += [mamt.eq(side.k.m), samt.eq(side.k.me)]
        codes, mans, signs = [], [], []
        for j, rec in enumerate(recs):
            codes.append(delay(m, shift_right_stages(m, rec, mamt, p.max_exp_bits, name=f"code{j}"), lat - lat_m, f"code{j}_d"))
            signs.append(delay(m, shift_right_stages(m, rec, samt, 1, name=f"sign{j}"), lat - lat_s, f"sign{j}_d"))
            mans.append(delay(m, rec[:max(p.max_man_bits, 1)], lat, f"man{j}_d"))
        side = delay(m, side, lat, "fld_side")

        o = self.o
        k = side.k
        mmask, emask = k.mmask, k.top                         # 2^m - 1, 2^e - 1
        m.d.sync += [o.valid.eq(side.valid), o.payload.keep.eq(side.keep), o.payload.last.eq(side.last),
                     o.payload.zero.eq(side.zero), o.payload.k.eq(side.k)]
        for j in range(N):
            on = side.keep[j] & ~side.zero
            f = o.payload.fields[j]
            code = Mux(side.coded, side.codes[j], codes[j]) if p.gecko else codes[j]
            m.d.sync += [
                f.man.eq(mans[j] & mmask & on.replicate(len(f.man))),
                f.code.eq(code & emask & on.replicate(len(f.code))),
                f.sign.eq(signs[j][0] & k.sign & on),
            ]
        return m
