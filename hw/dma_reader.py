"""The load DMA engine: a block range of a stored tensor out of memory into the unpacker.

See :class:`DmaReader`; the memory interface is :mod:`sfp.hw.dma_mem`'s and
the memory layout :class:`sfp.hw.dma_writer.DmaWriter`'s.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .dma_mem import MAX_BURST, mem_port_signature
from .params import HwParams, config_layout
from .wordpack import LEN_WIDTH, len_layout, word_layout

__all__ = ["DmaReader", "reader_desc_layout", "reader_status_layout"]


def reader_desc_layout(addr_width: int) -> data.StructLayout:
    """One load: the tensor's cfg (``length`` = its full length), where it is, and blocks ``[b0, b1)``."""
    return data.StructLayout({"cfg": config_layout(), "data_addr": addr_width, "index_addr": addr_width,
                              "b0": 32, "b1": 32})


def reader_status_layout() -> data.StructLayout:
    """One per load: words read, blocks delivered, a read error, the descriptor refused (nothing read)."""
    return data.StructLayout({"words": 32, "blocks": 32, "err": 1, "refused": 1})


class DmaReader(wiring.Component):
    """Loads blocks ``[b0, b1)`` of a stored tensor and feeds the unpacker.

    Parameters
    ----------
    p : HwParams
        The unpacker's parameters (W, B, Gecko built or not).
    addr_width : int
        Width of word addresses on the memory port.
    burst : int
        Longest data command in words (power of two, 2..256).

    Ports
    -----
    desc : In(stream of :func:`reader_desc_layout`)
        One per load.  ``b1`` is clipped to the tensor's ``ceil(length/B)``
        blocks; ``b0 >= b1`` (after clipping) or ``length = 0`` refuses the
        descriptor: a status with ``refused`` and nothing read.
    words : Out(stream of {data: W, last: 1})
        To the unpacker's ``s_axis``: the words of blocks ``b0 .. b1-1``,
        ``last`` on the final one.
    lens : Out(stream of {data: 32, last: 1})  (only with ``p.gecko``)
        To the unpacker's ``s_len``: ``L_b0 .. L_b1-1``.
    cfg : Out(config_layout())
        To the unpacker's ``cfg``: the descriptor's, with ``length`` the values
        in the range, ``min(b1*B, length) - b0*B``.  Stable from the range's
        first word to its last (the next load starts after it).
    mem : Out(:func:`sfp.hw.dma_mem.mem_port_signature`)
        Reads only: tag 1 index words, tag 0 data.
    status : Out(stream of :func:`reader_status_layout`)
        One per descriptor, after the range's last word went to the unpacker.

    Operation: the index is read from its first word (the data offset of
    block b0 is the sum of ``L_0 .. L_b0-1``; the layout stores lengths, so a
    late block costs ``b0/E`` index-word reads, E = W/32), one index word at
    a time, its entries unpacked one per clock into a 4E-entry queue (the
    next index word is requested when the queue has room for a whole word,
    so the index path never blocks the shared read channel).  For each
    block of the range: its L_b goes to ``lens`` and reads of its words go
    out, in commands of at most ``burst`` words.  Read data are routed by
    tag: index words to the unpacking register, data words straight to
    ``words``.  Loads run one after the other (cfg must not change under
    a tensor).  Throughput: the data commands are issued one per clock,
    so the memory's read bandwidth is the limit; the index costs one read
    per E blocks.
    """

    def __init__(self, p: HwParams, addr_width: int = 24, burst: int = 32):
        if burst & (burst - 1) or not 2 <= burst <= MAX_BURST:
            raise ValueError(f"burst must be a power of two from 2 to {MAX_BURST}, got {burst}")
        self.p, self.addr_width, self.burst = p, addr_width, burst
        members = {
            "desc": In(stream.Signature(reader_desc_layout(addr_width))),
            "words": Out(stream.Signature(word_layout(p))),
            "cfg": Out(config_layout()),
            "mem": Out(mem_port_signature(p.word, addr_width)),
            "status": Out(stream.Signature(reader_status_layout())),
        }
        if p.gecko:
            members["lens"] = Out(stream.Signature(len_layout()))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p, W, BU = self.p, self.p.word, self.burst
        E = W // LEN_WIDTH
        lb = p.block.bit_length() - 1
        le = E.bit_length() - 1
        D = 4 * E

        # -- descriptor -------------------------------------------------------------------------
        active = Signal()
        d = Signal(reader_desc_layout(self.addr_width))
        b1c = Signal(32)
        nblk = Signal(33)
        nblk_d = Signal(33)             # the loaded tensor's block count
        dn = self.desc.payload
        m.d.comb += nblk.eq((dn.cfg.length + p.block - 1) >> lb)
        load_b1 = Signal(33)
        m.d.comb += load_b1.eq(Mux(dn.b1 < nblk, dn.b1, nblk))
        refuse = Signal()
        m.d.comb += refuse.eq((dn.cfg.length == 0) | (dn.b0 >= load_b1))
        err = Signal()                  # sticky per load: a read error or a bad index entry
        st = self.status
        st_valid = Signal()
        st_pay = Signal(reader_status_layout())
        m.d.comb += [st.valid.eq(st_valid), st.payload.eq(st_pay)]
        with m.If(st_valid & st.ready):
            m.d.sync += st_valid.eq(0)
        m.d.comb += self.desc.ready.eq(~active & ~st_valid)

        # range length in values for the unpacker's cfg
        hi = Signal(33)
        m.d.comb += hi.eq(Mux((b1c << lb) < d.cfg.length, b1c << lb, d.cfg.length))
        m.d.comb += [self.cfg.eq(d.cfg), self.cfg.length.eq(hi - (d.b0 << lb))]

        # Plain block lengths (format.md 4.3): a block never takes more words than ceil(count*v/W);
        # an index entry of 0 or above it (or from a read error) is replaced by it (status err), so
        # the unpacker still gets a well-framed stream and the next load is unaffected.
        lw = W.bit_length() - 1
        vbits = Signal(6)
        m.d.comb += vbits.eq(d.cfg.sign + d.cfg.exp_bits + d.cfg.man_bits)
        plain_full = Signal(LEN_WIDTH)
        plain_last = Signal(LEN_WIDTH)
        last_vals = Signal(lb + 1)
        m.d.comb += [plain_full.eq(((vbits << lb) + W - 1) >> lw),
                     last_vals.eq(d.cfg.length - ((nblk_d - 1) << lb)),
                     plain_last.eq((last_vals * vbits + W - 1) >> lw)]

        # -- index fetch and unpacking ------------------------------------------------------------
        m.submodules.efifo = efifo = SyncFIFO(width=LEN_WIDTH, depth=D)
        i_next = Signal(32)             # next index word to request
        i_busy = Signal()               # a request outstanding or its word being unpacked
        ureg = Signal(W)
        ucnt = Signal(range(E + 1))     # entries left in ureg
        eb = Signal(32)                 # block number of the next entry to unpack
        offset = Signal(self.addr_width)
        i_end = Signal(32)
        m.d.comb += i_end.eq((b1c + E - 1) >> le)
        want_i = Signal()
        m.d.comb += want_i.eq(active & ~i_busy & (i_next < i_end) & (efifo.level <= D - E))

        raw = Signal(LEN_WIDTH)
        cur = Signal(LEN_WIDTH)
        uerr = Signal()                 # the index word came back with a read error
        bad = Signal()
        lim = Signal(LEN_WIDTH)
        m.d.comb += [raw.eq(ureg[:LEN_WIDTH]), lim.eq(Mux(eb == nblk_d - 1, plain_last, plain_full)),
                     bad.eq(uerr | (raw == 0) | (raw > lim)), cur.eq(Mux(bad, lim, raw))]
        with m.If((ucnt != 0) & bad & (eb < b1c)):
            m.d.sync += err.eq(1)
        with m.If(ucnt != 0):
            m.d.sync += [ureg.eq(ureg >> LEN_WIDTH), ucnt.eq(ucnt - 1), eb.eq(eb + 1)]
            with m.If(eb < d.b0):
                m.d.sync += offset.eq(offset + cur)
            with m.Elif(eb < b1c):
                m.d.comb += [efifo.w_data.eq(cur), efifo.w_en.eq(1)]
            with m.If(ucnt == 1):
                m.d.sync += i_busy.eq(0)

        # -- data issue -----------------------------------------------------------------------
        clay = data.StructLayout({"count": 8, "last": 1})
        m.submodules.cfifo = cfifo = SyncFIFO(width=clay.size, depth=16)
        if p.gecko:
            m.submodules.lfifo = lfifo = SyncFIFOBuffered(width=LEN_WIDTH, depth=4)
            m.d.comb += [self.lens.payload.data.eq(lfifo.r_data), self.lens.valid.eq(lfifo.r_rdy),
                         lfifo.r_en.eq(self.lens.ready)]
        rem = Signal(LEN_WIDTH)         # words of the current block still to request
        blk = Signal(32)                # blocks of the range started
        run = Signal(self.addr_width)   # data words requested so far
        nb = Signal(32)
        m.d.comb += nb.eq(b1c - d.b0)
        last_blk = Signal()
        m.d.comb += last_blk.eq(blk == nb)             # the block being requested is the range's last
        start_blk = Signal()
        m.d.comb += start_blk.eq(active & (rem == 0) & (eb > d.b0) & (blk < nb) & efifo.r_rdy
                                 & (lfifo.w_rdy if p.gecko else 1))
        with m.If(start_blk):
            m.d.comb += efifo.r_en.eq(1)
            m.d.sync += [rem.eq(efifo.r_data), blk.eq(blk + 1)]
            if p.gecko:
                m.d.comb += [lfifo.w_data.eq(efifo.r_data), lfifo.w_en.eq(1)]
        cnt = Signal(range(BU + 1))
        m.d.comb += cnt.eq(Mux(rem > BU, BU, rem))
        cmd = self.mem.cmd
        with m.If(want_i):
            m.d.comb += [cmd.valid.eq(1), cmd.payload.addr.eq(d.index_addr + i_next), cmd.payload.count.eq(0),
                         cmd.payload.tag.eq(1)]
            with m.If(cmd.ready):
                m.d.sync += [i_next.eq(i_next + 1), i_busy.eq(1)]
        with m.Elif(rem != 0):
            m.d.comb += [cmd.valid.eq(cfifo.w_rdy), cmd.payload.addr.eq(d.data_addr + offset + run),
                         cmd.payload.count.eq(cnt - 1), cmd.payload.tag.eq(0)]
            ch = Signal(clay)
            m.d.comb += [ch.count.eq(cnt - 1), ch.last.eq(last_blk & (rem <= BU)),
                         cfifo.w_data.eq(ch), cfifo.w_en.eq(cmd.valid & cmd.ready)]
            with m.If(cmd.valid & cmd.ready):
                m.d.sync += [rem.eq(rem - cnt), run.eq(run + cnt)]

        # -- read data routing -----------------------------------------------------------------
        rd = self.mem.rdata
        chd = Signal(clay)
        m.d.comb += chd.eq(cfifo.r_data)
        ccnt = Signal(8)
        wo = self.words
        n_words = Signal(32)
        with m.If(rd.payload.tag):
            m.d.comb += rd.ready.eq(rd.valid & (ucnt == 0))      # (the tag means nothing without valid)
            with m.If(rd.valid & (ucnt == 0)):
                m.d.sync += [ureg.eq(rd.payload.data), ucnt.eq(E), uerr.eq(rd.payload.err)]
        with m.Else():
            m.d.comb += [wo.valid.eq(rd.valid & cfifo.r_rdy), wo.payload.data.eq(rd.payload.data),
                         wo.payload.last.eq(chd.last & (ccnt == chd.count)),
                         rd.ready.eq(rd.valid & wo.ready & cfifo.r_rdy)]
            with m.If(wo.valid & wo.ready):
                m.d.sync += n_words.eq(n_words + 1)
                with m.If(ccnt == chd.count):
                    m.d.comb += cfifo.r_en.eq(1)
                    m.d.sync += ccnt.eq(0)
                with m.Else():
                    m.d.sync += ccnt.eq(ccnt + 1)
                with m.If(wo.payload.last):
                    m.d.sync += [active.eq(0), st_valid.eq(1), st_pay.words.eq(n_words + 1),
                                 st_pay.blocks.eq(nb), st_pay.err.eq(err | rd.payload.err), st_pay.refused.eq(0)]
        with m.If(rd.valid & rd.ready & rd.payload.err):
            m.d.sync += err.eq(1)

        # -- descriptor load ----------------------------------------------------------------------
        with m.If(self.desc.valid & self.desc.ready):
            with m.If(refuse):
                m.d.sync += [st_valid.eq(1), st_pay.eq(0), st_pay.refused.eq(1)]
            with m.Else():
                m.d.sync += [active.eq(1), d.eq(dn), b1c.eq(load_b1), nblk_d.eq(nblk), i_next.eq(0), i_busy.eq(0), eb.eq(0),
                             offset.eq(0), rem.eq(0), blk.eq(0), run.eq(0), n_words.eq(0), err.eq(0)]
        return m
