"""RTL simulations of the packer, the unpacker and packer -> unpacker, on the AXI-named tops.

cocotb 2.x over the Verilog that ``sfp.hw.top`` generates (module names
``sfp_packer`` / ``sfp_unpacker``), under Icarus and Verilator, for several
hardware configurations.  Everything expected comes from the golden model:
packer words == ``encode_image(...).payload``, block lengths ==
``.block_words``, unpacker values == ``quantize(x, s, strict=False)``.

Stimulus per configuration (``_stimulus``): real training tensors (weights,
post-ReLU activations, gradients; rounded to bf16 for bf16 configurations)
and adversarial patterns (every exponent incl. subnormals and specials,
rounding ties, negatives with the sign elided, windows that cut both ends),
with lengths that are not multiples of N, B or the word; settings change
at every tensor; one tensor has a cfg the hardware must refuse.

Gecko builds (``*_gecko``; ``_gecko_tensors``): Gecko on and off back to
back, the Gecko stress patterns of ``packer_ref.gecko_adversarial_bits``
(every Rice mode, b = 0, z, escapes, raw, plain-fallback blocks), real
tensors; the unpacker also gets every tensor's block index on ``s_len``
(random stalls there too), and in the loopback the packer's ``m_len``
feeds it.

The cocotb sides: ``cocotb_packer_tb``, ``cocotb_unpacker_tb``,
``cocotb_loopback_tb``.  One build per (configuration, DUT, simulator),
shared by all cocotb tests of that DUT.
"""

from __future__ import annotations

import os
import zlib
from functools import lru_cache

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sfp.hw.params import HwParams, config_layout
from sfp.hw.top import PackerTop, UnpackerTop
from sfp.model.formats import Settings
from sfp.sim_tests.harness import SIMULATORS, run_sim
from sfp.sim_tests.packer_ref import GECKO_KINDS, adversarial_bits, gecko_adversarial_bits, make_case, real_tensor_bits

CONFIGS = {
    "bf16_n8_w128": HwParams(source="bf16", lanes=8, word=128, block=256),     # the default
    "bf16_n1_w64": HwParams(source="bf16", lanes=1, word=64, block=64),
    "bf16_n4_w256": HwParams(source="bf16", lanes=4, word=256, block=128),
    "fp32_n4_w128": HwParams(source="fp32", lanes=4, word=128, block=256),
    "fp32_n2_w64": HwParams(source="fp32", lanes=2, word=64, block=32, max_man_bits=16, max_exp_bits=6),
    # Gecko builds (GeckoWordPacker / the GeckoParser stage behind the same ports, plus the unpacker's s_len)
    "bf16_n8_w128_gecko": HwParams(source="bf16", lanes=8, word=128, block=256, gecko=True),    # the default + Gecko
    "fp32_n4_w128_gecko": HwParams(source="fp32", lanes=4, word=128, block=128, group=16, gecko=True),
}

if os.environ.get("SFP_SIM_CONFIG"):
    # `sfp sim --config FILE`: the regression for that one configuration.
    import json

    from sfp.hw.params import params_from_dict

    with open(os.environ["SFP_SIM_CONFIG"]) as _f:
        CONFIGS = {"custom": params_from_dict(json.load(_f))}

def _settings(p: HwParams, **kw) -> Settings:
    kw.setdefault("man_bits", p.max_man_bits)
    kw["man_bits"] = min(kw["man_bits"], p.max_man_bits)
    kw["exp_bits"] = min(kw.get("exp_bits", p.max_exp_bits), p.max_exp_bits)
    if p.gecko:
        kw["group"] = p.group
    if kw.get("rounding") == "stochastic" and not p.stochastic:
        kw["rounding"] = "rne"          # a configuration built without the stochastic source
    return Settings(source=p.source, block=p.block, word=p.word, **kw)


