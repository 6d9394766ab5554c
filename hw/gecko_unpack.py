"""The Gecko decoder: the Gecko-layout DRAM image and its block index in, container fields out (format.md 4-5, issue #4).

:class:`GeckoDecoder` reads the words :class:`sfp.hw.gecko_pack.GeckoEncoder`
(or ``sfp.model.container.encode_image(..., gecko=True)``) writes, with the
block index L_0, L_1, ... on a side stream, and returns the fields of every
value, exactly ``sfp.model.quantize.to_fields(...)``.  A block is Gecko-coded
iff L_b < ceil(count_b*v/W) (format.md 5), else plain.  With
``cfg.gecko = 0`` every block is plain (format.md 4) and no block index is
read, so the unit can stand in for :class:`sfp.hw.wordunpack.WordUnpacker`.
"""

from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .gecko_common import QCAP, SLICE, check_gecko_params, lane_mask, prefix_sums, settings_layout, slice_max_bits
from .params import HwParams, config_layout, fields_layout
from .lane import cfg_supported
from .status import status_layout
from .wordpack import _shift_amount, len_layout, word_layout
from .wordunpack import ErrorKind


def decoder_beat_layout(p: HwParams) -> data.StructLayout:
    """One beat of fields out of :class:`GeckoDecoder`, with the tensor's settings."""
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

__all__ = ["GeckoDecoder"]


def _log2(x: int) -> int:
    assert x & (x - 1) == 0
    return x.bit_length() - 1


def _prefix_count(m: Module, bits, width: int, prefix: str):
    """Inclusive prefix counts of ``bits`` (list of 1-bit values), Sklansky tree: log2(len) adder levels."""
    x = []
    for i, b in enumerate(bits):
        s = Signal(width, name=f"{prefix}_0_{i}")
        m.d.comb += s.eq(b)
        x.append(s)
    n = len(x)
    d = 0
    while (1 << d) < n:
        y = []
        for p in range(n):
            if (p >> d) & 1:
                src = ((p >> d) << d) - 1
                s = Signal(width, name=f"{prefix}_{d + 1}_{p}")
                m.d.comb += s.eq(x[p] + x[src])
                y.append(s)
            else:
                y.append(x[p])
        x = y
        d += 1
    return x


