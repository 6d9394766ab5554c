"""The Gecko encoder: container fields in, the Gecko-layout DRAM image out (format.md 4-5, issue #4).

:class:`GeckoEncoder` takes beats of N quantized fields (what the
:class:`sfp.hw.packer.Packer`'s quantizer stage produces) and writes exactly the
words and block index of ``sfp.model.container.encode_image(x, Settings(...,
gecko=True))``: every block Gecko-coded when that takes fewer words than
its plain layout, plain otherwise.  With ``cfg.gecko = 0`` every block is
plain, i.e. the non-Gecko layout of format.md 4, so the unit can stand in
for :class:`sfp.hw.wordpack.WordPacker` wholesale.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .gecko_common import QCAP, SLICE, check_gecko_params, lane_mask, prefix_sums, settings_layout, slice_max_bits
from .params import HwParams, config_layout, fields_layout
from .wordpack import _shift_amount, concat_records, len_layout, word_layout

__all__ = ["GeckoEncoder", "field_beat_in_layout"]

NBANK = 4


def field_beat_in_layout(p: HwParams) -> data.StructLayout:
    """One beat into :class:`GeckoEncoder`: N lanes of fields, valid-lane count, tensor end, settings."""
    return data.StructLayout({
        "fields": data.ArrayLayout(fields_layout(p), p.lanes),   # lane j = value t*N+j
        "count": range(p.lanes + 1),    # valid lanes 0..count-1; < N only on a tensor's last beat
        "last": 1,                      # the tensor's last beat
        "cfg": config_layout(),         # read on a tensor's first beat: man_bits, exp_bits, sign, gecko
    })


def _log2(x: int) -> int:
    assert x & (x - 1) == 0
    return x.bit_length() - 1


class GeckoEncoder(wiring.Component):
    """Packs field beats into the Gecko (or plain) container image, N values per clock.

    Parameters
    ----------
    p : HwParams
        Lanes N in {1, 2, 4, 8}, word W, block B, group G (a multiple of 8,
        B a multiple of G), field maxima ``max_exp_bits``/``max_man_bits``.
        Other values raise :class:`sfp.hw.params.ParamError`.
    word_fifo_depth : int, optional
        Total words of the output word FIFO (default ``2*B/8 + 4*K``, see Buffers).

    Ports
    -----
    i : In(stream of :func:`field_beat_in_layout`)
        Fields of values ``t*N .. t*N+N-1`` (fields above the tensor's e/m/s
        widths are ignored); ``count`` valid lanes (N except maybe on the
        ``last`` beat, at least 1); ``cfg`` is sampled on each tensor's first
        beat (``man_bits``, ``exp_bits``, ``sign``, ``gecko``; W, G, B are
        those of ``p``).  ``i.ready`` is a function of registered state only.
    words : Out(stream of {data: W, last: 1})
        The image's words in order, ``last`` on a tensor's final word; equal
        to ``encode_image(...).payload`` read as little-endian W-bit words.
    lens : Out(stream of {data: 32, last: 1})
        One entry per block, its length L_b in words (``.block_words``),
        ``last`` on the tensor's last block.  Same as :class:`WordPacker`.

    Micro-architecture
    ------------------
    Everything works on *rows* of one slice (8 values).  A block pipeline
    over ``NBANK = 4`` rotating banks of one block each (one RAM of
    ``4*B/8`` rows of ``8*(1+Emax+Mmax)`` bits, one write port with lane
    granularity, two read ports), each bank with its tensor's settings,
    value count and tensor-end flag, and a state free -> full -> analysed -> free:

    (A) fill: beats are written into the bank (N lanes of a row per beat);
        each group's largest code b and zero flag z are tracked on the fly
        and written to a small group table (RAM, ``4*B/G`` entries) at the
        group's last beat.  At the block's last beat the bank becomes *full*.
    (B) analyse a full bank, one row per clock (B0 read row and the group's
        b,z; B1 per-lane symbols and each slice's cost for k = 0, 1, 2;
        B2 per-group cost accumulators, mode choice (fewest bits, smallest k
        on ties; b = 0 -> k = 0), mode written to a mode table, block totals;
        B3 Gecko words vs plain words -> coded bit and L_b, bank *analysed*).
    (C) emit an analysed bank, one row per clock: C0 read row, b, z, k (and
        push L_b to the length FIFO on the block's last row; the bank is
        *free* once its last row is read); C1 symbols, remainders, the unary
        section (ones with a zero at each code's end, placed by a prefix sum),
        the exceptions (placed by a prefix count of escapes; the raw mode
        shares this network), the sign/mantissa and plain records (concat
        trees); C2 the slice's bits: header (first slice of a group) |
        remainders | unary | exceptions/raw codes | sign/mantissa, or the
        plain records; C3 bit accumulator (< W bits held): up to K words
        per clock into the word FIFO, the block's last row pads to a word.

    Latency: the first word of a block is on ``words`` B/8 + 10 clocks
    after the block's last beat is accepted (measured: 42 at B = 256, 18 at
    B = 64; the plain/coded choice needs the whole block analysed first),
    when C is idle.  A tensor's last block flows out like any other.

    Throughput: N values per clock (one row every 8/N clocks) with ready
    sinks, with no bubble at group, block or tensor boundaries, also between
    tensors with different settings (each bank has its own).  Stages A, B
    and C take B/N, B/8 and B/8 clocks per block (C plus stalls for a full
    word FIFO).  A bank is held from its first beat until C has read its
    last row: B/N (fill) + about B/8 + 4 (analysis) + B/8 + 2 (emission)
    clocks, which fits the 4*B/N clocks of the 4-bank rotation from B/N = 4
    on at N = 8, so A never waits for a bank.  Measured with ready sinks on
    real tensors: 1.0 beats/clock at N = 8 for B = 32, 64, 256, and at N = 1,
    2, 4; 0.89 for B = 16 at N = 8 (2 beats per block are too few to hide
    the analysis latency).

    Buffers: a slice takes at most ``Smax`` bits (:func:`slice_max_bits`,
    227 for bf16, 355 for fp32), so C3 writes up to
    ``K = ceil((W-1+Smax)/W)`` words in one clock.  The word FIFO is K
    interleaved :class:`amaranth.lib.fifo.SyncFIFOBuffered` RAM FIFOs (word
    j in bank j mod K, so K consecutive words go to K different RAMs; read
    round robin).  Why C never stalls on it with a ready sink at N = 8: a
    block's words never outnumber its rows (L_b <= plain words =
    ceil(count*v/W) <= ceil(count/8) because 8*v <= N*Vmax <= W), and C
    emits one row per clock while the FIFO drains one word per clock; so at
    the end of each block the level is at most max(level at its start,
    L_b) <= B/8, and inside a block it rises by at most L_b <= B/8 more:
    ``2*B/8`` words plus the words in flight (K per stage) never overflow.
    Coded blocks do reach more than one word per row locally (a slice of
    escapes is 3 words), which is what this FIFO absorbs.  At N < 8 the FIFO
    may fill (C emits a block in B/8 clocks, it drains in up to B/N), C then
    waits, which costs nothing: C has 8/N clocks per row.  The length FIFO
    has 4 entries.  Too small a FIFO (``word_fifo_depth``) only costs
    throughput: C stalls on a registered "room for K words" test.

    Back-pressure: ``words`` or ``lens`` not ready stalls C (one enable for
    C0..C3 and the RAM read ports), banks stay full, ``i.ready`` falls when
    A's next bank is not free.  No combinational path from an output's
    ready to ``i.ready``.
    """

    def __init__(self, p: HwParams, word_fifo_depth: int | None = None):
        check_gecko_params(p)
        self.p = p
        smax = slice_max_bits(p)
        kmax = -(-(p.word - 1 + smax) // p.word)
        self.k_words = 1 << (kmax - 1).bit_length()          # FIFO banks (power of two)
        rows = p.block // SLICE
        total = word_fifo_depth if word_fifo_depth is not None else 2 * rows + 4 * self.k_words
        self.fifo_bank_depth = max(2, -(-total // self.k_words))
        super().__init__({
            "i": In(stream.Signature(field_beat_in_layout(p))),
            "words": Out(stream.Signature(word_layout(p))),
            "lens": Out(stream.Signature(len_layout())),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        N, W, B, G = p.lanes, p.word, p.block, p.group
        emax, mmax = p.max_exp_bits, p.max_man_bits
        mw = max(mmax, 1)
        lw = mw + emax + 1                      # one lane in the bank RAM: man | code | sign
        R = B // SLICE                          # rows per bank
        NG = B // G                             # groups per bank
        SPG = G // SLICE                        # slices per group
        BPB = B // N                            # beats per block
        vmax = 1 + emax + mmax
        smmax = 1 + mmax
        hmax = emax + 3
        smax = slice_max_bits(p)
        K = self.k_words
        lgW = _log2(W)
        una_w = SLICE * (QCAP + 1)
        cx_w = SLICE * emax
        lg_rows = _log2(R)
        lg_spg = _log2(SPG)
        lg_rpb = _log2(SLICE // N) if N < SLICE else 0          # beats per row, log2

        # ------------------------------------------------------------------
        # Memories and bank bookkeeping
        # ------------------------------------------------------------------
        m.submodules.bank = bank = Memory(shape=unsigned(SLICE * lw), depth=NBANK * R, init=[])
        m.submodules.gtab = gtab = Memory(shape=unsigned(emax + 1), depth=NBANK * NG, init=[])
        m.submodules.ktab = ktab = Memory(shape=unsigned(2), depth=NBANK * NG, init=[])
        bank_w = bank.write_port(granularity=lw)
        bank_rb = bank.read_port()
        bank_rc = bank.read_port()
        gtab_w = gtab.write_port()
        gtab_rb = gtab.read_port()
        gtab_rc = gtab.read_port()
        ktab_w = ktab.write_port()
        ktab_rc = ktab.read_port()

        FREE, FULL, DONE = 0, 1, 2
        state = Array(Signal(2, name=f"state{i}") for i in range(NBANK))
        mt_count = Array(Signal(range(B + 1), name=f"mt_count{i}") for i in range(NBANK))
        mt_last = Array(Signal(name=f"mt_last{i}") for i in range(NBANK))
        mt_set = Array(Signal(settings_layout(), name=f"mt_set{i}") for i in range(NBANK))
        mt_coded = Array(Signal(name=f"mt_coded{i}") for i in range(NBANK))
        lenw = 32
        mt_len = Array(Signal(lenw, name=f"mt_len{i}") for i in range(NBANK))

        # ------------------------------------------------------------------
        # Stage A: fill
        # ------------------------------------------------------------------
        a_bank = Signal(2)
        a_beat = Signal(range(max(BPB, 2)))
        in_tensor = Signal()
        t_set = Signal(settings_layout())
        ib = self.i.payload
        set_now = Signal(settings_layout())
        with m.If(in_tensor):
            m.d.comb += set_now.eq(t_set)
        with m.Else():
            m.d.comb += [set_now.s.eq(ib.cfg.sign), set_now.e.eq(ib.cfg.exp_bits),
                         set_now.m.eq(ib.cfg.man_bits), set_now.gecko.eq(ib.cfg.gecko)]
        m.d.comb += self.i.ready.eq(state[a_bank] == FREE)
        a_fire = self.i.valid & self.i.ready

        emask = lane_mask(set_now.e, emax)
        mmask = lane_mask(set_now.m, mw)
        lanes = []
        codes_a = []
        for j in range(N):
            f = ib.fields[j]
            ok = ib.count > j
            code = Signal(emax, name=f"a_code{j}")
            m.d.comb += code.eq(f.code & emask & ok.replicate(emax))
            man = f.man & mmask & ok.replicate(mw)
            lanes.append(Cat(man, code, f.sign & set_now.s & ok))
            codes_a.append((code, ok))
        beat_row = Cat(*lanes)
        if N < SLICE:
            off = a_beat[:lg_rpb]
            row = a_beat >> lg_rpb
            m.d.comb += bank_w.data.eq(Cat(*([beat_row] * (SLICE // N))))
            m.d.comb += bank_w.en.eq(Mux(a_fire, ((1 << N) - 1) << (off * N), 0))
        else:
            row = a_beat
            m.d.comb += [bank_w.data.eq(beat_row), bank_w.en.eq(Mux(a_fire, 0xFF, 0))]
        m.d.comb += bank_w.addr.eq(Cat(row[:lg_rows], a_bank))

        # group statistics: largest code, zero present
        gmax_run = Signal(emax)
        gzero_run = Signal()
        bmax = Signal(emax)
        bzero = Signal()
        mx = Const(0, emax)
        for code, ok in codes_a:
            mx = Mux(code > mx, code, mx)
        m.d.comb += [bmax.eq(mx), bzero.eq(Cat(*((c == 0) & ok for c, ok in codes_a)).any())]
        bpg = G // N                                  # beats per group
        gfirst_a = (a_beat & (bpg - 1)) == 0 if bpg > 1 else Const(1)
        gend_a = Signal()
        bend_a = Signal()
        m.d.comb += [
            bend_a.eq(ib.last | (a_beat == BPB - 1)),
            gend_a.eq(bend_a | ((a_beat & (bpg - 1)) == bpg - 1)),
        ]
        g_b = Signal(emax)
        g_z = Signal()
        m.d.comb += [
            g_b.eq(Mux(gfirst_a | (bmax > gmax_run), bmax, gmax_run)),
            g_z.eq((bzero | (gzero_run & ~gfirst_a))),
        ]
        gidx_a = a_beat >> _log2(bpg)
        m.d.comb += [
            gtab_w.addr.eq(Cat(gidx_a[:_log2(NG)], a_bank)),
            gtab_w.data.eq(Cat(g_b, g_z & (g_b != 0))),
            gtab_w.en.eq(a_fire & gend_a),
        ]
        with m.If(a_fire):
            m.d.sync += [gmax_run.eq(g_b), gzero_run.eq(g_z), in_tensor.eq(~ib.last)]
            with m.If(~in_tensor):
                m.d.sync += t_set.eq(set_now)
            with m.If(bend_a):
                m.d.sync += [
                    a_beat.eq(0),
                    a_bank.eq(a_bank + 1),
                    mt_count[a_bank].eq((a_beat << _log2(N)) + ib.count),
                    mt_last[a_bank].eq(ib.last),
                    mt_set[a_bank].eq(set_now),
                ]
            with m.Else():
                m.d.sync += a_beat.eq(a_beat + 1)

        # ------------------------------------------------------------------
        # Stage B: analyse
        # ------------------------------------------------------------------
        b_bank = Signal(2)
        b_row = Signal(range(max(R, 2)))
        b_go = Signal()
        m.d.comb += b_go.eq(state[b_bank] == FULL)
        b_count = Signal(range(B + 1))
        m.d.comb += b_count.eq(mt_count[b_bank])
        b_nrows_m1 = Signal(range(max(R, 2)))
        m.d.comb += b_nrows_m1.eq((b_count - 1) >> 3)
        b_lastrow = b_row == b_nrows_m1
        m.d.comb += [
            bank_rb.addr.eq(Cat(b_row[:lg_rows], b_bank)),
            gtab_rb.addr.eq(Cat((b_row >> lg_spg)[:_log2(NG)], b_bank)),
        ]
        with m.If(b_go):
            with m.If(b_lastrow):
                m.d.sync += [b_row.eq(0), b_bank.eq(b_bank + 1)]
            with m.Else():
                m.d.sync += b_row.eq(b_row + 1)

        def row_meta(layout_extra=None):
            return data.StructLayout({
                "valid": 1, "bank": 2, "n": range(SLICE + 1), "gfirst": 1, "glast": 1,
                "bfirst": 1, "blast": 1, "gidx": range(max(NG, 2)), "set": settings_layout(),
            })

        b1 = Signal(row_meta())
        rem_vals = b_count - (b_row << 3)
        m.d.sync += [
            b1.valid.eq(b_go),
            b1.bank.eq(b_bank),
            b1.n.eq(Mux(rem_vals >= SLICE, SLICE, rem_vals)),
            b1.gfirst.eq((b_row & (SPG - 1)) == 0),
            b1.glast.eq(((b_row & (SPG - 1)) == SPG - 1) | b_lastrow),
            b1.bfirst.eq(b_row == 0),
            b1.blast.eq(b_lastrow),
            b1.gidx.eq(b_row >> lg_spg),
            b1.set.eq(mt_set[b_bank]),
        ]

        # B1: symbols and slice costs
        bz = gtab_rb.data
        gb, gz = bz[:emax], bz[emax]
        cst = b1.set
        costs = []
        for k in range(3):
            terms = []
            for i in range(SLICE):
                code = bank_rb.data[i * lw + mw: i * lw + mw + emax]
                sym = Signal(emax + 1, name=f"b_sym{i}_k{k}")
                m.d.comb += sym.eq(Mux(gz & (code == 0), 0, gb - code + gz))
                q = sym >> k
                esc = q >= QCAP
                qc = Mux(esc, QCAP, q)
                c = Signal(range(QCAP + 2 + 2 + 9), name=f"b_c{i}_k{k}")
                m.d.comb += c.eq(Mux(b1.n > i, qc + 1 + k + Mux(esc, cst.e, 0), 0))
                terms.append(c)
            tot = Signal(range(SLICE * (QCAP + 3 + emax) + 1), name=f"b_slice_cost{k}")
            m.d.comb += tot.eq(sum(terms))
            costs.append(tot)

        b2 = Signal(row_meta())
        b2_cost = [Signal(range(SLICE * (QCAP + 3 + emax) + 1), name=f"b2_cost{k}") for k in range(3)]
        b2_bpos = Signal()
        m.d.sync += [b2.eq(b1), b2_bpos.eq(gb != 0)]
        m.d.sync += [b2_cost[k].eq(costs[k]) for k in range(3)]

        # B2: group and block accumulators
        gcw = G * (QCAP + 3 + emax) + 1
        gacc = [Signal(range(gcw), name=f"gacc{k}") for k in range(3)]
        graw = Signal(range(G * emax + 1))
        gnew = [Signal(range(gcw), name=f"gnew{k}") for k in range(3)]
        grawnew = Signal(range(G * emax + 1))
        for k in range(3):
            m.d.comb += gnew[k].eq(Mux(b2.gfirst, 0, gacc[k]) + b2_cost[k])
        m.d.comb += grawnew.eq(Mux(b2.gfirst, 0, graw) + b2.n * b2.set.e)
        c0, c1, c2, c3 = gnew[0], gnew[1], gnew[2], grawnew
        mode = Signal(2)
        gexp = Signal(range(gcw))
        with m.If(~b2_bpos):
            m.d.comb += [mode.eq(0), gexp.eq(0)]
        with m.Elif((c0 <= c1) & (c0 <= c2) & (c0 <= c3)):
            m.d.comb += [mode.eq(0), gexp.eq(c0)]
        with m.Elif((c1 <= c2) & (c1 <= c3)):
            m.d.comb += [mode.eq(1), gexp.eq(c1)]
        with m.Elif(c2 <= c3):
            m.d.comb += [mode.eq(2), gexp.eq(c2)]
        with m.Else():
            m.d.comb += [mode.eq(3), gexp.eq(c3)]
        m.d.comb += [
            ktab_w.addr.eq(Cat(b2.gidx[:_log2(NG)], b2.bank)),
            ktab_w.data.eq(mode),
            ktab_w.en.eq(b2.valid & b2.glast),
        ]
        bbw = (B * (QCAP + 3 + emax + smmax) + NG * hmax + B * vmax).bit_length() + 1
        blk_g = Signal(bbw)        # Gecko bits of the block so far
        blk_p = Signal(bbw)        # plain bits
        blk_g_new = Signal(bbw)
        blk_p_new = Signal(bbw)
        st2 = b2.set
        ghere = Signal(bbw)
        m.d.comb += ghere.eq(b2.n * (st2.s + st2.m) + Mux(b2.glast, gexp + st2.e + 3, 0))
        m.d.comb += [
            blk_g_new.eq(Mux(b2.bfirst, 0, blk_g) + ghere),
            blk_p_new.eq(Mux(b2.bfirst, 0, blk_p) + b2.n * (st2.s + st2.e + st2.m)),
        ]
        b3_valid = Signal()
        b3_bank = Signal(2)
        b3_g = Signal(bbw)
        b3_p = Signal(bbw)
        b3_gecko = Signal()
        m.d.sync += b3_valid.eq(b2.valid & b2.blast)
        with m.If(b2.valid):
            m.d.sync += [gacc[k].eq(gnew[k]) for k in range(3)]
            m.d.sync += [graw.eq(grawnew), blk_g.eq(blk_g_new), blk_p.eq(blk_p_new)]
            m.d.sync += [b3_bank.eq(b2.bank), b3_g.eq(blk_g_new), b3_p.eq(blk_p_new), b3_gecko.eq(st2.gecko)]

        # B3: decision
        gwords = (b3_g + W - 1) >> lgW
        pwords = (b3_p + W - 1) >> lgW
        coded = b3_gecko & (gwords < pwords)
        with m.If(b3_valid):
            m.d.sync += [mt_coded[b3_bank].eq(coded), mt_len[b3_bank].eq(Mux(coded, gwords, pwords))]

        # ------------------------------------------------------------------
        # Stage C: emit
        # ------------------------------------------------------------------
        m.submodules.lfifo = lfifo = fifo.SyncFIFOBuffered(width=lenw + 1, depth=4)
        wf = []
        for i in range(K):
            f = fifo.SyncFIFOBuffered(width=W + 1, depth=self.fifo_bank_depth)
            m.submodules[f"wfifo{i}"] = f
            wf.append(f)
        en = Signal()
        # room for one word in every FIFO bank and one length: w_rdy is registered state
        m.d.comb += en.eq(Cat(*(f.w_rdy for f in wf)).all() & lfifo.w_rdy)

        c_bank = Signal(2)
        c_row = Signal(range(max(R, 2)))
        c_go = Signal()
        m.d.comb += c_go.eq(en & (state[c_bank] == DONE))
        c_count = Signal(range(B + 1))
        m.d.comb += c_count.eq(mt_count[c_bank])
        c_lastrow = c_row == ((c_count - 1) >> 3)
        for rp in (bank_rc, gtab_rc, ktab_rc):
            m.d.comb += rp.en.eq(en)
        m.d.comb += [
            bank_rc.addr.eq(Cat(c_row[:lg_rows], c_bank)),
            gtab_rc.addr.eq(Cat((c_row >> lg_spg)[:_log2(NG)], c_bank)),
            ktab_rc.addr.eq(Cat((c_row >> lg_spg)[:_log2(NG)], c_bank)),
        ]
        with m.If(c_go):
            with m.If(c_lastrow):
                m.d.sync += [c_row.eq(0), c_bank.eq(c_bank + 1)]
            with m.Else():
                m.d.sync += c_row.eq(c_row + 1)
        m.d.comb += [
            lfifo.w_en.eq(c_go & c_lastrow),
            lfifo.w_data.eq(Cat(mt_len[c_bank], mt_last[c_bank])),
        ]
        # state transitions (A, B, C always work on different banks)
        for i in range(NBANK):
            with m.If(a_fire & bend_a & (a_bank == i)):
                m.d.sync += state[i].eq(FULL)
            with m.If(b3_valid & (b3_bank == i)):
                m.d.sync += state[i].eq(DONE)
            with m.If(c_go & c_lastrow & (c_bank == i)):
                m.d.sync += state[i].eq(FREE)

        cmeta = data.StructLayout({
            "valid": 1, "n": range(SLICE + 1), "gfirst": 1, "blast": 1, "tlast": 1,
            "coded": 1, "set": settings_layout(),
        })
        c1 = Signal(cmeta)
        rem_c = c_count - (c_row << 3)
        with m.If(en):
            m.d.sync += [
                c1.valid.eq(c_go),
                c1.n.eq(Mux(rem_c >= SLICE, SLICE, rem_c)),
                c1.gfirst.eq((c_row & (SPG - 1)) == 0),
                c1.blast.eq(c_lastrow),
                c1.tlast.eq(mt_last[c_bank]),
                c1.coded.eq(mt_coded[c_bank]),
                c1.set.eq(mt_set[c_bank]),
            ]

        # C1: per-lane symbols and the slice's sections
        st = c1.set
        cb, cz = gtab_rc.data[:emax], gtab_rc.data[emax]
        ck = ktab_rc.data
        rice = c1.coded & (cb != 0) & (ck != 3)
        raw = c1.coded & (cb != 0) & (ck == 3)
        kk = Signal(2)
        m.d.comb += kk.eq(Mux(rice, ck, 0))
        codes, sms, recs, rems, unas, escs = [], [], [], [], [], []
        for i in range(SLICE):
            lane = bank_rc.data[i * lw:(i + 1) * lw]
            man, code, sign = lane[:mw], lane[mw:mw + emax], lane[mw + emax]
            ok = c1.n > i
            sym = Signal(emax + 1, name=f"c_sym{i}")
            m.d.comb += sym.eq(Mux(cz & (code == 0), 0, cb - code + cz))
            q = Signal(emax + 1, name=f"c_q{i}")
            m.d.comb += q.eq(sym >> kk)
            esc = Signal(name=f"c_esc{i}")
            m.d.comb += esc.eq((q >= QCAP) & ok & rice)
            rem = Signal(2, name=f"c_rem{i}")
            m.d.comb += rem.eq(Mux(esc | ~ok, 0, sym & Mux(kk == 2, 3, Mux(kk == 1, 1, 0))))
            una = Signal(range(QCAP + 2), name=f"c_una{i}")     # unary length q+1 (0 outside)
            m.d.comb += una.eq(Mux(ok & rice, Mux(esc, QCAP, q[:4]) + 1, 0))
            smr = Signal(smmax, name=f"c_sm{i}")
            samt = _shift_amount(m, st.m, mmax, f"c_samt{i}")
            m.d.comb += smr.eq(Mux(ok, man[:mmax] | (sign << samt) if mmax else sign, 0))
            rec = Signal(vmax, name=f"c_rec{i}")
            camt = _shift_amount(m, st.m, mmax, f"c_camt{i}")
            ramt = _shift_amount(m, st.m + st.e, vmax - 1, f"c_ramt{i}")
            m.d.comb += rec.eq(Mux(ok, (man[:mmax] if mmax else 0) | (code << camt) | (sign << ramt), 0))
            codes.append((code, ok))
            sms.append(smr)
            recs.append(rec)
            rems.append(rem)
            unas.append(una)
            escs.append(esc)
        rem_cat = concat_records(m, rems, kk, 2, "c_remcat")
        sm_cat = concat_records(m, sms, st.s + st.m, smmax, "c_smcat")
        rec_cat = concat_records(m, recs, st.s + st.e + st.m, vmax, "c_reccat")
        # unary section: ones, with a zero at the end of each code
        upos, ulen = prefix_sums(m, unas, range(una_w + 1).stop.bit_length(), "c_upos")
        zeros = 0
        for i in range(SLICE):
            endp = Signal(range(una_w + 1), name=f"c_uend{i}")
            m.d.comb += endp.eq(upos[i] + unas[i] - 1)
            zeros = zeros | Mux(unas[i] != 0, Const(1, una_w) << endp, 0)
        una_bits = Signal(una_w)
        m.d.comb += una_bits.eq(((Const(1, una_w + 1) << ulen) - 1)[:una_w] & ~zeros)
        # exceptions (Rice) or raw codes: code i at e * rank_i
        sel = [Mux(raw, ok, esc) for (code, ok), esc in zip(codes, escs)]
        rank, nsel = prefix_sums(m, sel, 4, "c_xrank")
        cx = 0
        for i, (code, ok) in enumerate(codes):
            xamt = _shift_amount(m, rank[i] * st.e, cx_w - emax, f"c_xamt{i}")
            cx = cx | Mux(sel[i], code << xamt, 0)
        cx_bits = Signal(cx_w)
        m.d.comb += cx_bits.eq(cx)

        c2 = Signal(cmeta)
        c2_hdr = Signal(hmax)
        c2_hlen = Signal(range(hmax + 1))
        c2_rem = Signal(2 * SLICE)
        c2_rlen = Signal(range(2 * SLICE + 1))
        c2_una = Signal(una_w)
        c2_ulen = Signal(range(una_w + 1))
        c2_cx = Signal(cx_w)
        c2_xlen = Signal(range(cx_w + 1))
        c2_sm = Signal(SLICE * smmax)
        c2_smlen = Signal(range(SLICE * smmax + 1))
        c2_rec = Signal(SLICE * vmax)
        c2_reclen = Signal(range(SLICE * vmax + 1))
        hdr_now = Signal(hmax)
        hamt = _shift_amount(m, st.e, emax, "c_hamt")
        m.d.comb += hdr_now.eq(cb | (Cat(cz & (cb != 0), Mux(cb != 0, ck, 0)) << hamt))
        with m.If(en):
            m.d.sync += [
                c2.eq(c1),
                c2_hdr.eq(hdr_now),
                c2_hlen.eq(Mux(c1.gfirst, st.e + 3, 0)),
                c2_rem.eq(rem_cat[:2 * SLICE]),
                c2_rlen.eq(c1.n * kk),
                c2_una.eq(una_bits),
                c2_ulen.eq(ulen),
                c2_cx.eq(cx_bits),
                c2_xlen.eq(nsel * st.e),
                c2_sm.eq(sm_cat[:SLICE * smmax]),
                c2_smlen.eq(c1.n * (st.s + st.m)),
                c2_rec.eq(rec_cat[:SLICE * vmax]),
                c2_reclen.eq(c1.n * (st.s + st.e + st.m)),
            ]

        # C2: assemble the slice
        o1 = Signal(range(smax + 1))
        o2 = Signal(range(smax + 1))
        o3 = Signal(range(smax + 1))
        o4 = Signal(range(smax + 1))
        m.d.comb += [
            o1.eq(c2_hlen),
            o2.eq(c2_hlen + c2_rlen),
            o3.eq(c2_hlen + c2_rlen + c2_ulen),
            o4.eq(c2_hlen + c2_rlen + c2_ulen + c2_xlen),
        ]
        coded_bits = Signal(smax)
        m.d.comb += coded_bits.eq(
            Mux(c2.gfirst, c2_hdr, 0)
            | (c2_rem << _shift_amount(m, o1, hmax, "c_o1"))
            | (c2_una << _shift_amount(m, o2, hmax + 2 * SLICE, "c_o2"))
            | (c2_cx << _shift_amount(m, o3, hmax + 2 * SLICE + una_w, "c_o3"))
            | (c2_sm << _shift_amount(m, o4, smax - SLICE * smmax, "c_o4")))
        c3 = Signal(cmeta)
        c3_bits = Signal(smax)
        c3_len = Signal(range(smax + 1))
        with m.If(en):
            m.d.sync += c3.eq(c2)
            with m.If(c2.coded):
                m.d.sync += [c3_bits.eq(coded_bits), c3_len.eq(o4 + c2_smlen)]
            with m.Else():
                m.d.sync += [c3_bits.eq(c2_rec), c3_len.eq(c2_reclen)]

        # C3: bit accumulator -> up to K words into the interleaved word FIFO
        acc = Signal(W)
        fill = Signal(range(W))
        wsel = Signal(range(K)) if K > 1 else Signal(1)
        comb_w = (K + 1) * W
        combined = Signal(comb_w)
        m.d.comb += combined.eq(acc | (c3_bits << _shift_amount(m, fill, W - 1, "c_fill")))
        total = Signal(range(W + smax + 1))
        m.d.comb += total.eq(fill + c3_len)
        nfull = Signal(range(K + 1))
        m.d.comb += nfull.eq(total >> lgW)
        restb = total[:lgW]
        nout = Signal(range(K + 1))
        chunks = [combined[j * W:(j + 1) * W] for j in range(K + 1)]
        with m.If(c3.valid):
            with m.If(c3.blast):
                m.d.comb += nout.eq(nfull + (restb != 0))
            with m.Else():
                m.d.comb += nout.eq(nfull)
        with m.If(en & c3.valid):
            with m.If(c3.blast):
                m.d.sync += [acc.eq(0), fill.eq(0)]
            with m.Else():
                m.d.sync += [acc.eq(Array(chunks)[nfull]), fill.eq(restb)]
            m.d.sync += wsel.eq(wsel + nout)
        for b, f in enumerate(wf):
            j = Signal(range(K), name=f"c_wj{b}") if K > 1 else Const(0, 1)
            if K > 1:
                m.d.comb += j.eq(b - wsel)
            m.d.comb += [
                f.w_en.eq(en & (j < nout)),
                f.w_data.eq(Cat(Array(chunks[:K])[j], c3.blast & c3.tlast & (j == nout - 1))),
            ]

        # output side: round robin over the word FIFO banks; lengths
        rsel = Signal(range(K)) if K > 1 else Signal(1)
        rdy = Array(f.r_rdy for f in wf)
        rdata = Array(f.r_data for f in wf)
        o = self.words
        m.d.comb += [
            o.valid.eq(rdy[rsel]),
            o.payload.data.eq(rdata[rsel][:W]),
            o.payload.last.eq(rdata[rsel][W]),
        ]
        for b, f in enumerate(wf):
            m.d.comb += f.r_en.eq(o.ready & (rsel == b))
        with m.If(o.valid & o.ready):
            m.d.sync += rsel.eq(rsel + 1)
        m.d.comb += [
            self.lens.valid.eq(lfifo.r_rdy),
            self.lens.payload.data.eq(lfifo.r_data[:lenw]),
            self.lens.payload.last.eq(lfifo.r_data[lenw]),
            lfifo.r_en.eq(self.lens.ready),
        ]
        return m
