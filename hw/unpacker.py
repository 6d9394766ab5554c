"""The unpacker: a tensor's DRAM image (W-bit words) in, N reconstructed source values per beat out.

Stages (each a ``wiring.Component``, joined with ``wiring.connect``):

* input: the words go into a FIFO; with each tensor's first word its ``cfg``
  goes into a descriptor FIFO;
* :class:`sfp.hw.unpack_seq.BeatSequencer`: the plain layout's arithmetic,
  one command per beat;
* :class:`sfp.hw.wordunpack.RecordCutter`: the word ring, beat issue and
  the stream checks (length errors, refusal), one status entry per tensor;
* :class:`sfp.hw.recsplit.RecordSplitter`: funnel shift, split tree and
  field extraction, pipelined;
* :class:`sfp.hw.dequant.DequantLanes`: N lanes, pipelined;
* the output FIFO (``m_axis``), in which every issued beat has a reserved
  slot (credits), so the datapath never stalls.

Built with ``HwParams.gecko`` the pipeline is the same with one extra stage:
:class:`sfp.hw.gecko_parse.GeckoParser`, inside the cutter, parses the group
headers and Rice codes of Gecko-coded blocks from the cutter's word ring and
tells the cutter where each beat's sign/mantissa records are; their exponent
codes travel with the beat into the splitter.  The block index comes on the
extra ``s_len`` port; a small route queue hands each tensor's entries to the
Gecko stage or drops them (``cfg.gecko = 0``, refused).
The output is exactly ``sfp.model.stream.unpack_stream`` (for valid images:
``sfp.model.quantize.quantize(x, settings, strict=False)``).
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .dequant import DequantLanes
from .packer import value_beat_layout
from .params import HwParams, config_layout
from .recsplit import RecordSplitter
from .status import status_layout
from .unpack_seq import BeatSequencer, desc_layout
from .wordpack import LutQueue, len_layout, word_layout
from .wordunpack import RecordCutter

__all__ = ["Unpacker", "unpacker_status_layout", "OUT_DEPTH"]

#: Output FIFO depth: every beat in flight holds a slot, so this bounds the rate only below
#: the pipeline's round trip (about 25 clocks at N = 8, plus the credit margin of 5).  The FIFO
#: is LUT-RAM with a registered read (:class:`sfp.hw.wordpack.LutQueue`): as a block RAM its
#: clock-to-output (about 6 ns) was the unpacker's post-route critical path (116.7 MHz).
OUT_DEPTH = 48
#: Input word FIFO depth: words (and so each tensor's cfg) are taken this far ahead of their
#: use, which gives the sequencer time to prepare the next tensor's constants.
WORD_DEPTH = 16
#: Command FIFO depth (sequencer -> cutter): how far the sequencer runs ahead.
CMD_DEPTH = 4
#: ``m_status`` FIFO depth.
STATUS_DEPTH = 8


def unpacker_status_layout() -> data.StructLayout:
    """The flags of the last finished tensor, and ``lost`` (an ``m_status`` entry dropped)."""
    return data.StructLayout({"unsupported": 1, "corrupt": 1, "length_error": 1, "lost": 1})


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
        The tensor's words, ``last`` on its final word; tensors follow one
        another.  A valid image has ``sum(L_b)`` words; any other count is
        a length error (see ``m_status``), and the unpacker still takes
        exactly the words up to ``last``.
    s_len : In(stream of {data: 32, last: 1})  (only with ``p.gecko``)
        The block index: every tensor's L_0, L_1, ... in tensor order,
        exactly the packer's ``m_len`` stream (also for tensors with
        ``cfg.gecko = 0`` and for refused ones).  A tensor has
        ``ceil(length/B)`` entries, counted from ``cfg.length`` (``last``
        is not used).
    cfg : In(config_layout())
        The tensor's settings including ``length`` (number of values),
        sampled when its first word is accepted.
    m_axis : Out(stream of {data: N source values, keep: N, last: 1})
        ``ceil(length/N)`` beats for every tensor, also a refused one or one
        in error (whose values are 0 from the error on); ``keep`` is all
        ones except on the last beat (a prefix mask); lanes outside
        ``keep`` are 0.
    m_status : Out(stream of :func:`sfp.hw.status.status_layout`)
        One entry per tensor, in order, once its last beat has been issued
        and its words consumed: ``unsupported`` (refused: zero beats),
        ``corrupt``, ``length_error``, ``values`` (= ``cfg.length``),
        ``words`` (consumed, up to ``last``).  Must be drained (tie
        ``ready`` high if unused): 4 entries wait at most.
    status : Out({unsupported, corrupt, length_error})
        Sticky flags of the last tensor whose status entry was emitted.

    Plain build, pipeline: input FIFO -> cutter (1) -> splitter
    (:func:`sfp.hw.recsplit.splitter_latency`, 16 at bf16 N = 8 W = 128)
    -> lanes (2) -> output FIFO.  Latency measured in amaranth.sim at bf16
    N = 8 W = 128: 29 clocks from an idle unit's first word handshake to
    its beat on ``m_axis`` (the tensor's cfg through the sequencer's two
    stages and the command FIFO sets it).  Throughput: one beat per clock while
    words come without gaps and ``m_axis`` is ready, across block and
    tensor boundaries (tensors of at least 3 beats; the sequencer prepares
    the next tensor's constants while the current one runs).  A length-0
    tensor is refused (no beat, a status entry).

    Gecko build: the same pipeline with the Gecko stage in the cutter;
    latency measured the same 29 clocks at bf16 N = 8 W = 128 B = 256
    (``scripts/unpacker_latency.py``); one beat per clock on gapless words
    (a slice needs all its words in the cutter's ring).
    """

    #: Output FIFO depth and the credit margin: a beat is issued only while fewer than
    #: ``OUT_DEPTH - ROOM_MARGIN`` beats are in flight or queued.  ``room`` is registered from
    #: the count of the clock before, and an issued beat is counted one clock after the
    #: decision, so at most ``OUT_DEPTH - ROOM_MARGIN + 2`` are ever held (proved by
    #: k-induction, docs/verification.md): a margin of 2 would do.  Class attributes so that a
    #: formal harness can build a deliberately broken variant.
    OUT_DEPTH = OUT_DEPTH
    ROOM_MARGIN = 5

    def __init__(self, p: HwParams):
        members = {
            "s_axis": In(stream.Signature(word_layout(p))),
            "cfg": In(config_layout()),
            "m_axis": Out(stream.Signature(value_beat_layout(p))),
            "m_status": Out(stream.Signature(status_layout())),
            "status": Out(unpacker_status_layout()),
        }
        if p.gecko:
            from .gecko_common import check_gecko_params
            check_gecko_params(p)             # ParamError: lanes 1/2/4/8, group, block % group
            members["s_len"] = In(stream.Signature(len_layout()))
        self.p = p
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.p
        layout = value_beat_layout(p)

        m.submodules.lanes = lanes = DequantLanes(p)
        out_depth = self.OUT_DEPTH
        m.submodules.ofifo = ofifo = LutQueue(layout.size, out_depth - 1)     # holds out_depth
        m.submodules.sfifo = sfifo = fifo.SyncFIFOBuffered(width=status_layout().size, depth=STATUS_DEPTH)

        # credits: beats issued and not yet read from the output FIFO
        inflight = Signal(range(out_depth + 1))
        issued = Signal()                     # a beat left the issuing stage (registered there)
        nxt_inflight = Signal(range(out_depth + 2))
        m.d.comb += nxt_inflight.eq(inflight + issued - (self.m_axis.valid & self.m_axis.ready))
        m.d.sync += inflight.eq(nxt_inflight)
        # registered, and compared with the count's current value (not its next one: the
        # add-then-compare was the critical path at 124.3 MHz); the margin of 5 covers the
        # beats decided in the clocks before they are counted
        room = Signal()
        m.d.sync += room.eq(inflight < out_depth - self.ROOM_MARGIN)

        fields, status = self._front(m, room, issued)
        wiring.connect(m, fields, lanes.i)

        m.d.comb += [
            ofifo.w_data.eq(lanes.o.payload),
            ofifo.w_en.eq(lanes.o.valid),
            self.m_axis.valid.eq(ofifo.r_rdy),
            self.m_axis.payload.eq(ofifo.r_data),
            ofifo.r_en.eq(self.m_axis.ready),
        ]
        m.d.comb += [
            sfifo.w_data.eq(status.payload),
            sfifo.w_en.eq(status.valid),
            status.ready.eq(1),               # never held up by m_status (see the class docstring)
            self.m_status.valid.eq(sfifo.r_rdy),
            self.m_status.payload.eq(sfifo.r_data),
            sfifo.r_en.eq(self.m_status.ready),
        ]
        with m.If(status.valid & ~sfifo.w_rdy):
            m.d.sync += self.status.lost.eq(1)
        with m.If(status.valid & status.ready):
            m.d.sync += [
                self.status.unsupported.eq(status.payload.unsupported),
                self.status.corrupt.eq(status.payload.corrupt),
                self.status.length_error.eq(status.payload.length_error),
            ]
        return m

    def _front(self, m: Module, room, issued):
        """Input FIFOs, sequencer, cutter (with its Gecko stage in a Gecko build) and splitter;
        returns (field beats, status entries)."""
        p = self.p
        m.submodules.wfifo = wfifo = fifo.SyncFIFOBuffered(width=p.word + 1, depth=WORD_DEPTH)
        m.submodules.dfifo = dfifo = fifo.SyncFIFOBuffered(width=desc_layout().size, depth=4)
        m.submodules.seq = seq = BeatSequencer(p)
        m.submodules.cut = cut = RecordCutter(p)
        m.submodules.split = split = RecordSplitter(p)

        sa = self.s_axis
        first = Signal(init=1)                # the next word starts a tensor
        # s_axis.ready is a flip-flop: both FIFOs have room for the word accepted in the clock
        # of the test and one more (a combinational ready fanned out to both FIFOs' enables
        # was the critical path at 117.9 MHz)
        rdy = Signal()
        room_in = (wfifo.w_level < WORD_DEPTH - 1) & (dfifo.w_level < 3)
        if p.gecko:
            rq = self._lens_router(m, cut, sa.valid & sa.ready & first)
            room_in &= rq.w_level < 3
        m.d.sync += rdy.eq(room_in)
        m.d.comb += [
            sa.ready.eq(rdy),
            wfifo.w_en.eq(sa.valid & sa.ready),
            wfifo.w_data.eq(Cat(sa.payload.data, sa.payload.last)),
            dfifo.w_en.eq(sa.valid & sa.ready & first),
            dfifo.w_data.eq(self.cfg),
        ]
        with m.If(sa.valid & sa.ready):
            m.d.sync += first.eq(sa.payload.last)
        m.d.comb += [
            seq.desc.valid.eq(dfifo.r_rdy),
            seq.desc.payload.eq(dfifo.r_data),
            dfifo.r_en.eq(seq.desc.ready),
            cut.words.valid.eq(wfifo.r_rdy),
            cut.words.payload.data.eq(wfifo.r_data[:p.word]),
            cut.words.payload.last.eq(wfifo.r_data[p.word]),
            wfifo.r_en.eq(cut.words.ready),
            cut.room.eq(room),
            issued.eq(cut.o.valid),
        ]
        m.submodules.cfifo = cfifo = fifo.SyncFIFOBuffered(width=len(seq.cmd.payload.as_value()), depth=CMD_DEPTH)
        # the sequencer's ready is a flip-flop too (room for this clock's command and one more)
        crdy = Signal()
        m.d.sync += crdy.eq(cfifo.w_level < CMD_DEPTH - 1)
        m.d.comb += [
            cfifo.w_data.eq(seq.cmd.payload),
            cfifo.w_en.eq(seq.cmd.valid & crdy),
            seq.cmd.ready.eq(crdy),
            cut.cmd.valid.eq(cfifo.r_rdy),
            cut.cmd.payload.eq(cfifo.r_data),
            cfifo.r_en.eq(cut.cmd.ready),
        ]
        wiring.connect(m, cut.o, split.i)
        return split.o, cut.status

    def _lens_router(self, m: Module, cut, first_word):
        """Gecko build: each tensor's ``ceil(length/B)`` entries of ``s_len`` go to the cutter's
        Gecko stage (Gecko on and the tensor supported) or are dropped; returns the route queue."""
        from .lane import cfg_supported

        p = self.p
        lg_b = p.block.bit_length() - 1
        # per tensor, pushed with its first word: its entry count and where they go
        rq_layout = data.StructLayout({"nblk": 33, "to_gecko": 1})
        m.submodules.route_q = rq = fifo.SyncFIFOBuffered(width=rq_layout.size, depth=4)
        new = Signal(rq_layout)
        m.d.comb += [
            new.nblk.eq((self.cfg.length + (p.block - 1)) >> lg_b),
            new.to_gecko.eq(cfg_supported(p, self.cfg) & (self.cfg.length != 0) & self.cfg.gecko),
            rq.w_en.eq(first_word),
            rq.w_data.eq(new),
        ]
        head = data.View(rq_layout, rq.r_data)
        rem = Signal(33)                      # entries left of the head tensor
        to_gecko = Signal()
        active = Signal()
        sl = self.s_len
        m.d.comb += rq.r_en.eq(~active)
        with m.If(~active & rq.r_rdy):
            m.d.sync += [rem.eq(head.nblk), to_gecko.eq(head.to_gecko), active.eq(head.nblk != 0)]
        m.d.comb += cut.lens.payload.eq(sl.payload)
        with m.If(active):
            with m.If(to_gecko):
                m.d.comb += [cut.lens.valid.eq(sl.valid), sl.ready.eq(cut.lens.ready)]
            with m.Else():
                m.d.comb += sl.ready.eq(1)
            with m.If(sl.valid & sl.ready):
                m.d.sync += rem.eq(rem - 1)
                with m.If(rem == 1):
                    m.d.sync += active.eq(0)
        return rq
