"""The Gecko stage of the packer's back end (format.md 5, issue #9).

In a Gecko build the packer is the plain back end with this one stage
added between the record former and the bit accumulator::

    PackerFrontEnd -> RecordFormer -> (queue) -> GeckoStage -> BitAccumulator -> words, lengths
                                                    |  ^
                                       plain rows   v  |  concatenated
                                              RecordConcat (8 records a row)

:class:`GeckoStage` buffers each block in block RAM, analyses its groups
(largest code b, zero flag z, Rice parameter k), chooses per block between
the Gecko-coded and the plain layout (whichever takes fewer words; a tie is
plain), then emits the block one row (slice of 8 values) per clock: a plain
row goes out as 8 records to the packer's :class:`sfp.hw.wordpack.RecordConcat`
and comes back concatenated, a coded row is formed here as one chunk of bits
(header, remainders, unary codes, exceptions, sign/mantissa records); both
leave on ``o`` as a chunk of bits for the packer's one
:class:`sfp.hw.wordpack.BitAccumulator`, which writes up to K words a clock.
The stage forms no record, concatenates no record row and accumulates no
word itself.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .gecko_common import QCAP, SLICE, check_gecko_params, lane_mask, prefix_sums, settings_layout, slice_max_bits
from .params import HwParams
from .wordpack import (BitAccumulator, CreditGate, LutQueue, RecordConcat, shift_amount, bits_beat_layout,
                       concat_records, delay, len_layout, queue_depth, record_beat_layout, word_layout)

__all__ = ["GeckoStage", "GeckoWordPacker", "gecko_in_layout", "gecko_chunk_bits", "NBANK"]

#: Block banks in rotation.  Fill, analysis and emission each hold one; the others absorb
#: tensors shorter than a block, whose bank is held for its analysis and emission (about
#: 8 clocks for a one-beat tensor at N = 8) while the fill moves on every few clocks.  The bank
#: RAM is 8*B/8 rows deep: 256 rows at B = 256, the same DP16KD count as 4 banks (512 deep).
NBANK = 8


class BankState(enum.Enum, shape=2):
    FREE = 0        # may be filled
    FULL = 1        # filled, waiting for / under analysis
    DONE = 2        # analysed (plain or coded chosen), waiting for / under emission


def gecko_in_layout(p: HwParams) -> data.StructLayout:
    """One beat into :class:`GeckoStage`: the record former's N records and the tensor's settings."""
    return data.StructLayout({
        "recs": data.ArrayLayout(p.max_value_bits, p.lanes),   # lane j = record of value t*N+j, 0 beyond count
        "count": range(p.lanes + 1),      # valid lanes, >= 1 (< N only on a tensor's last beat)
        "last": 1,                        # the tensor's last beat
        "set": settings_layout(),         # the tensor's s, e, m, gecko (the same on all its beats)
    })


def gecko_chunk_bits(p: HwParams) -> int:
    """Widest chunk :class:`GeckoStage` hands the bit accumulator: a coded slice or a plain row."""
    return max(slice_max_bits(p), SLICE * p.max_value_bits)


def _bank_meta_layout(p: HwParams) -> data.StructLayout:
    return data.StructLayout({
        "count": range(p.block + 1),      # values in the block
        "last": 1,                        # the tensor's last block
        "set": settings_layout(),
        "coded": 1,                       # decided by the analysis: Gecko-coded (else plain)
    })


def _log2(x: int) -> int:
    assert x & (x - 1) == 0
    return x.bit_length() - 1


class GeckoStage(wiring.Component):
    """Block buffer, group analysis, plain/coded choice and coded-row formation, one row per clock.

    Parameters
    ----------
    p : HwParams
        Lanes N in {1, 2, 4, 8}, word W, block B, group G (B a multiple of G),
        field maxima; :class:`sfp.hw.params.ParamError` otherwise.
    concat_latency : int
        Latency of the :class:`sfp.hw.wordpack.RecordConcat` (8 records a
        row) wired between ``rec_o`` and ``cat_i``; the coded rows are
        delayed to meet the plain rows in order.

    Ports
    -----
    i : In(stream of :func:`gecko_in_layout`)
        The record former's beats of a tensor that is not refused.
        ``i.ready`` is ``bank being filled is free``: registered state only.
    issue_ok : In(1)
        Emission may issue a row this clock (the caller's credit gate on
        the accumulator's queues: a row writes at most K words and 1 length).
    issued : Out(1)
        A row was issued this clock (it reaches ``o`` a fixed latency later).
    rec_o : Out(stream of ``record_beat_layout(p, 8)``, always ready)
        Every row, in order: a plain row's 8 records (``count`` values,
        zero beyond), a coded row with ``count = 0``; ``flush`` on a block's
        last row, ``last`` on the tensor's last row.
    cat_i : In(stream of ``bits_beat_layout(p, 8*Vmax)``, always ready)
        ``rec_o`` concatenated (``concat_latency`` clocks later).
    o : Out(stream of ``bits_beat_layout(p, gecko_chunk_bits(p))``, always ready)
        One chunk of bits per row: the plain row's records, or the coded
        row's bits (the group header first on a group's first row).

    Pipeline
    --------
    NBANK = 8 block banks (one RAM of ``8*B/8`` rows of 8 records, written
    with lane granularity; two read ports), each FREE -> FULL -> DONE -> FREE:

    (A) fill: each beat's N records go into the bank's row; each group's
        b and z are tracked on the fly into a group table (RAM) at the
        group's last beat.  The block's last beat makes the bank FULL.
    (B) analyse a FULL bank, one row per clock: B1 per-lane symbols and the
        slice's exponent bits for k = 0, 1, 2; B2 per-group sums, mode
        choice into a mode table (RAM), the block's coded and plain bits;
        B3 coded iff fewer words (and the tensor has Gecko on): DONE.
    (C) emit a DONE bank, one row per clock while ``issue_ok``: C0 read
        the row, its group's b, z and k; C1 records out on ``rec_o``
        (registered), and the coded sections (symbols, remainders, unary
        codes placed by a prefix sum, exceptions by a prefix count, the
        sign/mantissa records); C2 the coded row's bits; then a delay to
        meet the plain row out of ``RecordConcat``; the merged chunk is
        registered onto ``o``.  The bank is FREE once its last row is read.

    Latency: a block's first row is issued about B/8 + 5 clocks after its
    last beat is accepted (the plain/coded choice needs the whole block);
    from ``issued`` to ``o``: ``latency`` = ``concat_latency + 3`` clocks.

    Throughput: one row per clock in emission, so N values per clock with
    no bubble at group, block or tensor boundaries when a bank is held
    (B/N fill + about B/8 + 4 analysis + B/8 emission clocks) for less than
    the 8*B/N clocks of the rotation, and for runs of one-beat tensors (a
    bank held about 8 clocks, one taken per clock): measured 1.00 beats per
    clock at N = 8, B = 256 for tensors of 8 values up
    (``tests/test_hw_gecko_rate.py``, ``scripts/gecko_packer_short_tensors.py``;
    4 banks gave 0.68 for 8-value and 0.90 for 16-value tensors).
    """

    def __init__(self, p: HwParams, concat_latency: int):
        check_gecko_params(p)
        self.p = p
        self.concat_latency = concat_latency
        self.latency = concat_latency + 3
        self.chunk_bits = gecko_chunk_bits(p)
        super().__init__({
            "i": In(stream.Signature(gecko_in_layout(p))),
            "issue_ok": In(1),
            "issued": Out(1),
            "rec_o": Out(stream.Signature(record_beat_layout(p, SLICE), always_ready=True)),
            "cat_i": In(stream.Signature(bits_beat_layout(p, SLICE * p.max_value_bits), always_ready=True)),
            "o": Out(stream.Signature(bits_beat_layout(p, self.chunk_bits), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        N, W, B, G = p.lanes, p.word, p.block, p.group
        emax, mmax = p.max_exp_bits, p.max_man_bits
        vmax = p.max_value_bits
        R = B // SLICE                          # rows per bank
        NG = B // G                             # groups per bank
        SPG = G // SLICE                        # slices per group
        BPB = B // N                            # beats per block
        smmax = 1 + mmax
        hmax = emax + 3
        smax = slice_max_bits(p)
        lgW = _log2(W)
        una_w = SLICE * (QCAP + 1)
        cx_w = SLICE * emax
        lg_rows = _log2(R)
        lg_spg = _log2(SPG)
        lg_ng = _log2(NG)
        lg_rpb = _log2(SLICE // N) if N < SLICE else 0          # beats per row, log2

        def code_of(rec, st, name):
            """The exponent code inside a record: bits m .. m+e-1."""
            c = Signal(emax, name=name)
            mamt = shift_amount(m, st.m, mmax, f"{name}_amt")
            m.d.comb += c.eq((rec >> mamt)[:emax] & lane_mask(st.e, emax))
            return c

        # -- memories and bank bookkeeping ------------------------------------------
        m.submodules.bank = bank = Memory(shape=unsigned(SLICE * vmax), depth=NBANK * R, init=[])
        m.submodules.gtab = gtab = Memory(shape=unsigned(emax + 1), depth=NBANK * NG, init=[])
        m.submodules.ktab = ktab = Memory(shape=unsigned(2), depth=NBANK * NG, init=[])
        bank_w = bank.write_port(granularity=vmax)
        bank_rb = bank.read_port()
        bank_rc = bank.read_port()
        gtab_w = gtab.write_port()
        gtab_rb = gtab.read_port()
        gtab_rc = gtab.read_port()
        ktab_w = ktab.write_port()
        ktab_rc = ktab.read_port()

        state = Array(Signal(BankState, name=f"state{i}") for i in range(NBANK))
        meta = Array(Signal(_bank_meta_layout(p), name=f"meta{i}") for i in range(NBANK))

        # -- (A) fill ------------------------------------------------------------------
        lg_nb = _log2(NBANK)
        a_bank = Signal(lg_nb)
        a_beat = Signal(range(max(BPB, 2)))
        ib = self.i.payload
        m.d.comb += self.i.ready.eq(state[a_bank] == BankState.FREE)
        a_fire = self.i.valid & self.i.ready
        beat_row = Cat(*(ib.recs[j] for j in range(N)))
        if N < SLICE:
            off = a_beat[:lg_rpb]
            row = a_beat >> lg_rpb
            m.d.comb += bank_w.data.eq(Cat(*([beat_row] * (SLICE // N))))
            m.d.comb += bank_w.en.eq(Mux(a_fire, ((1 << N) - 1) << (off * N), 0))
        else:
            row = a_beat
            m.d.comb += [bank_w.data.eq(beat_row), bank_w.en.eq(Mux(a_fire, (1 << SLICE) - 1, 0))]
        m.d.comb += bank_w.addr.eq(Cat(row[:lg_rows], a_bank))

        # the group's largest code and zero flag, on the fly
        codes_a = [(code_of(ib.recs[j], ib.set, f"a_code{j}"), ib.count > j) for j in range(N)]
        gmax_run = Signal(emax)
        gzero_run = Signal()
        mx = Const(0, emax)
        for code, ok in codes_a:
            mx = Mux(ok & (code > mx), code, mx)
        bmax = Signal(emax)
        bzero = Signal()
        m.d.comb += [bmax.eq(mx), bzero.eq(Cat(*((c == 0) & ok for c, ok in codes_a)).any())]
        bpg = G // N                                  # beats per group
        gfirst_a = (a_beat & (bpg - 1)) == 0 if bpg > 1 else Const(1)
        bend_a = Signal()
        gend_a = Signal()
        m.d.comb += [
            bend_a.eq(ib.last | (a_beat == BPB - 1)),
            gend_a.eq(bend_a | ((a_beat & (bpg - 1)) == bpg - 1)),
        ]
        g_b = Signal(emax)
        g_z = Signal()
        m.d.comb += [
            g_b.eq(Mux(gfirst_a | (bmax > gmax_run), bmax, gmax_run)),
            g_z.eq(bzero | (gzero_run & ~gfirst_a)),
        ]
        gidx_a = a_beat >> _log2(bpg)
        m.d.comb += [
            gtab_w.addr.eq(Cat(gidx_a[:lg_ng], a_bank)),
            gtab_w.data.eq(Cat(g_b, g_z & (g_b != 0))),
            gtab_w.en.eq(a_fire & gend_a),
        ]
        with m.If(a_fire):
            m.d.sync += [gmax_run.eq(g_b), gzero_run.eq(g_z)]
            with m.If(bend_a):
                m.d.sync += [
                    a_beat.eq(0),
                    a_bank.eq(a_bank + 1),
                    meta[a_bank].count.eq((a_beat << _log2(N)) + ib.count),
                    meta[a_bank].last.eq(ib.last),
                    meta[a_bank].set.eq(ib.set),
                ]
            with m.Else():
                m.d.sync += a_beat.eq(a_beat + 1)

        # -- (B) analyse -----------------------------------------------------------------
        b_bank = Signal(lg_nb)
        b_row = Signal(range(max(R, 2)))
        b_go = Signal()
        m.d.comb += b_go.eq(state[b_bank] == BankState.FULL)
        b_count = Signal(range(B + 1))
        m.d.comb += b_count.eq(meta[b_bank].count)
        b_lastrow = b_row == ((b_count - 1) >> 3)
        m.d.comb += [
            bank_rb.addr.eq(Cat(b_row[:lg_rows], b_bank)),
            gtab_rb.addr.eq(Cat((b_row >> lg_spg)[:lg_ng], b_bank)),
        ]
        with m.If(b_go):
            with m.If(b_lastrow):
                m.d.sync += [b_row.eq(0), b_bank.eq(b_bank + 1)]
            with m.Else():
                m.d.sync += b_row.eq(b_row + 1)

        row_meta = data.StructLayout({
            "valid": 1, "bank": lg_nb, "n": range(SLICE + 1), "gfirst": 1, "glast": 1,
            "bfirst": 1, "blast": 1, "gidx": range(max(NG, 2)), "set": settings_layout(),
        })
        b1 = Signal(row_meta)
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
            b1.set.eq(meta[b_bank].set),
        ]

        # B1: symbols and the slice's exponent bits for k = 0, 1, 2
        gb, gz = gtab_rb.data[:emax], gtab_rb.data[emax]
        cst = b1.set
        cost_w = SLICE * (QCAP + 3 + emax) + 1
        costs = []
        codes_b = [code_of(bank_rb.data[i * vmax:(i + 1) * vmax], cst, f"b_code{i}") for i in range(SLICE)]
        for k in range(3):
            terms = []
            for i, code in enumerate(codes_b):
                sym = Signal(emax + 1, name=f"b_sym{i}_k{k}")
                m.d.comb += sym.eq(Mux(gz & (code == 0), 0, gb - code + gz))
                q = sym >> k
                esc = q >= QCAP
                c = Signal(range(QCAP + 2 + 2 + 9), name=f"b_c{i}_k{k}")
                m.d.comb += c.eq(Mux(b1.n > i, Mux(esc, QCAP, q) + 1 + k + Mux(esc, cst.e, 0), 0))
                terms.append(c)
            tot = Signal(range(cost_w), name=f"b_slice_cost{k}")
            m.d.comb += tot.eq(sum(terms))
            costs.append(tot)

        b2 = Signal(row_meta)
        b2_cost = [Signal(range(cost_w), name=f"b2_cost{k}") for k in range(3)]
        b2_bpos = Signal()
        m.d.sync += [b2.eq(b1), b2_bpos.eq(gb != 0)]
        m.d.sync += [b2_cost[k].eq(costs[k]) for k in range(3)]

        # B2: per-group sums, mode choice, block totals
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
            ktab_w.addr.eq(Cat(b2.gidx[:lg_ng], b2.bank)),
            ktab_w.data.eq(mode),
            ktab_w.en.eq(b2.valid & b2.glast),
        ]
        bbw = (B * (QCAP + 3 + emax + smmax) + NG * hmax + B * vmax).bit_length() + 1
        blk_g = Signal(bbw)        # coded bits of the block so far
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
        b3_bank = Signal(lg_nb)
        b3_g = Signal(bbw)
        b3_p = Signal(bbw)
        b3_gecko = Signal()
        m.d.sync += b3_valid.eq(b2.valid & b2.blast)
        with m.If(b2.valid):
            m.d.sync += [gacc[k].eq(gnew[k]) for k in range(3)]
            m.d.sync += [graw.eq(grawnew), blk_g.eq(blk_g_new), blk_p.eq(blk_p_new)]
            m.d.sync += [b3_bank.eq(b2.bank), b3_g.eq(blk_g_new), b3_p.eq(blk_p_new), b3_gecko.eq(st2.gecko)]

        # B3: coded iff fewer words (format.md 5: a tie is plain)
        gwords = (b3_g + W - 1) >> lgW
        pwords = (b3_p + W - 1) >> lgW
        with m.If(b3_valid):
            m.d.sync += meta[b3_bank].coded.eq(b3_gecko & (gwords < pwords))

        # -- (C) emit ----------------------------------------------------------------------
        c_bank = Signal(lg_nb)
        c_row = Signal(range(max(R, 2)))
        c_go = Signal()
        m.d.comb += c_go.eq(self.issue_ok & (state[c_bank] == BankState.DONE))
        m.d.comb += self.issued.eq(c_go)
        c_count = Signal(range(B + 1))
        m.d.comb += c_count.eq(meta[c_bank].count)
        c_lastrow = c_row == ((c_count - 1) >> 3)
        m.d.comb += [
            bank_rc.addr.eq(Cat(c_row[:lg_rows], c_bank)),
            gtab_rc.addr.eq(Cat((c_row >> lg_spg)[:lg_ng], c_bank)),
            ktab_rc.addr.eq(Cat((c_row >> lg_spg)[:lg_ng], c_bank)),
        ]
        with m.If(c_go):
            with m.If(c_lastrow):
                m.d.sync += [c_row.eq(0), c_bank.eq(c_bank + 1)]
            with m.Else():
                m.d.sync += c_row.eq(c_row + 1)

        # bank states (A, B and C always work on different banks)
        for i in range(NBANK):
            with m.If(a_fire & bend_a & (a_bank == i)):
                m.d.sync += state[i].eq(BankState.FULL)
            with m.If(b3_valid & (b3_bank == i)):
                m.d.sync += state[i].eq(BankState.DONE)
            with m.If(c_go & c_lastrow & (c_bank == i)):
                m.d.sync += state[i].eq(BankState.FREE)

        cmeta = data.StructLayout({
            "valid": 1, "n": range(SLICE + 1), "gfirst": 1, "flush": 1, "last": 1,
            "coded": 1, "set": settings_layout(),
        })
        c1 = Signal(cmeta)
        rem_c = c_count - (c_row << 3)
        cm = meta[c_bank]
        m.d.sync += [
            c1.valid.eq(c_go),
            c1.n.eq(Mux(rem_c >= SLICE, SLICE, rem_c)),
            c1.gfirst.eq((c_row & (SPG - 1)) == 0),
            c1.flush.eq(c_lastrow),
            c1.last.eq(c_lastrow & cm.last),
            c1.coded.eq(cm.coded),
            c1.set.eq(cm.set),
        ]

        # C1: the plain row out to the record concatenation (registered) ...
        st = c1.set
        recs = [Mux(c1.n > i, bank_rc.data[i * vmax:(i + 1) * vmax], 0) for i in range(SLICE)]
        ro = self.rec_o.payload
        m.d.sync += [
            self.rec_o.valid.eq(c1.valid),
            ro.v.eq(st.s + st.e + st.m),
            ro.count.eq(Mux(c1.coded, 0, c1.n)),
            ro.flush.eq(c1.flush),
            ro.last.eq(c1.last),
        ]
        m.d.sync += [ro.recs[i].eq(Mux(c1.coded, 0, recs[i])) for i in range(SLICE)]

        # ... and the coded row's sections
        cb, cz = gtab_rc.data[:emax], gtab_rc.data[emax]
        ck = ktab_rc.data
        rice = c1.coded & (cb != 0) & (ck != 3)
        raw = c1.coded & (cb != 0) & (ck == 3)
        kk = Signal(2)
        m.d.comb += kk.eq(Mux(rice, ck, 0))
        mmask = lane_mask(st.m, max(mmax, 1))
        codes, sms, rems, unas, escs = [], [], [], [], []
        for i in range(SLICE):
            rec = recs[i]
            ok = c1.n > i
            code = code_of(rec, st, f"c_code{i}")
            sign = Signal(name=f"c_sign{i}")
            m.d.comb += sign.eq((rec >> shift_amount(m, st.m + st.e, vmax - 1, f"c_samt{i}"))[0])
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
            if mmax:
                man = rec[:mmax] & mmask[:mmax]
                m.d.comb += smr.eq(man | (sign << shift_amount(m, st.m, mmax, f"c_smamt{i}")))
            else:
                m.d.comb += smr.eq(sign)
            codes.append((code, ok))
            sms.append(smr)
            rems.append(rem)
            unas.append(una)
            escs.append(esc)
        rem_cat = concat_records(m, rems, kk, 2, "c_remcat")
        sm_cat = concat_records(m, sms, st.s + st.m, smmax, "c_smcat")
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
            xamt = shift_amount(m, rank[i] * st.e, cx_w - emax, f"c_xamt{i}")
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
        hdr_now = Signal(hmax)
        hamt = shift_amount(m, st.e, emax, "c_hamt")
        m.d.comb += hdr_now.eq(cb | (Cat(cz & (cb != 0), Mux(cb != 0, ck, 0)) << hamt))
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
        ]

        # C2: the coded row: header | remainders | unary | exceptions/raw codes | sign/mantissa
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
            | (c2_rem << shift_amount(m, o1, hmax, "c_o1"))
            | (c2_una << shift_amount(m, o2, hmax + 2 * SLICE, "c_o2"))
            | (c2_cx << shift_amount(m, o3, hmax + 2 * SLICE + una_w, "c_o3"))
            | (c2_sm << shift_amount(m, o4, smax - SLICE * smmax, "c_o4")))
        c3_bits = Signal(smax)
        c3_len = Signal(range(smax + 1))
        c3_coded = Signal()
        m.d.sync += [c3_bits.eq(coded_bits), c3_len.eq(o4 + c2_smlen), c3_coded.eq(c2.coded)]

        # meet the plain row coming out of RecordConcat (rec_o is registered at C2's
        # edge, the coded row at C3's: one clock apart), then merge into one chunk
        dl = self.concat_latency - 1
        assert dl >= 0
        x_bits, x_len, x_coded = delay(m, c3_bits, dl, "c_xb"), delay(m, c3_len, dl, "c_xl"), \
            delay(m, c3_coded, dl, "c_xc")
        ci, o = self.cat_i.payload, self.o.payload
        m.d.sync += [
            self.o.valid.eq(self.cat_i.valid),
            o.bits.eq(Mux(x_coded, x_bits, ci.bits)),
            o.nbits.eq(Mux(x_coded, x_len, ci.nbits)),
            o.flush.eq(ci.flush),
            o.last.eq(ci.last),
        ]
        return m


class GeckoWordPacker(wiring.Component):
    """The Gecko build's back end after the record former: record beats in, words and lengths out.

    An input queue -> :class:`GeckoStage` (with the 8-record
    :class:`sfp.hw.wordpack.RecordConcat` for its plain rows) ->
    :class:`sfp.hw.wordpack.BitAccumulator` (chunks up to
    :func:`gecko_chunk_bits`, K words a clock) -> the word and length
    queues.  A :class:`sfp.hw.wordpack.CreditGate` with weight K on the
    word queue lets the stage issue a row only when the queues have room for
    every row in flight, so nothing after the issue ever stalls.

    Parameters
    ----------
    p : HwParams
        As :class:`GeckoStage`.
    in_depth : int
        Depth of the input queue (the caller's credit gate keeps it from
        overflowing; ``i.ready`` is its ``w_rdy`` for callers without one).

    Ports
    -----
    i : In(stream of :func:`gecko_in_layout`)
        Record beats of tensors that are not refused (``count >= 1``).
    words : Out(stream of {data: W, last: 1}); lens : Out(stream of {data: 32, last: 1})
        As :class:`sfp.hw.wordpack.WordPacker`: the image's words, ``last``
        on a tensor's final word; one length L_b per block.
    in_queued : Out(range(in_depth + 2))
        Beats in the input queue (registered; for the caller's credit gate).

    Latency: input queue 2 clocks, then :class:`GeckoStage` (a block's
    rows start about B/8 + 5 clocks after its last beat), ``GeckoStage.latency``
    clocks to the accumulator, ``BitAccumulator.latency_of(p)`` + 2 to ``words``.
    Throughput: as :class:`GeckoStage`, while ``words`` and ``lens`` are ready.
    """

    def __init__(self, p: HwParams, in_depth: int = 32):
        check_gecko_params(p)
        self.p = p
        self.in_depth = in_depth
        super().__init__({
            "i": In(stream.Signature(gecko_in_layout(p))),
            "words": Out(stream.Signature(word_layout(p))),
            "lens": Out(stream.Signature(len_layout())),
            "in_queued": Out(range(in_depth + 2)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        gl = gecko_in_layout(p)
        m.submodules.q = q = LutQueue(gl.size, self.in_depth)
        m.submodules.cat = cat = RecordConcat(p, lanes=SLICE)
        m.submodules.stage = gs = GeckoStage(p, cat.latency)
        m.d.comb += [
            q.w_en.eq(self.i.valid), q.w_data.eq(self.i.payload), self.i.ready.eq(q.w_rdy),
            gs.i.valid.eq(q.r_rdy), gs.i.payload.eq(q.r_data), q.r_en.eq(gs.i.ready),
        ]
        m.d.sync += self.in_queued.eq(self.in_queued + (self.i.valid & self.i.ready) - (q.r_rdy & q.r_en))
        wiring.connect(m, gs.rec_o, cat.i)
        wiring.connect(m, cat.o, gs.cat_i)

        # rows issued and not yet through the accumulator: at most K words and 1 length each;
        # beside them, room for a block's words running ahead of its rows (escape bursts:
        # fewer than B/8 over a block, format.md 5.2)
        k = BitAccumulator.words_per_beat(p, gs.chunk_bits)
        flight = 1 + gs.latency + BitAccumulator.latency_of(p) + 2
        depth = queue_depth(k * (flight + CreditGate.MARGIN) + p.block // SLICE)
        m.submodules.accum = acc = BitAccumulator(p, depth, chunk_bits=gs.chunk_bits)
        wiring.connect(m, gs.o, acc.i)
        m.submodules.gate = gate = CreditGate(depth, 2, weights=(k, 1))
        m.d.comb += [
            gs.issue_ok.eq(gate.ready),
            gate.fire.eq(gs.issued),
            gate.retire.eq(acc.retire),
            gate.queued[0].eq(acc.words_queued),
            gate.queued[1].eq(acc.lens_queued),
        ]
        wiring.connect(m, wiring.flipped(self.words), acc.words)
        wiring.connect(m, wiring.flipped(self.lens), acc.lens)
        return m
