"""The packer: N source values per beat in, the tensor's DRAM image (W-bit words) out.

One back end, built from stages that are each a :class:`wiring.Component`
with stream ports, joined with :func:`wiring.connect`:

``s_axis`` -> :class:`PackerFrontEnd` (refusal, per-tensor constants,
random source, the N quantizer lanes, format.md 3) -> :class:`RecordFormer`
(``S<<(e+m) | C<<m | Q``, format.md 4.2) -> :class:`sfp.hw.wordpack.RecordConcat`
-> :class:`sfp.hw.wordpack.BitAccumulator` (words, block padding and lengths,
format.md 4.1, 4.3) -> ``m_axis``, ``m_len``.

Every stage is free-running (registers with no enable, ``always_ready``
streams between them); one :class:`sfp.hw.wordpack.CreditGate` at the
input admits a beat only when the output queues have room for everything
in flight, so back-pressure never has to reach into the pipeline.

Built with ``HwParams.gecko`` the same front end and record former feed
:class:`sfp.hw.gecko_stage.GeckoWordPacker`: a queue, the one extra stage
:class:`sfp.hw.gecko_stage.GeckoStage` (block buffer in block RAM, group
analysis, plain or coded per block, a coded row formed as one chunk of
bits), a :class:`sfp.hw.wordpack.RecordConcat` of 8 records for the plain
rows, and the same :class:`sfp.hw.wordpack.BitAccumulator`, built for
chunks wider than a word (up to K words a clock).  A plain build contains
none of it.

Both builds emit one :func:`sfp.hw.status.status_layout` entry per tensor on
``m_status`` (:class:`StatusQueue`).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import HwParams, config_layout, fields_layout
from .status import status_layout
from .wordpack import (BitAccumulator, CreditGate, Delays, LutQueue, RecordConcat, shift_amount, delay, len_layout,
                       queue_depth, record_beat_layout, word_layout)

__all__ = ["Packer", "PackerFrontEnd", "RecordFormer", "StatusQueue", "value_beat_layout",
           "packer_status_layout", "field_beat_layout"]


def value_beat_layout(p: HwParams) -> data.StructLayout:
    """N source values per beat: ``keep`` is a lane-valid prefix mask, read on the last beat only."""
    return data.StructLayout({
        "data": data.ArrayLayout(p.src.width, p.lanes),
        "keep": p.lanes,
        "last": 1,
    })


def packer_status_layout() -> data.StructLayout:
    """The sticky flags of the ``status`` port (kept beside ``m_status`` for simple users)."""
    return data.StructLayout({"negative": 1, "special": 1, "unsupported": 1, "lost": 1})


def field_beat_layout(p: HwParams) -> data.StructLayout:
    """One beat out of :class:`PackerFrontEnd`: the lanes' fields and the beat's bookkeeping."""
    n, vmax = p.lanes, p.max_value_bits
    return data.StructLayout({
        "fields": data.ArrayLayout(fields_layout(p), n),   # lanes >= count are +0 (zero fields)
        "count": range(n + 1),        # values in the beat (< N only on a tensor's last beat)
        "first": 1,                   # the tensor's first beat
        "last": 1,                    # the tensor's last beat
        "flush": 1,                   # the block's last beat
        "drop": 1,                    # the tensor is refused: nothing is written for it
        "negative": n,                # per lane: negative met with the sign elided
        "special": n,                 # per lane: Inf/NaN met with specials off
        "v": range(vmax + 1),         # record width s + e + m
        "camt": range(p.max_man_bits + 1),   # m: the code's position in the record
        "samt": range(vmax),          # m + e: the sign's position
        "cfg": config_layout(),       # the tensor's settings
    })


class PackerFrontEnd(wiring.Component):
    """Refusal, per-tensor constants, random source and the N quantizer lanes, pipelined.

    Ports
    -----
    s_axis : In(stream of :func:`value_beat_layout`)
        ``s_axis.ready`` is the ``accept`` input (the caller's credit gate).
    cfg : In(config_layout())
        Sampled with a tensor's first beat.
    accept : In(1)
        Beats may be taken (a register of the caller's).
    o : Out(stream of :func:`field_beat_layout`, always ready)
        The beat ``latency`` clocks after it was accepted.
    status : Out(packer_status_layout())
        Sticky flags of the tensor at the output (replaced by the next tensor's first beat).

    Pipeline (no enable; every stage register is loaded every clock)
    ----------------------------------------------------------------
    0. input register: the beat, ``cfg`` (read on a first beat), first/last.
    1. the tensor's settings (``cfg`` of its first beat, held), valid-lane
       count, block end; lanes beyond the count are zeroed (+0 quantizes to
       a zero record and raises no flag).
    2-5. the cfg decoder (:class:`sfp.hw.lane.LaneConfig`, pipelined: 4
       stages), the refusal test and hold (2, 3), the record constants (2),
       the random source (:class:`sfp.hw.prng.StochasticPipe`, 2, 3).
    6-10. N :class:`sfp.hw.lane.Quantizer` lanes, pipelined (5 stages; 4
       without stochastic rounding).

    Latency: 10 clocks (9 without stochastic rounding).  Throughput: one beat per clock.
    """

    def __init__(self, p: HwParams):
        from .lane import DECODE_LATENCY, quantizer_latency
        self.p = p
        self.latency = 1 + DECODE_LATENCY + quantizer_latency(p)
        super().__init__({
            "s_axis": In(stream.Signature(value_beat_layout(p))),
            "cfg": In(config_layout()),
            "accept": In(1),
            "o": Out(stream.Signature(field_beat_layout(p), always_ready=True)),
            "status": Out(packer_status_layout()),
        })

    def elaborate(self, platform):
        from .lane import DECODE_LATENCY, LaneConfig, Quantizer, cfg_checks, quantizer_latency
        from .prng import StochasticPipe

        m = Module()
        p = self.p
        n = p.lanes
        bpb = p.block // n
        reg = Delays(m, "fe")

        # -- 0: input register ------------------------------------------------
        sa = self.s_axis
        m.d.comb += sa.ready.eq(self.accept)
        fire = sa.valid & self.accept
        in_tensor = Signal()
        with m.If(fire):
            m.d.sync += in_tensor.eq(~sa.payload.last)
        v0, first0, pl0, cfg0 = reg(fire), reg(~in_tensor), reg(sa.payload), reg(self.cfg)

        # -- 1: the tensor's settings, count, block end, lane mask -----------------
        tcfg = Signal(config_layout())
        cfg_t = Signal(config_layout())
        m.d.comb += cfg_t.eq(Mux(first0, cfg0, tcfg))
        with m.If(v0 & first0):
            m.d.sync += tcfg.eq(cfg0)
        # lane 0 is always taken on the last beat: a tkeep of 0 there would end a tensor
        # with no bits, so no word would carry its tlast and its m_status entry would
        # wait for ever (found by the status word-count proof)
        keep = Mux(pl0.last, pl0.keep | 1, Const((1 << n) - 1, n))
        count = Signal(range(n + 1))
        m.d.comb += count.eq(sum(keep[j] for j in range(n)))
        bb = Signal(range(max(bpb, 2)))        # beat in block
        bend = pl0.last | (bb == bpb - 1)
        with m.If(v0):
            m.d.sync += bb.eq(Mux(bend, 0, bb + 1))
        lanes = Signal(data.ArrayLayout(p.src.width, n))
        for j in range(n):
            m.d.comb += lanes[j].eq(Mux(keep[j], pl0.data[j], 0))
        v1, first1, last1, cfg1 = reg(v0), reg(first0), reg(pl0.last), reg(cfg_t)
        count1, bend1, lanes1 = reg(count), reg(bend), reg(lanes)

        # -- 2..5: per-tensor constants, refusal, random words ---------------------
        m.submodules.dec = dec = LaneConfig(p, pipelined=True)
        m.d.comb += dec.cfg.eq(cfg1)
        # each comparison registered on its own, ANDed in the drop stage
        ok2 = Cat(*(reg(c) for c in cfg_checks(p, cfg1))).all()
        first2 = reg(first1)
        tdrop = Signal()
        drop_now = Mux(first2, ~ok2, tdrop)
        with m.If(delay(m, v1, 1, "fe_v2") & first2):
            m.d.sync += tdrop.eq(~ok2)
        drop3 = reg(drop_now)
        v = reg(cfg1.sign + cfg1.exp_bits + cfg1.man_bits)
        camt = reg(cfg1.man_bits)
        samt = reg(cfg1.man_bits + cfg1.exp_bits)
        rnd = Signal(data.ArrayLayout(32, n))
        if p.stochastic:
            m.submodules.prng = prng = StochasticPipe(n)
            m.d.comb += [prng.valid.eq(v1), prng.first.eq(first1), prng.seed.eq(cfg1.seed)]
            rnd = delay(m, prng.x, DECODE_LATENCY - StochasticPipe.LATENCY, "fe_rnd")
        lanes5 = delay(m, lanes1, DECODE_LATENCY, "fe_lanes")

        # -- 6..9: the lanes -----------------------------------------------------------
        fb = self.o.payload
        neg = []
        spc = []
        for j in range(n):
            q = Quantizer(p, predecoded=True, pipelined=True)
            m.submodules[f"q{j}"] = q
            m.d.comb += [q.value.eq(lanes5[j]), q.lcfg.eq(dec.lcfg), q.rnd.eq(rnd[j])]
            m.d.comb += fb.fields[j].eq(q.fields)
            neg.append(q.negative)
            spc.append(q.special)
        lat = DECODE_LATENCY + quantizer_latency(p)         # from stage 1 to the output
        m.d.comb += [
            fb.negative.eq(Cat(*neg)),
            fb.special.eq(Cat(*spc)),
            self.o.valid.eq(delay(m, v1, lat, "fe_valid")),
            fb.count.eq(delay(m, count1, lat, "fe_count")),
            fb.first.eq(delay(m, first1, lat, "fe_first")),
            fb.last.eq(delay(m, last1, lat, "fe_last")),
            fb.flush.eq(delay(m, bend1, lat, "fe_flush")),
            fb.drop.eq(delay(m, drop3, lat - 2, "fe_drop")),
            fb.v.eq(delay(m, v, lat - 1, "fe_v")),
            fb.camt.eq(delay(m, camt, lat - 1, "fe_camt")),
            fb.samt.eq(delay(m, samt, lat - 1, "fe_samt")),
            fb.cfg.eq(delay(m, cfg1, lat, "fe_cfg")),
        ]

        # sticky flags of the tensor at the output
        flags = Cat(fb.negative.any() & ~fb.drop, fb.special.any() & ~fb.drop, fb.drop)
        st = Cat(self.status.negative, self.status.special, self.status.unsupported)
        with m.If(self.o.valid):
            with m.If(fb.first):
                m.d.sync += st.eq(flags)
            with m.Else():
                m.d.sync += st.eq(st | flags)
        return m


class RecordFormer(wiring.Component):
    """Field beats -> record beats: ``S<<(e+m) | C<<m | Q`` per lane (format.md 4.2), two register stages.

    A refused tensor's beats leave as empty beats (no values, no block end),
    so they write nothing but still retire through the credit gate.

    Ports: ``i`` (:func:`field_beat_layout`), ``o`` (:func:`sfp.hw.wordpack.record_beat_layout`),
    both always ready.  Latency: 2 (each variable shift in two halves).
    """

    latency = 2

    def __init__(self, p: HwParams):
        self.p = p
        super().__init__({
            "i": In(stream.Signature(field_beat_layout(p), always_ready=True)),
            "o": Out(stream.Signature(record_beat_layout(p), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        n, vmax = p.lanes, p.max_value_bits
        ib, ob = self.i.payload, self.o.payload
        reg = Delays(m, "rec")
        camt = shift_amount(m, ib.camt, p.max_man_bits, "rec_camt")
        samt = shift_amount(m, ib.samt, vmax - 1, "rec_samt")
        # each variable shift in two register stages: the low half of the
        # amount's bits, then the high half
        c_lo, s_lo = (len(camt) + 1) // 2, (len(samt) + 1) // 2
        c_hi, s_hi = reg(camt[c_lo:]), reg(samt[s_lo:])
        drop = reg(ib.drop)
        for j in range(n):
            f = ib.fields[j]
            code1 = reg((f.code << camt[:c_lo])[:vmax])
            sign1 = reg(((f.sign & ib.cfg.sign) << samt[:s_lo])[:vmax])
            man1 = reg(f.man)
            rec = man1 | (code1 << (c_hi << c_lo)) | (sign1 << (s_hi << s_lo))
            m.d.sync += ob.recs[j].eq(Mux(drop, 0, rec[:vmax]))
        m.d.sync += [
            self.o.valid.eq(reg(self.i.valid)),
            ob.v.eq(reg(ib.v)),
            ob.count.eq(reg(Mux(ib.drop, 0, ib.count))),
            ob.flush.eq(reg(ib.flush & ~ib.drop)),
            ob.last.eq(reg(ib.last & ~ib.drop)),
        ]
        return m


class StatusQueue(wiring.Component):
    """The ``m_status`` stream: one :func:`sfp.hw.status.status_layout` entry per tensor, in order.

    The front half of an entry (flags, values, refusal) is formed from the
    field beats of :class:`PackerFrontEnd` and queued at the tensor's last
    beat (this queue is under the packer's credit gate, so it never
    overflows); the word count is counted on ``m_axis`` as the words are
    taken and queued at the tensor's last word.  When both halves are there
    (a refused tensor writes no words: its entry needs only the first half)
    the entry goes into an :attr:`OUT_DEPTH`-entry output queue, so it
    follows the tensor's last word.  ``m_status`` never holds up the data
    path: an entry that finds the output queue full is dropped and ``lost``
    is set (sticky until reset), as in the unpacker.

    Ports
    -----
    beat : In(stream of :func:`field_beat_layout`, always ready)
        A tap of the front end's output.
    words_taken : In(1), words_last : In(1)
        A word was taken on ``m_axis`` / it was the tensor's last.
    m_status : Out(stream of :func:`status_layout`)
    queued : Out(range(depth + 2))
        Front halves written and not yet joined (for the credit gate).
    lost : Out(1)
        Sticky: an entry was dropped because ``m_status`` was not read.
    """

    OUT_DEPTH = 8
    #: An entry's front half, as queued in ``fq``.
    FRONT = data.StructLayout({"negative": 1, "special": 1, "unsupported": 1, "values": 32})

    def __init__(self, p: HwParams, depth: int):
        self.p = p
        self.depth = depth
        super().__init__({
            "beat": In(stream.Signature(field_beat_layout(p), always_ready=True)),
            "words_taken": In(1),
            "words_last": In(1),
            "m_status": Out(stream.Signature(status_layout())),
            "queued": Out(range(depth + 2)),
            "lost": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        front = self.FRONT
        m.submodules.fq = fq = LutQueue(front.size, self.depth)
        m.submodules.wq = wq = LutQueue(32, self.depth)
        m.submodules.oq = oq = LutQueue(status_layout().size, self.OUT_DEPTH - 1)

        b = self.beat.payload
        bv = self.beat.valid
        neg = Signal()
        spc = Signal()
        values = Signal(32)
        b_neg = b.negative.any() & ~b.drop
        b_spc = b.special.any() & ~b.drop
        neg_t = Mux(b.first, 0, neg) | b_neg
        spc_t = Mux(b.first, 0, spc) | b_spc
        values_t = (Mux(b.first, 0, values) + b.count)[:32]
        with m.If(bv):
            m.d.sync += [neg.eq(neg_t), spc.eq(spc_t), values.eq(values_t)]
        fin = data.View(front, fq.w_data)
        m.d.comb += [
            fq.w_en.eq(bv & b.last),
            fin.negative.eq(neg_t), fin.special.eq(spc_t), fin.unsupported.eq(b.drop), fin.values.eq(values_t),
        ]

        words = Signal(32)
        with m.If(self.words_taken):
            m.d.sync += words.eq(Mux(self.words_last, 0, words + 1))
        m.d.comb += [wq.w_en.eq(self.words_taken & self.words_last), wq.w_data.eq(words + 1)]

        # join the halves into the output queue (or drop the entry when it is full);
        # each half is first taken into a head register, so that the join is
        # decided from registers only (no path from a queue's level through
        # the join back into the queues' pointers)
        hf_v, hw_v = Signal(name="hf_v"), Signal(name="hw_v")
        hf = Signal(front)
        hw = Signal(32)
        join = hf_v & (hf.unsupported | hw_v)
        use_w = join & ~hf.unsupported
        m.d.comb += [fq.r_en.eq(~hf_v | join), wq.r_en.eq(~hw_v | use_w)]
        with m.If(fq.r_rdy & fq.r_en):
            m.d.sync += [hf.eq(fq.r_data), hf_v.eq(1)]
        with m.Elif(join):
            m.d.sync += hf_v.eq(0)
        with m.If(wq.r_rdy & wq.r_en):
            m.d.sync += [hw.eq(wq.r_data), hw_v.eq(1)]
        with m.Elif(use_w):
            m.d.sync += hw_v.eq(0)
        ent = data.View(status_layout(), oq.w_data)
        m.d.comb += [
            ent.negative.eq(hf.negative),
            ent.special.eq(hf.special),
            ent.unsupported.eq(hf.unsupported),
            ent.values.eq(hf.values),
            ent.words.eq(Mux(hf.unsupported, 0, hw)),
            oq.w_en.eq(join),
        ]
        with m.If(join & ~oq.w_rdy):
            m.d.sync += self.lost.eq(1)
        st = self.m_status
        m.d.comb += [st.valid.eq(oq.r_rdy), st.payload.eq(oq.r_data), oq.r_en.eq(st.ready)]
        m.d.sync += self.queued.eq(self.queued + fq.w_en - join)
        return m


class Packer(wiring.Component):
    """Quantizes and packs tensors into the container image (plain, or Gecko when built), N values per clock.

    Parameters
    ----------
    p : HwParams
        Source format, lanes N, word W, block B, field maxima, stochastic
        rounding built or not, Gecko built or not.  Without ``p.gecko`` a
        cfg asking for Gecko is refused.  With ``p.gecko`` the group is
        fixed at ``p.group`` (tensors must use ``Settings(group=p.group)``),
        N must be 1, 2, 4 or 8 and B a multiple of G
        (:class:`sfp.hw.params.ParamError` otherwise, raised by the constructor).

    Ports
    -----
    s_axis : In(stream of :func:`value_beat_layout`)
        ``data[j]`` is value ``t*N + j`` of the tensor (t = beat in tensor).
        ``last`` ends the tensor; on that beat ``keep`` (a prefix mask, at
        least one lane) says which lanes hold values.  On other beats all
        lanes are values and ``keep`` is ignored.  A tensor whose ``last``
        never comes is never finished (the caller's business).
    cfg : In(config_layout())
        Per-tensor settings, sampled when a tensor's first beat is accepted
        (``length`` is not used: ``last`` ends the tensor).
    m_axis : Out(stream of {data: W, last: 1})
        The image's words in order; ``last`` on the tensor's final word.
    m_len : Out(stream of {data: 32, last: 1})
        Each block's length L_b in words, in order; ``last`` on the tensor's
        final block.  (Equal to ``encode_image(...).block_words``.)  With
        Gecko a block is Gecko-coded iff L_b is less than its plain length;
        the unpacker needs this stream (its ``s_len``).
    m_status : Out(stream of :func:`sfp.hw.status.status_layout`)
        One entry per tensor, in order, after its last word has been taken:
        negative, special, unsupported (refused: no words, no lengths),
        values, words.  It never holds up the data path: entries that find
        its 8-entry queue full are dropped and set ``status.lost``.
    status : Out({negative, special, unsupported, lost})
        Sticky flags (format.md 7) of the tensor at the lanes' output,
        replaced by the next tensor's first beat there; ``lost``: sticky
        until reset, an ``m_status`` entry was dropped.

    Latency: the word a beat completes is valid on ``m_axis`` ``latency + 1``
    clocks after the clock edge that accepted the beat (plain; 25 for bf16
    N = 8 W = 128 with stochastic rounding, measured in amaranth.sim).
    Gecko: the front end and record former (``latency`` clocks), the input
    queue (2), then a block waits to be complete and analysed (about B/8 + 5
    clocks after its last beat) before its rows go out, one per clock,
    through :class:`sfp.hw.gecko_stage.GeckoStage` (``concat_latency + 3``)
    and the accumulator (``BitAccumulator.latency_of(p) + 2``).

    Throughput: one beat (N values) per clock, with no bubble at block or
    tensor boundaries, also between tensors with different settings, while
    ``m_axis``, ``m_len`` and ``m_status`` are ready: :class:`CreditGate`
    admits a beat while beats in flight + queued entries stay 4 below the
    queue depth, which is chosen above the pipeline's length
    (:func:`sfp.hw.wordpack.queue_depth`).  ``s_axis.ready`` is a register.
    With ``p.gecko`` the same gate covers the front end and the Gecko back
    end's input queue; inside the back end a second :class:`CreditGate`
    (weight K on the word queue) lets a row be issued only when the queues
    have room for every row in flight; the status queue is deep enough for
    the Gecko latency (a tensor's entry waits for its last word).  One beat
    per clock, also for runs of one-beat tensors (measured in
    ``tests/test_hw_gecko_rate.py`` and ``test_gecko_throughput``).
    """

    #: Queue depth (None: :func:`sfp.hw.wordpack.queue_depth` of the pipeline) and credit
    #: margin (None: :attr:`sfp.hw.wordpack.CreditGate.MARGIN`); class attributes so that a
    #: formal harness can build smaller or deliberately broken variants (docs/verification.md).
    QUEUE_DEPTH: int | None = None
    GATE_MARGIN: int | None = None

    def __init__(self, p: HwParams):
        if p.gecko:
            from .gecko_common import check_gecko_params
            check_gecko_params(p)             # ParamError: lanes 1/2/4/8, group, block % group
        self.p = p
        super().__init__({
            "s_axis": In(stream.Signature(value_beat_layout(p))),
            "cfg": In(config_layout()),
            "m_axis": Out(stream.Signature(word_layout(p))),
            "m_len": Out(stream.Signature(len_layout())),
            "m_status": Out(stream.Signature(status_layout())),
            "status": Out(packer_status_layout()),
        })
        from .lane import DECODE_LATENCY, quantizer_latency
        fe_lat = 1 + DECODE_LATENCY + quantizer_latency(p)
        if p.gecko:
            self.latency = fe_lat + 2
        else:
            self.latency = fe_lat + RecordFormer.latency + RecordConcat.latency_of(p) + BitAccumulator.latency_of(p)

    def elaborate(self, platform):
        m = Module()
        p = self.p
        m.submodules.front = fe = PackerFrontEnd(p)
        wiring.connect(m, wiring.flipped(self.s_axis), fe.s_axis)
        m.d.comb += [
            fe.cfg.eq(self.cfg),
            self.status.negative.eq(fe.status.negative),
            self.status.special.eq(fe.status.special),
            self.status.unsupported.eq(fe.status.unsupported),
        ]
        fire = self.s_axis.valid & self.s_axis.ready

        if p.gecko:
            # the plain stages up to the record former, then the Gecko back end
            # (queue -> GeckoStage -> RecordConcat of its plain rows -> BitAccumulator)
            from .gecko_common import SLICE
            from .gecko_stage import GeckoWordPacker
            m.submodules.rec = rec = RecordFormer(p)
            wiring.connect(m, fe.o, rec.i)
            depth = self.QUEUE_DEPTH or queue_depth(fe.latency + RecordFormer.latency + 2)
            m.submodules.gecko = gk = GeckoWordPacker(p, depth)
            rb = rec.o.payload
            rcfg = delay(m, fe.o.payload.cfg, RecordFormer.latency, "gk_cfg")
            gin = gk.i.payload
            m.d.comb += [
                # a refused tensor's beats are empty (count 0): they only retire
                gk.i.valid.eq(rec.o.valid & (rb.count != 0)),
                gin.recs.eq(rb.recs), gin.count.eq(rb.count), gin.last.eq(rb.last),
                gin.set.s.eq(rcfg.sign), gin.set.e.eq(rcfg.exp_bits), gin.set.m.eq(rcfg.man_bits),
                gin.set.gecko.eq(rcfg.gecko),
            ]
            retire = rec.o.valid
            words, lens = gk.words, gk.lens
            queued = [gk.in_queued]
            depths = [depth]
            # a tensor's m_status entry waits for its last word, which a block holds back
            # for its analysis: the status queue covers that latency too, or runs of short
            # tensors would close the gate
            lat = (fe.latency + RecordFormer.latency + 2 + p.block // SLICE + 8 +
                   RecordConcat.latency_of(p, SLICE) + 3 + BitAccumulator.latency_of(p) + 2)
            sq_depth = queue_depth(lat)
        else:
            m.submodules.rec = rec = RecordFormer(p)
            m.submodules.cat = cat = RecordConcat(p)
            depth = self.QUEUE_DEPTH or queue_depth(self.latency)
            m.submodules.accum = acc = BitAccumulator(p, depth)
            wiring.connect(m, fe.o, rec.i)
            wiring.connect(m, rec.o, cat.i)
            wiring.connect(m, cat.o, acc.i)
            retire = acc.retire
            words, lens = acc.words, acc.lens
            queued = [acc.words_queued, acc.lens_queued]
            depths = [depth, depth]
            sq_depth = depth

        wiring.connect(m, wiring.flipped(self.m_axis), words)
        wiring.connect(m, wiring.flipped(self.m_len), lens)

        m.submodules.status_q = sq = StatusQueue(p, sq_depth)
        m.d.comb += [
            sq.beat.valid.eq(fe.o.valid),
            sq.beat.payload.eq(fe.o.payload),
            sq.words_taken.eq(self.m_axis.valid & self.m_axis.ready),
            sq.words_last.eq(self.m_axis.payload.last),
        ]
        wiring.connect(m, wiring.flipped(self.m_status), sq.m_status)
        m.d.comb += self.status.lost.eq(sq.lost)
        queued.append(sq.queued)
        depths.append(sq_depth)

        m.submodules.gate = gate = CreditGate(depth, len(queued), depths=depths if p.gecko else None,
                                              margin=self.GATE_MARGIN)
        m.d.comb += [
            fe.accept.eq(gate.ready),
            gate.fire.eq(fire),
            gate.retire.eq(retire),
        ]
        for k, q in enumerate(queued):
            m.d.comb += gate.queued[k].eq(q)
        # the gate's depth per queue, as elaborated (read by the formal harness's credit invariants)
        self.queue_depths = tuple(depths)
        return m
