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

from amaranth import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .params import HwParams

__all__ = ["WordPacker", "RecordConcat", "BitAccumulator", "CreditGate", "record_beat_layout", "bits_beat_layout",
           "word_layout", "len_layout", "RegFifo", "concat_records", "LEN_WIDTH", "delay", "Delays", "queue_depth",
           "LutQueue", "shift_amount", "shift_left_staged"]

#: Width of a block length on the ``m_len`` side stream (the ``.sfpc`` block index stores 4 bytes).
LEN_WIDTH = 32


def record_beat_layout(p: HwParams, lanes: int | None = None) -> data.StructLayout:
    """One beat of records into :class:`WordPacker` (``lanes`` records; default ``p.lanes``)."""
    n = p.lanes if lanes is None else lanes
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


def shift_amount(m: Module, amount, max_amount: int, name: str) -> Signal:
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
            amt = shift_amount(m, v << (nrec.bit_length() - 1), nrec * width, f"{prefix}_l{level}_{k // 2}_amt")
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



# -- pipelining helpers ----------------------------------------------------------

class _DistributedSyncFIFO(SyncFIFO):
    """SyncFIFO whose storage Yosys must map to LUT-RAM (``ram_style = "distributed"``): with the
    output register of :class:`LutQueue` after it, Yosys would otherwise make the read synchronous
    and choose block RAM."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.submodules.storage.attrs["ram_style"] = "distributed"
        return m


class LutQueue(wiring.Component):
    """Amaranth's :class:`~amaranth.lib.fifo.SyncFIFO` (asynchronous read: LUT-RAM) with a registered output.

    :class:`~amaranth.lib.fifo.SyncFIFOBuffered` reads synchronously, so
    Yosys puts deeper queues into DP16KD block RAM, whose clock-to-output
    (about 4-5 ns on the -6 part) alone nearly fills a 200 MHz clock before
    any logic.  Here the storage must be LUT-RAM and its read goes straight
    into a register.  Same port names as the Amaranth FIFOs (``w_en``,
    ``w_data``, ``w_rdy``, ``r_en``, ``r_data``, ``r_rdy``, ``level``: the
    entries held, output register included); holds ``depth + 1`` entries.
    Latency: 2 clocks from ``w_en`` to ``r_rdy``.
    """

    def __init__(self, width: int, depth: int):
        self.width, self.depth = width, depth
        super().__init__({
            "w_en": In(1), "w_data": In(width), "w_rdy": Out(1),
            "r_en": In(1), "r_data": Out(width), "r_rdy": Out(1),
            "level": Out(range(depth + 2)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = _DistributedSyncFIFO(width=self.width, depth=self.depth)
        m.d.comb += [fifo.w_en.eq(self.w_en), fifo.w_data.eq(self.w_data), self.w_rdy.eq(fifo.w_rdy)]
        m.d.comb += self.level.eq(fifo.level + self.r_rdy)
        take = fifo.r_rdy & (~self.r_rdy | self.r_en)
        m.d.comb += fifo.r_en.eq(take)
        with m.If(take):
            m.d.sync += [self.r_data.eq(fifo.r_data), self.r_rdy.eq(1)]
        with m.Elif(self.r_en):
            m.d.sync += self.r_rdy.eq(0)
        return m


def delay(m: Module, x, n: int, name: str = "d"):
    """``x`` delayed by ``n`` clocks through registers with no enable (free-running)."""
    for i in range(n):
        r = Signal(x.shape(), name=f"{name}_z{i + 1}") if isinstance(x, data.View) \
            else Signal(Value.cast(x).shape(), name=f"{name}_z{i + 1}")
        m.d.sync += r.eq(x)
        x = r
    return x


class Delays:
    """``reg(x)``: a register loaded with ``x`` every clock (names ``prefix``_k)."""

    def __init__(self, m: Module, prefix: str):
        self.m, self.prefix, self.k = m, prefix, 0

    def __call__(self, x):
        self.k += 1
        return delay(self.m, x, 1, f"{self.prefix}{self.k}")


def queue_depth(latency: int) -> int:
    """Depth of an output queue behind a credit-gated pipeline of ``latency`` beats in flight.

    :class:`CreditGate` admits a beat while (beats in flight + entries queued)
    stays :attr:`CreditGate.MARGIN` below the depth, so with an always-ready
    sink the queue never limits the rate when it is at least ``latency + 10`` deep.
    """
    d = 16
    while d < latency + 10:
        d *= 2
    return d


def shift_left_staged(m: Module, x, amount, weight_log2: int, width: int, bits_per_stage: int,
                      reg, orin=None, rotate: bool = False, name: str = "sh"):
    """``x << (amount << weight_log2)`` in ``width`` bits (or a rotation), registered after every
    ``bits_per_stage`` bits of ``amount``; ``orin`` is ORed in at the last stage.

    Returns ``(result, stages)``; ``amount`` is delayed inside, ``orin`` must be
    given already delayed by ``stages - 1``.  Each stage is a
    ``2^bits_per_stage``-input multiplexer per bit (constant shifts are wiring).
    ``name`` prefixes the stages' signals (``name_0``, ...; Amaranth numbers repeats).
    """
    x = Value.cast(x)
    x = Cat(x, Const(0, width - len(x)))[:width] if len(x) < width else x[:width]
    amount = Value.cast(amount)
    nb = len(amount)
    stages = 0
    for lo in range(0, nb, bits_per_stage):
        hi = min(lo + bits_per_stage, nb)
        part = amount[lo:hi]
        nxt = Signal(width, name=f"{name}_{lo}")
        with m.Switch(part):
            for c in range(1 << (hi - lo)):
                k = (c << (lo + weight_log2))
                if rotate:
                    k %= width
                    val = Cat(x[width - k:], x[:width - k]) if k else x
                else:
                    val = Cat(Const(0, k), x)[:width] if k < width else Const(0, width)
                with m.Case(c):
                    m.d.comb += nxt.eq(val)
        last = hi == nb
        if last and orin is not None:
            x = reg(nxt | orin)
        else:
            x = reg(nxt)
        amount = reg(amount)
        stages += 1
    return x, stages


# -- the word back end -------------------------------------------------------------

def bits_beat_layout(p: HwParams, width: int | None = None) -> data.StructLayout:
    """One beat of bits into :class:`BitAccumulator`: a chunk of up to ``width`` bits (default N*Vmax)."""
    width = p.lanes * p.max_value_bits if width is None else width
    return data.StructLayout({
        "bits": width,                                 # LSB-first, zero above nbits
        "nbits": range(width + 1),
        "flush": 1,
        "last": 1,
    })


class RecordConcat(wiring.Component):
    """Concatenates a beat's N records LSB-first (format.md 4.1), pipelined.

    The same tree as :func:`concat_records` (level k merges neighbouring
    chunks, ``lo | hi << (v << k)``), with each level's shifter cut into
    register stages of :attr:`BITS_PER_STAGE` bits of ``v`` and the OR folded
    into the last.  Beside it, the beat's bit count ``count * v`` is a
    shift-and-add of two register stages.

    ``lanes`` (default ``p.lanes``) is the records per beat: the Gecko build
    concatenates rows of 8 (:class:`sfp.hw.gecko_stage.GeckoStage`).

    Ports: ``i`` (records, :func:`record_beat_layout`), ``o``
    (:func:`bits_beat_layout`); both always ready: the stage takes one beat
    per clock, free-running, and the caller's credit gate stops beats upstream.

    Latency: ``latency`` clocks (6 for N = 8 with a 16-bit record maximum).
    """

    BITS_PER_STAGE = 3

    @classmethod
    def latency_of(cls, p: HwParams, lanes: int | None = None) -> int:
        vb = p.max_value_bits.bit_length()
        levels = ((p.lanes if lanes is None else lanes) - 1).bit_length()
        return max(levels * -(-vb // cls.BITS_PER_STAGE), 2)

    def __init__(self, p: HwParams, lanes: int | None = None):
        self.p = p
        self.lanes = p.lanes if lanes is None else lanes
        self.latency = self.latency_of(p, self.lanes)
        super().__init__({
            "i": In(stream.Signature(record_beat_layout(p, self.lanes), always_ready=True)),
            "o": Out(stream.Signature(bits_beat_layout(p, self.lanes * p.max_value_bits), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        n, vmax = self.lanes, p.max_value_bits
        reg = Delays(m, "cat")
        ib = self.i.payload
        chunks = [(ib.recs[j], vmax) for j in range(n)]
        v = ib.v
        stages = 0
        level = 0
        while len(chunks) > 1:
            merged = []
            st = 0
            for k in range(0, len(chunks), 2):
                (lo, wlo), (hi, whi) = chunks[k], chunks[k + 1]
                nst = -(-len(v) // self.BITS_PER_STAGE)
                lo_d = delay(m, lo, nst - 1, f"cat_l{level}_{k}_lo")
                out, st = shift_left_staged(m, hi, v, level, wlo + whi, self.BITS_PER_STAGE,
                                            reg, orin=Cat(lo_d, Const(0, whi)), name=f"cat_sh{level}_{k}")
                merged.append((out, wlo + whi))
            chunks = merged
            v = delay(m, v, st, f"cat_v{level}")
            stages += st
            level += 1
        bits = chunks[0][0]
        bits = delay(m, bits, self.latency - stages, "cat_pad")

        # count * v: partial products of the count's bits, added in two stages
        cnt, vv = ib.count, ib.v
        pps = [Mux(cnt[b], vv << b, 0) for b in range(len(cnt))]
        half = (len(pps) + 1) // 2
        s1a = reg(sum(pps[:half]))
        s1b = reg(sum(pps[half:]) if pps[half:] else Const(0, 1))
        nbits = delay(m, reg(s1a + s1b), self.latency - 2, "cat_nb")

        o = self.o.payload
        m.d.comb += [
            self.o.valid.eq(delay(m, self.i.valid, self.latency, "cat_valid")),
            o.bits.eq(bits),
            o.nbits.eq(nbits),
            o.flush.eq(delay(m, ib.flush, self.latency, "cat_flush")),
            o.last.eq(delay(m, ib.last, self.latency, "cat_last")),
        ]
        return m


class BitAccumulator(wiring.Component):
    """Cuts the bit stream into W-bit words, pads each block to a word and counts its words.

    Parameters
    ----------
    p : HwParams
    depth : int
        Depth of the word and the length queues (see :func:`queue_depth`).

    Ports
    -----
    i : In(stream of :func:`bits_beat_layout`, always ready)
        One beat per clock at most; the caller's :class:`CreditGate` keeps
        the queues from overflowing.
    words : Out(stream of {data: W, last: 1}); lens : Out(stream of {data: 32, last: 1})
    retire : Out(1)
        A beat left the accumulator this cycle (for the credit gate).
    words_queued, lens_queued : Out(range(depth + 2))
        Entries written and not yet taken (registered).

    Pipeline (no enable; each beat's positions are computed ahead)
    -----------------------------------------------------------------
    1. *fill*: the only loop, ``fill' = flush ? 0 : (fill + nbits) mod W``
       (W a power of two), gives the beat's start position ``fill``, whether
       it completes a word (``full``) and how many words it writes (0, 1, 2);
       the mask of the bits below ``fill`` is decoded and registered.  At a
       block end the block length is written into the length queue one
       clock later.
    2. *rotate*: the beat's bits rotated left by ``fill`` in W bits,
       :attr:`BITS_PER_STAGE` bits of ``fill`` per register stage.
    3. *accumulate*: ``acc | rotated`` above the mask is the current word,
       the rotated bits below it the next one (N*Vmax <= W, so they never
       overlap): one LUT level.  Words go through a one-word pending register
       into the word queue (at most one write per clock: a two-word beat only
       ends a block, and a block whose last beat writes two words has a beat
       that wrote none, so the pending word always drains in time).

    Latency: ``latency`` clocks from ``i`` to the write into the queues, plus 2
    through the queue.

    Chunks wider than a word (``chunk_bits > W``: the Gecko build's rows,
    :class:`sfp.hw.gecko_stage.GeckoStage`): a beat may complete up to
    ``K = words_per_beat(p, chunk_bits)`` words.  Same three steps and the
    same latency, but step 2 shifts the chunk up by ``fill`` into
    ``W - 1 + chunk_bits`` bits (no rotation), step 3 hands word j of the
    beat to word queue ``(wsel + j) mod KQ`` of KQ interleaved queues (K
    rounded up to a power of two; ``depth`` words in all), read round
    robin, so no queue takes two words in a clock.  The caller's gate must
    then count K words per beat in flight (:class:`CreditGate` weights).
    A plain build (``chunk_bits <= W``) builds exactly the one-queue path.
    """

    BITS_PER_STAGE = 2

    @classmethod
    def latency_of(cls, p: HwParams) -> int:
        """Clocks from ``i`` to the queue write: fill, the rotate stages, accumulate."""
        return 1 + -(-(p.word - 1).bit_length() // cls.BITS_PER_STAGE) + 1

    @staticmethod
    def words_per_beat(p: HwParams, chunk_bits: int | None = None) -> int:
        """K: most words one beat of ``chunk_bits`` bits can complete (1 when the chunk fits a word)."""
        chunk = p.lanes * p.max_value_bits if chunk_bits is None else chunk_bits
        return 1 if chunk <= p.word else -(-(p.word - 1 + chunk) // p.word)

    def __init__(self, p: HwParams, depth: int = 32, chunk_bits: int | None = None):
        self.p = p
        self.depth = depth
        self.chunk_bits = p.lanes * p.max_value_bits if chunk_bits is None else chunk_bits
        self.k_words = self.words_per_beat(p, self.chunk_bits)
        self.latency = self.latency_of(p)
        super().__init__({
            "i": In(stream.Signature(bits_beat_layout(p, self.chunk_bits), always_ready=True)),
            "words": Out(stream.Signature(word_layout(p))),
            "lens": Out(stream.Signature(len_layout())),
            "retire": Out(1),
            "words_queued": Out(range(depth + 2)),
            "lens_queued": Out(range(depth + 2)),
        })

    @staticmethod
    def _block_lengths(m: Module, lq, max_block_words: int, f_valid, f_flush, f_nout, f_last):
        """Counts a block's words and writes its length L_b into ``lq`` with the block's last beat
        (``f_*``: the beat's registered fill-stage results; shared by both accumulator paths)."""
        blk_words = Signal(range(max_block_words + 1))
        with m.If(f_valid):
            m.d.sync += blk_words.eq(Mux(f_flush, 0, blk_words + f_nout))
        len_in = data.View(len_layout(), lq.w_data)
        m.d.comb += [
            lq.w_en.eq(f_valid & f_flush),
            len_in.data.eq(blk_words + f_nout),
            len_in.last.eq(f_last),
        ]

    def elaborate(self, platform):
        if self.k_words > 1:
            return self._elaborate_wide()
        m = Module()
        p = self.p
        wbits = p.word
        lw = (wbits - 1).bit_length()
        max_block_words = -(-p.block * p.max_value_bits // wbits)
        reg = Delays(m, "acc")
        ib = self.i.payload
        iv = self.i.valid

        wl = word_layout(p)
        m.submodules.wq = wq = LutQueue(wl.size, self.depth)
        m.submodules.lq = lq = LutQueue(len_layout().size, self.depth)

        # -- 1. fill ------------------------------------------------------------
        fill = Signal(lw)
        total = Signal(lw + 1)
        m.d.comb += total.eq(fill + ib.nbits)
        full = total[lw]
        rest = total[:lw]
        n_out = Signal(2)
        with m.If(ib.flush):
            m.d.comb += n_out.eq(Mux(full, Mux(rest != 0, 2, 1), total != 0))
        with m.Else():
            m.d.comb += n_out.eq(full)
        with m.If(iv):
            m.d.sync += fill.eq(Mux(ib.flush, 0, rest))
        f_valid, f_bits, f_fill = reg(iv), reg(ib.bits), reg(fill)
        f_full, f_nout, f_flush, f_last = reg(full), reg(n_out), reg(ib.flush), reg(ib.last)
        # the block's word count and length, one clock later (off the fill loop)
        self._block_lengths(m, lq, max_block_words, f_valid, f_flush, f_nout, f_last)

        # -- 2. rotate ----------------------------------------------------------
        rot, st = shift_left_staged(m, f_bits, f_fill, 0, wbits, self.BITS_PER_STAGE, reg, rotate=True,
                                    name="fill_rot")
        # beside it, the mask of the bits below fill (bit k: k < fill) in two
        # register stages: fill = 2^lo_w * a + b decodes into a > i, a == i, b > j,
        # then bit 2^lo_w * i + j = (a > i) | (a == i) & (b > j): one LUT
        lo_w = lw // 2
        C0 = Const(0, 1)
        a_f, b_f = f_fill[lo_w:], f_fill[:lo_w]
        na, nb = 1 << (lw - lo_w), 1 << lo_w
        a_gt = reg(Cat(*(a_f > i for i in range(na - 1)), C0))      # a > na - 1 never
        a_eq = reg(Cat(*(a_f == i for i in range(na))))
        b_gt = reg(Cat(*(b_f > j for j in range(nb - 1)), C0))
        below = reg(Cat(*(a_gt[i] | (a_eq[i] & b_gt[j]) for i in range(na) for j in range(nb))))
        assert st >= 2
        r_valid, r_below = delay(m, f_valid, st, "acc_rv"), delay(m, below, st - 2, "acc_rb")
        r_full, r_nout = delay(m, f_full, st, "acc_rf"), delay(m, f_nout, st, "acc_rn")
        r_flush, r_last = delay(m, f_flush, st, "acc_rfl"), delay(m, f_last, st, "acc_rl")

        # -- 3. accumulate --------------------------------------------------------
        acc = Signal(wbits)                          # bits of the current word below fill
        w0 = Signal(wbits)
        w1 = Signal(wbits)
        m.d.comb += [w0.eq(acc | (rot & ~r_below)), w1.eq(rot & r_below)]
        with m.If(r_valid):
            m.d.sync += acc.eq(Mux(r_flush, 0, Mux(r_full, w1, acc | rot)))
        n_in = Mux(r_valid, r_nout, 0)
        m.d.comb += self.retire.eq(r_valid)

        # at most one queue write per clock through the pending word
        pend = Signal(wl)
        pend_v = Signal()
        first = Signal(wl)
        second = Signal(wl)
        m.d.comb += [
            first.data.eq(w0), first.last.eq(r_last & (r_nout == 1)),
            second.data.eq(w1), second.last.eq(r_last),
        ]
        with m.If(pend_v):
            m.d.comb += [wq.w_en.eq(1), wq.w_data.eq(pend)]
            with m.If(n_in == 1):
                m.d.sync += pend.eq(first)
            with m.Elif(n_in == 0):
                m.d.sync += pend_v.eq(0)
        with m.Else():
            m.d.comb += [wq.w_en.eq(n_in != 0), wq.w_data.eq(first)]
            with m.If(n_in == 2):
                m.d.sync += [pend.eq(second), pend_v.eq(1)]

        # Never true (CreditGate and the pending-word argument above); named so
        # that a formal harness can assert it.
        overflow = Signal(name="overflow")
        m.d.comb += overflow.eq((wq.w_en & ~wq.w_rdy) | (lq.w_en & ~lq.w_rdy) | (pend_v & (n_in == 2)))

        # -- queues out, and what they hold for the credit gate -----------------
        wo = data.View(wl, wq.r_data)
        m.d.comb += [
            self.words.valid.eq(wq.r_rdy),
            self.words.payload.data.eq(wo.data),
            self.words.payload.last.eq(wo.last),
            wq.r_en.eq(self.words.ready),
            self.lens.valid.eq(lq.r_rdy),
            self.lens.payload.eq(lq.r_data),
            lq.r_en.eq(self.lens.ready),
        ]
        m.d.sync += [
            self.words_queued.eq(self.words_queued + n_in - (self.words.valid & self.words.ready)),
            self.lens_queued.eq(self.lens_queued + lq.w_en - (self.lens.valid & self.lens.ready)),
        ]
        return m


    def _elaborate_wide(self):
        """Chunks wider than a word (a Gecko slice): up to K words per beat into K interleaved queues.

        Same three steps as the narrow path, but the chunk is shifted (not
        rotated) by ``fill`` into K words, and word j of a beat goes to
        queue ``(wsel + j) mod KQ`` (KQ = K rounded up to a power of two), so
        no queue takes more than one word per clock; ``words`` reads the
        queues round robin, which gives the words back in order.
        """
        m = Module()
        p = self.p
        wbits, K = p.word, self.k_words
        kq = 1 << (K - 1).bit_length()
        lw = (wbits - 1).bit_length()
        max_block_words = -(-p.block * self.chunk_bits // wbits) + 1
        reg = Delays(m, "accw")
        ib = self.i.payload
        iv = self.i.valid

        wl = word_layout(p)
        bank_depth = max(2, self.depth // kq)
        wqs = []
        for q in range(kq):
            wq = LutQueue(wl.size, bank_depth)
            m.submodules[f"wq{q}"] = wq
            wqs.append(wq)
        m.submodules.lq = lq = LutQueue(len_layout().size, self.depth)

        # -- 1. fill: the only loop ----------------------------------------------
        fill = Signal(lw)
        total = Signal(range(wbits + self.chunk_bits))
        m.d.comb += total.eq(fill + ib.nbits)
        nfull = Signal(range(K + 1))
        rest = Signal(lw)
        m.d.comb += [nfull.eq(total >> lw), rest.eq(total[:lw])]
        n_out = Signal(range(K + 1))
        m.d.comb += n_out.eq(Mux(ib.flush, nfull + (rest != 0), nfull))
        with m.If(iv):
            m.d.sync += fill.eq(Mux(ib.flush, 0, rest))
        f_valid, f_bits, f_fill = reg(iv), reg(ib.bits), reg(fill)
        f_nfull, f_nout, f_flush, f_last = reg(nfull), reg(n_out), reg(ib.flush), reg(ib.last)
        self._block_lengths(m, lq, max_block_words, f_valid, f_flush, f_nout, f_last)

        # -- 2. shift the chunk up to fill (a beat ends below W - 1 + chunk <= K*W) ----
        sh, st = shift_left_staged(m, f_bits, f_fill, 0, wbits - 1 + self.chunk_bits, self.BITS_PER_STAGE, reg,
                                   name="fill_sh")
        sh = Cat(sh, Const(0, K * wbits - len(sh)))
        r_valid, r_nfull, r_nout = delay(m, f_valid, st, "accw_rv"), delay(m, f_nfull, st, "accw_rn"), \
            delay(m, f_nout, st, "accw_ro")
        r_flush, r_last = delay(m, f_flush, st, "accw_rfl"), delay(m, f_last, st, "accw_rl")

        # -- 3. accumulate: word j of the beat is chunk j of acc | shifted ------------
        acc = Signal(wbits)                      # bits of the current word below fill
        chunks = [acc | sh[:wbits]] + [sh[j * wbits:(j + 1) * wbits] for j in range(1, K)] + [Const(0, wbits)]
        with m.If(r_valid):
            m.d.sync += acc.eq(Mux(r_flush, 0, Array(chunks)[r_nfull]))
        n_in = Mux(r_valid, r_nout, 0)
        m.d.comb += self.retire.eq(r_valid)
        # (named: the formal harness taps them; a name is not inferred through a conditional)
        wsel = Signal(range(kq), name="wsel") if kq > 1 else Signal(1, name="wsel")
        m.d.sync += wsel.eq(wsel + n_in)
        for q, wq in enumerate(wqs):
            j = Signal(range(kq), name=f"accw_j{q}") if kq > 1 else Const(0, 1)
            if kq > 1:
                m.d.comb += j.eq(q - wsel)
            win = data.View(wl, wq.w_data)
            m.d.comb += [
                wq.w_en.eq(j < n_in),
                win.data.eq(Array(chunks[:kq] + [Const(0, wbits)] * (kq - len(chunks[:kq])))[j]),
                win.last.eq(r_last & (j == r_nout - 1)),
            ]

        # -- queues out: round robin ------------------------------------------------
        rsel = Signal(range(kq), name="rsel") if kq > 1 else Signal(1, name="rsel")
        wo = data.View(wl, Array(wq.r_data for wq in wqs)[rsel])
        m.d.comb += [
            self.words.valid.eq(Array(wq.r_rdy for wq in wqs)[rsel]),
            self.words.payload.data.eq(wo.data),
            self.words.payload.last.eq(wo.last),
        ]
        for q, wq in enumerate(wqs):
            m.d.comb += wq.r_en.eq(self.words.ready & (rsel == q))
        pop = self.words.valid & self.words.ready
        with m.If(pop):
            m.d.sync += rsel.eq(rsel + 1)
        m.d.comb += [
            self.lens.valid.eq(lq.r_rdy),
            self.lens.payload.eq(lq.r_data),
            lq.r_en.eq(self.lens.ready),
        ]
        m.d.sync += [
            self.words_queued.eq(self.words_queued + n_in - pop),
            self.lens_queued.eq(self.lens_queued + lq.w_en - (self.lens.valid & self.lens.ready)),
        ]
        return m


class CreditGate(wiring.Component):
    """``ready`` for a free-running pipeline in front of queues: admit a beat only if it fits.

    Counts the beats in flight (``fire`` adds one, ``retire`` takes one) and
    raises ``ready`` (a register) while, for every queue, beats in flight +
    entries queued <= depth - :attr:`MARGIN`.  Why that is enough: each beat
    in flight adds at most one entry per queue, except that k consecutive
    beats can write k + 1 words (a block's last beat writes two words only
    if an earlier beat of the block wrote none); the sum can grow by at most
    2 per clock (one beat admitted, one two-word beat retired), and the
    comparison sees a sum registered two clocks before the beat it admits
    (the sum and ``ready`` are both registers, to keep adders and compares
    off one path): 4 for the lag, 1 for the beat, 1 for its extra word.

    ``depths`` (default all ``depth``): each queue's own depth.
    ``weights`` (default all 1): entries a beat may add to each queue; a
    queue of weight K is tested as K * in flight + queued <= depth - K *
    MARGIN (the same argument with K entries per beat).  The Gecko build
    gates its stage's row issue with it (K words per row).

    Ports: ``fire``, ``retire``: In(1); ``queued``: In(array of ``queues`` counts); ``ready``: Out(1).
    """

    MARGIN = 6

    def __init__(self, depth: int, queues: int = 1, weights=None, depths=None, margin: int | None = None):
        self.depth = depth
        self.queues = queues
        self.weights = [1] * queues if weights is None else list(weights)
        self.depths = [depth] * queues if depths is None else list(depths)
        assert len(self.weights) == queues and len(self.depths) == queues
        self.max_depth = max(self.depths)
        self.margin = self.MARGIN if margin is None else margin
        super().__init__({
            "fire": In(1),
            "retire": In(1),
            "queued": In(data.ArrayLayout(range(self.max_depth + 2), queues)),
            "ready": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        inflight = Signal(range(self.max_depth + 2))
        m.d.sync += inflight.eq(inflight + self.fire - self.retire)
        ok = []
        for k in range(self.queues):
            w, d = self.weights[k], self.depths[k]
            total = Signal(range((w + 1) * self.max_depth + 4) if w != 1 else range(2 * self.max_depth + 4),
                           name=f"total{k}")
            m.d.sync += total.eq((inflight * w if w != 1 else inflight) + self.queued[k])
            ok.append(total <= d - w * self.margin)
        ready = Signal(init=1)                  # empty after reset
        m.d.sync += ready.eq(Cat(*ok).all())
        m.d.comb += self.ready.eq(ready)
        return m


class WordPacker(wiring.Component):
    """Concatenates record beats into W-bit words, padding each block to a word boundary.

    :class:`RecordConcat` -> :class:`BitAccumulator` behind a
    :class:`CreditGate`; the packer uses the same two stages.

    Parameters
    ----------
    p : HwParams
        Uses ``lanes`` N, ``word`` W and ``max_value_bits`` Vmax (N*Vmax <= W).

    Ports
    -----
    i : In(stream of :func:`record_beat_layout`)
        Records; ``flush`` on the last beat of every block (and of the tensor),
        ``last`` on the tensor's last beat.  ``i.ready`` is a register: it
        does not depend on ``i.valid``.
    words : Out(stream of {data: W, last: 1})
        Memory words in order; ``last`` on the tensor's final word.
    lens : Out(stream of {data: 32, last: 1})
        One entry per block: its length L_b in words; ``last`` on the tensor's last block.

    Latency: ``latency`` clocks from a beat's acceptance to its last word on ``words``.
    Throughput: one beat per clock while the sinks are ready.
    """

    #: Queue depth (None: :func:`queue_depth` of the pipeline) and credit margin (None:
    #: :attr:`CreditGate.MARGIN`); class attributes so that a formal harness can build smaller
    #: or deliberately broken variants (docs/verification.md).
    QUEUE_DEPTH: int | None = None
    GATE_MARGIN: int | None = None

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
        m.submodules.cat = cat = RecordConcat(p)
        depth = self.QUEUE_DEPTH or queue_depth(1 + cat.latency + BitAccumulator.latency_of(p))
        m.submodules.accum = acc = BitAccumulator(p, depth)
        m.submodules.gate = gate = CreditGate(depth, 2, margin=self.GATE_MARGIN)
        wiring.connect(m, cat.o, acc.i)
        wiring.connect(m, wiring.flipped(self.words), acc.words)
        wiring.connect(m, wiring.flipped(self.lens), acc.lens)
        fire = self.i.valid & gate.ready
        m.d.comb += [
            self.i.ready.eq(gate.ready),
            gate.fire.eq(fire),
            gate.retire.eq(acc.retire),
            gate.queued[0].eq(acc.words_queued),
            gate.queued[1].eq(acc.lens_queued),
        ]
        # register the accepted beat (the credit gate counts it from here)
        m.d.sync += [cat.i.valid.eq(fire), cat.i.payload.eq(self.i.payload)]
        return m
