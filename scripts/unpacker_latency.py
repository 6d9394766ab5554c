"""Latency of the Unpacker: clocks from an idle unit's first word handshake to its first beat on m_axis."""
import numpy as np
from amaranth.sim import Simulator
from sfp.hw.params import HwParams, cfg_fields
from sfp.hw.unpacker import Unpacker
from sfp.model.container import encode_image
from sfp.model.formats import Settings
from sfp.sim_tests.packer_ref import real_tensor_bits

def run(p, gecko):
    s = Settings(man_bits=3, exp_bits=5, exp_base="auto", gecko=gecko, group=p.group, block=p.block, word=p.word)
    x = real_tensor_bits(p.source, "weight", 2048, 0).astype(np.uint16)
    e = encode_image(x, s, strict=False)
    nb = p.word // 8
    words = [int.from_bytes(e.payload[i:i + nb], "little") for i in range(0, len(e.payload), nb)]
    lens = [int(v) for v in e.block_words]
    cfg = cfg_fields(e.settings, x.size)
    dut = Unpacker(p)
    t = {}

    async def tb(ctx):
        ctx.set(dut.m_axis.ready, 1); ctx.set(dut.m_status.ready, 1)
        if p.gecko:
            ctx.set(dut.s_len.valid, 1); ctx.set(dut.s_len.payload, {"data": lens[0], "last": 0})
        for _ in range(10):
            await ctx.tick()
        ctx.set(dut.s_axis.valid, 1); ctx.set(dut.s_axis.payload, {"data": words[0], "last": 0}); ctx.set(dut.cfg, cfg)
        cyc = 0
        while True:
            _, _, rdy = await ctx.tick().sample(dut.s_axis.ready)
            if rdy: break
        k = 1; cyc = 0
        while True:
            if k < len(words):
                ctx.set(dut.s_axis.payload, {"data": words[k], "last": int(k == len(words) - 1)})
            else:
                ctx.set(dut.s_axis.valid, 0)
            _, _, rdy, v = await ctx.tick().sample(dut.s_axis.ready, dut.m_axis.valid)
            cyc += 1
            if rdy and k < len(words): k += 1
            if v: break
        t["lat"] = cyc
    sim = Simulator(dut); sim.add_clock(1e-8); sim.add_testbench(tb); sim.run()
    return t["lat"]

if __name__ == "__main__":
    print("plain build, plain tensor:", run(HwParams(), False))
    print("gecko build, gecko tensor:", run(HwParams(gecko=True), True))
    print("gecko build, plain tensor:", run(HwParams(gecko=True), False))
