"""DmaSystem on a generated LiteDRAM controller, initialised without a CPU.

See :class:`LiteDramSystem`.
"""

from __future__ import annotations

from amaranth import ClockSignal, DomainRenamer, Instance, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from .dma_system import DmaSystem
from .dram_init import CsrInitSequencer
from .params import HwParams

__all__ = ["LiteDramSystem"]


class LiteDramSystem(wiring.Component):
    """:class:`DmaSystem` with its native port on a ``litedram_gen`` core (an ``Instance``).

    Parameters
    ----------
    p : HwParams
    core : :class:`sfp.hw.litedram_gen.LiteDramCore`
        The generated controller (its Verilog must be compiled alongside).
    addr_width : int
        Word-address width (W-bit words) of the descriptors.
    init_delay_scale : float
        Multiplier for the init sequence's waits (1: the header's ``cdelay(n)``
        as n memory clocks, 400 us for the SDR power-up wait at 50 MHz; the
        MT48LC16M16 needs 100 us).
    burst : int
        The DMA engines' longest command, in words.
    pads : dict or None
        For a core with the real PHY (not ``core.sim``): the ``Instance``
        connections of its SDRAM pins (``o_sdram_a``, ``io_sdram_dq``, ...);
        the core's ``rst`` is then driven by the ``mem`` domain's reset.

    Ports: those of :class:`DmaSystem` except the bus, plus ``init_done``
    (the sequencer finished and one dummy write went through) and
    ``init_error``.  Domains: ``sync`` (units) and ``mem`` (the
    controller's clock, also the core's ``clk`` input; reset ``mem_rst``).

    Start-up, in ``mem``: :class:`CsrInitSequencer` plays the core's init
    sequence on ``wb_ctrl`` and writes ``init_done`` (the core's user port is
    blocked until then); then one write to the last native word (the first
    write after init reads back undefined in LiteDRAM's SDRAM model), then
    the port belongs to the DMA engines.  Descriptors may be queued before.
    """

    def __init__(self, p: HwParams, core, *, addr_width: int = 20, init_delay_scale: float = 1, burst: int = 32,
                 pads: dict | None = None):
        self.p, self.core, self.addr_width, self.burst = p, core, addr_width, burst
        if core.sim and pads:
            raise ValueError("the simulation core has no SDRAM pins (pads must be None)")
        if not core.sim and not pads:
            raise ValueError(f"{core.name} drives SDRAM pins: give their connections in pads")
        self.pads = dict(pads or {})
        self.writes = core.init_writes(init_delay_scale)
        # DmaSystem's own ports minus the bus (which goes to the core inside), plus the init flags
        super().__init__({**DmaSystem.unit_members(p, addr_width), "init_done": Out(1), "init_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        core = self.core
        m.submodules.dma = dma = DmaSystem(self.p, "native", addr_width=self.addr_width, native_width=core.data_width,
                                           native_addr_width=core.addr_width, burst=self.burst)
        for name in ("s_axis", "wdesc", "rdesc"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(dma, name))
        for name in ("wstatus", "rstatus", "m_axis"):
            wiring.connect(m, getattr(dma, name), wiring.flipped(getattr(self, name)))
        m.d.comb += [dma.cfg.eq(self.cfg), self.pk_status.eq(dma.pk_status), self.up_status.eq(dma.up_status)]

        seq = CsrInitSequencer(self.writes)
        m.submodules.init = DomainRenamer("mem")(seq)

        # The dummy write, then the DMA engines.
        nat = dma.native
        dummy_cmd, dummy_dat, go = Signal(), Signal(), Signal()
        cmd_valid, cmd_ready, cmd_we, cmd_addr = Signal(), Signal(), Signal(), Signal(core.addr_width)
        wd_valid, wd_ready, wd_data, wd_we = Signal(), Signal(), Signal(core.data_width), Signal(core.data_width // 8)
        rd_valid, rd_ready, rd_data = Signal(), Signal(), Signal(core.data_width)
        with m.If(go):
            m.d.comb += [cmd_valid.eq(nat.cmd_valid), cmd_we.eq(nat.cmd_we), cmd_addr.eq(nat.cmd_addr),
                         nat.cmd_ready.eq(cmd_ready), wd_valid.eq(nat.wdata_valid), wd_data.eq(nat.wdata_data),
                         wd_we.eq(nat.wdata_we), nat.wdata_ready.eq(wd_ready)]
        with m.Else():
            m.d.comb += [cmd_valid.eq(seq.done & ~dummy_cmd), cmd_we.eq(1), cmd_addr.eq(-1),
                         wd_valid.eq(dummy_cmd & ~dummy_dat), wd_we.eq(-1)]
            with m.If(cmd_valid & cmd_ready):
                m.d.mem += dummy_cmd.eq(1)
            with m.If(wd_valid & wd_ready):
                m.d.mem += [dummy_dat.eq(1), go.eq(1)]
        m.d.comb += [nat.rdata_valid.eq(rd_valid), nat.rdata_data.eq(rd_data), rd_ready.eq(nat.rdata_ready),
                     self.init_done.eq(go)]

        port = "user_port_native_0_"
        # The simulation core resets itself at time 0 and has a trace switch; the real one has a reset input
        # (held while the PLL is unlocked) and the SDRAM pins.
        extra = {"i_sim_trace": 0} if core.sim else {"i_rst": ResetSignal("mem"), **self.pads}
        m.submodules.ctrl = Instance(
            core.name,
            i_clk=ClockSignal("mem"), **extra,
            o_init_done=Signal(name="core_init_done"), o_init_error=self.init_error,
            o_user_clk=Signal(name="core_user_clk"), o_user_rst=Signal(name="core_user_rst"),
            **{f"i_{port}cmd_addr": cmd_addr, f"o_{port}cmd_ready": cmd_ready, f"i_{port}cmd_valid": cmd_valid,
               f"i_{port}cmd_we": cmd_we, f"o_{port}rdata_data": rd_data, f"i_{port}rdata_ready": rd_ready,
               f"o_{port}rdata_valid": rd_valid, f"i_{port}wdata_data": wd_data, f"o_{port}wdata_ready": wd_ready,
               f"i_{port}wdata_valid": wd_valid, f"i_{port}wdata_we": wd_we},
            o_wb_ctrl_ack=seq.wb_ack, i_wb_ctrl_adr=seq.wb_adr, i_wb_ctrl_bte=seq.wb_bte, i_wb_ctrl_cti=seq.wb_cti,
            i_wb_ctrl_cyc=seq.wb_cyc, o_wb_ctrl_dat_r=Signal(32, name="wb_dat_r"), i_wb_ctrl_dat_w=seq.wb_dat_w,
            o_wb_ctrl_err=seq.wb_err, i_wb_ctrl_sel=seq.wb_sel, i_wb_ctrl_stb=seq.wb_stb, i_wb_ctrl_we=seq.wb_we,
        )
        return m
