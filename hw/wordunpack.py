"""Word disassembly of the unpacker: W-bit memory words back into N records (fields) per beat.

:class:`WordUnpacker` is the front half of :class:`sfp.hw.unpacker.Unpacker`.
It reads the little-endian W-bit words of a tensor's image (format.md 4),
cuts N records of ``v = s + e + m`` bits per beat out of the bit stream,
splits each into its sign, exponent-code and mantissa fields, and skips
each block's zero padding by the format's arithmetic: a block of B values
ends after ``B/N`` beats (or at the tensor's last value) and the next
block starts on the next word boundary.
"""

from __future__ import annotations

from amaranth import Array, Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import HwParams, config_layout, fields_layout
from .wordpack import _shift_amount, word_layout

__all__ = ["two_entry_queue", "WordUnpacker", "field_beat_layout", "split_records"]


def field_beat_layout(p: HwParams) -> data.StructLayout:
    """One beat of fields out of :class:`WordUnpacker`, with the tensor's settings."""
    return data.StructLayout({
        "fields": data.ArrayLayout(fields_layout(p), p.lanes),
        "keep": p.lanes,               # lane-valid mask (a prefix), all ones except maybe on the last beat
        "last": 1,
        "cfg": config_layout(),        # the settings of the tensor this beat belongs to
    })


def split_records(m: Module, raw, v, nrec: int, width: int, prefix: str = "split"):
    """Records ``(raw >> j*v)[:width]`` for j < nrec with a log2(nrec)-deep tree of shifters.

    The mirror of :func:`sfp.hw.wordpack.concat_records`: each level splits a
    chunk of ``k`` records into its low half (unchanged, truncated) and its
    high half (shifted down by ``(k/2)*v``, a constant shift of ``v``).
    """
    chunks = [raw[:nrec * width]]
    k = nrec
    level = 0
    while k > 1:
        h = k // 2
        nxt = []
        for c, chunk in enumerate(chunks):
            amt = _shift_amount(m, v << (h.bit_length() - 1), h * width, f"{prefix}_l{level}_{c}_amt")
            hi = Signal(h * width, name=f"{prefix}_l{level}_{c}_hi")
            m.d.comb += hi.eq(chunk >> amt)
            nxt += [chunk[:h * width], hi]
        chunks = nxt
        k = h
        level += 1
    return [c[:width] for c in chunks]


def two_entry_queue(m: Module, new, name: str = "q"):
    """A 2-entry queue of per-tensor settings: ``(head, count, push, pop)``.

    ``new`` is pushed when ``push`` is high (only with ``count < 2``), the head
    ``head`` leaves when ``pop`` is high; both may happen in one clock.  The
    next tensor's settings wait here while the current tensor drains, so a
    tensor boundary costs no bubble.
    """
    q0 = Signal.like(new, name=f"{name}0")
    q1 = Signal.like(new, name=f"{name}1")
    qn = Signal(range(3), name=f"{name}n")
    push = Signal(name=f"{name}_push")
    pop = Signal(name=f"{name}_pop")
    with m.If(pop):
        with m.If(qn == 2):
            m.d.sync += q0.eq(q1)
        with m.If(push):
            m.d.sync += q0.eq(new)        # qn == 1 here: push needs qn < 2
    with m.Elif(push):
        with m.If(qn == 0):
            m.d.sync += q0.eq(new)
        with m.Else():
            m.d.sync += q1.eq(new)
    m.d.sync += qn.eq(qn + push - pop)
    return q0, qn, push, pop


