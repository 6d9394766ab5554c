"""cocotb tests for ``test_harness.py`` (run inside the simulator by the harness)."""

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from sfp.sim_tests.axis import StreamDriver, StreamSink, check_beats
from sfp.sim_tests.harness import sim_params
from sfp.sim_tests.test_harness import beat_layout


async def reset(dut, cycles: int = 3) -> None:
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.s_axis__valid.value = 0
    dut.m_axis__ready.value = 0
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def make_beats(rng: random.Random, n: int, width: int) -> list[dict]:
    return [{"data": rng.getrandbits(width), "last": int(i % 7 == 6 or i == n - 1)} for i in range(n)]


async def run_case(dut, *, seed: int, idle_prob: float, ready_prob: float) -> None:
    p = sim_params()
    width, n = p["width"], p["n_beats"]
    layout = beat_layout(width)
    rng = random.Random(seed)
    beats = make_beats(rng, n, width)

    await reset(dut)
    drv = StreamDriver(dut.clk, dut.s_axis__valid, dut.s_axis__ready, dut.s_axis__payload,
                       layout=layout, seed=seed + 1, idle_prob=idle_prob, max_idle=4)
    sink = StreamSink(dut.clk, dut.m_axis__valid, dut.m_axis__ready, dut.m_axis__payload,
                      layout=layout, seed=seed + 2, ready_prob=ready_prob).start()
    await drv.send(beats)
    await sink.wait_for(n, timeout_cycles=50 * n)
    # Nothing extra may trickle out afterwards.
    await ClockCycles(dut.clk, 20)
    sink.stop()
    check_beats(sink.data, beats, what="m_axis")
    dut._log.info("%d beats in order (idle_prob=%.2f ready_prob=%.2f)", n, idle_prob, ready_prob)


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def full_throughput(dut):
    """No gaps, no back-pressure: must still deliver everything, in order."""
    await run_case(dut, seed=cocotb.RANDOM_SEED, idle_prob=0.0, ready_prob=1.0)


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def random_gaps_and_backpressure(dut):
    """Random valid gaps on the input and random ready back-pressure on the output."""
    await run_case(dut, seed=cocotb.RANDOM_SEED + 100, idle_prob=0.4, ready_prob=0.5)


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def heavy_backpressure(dut):
    """Mostly stalled sink: the FIFO fills up and the source must be throttled."""
    await run_case(dut, seed=cocotb.RANDOM_SEED + 200, idle_prob=0.1, ready_prob=0.15)
