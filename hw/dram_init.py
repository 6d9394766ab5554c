"""LiteDRAM controller initialisation without a CPU: a Wishbone write sequencer.

A LiteDRAM core generated with ``cpu: None`` starts with its DFI interface
under software control and its user ports blocked.  LiteX's BIOS would
run the ``init_sequence()`` of the generated ``sdram_phy.h`` (CKE up,
precharge, mode registers, refreshes, with delays), switch the DFI to
hardware control and write ``ddrctrl_init_done``.  :func:`init_writes`
turns that header (and ``csr.csv`` for the register addresses) into a list
of CSR writes with waits; :class:`CsrInitSequencer` plays the list on the
core's ``wb_ctrl`` Wishbone port from a ROM and raises ``done``.
"""

from __future__ import annotations

import re

from amaranth import Array, Const, Module, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["init_writes", "CsrInitSequencer", "InitState", "InitParseError"]


class InitParseError(ValueError):
    """The generated header or CSR map did not have the expected form."""


def _csr_map(csv_text: str) -> dict:
    regs = {}
    for line in csv_text.splitlines():
        f = line.split(",")
        if len(f) >= 3 and f[0] == "csr_register":
            regs[f[1]] = int(f[2], 0)
    return regs


def init_writes(sdram_phy_h: str, csr_csv: str, *, delay_scale: float = 1) -> list[tuple[int, int, int]]:
    """``[(byte address, value, wait clocks after), ...]``: the BIOS's init for this core, then hardware control.

    ``cdelay(n)`` becomes a wait of ``round(n * delay_scale)`` clocks, at
    least 1 (the BIOS's cdelay is a busy loop of at least n CPU cycles; on a
    chip the datasheet's 100-200 us power-up wait must be met: scale 1 gives
    400 us at 50 MHz for the SDR core; LiteDRAM's SDRAM model does not model
    the power-up wait, so a simulation may use a scale below 1).
    """
    regs = _csr_map(csr_csv)
    consts = dict((k, int(v, 0)) for k, v in re.findall(r"#define\s+(DFII_\w+)\s+(0x[0-9a-fA-F]+|\d+)", sdram_phy_h))
    m = re.search(r"static inline void init_sequence\(void\)\s*\{(.*?)\n\}", sdram_phy_h, re.S)
    if not m:
        raise InitParseError("no init_sequence() in sdram_phy.h")

    def val(expr: str) -> int:
        v = 0
        for part in expr.split("|"):
            part = part.strip()
            v |= consts[part] if part in consts else int(part, 0)
        return v

    def reg(name: str) -> int:
        if name not in regs:
            raise InitParseError(f"CSR {name} not in csr.csv")
        return regs[name]

    out: list[list[int]] = []
    for call, arg in re.findall(r"(\w+)\(([^;]*)\);", m.group(1)):
        if call == "cdelay":
            if not out:
                raise InitParseError("cdelay before any write")
            out[-1][2] += max(1, round(int(arg, 0) * delay_scale))
        elif call == "command_p0":
            out.append([reg("sdram_dfii_pi0_command"), val(arg), 0])
            out.append([reg("sdram_dfii_pi0_command_issue"), 1, 0])
        elif call.endswith("_write"):
            out.append([reg(call[:-len("_write")]), val(arg), 0])
        else:
            raise InitParseError(f"unexpected call {call}() in init_sequence")
    out.append([reg("sdram_dfii_control"), consts.get("DFII_CONTROL_SEL", 1), 16])   # hardware control
    out.append([reg("ddrctrl_init_done"), 1, 0])
    return [tuple(w) for w in out]


class InitState(enum.Enum, shape=2):
    """States of :class:`CsrInitSequencer`."""
    WRITE = 0      # a Wishbone write of entry ``idx`` is on the bus (or, past the list, go to DONE)
    WAIT = 1       # the entry's wait after its ack
    DONE = 2       # the list is played: ``done`` high for good
    HALT = 3       # a write was answered with an error: stop, ``error`` high


class CsrInitSequencer(wiring.Component):
    """Plays a fixed list of 32-bit CSR writes (with waits) on a Wishbone master port, then ``done``.

    Parameters: ``writes`` from :func:`init_writes` (byte addresses).

    Ports: ``wb_adr`` (30, word address), ``wb_dat_w``, ``wb_sel``, ``wb_cyc``,
    ``wb_stb``, ``wb_we``, ``wb_cti``, ``wb_bte`` (out), ``wb_ack``, ``wb_err``
    (in); ``done`` (out, stays high), ``error`` (out: a write answered with
    ``wb_err``; the sequence stops there).

    One classic Wishbone write cycle per entry (held until ack), then the
    entry's wait; about (3 + wait) clocks per entry.
    """

    def __init__(self, writes):
        self.writes = list(writes)
        if not self.writes:
            raise ValueError("empty init sequence")
        super().__init__({
            "wb_adr": Out(30), "wb_dat_w": Out(32), "wb_sel": Out(4), "wb_cyc": Out(1), "wb_stb": Out(1),
            "wb_we": Out(1), "wb_cti": Out(3), "wb_bte": Out(2), "wb_ack": In(1), "wb_err": In(1),
            "done": Out(1), "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = len(self.writes)
        maxwait = max(w[2] for w in self.writes)
        idx = Signal(range(n + 1))
        adr = Array(Const(a >> 2, 30) for a, _, _ in self.writes)
        dat = Array(Const(v, 32) for _, v, _ in self.writes)
        wt = Array(Const(w, range(maxwait + 1)) for _, _, w in self.writes)
        wait = Signal(range(maxwait + 1))
        m.d.comb += [self.wb_sel.eq(0xF), self.wb_we.eq(1), self.wb_adr.eq(adr[idx]), self.wb_dat_w.eq(dat[idx])]
        state = Signal(InitState)
        with m.Switch(state):
            with m.Case(InitState.WRITE):
                with m.If(idx == n):
                    m.d.sync += state.eq(InitState.DONE)
                with m.Else():
                    m.d.comb += [self.wb_cyc.eq(1), self.wb_stb.eq(1)]
                    with m.If(self.wb_err):
                        m.d.sync += [self.error.eq(1), state.eq(InitState.HALT)]
                    with m.Elif(self.wb_ack):
                        m.d.sync += [wait.eq(wt[idx]), state.eq(InitState.WAIT)]
            with m.Case(InitState.WAIT):
                with m.If(wait == 0):
                    m.d.sync += [idx.eq(idx + 1), state.eq(InitState.WRITE)]
                with m.Else():
                    m.d.sync += wait.eq(wait - 1)
            with m.Case(InitState.DONE):
                m.d.comb += self.done.eq(1)
            with m.Case(InitState.HALT):
                pass
        return m
