"""AXI4 memory-mapped master for the DMA engines' memory port.

See :class:`Axi4Master`.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .dma_mem import mem_port_signature

__all__ = ["Axi4Master", "axi4_signature"]


def axi4_signature(data_width: int, addr_width: int = 32, id_width: int = 1) -> wiring.Signature:
    """The five AXI4 channels, master side (flat names as in the AXI spec, lower case)."""
    return wiring.Signature({
        "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3), "awburst": Out(2),
        "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1), "wvalid": Out(1), "wready": In(1),
        "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3), "arburst": Out(2),
        "arvalid": Out(1), "arready": In(1),
        "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1), "rvalid": In(1),
        "rready": Out(1),
    })


class Axi4Master(wiring.Component):
    """Turns the memory port's burst commands into AXI4 transactions.

    Parameters
    ----------
    word : int
        W, the data width (the AXI data bus is W bits: no width conversion here).
    addr_width : int
        Word-address width of the memory port; the AXI byte address has
        ``addr_width + log2(W/8)`` bits.
    outstanding : int
        Write bursts awaiting their response, per ID, and write commands
        awaiting completion (depth of the bookkeeping FIFOs; power of two).

    Ports
    -----
    port : In(:func:`sfp.hw.dma_mem.mem_port_signature`)
    axi : Out(:func:`axi4_signature`) with ``id_width`` 1: the command's tag is the ID.

    Behaviour
    ---------
    * INCR bursts (AxBURST 1) of full-width beats (AxSIZE log2(W/8)),
      at most 256 beats and never across a 4 KiB boundary: a command that
      would cross one is split into two bursts (a command is at most 256
      words, so never more than two).
    * AW/AR are issued as soon as commands arrive, without waiting for
      responses: several transactions outstanding (bounded by the FIFOs).
      W beats follow the AW order (AXI4 has no write interleaving), WSTRB
      all ones, WLAST on each burst's final beat.
    * Write responses: B may return in any order across the two IDs, in
      order within one (AXI's rule); they are queued per ID and each
      command's ``wresp`` is emitted, in command order, once all of its
      bursts' responses are in, ``err`` if any BRESP was not OKAY (0).
    * Reads: R beats go to ``rdata`` with RID as the tag (so data of the two
      IDs may arrive reordered or interleaved) and ``err`` = RRESP not OKAY.
      RREADY is the engine's ready.

    Latency: AW/AR one clock after the command is accepted (registered
    channel outputs).  Throughput: one address per clock, one W/R beat per clock.
    """

    def __init__(self, word: int, addr_width: int = 24, *, outstanding: int = 8):
        self.word, self.addr_width, self.outstanding = word, addr_width, outstanding
        self.bshift = (word // 8).bit_length() - 1
        self.axi_addr_width = addr_width + self.bshift
        super().__init__({
            "port": In(mem_port_signature(word, addr_width)),
            "axi": Out(axi4_signature(word, self.axi_addr_width, 1)),
        })

    def elaborate(self, platform):
        m = Module()
        W, O = self.word, self.outstanding
        axi, port = self.axi, self.port
        page = 4096 >> self.bshift                      # words per 4 KiB page
        lp = page.bit_length() - 1

        # -- address channels: split commands at 4 KiB -----------------------------------------
        busy = Signal()
        c_addr = Signal(self.addr_width)
        c_rem = Signal(9)                               # words of the command still to issue
        c_we = Signal()
        c_tag = Signal()
        c_nb = Signal(2)                                # bursts issued for this command
        to_page = Signal(lp + 1)
        m.d.comb += to_page.eq(page - c_addr[:lp])
        beats = Signal(9)
        m.d.comb += beats.eq(Mux(c_rem > to_page, to_page, c_rem))
        if page > 256:
            m.d.comb += beats.eq(Mux(beats > 256, 256, beats))

        m.submodules.wlen = wlen = SyncFIFO(width=8, depth=O * 2)       # beats-1 of each AW, for WLAST
        clay = data.StructLayout({"tag": 1, "n": 2})
        m.submodules.wcmd = wcmd = SyncFIFO(width=clay.size, depth=O)   # per write command: ID, bursts
        aw_v, ar_v = Signal(), Signal()
        m.d.comb += [axi.awvalid.eq(aw_v), axi.arvalid.eq(ar_v)]
        aw_go = Signal()
        m.d.comb += port.cmd.ready.eq(~busy)
        with m.If(port.cmd.valid & ~busy):
            m.d.sync += [busy.eq(1), c_addr.eq(port.cmd.payload.addr), c_rem.eq(port.cmd.payload.count + 1),
                         c_we.eq(port.cmd.payload.we), c_tag.eq(port.cmd.payload.tag), c_nb.eq(0)]
        # Issue one burst per clock while busy; the channel registers hold it until accepted.
        free_aw = ~aw_v | axi.awready
        free_ar = ~ar_v | axi.arready
        with m.If(aw_v & axi.awready):
            m.d.sync += aw_v.eq(0)
        with m.If(ar_v & axi.arready):
            m.d.sync += ar_v.eq(0)
        can = Signal()
        m.d.comb += can.eq(busy & Mux(c_we, free_aw & wlen.w_rdy & wcmd.w_rdy, free_ar))
        fin = Signal()
        m.d.comb += fin.eq(beats == c_rem)
        with m.If(can):
            m.d.sync += [c_addr.eq(c_addr + beats), c_rem.eq(c_rem - beats), c_nb.eq(c_nb + 1)]
            with m.If(fin):
                m.d.sync += busy.eq(0)
            with m.If(c_we):
                m.d.sync += [aw_v.eq(1), axi.awaddr.eq(c_addr << self.bshift), axi.awlen.eq(beats - 1),
                             axi.awid.eq(c_tag)]
                m.d.comb += [wlen.w_data.eq(beats - 1), wlen.w_en.eq(1), aw_go.eq(1)]
                with m.If(fin):
                    wc = Signal(clay)
                    m.d.comb += [wc.tag.eq(c_tag), wc.n.eq(c_nb + 1), wcmd.w_data.eq(wc), wcmd.w_en.eq(1)]
            with m.Else():
                m.d.sync += [ar_v.eq(1), axi.araddr.eq(c_addr << self.bshift), axi.arlen.eq(beats - 1),
                             axi.arid.eq(c_tag)]
        m.d.comb += [axi.awsize.eq(self.bshift), axi.arsize.eq(self.bshift), axi.awburst.eq(1), axi.arburst.eq(1)]

        # -- W channel -------------------------------------------------------------------------------
        wcnt = Signal(8)
        m.d.comb += [
            axi.wdata.eq(port.wdata.payload), axi.wstrb.eq((1 << (W // 8)) - 1),
            axi.wvalid.eq(port.wdata.valid & wlen.r_rdy), port.wdata.ready.eq(axi.wready & wlen.r_rdy),
            axi.wlast.eq(wcnt == wlen.r_data),
        ]
        with m.If(axi.wvalid & axi.wready):
            with m.If(axi.wlast):
                m.d.comb += wlen.r_en.eq(1)
                m.d.sync += wcnt.eq(0)
            with m.Else():
                m.d.sync += wcnt.eq(wcnt + 1)

        # -- B channel: per-ID queues, completion per command in command order -------------------------
        bq = []
        for i in range(2):
            q = SyncFIFOBuffered(width=1, depth=O * 2)
            m.submodules[f"bq{i}"] = q
            bq.append(q)
            m.d.comb += [q.w_data.eq(axi.bresp != 0), q.w_en.eq(axi.bvalid & axi.bready & (axi.bid == i))]
        m.d.comb += axi.bready.eq(Mux(axi.bid, bq[1].w_rdy, bq[0].w_rdy))
        hd = Signal(clay)
        m.d.comb += hd.eq(wcmd.r_data)
        taken = Signal(2)
        acc = Signal()
        q_rdy = Mux(hd.tag, bq[1].r_rdy, bq[0].r_rdy)
        q_err = Mux(hd.tag, bq[1].r_data, bq[0].r_data)
        pop = Signal()
        final = Signal()
        m.d.comb += final.eq(taken + 1 == hd.n)
        wr = port.wresp
        with m.If(wcmd.r_rdy & q_rdy):
            with m.If(final):
                m.d.comb += [wr.valid.eq(1), wr.payload.err.eq(acc | q_err), pop.eq(wr.ready)]
            with m.Else():
                m.d.comb += pop.eq(1)
        with m.If(pop):
            m.d.comb += [bq[0].r_en.eq(~hd.tag), bq[1].r_en.eq(hd.tag)]
            with m.If(final):
                m.d.comb += wcmd.r_en.eq(1)
                m.d.sync += [taken.eq(0), acc.eq(0)]
            with m.Else():
                m.d.sync += [taken.eq(taken + 1), acc.eq(acc | q_err)]

        # -- R channel -------------------------------------------------------------------------------
        rd = port.rdata
        m.d.comb += [rd.valid.eq(axi.rvalid), rd.payload.data.eq(axi.rdata), rd.payload.tag.eq(axi.rid),
                     rd.payload.err.eq(axi.rresp != 0), axi.rready.eq(rd.ready)]
        return m
