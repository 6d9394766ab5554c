"""cocotb tests of ``sfp_packer`` (hw.top.PackerTop) over the generated Verilog.

Run by ``sim_tests/test_packer.py`` through the harness.  The pytest side
computes everything expected with the golden model and passes it in:
``sim_params()["tensors"]`` (settings as cfg-port dicts, expected flags) and
``sim_data()`` arrays ``bits_<i>``, ``payload_<i>`` (uint8 image),
``lens_<i>``, ``out_<i>``.  Also holds the flat-port stream helpers that the
unpacker and loopback testbenches share.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from sfp.sim_tests.harness import sim_data, sim_params

JUNK_CFG = {"man_bits": 31, "exp_bits": 15, "exp_base": 255, "sign": 1, "specials": 0, "rounding": 3,
            "gecko": 1, "seed": 0xDEADBEEF, "length": 7}


def _bit(h) -> int:
    try:
        return int(h.value)
    except ValueError:
        return 0


class Cycles:
    """Counts rising edges (for throughput measurement)."""

    def __init__(self, clk):
        self.clk = clk
        self.n = 0
        cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            self.n += 1


class FlatDriver:
    """Drives beats on flat AXI-named ports: each beat is a dict ``{port name: value}``.

    Random idle cycles (``idle_prob``); records the cycle number of every handshake.
    """

    def __init__(self, dut, prefix, clk, cycles, seed=0, idle_prob=0.0, max_idle=3):
        self.dut, self.prefix, self.clk, self.cycles = dut, prefix, clk, cycles
        self.valid = getattr(dut, f"{prefix}_tvalid")
        self.ready = getattr(dut, f"{prefix}_tready")
        self.rng = random.Random(seed)
        self.idle_prob, self.max_idle = idle_prob, max_idle
        self.accepted: list[int] = []
        self.valid.value = 0

    async def send(self, beats):
        for beat in beats:
            if self.idle_prob and self.rng.random() < self.idle_prob:
                self.valid.value = 0
                for _ in range(self.rng.randint(1, self.max_idle)):
                    await RisingEdge(self.clk)
            for name, v in beat.items():
                getattr(self.dut, name).value = v
            self.valid.value = 1
            while True:
                await ReadOnly()
                fire = _bit(self.ready)
                await RisingEdge(self.clk)
                if fire:
                    break
            self.accepted.append(self.cycles.n)
        self.valid.value = 0


class FlatSink:
    """Random ``tready`` back-pressure; records ``{field: value}`` of every handshake on ``prefix_t<field>``."""

    def __init__(self, dut, prefix, clk, cycles, fields, seed=0, ready_prob=1.0):
        self.dut, self.clk, self.cycles = dut, clk, cycles
        self.valid = getattr(dut, f"{prefix}_tvalid")
        self.ready = getattr(dut, f"{prefix}_tready")
        self.handles = {f: getattr(dut, f"{prefix}_t{f}") for f in fields}
        self.rng = random.Random(seed)
        self.ready_prob = ready_prob
        self.beats: list[dict] = []
        self.times: list[int] = []
        self.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            self.ready.value = int(self.ready_prob >= 1.0 or self.rng.random() < self.ready_prob)
            await ReadOnly()
            if _bit(self.valid) and _bit(self.ready):
                self.beats.append({f: int(h.value) for f, h in self.handles.items()})
                self.times.append(self.cycles.n)
            await RisingEdge(self.clk)

    def clear(self):
        self.beats.clear()
        self.times.clear()

    async def wait_for(self, n, timeout_cycles=200_000):
        for _ in range(timeout_cycles):
            if len(self.beats) >= n:
                return
            await RisingEdge(self.clk)
        raise AssertionError(f"timeout: {len(self.beats)} of {n} beats")


# Inputs of any of the tops, driven to 0 before reset: an undriven (X) valid or
# ready would make the FIFO levels X in Icarus for ever.
_INPUTS = ("s_axis_tvalid", "s_axis_tdata", "s_axis_tkeep", "s_axis_tlast", "m_axis_tready", "m_len_tready",
           "s_len_tvalid", "s_len_tdata", "s_len_tlast", "m_status_tready")


async def start(dut, cycles=3):
    for name in _INPUTS:
        if hasattr(dut, name):
            getattr(dut, name).value = 0
    for prefix in ("cfg_", "u_cfg_"):
        for k in JUNK_CFG:
            if hasattr(dut, prefix + k):
                getattr(dut, prefix + k).value = 0
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await do_reset(dut, cycles)
    return Cycles(dut.clk)


async def do_reset(dut, cycles=3):
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def cfg_ports(cfg: dict) -> dict:
    return {f"cfg_{k}": v for k, v in cfg.items()}


class Tensors:
    """The tensors of this run: settings, inputs and expected results."""

    def __init__(self):
        self.p = sim_params()
        self.hw = self.p["hw"]
        self.lanes, self.word, self.sw = self.hw["lanes"], self.hw["word"], self.p["src_width"]
        self.meta = self.p["tensors"]
        z = sim_data()
        self.arrays = {k: z[k] for k in z.files}

    def bits(self, i):
        return [int(v) for v in self.arrays[f"bits_{i}"]]

    def words(self, i):
        b = bytes(self.arrays[f"payload_{i}"].tobytes())
        nb = self.word // 8
        return [int.from_bytes(b[k:k + nb], "little") for k in range(0, len(b), nb)]

    def lens(self, i):
        return [int(v) for v in self.arrays[f"lens_{i}"]]

    def out(self, i):
        return [int(v) for v in self.arrays[f"out_{i}"]]

    def cfg(self, i):
        return self.meta[i]["cfg"]

    def value_beats(self, i, with_cfg=True):
        """Packer input beats of tensor i: cfg with the first beat, junk on the others."""
        vals = self.bits(i)
        n, N = len(vals), self.lanes
        beats = []
        for t in range(0, n, N):
            chunk = vals[t:t + N]
            data = 0
            for j, v in enumerate(chunk):
                data |= v << (j * self.sw)
            b = {"s_axis_tdata": data, "s_axis_tkeep": (1 << len(chunk)) - 1 if t + N >= n else (1 << N) - 1,
                 "s_axis_tlast": int(t + N >= n)}
            if with_cfg:
                b.update(cfg_ports(self.cfg(i) if t == 0 else JUNK_CFG))
            beats.append(b)
        return beats

    def word_beats(self, i, with_cfg=True):
        """Unpacker input beats of tensor i (a refused tensor gets two junk words)."""
        ws = self.words(i) if self.meta[i]["supported"] else [0x1234, 0x5678]
        beats = []
        for k, w in enumerate(ws):
            b = {"s_axis_tdata": w, "s_axis_tlast": int(k == len(ws) - 1)}
            if with_cfg:
                b.update(cfg_ports(self.cfg(i) if k == 0 else JUNK_CFG))
            beats.append(b)
        return beats

    def len_beats(self, idx):
        """The unpacker's ``s_len`` input (Gecko builds) for tensors ``idx``: every tensor's block index,
        as the packer's ``m_len`` gives it (a refused tensor: ceil(length/B) junk entries, dropped)."""
        beats = []
        for i in idx:
            ls = self.lens(i) if self.meta[i]["supported"] else [0xBAD] * len(self.lens(i))
            beats += [{"s_len_tdata": L, "s_len_tlast": int(k == len(ls) - 1)} for k, L in enumerate(ls)]
        return beats

    def expected_words(self, idx):
        exp = []
        for i in idx:
            if self.meta[i]["supported"]:
                ws = self.words(i)
                exp += [{"data": w, "last": int(k == len(ws) - 1)} for k, w in enumerate(ws)]
        return exp

    def expected_lens(self, idx):
        exp = []
        for i in idx:
            if self.meta[i]["supported"]:
                ls = self.lens(i)
                exp += [{"data": w, "last": int(k == len(ls) - 1)} for k, w in enumerate(ls)]
        return exp

    def expected_values(self, idx):
        """Unpacker output beats (data, keep, last) of tensors ``idx``."""
        exp = []
        N = self.lanes
        for i in idx:
            if self.meta[i]["supported"]:
                vals = self.out(i)
            else:                           # refused: ceil(length/N) zero beats (m_status says why)
                vals = [0] * self.cfg(i)["length"]
            n = len(vals)
            for t in range(0, n, N):
                chunk = vals[t:t + N]
                data = 0
                for j, v in enumerate(chunk):
                    data |= v << (j * self.sw)
                exp.append({"data": data, "keep": (1 << len(chunk)) - 1, "last": int(t + N >= n)})
        return exp

    def group(self, name):
        return [i for i, m in enumerate(self.meta) if name in m["groups"]]