class WordUnpacker(wiring.Component):
    """Reads a tensor's memory words and emits N records' fields per beat, skipping block padding.

    Parameters
    ----------
    p : HwParams
        ``lanes`` N, ``word`` W, ``block`` B, ``max_value_bits`` Vmax (N*Vmax <= W).

    Ports
    -----
    i : In(stream of {data: W, last: 1})
        The image, tensor after tensor; ``last`` on each tensor's final word.
        The word count must be the format's (sum of L_b), as the packer writes it.
    cfg : In(config_layout())
        Sampled together with ``cfg_ok`` when a tensor's first word is accepted.
        ``length`` (values, >= 1) and ``sign``/``exp_bits``/``man_bits`` are used here.
    cfg_ok : In(1)
        The settings are within the hardware's maxima.  If not, the tensor's
        words are consumed up to ``last`` and dropped, and ``unsupported`` is set.
    o : Out(stream of :func:`field_beat_layout`)
        ``ceil(length/N)`` beats per tensor; lanes beyond ``keep`` have zero fields.
        ``o.ready`` must not depend on ``o.valid``.
    unsupported : Out(1)
        Sticky: set when a tensor is refused, cleared when the next tensor's cfg is sampled.

    Micro-architecture
    ------------------
    * Input side: a 4-word register ring.  A word is taken when the ring
      holds fewer than 4 (registered level).  A tensor's settings go into a
      2-entry queue when its first word is taken (the decode side may still
      be working on the previous tensor, whose tail is in the ring); the first
      word of a third tensor waits for a free entry.
    * Stage 1 (decode): with bit offset ``o`` into the ring's head word, the
      beat's ``k*v`` bits are ``{ring[1], ring[0]} >> o`` (one 2W-to-W
      funnel shifter); the beat needs 1 word if ``o + k*v <= W``, else 2.
      ``o`` advances by ``k*v`` and a word is popped when it is used up; at a
      block's last beat the rest of the word is padding: pop it and set ``o = 0``
      (up to two pops in that cycle).
    * Stage 2: the split tree (:func:`split_records`) and the per-lane field
      extraction, registered as the ``o`` payload.

    Latency: a beat is on ``o`` 2 cycles after its last word entered the ring
    (3 cycles from the word's handshake on ``i``).

    Throughput: one beat per clock while ``o`` is ready and the words come
    without gaps.  A beat uses at most W bits, so besides a block's last beat
    it pops at most one word; a block of K beats is L_b <= K words long, so
    if its last beat pops two words, an earlier beat of the block popped
    none.  The ring is refilled one word per cycle, so after the first word
    of a stream the ring never holds fewer words than the next beat needs
    (1 at a block start, where ``o = 0``; at most 2 otherwise).  Tensor
    boundaries are block boundaries, and the next tensor's settings are
    already queued, so back-to-back tensors flow without a bubble as long
    as a tensor is longer than the ring (4 words).
    """

    RING = 4

    def __init__(self, p: HwParams):
        self.p = p
        super().__init__({
            "i": In(stream.Signature(word_layout(p))),
            "cfg": In(config_layout()),
            "cfg_ok": In(1),
            "o": Out(stream.Signature(field_beat_layout(p))),
            "unsupported": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        n, wbits, vmax = p.lanes, p.word, p.max_value_bits
        lg_n = n.bit_length() - 1
        beat_bits = n * vmax
        bpb = p.block // n                    # beats per full block

        # -- per-tensor settings queue ----------------------------------------
        entry = data.StructLayout({
            "cfg": config_layout(),
            "v": range(vmax + 1),
            "beats_m1": 32,                   # beats in the tensor - 1
            "tail": range(n + 1),             # lanes of the last beat
            "tail_bits": range(beat_bits + 1),
        })
        new = Signal(entry)
        cfg = self.cfg
        m.d.comb += [
            new.cfg.eq(cfg),
            new.v.eq(cfg.sign + cfg.exp_bits + cfg.man_bits),
            new.beats_m1.eq((cfg.length - 1) >> lg_n),
            new.tail.eq(((cfg.length - 1) & (n - 1)) + 1),
            new.tail_bits.eq(new.tail * new.v),
        ]
        q0, qn, q_push, q_pop = two_entry_queue(m, new)

        # -- input side: word ring -----------------------------------------------
        ring = Array(Signal(wbits, name=f"ring{i}") for i in range(self.RING))
        rp = Signal(2)
        wp = Signal(2)
        level = Signal(range(self.RING + 1))
        pops = Signal(range(3))
        in_first = Signal(init=1)             # the next word starts a tensor
        dropping = Signal()                   # inside a refused tensor

        refuse_now = in_first & ~self.cfg_ok
        take = Signal()                       # the word goes into the ring
        with m.If(dropping | refuse_now):
            m.d.comb += self.i.ready.eq(1)
        with m.Else():
            m.d.comb += self.i.ready.eq((level < self.RING) & (~in_first | (qn < 2)))
        fire = self.i.valid & self.i.ready
        m.d.comb += take.eq(fire & ~dropping & ~refuse_now)
        with m.If(fire):
            m.d.sync += in_first.eq(self.i.payload.last)
            with m.If(in_first):
                m.d.sync += self.unsupported.eq(~self.cfg_ok)
                m.d.sync += dropping.eq(~self.cfg_ok & ~self.i.payload.last)
            with m.Elif(self.i.payload.last):
                m.d.sync += dropping.eq(0)
        m.d.comb += q_push.eq(take & in_first)
        with m.If(take):
            m.d.sync += [ring[wp].eq(self.i.payload.data), wp.eq(wp + 1)]
        m.d.sync += [rp.eq(rp + pops), level.eq(level + take - pops)]

        # -- stage 1: decode ---------------------------------------------------
        o = self.o
        en = Signal()
        m.d.comb += en.eq(o.ready | ~o.valid)

        t = Signal(32)                        # beat in tensor
        bb = Signal(range(max(bpb, 2)))       # beat in block
        off = Signal(range(wbits))            # bit offset into ring[rp]
        final = Signal()
        bend = Signal()
        nbits = Signal(range(beat_bits + 1))
        end = Signal(range(2 * wbits))
        m.d.comb += [
            final.eq(t == q0.beats_m1),
            bend.eq(final | (bb == bpb - 1)),
        ]
        with m.If(final):
            m.d.comb += nbits.eq(q0.tail_bits)
        with m.Else():
            m.d.comb += nbits.eq(q0.v << lg_n)
        m.d.comb += end.eq(off + nbits)
        two = end > wbits
        emit = Signal()
        m.d.comb += emit.eq(en & (qn != 0) & (level >= 1 + two))

        window = Cat(ring[rp], ring[(rp + 1)[:2]])
        shamt = _shift_amount(m, off, wbits - 1, "win_shamt")
        s1_valid = Signal()
        s1_raw = Signal(beat_bits)
        s1_keep = Signal(n)
        s1_last = Signal()
        s1_cfg = Signal(config_layout())
        s1_v = Signal(range(vmax + 1))
        with m.If(en):
            m.d.sync += s1_valid.eq(emit)
        with m.If(emit):
            keep = Signal(n)
            m.d.comb += keep.eq(Cat(*((q0.tail > j) | ~final for j in range(n))))
            m.d.sync += [
                s1_raw.eq((window >> shamt)[:beat_bits]),
                s1_keep.eq(keep),
                s1_last.eq(final),
                s1_cfg.eq(q0.cfg),
                s1_v.eq(q0.v),
            ]
            with m.If(bend):
                m.d.comb += pops.eq(1 + two)
                m.d.sync += [off.eq(0), bb.eq(0)]
            with m.Else():
                m.d.comb += pops.eq(end >= wbits)
                m.d.sync += [off.eq(end[:wbits.bit_length() - 1]), bb.eq(bb + 1)]
            with m.If(final):
                m.d.comb += q_pop.eq(1)
                m.d.sync += t.eq(0)
            with m.Else():
                m.d.sync += t.eq(t + 1)

        # -- stage 2: split into records and fields ----------------------------
        recs = split_records(m, s1_raw, s1_v, n, vmax)
        c = s1_cfg
        for j in range(n):
            f = o.payload.fields[j]
            rec = recs[j]
            man = Signal(len(f.man), name=f"man{j}")
            code = Signal(len(f.code), name=f"code{j}")
            mamt = _shift_amount(m, c.man_bits, p.max_man_bits, f"mamt{j}")
            samt = _shift_amount(m, c.man_bits + c.exp_bits, vmax - 1, f"samt{j}")
            m.d.comb += [
                man.eq(rec & Cat(*(i < c.man_bits for i in range(len(man))))),
                code.eq((rec >> mamt) & Cat(*(i < c.exp_bits for i in range(len(code))))),
            ]
            with m.If(en):
                m.d.sync += [
                    f.man.eq(man & s1_keep[j].replicate(len(man))),
                    f.code.eq(code & s1_keep[j].replicate(len(code))),
                    f.sign.eq((rec >> samt)[0] & c.sign & s1_keep[j]),
                ]
        with m.If(en):
            m.d.sync += [
                o.valid.eq(s1_valid),
                o.payload.keep.eq(s1_keep),
                o.payload.last.eq(s1_last),
                o.payload.cfg.eq(s1_cfg),
            ]
        return m
