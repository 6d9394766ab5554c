"""The unpacker's word side: memory words in, each beat's bit window out, with the stream checks.

:class:`RecordCutter` holds the last few words of the stream in a small
register ring and, for each command of :class:`sfp.hw.unpack_seq.BeatSequencer`,
hands the two words the beat's records lie in (and the bit offset) to the
datapath (:class:`sfp.hw.recsplit.RecordSplitter`), pops the words the beat
used up, and checks the stream against the tensor's length: a word stream
that ends (``last``) before the tensor's beats do, or goes on after them,
is a length error (docs/format.md 8).  It finishes every tensor with all of
its beats and consumes its words up to ``last`` whatever happens, so one
tensor never corrupts the next, and pushes the tensor's status entry.
"""

from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import HwParams
from .status import status_layout
from .unpack_seq import beat_cmd_layout, tensor_consts_layout
from .wordpack import len_layout, word_layout

__all__ = ["RecordCutter", "window_beat_layout", "ErrorKind"]


class ErrorKind(enum.Enum, shape=2):
    """The error state of the tensor being unpacked (the first error wins)."""
    NONE = 0
    UNSUPPORTED = 1
    CORRUPT = 2
    LENGTH = 3


def window_beat_layout(p: HwParams) -> data.StructLayout:
    """One beat into the datapath: its two words and where its records start in them.

    A Gecko build's beats also carry ``coded`` and the N exponent ``codes``
    that :class:`sfp.hw.gecko_parse.GeckoParser` decoded: the records are then
    sign/mantissa records (``k.v = s + m``) and the codes replace their split
    code field.
    """
    extra = {"coded": 1, "codes": data.ArrayLayout(p.max_exp_bits, p.lanes)} if p.gecko else {}
    return data.StructLayout({**extra,
        "win": 2 * p.word,                 # {second word, head word}
        "off": range(p.word),
        "keep": p.lanes,
        "last": 1,
        "zero": 1,                         # error / refused: the beat's values are 0
        "k": tensor_consts_layout(p),
    })


