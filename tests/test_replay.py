"""Replay: a piece of a training run's container schedule, with its tensors, through the RTL.

A short Quantum Mantissa/Exponent run on the digits CNN writes its schedule
(the JSON the hardware runs read, docs/training.md); the test reads it back
with ``sfp.train.schedule.load_schedule``, takes the containers of the last step
for a sample of tensors (weights and activations), and pushes the very
tensors that step stored through the packer and the unpacker (Amaranth's
simulator on the same RTL as the generated Verilog), plain and with Gecko.
The packer's words and block lengths must equal the golden model's image,
and the unpacker must return ``sfp.model.quantize`` of the tensor.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sfp.hw.params import HwParams                    # noqa: E402
from sfp.hw.simulate import run_packer, run_unpacker  # noqa: E402
from sfp.model.container import encode_image          # noqa: E402
from sfp.model.quantize import quantize               # noqa: E402
from sfp.train.run import run                         # noqa: E402
from sfp.train.schedule import load_schedule          # noqa: E402

SAMPLE = ("weight/conv2.weight", "act/conv2.in", "act/fc1.in", "weight/fc2.weight")
MAX_VALUES = 2048      # a slice per tensor keeps the simulation short


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    r = run("digits", "qmqe", epochs=3)
    path = tmp_path_factory.mktemp("replay") / "schedule.json"
    path.write_text(json.dumps(r["schedule"]))
    return load_schedule(path), r["last_tensors"]


def test_schedule_matches_the_stored_tensors(replay):
    sched, tensors = replay
    final = sched.final()
    assert set(SAMPLE) <= set(final) and set(SAMPLE) <= set(tensors)
    for name in SAMPLE:
        assert final[name] == tensors[name]["settings"].with_(block=final[name].block, word=final[name].word)
    # the policy did choose narrow containers: the replay is not of bf16 as is
    assert any(final[n].man_bits < 7 or final[n].exp_bits < 8 for n in SAMPLE)


@pytest.mark.parametrize("gecko", [False, True])
@pytest.mark.parametrize("name", SAMPLE)
def test_replay_through_rtl(replay, name, gecko):
    sched, tensors = replay
    p = HwParams(source="bf16", lanes=8, word=128, block=256, gecko=gecko)
    s = sched.final(gecko=gecko, group=p.group, block=p.block, word=p.word)[name]
    x = np.ascontiguousarray(tensors[name]["values"].reshape(-1)[:MAX_VALUES]).view(np.uint16)
    pk = run_packer(p, x, s)
    ref = encode_image(x, s)
    image = b"".join(w.to_bytes(p.word // 8, "little") for w in pk.words)
    assert image == ref.payload
    assert pk.lens == ref.block_words.tolist()
    assert pk.beats_per_cycle == 1.0
    up = run_unpacker(p, pk.words, pk.lens, s, x.size)
    assert np.array_equal(up.values.astype(np.uint16), quantize(x, s))


# ------------------------------------------------------------------------------------------------------
# Quantum Exponent from the hardware's statistics: step N's window comes from the packer's report on
# the tensor it stored at step N-1 (window="hw"); here that loop runs through the RTL.

HW_SAMPLE = ("weight/fc2.weight", "act/fc2.in", "weight/conv1.weight")


@pytest.fixture(scope="module")
def hw_loop():
    return run("digits", "qmqe", epochs=2, steps_per_epoch=6, window="hw")


def _pack_with_stats(p, bits, s):
    from amaranth.sim import Simulator

    from sfp.hw.expstats import PackerWithStats
    from sfp.hw.params import cfg_fields

    dut = PackerWithStats(p)
    reports, words = [], []

    async def source(ctx):
        ctx.set(dut.m_axis.ready, 1)
        ctx.set(dut.m_len.ready, 1)
        ctx.set(dut.stats.ready, 1)
        for t in range(0, bits.size, p.lanes):
            lane = bits[t:t + p.lanes]
            ctx.set(dut.cfg, cfg_fields(s, bits.size))
            ctx.set(dut.s_axis.payload, {"data": [int(v) for v in lane] + [0] * (p.lanes - lane.size),
                                         "keep": (1 << lane.size) - 1, "last": int(t + p.lanes >= bits.size)})
            ctx.set(dut.s_axis.valid, 1)
            await ctx.tick().until(dut.s_axis.ready)
        ctx.set(dut.s_axis.valid, 0)
        while not reports:
            await ctx.tick()
        for _ in range(100):        # the report comes 2 clocks after the last beat, the words ~25 (packer latency)
            await ctx.tick()

    async def sink(ctx):
        async for _, _, sv, sp, wv, wp in ctx.tick().sample(dut.stats.valid, dut.stats.payload,
                                                              dut.m_axis.valid, dut.m_axis.payload):
            if sv:
                reports.append({"emax": int(sp.emax), "saturated": int(sp.saturated), "flushed": int(sp.flushed)})
            if wv:
                words.append(int(wp.data))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink, background=True)
    sim.run()
    return reports, words


@pytest.mark.parametrize("name", HW_SAMPLE)
def test_hw_statistics_place_the_next_window(hw_loop, name):
    from sfp.model.expstats import expstats
    from sfp.train.qmqe import exp_base_for

    r = hw_loop
    prev, last = r["prev_tensors"][name], r["last_tensors"][name]
    p = HwParams(source="bf16", lanes=8, word=128, block=256)
    x_prev = np.ascontiguousarray(prev["values"].reshape(-1)).view(np.uint16)
    reports, _ = _pack_with_stats(p, x_prev, prev["settings"])
    assert len(reports) == 1
    model = expstats(x_prev, prev["settings"])
    assert reports[0] == {k: model[k] for k in ("emax", "saturated", "flushed")}
    # step N's exp_base is the RTL's emax of step N-1 at the top of step N's window: no software pass
    s = last["settings"]
    assert s.exp_base == exp_base_for(reports[0]["emax"], s.exp_bits)
    x = np.ascontiguousarray(last["values"].reshape(-1)).view(np.uint16)
    _, words = _pack_with_stats(p, x, s)
    image = b"".join(w.to_bytes(p.word // 8, "little") for w in words)
    assert image == encode_image(x, s).payload
