"""The LiteDRAM init sequencer (hw/dram_init.py): header parsing and the Wishbone writes it plays.

The header and CSR map below are written by hand in the form ``litedram_gen``
produces (sdram_phy.h's ``init_sequence()``, csr.csv's ``csr_register``
rows); the expected write list is worked out by hand from them, not by
the parser.
"""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from sfp.hw.dram_init import CsrInitSequencer, InitParseError, init_writes

HEADER = """
#define DFII_CONTROL_SEL 0x01
#define DFII_CONTROL_CKE 0x02
#define DFII_COMMAND_CS 0x01
#define DFII_COMMAND_WE 0x02
#define DFII_COMMAND_RAS 0x08

static inline void init_sequence(void)
{
	sdram_dfii_pi0_address_write(0x400);
	sdram_dfii_control_write(DFII_CONTROL_CKE);
	cdelay(30);

	command_p0(DFII_COMMAND_RAS|DFII_COMMAND_WE|DFII_COMMAND_CS);
	cdelay(5);
}
"""

CSV = """csr_base,sdram,0x00000800,,
csr_register,sdram_dfii_control,0x00000800,1,rw
csr_register,sdram_dfii_pi0_command,0x00000804,1,rw
csr_register,sdram_dfii_pi0_command_issue,0x00000808,1,rw
csr_register,sdram_dfii_pi0_address,0x0000080c,1,rw
csr_register,ddrctrl_init_done,0x00000000,1,rw
"""

# by hand: address, CKE (+30), command RAS|WE|CS = 0x0b, issue (+5), then hardware control (+16), init done
EXPECTED = [(0x80c, 0x400, 0), (0x800, 0x02, 30), (0x804, 0x0b, 0), (0x808, 1, 5), (0x800, 0x01, 16), (0x0, 1, 0)]


def test_init_writes_by_hand():
    assert init_writes(HEADER, CSV) == EXPECTED
    scaled = init_writes(HEADER, CSV, delay_scale=0.1)                  # 30 -> 3, 5 -> round(0.5) = 0 -> at least 1
    assert [w[2] for w in scaled] == [0, 3, 0, 1, 16, 0]


@pytest.mark.parametrize("header,msg", [
    ("no function here", "no init_sequence"),
    (HEADER.replace("sdram_dfii_control_write", "sdram_unknown_write"), "sdram_unknown not in csr.csv"),
    (HEADER.replace("cdelay(5);", "cdelay(5);\n\tsomething_else(1);"), "unexpected call"),
])
def test_init_writes_refuses(header, msg):
    with pytest.raises(InitParseError, match=msg):
        init_writes(header, CSV)


def _run(writes, *, err_at=None, seed=1):
    """Play ``writes`` against a Wishbone slave with random ack delays; (writes seen with their start clock, done, error)."""
    dut = CsrInitSequencer(writes)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    seen, out = [], {}
    rng = random.Random(seed)

    async def slave(ctx):
        clk = 0
        busy_since = None
        delay = 0
        for _ in range(400):
            cyc, stb = ctx.get(dut.wb_cyc), ctx.get(dut.wb_stb)
            ctx.set(dut.wb_ack, 0)
            ctx.set(dut.wb_err, 0)
            if cyc and stb:
                if busy_since is None:
                    busy_since, delay = clk, rng.randrange(0, 3)
                    assert ctx.get(dut.wb_we) == 1 and ctx.get(dut.wb_sel) == 0xF
                if clk - busy_since >= delay:
                    seen.append((ctx.get(dut.wb_adr) << 2, ctx.get(dut.wb_dat_w), busy_since, clk))
                    if err_at is not None and len(seen) == err_at + 1:
                        ctx.set(dut.wb_err, 1)
                    else:
                        ctx.set(dut.wb_ack, 1)
                    busy_since = None
            await ctx.tick()
            clk += 1
        out["done"], out["error"] = ctx.get(dut.done), ctx.get(dut.error)
    sim.add_testbench(slave)
    sim.run()
    return seen, out["done"], out["error"]


def test_sequencer_plays_the_list():
    seen, done, error = _run(EXPECTED)
    assert [(a, v) for a, v, _, _ in seen] == [(a, v) for a, v, _ in EXPECTED]
    assert done == 1 and error == 0
    # each write starts only after the previous one's ack and wait (the wait counts down to 0: wait + 1 clocks)
    for (_, _, _, acked), (_, _, start, _), (_, _, wait) in zip(seen, seen[1:], EXPECTED):
        assert start - acked == wait + 2


def test_sequencer_stops_on_error():
    seen, done, error = _run(EXPECTED, err_at=2)
    assert len(seen) == 3 and done == 0 and error == 1       # nothing after the refused write


def test_sequencer_refuses_empty_list():
    import warnings
    from amaranth.hdl import UnusedElaboratable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match="empty"):
            CsrInitSequencer([])
        import gc
        gc.collect()
