"""The ULX3S-85F SDRAM self-test: clocks, resets, SDRAM pins and LEDs around :class:`DramSelfTest`.

:class:`Ulx3sDramTop` is what ``sfp board ulx3s`` builds (the default
design; the older packer -> unpacker loopback without DRAM is
``--design loopback``, :mod:`sfp.hw.board`).

Clocks.  One EHXPLLL from the 25 MHz oscillator (VCO 600 MHz): ``mem``
50 MHz on CLKOP (the LiteDRAM SDR controller, generated for 50 MHz) and
``sync`` 40 MHz on CLKOS (the packer, the DMA engines and the unpacker).
A first build with ``sync`` at 60 MHz failed timing at 50.2 MHz post-route:
the critical path is in :class:`sfp.hw.dma_reader.DmaReader` (the index
entry FIFO -> the block offset adder, hw/dma_reader.py:160-166, 20 ns, two
carry chains in one clock), so the units run at 40 MHz until that is pipelined.
The two are derived from one VCO but the design treats them as unrelated:
everything between them goes through the DMA system's ``AsyncFIFO``\\ s, so
the CDC that an accelerator would need is exercised on the board too.

SDRAM clock.  The controller's GENSDRPHY registers commands, addresses and
write data in the I/O cells (OFS1P3BX) on the rising edge of ``mem`` and
captures read data (IFS1P3BX) on the same edge.  The chip's clock leaves
through an ODDRX1F on ``mem`` with D0 = 0, D1 = 1, i.e. the ``mem`` clock
inverted, from an I/O cell like the signals it clocks, so pin-to-pin skew
between them is small.  The chip samples a command half a period (10 ns)
after the FPGA launched it (set-up margin ~10 ns minus clock-to-out and
board skew against tIS = 1.5 ns; hold likewise), and its read data, valid
tAC (5.4-6 ns at CL 2) after its edge, are captured by the FPGA at the next
``mem`` edge, ~4 ns later.  LiteX's own ULX3S target uses the same
180-degree relation (``sys_ps`` with ``phase=180``, a DDR output of 1/0; its
comment says 90 degrees would be ideal but needed increasing).  Not tried
on a board here.

Reset.  Both domains are held in reset until the PLL locks (each through a
:class:`ResetSynchronizer`); the controller's ``rst`` input is ``mem``'s reset.

LEDs (``led`` 0..7): 0 heartbeat (``sync`` alive, ~2 Hz), 1 busy (a pass
is running), 2 pass (at least one clean pass, no failure), 3 toggles with
each pass, 4 SDRAM initialised, 5..7 the fail code (:class:`FailCode`,
binary, LED5 the LSB; all off while nothing failed).  Button F1
(``button_fire`` 1) held: inject errors (bit 0 of every stored value
flipped), which must light a fail code 3 (DATA).
"""

from __future__ import annotations

from pathlib import Path

from amaranth import Cat, ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer, ResetSynchronizer

from .board_selftest import DramSelfTest, SelfTestPlan

__all__ = ["Ulx3sDramTop", "PLL", "patched_core_verilog"]

#: EHXPLLL settings: 25 MHz in, VCO = 25 * CLKFB_DIV * CLKOP_DIV = 600 MHz (feedback from CLKOP).
PLL = {"in_hz": 25e6, "vco_hz": 600e6, "mem_div": 12, "sync_div": 15}
MEM_HZ = PLL["vco_hz"] / PLL["mem_div"]       # 50 MHz: the controller was generated for this
SYNC_HZ = PLL["vco_hz"] / PLL["sync_div"]     # 40 MHz: the DMA reader limits the units to ~50 MHz (see below)


def patched_core_verilog(core) -> str:
    """The real-PHY core's Verilog with DQ declared ``inout``.

    ``litedram_gen`` declares the SDRAM data pins ``input`` although its own
    TRELLIS_IO (BIDIR) drives them; connected to a top-level bidirectional
    pin that would be a port-direction mismatch, so the declaration is fixed
    in the copy the build uses (the generated file is left as it is).
    """
    text = Path(core.verilog).read_text()
    old = "input  wire   [15:0] sdram_dq,"
    if old not in text:
        raise ValueError(f"{core.verilog}: no `{old}` declaration to fix (litedram_gen changed?)")
    return text.replace(old, "inout  wire   [15:0] sdram_dq,", 1)


