"""The DMA engines' memory port on LiteDRAM's native user port, with a width adapter.

See :class:`LiteDramNative`.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .dma_mem import mem_port_signature

__all__ = ["LiteDramNative", "native_signature"]


def native_signature(data_width: int, addr_width: int) -> wiring.Signature:
    """LiteDRAM's native user port, seen from the user (names as ``litedram_gen`` writes them after ``user_port_<name>_``)."""
    return wiring.Signature({
        "cmd_valid": Out(1), "cmd_ready": In(1), "cmd_we": Out(1), "cmd_addr": Out(addr_width),
        "wdata_valid": Out(1), "wdata_ready": In(1), "wdata_data": Out(data_width), "wdata_we": Out(data_width // 8),
        "rdata_valid": In(1), "rdata_ready": Out(1), "rdata_data": In(data_width),
    })


class LiteDramNative(wiring.Component):
    """Memory port -> LiteDRAM native port (``M`` bits wide, M dividing W).

    Parameters
    ----------
    word : int
        W, the engines' word.
    native_width : int
        M, the user port's data width (16 for the ULX3S SDR controller,
        128 for an ECP5 DDR3 one); W must be a multiple of M.
    native_addr_width : int
        The user port's address width (in M-bit words).
    addr_width : int
        The memory port's word-address width.
    rdepth : int
        Read-return buffer, in M-bit words (power of two).

    Ports: ``port`` (In(mem port)), ``native`` (Out(:func:`native_signature`)).

    Width adapter: W-bit word ``a`` is native words ``a*k .. a*k+k-1``
    (k = W/M), its bits ``[j*M +: M]`` in native word ``a*k + j`` (little
    endian, so a byte address means the same on both sides).  Each burst
    command becomes ``(count+1)*k`` single-word native commands (LiteDRAM's
    native port has no bursts; its crossbar and bank machines reorder
    nothing on one port).  Write data are cut into k pieces, all byte lanes
    enabled; a command's ``wresp`` (err 0: LiteDRAM reports no write errors)
    goes out when its last piece is accepted.  Reads: LiteDRAM's native
    port ignores ``rdata_ready``, so a read command is issued only when the
    return buffer has room for its word (a credit counter), and the pieces
    are reassembled into W-bit words tagged from an in-order queue.

    Throughput: one native command per clock, one piece per clock each way,
    i.e. W/k bits per memory clock at most -- the user port's own limit.
    """

    def __init__(self, word: int, native_width: int, native_addr_width: int, addr_width: int = 24, *,
                 rdepth: int = 32):
        if native_width > word or word % native_width:
            raise ValueError(f"the native port width ({native_width}) must divide W ({word})")
        self.word, self.mw, self.naw, self.addr_width, self.rdepth = word, native_width, native_addr_width, addr_width, rdepth
        self.k = word // native_width
        super().__init__({
            "port": In(mem_port_signature(word, addr_width)),
            "native": Out(native_signature(native_width, native_addr_width)),
        })

    def elaborate(self, platform):
        m = Module()
        W, M, k, R = self.word, self.mw, self.k, self.rdepth
        nat, port = self.native, self.port
        lk = k.bit_length() - 1

        # -- commands ---------------------------------------------------------------------------------
        busy = Signal()
        c_addr = Signal(self.naw)
        c_left = Signal(9 + lk)                 # native commands left
        c_we = Signal()
        credit = Signal(range(R + 1), init=R)   # free slots in the read-return buffer
        m.submodules.rtag = rtag = SyncFIFO(width=9, depth=16)       # read commands: tag, count
        m.submodules.wcnt = wcq = SyncFIFO(width=8, depth=16)        # write commands: count
        pc = port.cmd.payload
        # ready depends on registered state only (not on the payload): no X from an empty FIFO's data
        m.d.comb += port.cmd.ready.eq(~busy & wcq.w_rdy & rtag.w_rdy)
        with m.If(port.cmd.valid & port.cmd.ready):
            m.d.sync += [busy.eq(1), c_addr.eq(pc.addr << lk), c_left.eq((pc.count + 1) << lk), c_we.eq(pc.we)]
            with m.If(pc.we):
                m.d.comb += [wcq.w_data.eq(pc.count), wcq.w_en.eq(1)]
            with m.Else():
                m.d.comb += [rtag.w_data.eq(pc.count | (pc.tag << 8)),
                             rtag.w_en.eq(1)]
        rd_issue = Signal()
        m.d.comb += [nat.cmd_valid.eq(busy & (c_we | (credit != 0))), nat.cmd_we.eq(c_we), nat.cmd_addr.eq(c_addr)]
        with m.If(nat.cmd_valid & nat.cmd_ready):
            m.d.sync += [c_addr.eq(c_addr + 1), c_left.eq(c_left - 1)]
            with m.If(c_left == 1):
                m.d.sync += busy.eq(0)
            m.d.comb += rd_issue.eq(~c_we)

        # -- write data: W -> k pieces ---------------------------------------------------------------
        piece = Signal(range(k)) if k > 1 else None
        wwords = Signal(8)
        sel = port.wdata.payload.word_select(piece, M) if k > 1 else port.wdata.payload
        # a word goes out only once its command is known (counted against it for wresp)
        m.d.comb += [nat.wdata_valid.eq(port.wdata.valid & wcq.r_rdy), nat.wdata_data.eq(sel),
                     nat.wdata_we.eq((1 << (M // 8)) - 1)]
        wr = port.wresp
        last_piece = (piece == k - 1) if k > 1 else True
        end_cmd = Signal()
        m.d.comb += end_cmd.eq(wcq.r_rdy & (wwords == wcq.r_data))
        # the command's final piece waits for room in wresp (never long: the engine always takes it)
        with m.If(end_cmd & last_piece):
            m.d.comb += port.wdata.ready.eq(nat.wdata_ready & wr.ready)
            m.d.comb += nat.wdata_valid.eq(port.wdata.valid & wcq.r_rdy & wr.ready)
        with m.Else():
            m.d.comb += port.wdata.ready.eq(nat.wdata_ready & wcq.r_rdy & last_piece)
        with m.If(nat.wdata_valid & nat.wdata_ready):
            if k > 1:
                m.d.sync += piece.eq(piece + 1)
            if k > 1:
                cond = piece == k - 1
            else:
                cond = True
            with m.If(cond):
                with m.If(end_cmd):
                    m.d.comb += [wr.valid.eq(1), wcq.r_en.eq(1)]
                    m.d.sync += wwords.eq(0)
                with m.Else():
                    m.d.sync += wwords.eq(wwords + 1)

        # -- read data: credits, return buffer, k pieces -> W ---------------------------------------------
        m.submodules.rbuf = rbuf = SyncFIFOBuffered(width=M, depth=R)
        m.d.comb += [rbuf.w_data.eq(nat.rdata_data), rbuf.w_en.eq(nat.rdata_valid), nat.rdata_ready.eq(1)]
        acc = Signal(W)
        have = Signal(range(k + 1))             # pieces in acc
        take = Signal()
        m.d.sync += credit.eq(credit - rd_issue + take)
        out_rdy = Signal()
        rd = port.rdata
        m.d.comb += take.eq(rbuf.r_rdy & ((have != k) | out_rdy))
        m.d.comb += rbuf.r_en.eq(take)
        rwords = Signal(8)
        m.d.comb += [rd.valid.eq((have == k) & rtag.r_rdy), rd.payload.data.eq(acc),
                     rd.payload.tag.eq(rtag.r_data[8]), out_rdy.eq(rd.valid & rd.ready)]
        nxt_have = Signal.like(have)
        m.d.comb += nxt_have.eq(Mux(out_rdy, 0, have))
        with m.If(take):
            if k > 1:
                m.d.sync += acc.eq((acc >> M) | (rbuf.r_data << (W - M)))
            else:
                m.d.sync += acc.eq(rbuf.r_data)
            m.d.sync += have.eq(nxt_have + 1)
        with m.Else():
            m.d.sync += have.eq(nxt_have)
        with m.If(out_rdy):
            with m.If(rwords == rtag.r_data[:8]):
                m.d.comb += rtag.r_en.eq(1)
                m.d.sync += rwords.eq(0)
            with m.Else():
                m.d.sync += rwords.eq(rwords + 1)
        return m
