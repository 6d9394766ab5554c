"""Per-lane value conversion: source bit pattern <-> container fields.

Purely combinational logic that the packer (:class:`Quantizer`) and the
unpacker (:class:`Dequantizer`) instantiate once per lane and pipeline
around.  Both follow ``docs/format.md`` section 3 bit for bit; the reference
is ``sfp.model.quantize.to_fields(..., strict=False)`` / ``from_fields``.

The runtime settings arrive on a ``cfg`` port (:func:`sfp.hw.params.config_layout`)
and may be narrower than the elaboration maxima of :class:`~sfp.hw.params.HwParams`;
:func:`cfg_supported` tells whether a configuration fits.
"""

from __future__ import annotations

from amaranth.hdl import C, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .params import HwParams, ROUNDING_CODES, config_layout, fields_layout

__all__ = ["Quantizer", "Dequantizer", "LaneConfig", "cfg_supported", "cfg_checks", "lane_cfg_layout", "DECODE_LATENCY", "quantizer_latency"]

_RNE = ROUNDING_CODES["rne"]
_RZ = ROUNDING_CODES["rz"]
_STOCHASTIC = ROUNDING_CODES["stochastic"]


def cfg_checks(p: HwParams, cfg) -> list[Value]:
    """The separate conditions of :func:`cfg_supported`, each 1 when it holds.

    Kept apart so that a pipelined caller can register each comparison
    before ANDing them (the packer's front end does: one compare carry
    chain plus the AND in one clock was its critical path).
    """
    checks = [cfg.man_bits <= p.max_man_bits,
              cfg.exp_bits >= 2,
              cfg.exp_bits <= p.max_exp_bits,
              cfg.rounding <= _STOCHASTIC,
              cfg.exp_base <= p.src.max_finite_exp - 1]
    if not p.stochastic:
        checks.append(cfg.rounding != _STOCHASTIC)
    if not p.gecko:
        checks.append(~cfg.gecko)
    return checks


def cfg_supported(p: HwParams, cfg) -> Value:
    """1 when the runtime configuration ``cfg`` (a ``config_layout()`` view) fits ``p``.

    Checks ``man_bits <= p.max_man_bits``, ``2 <= exp_bits <= p.max_exp_bits``,
    a rounding code of at most 2 (and not stochastic unless ``p.stochastic``),
    ``exp_base <= E_fmax - 1`` and Gecko only when ``p.gecko``.  The source
    format is fixed at elaboration and is not part of ``cfg``.
    """
    return Cat(*cfg_checks(p, cfg)).all()


def lane_cfg_layout(p: HwParams) -> data.StructLayout:
    """The per-tensor quantities the lanes derive from ``cfg`` (see :class:`LaneConfig`)."""
    mw, mmax, emax = p.src.man_width, p.max_man_bits, p.max_exp_bits
    wq = max(mmax, 1)
    return data.StructLayout({
        "mb": 5,                          # m
        "qsh": max(mmax, 1).bit_length(), # mmax - m (d = M_w - mmax + qsh)
        "d": mw.bit_length(),             # d = M_w - m
        "mmask": wq,                      # 2^m - 1
        "nan_q": wq,                      # 2^(m-1), 0 when m = 0
        "m_ge1": 1,                       # m >= 1
        "top": emax,                      # 2^e - 1
        "cfin": 8,                        # min(cmax, E_fmax - exp_base)
        "base": 8,                        # exp_base
        "base_p1": 9,                     # exp_base + 1
        "base_m1": 8,                     # exp_base - 1 mod 2^8
        "hi": 9,                          # exp_base + cfin, the largest in-window E'
        "rne_k": mw,                      # 2^(d-1) - 1 (0 when d = 0)
        "rne_cin_en": 1,                  # rne and d >= 1
        "is_rne": 1,
        "is_st": 1,                       # stochastic (0 when not built)
        "sign": 1,
        "specials": 1,
    })