class GeckoDecoder(wiring.Component):
    """Reads Gecko (or plain) container images and emits N values' fields per clock.

    Parameters
    ----------
    p : HwParams
        The encoder's parameters: lanes N in {1, 2, 4, 8}, word W, block B,
        group G (multiple of 8), field maxima.  Others raise ``ParamError``.

    Ports
    -----
    i : In(stream of {data: W, last: 1})
        The image, tensor after tensor (sum of L_b words each, as written),
        ``last`` on each tensor's final word.
    lens : In(stream of {data: 32, last: 1})
        The block index, one L_b per block, in order (the DMA engine has it
        anyway: it fetched the words with it).  Only read for tensors with
        ``cfg.gecko = 1``; ``last`` is not used.
    cfg : In(config_layout())
        Sampled when a tensor's first word is accepted: ``length`` (values,
        >= 1), ``man_bits``, ``exp_bits``, ``sign``, ``gecko``.
    o : Out(stream of :func:`sfp.hw.wordunpack.decoder_beat_layout`)
        ``ceil(length/N)`` beats per tensor: ``fields[j]`` of value t*N+j,
        ``keep`` the valid-lane prefix mask (all ones except maybe on the
        last beat; fields outside it are 0), ``last`` on the tensor's last
        beat, ``cfg`` the tensor's settings.  The same stream as
        :class:`WordUnpacker`'s ``o``; ``o.ready`` must not depend on ``o.valid``.

    Micro-architecture
    ------------------
    * Input: a ring of ``RING`` words (registers; a word is taken when the
      ring is not full), a 2-entry queue of tensor settings pushed by each
      tensor's first word, a 3-entry FIFO on ``lens``.
    * D0, the loop: one slice (8 values) per clock from the bit pointer
      (ring slot, offset): the ``KW``-word window at the pointer (a
      ``KW*W``-bit funnel shift); the group header when the slice is its
      group's first (b, z, k then kept for the group's other slices); the
      remainders' length n*k; the unary window's first n zeros from a prefix
      count of its zero bits (a Sklansky tree over 72 bits), giving each
      quotient, the escapes and the unary length; the exceptions' length
      (escapes * e); then the slice's length and the new pointer.  A slice
      is decoded only when the words it reaches are in the ring (its end is
      checked against the ring level: a parse whose end lies within the
      available bits read only available bits).  At a block's last slice
      the pointer moves to the next word boundary (the padding; valid
      streams end there at word L_b).  Plain blocks: n*v bits per slice.
    * D1: from the registered window: remainders, symbols -> codes (or the
      exceptions / raw codes, placed by a prefix count of escapes), the
      sign/mantissa records (split tree) or the plain records; registered
      as an 8-value slice.
    * Output: the slice is sent as 8/N beats of N values (1 beat at N = 8).

    Combinational loop (sets Fmax): ring slot/offset registers -> window
    mux and funnel shift -> header field (variable shift by e) -> shift by
    n*k -> 72-bit zero prefix count (7 adder levels) -> 8 one-hot position
    encoders -> quotient subtractions, escape count -> length sum (5 terms)
    -> pointer add and the words-available compare.  Everything that does
    not feed the next pointer (field extraction) is in D1.

    Latency: a slice's fields are on ``o`` 2 clocks after it is decoded,
    i.e. 3 clocks after the word holding its end was accepted.

    Throughput: one slice per clock at N = 8 (N values per clock for any N)
    while words come without gaps and ``o`` is ready, with no bubble at
    group, block or tensor boundaries (the header is parsed with its
    group's first slice; the next tensor's settings are queued).  A block
    of K rows is at most K words long (L_b <= plain words), so the ring,
    refilled one word per clock, keeps up on average; a slice longer than
    the ring's surplus (a burst of escapes, up to 3 words) waits for its
    words, which costs clocks only when such slices come faster than one
    word per clock.  ``RING`` = 2*KW words of slack absorb that.  Measured
    with ready sinks and gapless words on real tensors: 1.0 beats/clock in
    the steady state for N = 1..8 (one bubble at a stream's start, while
    the ring fills: 0.996 over 256 beats at N = 2).

    Damaged streams (docs/format.md 8, model ``sfp.model.stream``): the
    window reads every word past the tensor's ``last`` word as zero; each
    slice is checked for a ``b = 0`` header with ``z``/``k`` set, a unary
    run over the cap, a negative code, an end past its block's ``L_b``
    words or a block ending short (``corrupt``), a word needed past
    ``last`` or an entry above the plain length (``length_error``).  An
    error is acted on only once the words it was computed from are final
    (the ``last`` word is in the ring, or ``KW`` words are).  Then
    :class:`Mode` ``ZERO``: the rest of the tensor's slices are zero (one
    per clock, block-index entries still read) while its words are popped
    up to ``last``; ``DRAIN``: words popped after the last slice.  A refused
    tensor (``cfg_supported`` false or ``length = 0``) goes the same way.
    ``status`` gets one entry per tensor (ready is not waited for).
    """

    class Mode(enum.Enum, shape=2):
        """D0's handling of the head tensor."""
        RUN = 0        # decoding slices
        ZERO = 1       # after an error (or refused): zero slices, words popped towards `last`
        DRAIN = 2      # every slice out; words popped up to `last`

    def __init__(self, p: HwParams):
        check_gecko_params(p)
        self.p = p
        smax = slice_max_bits(p)
        self.kw = -(-(p.word - 1 + smax) // p.word)         # window words
        self.ring = 1 << (2 * self.kw - 1).bit_length()
        super().__init__({
            "i": In(stream.Signature(word_layout(p))),
            "lens": In(stream.Signature(len_layout())),
            "cfg": In(config_layout()),
            "o": Out(stream.Signature(decoder_beat_layout(p))),
            "status": Out(stream.Signature(status_layout())),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        N, W, B, G = p.lanes, p.word, p.block, p.group
        emax, mmax = p.max_exp_bits, p.max_man_bits
        mw = max(mmax, 1)
        vmax = 1 + emax + mmax
        smmax = 1 + mmax
        hmax = emax + 3
        smax = slice_max_bits(p)
        KW, RING = self.kw, self.ring
        lgW, lgB, lgR = _log2(W), _log2(B), _log2(RING)
        R = B // SLICE
        SPG = G // SLICE
        una_w = SLICE * (QCAP + 1)

        # -- per-tensor settings queue ------------------------------------------
        entry = data.StructLayout({
            "cfg": config_layout(), "set": settings_layout(), "v": range(vmax + 1),
            "nb_m1": 32, "tail": range(B + 1), "pw_full": 32, "pw_tail": 32,
            "ok": 1, "empty": 1,
        })
        new = Signal(entry)
        c = self.cfg
        v_new = c.sign + c.exp_bits + c.man_bits
        tail = ((c.length - 1) & (B - 1)) + 1
        m.d.comb += [
            new.cfg.eq(c),
            new.set.s.eq(c.sign), new.set.e.eq(c.exp_bits), new.set.m.eq(c.man_bits), new.set.gecko.eq(c.gecko),
            new.v.eq(v_new),
            new.nb_m1.eq((c.length - 1) >> lgB),
            new.tail.eq(tail),
            new.pw_full.eq(((v_new << lgB) + W - 1) >> lgW),
            new.pw_tail.eq((tail * v_new + W - 1) >> lgW),
            new.ok.eq(cfg_supported(p, c) & (c.length != 0)),
            new.empty.eq(c.length == 0),
        ]
        q0, qn, q_push, q_pop = two_entry_queue(m, new)

        # -- word ring ------------------------------------------------------------
        ring = Array(Signal(W, name=f"ring{i}") for i in range(RING))
        ring_last = Signal(RING)              # the slot holds its tensor's last word
        rp = Signal(lgR)
        wp = Signal(lgR)
        level = Signal(range(RING + 1))
        pops = Signal(range(KW + 2))
        in_first = Signal(init=1)
        m.d.comb += self.i.ready.eq((level < RING) & (~in_first | (qn < 2)))
        take = self.i.valid & self.i.ready
        with m.If(take):
            m.d.sync += [in_first.eq(self.i.payload.last), ring[wp].eq(self.i.payload.data), wp.eq(wp + 1),
                         ring_last.bit_select(wp, 1).eq(self.i.payload.last)]
        m.d.comb += q_push.eq(take & in_first)
        m.d.sync += [rp.eq(rp + pops), level.eq(level + take - pops)]

        # depth 3, not 2: SyncFIFOBuffered(depth=2) has a 1-entry inner memory with a
        # zero-width address, [-1:0] in the Verilog (verilator -Wall ASCRANGE).
        m.submodules.lfifo = lfifo = fifo.SyncFIFOBuffered(width=32, depth=3)
        m.d.comb += [
            lfifo.w_data.eq(self.lens.payload.data),
            lfifo.w_en.eq(self.lens.valid),
            self.lens.ready.eq(lfifo.w_rdy),
        ]

        # -- output slice register and serializer ------------------------------------
        o = self.o
        out_valid = Signal()
        out_n = Signal(range(SLICE + 1))
        out_last = Signal()
        out_cfg = Signal(config_layout())
        out_f = Signal(data.ArrayLayout(fields_layout(p), SLICE))
        sub = Signal(range(max(SLICE // N, 2)))
        nsub = SLICE // N
        last_sub = Signal()
        m.d.comb += last_sub.eq(((sub + 1) * N >= out_n) if nsub > 1 else 1)
        en = Signal()
        m.d.comb += en.eq(~out_valid | (o.ready & last_sub))
        base = sub * N if nsub > 1 else 0
        flw = fields_layout(p).size
        for j in range(N):
            keep = (base + j) < out_n
            src = out_f.as_value().word_select(base + j, flw) if nsub > 1 else out_f[j].as_value()
            m.d.comb += [
                o.payload.fields[j].eq(Mux(keep, src, 0)),
                o.payload.keep[j].eq(keep),
            ]
        m.d.comb += [
            o.valid.eq(out_valid),
            o.payload.last.eq(out_last & last_sub),
            o.payload.cfg.eq(out_cfg),
        ]
        if nsub > 1:
            with m.If(o.valid & o.ready):
                m.d.sync += sub.eq(Mux(last_sub, 0, sub + 1))

        # -- D0: decode loop --------------------------------------------------------
        st = q0.set
        blk = Signal(32)
        sl = Signal(range(max(R, 2)))
        g_b = Signal(emax)
        g_z = Signal()
        g_k = Signal(2)
        b_coded = Signal()
        lastblk = blk == q0.nb_m1
        bcnt = Signal(range(B + 1))
        pw = Signal(32)
        m.d.comb += [bcnt.eq(Mux(lastblk, q0.tail, B)), pw.eq(Mux(lastblk, q0.pw_tail, q0.pw_full))]
        remv = bcnt - (sl << 3)
        n = Signal(range(SLICE + 1))
        m.d.comb += n.eq(Mux(remv >= SLICE, SLICE, remv))
        blast = Signal()
        tlast = Signal()
        m.d.comb += [blast.eq(remv <= SLICE), tlast.eq(blast & lastblk)]
        bfirst = sl == 0
        gfirst = (sl & (SPG - 1)) == 0
        coded = Signal()
        need_len = Signal()
        m.d.comb += need_len.eq(bfirst & st.gecko & q0.ok)
        with m.If(bfirst):
            m.d.comb += coded.eq(st.gecko & (lfifo.r_data < pw))
        with m.Else():
            m.d.comb += coded.eq(b_coded)

        off = Signal(range(W))
        # The tensor's words in the ring: up to its `last` word (slots after it are the next
        # tensor's, and read as zero here, as the model reads words past tlast), none once
        # that word has been used up (`ended`).
        ended = Signal()
        lastv = [Signal(name=f"d_lastv{j}") for j in range(RING)]
        for j in range(RING):
            m.d.comb += lastv[j].eq(ring_last.bit_select((rp + j)[:lgR], 1) & (level > j))
        found = Signal()
        m.d.comb += found.eq(Cat(*lastv).any())
        avail = Signal(range(RING + 1))       # words of this tensor held
        with m.If(ended):
            m.d.comb += avail.eq(0)
        with m.Elif(found):
            for j in reversed(range(RING)):
                with m.If(lastv[j]):
                    m.d.comb += avail.eq(j + 1)
        with m.Else():
            m.d.comb += avail.eq(level)
        decidable = ended | found             # no word of this tensor is still to come
        cat = Cat(*(ring[(rp + j)[:lgR]] & (~ended & ~Cat(*lastv[:j]).any()).replicate(W) if j else
                    ring[rp] & (~ended).replicate(W) for j in range(KW)))
        win = Signal(smax)
        m.d.comb += win.eq(cat >> _shift_amount(m, off, W - 1, "d_off"))
        emask = lane_mask(st.e, emax)
        hdr_here = coded & gfirst
        hb = win[:emax] & emask
        hsh = win >> _shift_amount(m, st.e, emax, "d_hamt")
        hz = hsh[0]
        hk = hsh[1:3]
        b = Signal(emax)
        z = Signal()
        k = Signal(2)
        m.d.comb += [
            b.eq(Mux(hdr_here, hb, g_b)),
            z.eq(Mux(hdr_here, hz, g_z)),
            k.eq(Mux(hdr_here, hk, g_k)),
        ]
        hl = Signal(range(hmax + 1))
        m.d.comb += hl.eq(Mux(hdr_here, st.e + 3, 0))
        y = Signal(smax - 5)                      # at least e+3 >= 5 bits were the header
        m.d.comb += y.eq(win >> _shift_amount(m, hl, hmax, "d_hl"))
        rice = Signal()
        raw = Signal()
        m.d.comb += [rice.eq(coded & (b != 0) & (k != 3)), raw.eq(coded & (b != 0) & (k == 3))]
        kk = Signal(2)
        m.d.comb += kk.eq(Mux(rice, k, 0))
        rlen = Signal(range(2 * SLICE + 1))
        m.d.comb += rlen.eq(n * kk)
        u = Signal(una_w)
        m.d.comb += u.eq(y >> _shift_amount(m, rlen, 2 * SLICE, "d_rlen"))
        zc = _prefix_count(m, [~u[i] for i in range(una_w)], range(una_w + 1).stop.bit_length(), "d_zc")
        ends = []
        for i in range(SLICE):
            e_i = 0
            for pos in range(una_w):
                if pos < i:
                    continue
                e_i = e_i | Mux(~u[pos] & (zc[pos] == i + 1), pos, 0)
            es = Signal(range(una_w), name=f"d_end{i}")
            m.d.comb += es.eq(e_i)
            ends.append(es)
        qs, escs = [], []
        for i in range(SLICE):
            q = Signal(range(una_w + 1), name=f"d_q{i}")
            m.d.comb += q.eq(ends[i] - (ends[i - 1] + 1) if i else ends[0])
            esc = Signal(name=f"d_esc{i}")
            m.d.comb += esc.eq(rice & (n > i) & (q >= QCAP))
            qs.append(q)
            escs.append(esc)
        ulen = Signal(range(una_w + 1))
        m.d.comb += ulen.eq(Mux(rice & (n != 0), Array(ends)[n - 1] + 1, 0))
        nesc = Signal(range(SLICE + 1))
        m.d.comb += nesc.eq(sum(escs))
        xlen = Signal(range(SLICE * emax + 1))
        m.d.comb += xlen.eq(Mux(raw, n, Mux(rice, nesc, 0)) * st.e)
        slen = Signal(range(smax + 1))
        m.d.comb += slen.eq(Mux(coded, hl + rlen + ulen + xlen + n * (st.s + st.m), n * q0.v))
        endbit = Signal(range(W + smax + 1))
        m.d.comb += endbit.eq(off + slen)
        need = Signal(range(KW + 2))
        m.d.comb += need.eq((endbit + W - 1) >> lgW)
        # -- checks (docs/format.md 8, sfp.model.stream): corrupt codes, overruns, missing words --
        hdr_bad = hdr_here & (hb == 0) & (hz | (hk != 0))
        over = Signal()                       # a unary run of more than QCAP ones
        m.d.comb += over.eq(rice & ((zc[una_w - 1] < n) | Cat(*((n > i) & (qs[i] > QCAP) for i in range(SLICE))).any()))
        kmask = Mux(kk == 2, 3, Mux(kk == 1, 1, 0))
        negs = []
        for i in range(SLICE):
            sym = Signal(una_w.bit_length() + 3, name=f"d_sym{i}")
            m.d.comb += sym.eq((qs[i] << kk) | ((y >> (i * kk))[:2] & kmask))
            negs.append((n > i) & ~escs[i] & ~(z & (sym == 0)) & (sym > b + z))
        neg = rice & Cat(*negs).any()         # a symbol above the group's base: a negative code
        bleft = Signal(32)                    # words of the block from the ring head on
        bl = Signal(32)
        m.d.comb += bl.eq(Mux(bfirst, Mux(coded, lfifo.r_data, pw), bleft))
        corrupt = Signal()
        m.d.comb += corrupt.eq(coded & (hdr_bad | over | neg | (need > bl) | (blast & (need < bl))))
        plainbig = bfirst & st.gecko & ~coded & (lfifo.r_data > pw)   # the entry disagrees with the layout
        lenerr = Signal()
        m.d.comb += lenerr.eq(plainbig | (decidable & (Mux(blast, bl, need) > avail)))
        err_now = corrupt | lenerr
        kind_now = Mux(corrupt, ErrorKind.CORRUPT, ErrorKind.LENGTH)

        # -- per-tensor mode (lib.enum) ---------------------------------------------------
        mode = Signal(self.Mode)
        kind = Signal(ErrorKind)
        nwords = Signal(32)
        head = qn != 0
        zmode = head & q0.ok & ~q0.empty & (mode == self.Mode.ZERO) | head & ~q0.ok & ~q0.empty & (mode != self.Mode.DRAIN)
        dmode = head & (q0.empty | (mode == self.Mode.DRAIN))
        rmode = head & q0.ok & (mode == self.Mode.RUN)
        lens_ok = ~need_len | lfifo.r_rdy
        fire = Signal()                       # a slice leaves D0 (decoded, or zero)
        zero = Signal()                       # ... as a zero slice
        errslice = Signal()
        m.d.comb += [
            errslice.eq(rmode & err_now & (decidable | (level >= KW) | plainbig)),
            fire.eq(en & lens_ok & (zmode | (rmode & ~err_now & (need <= level)) | errslice)),
            zero.eq(zmode | errslice),
        ]
        m.d.comb += lfifo.r_en.eq(fire & need_len)
        # words popped: the slice's, or in ZERO / DRAIN one a clock towards `last`
        with m.If(fire & ~zero):
            m.d.comb += pops.eq(Mux(blast, need, endbit >> lgW))
        with m.Elif((zmode | dmode) & ~ended & (level != 0)):
            m.d.comb += pops.eq(1)
        popped_last = Signal()
        m.d.comb += popped_last.eq(Cat(*(lastv[j] & (pops > j) for j in range(min(RING, KW + 1)))).any())

        kind_new = Signal(ErrorKind)
        m.d.comb += kind_new.eq(kind)
        with m.If(head & ~q0.ok):
            m.d.comb += kind_new.eq(ErrorKind.UNSUPPORTED)
        with m.Elif(errslice & fire & (kind == ErrorKind.NONE)):
            m.d.comb += kind_new.eq(kind_now)
        with m.Elif(rmode & fire & ~zero & tlast & ~popped_last & ~ended & (kind == ErrorKind.NONE)):
            m.d.comb += kind_new.eq(ErrorKind.LENGTH)      # words left before `last`
        ended_new = ended | popped_last
        done = Signal()
        m.d.comb += done.eq((fire & tlast & ended_new) | (dmode & ended_new))
        m.d.sync += [kind.eq(kind_new), nwords.eq(nwords + pops), ended.eq(ended_new)]
        with m.If(fire & tlast & ~ended_new):
            m.d.sync += mode.eq(self.Mode.DRAIN)
        with m.Elif(errslice & fire):
            m.d.sync += mode.eq(self.Mode.ZERO)
        with m.If(done):
            m.d.comb += q_pop.eq(1)
            m.d.sync += [mode.eq(self.Mode.RUN), kind.eq(ErrorKind.NONE), nwords.eq(0), ended.eq(0), blk.eq(0),
                         sl.eq(0), off.eq(0)]
        sp = self.status.payload
        m.d.comb += [
            self.status.valid.eq(done),
            sp.unsupported.eq(kind_new == ErrorKind.UNSUPPORTED),
            sp.corrupt.eq(kind_new == ErrorKind.CORRUPT),
            sp.length_error.eq(kind_new == ErrorKind.LENGTH),
            sp.values.eq(q0.cfg.length),
            sp.words.eq(nwords + pops),
        ]

        with m.If(fire):
            m.d.sync += bleft.eq(bl - pops)
            with m.If(blast):
                m.d.sync += [off.eq(0), sl.eq(0)]
                with m.If(~lastblk):
                    m.d.sync += blk.eq(blk + 1)
            with m.Else():
                m.d.sync += [off.eq(Mux(zero, 0, endbit[:lgW])), sl.eq(sl + 1)]
            with m.If(bfirst):
                m.d.sync += b_coded.eq(coded)
            with m.If(hdr_here):
                m.d.sync += [g_b.eq(hb), g_z.eq(hz), g_k.eq(hk)]

        # -- D1: fields ---------------------------------------------------------------
        d = Signal(data.StructLayout({
            "valid": 1, "n": range(SLICE + 1), "tlast": 1, "coded": 1, "rice": 1, "raw": 1,
            "b": emax, "z": 1, "kk": 2, "rlen": range(2 * SLICE + 1), "ulen": range(una_w + 1),
            "xlen": range(SLICE * emax + 1), "set": settings_layout(), "v": range(vmax + 1), "zero": 1,
        }))
        d_y = Signal(smax - 5)
        d_q = [Signal(4, name=f"d1_q{i}") for i in range(SLICE)]
        d_esc = [Signal(name=f"d1_esc{i}") for i in range(SLICE)]
        d_cfg = Signal(config_layout())
        with m.If(en):
            m.d.sync += d.valid.eq(fire)
            with m.If(fire):
                m.d.sync += [
                    d.n.eq(n), d.tlast.eq(tlast), d.coded.eq(coded), d.rice.eq(rice), d.raw.eq(raw),
                    d.b.eq(b), d.z.eq(z), d.kk.eq(kk), d.rlen.eq(rlen), d.ulen.eq(ulen), d.xlen.eq(xlen),
                    d.set.eq(st), d.v.eq(q0.v), d_y.eq(y), d_cfg.eq(q0.cfg), d.zero.eq(zero),
                ]
                m.d.sync += [d_q[i].eq(Mux(qs[i] >= QCAP, QCAP, qs[i][:4])) for i in range(SLICE)]
                m.d.sync += [d_esc[i].eq(escs[i]) for i in range(SLICE)]

        ds = d.set
        emask1 = lane_mask(ds.e, emax)
        mmask1 = lane_mask(ds.m, mw)
        xbase = Signal(range(2 * SLICE + una_w + 1))
        m.d.comb += xbase.eq(Mux(d.rice, d.rlen + d.ulen, 0))
        xwin = Signal(SLICE * emax)
        m.d.comb += xwin.eq(d_y >> _shift_amount(m, xbase, 2 * SLICE + una_w, "d1_xbase"))
        esc_rank, _ = prefix_sums(m, d_esc, 4, "d1_erank")
        smbase = Signal(range(smax + 1))
        m.d.comb += smbase.eq(xbase + d.xlen)
        smwin = Signal(SLICE * smmax)
        m.d.comb += smwin.eq(d_y >> _shift_amount(m, smbase, smax - SLICE * smmax, "d1_smbase"))
        sm_recs = split_records(m, smwin, ds.s + ds.m, SLICE, smmax, "d1_sm")
        pl_recs = split_records(m, d_y, d.v, SLICE, vmax, "d1_pl")
        f_next = Signal(data.ArrayLayout(fields_layout(p), SLICE))
        for i in range(SLICE):
            ok = (d.n > i) & ~d.zero
            kmask = Mux(d.kk == 2, 3, Mux(d.kk == 1, 1, 0))
            rem = (d_y >> (i * d.kk))[:2] & kmask if True else 0
            sym = Signal(emax + 1, name=f"d1_sym{i}")
            m.d.comb += sym.eq((d_q[i] << d.kk) | rem)
            rcode = Mux(d.z & (sym == 0), 0, d.b - sym + d.z)
            rank = Mux(d.raw, i, esc_rank[i])
            xc = (xwin >> _shift_amount(m, rank * ds.e, (SLICE - 1) * emax, f"d1_xamt{i}"))[:emax] & emask1
            code = Signal(emax, name=f"d1_code{i}")
            with m.If(d.raw | d_esc[i]):
                m.d.comb += code.eq(xc)
            with m.Elif(d.rice):
                m.d.comb += code.eq(rcode)
            smr = sm_recs[i]
            plr = pl_recs[i]
            mamt = _shift_amount(m, ds.m, mmax, f"d1_mamt{i}")
            samt = _shift_amount(m, ds.m + ds.e, vmax - 1, f"d1_samt{i}")
            f = f_next[i]
            with m.If(ok):
                with m.If(d.coded):
                    m.d.comb += [
                        f.man.eq(smr & mmask1),
                        f.code.eq(code),
                        f.sign.eq((smr >> mamt)[0] & ds.s),
                    ]
                with m.Else():
                    m.d.comb += [
                        f.man.eq(plr & mmask1),
                        f.code.eq((plr >> mamt) & emask1),
                        f.sign.eq((plr >> samt)[0] & ds.s),
                    ]
        with m.If(en):
            m.d.sync += out_valid.eq(d.valid)
            with m.If(d.valid):
                m.d.sync += [out_f.eq(f_next), out_n.eq(d.n), out_last.eq(d.tlast), out_cfg.eq(d_cfg)]
        return m