def compare(got, exp, what):
    for k, (g, e) in enumerate(zip(got, exp)):
        if g != e:
            diff = {f: (hex(g[f]), hex(e[f])) for f in e if g.get(f) != e[f]}
            raise AssertionError(f"{what}: beat {k} of {len(exp)} differs (got, expected): {diff}")
    assert len(got) == len(exp), f"{what}: got {len(got)} beats, expected {len(exp)}"


def status_of(dut):
    return {f: _bit(getattr(dut, f"status_{f}")) for f in ("negative", "special", "unsupported")}


# ---------------------------------------------------------------------------


@cocotb.test()
async def stream_with_stalls(dut):
    """All tensors back to back (real, adversarial, refused; settings change every tensor), random stalls everywhere."""
    T = Tensors()
    cyc = await start(dut)
    idx = T.group("stream")
    drv = FlatDriver(dut, "s_axis", dut.clk, cyc, seed=1, idle_prob=0.3)
    words = FlatSink(dut, "m_axis", dut.clk, cyc, ["data", "last"], seed=2, ready_prob=0.6)
    lens = FlatSink(dut, "m_len", dut.clk, cyc, ["data", "last"], seed=3, ready_prob=0.5)
    for i in idx:
        await drv.send(T.value_beats(i))
    exp_w, exp_l = T.expected_words(idx), T.expected_lens(idx)
    await words.wait_for(len(exp_w))
    await lens.wait_for(len(exp_l))
    await ClockCycles(dut.clk, 30)
    compare(words.beats, exp_w, "m_axis")
    compare(lens.beats, exp_l, "m_len")
    last = T.meta[idx[-1]]
    st = status_of(dut)
    assert (st["negative"], st["special"], st["unsupported"]) == (last["neg"], last["special"], 0), st
    dut._log.info("%d tensors, %d words, %d blocks OK", len(idx), len(exp_w), len(exp_l))