class Ulx3sDramTop(Elaboratable):
    """:class:`DramSelfTest` with the real LiteDRAM SDR PHY on the ULX3S (see the module docstring).

    Parameters: ``plan`` (:func:`sfp.hw.board_selftest.make_plan`), ``core``
    (``litedram_gen`` SDR core built without ``--sim``; its Verilog, patched by
    :func:`patched_core_verilog`, must be added to the platform).
    """

    def __init__(self, plan: SelfTestPlan, core):
        if core.sim:
            raise ValueError("the board needs the real-PHY core (generate('sdr', sim=False))")
        self.plan, self.core = plan, core

    def elaborate(self, platform):
        m = Module()
        clk25 = platform.request("clk25", dir="-")
        m.domains.sync = ClockDomain("sync")
        m.domains.mem = ClockDomain("mem")

        locked = Signal(name="pll_locked")
        clkop, clkos = Signal(name="pll_clkop"), Signal(name="pll_clkos")
        m.submodules.pll = Instance(
            "EHXPLLL",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD", p_FEEDBK_PATH="CLKOP",
            p_CLKI_DIV=1, p_CLKFB_DIV=int(MEM_HZ // PLL["in_hz"]),
            # phases and loop-filter attributes as Trellis's ecppll writes them for these frequencies
            # (`yowasp-ecppll -i 25 -o 50 --clkout1 40`); without the filter attributes the PLL may not lock
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=PLL["mem_div"], p_CLKOP_CPHASE=PLL["mem_div"] // 2 - 1,
            p_CLKOP_FPHASE=0,
            p_CLKOS_ENABLE="ENABLED", p_CLKOS_DIV=PLL["sync_div"], p_CLKOS_CPHASE=PLL["mem_div"] // 2 - 1,
            p_CLKOS_FPHASE=0,
            a_FREQUENCY_PIN_CLKI=f"{PLL['in_hz'] / 1e6:g}", a_FREQUENCY_PIN_CLKOP=f"{MEM_HZ / 1e6:g}",
            a_FREQUENCY_PIN_CLKOS=f"{SYNC_HZ / 1e6:g}", a_ICP_CURRENT="12", a_LPF_RESISTOR="8",
            a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            i_CLKI=clk25.io, i_CLKFB=clkop, i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1,
            i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
            o_CLKOP=clkop, o_CLKOS=clkos, o_LOCK=locked,
        )
        m.d.comb += [ClockSignal("mem").eq(clkop), ClockSignal("sync").eq(clkos)]
        m.submodules.rst_mem = ResetSynchronizer(~locked, domain="mem")
        m.submodules.rst_sync = ResetSynchronizer(~locked, domain="sync")
        # No clock constraints here: nextpnr derives 50 and 40 MHz for the two nets from the PLL's
        # parameters and clk25's 25 MHz (its log says so), and constraints on these nets would be lost
        # anyway (Yosys renames them to the domains' clocks).

        # SDRAM pins, raw: the core's own I/O registers and TRELLIS_IO drive them directly.
        sd = platform.request("sdram", 0, dir="-")
        pads = {
            "o_sdram_a": sd.a.io, "o_sdram_ba": sd.ba.io, "o_sdram_cas_n": sd.cas.io, "o_sdram_ras_n": sd.ras.io,
            "o_sdram_we_n": sd.we.io, "o_sdram_cs_n": sd.cs.io, "o_sdram_cke": sd.clk_en.io,
            "o_sdram_dm": sd.dqm.io, "io_sdram_dq": sd.dq.io,
        }
        m.submodules.sdram_clk = Instance("ODDRX1F", i_SCLK=ClockSignal("mem"), i_RST=0, i_D0=0, i_D1=1,
                                          o_Q=sd.clk.io)

        m.submodules.test = test = DramSelfTest(self.plan, self.core, pads=pads, pause=int(SYNC_HZ // 2),
                                                timeout=int(SYNC_HZ // 8))

        m.submodules.fire = fire = io.Buffer("i", platform.request("button_fire", 1, dir="-"))
        m.submodules.sync_fire = FFSynchronizer(fire.i, test.inject)

        leds = []
        for i in range(8):
            m.submodules[f"led{i}"] = b = io.Buffer("o", platform.request("led", i, dir="-"))
            leds.append(b)
        beat = Signal(range(int(SYNC_HZ // 4) + 1))
        hb = Signal()
        with m.If(beat == 0):
            m.d.sync += [beat.eq(int(SYNC_HZ // 4)), hb.eq(~hb)]
        with m.Else():
            m.d.sync += beat.eq(beat - 1)
        code = test.fail_code.as_value()
        m.d.comb += [
            leds[0].o.eq(hb), leds[1].o.eq(test.busy), leds[2].o.eq((test.passes != 0) & ~test.fail),
            leds[3].o.eq(test.passes[0]), leds[4].o.eq(test.init_done),
            Cat(leds[5].o, leds[6].o, leds[7].o).eq(code),
        ]
        return m
