"""cocotb tests of ``sfp_unpacker`` (hw.top.UnpackerTop) over the generated Verilog.

Inputs are the golden model's images (``encode_image(...).payload``) and,
in Gecko builds, their block indexes on ``s_len`` (``.block_words``, every
tensor's, with its own random stalls); the output must equal
``quantize(x, s, strict=False)``.  Helpers and data
conventions: :mod:`sfp.sim_tests.cocotb_packer_tb`.
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import ClockCycles

from sfp.sim_tests.cocotb_packer_tb import FlatDriver, FlatSink, Tensors, _bit, compare, do_reset, start

OUT = ["data", "keep", "last"]


def start_lens(dut, T, cyc, idx, seed=0, idle_prob=0.0):
    """Gecko builds: drive ``s_len`` with the tensors' block indexes in the background (the task, or None)."""
    if not hasattr(dut, "s_len_tvalid"):
        return None
    drv = FlatDriver(dut, "s_len", dut.clk, cyc, seed=seed, idle_prob=idle_prob)
    return cocotb.start_soon(drv.send(T.len_beats(idx)))


@cocotb.test()
async def stream_with_stalls(dut):
    """All tensors back to back (settings change every tensor, one refused), random stalls on both sides."""
    T = Tensors()
    cyc = await start(dut)
    idx = T.group("stream")
    start_lens(dut, T, cyc, idx, seed=15, idle_prob=0.4)
    drv = FlatDriver(dut, "s_axis", dut.clk, cyc, seed=11, idle_prob=0.3)
    sink = FlatSink(dut, "m_axis", dut.clk, cyc, OUT, seed=12, ready_prob=0.6)
    for i in idx:
        await drv.send(T.word_beats(i))
    exp = T.expected_values(idx)
    await sink.wait_for(len(exp))
    await ClockCycles(dut.clk, 30)
    compare(sink.beats, exp, "m_axis")
    assert _bit(dut.status_unsupported) == int(not T.meta[idx[-1]]["supported"])
    dut._log.info("%d tensors, %d beats OK", len(idx), len(exp))


@cocotb.test()
async def throughput(dut):
    """Long tensors back to back, no stalls: output beats per cycle >= 0.99 (first to last beat)."""
    T = Tensors()
    cyc = await start(dut)
    idx = T.group("throughput")
    start_lens(dut, T, cyc, idx)
    drv = FlatDriver(dut, "s_axis", dut.clk, cyc)
    sink = FlatSink(dut, "m_axis", dut.clk, cyc, OUT)
    await drv.send([b for i in idx for b in T.word_beats(i)])
    exp = T.expected_values(idx)
    await sink.wait_for(len(exp))
    compare(sink.beats, exp, "m_axis")
    span = sink.times[-1] - sink.times[0] + 1
    rate = len(exp) / span
    print(f"THROUGHPUT unpacker {T.p['key']}: {len(exp)} beats / {span} cycles = {rate:.4f}")
    assert rate >= 0.99, f"{rate:.4f} beats/cycle"


@cocotb.test()
async def refused_and_flags(dut):
    """A refused tensor sets status_unsupported and emits its beats as zeros; the next tensor clears it."""
    T = Tensors()
    cyc = await start(dut)
    drv = FlatDriver(dut, "s_axis", dut.clk, cyc)
    sink = FlatSink(dut, "m_axis", dut.clk, cyc, OUT, seed=13)
    idx = T.group("status")
    start_lens(dut, T, cyc, idx, seed=16, idle_prob=0.3)
    if hasattr(dut, "m_status_tready"):
        dut.m_status_tready.value = 1
    for k, i in enumerate(idx):
        await drv.send(T.word_beats(i))
        await sink.wait_for(len(T.expected_values(idx[:k + 1])))
        await ClockCycles(dut.clk, 4)
        assert _bit(dut.status_unsupported) == int(not T.meta[i]["supported"]), f"tensor {i}"
    compare(sink.beats, T.expected_values(idx), "m_axis")


@cocotb.test()
async def reset_mid_tensor(dut):
    """Reset with half a tensor inside, then a clean tensor decodes exactly."""
    T = Tensors()
    cyc = await start(dut)
    a, b = T.group("reset")[:2]
    drv = FlatDriver(dut, "s_axis", dut.clk, cyc)
    sink = FlatSink(dut, "m_axis", dut.clk, cyc, OUT, seed=14, ready_prob=0.3)
    lens = start_lens(dut, T, cyc, [a], seed=17, idle_prob=0.3)
    beats = T.word_beats(a)
    await drv.send(beats[:max(1, len(beats) // 2)])
    if lens is not None:
        lens.cancel()                      # its block index need not have been taken
        dut.s_len_tvalid.value = 0
    await do_reset(dut)
    sink.clear()
    start_lens(dut, T, cyc, [b], seed=18, idle_prob=0.3)
    await drv.send(T.word_beats(b))
    exp = T.expected_values([b])
    await sink.wait_for(len(exp))
    await ClockCycles(dut.clk, 20)
    compare(sink.beats, exp, "m_axis")
