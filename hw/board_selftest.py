"""Self-checking SDRAM round trip: a built-in tensor into DRAM and back, checked against the golden model.

:func:`make_plan` computes, at build time with the golden model, everything
the hardware must see: the source tensor, and for each container of a small
ladder its ``cfg``, the data words and blocks the writer must report, and
the quantized values the unpacker must return for each load.
:class:`DramSelfTest` holds the tensor and the expected values in ROMs and
runs the round trip on :class:`sfp.hw.dram_system.LiteDramSystem`, forever,
showing busy / pass / fail.  It is board independent: the ULX3S top
(:mod:`sfp.hw.board_ulx3s`) adds the PLL, the pins and the LEDs, and the test
suite runs the same component on LiteDRAM's SDRAM model
(``sim_tests/test_board_dram.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth import Array, Const, Module, Mux, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sfp.model.container import encode_image
from sfp.model.formats import Settings
from sfp.model.quantize import quantize, resolve

from .dram_system import LiteDramSystem
from .params import ROUNDING_CODES, HwParams, config_layout

__all__ = ["BOARD_TENSOR", "LADDER", "SelfTestPlan", "make_plan", "Phase", "FailCode", "DramSelfTest"]

#: The built-in tensor: (key fragment in the training dump, values) -- 512 bf16 weights of the digits CNN.
BOARD_TENSOR = ("epoch10/weight/conv2.weight", 512)

#: The containers the board stores the tensor in, one after the other: bf16 as is (lossless, so
#: every bit of the SDRAM path is checked), then two narrow ones (quantized: what the model predicts).
LADDER = (
    ("bf16", dict(exp_bits=8, exp_base=0)),
    ("m3e5", dict(man_bits=3, exp_bits=5)),
    ("m1e3", dict(man_bits=1, exp_bits=3)),
)


@dataclass
class SelfTestPlan:
    """The round trip, computed by the golden model (see :func:`make_plan`)."""

    p: HwParams
    bits: np.ndarray                 # the tensor, source bit patterns (uint32)
    names: list                      # container names
    settings: list                   # resolved Settings per container
    words: list                      # data words written per container
    lens: list                       # block lengths (words) per container
    expected: list                   # quantized values (bit patterns) per container
    loads: list                      # (container, b0, b1)
    data_addr: list                  # per container, word addresses (region 0)
    index_addr: list
    region: int                      # added to the addresses on odd passes

    @property
    def n(self) -> int:
        return int(self.bits.size)

    def cfg(self, k: int) -> dict:
        s = self.settings[k]
        return {"man_bits": s.man_bits, "exp_bits": s.exp_bits, "exp_base": int(s.exp_base), "sign": int(s.sign),
                "specials": int(s.specials), "rounding": ROUNDING_CODES[s.rounding], "gecko": 0, "seed": int(s.seed),
                "length": self.n}

    def load_values(self, j: int) -> np.ndarray:
        k, b0, b1 = self.loads[j]
        B = self.p.block
        return self.expected[k][b0 * B:min(b1 * B, self.n)]


def _pow2_at_least(v: int) -> int:
    return 1 << max(0, int(v - 1).bit_length())


def make_plan(p: HwParams, bits, ladder=LADDER) -> SelfTestPlan:
    """Expected words, blocks and values of ``bits`` (a flat tensor of source bit patterns) in each container.

    The containers are ``ladder``'s, clipped to the hardware's maxima.  The
    loads: every container's whole tensor, then single blocks (the second
    block of the last container and the last block of the first) when the
    tensor has more than one block -- random access through the index.
    """
    if p.gecko:
        raise ValueError("the board self-test builds the plain packer/unpacker (gecko must be False)")
    bits = np.asarray(bits, np.uint32).reshape(-1)
    if bits.size < p.lanes:
        raise ValueError(f"the tensor needs at least {p.lanes} values (one beat), got {bits.size}")
    names, settings, words, lens, expected = [], [], [], [], []
    for name, kw in ladder:
        kw = dict(kw)
        kw["man_bits"] = min(kw.get("man_bits", p.max_man_bits), p.max_man_bits)
        kw["exp_bits"] = min(kw.get("exp_bits", p.max_exp_bits), p.max_exp_bits)
        if kw["exp_bits"] != 8 and kw.get("exp_base") == 0:
            kw["exp_base"] = "auto"
        xs = _as_source(bits, p.source)
        s = resolve(xs, Settings(source=p.source, block=p.block, word=p.word, **kw))
        enc = encode_image(xs, s, strict=False)
        q = np.asarray(quantize(xs, s, strict=False))
        names.append(name)
        settings.append(s)
        lens.append([int(v) for v in enc.block_words])
        words.append(int(sum(lens[-1])))
        expected.append(q.view(np.uint16 if p.source == "bf16" else np.uint32).astype(np.uint32))
    nb = -(-bits.size // p.block)
    K = len(ladder)
    loads = [(k, 0, nb) for k in range(K)]
    if nb > 1:
        loads += [(K - 1, 1, 2), (0, nb - 1, nb)]
    stride = _pow2_at_least(max(words) + 1)
    E = p.word // 32
    istride = _pow2_at_least(-(-nb // E) + 1)
    data_addr = [k * stride for k in range(K)]
    index_addr = [K * stride + k * istride for k in range(K)]
    region = _pow2_at_least(K * (stride + istride))
    return SelfTestPlan(p, bits, names, settings, words, lens, expected, loads, data_addr, index_addr, region)


def _as_source(bits: np.ndarray, source: str) -> np.ndarray:
    if source == "bf16":
        import ml_dtypes
        return bits.astype(np.uint16).view(ml_dtypes.bfloat16)
    return bits.astype(np.uint32).view(np.float32)


class Phase(enum.Enum, shape=4):
    """Where the self-test is (the ``phase`` port)."""
    INIT = 0           # waiting for the controller's init sequence
    STORE_DESC = 1     # offering the writer's descriptor for container k
    STORE_BEATS = 2    # streaming the tensor into the packer
    STORE_WAIT = 3     # waiting for the writer's status
    LOAD_DESC = 4      # offering the reader's descriptor for load j
    LOAD_RUN = 5       # checking the unpacker's beats and the reader's status
    PAUSE = 6          # a pass is complete; the next one starts after a pause
    FAIL = 7           # stopped at the first failure (``fail_code``)


class FailCode(enum.Enum, shape=3):
    """Why the self-test stopped (the ``fail_code`` port; 0 while it has not)."""
    NONE = 0
    INIT_ERROR = 1     # the controller reported an init error
    WRITE_STATUS = 2   # the writer reported other words/blocks than the model, or a write error
    DATA = 3           # a value, keep or last of the unpacker differs from the model
    READ_STATUS = 4    # the reader reported other words/blocks than the model, an error or a refusal
    UNIT_FLAG = 5      # the packer or unpacker raised unsupported / corrupt / length_error
    TIMEOUT = 6        # no progress for ``timeout`` clocks (a hang somewhere on the path)


class DramSelfTest(wiring.Component):
    """Stores a built-in tensor in DRAM in several containers, loads it back, and compares every value.

    Parameters
    ----------
    plan : SelfTestPlan
        From :func:`make_plan` (the tensor, containers, expected results).
    core : :class:`sfp.hw.litedram_gen.LiteDramCore`
        The controller (``sim`` core: LiteDRAM's SDRAM model inside; else the
        real PHY, whose pins go in ``pads``).
    pads : dict or None
        Instance connections of the core's SDRAM pins (``o_sdram_a`` ...,
        ``io_sdram_dq``), for the real PHY.
    pause : int
        Clocks between passes.
    timeout : int
        Clocks without progress before ``TIMEOUT`` (the init sequence counts as
        progress only when it ends: keep it above the init time).
    init_delay_scale : float
        Passed to the init sequencer (:func:`sfp.hw.dram_init.init_writes`).

    Ports (domain ``sync``; the controller runs in ``mem``, both reset together)
    ----------------------------------------------------------------------------
    inject : In(1)
        While high, bit 0 of every value entering the packer is flipped: the
        stored tensor is no longer the one the expected values were computed
        from, so the check must fail (a way to see the checker work).
    busy : Out(1)
        A pass is running (or the controller is initialising).
    passes : Out(16)
        Complete passes without a failure (wraps).
    fail : Out(1)
        Sticky; ``fail_code`` says why.
    fail_code : Out(FailCode)
    init_done : Out(1)
        The controller is initialised (synchronised from ``mem``).
    phase : Out(Phase)

    One pass: for each container k, a writer descriptor and the tensor's
    beats (from ROM, N values per clock, the container's ``cfg`` on the
    packer); the writer's status is checked (words, blocks, no error).  Then
    the loads of the plan: a reader descriptor, and every beat the unpacker
    returns is compared (values, ``keep``, ``last``) with the expected-value
    ROM, the reader's status with the plan.  Odd passes use addresses
    ``plan.region`` higher than even ones, so a pass never reads what the
    previous pass left (a write that did not happen cannot pass unseen).

    Throughput: one beat per clock into the packer and out of the unpacker
    when the memory keeps up (it does not: the SDR SDRAM moves 16 bits per
    memory clock).  Latency of a pass: the SDRAM's, a few thousand memory
    clocks for a 512-value tensor.
    """

    def __init__(self, plan: SelfTestPlan, core, *, pads: dict | None = None, pause: int = 1 << 20,
                 timeout: int = 1 << 22, init_delay_scale: float = 1, addr_width: int = 20, burst: int = 32):
        self.plan, self.core, self.pads = plan, core, pads
        self.pause, self.timeout, self.init_delay_scale = pause, timeout, init_delay_scale
        self.addr_width, self.burst = addr_width, burst
        top = plan.region * 2
        if top > 1 << addr_width:
            raise ValueError(f"the tensor needs {top} words of address space, more than 2^{addr_width}")
        super().__init__({
            "inject": In(1),
            "busy": Out(1), "passes": Out(16), "fail": Out(1), "fail_code": Out(FailCode),
            "init_done": Out(1), "phase": Out(Phase),
        })

    def elaborate(self, platform):
        m = Module()
        plan, p = self.plan, self.plan.p
        N, w, B = p.lanes, p.src.width, p.block
        n, K = plan.n, len(plan.settings)
        nbeats = -(-n // N)
        full = (1 << N) - 1
        last_keep = (1 << (n - (nbeats - 1) * N)) - 1

        m.submodules.sys = sys = LiteDramSystem(p, self.core, addr_width=self.addr_width, burst=self.burst,
                                               init_delay_scale=self.init_delay_scale, pads=self.pads)

        def row(vals):
            vals = [int(v) for v in vals] + [0] * (N - len(vals))
            return sum(v << (j * w) for j, v in enumerate(vals))

        # -- ROMs: the tensor (one beat a row) and the expected values (container k at row k*nbeats) ------
        m.submodules.src = src = Memory(shape=N * w, depth=nbeats,
                                        init=[row(plan.bits[t * N:(t + 1) * N]) for t in range(nbeats)])
        m.submodules.exp = exp = Memory(shape=N * w, depth=K * nbeats,
                                        init=[row(plan.expected[k][t * N:(t + 1) * N])
                                              for k in range(K) for t in range(nbeats)])
        src_rd, exp_rd = src.read_port(), exp.read_port()

        # -- per-container and per-load constants -------------------------------------------------------------
        aw = self.addr_width
        cfg_rom = Array(Const.cast(config_layout().const(plan.cfg(k))) for k in range(K))
        words_rom = Array(Const(v, 32) for v in plan.words)
        blocks_rom = Array(Const(len(v), 32) for v in plan.lens)
        dadr_rom = Array(Const(v, aw) for v in plan.data_addr)
        iadr_rom = Array(Const(v, aw) for v in plan.index_addr)
        L = len(plan.loads)
        ld_k, ld_b0, ld_b1, ld_row, ld_beats, ld_keep, ld_words = [], [], [], [], [], [], []
        for j, (k, b0, b1) in enumerate(plan.loads):
            cnt = plan.load_values(j).size
            ld_k.append(Const(k, range(K)))
            ld_b0.append(Const(b0, 32))
            ld_b1.append(Const(b1, 32))
            ld_row.append(Const(k * nbeats + b0 * B // N, range(K * nbeats)))
            ld_beats.append(Const(-(-cnt // N), range(nbeats + 1)))
            ld_keep.append(Const((1 << (cnt - (-(-cnt // N) - 1) * N)) - 1, N))
            ld_words.append(Const(sum(plan.lens[k][b0:b1]), 32))
        ld_k, ld_b0, ld_b1, ld_row, ld_beats, ld_keep, ld_words = map(
            Array, (ld_k, ld_b0, ld_b1, ld_row, ld_beats, ld_keep, ld_words))

        # -- state --------------------------------------------------------------------------------------------
        phase = Signal(Phase)
        k = Signal(range(max(2, K)))
        j = Signal(range(max(2, L)))
        t = Signal(range(nbeats + 1))           # beats sent / checked in this phase
        st_seen = Signal()                      # the reader's status arrived
        region = Signal()                       # odd pass: addresses + plan.region
        wait = Signal(range(self.pause + 1))
        code = Signal(FailCode)
        fail_now = Signal(FailCode)             # a failure found this clock (NONE: none)
        progress = Signal()
        off = Mux(region, plan.region, 0)

        done_s, err_s = Signal(), Signal()
        m.submodules.sync_done = FFSynchronizer(sys.init_done, done_s)
        m.submodules.sync_err = FFSynchronizer(sys.init_error, err_s)

        m.d.comb += [
            self.phase.eq(phase), self.fail_code.eq(code), self.fail.eq(code != FailCode.NONE),
            self.init_done.eq(done_s), self.busy.eq((phase != Phase.PAUSE) & (phase != Phase.FAIL)),
            sys.cfg.eq(cfg_rom[k]),
        ]

        # the packer's input: ROM row t, flipped in bit 0 while inject
        sa = sys.s_axis
        m.d.comb += [
            sa.payload.data.as_value().eq(src_rd.data ^ self.inject),
            sa.payload.keep.eq(Mux(t == nbeats - 1, last_keep, full)),
            sa.payload.last.eq(t == nbeats - 1),
            src_rd.addr.eq(Mux(sa.valid & sa.ready, t + 1, t)),    # the ROM's data register follows t
        ]
        # the writer's and reader's descriptors
        m.d.comb += [
            sys.wdesc.payload.data_addr.eq(dadr_rom[k] + off),
            sys.wdesc.payload.index_addr.eq(iadr_rom[k] + off),
            sys.rdesc.payload.cfg.eq(cfg_rom[ld_k[j]]),
            sys.rdesc.payload.data_addr.eq(dadr_rom[ld_k[j]] + off),
            sys.rdesc.payload.index_addr.eq(iadr_rom[ld_k[j]] + off),
            sys.rdesc.payload.b0.eq(ld_b0[j]),
            sys.rdesc.payload.b1.eq(ld_b1[j]),
        ]
        # the unpacker's output against the expected ROM (row ld_row[j] + t)
        ma = sys.m_axis
        exp_row = Signal(range(K * nbeats + 1))
        m.d.comb += exp_rd.addr.eq(Mux(ma.valid & ma.ready, exp_row + 1, exp_row))
        beat_ok = Signal()
        is_last = Signal()
        m.d.comb += [
            is_last.eq(t == ld_beats[j] - 1),
            beat_ok.eq((ma.payload.data.as_value() == exp_rd.data) & (t < ld_beats[j])
                       & (ma.payload.keep == Mux(is_last, ld_keep[j], full)) & (ma.payload.last == is_last)),
        ]
        ws, rs = sys.wstatus.payload, sys.rstatus.payload

        with m.Switch(phase):
            with m.Case(Phase.INIT):
                with m.If(err_s):
                    m.d.comb += fail_now.eq(FailCode.INIT_ERROR)
                with m.Elif(done_s):
                    m.d.sync += [phase.eq(Phase.STORE_DESC), k.eq(0), t.eq(0)]
            with m.Case(Phase.STORE_DESC):
                m.d.comb += sys.wdesc.valid.eq(1)
                with m.If(sys.wdesc.ready):
                    m.d.sync += [phase.eq(Phase.STORE_BEATS), t.eq(0)]
            with m.Case(Phase.STORE_BEATS):
                m.d.comb += sa.valid.eq(1)
                with m.If(sa.ready):
                    m.d.sync += t.eq(t + 1)
                    with m.If(t == nbeats - 1):
                        m.d.sync += phase.eq(Phase.STORE_WAIT)
            with m.Case(Phase.STORE_WAIT):
                m.d.comb += sys.wstatus.ready.eq(1)
                with m.If(sys.wstatus.valid):
                    with m.If((ws.words != words_rom[k]) | (ws.blocks != blocks_rom[k]) | ws.err):
                        m.d.comb += fail_now.eq(FailCode.WRITE_STATUS)
                    with m.Elif(k == K - 1):
                        m.d.sync += [phase.eq(Phase.LOAD_DESC), j.eq(0)]
                    with m.Else():
                        m.d.sync += [phase.eq(Phase.STORE_DESC), k.eq(k + 1), t.eq(0)]
            with m.Case(Phase.LOAD_DESC):
                m.d.comb += [sys.rdesc.valid.eq(1), exp_rd.addr.eq(ld_row[j])]
                m.d.sync += [exp_row.eq(ld_row[j]), t.eq(0), st_seen.eq(0)]
                with m.If(sys.rdesc.ready):
                    m.d.sync += phase.eq(Phase.LOAD_RUN)
            with m.Case(Phase.LOAD_RUN):
                m.d.comb += [ma.ready.eq(1), sys.rstatus.ready.eq(1)]
                with m.If(ma.valid):
                    m.d.sync += [t.eq(t + 1), exp_row.eq(exp_row + 1)]
                    with m.If(~beat_ok):
                        m.d.comb += fail_now.eq(FailCode.DATA)
                with m.If(sys.rstatus.valid):
                    m.d.sync += st_seen.eq(1)
                    with m.If((rs.words != ld_words[j]) | (rs.blocks != ld_b1[j] - ld_b0[j]) | rs.err | rs.refused):
                        m.d.comb += fail_now.eq(FailCode.READ_STATUS)
                with m.If((t == ld_beats[j]) & st_seen):
                    with m.If(j == L - 1):
                        m.d.sync += [phase.eq(Phase.PAUSE), wait.eq(self.pause), self.passes.eq(self.passes + 1)]
                    with m.Else():
                        m.d.sync += [phase.eq(Phase.LOAD_DESC), j.eq(j + 1)]
            with m.Case(Phase.PAUSE):
                with m.If(wait == 0):
                    m.d.sync += [phase.eq(Phase.STORE_DESC), k.eq(0), t.eq(0), region.eq(~region)]
                with m.Else():
                    m.d.sync += wait.eq(wait - 1)
            with m.Case(Phase.FAIL):
                pass

        # -- the units' own flags, and the watchdog ---------------------------------------------------------------
        pk, up = sys.pk_status, sys.up_status
        unit_bad = pk.unsupported | up.unsupported | up.corrupt | up.length_error
        m.d.comb += progress.eq((sa.valid & sa.ready) | (ma.valid & ma.ready) | sys.wdesc.ready & sys.wdesc.valid
                                | sys.rdesc.valid & sys.rdesc.ready | sys.wstatus.valid | sys.rstatus.valid
                                | (phase == Phase.INIT) & done_s)
        watch = Signal(range(self.timeout + 1))
        with m.If(progress | (phase == Phase.PAUSE) | (phase == Phase.FAIL)):
            m.d.sync += watch.eq(0)
        with m.Else():
            m.d.sync += watch.eq(watch + 1)
        final = Signal(FailCode)
        with m.If(fail_now != FailCode.NONE):
            m.d.comb += final.eq(fail_now)
        with m.Elif(unit_bad & (phase != Phase.INIT)):
            m.d.comb += final.eq(FailCode.UNIT_FLAG)
        with m.Elif(watch == self.timeout):
            m.d.comb += final.eq(FailCode.TIMEOUT)
        with m.If((final != FailCode.NONE) & (phase != Phase.FAIL)):
            m.d.sync += [phase.eq(Phase.FAIL), code.eq(final)]
        return m