def _decode_cfg(p: HwParams, cfg, reg=None) -> dict:
    """Expressions for every field of :func:`lane_cfg_layout` (cfg only).

    ``reg(value)`` registers a value; with it the decoder is cut into
    :data:`DECODE_LATENCY` register stages (A: the constant shifts and small
    adders of ``cfg``; B: ``cmax``; C: the clamp ``cfin = min(cmax, lim)``;
    D: ``hi = exp_base + cfin``), every field delayed to the last one.
    Without it (``None``) the same logic is combinational.
    """
    stage = reg or (lambda x: x)
    src = p.src
    mw, mmax, emax = src.man_width, p.max_man_bits, p.max_exp_bits
    wq = max(mmax, 1)
    # bit-wise decoders of m and e (2^m - 1, 2^e - 1): comparisons with constants, no shifter
    mmask = Cat(*(cfg.man_bits > i for i in range(mmax))) if mmax else C(0, 1)
    top = Cat(*(cfg.exp_bits > i for i in range(emax)))
    lim = (src.max_finite_exp - cfg.exp_base)[:8]
    d = (mw - cfg.man_bits)[:mw.bit_length()]
    is_rne = cfg.rounding == _RNE
    a = {
        "mb": cfg.man_bits,
        "qsh": (mmax - cfg.man_bits)[:wq.bit_length()],
        "d": d,
        "mmask": mmask,
        "nan_q": (mmask & ~(mmask >> 1))[:wq],
        "m_ge1": cfg.man_bits != 0,
        "top": top,
        "base": cfg.exp_base,
        "base_p1": (cfg.exp_base + 1)[:9],
        "base_m1": (cfg.exp_base - 1)[:8],
        "rne_k": Cat(*((cfg.man_bits < mw - 1 - i) if i < mw - 1 else C(0, 1) for i in range(mw))),  # 2^(d-1) - 1
        "rne_cin_en": is_rne & (d != 0),
        "is_rne": is_rne,
        "is_st": (cfg.rounding == _STOCHASTIC) if p.stochastic else C(0, 1),
        "sign": cfg.sign,
        "specials": cfg.specials,
    }
    a = {name: stage(v) for name, v in a.items()}                 # A
    lim = stage(lim)
    cmax = stage((a["top"] - a["specials"])[:8])                  # B
    a = {name: stage(v) for name, v in a.items()}
    lim = stage(lim)
    cfin = stage(Mux(cmax < lim, cmax, lim))                      # C
    a = {name: stage(v) for name, v in a.items()}
    hi = stage((a["base"] + cfin)[:9])                            # D
    cfin = stage(cfin)
    a = {name: stage(v) for name, v in a.items()}
    return {**a, "cfin": cfin, "hi": hi}


#: Register stages of the pipelined cfg decoder (:class:`LaneConfig` with ``pipelined=True``).
DECODE_LATENCY = 4


def _register(m: Module, tag: str):
    """A ``reg(value)`` that returns a register loaded with ``value`` every cycle (named ``tag``_k)."""
    count = [0]

    def reg(x):
        count[0] += 1
        r = Signal(x.shape(), name=f"{tag}_{count[0]}") if isinstance(x, data.View) \
            else Signal(Value.cast(x).shape(), name=f"{tag}_{count[0]}")
        m.d.sync += r.eq(x)
        return r
    return reg


class _Decoded:
    """Attribute access to the decoded configuration, as expressions of ``cfg``."""

    def __init__(self, p: HwParams, cfg):
        self.__dict__.update(_decode_cfg(p, cfg))