def _scale(p: HwParams, beats: int) -> int:
    """Values for about ``beats`` beats (fewer beats for 1 lane: simulation time is per beat)."""
    return beats * p.lanes


@lru_cache(maxsize=None)
def _stimulus(name: str):
    p = CONFIGS[name]
    if p.gecko:
        return _pack_stimulus(p, _gecko_tensors(p, np.random.default_rng(zlib.crc32(name.encode()))))
    rng = np.random.default_rng(zlib.crc32(name.encode()))   # same stimulus in every process
    src = p.src
    B, N = p.block, p.lanes
    tensors = []                     # (case, groups, cfg override)

    def add(bits, groups, cfg_override=None, **kw):
        s = _settings(p, **kw)
        c = make_case(bits, s)
        if cfg_override:
            c.supported = False
        tensors.append((c, groups, cfg_override))

    odd = lambda k: k * B + 3 * N // 2 + 5          # not a multiple of N (N > 1), B or the word
    # real tensors, exp_base auto (resolved per tensor by the model, as a training policy would)
    add(real_tensor_bits(p.source, "epoch10/weight/conv2.weight", odd(2)), ["stream"])
    add(real_tensor_bits(p.source, "epoch10/act/relu1.out", odd(1) + 7, 900), ["stream"],
        man_bits=3, exp_bits=4, sign=False)
    add(real_tensor_bits(p.source, "epoch10/grad/fc1.weight", odd(2) + 1), ["stream"],
        man_bits=2, exp_bits=5, rounding="stochastic", seed=0x1234567)
    # adversarial patterns
    add(adversarial_bits(p.source, rng, odd(1) + 2), ["stream"], exp_base=0)
    add(adversarial_bits(p.source, rng, odd(1) + 9), ["stream"],
        man_bits=1, exp_bits=3, exp_base=src.max_finite_exp - 4, sign=False, specials=False, rounding="rz")
    add(adversarial_bits(p.source, rng, odd(1)), ["stream"], cfg_override={"exp_bits": 1})     # refused
    add(adversarial_bits(p.source, rng, odd(0) + 1), ["stream"],
        man_bits=5, exp_bits=6, exp_base=100, rounding="stochastic", seed=0xFFFFFFFF)
    add(adversarial_bits(p.source, rng, 3), ["stream"], man_bits=0, exp_bits=2, exp_base=126)  # tiny
    add(adversarial_bits(p.source, rng, odd(1) + 4), ["stream"], man_bits=4, exp_bits=4, exp_base=120,
        specials=False)
    if p.max_man_bits < src.man_width:          # a valid format setting beyond the built maxima
        add(adversarial_bits(p.source, rng, 2 * N + 1), ["stream"], cfg_override={"man_bits": p.max_man_bits + 1})
    add(real_tensor_bits(p.source, "epoch01/grad/conv2.out", odd(1) + 1), ["stream"], man_bits=6, exp_bits=5)

    # throughput: long tensors, settings changing at each
    nt = _scale(p, 700 if N > 1 else 500)
    add(real_tensor_bits(p.source, "epoch10/act/conv2.out", nt + 3), ["throughput"])
    add(real_tensor_bits(p.source, "epoch10/grad/conv2.out", nt + 1), ["throughput"], man_bits=2, exp_bits=4,
        rounding="stochastic", seed=99)
    add(adversarial_bits(p.source, rng, nt), ["throughput"], man_bits=1, exp_bits=2, exp_base=125)
    add(real_tensor_bits(p.source, "epoch10/weight/fc1.weight", nt + 5), ["throughput"], man_bits=4,
        exp_bits=6, sign=True, specials=False)

    # status flags, one tensor at a time
    one = 0x3F80 if p.source == "bf16" else 0x3F800000
    sgn = src.sign_mask
    inf = src.exp_all_ones << src.man_width
    add(np.array([one, one | sgn, one, 0], np.uint32), ["status"], sign=False)               # negative
    add(np.array([one, one, one], np.uint32), ["status"])                                    # clean
    add(np.array([one, inf, one, src.qnan], np.uint32), ["status"], specials=False)          # special
    add(adversarial_bits(p.source, rng, 2 * N + 3), ["status"], cfg_override={"exp_bits": 1})  # refused
    add(np.array([one | sgn, one], np.uint32), ["status"])                                   # clean (sign kept)

    # reset in the middle of a tensor, then a clean one
    add(adversarial_bits(p.source, rng, odd(2)), ["reset"])
    add(real_tensor_bits(p.source, "epoch03/weight/fc2.weight", odd(1)), ["reset"], man_bits=3, exp_bits=5)

    return _pack_stimulus(p, tensors)


