"""The unpacker's lanes: N values' container fields -> source bit patterns, two register stages.

:class:`DequantLanes` is :class:`sfp.hw.lane.Dequantizer` (format.md 3.7)
for N lanes, cut for a 200 MHz clock: the per-tensor constants it needs
(``exp_base``, ``d = M_w - m``, the top code, ...) were computed once per
tensor by the :class:`sfp.hw.unpack_seq.BeatSequencer` and travel with the
beat, so each lane's path is only

* stage A: ``E = code + exp_base`` (a 9-bit carry chain), ``man << d``
  (one multiplexer level), ``code == 0``, ``code == top``, ``man != 0``;
* stage B: the output multiplexer (NaN / Inf / finite / zero) and the sign.

Bit for bit the same function as the combinational ``Dequantizer``
(``sfp.model.quantize.from_fields``), which the tests check.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .packer import value_beat_layout
from .params import HwParams
from .recsplit import field_beat_layout

__all__ = ["DequantLanes", "DEQUANT_LATENCY"]

DEQUANT_LATENCY = 2


class DequantLanes(wiring.Component):
    """N Dequantizers in two register stages; latency 2, one beat per clock, no stall.

    Ports: ``i: In(stream of field_beat_layout, always ready)``,
    ``o: Out(stream of value_beat_layout, always ready)``: ``data[j]`` is 0
    for lanes outside ``keep`` (their fields are 0).
    """

    def __init__(self, p: HwParams):
        self.p = p
        super().__init__({
            "i": In(stream.Signature(field_beat_layout(p), always_ready=True)),
            "o": Out(stream.Signature(value_beat_layout(p), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        src = p.src
        mw, w = src.man_width, src.width
        i = self.i.payload
        k = i.k
        a_valid = Signal()
        a_keep = Signal(p.lanes)
        a_last = Signal()
        m.d.sync += [a_valid.eq(self.i.valid), a_keep.eq(i.keep), a_last.eq(i.last),
                     self.o.valid.eq(a_valid), self.o.payload.keep.eq(a_keep), self.o.payload.last.eq(a_last)]
        for j in range(p.lanes):
            f = i.fields[j]
            exp9 = Signal(9, name=f"a_exp{j}")
            mant = Signal(mw, name=f"a_man{j}")
            czero = Signal(name=f"a_czero{j}")
            top = Signal(name=f"a_top{j}")
            inf = Signal(name=f"a_inf{j}")
            sign = Signal(name=f"a_sign{j}")
            m.d.sync += [
                exp9.eq(f.code + k.base),
                mant.eq((f.man << k.d)[:mw]),
                czero.eq(f.code == 0),
                # C = 0 is +-0 before anything else (format.md 3.7); this also keeps the zero
                # beats of a refused tensor zero when its junk exp_bits makes `top` 0
                top.eq(k.specials & (f.code == k.top) & (f.code != 0)),
                inf.eq(k.m_ge1 & ~f.man.any()),
                sign.eq(k.sign & f.sign),
            ]
            out = self.o.payload.data[j]
            finite = Cat(mant, exp9)[:w]          # exp9 bit 8 (a corrupt code) lands on the sign bit, as in the model
            with m.If(top & ~inf):
                m.d.sync += out.eq(src.qnan)
            with m.Elif(top):
                m.d.sync += out.eq((src.exp_all_ones << mw) | (sign << (w - 1)))
            with m.Else():
                m.d.sync += out.eq(Mux(czero, 0, finite) | (sign << (w - 1)))
        return m