class LaneConfig(wiring.Component):
    """Decodes ``cfg`` into the per-tensor constants of the lanes (combinational).

    ``cfg`` is static for a tensor, so a packer that wants none of this logic
    on its per-value path registers ``lcfg`` once per tensor and builds the
    lanes with ``predecoded=True``: they then take ``lcfg`` instead of
    ``cfg``.  One decoder serves every lane.

    Ports: ``cfg: In(config_layout())``, ``lcfg: Out(lane_cfg_layout(p))``.

    With ``pipelined=True`` the decoder is cut into :data:`DECODE_LATENCY`
    register stages with no enable (see :func:`_decode_cfg`): ``lcfg``
    describes the ``cfg`` of ``latency`` cycles earlier, so a free-running
    pipeline carries each beat's constants beside the beat (tensors back to
    back with different settings need no bubble).  Otherwise it is
    combinational (``latency = 0``).
    """

    def __init__(self, p: HwParams, pipelined: bool = False):
        self.p, self.pipelined = p, pipelined
        self.latency = DECODE_LATENCY if pipelined else 0
        super().__init__({"cfg": In(config_layout()), "lcfg": Out(lane_cfg_layout(p))})

    def elaborate(self, platform):
        m = Module()
        reg = _register(m, "dec") if self.pipelined else None
        for name, value in _decode_cfg(self.p, self.cfg, reg).items():
            m.d.comb += getattr(self.lcfg, name).eq(value)
        return m


def _cfg_port(p: HwParams, predecoded: bool) -> dict:
    return {"lcfg": In(lane_cfg_layout(p))} if predecoded else {"cfg": In(config_layout())}


