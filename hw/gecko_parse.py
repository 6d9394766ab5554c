"""The Gecko stage of the unpacker: parses Gecko-coded slices in the word window of the plain cutter.

In a Gecko build (``HwParams.gecko``) the unpacker is the plain pipeline
(:mod:`sfp.hw.unpacker`: word intake, :class:`sfp.hw.unpack_seq.BeatSequencer`,
:class:`sfp.hw.wordunpack.RecordCutter`, :class:`sfp.hw.recsplit.RecordSplitter`,
:class:`sfp.hw.dequant.DequantLanes`) with one extra stage, :class:`GeckoParser`,
plugged into the cutter.  The cutter keeps the word ring, the tensor's
commands (one per beat, from the sequencer), the error states and the status
entry; the parser tells it, for the beat at the head, where the beat's
records are and how many words the beat needs and uses up, because with
Gecko that depends on the data (format.md 5):

* it reads the group header of a Gecko-coded block's group and, per slice of
  8 values, the remainders, the unary codes (their ends from a prefix count of
  zero bits) and the exceptions, and so the exponent codes;
* the slice's sign/mantissa records are then a run of ``n`` records of
  ``s + m`` bits: the parser hands the cutter a two-word window and offset
  for them, exactly like a plain beat's, and the shared splitter cuts them
  with the record width ``s + m``; the codes travel beside the beat and
  replace the split code field (``coded``);
* a plain-layout block (of a Gecko tensor, or any block of a tensor with
  ``cfg.gecko = 0``) is a run of ``n`` records of ``v`` bits: the window and
  offset are handed on, the splitter does the rest as in a plain build.

The parser decides per slice (the decoding granule of a Gecko build,
format.md 8); with N < 8 lanes a slice is ``8/N`` beats, which share the
slice's parse (nothing is popped before its last beat).  It also checks the
slice (format.md 8, ``sfp.model.stream``) and reports the first failing
check's kind; the cutter acts on it (zero beats, drain) as on its own
length errors.

Only elaborated in Gecko builds: a plain build contains none of this.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .gecko_common import QCAP, SLICE, check_gecko_params, lane_mask, prefix_sums, slice_max_bits
from .params import HwParams
from .unpack_seq import beat_cmd_layout
from .wordpack import shift_amount, len_layout
from .wordunpack import ErrorKind

__all__ = ["GeckoParser", "gecko_window_words", "prefix_count"]


def gecko_window_words(p: HwParams) -> int:
    """Words of the ring the parser looks at: a slice starting anywhere in the head word fits."""
    return -(-(p.word - 1 + slice_max_bits(p)) // p.word)


def prefix_count(m: Module, bits, width: int, prefix: str):
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
        for q in range(n):
            if (q >> d) & 1:
                src = ((q >> d) << d) - 1
                s = Signal(width, name=f"{prefix}_{d + 1}_{q}")
                m.d.comb += s.eq(x[q] + x[src])
                y.append(s)
            else:
                y.append(x[q])
        x = y
        d += 1
    return x


def _log2(x: int) -> int:
    assert x & (x - 1) == 0
    return x.bit_length() - 1


class GeckoParser(wiring.Component):
    """The Gecko stage: slice parse and checks for the beat at the head of the :class:`RecordCutter`.

    Parameters
    ----------
    p : HwParams
        A Gecko build's parameters (N in {1, 2, 4, 8}, B a multiple of G).

    Ports (all combinational except the state it keeps per tensor)
    -----
    wnd : In(KW * W)
        The ring's first ``KW`` = :func:`gecko_window_words` words from the
        head, words past the tensor's ``last`` word (or all, once it was
        used up) zeroed by the cutter.
    level, avail : In
        Words held in the ring; words of the head tensor held (up to and
        including its ``last`` word; 0 once it was popped).
    decidable : In(1)
        No word of the head tensor is still to come.
    cmd : In(beat_cmd_layout), cmd_valid : In(1)
        The cutter's head command (its beat).
    adv : In(1)
        The head beat is consumed this clock (issued, zero or refused).
    lens : In(stream of {data: 32, last})
        The block index entries of the tensors with ``cfg.gecko = 1`` that
        the build can do (the unpacker routes them), in order.
    need : Out
        Words the slice reaches (from the head word on).
    pops : Out
        Words the beat uses up (0 but on the slice's last beat).
    err : Out(ErrorKind), err_final : Out(1)
        The slice's first failing check (only on its first beat), and whether
        the words it was computed from are final (the error may be acted on).
    hold : Out(1)
        The slice's block index entry has not arrived: nothing may be
        issued, not even a zero beat (the entries are consumed in order).
    win, off, codes, coded, v, me : Out
        The beat as the splitter takes it: its records start at bit ``off``
        of the two words ``win``; record width ``v`` and sign position ``me``
        (``s + m`` and ``m`` for a coded slice); ``codes`` the N exponent
        codes when ``coded``.

    Latency 0 (the cutter registers the beat); one slice per 8/N clocks.
    The critical path is the parse loop: ring head -> window -> header,
    remainders, unary prefix count -> slice length -> the cutter's pops.
    """

    def __init__(self, p: HwParams):
        check_gecko_params(p)
        self.p = p
        self.kw = gecko_window_words(p)
        W, N = p.word, p.lanes
        super().__init__({
            "wnd": In(self.kw * W),
            "level": In(range(64)),
            "avail": In(range(64)),
            "decidable": In(1),
            "cmd": In(beat_cmd_layout(p)),
            "cmd_valid": In(1),
            "adv": In(1),
            "lens": In(stream.Signature(len_layout())),
            "need": Out(range(self.kw + 1)),
            "pops": Out(range(self.kw + 1)),
            "err": Out(ErrorKind),
            "err_final": Out(1),
            "hold": Out(1),
            "win": Out(2 * W),
            "off": Out(range(W)),
            "codes": Out(data.ArrayLayout(p.max_exp_bits, N)),
            "coded": Out(1),
            "v": Out(range(p.max_value_bits + 1)),
            "me": Out(5),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        N, W, B, G = p.lanes, p.word, p.block, p.group
        emax = p.max_exp_bits
        hmax = emax + 3
        smax = slice_max_bits(p)
        KW = self.kw
        lgW, lgN = _log2(W), _log2(N)
        R = B // SLICE
        SPG = G // SLICE
        NSUB = SLICE // N                     # beats per slice
        una_w = SLICE * (QCAP + 1)
        c = self.cmd
        k = c.k

        # -- the tensor's settings, from its command (constant over the tensor) --------
        s_, e_, m_ = k.sign, k.e, k.m
        v = k.v
        # (the block constants were computed by the sequencer, a register stage ahead)
        gecko = c.g.gecko
        ok = ~c.refused & ~c.nobeat
        nb_m1, tail, pw_full, pw_tail = c.g.nb_m1, c.g.tail, c.g.pw_full, c.g.pw_tail

        # -- block index entries --------------------------------------------------------
        # depth 3, not 2: SyncFIFOBuffered(depth=2) has a 1-entry inner memory with a
        # zero-width address, [-1:0] in the Verilog (verilator -Wall ASCRANGE).
        m.submodules.lfifo = lfifo = fifo.SyncFIFOBuffered(width=32, depth=3)
        m.d.comb += [
            lfifo.w_data.eq(self.lens.payload.data),
            lfifo.w_en.eq(self.lens.valid),
            self.lens.ready.eq(lfifo.w_rdy),
        ]
        entry = lfifo.r_data

        # -- position in the tensor (advanced per beat) -----------------------------------
        blk = Signal(32)
        sl = Signal(range(max(R, 2)))
        sub = Signal(range(max(NSUB, 2)))
        off = Signal(range(W))                # bit offset of the slice in the head word
        g_b = Signal(emax)
        g_z = Signal()
        g_k = Signal(2)
        b_coded = Signal()
        bleft = Signal(32)                    # words of the block from the ring head on
        lastblk = Signal()
        m.d.comb += lastblk.eq(blk == nb_m1)
        bcnt = Signal(range(B + 1))
        pw = Signal.like(pw_full)
        m.d.comb += [bcnt.eq(Mux(lastblk, tail, B)), pw.eq(Mux(lastblk, pw_tail, pw_full))]
        remv = Signal(range(-B, B + 1))
        m.d.comb += remv.eq(bcnt - (sl << 3))
        n = Signal(range(SLICE + 1))
        m.d.comb += n.eq(Mux(remv >= SLICE, SLICE, remv))
        blast = Signal()
        m.d.comb += blast.eq(remv <= SLICE)
        bfirst = sl == 0
        gfirst = (sl & (SPG - 1)) == 0
        first_sub = (sub == 0) if NSUB > 1 else Const(1)
        last_sub = ((sub == NSUB - 1) | c.final) if NSUB > 1 else Const(1)
        need_len = Signal()
        m.d.comb += need_len.eq(bfirst & gecko & ok)
        coded = Signal()
        with m.If(bfirst):
            m.d.comb += coded.eq(gecko & (entry < pw))
        with m.Else():
            m.d.comb += coded.eq(b_coded)
        m.d.comb += self.hold.eq(self.cmd_valid & need_len & ~lfifo.r_rdy)

        # -- the slice's parse (the loop: from the head word and `off` to its length) --------
        win = Signal(smax)
        m.d.comb += win.eq(self.wnd >> shift_amount(m, off, W - 1, "g_off"))
        hdr_here = coded & gfirst
        hb = win[:emax] & lane_mask(e_, emax)
        hsh = win >> shift_amount(m, e_, emax, "g_hamt")
        hz = hsh[0]
        hk = hsh[1:3]
        b = Signal(emax)
        z = Signal()
        kq = Signal(2)
        m.d.comb += [b.eq(Mux(hdr_here, hb, g_b)), z.eq(Mux(hdr_here, hz, g_z)), kq.eq(Mux(hdr_here, hk, g_k))]
        hl = Signal(range(hmax + 1))
        m.d.comb += hl.eq(Mux(hdr_here, e_ + 3, 0))
        y = Signal(smax - 5)                  # after the header (at least e + 3 >= 5 bits when present)
        m.d.comb += y.eq(win >> shift_amount(m, hl, hmax, "g_hl"))
        rice = Signal()
        raw = Signal()
        m.d.comb += [rice.eq(coded & (b != 0) & (kq != 3)), raw.eq(coded & (b != 0) & (kq == 3))]
        kk = Signal(2)
        m.d.comb += kk.eq(Mux(rice, kq, 0))
        rlen = Signal(range(2 * SLICE + 1))
        m.d.comb += rlen.eq(n * kk)
        u = Signal(una_w)
        m.d.comb += u.eq(y >> shift_amount(m, rlen, 2 * SLICE, "g_rlen"))
        zc = prefix_count(m, [~u[i] for i in range(una_w)], range(una_w + 1).stop.bit_length(), "g_zc")
        ends = []
        for i in range(SLICE):
            e_i = 0
            for pos in range(i, una_w):
                e_i = e_i | Mux(~u[pos] & (zc[pos] == i + 1), pos, 0)
            es = Signal(range(una_w), name=f"g_end{i}")
            m.d.comb += es.eq(e_i)
            ends.append(es)
        qs, escs = [], []
        for i in range(SLICE):
            q = Signal(range(una_w + 1), name=f"g_q{i}")
            m.d.comb += q.eq(ends[i] - (ends[i - 1] + 1) if i else ends[0])
            esc = Signal(name=f"g_esc{i}")
            m.d.comb += esc.eq(rice & (n > i) & (q >= QCAP))
            qs.append(q)
            escs.append(esc)
        ulen = Signal(range(una_w + 1))
        m.d.comb += ulen.eq(Mux(rice & (n != 0), Array(ends)[n - 1] + 1, 0))
        nesc = Signal(range(SLICE + 1))
        m.d.comb += nesc.eq(sum(escs))
        xlen = Signal(range(SLICE * emax + 1))
        m.d.comb += xlen.eq(Mux(raw, n, Mux(rice, nesc, 0)) * e_)
        xbase = Signal(range(2 * SLICE + una_w + 1))      # exceptions / raw codes, after y's start
        m.d.comb += xbase.eq(Mux(rice, rlen + ulen, 0))
        stride = Signal(range(p.max_value_bits + 1))      # record width: s + m (coded) or v (plain)
        m.d.comb += stride.eq(Mux(coded, s_ + m_, v))
        rel = Signal(range(smax + 1))                     # the records' start, after the slice's start
        m.d.comb += rel.eq(hl + xbase + xlen)
        slen = Signal(range(smax + 1))
        m.d.comb += slen.eq(rel + n * stride)
        endbit = Signal(range(W + smax + 1))
        m.d.comb += endbit.eq(off + slen)
        need = Signal(range(KW + 2))
        m.d.comb += need.eq((endbit + W - 1) >> lgW)

        # -- checks (docs/format.md 8, sfp.model.stream) ------------------------------------
        hdr_bad = hdr_here & (hb == 0) & (hz | (hk != 0))
        over = Signal()                       # a unary run of more than QCAP ones
        m.d.comb += over.eq(rice & ((zc[una_w - 1] < n) | Cat(*((n > i) & (qs[i] > QCAP) for i in range(SLICE))).any()))
        kmask = Mux(kk == 2, 3, Mux(kk == 1, 1, 0))
        negs = []
        syms = []
        for i in range(SLICE):
            sym = Signal(una_w.bit_length() + 3, name=f"g_sym{i}")
            m.d.comb += sym.eq((qs[i] << kk) | ((y >> (i * kk))[:2] & kmask))
            syms.append(sym)
            negs.append((n > i) & ~escs[i] & ~(z & (sym == 0)) & (sym > b + z))
        neg = rice & Cat(*negs).any()         # a symbol above the group's base: a negative code
        bl = Signal(32)
        m.d.comb += bl.eq(Mux(bfirst, Mux(coded, entry, pw), bleft))
        corrupt = Signal()
        m.d.comb += corrupt.eq(coded & (hdr_bad | over | neg | (need > bl) | (blast & (need < bl))))
        plainbig = Signal()                   # the entry disagrees with the plain layout
        m.d.comb += plainbig.eq(bfirst & gecko & ~coded & (entry > pw))
        lenerr = Signal()
        m.d.comb += lenerr.eq(plainbig | (self.decidable & (Mux(blast, bl, need) > self.avail)))
        with m.If(ok & first_sub):
            with m.If(corrupt):
                m.d.comb += self.err.eq(ErrorKind.CORRUPT)
            with m.Elif(lenerr):
                m.d.comb += self.err.eq(ErrorKind.LENGTH)
        # an error computed from words still to come may be a misreading: wait for them
        m.d.comb += self.err_final.eq(self.decidable | (self.level >= KW) | plainbig)
        pops = Signal(range(KW + 2))
        m.d.comb += pops.eq(Mux(blast, need, endbit >> lgW))
        m.d.comb += [self.need.eq(need), self.pops.eq(Mux(last_sub, pops, 0))]

        # -- the beat for the splitter ---------------------------------------------------------
        # codes of the slice's values (format.md 5.1): Rice symbols, or escapes / raw codes
        # placed by a prefix count of the escape flags
        emask = lane_mask(e_, emax)
        xwin = Signal(SLICE * emax)
        m.d.comb += xwin.eq(y >> shift_amount(m, xbase, 2 * SLICE + una_w, "g_xbase"))
        esc_rank, _ = prefix_sums(m, escs, 4, "g_erank")
        codes8 = []
        for i in range(SLICE):
            sym = syms[i]
            rcode = Mux(z & (sym == 0), 0, b - sym + z)
            rank = Mux(raw, i, esc_rank[i])
            xc = (xwin >> shift_amount(m, rank * e_, (SLICE - 1) * emax, f"g_xamt{i}"))[:emax] & emask
            code = Signal(emax, name=f"g_code{i}")
            with m.If(raw | escs[i]):
                m.d.comb += code.eq(xc)
            with m.Elif(rice):
                m.d.comb += code.eq(rcode)
            codes8.append(code)
        for j in range(N):
            if NSUB > 1:
                m.d.comb += self.codes[j].eq(Array(codes8[s * N + j] for s in range(NSUB))[sub])
            else:
                m.d.comb += self.codes[j].eq(codes8[j])
        # the beat's records: sub-beat `sub` of the slice starts sub*N records after the first
        start = Signal(range(W + smax + 1))
        m.d.comb += start.eq(off + rel + ((sub * stride) << lgN if NSUB > 1 else 0))
        wz = Cat(self.wnd, Const(0, W))
        selw = max(1, (KW - 1).bit_length())
        wsel = Signal(selw)
        m.d.comb += wsel.eq(start >> lgW)
        wins = [wz[j * W:(j + 2) * W] if j < KW else Const(0, 2 * W) for j in range(1 << selw)]
        m.d.comb += [
            self.win.eq(Array(wins)[wsel]),
            self.off.eq(start[:lgW]),
            self.coded.eq(coded),
            self.v.eq(stride),
            self.me.eq(Mux(coded, m_, k.me)),
        ]

        # -- advance -----------------------------------------------------------------------------
        with m.If(self.adv):
            if NSUB > 1:
                m.d.sync += sub.eq(Mux(last_sub, 0, sub + 1))
            with m.If(last_sub):
                m.d.comb += lfifo.r_en.eq(need_len)
                m.d.sync += bleft.eq(bl - pops)
                with m.If(blast):
                    m.d.sync += [off.eq(0), sl.eq(0)]
                    with m.If(~lastblk):
                        m.d.sync += blk.eq(blk + 1)
                with m.Else():
                    m.d.sync += [off.eq(endbit[:lgW]), sl.eq(sl + 1)]
                with m.If(bfirst):
                    m.d.sync += b_coded.eq(coded)
                with m.If(hdr_here):
                    m.d.sync += [g_b.eq(hb), g_z.eq(hz), g_k.eq(hk)]
            with m.If(c.final):               # the tensor's last beat: the next starts afresh
                m.d.sync += [blk.eq(0), sl.eq(0), off.eq(0)]
                if NSUB > 1:
                    m.d.sync += sub.eq(0)
        return m
