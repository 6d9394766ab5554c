"""cocotb tests of :class:`sfp.hw.dma_system.DmaSystem`: tensors to memory and back, two unrelated clocks.

Run by ``sim_tests/test_dma.py``.  The pytest side computes everything
expected with the golden model (``sim_params()``: the configuration, the
tensors' cfg and addresses, the loads; ``sim_data()``: ``bits_<i>``,
``words_<i>`` (the image as W-bit words, little-endian byte chunks),
``lens_<i>``, ``out_<i>``).  The memory is :class:`Axi4SlaveMem` or
:class:`NativeMem` (sim_tests/mem_models.py).  Checked: the status entries,
the memory contents word for word (data and index), every loaded value,
``keep`` and ``last``, and the memory model's protocol checks.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from sfp.sim_tests.axis import pack, unpack
from sfp.sim_tests.harness import sim_data, sim_params
from sfp.sim_tests.mem_models import Axi4SlaveMem, NativeMem


def _layouts(P):
    from sfp.hw.dma_reader import reader_desc_layout, reader_status_layout
    from sfp.hw.dma_writer import writer_desc_layout, writer_status_layout
    from sfp.hw.packer import value_beat_layout
    from sfp.hw.params import HwParams, config_layout
    p = HwParams(source=P.get("source", "bf16"), lanes=P["lanes"], word=P["word"], block=P["block"],
                 gecko=P["gecko"], group=P.get("group", 32))
    aw = P["addr_width"]
    return dict(p=p, beat=value_beat_layout(p), cfg=config_layout(), wdesc=writer_desc_layout(aw),
                wstat=writer_status_layout(), rdesc=reader_desc_layout(aw), rstat=reader_status_layout())


def _v(h) -> int:
    try:
        return int(h.value)
    except ValueError:
        return -1


async def send(clk, valid, ready, items, rng, idle_prob=0.0, before=None):
    """Drive ``items`` (ints, or ``(payload, {handle: value})``) on a valid/ready stream."""
    for it in items:
        while idle_prob and rng.random() < idle_prob:
            valid.value = 0
            await RisingEdge(clk)
        payload, extra = it if isinstance(it, tuple) else (it, {})
        valid._dut_payload.value = payload
        for h, v in extra.items():
            h.value = v
        valid.value = 1
        while True:
            await ReadOnly()
            fire = _v(ready) == 1
            await RisingEdge(clk)
            if fire:
                break
    valid.value = 0


class Sink:
    """Random ready on a stream; records payloads (ints) and the clock count of each handshake."""

    def __init__(self, clk, valid, ready, payload, rng, ready_prob=1.0):
        self.clk, self.valid, self.ready, self.payload = clk, valid, ready, payload
        self.rng, self.ready_prob = rng, ready_prob
        self.items, self.times = [], []
        self.n = 0
        ready.value = 0
        cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            self.ready.value = int(self.ready_prob >= 1 or self.rng.random() < self.ready_prob)
            await ReadOnly()
            if _v(self.valid) == 1 and _v(self.ready) == 1:
                self.items.append(_v(self.payload))
                self.times.append(self.n)
            await RisingEdge(self.clk)
            self.n += 1

    async def wait_for(self, n, timeout=400_000):
        for _ in range(timeout):
            if len(self.items) >= n:
                return
            await RisingEdge(self.clk)
        raise AssertionError(f"timeout: {len(self.items)} of {n} items")


class TB:
    def __init__(self, dut):
        self.dut = dut
        self.P = sim_params()
        self.D = sim_data()
        self.L = _layouts(self.P)
        self.p = self.L["p"]
        self.rng = random.Random(self.P.get("seed", 1))
        for name in ("s_axis", "wdesc", "rdesc"):
            getattr(dut, f"{name}__valid")._dut_payload = getattr(dut, f"{name}__payload")

    async def start(self):
        dut, P = self.dut, self.P
        cocotb.start_soon(Clock(dut.clk, P.get("clk_ps", 5000), unit="ps").start())
        cocotb.start_soon(Clock(dut.mem_clk, P.get("mem_clk_ps", 7300), unit="ps").start())
        for n in ("s_axis__valid", "wdesc__valid", "rdesc__valid", "s_axis__payload", "cfg", "wdesc__payload",
                  "rdesc__payload", "m_axis__ready", "wstatus__ready", "rstatus__ready"):
            getattr(dut, n).value = 0
        # memory-side inputs too: an X ready/valid there poisons counters at reset release
        for n in ("axi__awready", "axi__wready", "axi__arready", "axi__bvalid", "axi__rvalid",
                  "native__cmd_ready", "native__wdata_ready", "native__rdata_valid"):
            if hasattr(dut, n):
                getattr(dut, n).value = 0
        dut.rst.value = 1
        dut.mem_rst.value = 1
        await ClockCycles(dut.mem_clk, 6)
        await ClockCycles(dut.clk, 6)
        dut.rst.value = 0
        dut.mem_rst.value = 0
        if P["bus"] == "litedram":
            self.mem = None
            for _ in range(200_000):
                await RisingEdge(dut.mem_clk)
                if _v(dut.init_done) == 1:
                    break
            else:
                raise AssertionError("LiteDRAM init did not finish")
            assert _v(dut.init_error) == 0, "LiteDRAM init_error"
            self.t_init = get_sim_time("ns")
            await ClockCycles(dut.clk, 4)
            return
        if P["bus"] == "axi":
            self.mem = Axi4SlaveMem(dut, dut.mem_clk, P["word"], seed=P.get("seed", 1),
                                    err_range=tuple(P["err_range"]) if P.get("err_range") else None,
                                    ready_prob=P.get("ready_prob", 0.6), latency=tuple(P.get("latency", (2, 30))))
        else:
            self.mem = NativeMem(dut, dut.mem_clk, P["native_width"], seed=P.get("seed", 1))
        self.mem.start()
        cocotb.start_soon(self._watch())
        await ClockCycles(dut.clk, 4)

    async def _watch(self):
        """Progress in the log every 20000 unit clocks (a hang is visible as a frozen line)."""
        d = self.dut
        while True:
            await ClockCycles(d.clk, 20000)
            d._log.info("progress: s_axis v%d r%d wdesc v%d r%d wstatus v%d rdesc v%d r%d m_axis v%d rstatus v%d mem %s",
                        _v(d.s_axis__valid), _v(d.s_axis__ready), _v(d.wdesc__valid), _v(d.wdesc__ready),
                        _v(d.wstatus__valid), _v(d.rdesc__valid), _v(d.rdesc__ready), _v(d.m_axis__valid),
                        _v(d.rstatus__valid), getattr(self.mem, "stats", len(self.mem.mem)))
            if self.P.get("debug"):
                for path in self.P["debug"]:
                    h = d
                    try:
                        for part in path.split("."):
                            h = getattr(h, part)
                        d._log.info("  %s = %s", path, h.value)
                    except Exception as exc:
                        d._log.info("  %s: %s", path, exc)

    def beats(self, i):
        """Value beats (payload, {cfg}) of tensor i."""
        t = self.P["tensors"][i]
        bits = self.D[f"bits_{i}"]
        n, N = len(bits), self.p.lanes
        cfg = pack(self.L["cfg"], t["cfg"])
        out = []
        for s in range(0, n, N):
            chunk = [int(v) for v in bits[s:s + N]]
            k = len(chunk)
            out.append((pack(self.L["beat"], {"data": chunk + [0] * (N - k), "keep": (1 << k) - 1,
                                              "last": int(s + N >= n)}), {self.dut.cfg: cfg}))
        return out

    def mem_word(self, a):
        """W-bit word at word address a, from the memory model."""
        W = self.P["word"]
        if self.P["bus"] == "axi":
            return self.mem.read_word(a * (W // 8))
        M = self.P["native_width"]
        k = W // M
        v = 0
        for j in range(k):
            v |= self.mem.mem.get(a * k + j, 0xA5A5_A5A5_A5A5_A5A5_A5A5_A5A5_A5A5_A5A5 & ((1 << M) - 1)) << (j * M)
        return v

    async def store_all(self, idx, *, idle=0.2, stat_ready=0.7):
        dut, L = self.dut, self.L
        T = self.P["tensors"]
        wst = Sink(dut.clk, dut.wstatus__valid, dut.wstatus__ready, dut.wstatus__payload, self.rng, stat_ready)
        descs = [pack(L["wdesc"], {"data_addr": T[i]["data_addr"], "index_addr": T[i]["index_addr"]}) for i in idx]
        cocotb.start_soon(send(dut.clk, dut.wdesc__valid, dut.wdesc__ready, descs, self.rng, 0.3))
        t0 = wst.n
        await send(dut.clk, dut.s_axis__valid, dut.s_axis__ready, [b for i in idx for b in self.beats(i)],
                   self.rng, idle)
        await wst.wait_for(len(idx))
        for i, raw in zip(idx, wst.items):
            st = unpack(L["wstat"], raw)
            exp_err = int(T[i].get("err", False))
            assert st["err"] == exp_err, f"tensor {i}: status err {st['err']} != {exp_err}"
            assert st["words"] == len(self.D[f"words_{i}"]), f"tensor {i}: {st['words']} words written"
            assert st["blocks"] == len(self.D[f"lens_{i}"]), f"tensor {i}: {st['blocks']} blocks"
        return wst.times[-1] - t0

    def check_memory(self, i):
        t = self.P["tensors"][i]
        W = self.P["word"]
        words = [int(x) for x in self.D[f"words_{i}"]]
        for j, w in enumerate(words):
            got = self.mem_word(t["data_addr"] + j)
            assert got == w, f"tensor {i} data word {j}: {got:#x} != {w:#x}"
        E = W // 32
        lens = [int(x) for x in self.D[f"lens_{i}"]]
        for j in range(0, len(lens), E):
            exp = sum(v << (32 * q) for q, v in enumerate(lens[j:j + E]))
            got = self.mem_word(t["index_addr"] + j // E)
            assert got == exp, f"tensor {i} index word {j // E}: {got:#x} != {exp:#x}"

    async def load(self, loads, *, out_ready=0.7):
        """Run the loads [(tensor, b0, b1)], check values and statuses; return the unit clocks taken."""
        dut, L, P = self.dut, self.L, self.P
        T = P["tensors"]
        B, N = self.p.block, self.p.lanes
        out = Sink(dut.clk, dut.m_axis__valid, dut.m_axis__ready, dut.m_axis__payload, self.rng, out_ready)
        rst = Sink(dut.clk, dut.rstatus__valid, dut.rstatus__ready, dut.rstatus__payload, self.rng, 0.8)
        descs, exp_beats, exp_stat = [], [], []
        for (i, b0, b1) in loads:
            t = T[i]
            n = t["cfg"]["length"]
            descs.append(pack(L["rdesc"], {"cfg": t["cfg"], "data_addr": t["data_addr"], "index_addr": t["index_addr"],
                                           "b0": b0, "b1": b1}))
            nb = -(-n // B)
            b1c = min(b1, nb)
            if b0 >= b1c:
                exp_stat.append({"refused": 1})
                continue
            vals = self.D[f"out_{i}"][b0 * B:min(b1c * B, n)]
            lens = [int(x) for x in self.D[f"lens_{i}"]]
            exp_stat.append({"refused": 0, "blocks": b1c - b0, "words": sum(lens[b0:b1c]),
                             "err": int(t.get("err", False))})
            for s in range(0, len(vals), N):
                chunk = [int(v) for v in vals[s:s + N]]
                k = len(chunk)
                exp_beats.append({"data": None if t.get("err") else chunk + [0] * (N - k), "keep": (1 << k) - 1,
                                  "last": int(s + N >= len(vals))})
        t0 = out.n
        await send(dut.clk, dut.rdesc__valid, dut.rdesc__ready, descs, self.rng, 0.2)
        await rst.wait_for(len(descs))
        await out.wait_for(len(exp_beats))
        await ClockCycles(dut.clk, 20)
        assert len(out.items) == len(exp_beats), f"{len(out.items)} beats, {len(exp_beats)} expected"
        for j, (raw, e) in enumerate(zip(out.items, exp_beats)):
            got = unpack(L["beat"], raw)
            if e["data"] is None:                 # read with SLVERR: the values are junk, the framing is not
                got["data"] = None
            if got != e:
                raise AssertionError(f"beat {j}: got {got}, expected {e}")
        for j, (raw, e) in enumerate(zip(rst.items, exp_stat)):
            got = unpack(L["rstat"], raw)
            for k, v in e.items():
                assert got[k] == v, f"load {j} {loads[j]}: status {k} = {got[k]}, expected {v}"
        return (out.times[-1] - t0) if out.times else 0

    def check_protocol(self):
        if self.mem is None:
            return
        assert not self.mem.errors, "memory model: " + "; ".join(self.mem.errors)


@cocotb.test()
async def store_and_load(dut):
    """Every tensor stored (random stalls), memory checked word by word, then loaded whole and in block ranges."""
    tb = TB(dut)
    await tb.start()
    idx = list(range(len(tb.P["tensors"])))
    await tb.store_all(idx)
    for i in idx:
        if not tb.P["tensors"][i].get("err") and tb.mem is not None:
            tb.check_memory(i)
    loads = [tuple(x) for x in tb.P["loads"]]
    await tb.load(loads)
    tb.check_protocol()
    if tb.P["bus"] == "axi":
        dut._log.info("AXI stats %s", tb.mem.stats)
        for k in tb.P.get("expect_stats", []):
            assert tb.mem.stats[k] > 0, f"the slave never exercised {k}: {tb.mem.stats}"


@cocotb.test()
async def measure(dut):
    """Each tensor alone: memory-clock cycles to store it (first beat in -> writer status) and to load it
    whole (descriptor in -> last beat out), no stalls; results to ``params["measure_out"]`` (JSON)."""
    import json
    tb = TB(dut)
    if not tb.P.get("measure_out"):
        return
    await tb.start()
    ratio = tb.P.get("clk_ps", 5000) / tb.P.get("mem_clk_ps", 7300)    # unit clocks -> memory clocks
    res = []
    for i, t in enumerate(tb.P["tensors"]):
        st = await tb.store_all([i], idle=0.0, stat_ready=1.0)
        tb.check_protocol()
        nb = -(-t["cfg"]["length"] // tb.p.block)
        ld = await tb.load([(i, 0, nb)], out_ready=1.0)
        res.append({"name": t["name"], "values": t["cfg"]["length"], "words": len(tb.D[f"words_{i}"]),
                    "blocks": nb, "store_cycles": round(st * ratio, 1), "load_cycles": round(ld * ratio, 1)})
        dut._log.info("MEASURE %s", res[-1])
        await ClockCycles(dut.clk, 50)
    with open(tb.P["measure_out"], "w") as f:
        json.dump(res, f, indent=1)
