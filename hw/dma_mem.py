"""The DMA engines' memory port: burst commands over W-bit words, and its clock-domain crossing.

The writer and reader (:mod:`sfp.hw.dma_writer`, :mod:`sfp.hw.dma_reader`)
talk to memory through one small, bus-neutral interface, :func:`mem_port_signature`
(seen from the engine, i.e. the master side):

* ``cmd``   (out): ``{addr, count, we, tag}`` -- ``count + 1`` consecutive
  W-bit words from word address ``addr`` (byte address ``addr * W/8``),
  1..256 words; ``we`` write or read; ``tag`` one bit the engine chooses
  (data 0 / block index 1), carried to the memory bus as the AXI ID.
* ``wdata`` (out): the write words, in command order.
* ``rdata`` (in): ``{data, tag, err}`` the read words (``err``: AXI RRESP not OKAY).  Words of the same tag
  come back in command order; words of different tags may come back in any
  order and interleaved (AXI allows it across IDs) -- the engines route by tag.
* ``wresp`` (in): ``{err}`` one entry per write command, in command order,
  once all its words are written (AXI: its B responses arrived; ``err`` = any
  BRESP not OKAY).

Bus adapters turn this into AXI4 (:class:`sfp.hw.axi4_master.Axi4Master`) or
LiteDRAM's native port (:class:`sfp.hw.litedram_port.LiteDramNative`).
:class:`MemPortCDC` moves the interface from the units' clock to the
memory clock with four :class:`amaranth.lib.fifo.AsyncFIFO`;
:class:`MemPortArbiter` lets a writer and a reader share one port.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import AsyncFIFO
from amaranth.lib.wiring import In, Out

__all__ = ["MAX_BURST", "mem_cmd_layout", "mem_port_signature", "MemPortCDC", "MemPortArbiter"]

#: The longest command, in words (AXI4's INCR limit).
MAX_BURST = 256


def mem_cmd_layout(addr_width: int) -> data.StructLayout:
    return data.StructLayout({"addr": addr_width, "count": 8, "we": 1, "tag": 1})


def rdata_layout(word: int) -> data.StructLayout:
    return data.StructLayout({"data": word, "tag": 1, "err": 1})


def mem_port_signature(word: int, addr_width: int) -> wiring.Signature:
    """The engine side (master) of the memory port; ``addr_width`` counts W-bit words."""
    return wiring.Signature({
        "cmd": Out(stream.Signature(mem_cmd_layout(addr_width))),
        "wdata": Out(stream.Signature(word)),
        "rdata": In(stream.Signature(rdata_layout(word))),
        "wresp": In(stream.Signature(data.StructLayout({"err": 1}))),
    })


def _cross(m: Module, name: str, src, dst, *, w_domain: str, r_domain: str, depth: int):
    """src stream (in w_domain) -> AsyncFIFO -> dst stream (in r_domain)."""
    width = len(src.payload.as_value()) if hasattr(src.payload, "as_value") else len(src.payload)
    fifo = AsyncFIFO(width=width, depth=depth, w_domain=w_domain, r_domain=r_domain)
    m.submodules[name] = fifo
    m.d.comb += [
        fifo.w_data.eq(src.payload), fifo.w_en.eq(src.valid), src.ready.eq(fifo.w_rdy),
        dst.payload.eq(fifo.r_data), dst.valid.eq(fifo.r_rdy), fifo.r_en.eq(dst.ready),
    ]


class MemPortCDC(wiring.Component):
    """The memory port across two unrelated clocks.

    Parameters: ``word`` W, ``addr_width``, ``depth`` of each FIFO (power of
    two), ``unit_domain`` (default ``"sync"``) and ``mem_domain`` (default ``"mem"``).

    Ports: ``units`` (In(:func:`mem_port_signature`), the engines' side, in
    ``unit_domain``), ``mem`` (Out(same), the bus adapter's side, in ``mem_domain``).

    Four :class:`AsyncFIFO` (cmd, wdata: units -> mem; rdata, wresp: mem ->
    units); each adds about 3-4 clocks of the reading domain to the path
    (Gray-code pointer synchronisers) and passes one entry per clock of the
    slower domain.  Resets: each FIFO is reset by its write domain (the
    AsyncFIFO rule); reset both domains together.
    """

    def __init__(self, word: int, addr_width: int, *, depth: int = 16, unit_domain: str = "sync",
                 mem_domain: str = "mem"):
        self.word, self.addr_width, self.depth = word, addr_width, depth
        self.unit_domain, self.mem_domain = unit_domain, mem_domain
        sig = mem_port_signature(word, addr_width)
        super().__init__({"units": In(sig), "mem": Out(sig)})

    def elaborate(self, platform):
        m = Module()
        u, mm, d = self.unit_domain, self.mem_domain, self.depth
        _cross(m, "cmd", self.units.cmd, self.mem.cmd, w_domain=u, r_domain=mm, depth=d)
        _cross(m, "wdata", self.units.wdata, self.mem.wdata, w_domain=u, r_domain=mm, depth=d)
        _cross(m, "rdata", self.mem.rdata, self.units.rdata, w_domain=mm, r_domain=u, depth=d)
        _cross(m, "wresp", self.mem.wresp, self.units.wresp, w_domain=mm, r_domain=u, depth=d)
        return m


class MemPortArbiter(wiring.Component):
    """A writer and a reader on one memory port.

    Ports: ``wr`` (In(port)): the writer's (its read channels unused),
    ``rd`` (In(port)): the reader's (its write channels unused), ``bus`` (Out(port)).

    Commands alternate between the two when both wait (round robin, one
    command per clock, the grant held while a command is offered so the
    stream stays stable); ``wdata``/``wresp`` go to the writer and ``rdata``
    to the reader.  Combinational, no latency.
    """

    def __init__(self, word: int, addr_width: int):
        sig = mem_port_signature(word, addr_width)
        super().__init__({"wr": In(sig), "rd": In(sig), "bus": Out(sig)})

    def elaborate(self, platform):
        m = Module()
        last_rd = Signal()               # the reader had the last grant
        hold = Signal()                  # a command is offered and not yet taken: keep the grant
        held_rd = Signal()
        pick_rd = Signal()
        with m.If(hold):
            m.d.comb += pick_rd.eq(held_rd)
        with m.Else():
            m.d.comb += pick_rd.eq(self.rd.cmd.valid & (~self.wr.cmd.valid | ~last_rd))
        with m.If(pick_rd):
            m.d.comb += [self.bus.cmd.payload.eq(self.rd.cmd.payload), self.bus.cmd.valid.eq(self.rd.cmd.valid),
                         self.rd.cmd.ready.eq(self.bus.cmd.ready)]
        with m.Else():
            m.d.comb += [self.bus.cmd.payload.eq(self.wr.cmd.payload), self.bus.cmd.valid.eq(self.wr.cmd.valid),
                         self.wr.cmd.ready.eq(self.bus.cmd.ready)]
        m.d.sync += [hold.eq(self.bus.cmd.valid & ~self.bus.cmd.ready), held_rd.eq(pick_rd)]
        with m.If(self.bus.cmd.valid & self.bus.cmd.ready):
            m.d.sync += last_rd.eq(pick_rd)
        m.d.comb += [
            self.bus.wdata.payload.eq(self.wr.wdata.payload), self.bus.wdata.valid.eq(self.wr.wdata.valid),
            self.wr.wdata.ready.eq(self.bus.wdata.ready),
            self.wr.wresp.payload.eq(self.bus.wresp.payload), self.wr.wresp.valid.eq(self.bus.wresp.valid),
            self.bus.wresp.ready.eq(self.wr.wresp.ready),
            self.rd.rdata.payload.eq(self.bus.rdata.payload), self.rd.rdata.valid.eq(self.bus.rdata.valid),
            self.bus.rdata.ready.eq(self.rd.rdata.ready),
        ]
        return m
