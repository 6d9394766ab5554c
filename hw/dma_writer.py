"""The store DMA engine: the packer's words and block index into memory.

See :class:`DmaWriter`; the memory interface is :mod:`sfp.hw.dma_mem`'s.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .dma_mem import MAX_BURST, mem_port_signature
from .params import HwParams
from .wordpack import LEN_WIDTH, len_layout, word_layout

__all__ = ["DmaWriter", "writer_desc_layout", "writer_status_layout", "index_words"]


def writer_desc_layout(addr_width: int) -> data.StructLayout:
    """One tensor to store: where its words go and where its block index goes (word addresses)."""
    return data.StructLayout({"data_addr": addr_width, "index_addr": addr_width})


def writer_status_layout() -> data.StructLayout:
    """One per stored tensor: data words written, blocks (index entries) written, a write error."""
    return data.StructLayout({"words": 32, "blocks": 32, "err": 1})


def index_words(blocks: int, word: int) -> int:
    """W-bit words the block index of ``blocks`` entries takes (``W/32`` entries per word)."""
    per = word // LEN_WIDTH
    return -(-blocks // per)


class DmaWriter(wiring.Component):
    """Stores tensors: the packer's ``m_axis`` words at consecutive addresses, its ``m_len`` entries as the index.

    Parameters
    ----------
    p : HwParams
        The packer's parameters (W, the word width, is what matters).
    addr_width : int
        Width of word addresses (W-bit words) on the memory port.
    burst : int
        Longest data command in words (power of two, 2..256); the staging
        FIFO holds two of them.

    Ports
    -----
    desc : In(stream of :func:`writer_desc_layout`)
        One descriptor per tensor, in the order the tensors leave the packer.
        The packer's own ``cfg`` is driven by whoever feeds its values (it
        is sampled with the tensor's first beat, long before the words come out).
    words : In(stream of {data: W, last: 1})
        The packer's ``m_axis``.
    lens : In(stream of {data: 32, last: 1})
        The packer's ``m_len``.
    mem : Out(:func:`sfp.hw.dma_mem.mem_port_signature`)
        Commands with tag 0 for data, 1 for the index.
    status : Out(stream of :func:`writer_status_layout`)
        One entry per tensor once all its writes are acknowledged (``wresp``);
        ``err`` when any of them came back with an error.

    Memory layout (docs/hardware.md, integration chapter): the tensor's
    words at ``data_addr``, ``data_addr + 1``, ...; the block index at
    ``index_addr``: entry b (L_b, 32 bits) in word ``index_addr + b // E``
    at bits ``[32*(b % E) +: 32]`` with E = W/32, unused entries of the last
    index word 0.

    Operation: words collect in a 2*burst staging FIFO; a data command goes
    out when ``burst`` words are waiting or the tensor's last word is in
    (no command spans two tensors: after a last word the FIFO takes nothing
    until the command that covers it is issued).  Entries are packed E to an
    index word, and each index word is written with a one-word command
    (index words have priority: there are few of them).  The write data
    follow the commands' order from a small order queue.  A tensor
    completes when its last word and last index entry are covered and
    every command of it has its ``wresp``; then the status is pushed and
    the next descriptor starts (the next tensor's words wait in the FIFO
    meanwhile, so completion costs the round trip of the last write).

    Throughput: one word per clock into the staging FIFO while commands
    keep up (one command per clock, ``burst`` words each).  Latency: a data
    command ``burst`` words after its first word, or 2 clocks after a last word.
    """

    def __init__(self, p: HwParams, addr_width: int = 24, burst: int = 32):
        if burst & (burst - 1) or not 2 <= burst <= MAX_BURST:
            raise ValueError(f"burst must be a power of two from 2 to {MAX_BURST}, got {burst}")
        self.p, self.addr_width, self.burst = p, addr_width, burst
        super().__init__({
            "desc": In(stream.Signature(writer_desc_layout(addr_width))),
            "words": In(stream.Signature(word_layout(p))),
            "lens": In(stream.Signature(len_layout())),
            "mem": Out(mem_port_signature(p.word, addr_width)),
            "status": Out(stream.Signature(writer_status_layout())),
        })

    def elaborate(self, platform):
        m = Module()
        W, B = self.p.word, self.burst
        E = W // LEN_WIDTH

        # -- data staging -------------------------------------------------------------------
        m.submodules.dfifo = dfifo = SyncFIFOBuffered(width=W, depth=2 * B)
        pending = Signal(range(2 * B + 2))        # words in dfifo not yet covered by a command
        pend_last = Signal()                      # the tensor's last word is among them
        take_w = Signal()
        m.d.comb += [
            take_w.eq(self.words.valid & dfifo.w_rdy & ~pend_last),
            self.words.ready.eq(dfifo.w_rdy & ~pend_last),
            dfifo.w_data.eq(self.words.payload.data),
            dfifo.w_en.eq(take_w),
        ]

        # -- index packing ------------------------------------------------------------------
        # ifo entries: the word, entries in it, last (holds the tensor's final entry)
        ilay = data.StructLayout({"word": W, "n": range(E + 1), "last": 1})
        m.submodules.ififo = ififo = SyncFIFOBuffered(width=ilay.size, depth=4)
        ireg = Signal(W)
        icnt = Signal(range(E + 1))
        ipending = Signal(range(8))               # index words in ififo not yet covered
        ient = self.lens.payload
        flush = Signal()
        m.d.comb += [
            self.lens.ready.eq(ififo.w_rdy),
            flush.eq(self.lens.valid & ififo.w_rdy & ((icnt == E - 1) | ient.last)),
        ]
        newword = Signal(W)
        m.d.comb += newword.eq(ireg | (ient.data << (icnt * LEN_WIDTH)))
        iw = Signal(ilay)
        m.d.comb += [iw.word.eq(newword), iw.n.eq(icnt + 1), iw.last.eq(ient.last),
                     ififo.w_data.eq(iw), ififo.w_en.eq(flush)]
        with m.If(self.lens.valid & self.lens.ready):
            with m.If(flush):
                m.d.sync += [ireg.eq(0), icnt.eq(0)]
            with m.Else():
                m.d.sync += [ireg.eq(newword), icnt.eq(icnt + 1)]

        # -- command issue --------------------------------------------------------------------
        active = Signal()
        d_ptr = Signal(self.addr_width)
        i_ptr = Signal(self.addr_width)
        n_words = Signal(32)
        n_blocks = Signal(32)
        data_done = Signal()
        index_done = Signal()
        issued = Signal(16)                       # commands of this tensor not yet acknowledged
        err = Signal()
        # order queue for the write data: 0 data (count+1 words), 1 index word
        olay = data.StructLayout({"count": 8, "idx": 1})
        m.submodules.ofifo = ofifo = SyncFIFO(width=olay.size, depth=8)
        cmd = self.mem.cmd
        want_idx = Signal()
        want_dat = Signal()
        dcount = Signal(range(B + 1))
        m.d.comb += [
            want_idx.eq(active & (ipending != 0) & ~index_done),
            want_dat.eq(active & ~data_done & (pending != 0) & ((pending >= B) | pend_last)),
            dcount.eq(pending),
        ]
        with m.If(pending > B):
            m.d.comb += dcount.eq(B)
        last_cover = Signal()                     # this data command covers the last word
        m.d.comb += last_cover.eq(pend_last & (pending <= B))
        ohead = Signal(olay)
        with m.If(want_idx):
            m.d.comb += [cmd.valid.eq(ofifo.w_rdy), cmd.payload.addr.eq(i_ptr), cmd.payload.count.eq(0),
                         cmd.payload.we.eq(1), cmd.payload.tag.eq(1), ohead.idx.eq(1)]
        with m.Elif(want_dat):
            m.d.comb += [cmd.valid.eq(ofifo.w_rdy), cmd.payload.addr.eq(d_ptr), cmd.payload.count.eq(dcount - 1),
                         cmd.payload.we.eq(1), cmd.payload.tag.eq(0), ohead.count.eq(dcount - 1)]
        m.d.comb += [ofifo.w_data.eq(ohead), ofifo.w_en.eq(cmd.valid & cmd.ready)]

        # index-word bookkeeping: ififo entries are covered in order; their flags are read
        # at the head of the uncovered part, which is tracked by a second pointer over a copy.
        mlay = data.StructLayout({"n": 8, "last": 1})
        m.submodules.imeta = imeta = SyncFIFO(width=mlay.size, depth=8)    # (n, last) of uncovered words
        mw, mr = Signal(mlay), Signal(mlay)
        m.d.comb += [mw.n.eq(iw.n), mw.last.eq(iw.last), imeta.w_data.eq(mw), imeta.w_en.eq(flush),
                     mr.eq(imeta.r_data)]
        i_cmd = Signal()
        d_cmd = Signal()
        m.d.comb += [
            i_cmd.eq(cmd.valid & cmd.ready & want_idx),
            d_cmd.eq(cmd.valid & cmd.ready & ~want_idx & want_dat),
            imeta.r_en.eq(i_cmd),
        ]
        m.d.sync += ipending.eq(ipending + flush - i_cmd)
        m.d.sync += pending.eq(pending + take_w - Mux(d_cmd, dcount, 0))
        with m.If(take_w & self.words.payload.last):
            m.d.sync += pend_last.eq(1)
        with m.If(d_cmd & last_cover):
            m.d.sync += [pend_last.eq(0), data_done.eq(1)]
        with m.If(d_cmd):
            m.d.sync += [d_ptr.eq(d_ptr + dcount), n_words.eq(n_words + dcount)]
        with m.If(i_cmd):
            m.d.sync += [i_ptr.eq(i_ptr + 1), n_blocks.eq(n_blocks + mr.n)]
            with m.If(mr.last):
                m.d.sync += index_done.eq(1)

        # -- write data, in command order -------------------------------------------------------
        wd = self.mem.wdata
        ohd = Signal(olay)
        m.d.comb += ohd.eq(ofifo.r_data)
        wcnt = Signal(8)
        ihd = Signal(ilay)
        m.d.comb += ihd.eq(ififo.r_data)
        with m.If(ofifo.r_rdy):
            with m.If(ohd.idx):
                m.d.comb += [wd.payload.eq(ihd.word), wd.valid.eq(ififo.r_rdy),
                             ififo.r_en.eq(wd.valid & wd.ready), ofifo.r_en.eq(wd.valid & wd.ready)]
            with m.Else():
                m.d.comb += [wd.payload.eq(dfifo.r_data), wd.valid.eq(dfifo.r_rdy),
                             dfifo.r_en.eq(wd.ready)]
                with m.If(wd.valid & wd.ready):
                    with m.If(wcnt == ohd.count):
                        m.d.comb += ofifo.r_en.eq(1)
                        m.d.sync += wcnt.eq(0)
                    with m.Else():
                        m.d.sync += wcnt.eq(wcnt + 1)

        # -- acknowledgements and completion -----------------------------------------------------
        wr = self.mem.wresp
        m.d.comb += wr.ready.eq(1)
        got = Signal()
        m.d.comb += got.eq(wr.valid)
        m.d.sync += issued.eq(issued + (cmd.valid & cmd.ready) - got)
        with m.If(got & wr.payload.err):
            m.d.sync += err.eq(1)
        st = self.status
        done = Signal()
        m.d.comb += done.eq(active & data_done & index_done & (issued == 0))
        m.d.comb += [st.payload.words.eq(n_words), st.payload.blocks.eq(n_blocks), st.payload.err.eq(err),
                     st.valid.eq(done)]
        with m.If(done & st.ready):
            m.d.sync += [active.eq(0)]
        m.d.comb += self.desc.ready.eq(~active)
        with m.If(self.desc.valid & ~active):
            m.d.sync += [active.eq(1), d_ptr.eq(self.desc.payload.data_addr), i_ptr.eq(self.desc.payload.index_addr),
                         n_words.eq(0), n_blocks.eq(0), data_done.eq(0), index_done.eq(0), err.eq(0)]
        return m