class Quantizer(wiring.Component):
    """Source bit pattern -> container fields of one value (format.md 3.1-3.6).

    Equals ``sfp.model.quantize.to_fields(bits, s, strict=False)`` bit for bit for
    every runtime setting within the elaboration maxima (see
    :func:`cfg_supported`); outputs for unsupported settings are unspecified.

    Parameters
    ----------
    p : HwParams
        Source format and the maxima ``max_man_bits``, ``max_exp_bits``,
        ``stochastic`` (without it the ``rnd`` input is ignored).
    predecoded : bool
        Take the per-tensor constants from an ``lcfg`` port (see
        :class:`LaneConfig`) instead of decoding ``cfg`` in every lane.
        The per-value path is then only the data path described below;
        otherwise the ``cfg`` decoding (a few adders/comparators) is in
        series with it, which is fine only if ``cfg`` is static and the
        path is not timed.

    Ports
    -----
    value : In(src.width)
        The source bit pattern.
    cfg : In(config_layout())
        Per-tensor settings; ``exp_base`` already resolved (never auto).
        With ``predecoded=True`` this port is ``lcfg: In(lane_cfg_layout(p))``
        instead, driven by a (registered) :class:`LaneConfig`.
    rnd : In(32)
        The whitened generator output ``x`` of format.md 3.3 for this value's
        index (:class:`sfp.hw.prng.StochasticSource`); the lane uses its top
        ``d = M_w - m`` bits.  Only read when ``cfg.rounding`` is stochastic.
    fields : Out(fields_layout(p))
        ``sign``, ``code``, ``man``; the runtime-narrower ``code``/``man`` sit
        in the low bits, their upper bits are zero.  ``sign`` is 0 when the
        sign is elided.
    negative : Out(1)
        A negative value (not -0, not NaN) met with the sign elided: stored as +0.
    special : Out(1)
        Inf/NaN met with specials off: Inf saturates to ``(cfin, 2^m-1)``
        with its sign, NaN is stored as +0.

    Latency: combinational (no clock domain); with ``pipelined=True``
    (needs ``predecoded``) :func:`quantizer_latency` clocks, no enable: the
    outputs describe the inputs of that many cycles earlier, and ``lcfg``
    must describe the same value as ``value`` (it is delayed inside).

    Structure (short critical path): rounding is a single adder of
    ``M_w + 2`` bits on the mantissa, ``{M, 1} + {K, cin}``, where ``K`` is the
    rounding addend (``2^(d-1) - 1`` for rne, the random bits for stochastic,
    0 for rz) and ``cin`` the tie-to-even bit ``X[d]`` enters as carry-in.
    Its carry-out is the exponent increment ``E' = E + co``; every exponent
    decision (below/above the window, the code ``E' - exp_base``) is computed
    for both ``co = 0`` and ``co = 1`` in parallel with the adder from ``E``
    and per-tensor constants, and the carry-out only selects (carry-select).
    After the adder, the kept mantissa ``Q`` is the sum shifted right by ``d``
    (a log-depth shifter), then one output multiplexer, whose selects are
    decided with the window.  Pipelined, the registers sit after the random
    bits' alignment (0, stochastic builds only), after the addend
    and tie bit (1), after the adder and the window comparisons for both
    carries (2), after the shifter and the carry's selection of the output
    multiplexer's selects (3) and after the output multiplexer (4).
    """

    def __init__(self, p: HwParams, predecoded: bool = False, pipelined: bool = False):
        if pipelined and not predecoded:
            raise ValueError("a pipelined Quantizer takes predecoded constants (predecoded=True)")
        self.p, self.predecoded, self.pipelined = p, predecoded, pipelined
        self.latency = quantizer_latency(p) if pipelined else 0
        super().__init__({
            "value": In(p.src.width),
            **_cfg_port(p, predecoded),
            "rnd": In(32),
            "fields": Out(fields_layout(p)),
            "negative": Out(1),
            "special": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        src = p.src
        mw, w = src.man_width, src.width
        mmax, emax = p.max_man_bits, p.max_exp_bits
        reg = _register(m, "q") if self.pipelined else (lambda x: x)
        k = self.lcfg if self.predecoded else _Decoded(p, self.cfg)
        dmin = mw - mmax                                # fewest dropped bits supported

        # -- stage 0: the random bits aligned --------------------------------------
        value = self.value
        # the top d bits of rnd = rnd[32-M_w:] >> m
        rnd_d = (self.rnd[32 - mw:] >> k.mb)[:mw] if p.stochastic else C(0, mw)
        if self.pipelined and p.stochastic:
            value, rnd_d, k = reg(value), reg(rnd_d), reg(k)

        # -- stage 1: rounding addend and tie bit ------------------------------
        man = value[:mw]
        e_src = value[mw:w - 1]
        # X = E << M_w | M; the tie bit X[d] is E[0] when d = M_w (m = 0).
        cin = k.rne_cin_en & Cat(man, e_src[0]).bit_select(k.d, 1)
        addend = Mux(k.is_rne, k.rne_k, 0)
        if p.stochastic:
            addend = addend | Mux(k.is_st, rnd_d, 0)
        value, cin, addend, k = reg(value), reg(cin), reg(addend[:mw]), reg(k)

        # -- stage 2: 3.1 classification, 3.2 the adder, 3.4 the window --------
        base = k.base
        sign = value[w - 1]
        e_src = value[mw:w - 1]
        man = value[:mw]
        e_ones = e_src.all()
        e_zero = ~e_src.any()
        m_nz = man.any()
        nan = e_ones & m_nz
        inf = e_ones & ~m_nz
        normal = ~e_ones & ~e_zero
        # {M, 1} + {K, cin} = 2(M + K + cin) + 1: the carry-in rides in bit 0.
        total = Cat(C(1, 1), man) + Cat(cin, addend)
        sum_m = total[1:mw + 1]
        co = total[mw + 1]                              # mantissa carry: E' = E + co
        # both carry cases in parallel with the adder; co selects in stage 3
        below0, below1 = e_src < k.base_p1, e_src < base          # E' - exp_base < 1, co = 0 / 1
        above0, above1 = e_src > k.hi, e_src >= k.hi              # E' - exp_base > cfin
        code0, code1 = (e_src - base)[:emax], (e_src - k.base_m1)[:emax]   # E' - exp_base
        # 3.6 sign elision
        negative = sign & ~(e_zero & ~m_nz) & ~nan
        kill = ~k.sign & negative
        cls = [reg(x) for x in (nan, inf, normal, kill, sign, e_ones)]
        win = [reg(x) for x in (below0, below1, above0, above1)]
        code0, code1, co, sum_m, k = reg(code0), reg(code1), reg(co), reg(sum_m), reg(k)

        # -- stage 3: Q = R & (2^m - 1), and the output multiplexer's selects ---------
        nan, inf, normal, kill, sign, e_ones = cls
        below0, below1, above0, above1 = win
        below = Mux(co, below1, below0)
        above = Mux(co, above1, above0)
        code_w = Mux(co, code1, code0)
        q = (sum_m[dmin:] >> k.qsh)[:mmax] if mmax else C(0, 1)
        # (3.4, 3.5, 3.6); all clear is +0
        inwin = normal & ~below
        s_q = ~kill & inwin & ~above                    # (code_w, Q)
        s_sat = ~kill & ((inf & ~k.specials) | (inwin & above))   # (cfin, 2^m - 1)
        s_top = ~kill & (nan | inf) & k.specials        # code top (Inf, NaN)
        s_nanq = ~kill & nan & k.specials               # man 2^(m-1) (NaN)
        sign_o = ~kill & ~nan & k.sign & sign & ~(inf & k.specials & ~k.m_ge1)
        special = ~k.specials & e_ones
        sel = [reg(x) for x in (s_q, s_sat, s_top, s_nanq, sign_o, kill, special)]
        q, code_w, k = reg(q), reg(code_w), reg(k)

        # -- stage 4: output multiplexer (AND-OR of one-hot selects) ---------------
        s_q, s_sat, s_top, s_nanq, sign_o, kill, special = sel
        man_o = Signal(len(self.fields.man))
        code_o = Signal(emax)
        m.d.comb += [
            man_o.eq((q & s_q.replicate(len(man_o))) | (k.mmask & s_sat.replicate(len(man_o)))
                     | (k.nan_q & s_nanq.replicate(len(man_o)))),
            code_o.eq((code_w & s_q.replicate(emax)) | (k.cfin[:emax] & s_sat.replicate(emax))
                      | (k.top & s_top.replicate(emax))),
        ]
        f = self.fields
        m.d.comb += [
            f.man.eq(reg(man_o)),
            f.code.eq(reg(code_o)),
            f.sign.eq(reg(sign_o)),
            self.negative.eq(reg(kill)),
            self.special.eq(reg(special)),
        ]
        return m


def quantizer_latency(p: HwParams) -> int:
    """Register stages of a pipelined :class:`Quantizer`: 5 with stochastic rounding (its shifter), else 4."""
    return 5 if p.stochastic else 4


class Dequantizer(wiring.Component):
    """Container fields -> source bit pattern of one value (format.md 3.7).

    Equals ``sfp.model.quantize.from_fields(fields, s)`` bit for bit for every
    runtime setting within the elaboration maxima.

    Ports
    -----
    fields : In(fields_layout(p))
        ``sign``, ``code``, ``man`` in the low bits (upper bits zero).
    cfg : In(config_layout())
        Per-tensor settings (resolved ``exp_base``); ``lcfg`` with
        ``predecoded=True``, as for :class:`Quantizer`.
    value : Out(src.width)
        ``C = 0``: signed zero; ``C = top`` with specials: Inf (m >= 1 and
        Q = 0, signed) or the canonical quiet NaN; otherwise
        ``(exp_base + C) << M_w | Q << d`` with the sign on top.  The sign is
        applied only when stored.

    Latency: combinational (no clock domain).
    """

    def __init__(self, p: HwParams, predecoded: bool = False):
        self.p, self.predecoded = p, predecoded
        super().__init__({
            "fields": In(fields_layout(p)),
            **_cfg_port(p, predecoded),
            "value": Out(p.src.width),
        })

    def elaborate(self, platform):
        m = Module()
        p, f = self.p, self.fields
        src = p.src
        mw, w = src.man_width, src.width
        k = self.lcfg if self.predecoded else _Decoded(p, self.cfg)

        exp9 = (f.code + k.base)[:9]              # 9 bits: (exp9 << M_w) fills the word
        finite = Mux(f.code == 0, 0, Cat(Const(0, mw), exp9) | (f.man << k.d)[:w])
        is_top = k.specials & (f.code == k.top)
        is_inf = is_top & k.m_ge1 & ~f.man.any()
        is_nan = is_top & ~is_inf
        with m.If(is_nan):
            m.d.comb += self.value.eq(src.qnan)
        with m.Elif(is_inf):
            m.d.comb += self.value.eq((src.exp_all_ones << mw) | ((k.sign & f.sign) << (w - 1)))
        with m.Else():
            m.d.comb += self.value.eq(finite[:w] | ((k.sign & f.sign) << (w - 1)))
        return m