class RecordCutter(wiring.Component):
    """Word ring, beat issue and stream checks of the plain unpacker.

    Ports
    -----
    words : In(stream of {data: W, last: 1})
        The words, ``last`` on each tensor's final word (as sent on ``s_axis_tlast``).
    cmd : In(stream of :func:`sfp.hw.unpack_seq.beat_cmd_layout`)
        One command per beat, from the :class:`BeatSequencer`.
    room : In(1)
        A beat may be issued this clock (the output FIFO has a free slot
        that no beat in flight has claimed).
    o : Out(stream of :func:`window_beat_layout`, always ready)
        One beat per command; the datapath behind it never stalls.
    status : Out(stream of :func:`sfp.hw.status.status_layout`)
        One entry per tensor, pushed when its last beat has been issued and
        its words consumed up to ``last``.
    error : Out(ErrorKind)
        The current tensor's error so far (for the sticky flags).

    State (``lib.enum``): ``RUN`` issues the tensor's beats (the fast path:
    a clean beat whose words are held, decided from flip-flops in a few LUT
    levels); ``ZERO`` (entered one clock after a refused tensor, an error or
    words that ran out are seen) issues the rest of the tensor's beats as
    zero beats, one per clock, while the tensor's words are popped up to
    ``last`` in the same clocks; ``DRAIN`` follows the last beat when the
    ``last`` word has not been consumed yet (a stream too long, a refused
    or damaged tensor): words are popped, one per clock, up to ``last``.
    Commands are prefetched into a 2-entry register (the command FIFO's
    read enable is a flip-flop's output).  ``m_status`` is never waited for:
    ``status.ready`` must be 1 (the Unpacker queues the entries).

    Checks, at the beat that needs the words (docs/format.md 8): a beat whose
    records reach into a second word while the head word is the tensor's
    ``last`` one, or any beat after the ``last`` word was used up, is a
    length error: that beat and every later one of the tensor are zero.
    The last beat popping a word that is not ``last`` is a length error with
    no value lost (the rest is drained).

    Ring: ``RING`` = 4 words.  A word enters when fewer than 4 are held
    (registered level); a beat pops at most 2 (the second only at a block's
    end); a beat is issued when the words it needs are held (1, or 2 with
    ``need2``).  Throughput: one beat per clock while words come without
    gaps and ``room`` is high: a beat uses at most W bits, so besides a
    block's last beat it pops at most one word.

    Latency: a beat leaves on ``o`` in the clock after the one its last word
    entered the ring (registered output).

    Gecko build (``p.gecko``): an extra port ``lens`` (the block index
    entries of the Gecko tensors, routed by the Unpacker) and one extra
    stage, :class:`sfp.hw.gecko_parse.GeckoParser`, which takes the place of
    the command's ``off``/``need2``/``pops``: it parses the slice at the ring
    head and says how many words the beat needs and uses up, where its
    records are, the exponent codes of a coded slice, and its checks' error
    (corrupt or length; acted on once the words it read are final).  The
    ring is then ``2*KW`` words (KW = :func:`sfp.hw.gecko_parse.gecko_window_words`),
    and a beat whose slice's block index entry has not arrived waits (also
    a zero beat: the entries are consumed in order).  States, word count,
    status entry and drain are the same.
    """

    RING = 4

    class State(enum.Enum, shape=2):
        RUN = 0
        ZERO = 1
        DRAIN = 2

    def __init__(self, p: HwParams):
        self.p = p
        members = {
            "words": In(stream.Signature(word_layout(p))),
            "cmd": In(stream.Signature(beat_cmd_layout(p))),
            "room": In(1),
            "o": Out(stream.Signature(window_beat_layout(p), always_ready=True)),
            "status": Out(stream.Signature(status_layout())),
            "error": Out(ErrorKind),
        }
        if p.gecko:
            members["lens"] = In(stream.Signature(len_layout()))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.p
        W = p.word
        gecko = p.gecko
        if gecko:
            # the Gecko stage: it says where each beat's records are and how many words it takes
            from .gecko_parse import GeckoParser
            m.submodules.gecko = gp = GeckoParser(p)
            KW = gp.kw
            RING = 1 << (2 * KW - 1).bit_length()   # 2*KW words of slack (see GeckoParser)
            MAXPOP = KW
        else:
            RING, MAXPOP = self.RING, 2
        lgR = (RING - 1).bit_length()

        # -- the ring ----------------------------------------------------------
        ring = Array(Signal(W, name=f"ring{i}") for i in range(RING))
        ring_last = Signal(RING)              # the slot holds its tensor's `last` word
        rp = Signal(lgR)
        wp = Signal(lgR)
        level = Signal(range(RING + 1))
        ge1 = Signal()                        # level >= 1, level >= 2: registered copies, so that
        ge2 = Signal()                        # the issue decision starts at flip-flops
        pops = Signal(range(MAXPOP + 1))
        take = Signal()
        m.d.comb += [self.words.ready.eq(level < RING), take.eq(self.words.valid & self.words.ready)]
        with m.If(take):
            m.d.sync += [ring[wp].eq(self.words.payload.data), wp.eq(wp + 1),
                         ring_last.bit_select(wp, 1).eq(self.words.payload.last)]
        # the next level for each possible pop count, computed beside the issue decision
        after = [Signal(range(RING + 2), name=f"after{k}") for k in range(MAXPOP + 1)]
        for k in range(MAXPOP + 1):
            m.d.comb += after[k].eq(level + take - k)
        nxt_level = Signal(range(RING + 2))
        m.d.comb += nxt_level.eq(Array(after)[pops])
        m.d.sync += [rp.eq(rp + pops), level.eq(nxt_level), ge1.eq(nxt_level >= 1), ge2.eq(nxt_level >= 2)]
        w0 = ring[rp]
        w1 = ring[(rp + 1)[:lgR]]
        w0_last = ring_last.bit_select(rp, 1)
        w1_last = ring_last.bit_select((rp + 1)[:lgR], 1)

        # -- commands: the head (cur) and one prefetched (nxt), so that the FIFO's read
        #    enable depends on a flip-flop only ----------------------------------------
        cl = beat_cmd_layout(p)
        cur = Signal(cl)
        nxt = Signal(cl)
        cur_v = Signal()
        nxt_v = Signal()
        adv = Signal()                        # cur is consumed this clock
        m.d.comb += self.cmd.ready.eq(~nxt_v)
        take_cmd = self.cmd.valid & ~nxt_v
        with m.If(adv):
            with m.If(nxt_v):
                m.d.sync += cur.eq(nxt)
                with m.If(take_cmd):
                    m.d.sync += nxt.eq(self.cmd.payload)
                with m.Else():
                    m.d.sync += nxt_v.eq(0)
            with m.Else():
                m.d.sync += [cur.eq(self.cmd.payload), cur_v.eq(take_cmd)]
        with m.Elif(take_cmd):
            with m.If(cur_v):
                m.d.sync += [nxt.eq(self.cmd.payload), nxt_v.eq(1)]
            with m.Else():
                m.d.sync += [cur.eq(self.cmd.payload), cur_v.eq(1)]

        # -- per-tensor state ---------------------------------------------------
        state = Signal(self.State)
        err = Signal(ErrorKind)
        ended = Signal()                      # the tensor's last word has been popped
        nwords = Signal(32)
        len_q = Signal(32)                    # cfg.length of the tensor in DRAIN
        m.d.comb += self.error.eq(err)
        st = self.status
        o = self.o
        popped_last = Signal()
        if gecko:
            # the head tensor's words in the ring: up to its `last` word (later slots are the
            # next tensor's and read as zero, as the model reads words past tlast), none once
            # that word has been used up
            lastv = [Signal(name=f"lastv{j}") for j in range(RING)]
            for j in range(RING):
                m.d.comb += lastv[j].eq(ring_last.bit_select((rp + j)[:lgR], 1) & (level > j))
            found = Cat(*lastv).any()
            avail = Signal(range(RING + 1))
            with m.If(ended):
                m.d.comb += avail.eq(0)
            with m.Elif(found):
                for j in reversed(range(RING)):
                    with m.If(lastv[j]):
                        m.d.comb += avail.eq(j + 1)
            with m.Else():
                m.d.comb += avail.eq(level)
            wnd = Cat(*(ring[(rp + j)[:lgR]] & (~ended & ~Cat(*lastv[:j]).any()).replicate(W) if j else
                        ring[rp] & (~ended).replicate(W) for j in range(KW)))
            m.d.comb += [
                gp.wnd.eq(wnd), gp.level.eq(level), gp.avail.eq(avail), gp.decidable.eq(ended | found),
                gp.cmd.eq(cur), gp.cmd_valid.eq(cur_v), gp.adv.eq(adv),
            ]
            wiring.connect(m, wiring.flipped(self.lens), gp.lens)
            m.d.comb += popped_last.eq(Cat(*(lastv[j] & (pops > j) for j in range(min(RING, MAXPOP)))).any())
        else:
            m.d.comb += popped_last.eq(((pops != 0) & w0_last) | ((pops == 2) & w1_last))
        ended_new = ended | popped_last
        done = Signal()
        beat = Signal()                       # a beat is issued
        zero = Signal()                       # ... as a zero beat
        st_kind = Signal(ErrorKind)
        st_len = Signal(32)
        m.d.comb += [st_kind.eq(err), st_len.eq(cur.length)]

        with m.Switch(state):
            with m.Case(self.State.RUN):
                go = Signal()
                if gecko:
                    # a slice whose checks pass and whose words are held
                    normal = cur_v & ~cur.refused & ~gp.hold
                    m.d.comb += go.eq(normal & (gp.err == ErrorKind.NONE) & (gp.need <= level) & self.room)
                    m.d.comb += [adv.eq(go), beat.eq(go)]
                    with m.If(go):
                        m.d.comb += pops.eq(gp.pops)
                    with m.If(cur_v & cur.refused):
                        m.d.sync += [state.eq(self.State.ZERO), err.eq(ErrorKind.UNSUPPORTED)]
                    with m.Elif(normal & (gp.err != ErrorKind.NONE) & gp.err_final):
                        m.d.sync += [state.eq(self.State.ZERO), err.eq(gp.err)]
                    fin_ok = ended_new
                else:
                    # fast path: a clean beat whose words are held
                    normal = cur_v & ~cur.refused & ~ended
                    hit = cur.need2 & ge1 & w0_last   # its records run past the tensor's last word
                    m.d.comb += go.eq(normal & ~hit & Mux(cur.need2, ge2, ge1) & self.room)
                    m.d.comb += [adv.eq(go), beat.eq(go)]
                    with m.If(go):
                        m.d.comb += pops.eq(cur.pops)
                    # the rest takes a clock to decide (off the fast path)
                    with m.If(cur_v & (cur.refused | ended | hit)):
                        m.d.sync += [state.eq(self.State.ZERO),
                                     err.eq(Mux(cur.refused, ErrorKind.UNSUPPORTED, ErrorKind.LENGTH))]
                    fin_ok = popped_last
                with m.If(go & cur.final):
                    with m.If(fin_ok):
                        m.d.comb += done.eq(1)
                    with m.Else():                # words left before `last`
                        m.d.sync += [state.eq(self.State.DRAIN), err.eq(ErrorKind.LENGTH), len_q.eq(cur.length)]
            with m.Case(self.State.ZERO):
                # zero beats, one a clock; meanwhile the tensor's words are popped up to `last`
                zgo = cur_v & (self.room | cur.nobeat)
                if gecko:                     # the slice's block index entry must be there (consumed in order)
                    zgo = zgo & ~gp.hold
                m.d.comb += [adv.eq(zgo), beat.eq(zgo & ~cur.nobeat), zero.eq(1)]
                with m.If(~ended & ge1):
                    m.d.comb += pops.eq(1)
                with m.If(zgo & cur.final):
                    with m.If(ended_new):
                        m.d.comb += done.eq(1)
                    with m.Else():
                        m.d.sync += [state.eq(self.State.DRAIN), len_q.eq(cur.length)]
            with m.Case(self.State.DRAIN):
                m.d.comb += st_len.eq(len_q)
                with m.If(ge1):
                    m.d.comb += pops.eq(1)
                    with m.If(w0_last):
                        m.d.comb += done.eq(1)
        m.d.sync += ended.eq(ended_new)
        with m.If(done):
            m.d.sync += [state.eq(self.State.RUN), err.eq(ErrorKind.NONE), ended.eq(0)]
        # The word count and the status entry run one clock behind (no 32-bit adder after
        # the issue decision): pops_q is this clock's pops, nwords the sum before it.
        pops_q = Signal(range(MAXPOP + 1))
        st_q = Signal()
        m.d.sync += [pops_q.eq(pops), st_q.eq(done), nwords.eq(Mux(st_q, 0, nwords + pops_q))]
        st_pl = st.payload
        with m.If(done):
            m.d.sync += [
                st_pl.unsupported.eq(st_kind == ErrorKind.UNSUPPORTED),
                st_pl.corrupt.eq(st_kind == ErrorKind.CORRUPT),
                st_pl.length_error.eq(st_kind == ErrorKind.LENGTH),
                st_pl.values.eq(st_len),
            ]
        m.d.comb += [
            st.valid.eq(st_q),                # (the Unpacker never holds up m_status: ready is 1)
            st_pl.words.eq(nwords + pops_q),
        ]

        # -- the beat to the datapath (registered) --------------------------------
        m.d.sync += o.valid.eq(beat)
        with m.If(beat):
            m.d.sync += [
                o.payload.keep.eq(cur.keep),
                o.payload.last.eq(cur.final),
                o.payload.zero.eq(zero),
                o.payload.k.eq(cur.k),
            ]
            if gecko:
                m.d.sync += [
                    o.payload.win.eq(gp.win),
                    o.payload.off.eq(gp.off),
                    o.payload.coded.eq(gp.coded),
                    o.payload.codes.eq(gp.codes),
                    o.payload.k.v.eq(gp.v),
                    o.payload.k.me.eq(gp.me),
                ]
            else:
                m.d.sync += [
                    o.payload.win.eq(Cat(w0, w1)),
                    o.payload.off.eq(cur.off),
                ]
        return m
