"""The unpacker: a tensor's DRAM image (W-bit words) in, N reconstructed source values per beat out.

:class:`sfp.hw.wordunpack.WordUnpacker` cuts the records out of the words and
splits their fields; N :class:`sfp.hw.lane.Dequantizer` lanes rebuild the
source bit patterns (format.md 3.7).  The output is exactly
``sfp.model.quantize.quantize(x, settings, strict=False)``.  Built with
``HwParams.gecko``, :class:`sfp.hw.gecko_unpack.GeckoDecoder` takes the place of
the WordUnpacker: it reads the Gecko layout (format.md 5) of tensors with
``cfg.gecko = 1`` and the plain layout of the others, and needs the block
index on the extra ``s_len`` port.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .packer import value_beat_layout
from .params import HwParams, config_layout
from .wordpack import len_layout, word_layout
from .wordunpack import WordUnpacker

__all__ = ["Unpacker", "unpacker_status_layout"]


def unpacker_status_layout() -> data.StructLayout:
    return data.StructLayout({"unsupported": 1})


class Unpacker(wiring.Component):
    """Reads container images (plain, or Gecko when built) and returns the quantized values, N per clock.

    Parameters
    ----------
    p : HwParams
        The same elaboration parameters as the :class:`sfp.hw.packer.Packer`
        that wrote the images.  With ``p.gecko``: N in {1, 2, 4, 8}, B a
        multiple of G = ``p.group`` (:class:`sfp.hw.params.ParamError` otherwise).

    Ports
    -----
    s_axis : In(stream of {data: W, last: 1})
        The tensor's words (``sum(L_b)`` of them, as the packer wrote them),
        ``last`` on its final word; tensors follow one another.
    s_len : In(stream of {data: 32, last: 1})  (only with ``p.gecko``)
        The block index: every tensor's L_0, L_1, ... in tensor order,
        exactly the packer's ``m_len`` stream (also for tensors with
        ``cfg.gecko = 0`` and for refused ones).  A tensor has
        ``ceil(length/B)`` entries, counted from ``cfg.length`` (``last``
        is not used).  Entries of Gecko tensors go to the decoder, which
        takes L_b when it starts block b (coded iff L_b < plain length);
        the others are consumed and dropped.  It may run ahead of
        ``s_axis`` (a DMA engine reads the index first); the first word of
        a tensor waits while 4 earlier tensors still have entries to come.
    cfg : In(config_layout())
        The tensor's settings including ``length`` (number of values, >= 1),
        sampled when its first word is accepted.
    m_axis : Out(stream of {data: N source values, keep: N, last: 1})
        ``ceil(length/N)`` beats; ``keep`` is all ones except on the last beat
        (a prefix mask); lanes outside ``keep`` are 0.
    status : Out({unsupported})
        Sticky: the cfg asked for more than the hardware has (or Gecko when
        not built); the tensor's words were consumed and dropped (and, with
        ``p.gecko``, its ``ceil(length/B)`` ``s_len`` entries), no beat
        emitted.  Cleared when the next tensor's cfg is sampled.

    Pipeline: the word ring, (1) decode/funnel shift, (2) record split and
    fields, registered; N combinational Dequantizers into a 2-entry output
    FIFO (registered outputs).  Latency: a beat is on ``m_axis`` 4 cycles
    after the handshake of its last word.

    Throughput: one beat per clock whenever the words come without gaps and
    ``m_axis`` is ready, with no bubble at block or tensor boundaries (see
    :class:`WordUnpacker`; tensors of at least 4 words).  The output FIFO
    is written one beat per cycle and drained one per cycle, so it holds at
    most one beat and its ``w_rdy`` (from its registered level, so there is
    no combinational path from ``m_axis.ready`` to ``s_axis.ready``) stays high.

    With ``p.gecko``: in front of the :class:`GeckoDecoder`, a refusal
    stage (a refused tensor's words are taken and dropped, combinationally
    on ``s_axis``) and the ``s_len`` router: a 4-entry queue of (entries,
    to decoder or dropped) pushed with each tensor's first word, one idle
    clock per tensor to load it.  Latency: a tensor's first beat is on
    ``m_axis`` 7 clocks after its first word is accepted when its first
    L_b is already waiting on ``s_len`` (decoder 3, router and L_b FIFO
    3, output FIFO 1).  Throughput: one beat per clock with gapless words,
    ``s_len`` entries available and ``m_axis`` ready, also across blocks,
    tensors and Gecko on/off (measured 1.0 beats/clock on long tensors at
    N = 8, B = 256/64 and N = 4, B = 32/128).  ``s_axis.ready`` also
    depends combinationally on ``cfg`` on a tensor's first word (refusal).
    """

    def __init__(self, p: HwParams):
        members = {
            "s_axis": In(stream.Signature(word_layout(p))),
            "cfg": In(config_layout()),
            "m_axis": Out(stream.Signature(value_beat_layout(p))),
            "status": Out(unpacker_status_layout()),
        }
        if p.gecko:
            from .gecko_common import check_gecko_params
            check_gecko_params(p)             # ParamError: lanes 1/2/4/8, group, block % group
            members["s_len"] = In(stream.Signature(len_layout()))
        self.p = p
        super().__init__(members)

    def elaborate(self, platform):
        from .lane import Dequantizer, cfg_supported

        m = Module()
        p = self.p
        n = p.lanes
        layout = value_beat_layout(p)

        if p.gecko:
            wu = self._gecko_front(m)
        else:
            m.submodules.words = wu = WordUnpacker(p)
            wiring.connect(m, wiring.flipped(self.s_axis), wu.i)
            m.d.comb += [
                wu.cfg.eq(self.cfg),
                wu.cfg_ok.eq(cfg_supported(p, self.cfg)),
                self.status.unsupported.eq(wu.unsupported),
            ]

        m.submodules.ofifo = ofifo = fifo.SyncFIFO(width=layout.size, depth=2)
        out = data.View(layout, ofifo.w_data)
        for j in range(n):
            dq = Dequantizer(p)
            m.submodules[f"dq{j}"] = dq
            m.d.comb += [
                dq.fields.eq(wu.o.payload.fields[j]),
                dq.cfg.eq(wu.o.payload.cfg),
                out.data[j].eq(dq.value & wu.o.payload.keep[j].replicate(p.src.width)),
            ]
        m.d.comb += [
            out.keep.eq(wu.o.payload.keep),
            out.last.eq(wu.o.payload.last),
            ofifo.w_en.eq(wu.o.valid),
            wu.o.ready.eq(ofifo.w_rdy),
            self.m_axis.valid.eq(ofifo.r_rdy),
            self.m_axis.payload.eq(ofifo.r_data),
            ofifo.r_en.eq(self.m_axis.ready),
        ]
        return m

    def _gecko_front(self, m: Module):
        """The :class:`GeckoDecoder`, with the refusal and the block-index routing in front of it."""
        from .gecko_unpack import GeckoDecoder
        from .lane import cfg_supported

        p = self.p
        lg_b = p.block.bit_length() - 1
        m.submodules.words = dec = GeckoDecoder(p)
        m.d.comb += dec.cfg.eq(self.cfg)

        # -- words: pass a supported tensor to the decoder, drop a refused one ----
        sa = self.s_axis
        in_tensor = Signal()                  # a tensor's first word has been accepted
        dropping = Signal()                   # ... and it is refused
        first = ~in_tensor
        ok = Signal()
        m.d.comb += ok.eq(cfg_supported(p, self.cfg))
        drop_now = Mux(first, ~ok, dropping)

        # Per tensor (pushed with its first word): how many block-index
        # entries it has on s_len, and whether they go to the decoder
        # (Gecko on and supported) or are dropped.
        m.submodules.route_q = rq = fifo.SyncFIFO(width=34, depth=4)
        nblk = Signal(33)
        m.d.comb += nblk.eq((self.cfg.length + (p.block - 1)) >> lg_b)
        hold = first & ~rq.w_rdy              # no room to note a new tensor
        m.d.comb += [
            dec.i.payload.eq(sa.payload),
            dec.i.valid.eq(sa.valid & ~drop_now & ~hold),
            sa.ready.eq(~hold & (drop_now | dec.i.ready)),
        ]
        fire = sa.valid & sa.ready
        m.d.comb += [
            rq.w_en.eq(fire & first),
            rq.w_data.eq(Cat(nblk, ok & self.cfg.gecko)),
        ]
        with m.If(fire):
            m.d.sync += in_tensor.eq(~sa.payload.last)
            with m.If(first):
                m.d.sync += [dropping.eq(~ok), self.status.unsupported.eq(~ok)]

        # -- block index: route each tensor's entries to the decoder or drop them --
        rem = Signal(33)                      # entries left of the head tensor
        to_dec = Signal()
        active = Signal()
        sl = self.s_len
        m.d.comb += rq.r_en.eq(~active)
        with m.If(~active & rq.r_rdy):
            m.d.sync += [rem.eq(rq.r_data[:33]), to_dec.eq(rq.r_data[33]), active.eq(rq.r_data[:33] != 0)]
        m.d.comb += dec.lens.payload.eq(sl.payload)
        with m.If(active):
            with m.If(to_dec):
                m.d.comb += [dec.lens.valid.eq(sl.valid), sl.ready.eq(dec.lens.ready)]
            with m.Else():
                m.d.comb += sl.ready.eq(1)
            with m.If(sl.valid & sl.ready):
                m.d.sync += rem.eq(rem - 1)
                with m.If(rem == 1):
                    m.d.sync += active.eq(0)
        return dec
