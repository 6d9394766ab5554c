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
from .wordpack import word_layout

__all__ = ["RecordCutter", "window_beat_layout", "ErrorKind"]


class ErrorKind(enum.Enum, shape=2):
    """The error state of the tensor being unpacked (the first error wins)."""
    NONE = 0
    UNSUPPORTED = 1
    CORRUPT = 2
    LENGTH = 3


def window_beat_layout(p: HwParams) -> data.StructLayout:
    """One beat into the datapath: its two words and where its records start in them."""
    return data.StructLayout({
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

    State (``lib.enum``): ``RUN`` issues the tensor's beats; ``DRAIN``
    follows the last beat when the tensor's ``last`` word has not been
    consumed yet (a stream too long, a refused tensor, or after an error):
    words are popped, one per clock, up to ``last``.  In ``RUN`` after an
    error (or for a refused tensor) beats are issued as zero beats at one per
    clock while, in the same clocks, the tensor's words are popped up to ``last``.

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
    """

    RING = 4

    class State(enum.Enum, shape=1):
        RUN = 0
        DRAIN = 1

    def __init__(self, p: HwParams):
        self.p = p
        super().__init__({
            "words": In(stream.Signature(word_layout(p))),
            "cmd": In(stream.Signature(beat_cmd_layout(p))),
            "room": In(1),
            "o": Out(stream.Signature(window_beat_layout(p), always_ready=True)),
            "status": Out(stream.Signature(status_layout())),
            "error": Out(ErrorKind),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        W, RING = p.word, self.RING

        # -- the ring ----------------------------------------------------------
        ring = Array(Signal(W + 1, name=f"ring{i}") for i in range(RING))   # {last, data}
        rp = Signal(2)
        wp = Signal(2)
        level = Signal(range(RING + 1))
        pops = Signal(range(3))
        take = Signal()
        m.d.comb += [self.words.ready.eq(level < RING), take.eq(self.words.valid & self.words.ready)]
        with m.If(take):
            m.d.sync += [ring[wp].eq(Cat(self.words.payload.data, self.words.payload.last)), wp.eq(wp + 1)]
        m.d.sync += [rp.eq(rp + pops), level.eq(level + take - pops)]
        w0 = ring[rp]
        w1 = ring[(rp + 1)[:2]]
        w0_last = w0[W]
        w1_last = w1[W]

        # -- per-tensor state ---------------------------------------------------
        state = Signal(self.State)
        err = Signal(ErrorKind)
        ended = Signal()                      # the tensor's last word has been popped
        nwords = Signal(32)
        m.d.comb += self.error.eq(err)

        c = self.cmd.payload
        st = self.status
        o = self.o
        run = (state == self.State.RUN) & self.cmd.valid
        # this clock's situation for the head command (RUN)
        early = Signal()                      # its records run past the tensor's last word
        zb = Signal()                         # a zero beat (refused, or after / at an error)
        m.d.comb += [
            early.eq(c.need2 & (level != 0) & w0_last & ~ended),
            zb.eq((err != ErrorKind.NONE) | c.refused | ended | early),
        ]
        would = Signal(range(3))              # words the command pops if it goes
        m.d.comb += would.eq(Mux(zb, ~ended & (level != 0), c.pops))
        have = Signal()                       # the command can go as far as the words are concerned
        m.d.comb += have.eq(zb | (level >= 1 + c.need2))
        pl = Signal()                         # it pops the tensor's last word
        m.d.comb += pl.eq(((would != 0) & w0_last) | ((would == 2) & w1_last))
        fin = Signal()                        # its tensor finishes in this clock (status pushed)
        m.d.comb += fin.eq(c.final & (ended | pl))
        space = Signal()                      # room for its beat (a length-0 tensor has none)
        m.d.comb += space.eq(self.room | c.nobeat)
        go = Signal()
        m.d.comb += go.eq(run & have & space & (~fin | st.ready))

        kind = Signal(ErrorKind)              # err including this clock's finding
        m.d.comb += kind.eq(err)
        with m.If(run & (err == ErrorKind.NONE)):
            with m.If(c.refused):
                m.d.comb += kind.eq(ErrorKind.UNSUPPORTED)
            with m.Elif(ended | early):
                m.d.comb += kind.eq(ErrorKind.LENGTH)        # words ran out before the beats
            with m.Elif(go & c.final & ~pl):
                m.d.comb += kind.eq(ErrorKind.LENGTH)        # words left before `last`

        done = Signal()
        with m.Switch(state):
            with m.Case(self.State.RUN):
                m.d.comb += self.cmd.ready.eq(go)
                m.d.comb += st.valid.eq(run & have & space & fin)
                with m.If(run & zb):
                    m.d.comb += pops.eq(would)                  # drain towards `last`, beat or not
                with m.Elif(go):
                    m.d.comb += pops.eq(would)
                with m.If(go & c.final):
                    with m.If(fin):
                        m.d.comb += done.eq(1)
                    with m.Else():
                        m.d.sync += state.eq(self.State.DRAIN)
            with m.Case(self.State.DRAIN):
                with m.If(level != 0):
                    with m.If(w0_last):
                        m.d.comb += st.valid.eq(1)
                        with m.If(st.ready):
                            m.d.comb += [pops.eq(1), done.eq(1)]
                            m.d.sync += state.eq(self.State.RUN)
                    with m.Else():
                        m.d.comb += pops.eq(1)
        popped_last = ((pops != 0) & w0_last) | ((pops == 2) & w1_last)
        m.d.sync += [err.eq(kind), nwords.eq(nwords + pops), ended.eq(ended | popped_last)]
        with m.If(done):
            m.d.sync += [err.eq(ErrorKind.NONE), ended.eq(0), nwords.eq(0)]
        length_q = Signal(32)                 # cfg.length of the tensor in DRAIN
        with m.If(go):
            m.d.sync += length_q.eq(c.length)
        st_pl = st.payload
        m.d.comb += [
            st_pl.unsupported.eq(kind == ErrorKind.UNSUPPORTED),
            st_pl.corrupt.eq(kind == ErrorKind.CORRUPT),
            st_pl.length_error.eq(kind == ErrorKind.LENGTH),
            st_pl.values.eq(Mux(state == self.State.DRAIN, length_q, c.length)),
            st_pl.words.eq(nwords + Mux(state == self.State.DRAIN, 1, would)),
        ]
        beat = go & ~c.nobeat
        zero = zb

        # -- the beat to the datapath (registered) --------------------------------
        m.d.sync += o.valid.eq(beat)
        with m.If(beat):
            m.d.sync += [
                o.payload.win.eq(Cat(w0[:W], w1[:W])),
                o.payload.off.eq(c.off),
                o.payload.keep.eq(c.keep),
                o.payload.last.eq(c.final),
                o.payload.zero.eq(zero),
                o.payload.k.eq(c.k),
            ]
        return m