@cocotb.test()
async def throughput(dut):
    """Long tensors back to back with different settings, no stalls: beats per cycle >= 0.99."""
    T = Tensors()
    cyc = await start(dut)
    idx = T.group("throughput")
    drv = FlatDriver(dut, "s_axis", dut.clk, cyc)
    words = FlatSink(dut, "m_axis", dut.clk, cyc, ["data", "last"])
    lens = FlatSink(dut, "m_len", dut.clk, cyc, ["data", "last"])
    beats = [b for i in idx for b in T.value_beats(i)]
    await drv.send(beats)
    exp_w = T.expected_words(idx)
    await words.wait_for(len(exp_w))
    await ClockCycles(dut.clk, 10)
    compare(words.beats, exp_w, "m_axis")
    compare(lens.beats, T.expected_lens(idx), "m_len")
    span = drv.accepted[-1] - drv.accepted[0] + 1
    rate = len(beats) / span
    dut._log.info("THROUGHPUT packer: %d beats in %d cycles = %.4f beats/cycle", len(beats), span, rate)
    print(f"THROUGHPUT packer {T.p['key']}: {len(beats)} beats / {span} cycles = {rate:.4f}")
    assert rate >= 0.99, f"{rate:.4f} beats/cycle"


@cocotb.test()
async def status_flags(dut):
    """Each tensor's flags, checked after it drained: set by its own values only; a refused tensor writes nothing."""
    T = Tensors()
    cyc = await start(dut)
    drv = FlatDriver(dut, "s_axis", dut.clk, cyc)
    words = FlatSink(dut, "m_axis", dut.clk, cyc, ["data", "last"], seed=5)
    FlatSink(dut, "m_len", dut.clk, cyc, ["data", "last"], seed=6)
    idx = T.group("status")
    for i in idx:
        await drv.send(T.value_beats(i))
        await ClockCycles(dut.clk, 12)
        m = T.meta[i]
        exp = {"negative": m["neg"], "special": m["special"], "unsupported": int(not m["supported"])}
        assert status_of(dut) == exp, f"tensor {i}: status {status_of(dut)}, expected {exp}"
    exp_w = T.expected_words(idx)
    await words.wait_for(len(exp_w))        # the pipeline is longer than the 12 clocks above
    compare(words.beats, exp_w, "m_axis")


@cocotb.test()
async def reset_mid_tensor(dut):
    """Reset in the middle of a tensor (with words in flight), then a clean tensor comes out exactly."""
    T = Tensors()
    cyc = await start(dut)
    a, b = T.group("reset")[:2]
    drv = FlatDriver(dut, "s_axis", dut.clk, cyc)
    words = FlatSink(dut, "m_axis", dut.clk, cyc, ["data", "last"], seed=7, ready_prob=0.3)
    lens = FlatSink(dut, "m_len", dut.clk, cyc, ["data", "last"], seed=8, ready_prob=0.3)
    beats = T.value_beats(a)
    await drv.send(beats[:max(1, len(beats) // 2)])
    await do_reset(dut)
    words.clear()
    lens.clear()
    assert status_of(dut) == {"negative": 0, "special": 0, "unsupported": 0}
    await drv.send(T.value_beats(b))
    exp_w = T.expected_words([b])
    await words.wait_for(len(exp_w))
    await ClockCycles(dut.clk, 20)
    compare(words.beats, exp_w, "m_axis")
    compare(lens.beats, T.expected_lens([b]), "m_len")
