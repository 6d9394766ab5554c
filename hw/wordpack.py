"""Word assembly of the packer: N variable-width records per beat into W-bit memory words.

:class:`WordPacker` is the back half of :class:`sfp.hw.packer.Packer`.  It knows
nothing about floating point: it takes beats of up to N *records* of
``v = s + e + m`` bits each (format.md 4.2, already formed and zero above
``v``), concatenates them LSB-first into the bit stream (format.md 4.1),
cuts the stream into little-endian W-bit words, pads every block to a
whole word (format.md 4.3) and reports each block's length in words.

It is also used alone by the fast unit tests, fed with records computed by
the golden model.
"""

from __future__ import annotations

from amaranth import Array, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import HwParams

__all__ = ["WordPacker", "record_beat_layout", "word_layout", "len_layout", "RegFifo", "concat_records", "LEN_WIDTH"]

#: Width of a block length on the ``m_len`` side stream (the ``.sfpc`` block index stores 4 bytes).
LEN_WIDTH = 32


def record_beat_layout(p: HwParams) -> data.StructLayout:
    """One beat of records into :class:`WordPacker`."""
    n = p.lanes
    return data.StructLayout({
        "recs": data.ArrayLayout(p.max_value_bits, n),  # lane j = record of value t*N+j, zero above v
        "v": range(p.max_value_bits + 1),               # record width s+e+m of this tensor
        "count": range(n + 1),                          # valid lanes (0..count-1); < N only on a tensor's last beat
        "flush": 1,                                     # this beat ends a block: pad to a word
        "last": 1,                                      # this beat ends the tensor
    })


def word_layout(p: HwParams) -> data.StructLayout:
    return data.StructLayout({"data": p.word, "last": 1})


def len_layout() -> data.StructLayout:
    return data.StructLayout({"data": LEN_WIDTH, "last": 1})


def _shift_amount(m: Module, amount, max_amount: int, name: str) -> Signal:
    """``amount`` in a signal just wide enough, so that a variable shift by it stays narrow."""
    s = Signal(range(max_amount + 1), name=name)
    m.d.comb += s.eq(amount)
    return s


def concat_records(m: Module, recs, v, width: int, prefix: str = "cat"):
    """OR-concatenate records ``recs[j] << j*v`` with a log2(N)-deep tree of shifters.

    Each level merges neighbouring chunks: ``lo | hi << (records in lo)*v``.
    Records in lo is a power of two, so the shift amount is ``v`` shifted by a
    constant (no multiplier), and level k needs only N/2^(k+1) shifters, each
    as wide as the chunk it makes: about N*Vmax*log2(N)/2 mux bits in all
    instead of N full-width shifters.  Records must be zero above ``v``.
    """
    chunks = [(r, width) for r in recs]      # (value, bits per record in the chunk... max width)
    nrec = 1
    level = 0
    while len(chunks) > 1:
        merged = []
        for k in range(0, len(chunks), 2):
            (lo, wlo), (hi, whi) = chunks[k], chunks[k + 1]
            amt = _shift_amount(m, v << (nrec.bit_length() - 1), nrec * width, f"{prefix}_l{level}_{k // 2}_amt")
            out = Signal(wlo + whi, name=f"{prefix}_l{level}_{k // 2}")
            m.d.comb += out.eq(lo | (hi << amt))
            merged.append((out, wlo + whi))
        chunks = merged
        nrec *= 2
        level += 1
    return chunks[0][0]