def _gecko_tensors(p: HwParams, rng):
    """Stimulus of a Gecko build: Gecko on and off back to back, settings changing at every tensor.

    Real training tensors (ReLU zeros, gradients, weights), the Gecko stress
    patterns of :func:`gecko_adversarial_bits` (all codes equal, b = 0 groups,
    alternating extremes, zeros among large codes, one outlier per group,
    Rice k = 0/1/2, uniform codes -> raw mode and plain-fallback blocks,
    escapes, a slice of escapes) at several code widths e, the generic
    adversarial values (specials, subnormals, ties) with Gecko on, a tiny
    tensor, a refused Gecko tensor.
    """
    src = p.src
    B, N = p.block, p.lanes
    tensors = []

    def add(bits, groups, cfg_override=None, **kw):
        c = make_case(bits, _settings(p, **kw))
        if cfg_override:
            c.supported = False
        tensors.append((c, groups, cfg_override))

    def gk(n, kinds=GECKO_KINDS, **kw):
        return gecko_adversarial_bits(rng, n, _settings(p, **kw), kinds)

    odd = lambda k: k * B + 3 * N // 2 + 5
    add(real_tensor_bits(p.source, "epoch10/weight/conv2.weight", odd(2)), ["stream"], gecko=True)
    add(real_tensor_bits(p.source, "epoch10/act/relu1.out", odd(1) + 7, 900), ["stream"],
        man_bits=3, exp_bits=4, sign=False, gecko=True)
    g1 = dict(exp_base=0, gecko=True)
    add(gk(odd(4), **g1), ["stream"], **g1)
    add(real_tensor_bits(p.source, "epoch10/grad/fc1.weight", odd(2) + 1), ["stream"],
        man_bits=2, exp_bits=5, rounding="stochastic", seed=0x1234567)                         # Gecko off
    g2 = dict(man_bits=1, exp_bits=4, exp_base=120, specials=False, rounding="rz", gecko=True)
    add(gk(odd(2) + 9, **g2), ["stream"], **g2)
    add(adversarial_bits(p.source, rng, odd(1)), ["stream"], cfg_override={"exp_bits": 1}, gecko=True)  # refused
    g3 = dict(man_bits=5, exp_bits=6, exp_base=100, rounding="stochastic", seed=0xFFFFFFFF, gecko=True)
    add(gk(odd(2) + 1, **g3), ["stream"], **g3)
    add(gk(3, exp_base=126, man_bits=0, exp_bits=2, gecko=True), ["stream"],
        man_bits=0, exp_bits=2, exp_base=126, gecko=True)                                      # tiny
    add(adversarial_bits(p.source, rng, odd(1) + 4), ["stream"], exp_base=0, gecko=True)      # specials, ties
    g4 = dict(man_bits=0, exp_bits=3, exp_base=125, sign=False, gecko=True)
    add(gk(odd(1) + 2, **g4), ["stream"], **g4)
    g5 = dict(man_bits=4, exp_bits=8, exp_base=0, gecko=True)
    add(gk(odd(2), kinds=("uniform",), **g5), ["stream"], **g5)                                # plain fallback
    add(real_tensor_bits(p.source, "epoch01/grad/conv2.out", odd(1) + 1), ["stream"], man_bits=6, exp_bits=5,
        gecko=True)

    nt = _scale(p, 700)
    add(real_tensor_bits(p.source, "epoch10/act/conv2.out", nt + 3), ["throughput"], gecko=True)
    add(real_tensor_bits(p.source, "epoch10/grad/conv2.out", nt + 1), ["throughput"], man_bits=2, exp_bits=4,
        rounding="stochastic", seed=99, gecko=True)
    add(gk(nt, **g1), ["throughput"], **g1)
    add(real_tensor_bits(p.source, "epoch10/weight/fc1.weight", nt + 5), ["throughput"], man_bits=4,
        exp_bits=6, specials=False)                                                          # Gecko off

    one = 0x3F80 if p.source == "bf16" else 0x3F800000
    sgn = src.sign_mask
    inf = src.exp_all_ones << src.man_width
    add(np.array([one, one | sgn, one, 0], np.uint32), ["status"], sign=False, gecko=True)
    add(np.array([one, one, one], np.uint32), ["status"], gecko=True)
    add(np.array([one, inf, one, src.qnan], np.uint32), ["status"], specials=False, gecko=True)
    add(adversarial_bits(p.source, rng, 2 * B + 3), ["status"], cfg_override={"exp_bits": 1}, gecko=True)
    add(np.array([one | sgn, one], np.uint32), ["status"])

    add(gk(odd(2), **g1), ["reset"], **g1)
    add(real_tensor_bits(p.source, "epoch03/weight/fc2.weight", odd(1)), ["reset"], man_bits=3, exp_bits=5,
        gecko=True)

    # the mix must reach every Gecko case the stimulus is meant to: coded and plain-fallback blocks
    coded = plain = 0
    for c, groups, override in tensors:
        if override or not c.settings.gecko:
            continue
        for b, L in enumerate(c.lens):
            pl = -(-min(B, c.n - b * B) * c.settings.value_bits // p.word)
            coded += L < pl
            plain += L == pl
    assert coded and plain, (coded, plain)
    return tensors


def _pack_stimulus(p: HwParams, tensors):
    meta, data = [], {}
    for i, (c, groups, override) in enumerate(tensors):
        cfg = c.cfg()
        if override:
            cfg.update(override)
        meta.append({"cfg": cfg, "groups": groups, "supported": c.supported,
                     "neg": int(c.neg), "special": int(c.special), "n": c.n})
        data[f"bits_{i}"] = c.bits
        data[f"payload_{i}"] = np.frombuffer(b"".join(w.to_bytes(p.word // 8, "little") for w in c.words), np.uint8)
        data[f"lens_{i}"] = np.array(c.lens, np.int64)
        data[f"out_{i}"] = c.out
    return meta, data


def _run(name, simulator, which, factory, top, module):
    p = CONFIGS[name]
    meta, data = _stimulus(name)
    key = f"{which}_{name}"
    _run_sim(p, meta, data, key, simulator, factory, top, module)


def _run_sim(p, meta, data, key, simulator, factory, top, module):
    run_sim(factory(p), top=top, key=key, test_module=module, simulator=simulator, params={"hw": p.as_dict(), "src_width": p.src.width, "tensors": meta, "key": key}, data=data)


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_packer_rtl(name, simulator):
    _run(name, simulator, "sfp_packer", PackerTop, "sfp_packer", "sfp.sim_tests.cocotb_packer_tb")


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_unpacker_rtl(name, simulator):
    _run(name, simulator, "sfp_unpacker", UnpackerTop, "sfp_unpacker", "sfp.sim_tests.cocotb_unpacker_tb")


class LoopbackTop(wiring.Component):
    """Packer words straight into the unpacker (test fixture).

    Ports: the packer top's ``s_axis_*``, ``cfg_*``, ``m_len_*``; the
    unpacker top's ``m_axis_*``; the unpacker's cfg as ``u_cfg_*``; and the
    word handshake between them as outputs ``u_s_axis_tvalid/tready/tlast``
    so the testbench can switch ``u_cfg_*`` between tensors.

    Gecko builds: the packer's ``m_len`` feeds the unpacker's ``s_len``; the
    ``m_len_*`` ports then show that link (``m_len_tvalid`` is high when an
    entry is transferred given ``m_len_tready``), and ``m_len_tready``
    gates it, so the testbench's random ready stalls the block index too.
    """

    def __init__(self, p: HwParams):
        self.p = p
        n, sw = p.lanes, p.src.width
        members = {
            "s_axis_tdata": In(n * sw), "s_axis_tkeep": In(n), "s_axis_tlast": In(1),
            "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "m_axis_tdata": Out(n * sw), "m_axis_tkeep": Out(n), "m_axis_tlast": Out(1),
            "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_len_tdata": Out(32), "m_len_tlast": Out(1), "m_len_tvalid": Out(1), "m_len_tready": In(1),
            "u_s_axis_tvalid": Out(1), "u_s_axis_tready": Out(1), "u_s_axis_tlast": Out(1),
        }
        for fname, field in config_layout():
            members[f"cfg_{fname}"] = In(field.shape)
            members[f"u_cfg_{fname}"] = In(field.shape)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.pk = pk = PackerTop(self.p)
        m.submodules.up = up = UnpackerTop(self.p)
        for name in ("s_axis_tdata", "s_axis_tkeep", "s_axis_tlast", "s_axis_tvalid"):
            m.d.comb += getattr(pk, name).eq(getattr(self, name))
        for name in ("s_axis_tready", "m_len_tdata", "m_len_tlast"):
            m.d.comb += getattr(self, name).eq(getattr(pk, name))
        if self.p.gecko:
            m.d.comb += [
                up.s_len_tdata.eq(pk.m_len_tdata),
                up.s_len_tlast.eq(pk.m_len_tlast),
                up.s_len_tvalid.eq(pk.m_len_tvalid & self.m_len_tready),
                pk.m_len_tready.eq(up.s_len_tready & self.m_len_tready),
                self.m_len_tvalid.eq(pk.m_len_tvalid & up.s_len_tready),
            ]
        else:
            m.d.comb += [pk.m_len_tready.eq(self.m_len_tready), self.m_len_tvalid.eq(pk.m_len_tvalid)]
        for name in ("m_axis_tdata", "m_axis_tkeep", "m_axis_tlast", "m_axis_tvalid"):
            m.d.comb += getattr(self, name).eq(getattr(up, name))
        m.d.comb += [
            up.m_axis_tready.eq(self.m_axis_tready),
            up.s_axis_tdata.eq(pk.m_axis_tdata),
            up.s_axis_tlast.eq(pk.m_axis_tlast),
            up.s_axis_tvalid.eq(pk.m_axis_tvalid),
            pk.m_axis_tready.eq(up.s_axis_tready),
            self.u_s_axis_tvalid.eq(pk.m_axis_tvalid),
            self.u_s_axis_tready.eq(up.s_axis_tready),
            self.u_s_axis_tlast.eq(pk.m_axis_tlast),
        ]
        for fname, _ in config_layout():
            m.d.comb += [getattr(pk, f"cfg_{fname}").eq(getattr(self, f"cfg_{fname}")),
                         getattr(up, f"cfg_{fname}").eq(getattr(self, f"u_cfg_{fname}"))]
        return m


LOOPBACK_CONFIGS = [n for n in ("bf16_n8_w128", "fp32_n2_w64", "bf16_n8_w128_gecko") if n in CONFIGS] or list(CONFIGS)


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", LOOPBACK_CONFIGS)
def test_loopback_rtl(name, simulator):
    _run(name, simulator, "sfp_loopback", LoopbackTop, "sfp_loopback", "sfp.sim_tests.cocotb_loopback_tb")
