"""Packer + writer and reader + unpacker on one memory bus, across two clocks.

See :class:`DmaSystem`.
"""

from __future__ import annotations

from amaranth import DomainRenamer, Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .axi4_master import Axi4Master, axi4_signature
from .dma_mem import MemPortArbiter, MemPortCDC
from .dma_reader import DmaReader, reader_desc_layout, reader_status_layout
from .dma_writer import DmaWriter, writer_desc_layout, writer_status_layout
from .litedram_port import LiteDramNative, native_signature
from .packer import Packer, packer_status_layout, value_beat_layout
from .params import HwParams, config_layout
from .unpacker import Unpacker, unpacker_status_layout

__all__ = ["DmaSystem"]


class DmaSystem(wiring.Component):
    """The store and load paths of an accelerator, with the memory bus in its own clock.

    Parameters
    ----------
    p : HwParams
        Packer/unpacker parameters (Gecko built or not).
    bus : ``"axi"`` or ``"native"``
        The memory bus: an AXI4 master (:class:`Axi4Master`, data width W)
        or LiteDRAM's native user port (:class:`LiteDramNative`).
    addr_width : int
        Word-address width (W-bit words) of the descriptors.
    native_width, native_addr_width : int
        The LiteDRAM user port's data and address widths (``bus="native"``).
    burst : int
        The engines' longest command, in words.

    Ports (domain ``sync``: the units; domain ``mem``: the bus)
    -----------------------------------------------------------
    s_axis, cfg : the packer's value beats and per-tensor settings.
    wdesc, wstatus : the writer's descriptors and completions (:class:`DmaWriter`).
    rdesc, rstatus : the reader's (:class:`DmaReader`).
    m_axis : the unpacker's value beats.
    pk_status, up_status : the packer's and unpacker's sticky flags.
    axi : Out(:func:`axi4_signature`) or native : Out(:func:`native_signature`), in ``mem``.

    Path: Packer -> DmaWriter -> MemPortArbiter -> MemPortCDC (AsyncFIFOs)
    -> bus adapter (``mem``); bus adapter -> CDC -> arbiter -> DmaReader ->
    Unpacker.  The reader drives the unpacker's ``cfg`` (and ``s_len`` in
    Gecko builds).
    """

    def __init__(self, p: HwParams, bus: str = "axi", *, addr_width: int = 24, native_width: int = 16,
                 native_addr_width: int = 24, burst: int = 32, cdc_depth: int = 16):
        if bus not in ("axi", "native"):
            raise ValueError(f"bus must be 'axi' or 'native', got {bus!r}")
        self.p, self.bus, self.addr_width, self.burst, self.cdc_depth = p, bus, addr_width, burst, cdc_depth
        self.native_width, self.native_addr_width = native_width, native_addr_width
        members = self.unit_members(p, addr_width)
        if bus == "axi":
            members["axi"] = Out(axi4_signature(p.word, addr_width + (p.word // 8).bit_length() - 1, 1))
        else:
            members["native"] = Out(native_signature(native_width, native_addr_width))
        super().__init__(members)

    @staticmethod
    def unit_members(p: HwParams, addr_width: int) -> dict:
        """The ports on the units' side (all but the bus), for components that wrap a DmaSystem."""
        return {
            "s_axis": In(stream.Signature(value_beat_layout(p))),
            "cfg": In(config_layout()),
            "wdesc": In(stream.Signature(writer_desc_layout(addr_width))),
            "wstatus": Out(stream.Signature(writer_status_layout())),
            "rdesc": In(stream.Signature(reader_desc_layout(addr_width))),
            "rstatus": Out(stream.Signature(reader_status_layout())),
            "m_axis": Out(stream.Signature(value_beat_layout(p))),
            "pk_status": Out(packer_status_layout()),
            "up_status": Out(unpacker_status_layout()),
        }

    def elaborate(self, platform):
        m = Module()
        p, aw = self.p, self.addr_width
        m.submodules.packer = pk = Packer(p)
        m.submodules.unpacker = up = Unpacker(p)
        m.submodules.writer = wr = DmaWriter(p, aw, self.burst)
        m.submodules.reader = rd = DmaReader(p, aw, self.burst)
        m.submodules.arbiter = arb = MemPortArbiter(p.word, aw)
        m.submodules.cdc = cdc = MemPortCDC(p.word, aw, depth=self.cdc_depth)

        wiring.connect(m, wiring.flipped(self.s_axis), pk.s_axis)
        m.d.comb += [pk.cfg.eq(self.cfg), self.pk_status.eq(pk.status), self.up_status.eq(up.status)]
        wiring.connect(m, pk.m_axis, wr.words)
        wiring.connect(m, pk.m_len, wr.lens)
        wiring.connect(m, wiring.flipped(self.wdesc), wr.desc)
        wiring.connect(m, wr.status, wiring.flipped(self.wstatus))
        wiring.connect(m, wiring.flipped(self.rdesc), rd.desc)
        wiring.connect(m, rd.status, wiring.flipped(self.rstatus))
        wiring.connect(m, rd.words, up.s_axis)
        if p.gecko:
            wiring.connect(m, rd.lens, up.s_len)
        m.d.comb += up.cfg.eq(rd.cfg)
        wiring.connect(m, up.m_axis, wiring.flipped(self.m_axis))
        wiring.connect(m, wr.mem, arb.wr)
        wiring.connect(m, rd.mem, arb.rd)
        wiring.connect(m, arb.bus, cdc.units)

        if self.bus == "axi":
            adapter = Axi4Master(p.word, aw)
            m.submodules.axi = DomainRenamer("mem")(adapter)
            wiring.connect(m, cdc.mem, adapter.port)
            wiring.connect(m, adapter.axi, wiring.flipped(self.axi))
        else:
            adapter = LiteDramNative(p.word, self.native_width, self.native_addr_width, aw)
            m.submodules.native = DomainRenamer("mem")(adapter)
            wiring.connect(m, cdc.mem, adapter.port)
            wiring.connect(m, adapter.native, wiring.flipped(self.native))
        return m