class RegFifo(wiring.Component):
    """A small register FIFO that takes up to ``wports`` entries per cycle and gives one.

    Ports: ``w_data`` (``wports`` entries), ``w_n`` (how many of them to write,
    in order; the caller guarantees room: see ``level``), ``level`` (entries
    held, registered), ``r``: the output stream (first-word-fall-through, its
    payload a mux of registers).  Depth is a power of two.
    """

    def __init__(self, layout, depth: int, wports: int = 1):
        assert depth & (depth - 1) == 0 and depth >= wports
        self.layout = layout
        self.depth = depth
        self.wports = wports
        super().__init__({
            "w_data": In(data.ArrayLayout(layout, wports)),
            "w_n": In(range(wports + 1)),
            "level": Out(range(depth + 1)),
            "r": Out(stream.Signature(layout)),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.depth
        mem = Array(Signal(self.layout, name=f"mem{i}") for i in range(d))
        ab = max(d.bit_length() - 1, 1)
        rp = Signal(ab)
        wp = Signal(ab)
        pop = self.r.valid & self.r.ready
        m.d.comb += [
            self.r.valid.eq(self.level != 0),
            self.r.payload.eq(mem[rp] if d > 1 else mem[0]),
        ]
        for i in range(d):
            for k in range(self.wports):
                # slot i receives write port k when it is the k-th free slot
                with m.If((self.w_n > k) & (((wp + k) & (d - 1)) == i)):
                    m.d.sync += mem[i].eq(self.w_data[k])
        m.d.sync += [
            wp.eq(wp + self.w_n),
            rp.eq(rp + pop),
            self.level.eq(self.level + self.w_n - pop),
        ]
        return m


class WordPacker(wiring.Component):
    """Concatenates record beats into W-bit words, padding each block to a word boundary.

    Parameters
    ----------
    p : HwParams
        Uses ``lanes`` N, ``word`` W and ``max_value_bits`` Vmax (N*Vmax <= W).

    Ports
    -----
    i : In(stream of :func:`record_beat_layout`)
        Records; ``flush`` on the last beat of every block (and of the tensor),
        ``last`` on the tensor's last beat.  ``i.ready`` does not depend on
        ``i.valid`` (it is a function of registered FIFO levels).
    words : Out(stream of {data: W, last: 1})
        Memory words in order; ``last`` on the tensor's final word.
    lens : Out(stream of {data: 32, last: 1})
        One entry per block: its length L_b in words; ``last`` on the tensor's last block.

    Pipeline: (1) the concatenation tree (:func:`concat_records`) into a
    register holding the beat's bits and their count k*v; (2) the bit
    accumulator ``acc`` (< W bits held, zero above ``fill``): the beat is
    ORed in at bit ``fill`` (one W-to-2W shifter); when ``fill + k*v >= W``
    the low word is written.  At a block end the padded remainder is written
    too; that can be a second word in the same cycle.  Words go into a
    4-entry register FIFO with two write ports; block lengths into a 2-entry
    FIFO.

    Latency: a beat's bits are in a word on ``words`` 2 cycles after the beat
    is accepted (when that beat completes the word).

    Throughput: one beat per clock while the sinks are ready.  ``i.ready`` is
    ``word FIFO level <= 2 and length FIFO level <= 1``.  Why the word FIFO
    never reaches 3 with an always-ready sink: a beat adds k*v <= N*Vmax <= W
    bits, so it completes at most one full word, plus, on a block's last
    beat, the padded partial word.  A block of K beats is L_b =
    ceil(count*v/W) <= ceil(count/N) = K words long, so if its last beat
    writes two words, its first K-1 beats wrote at most K-2: at least one of
    them wrote none.  The FIFO drains one word per cycle; a one-word cycle
    keeps the level, a zero-word cycle lowers it, a two-word cycle raises
    it, and between two two-word cycles there is a zero-word cycle, so the
    level after a write never exceeds 2 (starting from 0; blocks of one
    beat never write two words).  Tensor boundaries are block boundaries
    with ``fill`` reset to 0, so the same holds across tensors of different
    widths.  The length FIFO gets at most one entry per cycle and, drained
    every cycle, holds at most 1.
    """

    WORD_FIFO_DEPTH = 4
    LEN_FIFO_DEPTH = 2

    def __init__(self, p: HwParams):
        self.p = p
        super().__init__({
            "i": In(stream.Signature(record_beat_layout(p))),
            "words": Out(stream.Signature(word_layout(p))),
            "lens": Out(stream.Signature(len_layout())),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        n, wbits, vmax = p.lanes, p.word, p.max_value_bits
        beat_bits = n * vmax
        max_block_words = -(-p.block * vmax // wbits)

        m.submodules.wfifo = wfifo = RegFifo(word_layout(p), self.WORD_FIFO_DEPTH, wports=2)
        m.submodules.lfifo = lfifo = RegFifo(len_layout(), self.LEN_FIFO_DEPTH, wports=1)
        wiring.connect(m, wiring.flipped(self.words), wfifo.r)
        wiring.connect(m, wiring.flipped(self.lens), lfifo.r)

        # One enable for the whole pipeline, from registered levels only (no
        # combinational path from the sinks' ready to i.ready): room for the
        # worst case of one cycle, two words and one length.
        en = Signal()
        m.d.comb += [
            en.eq((wfifo.level <= self.WORD_FIFO_DEPTH - 2) & (lfifo.level <= self.LEN_FIFO_DEPTH - 1)),
            self.i.ready.eq(en),
        ]

        # -- stage 1: concatenate the beat's records ------------------------
        ib = self.i.payload
        cat = concat_records(m, [ib.recs[j] for j in range(n)], ib.v, vmax)
        nbits = Signal(range(beat_bits + 1))
        m.d.comb += nbits.eq(ib.count * ib.v)

        s1_valid = Signal()
        s1_bits = Signal(beat_bits)
        s1_n = Signal(range(beat_bits + 1))
        s1_flush = Signal()
        s1_last = Signal()
        with m.If(en):
            m.d.sync += [
                s1_valid.eq(self.i.valid),
                s1_bits.eq(cat[:beat_bits]),
                s1_n.eq(nbits),
                s1_flush.eq(ib.flush),
                s1_last.eq(ib.last),
            ]

        # -- stage 2: bit accumulator ----------------------------------------
        acc = Signal(wbits)                 # stream bits not yet written; zero at and above fill
        fill = Signal(range(wbits))
        blk_words = Signal(range(max_block_words + 1))   # words of the current block written so far

        shamt = _shift_amount(m, fill, wbits - 1, "acc_shamt")
        combined = Signal(2 * wbits)
        m.d.comb += combined.eq(acc | (s1_bits << shamt))
        total = Signal(range(2 * wbits))
        m.d.comb += total.eq(fill + s1_n)
        full = total >= wbits
        rest = Signal(range(wbits))         # bits beyond the first word
        m.d.comb += rest.eq(total[:wbits.bit_length() - 1])   # total mod W: total - W when full (W is a power of two)
        lo = combined[:wbits]
        hi = combined[wbits:]

        n_out = Signal(range(3))
        first_last = Signal()               # tensor-last flag on write port 0 / 1
        second_last = Signal()
        m.d.comb += [
            wfifo.w_data[0].data.eq(lo),
            wfifo.w_data[1].data.eq(hi),
            wfifo.w_data[0].last.eq(first_last),
            wfifo.w_data[1].last.eq(second_last),
        ]
        with m.If(en & s1_valid):
            with m.If(s1_flush):
                # Block end: write the full word if any, then the padded rest.
                with m.If(full):
                    with m.If(rest != 0):
                        m.d.comb += [n_out.eq(2), second_last.eq(s1_last)]
                    with m.Else():
                        m.d.comb += [n_out.eq(1), first_last.eq(s1_last)]
                with m.Elif(total != 0):
                    m.d.comb += [n_out.eq(1), first_last.eq(s1_last)]
                m.d.sync += [acc.eq(0), fill.eq(0), blk_words.eq(0)]
                m.d.comb += [
                    lfifo.w_n.eq(1),
                    lfifo.w_data[0].data.eq(blk_words + n_out),
                    lfifo.w_data[0].last.eq(s1_last),
                ]
            with m.Else():
                with m.If(full):
                    m.d.comb += n_out.eq(1)
                    m.d.sync += [acc.eq(hi), fill.eq(rest)]
                with m.Else():
                    m.d.sync += [acc.eq(lo), fill.eq(total)]
                m.d.sync += blk_words.eq(blk_words + n_out)
        m.d.comb += wfifo.w_n.eq(n_out)
        return m
