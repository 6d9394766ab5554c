"""Bit-exact PyTorch container quantizer and Quantum Mantissa / Quantum Exponent.

Part 1 -- :func:`quantize_bits` / :func:`quantize_torch`: ``docs/format.md``
sections 2-3 for a ``bf16`` source in torch integer arithmetic, one line per
rule, so that a training forward pass at an integer container is bit for bit
what :func:`sfp.model.quantize.quantize` (and the hardware) returns.  fp32
tensors are first cast to bf16 with round-to-nearest-even (``Tensor.to``),
the cast an accelerator makes on its way to memory.  Sign-elided negatives
and specials-off Inf/NaN follow the *hardware* behaviour (``strict=False`` in
the model): they are stored as +0 / saturated, not refused.

Part 2 -- :class:`QuantPoint`: one stored tensor (a weight or an activation)
of a network.  It keeps the tensor's running maximum exponent (the
hardware's ``exp_base`` comes from it, not from a scan of the tensor),
asks its policy for the container of the current step, quantizes, records
the choice for the schedule and can capture the stored bf16 patterns for
footprint accounting.

Part 3 -- :class:`QMQE`: the learned policy.  Each point owns two real
bitlengths ``n_m`` in [0, 7] and ``n_e`` in [2, 8].  A step *collapses* each
to an integer: ``floor(n)`` or ``floor(n)+1``, the upper one with probability
``frac(n)`` (a seeded generator), so the forward pass always runs at an
integer container that the hardware can store, and the expected value of the
forward is the interpolation between the two neighbours.  The value's
gradient is the straight-through estimator (identity).  The bitlength's
gradient is the first-order change of the loss between the two neighbours::

    dL/dn_m = < dL/dq , Q(x; floor(n_m)+1, e) - Q(x; floor(n_m), e) >

(likewise for ``n_e`` with the mantissa held at the collapsed value), plus the
footprint penalty ``strength * size_t / N`` per bit, where ``size_t`` is the
tensor's number of values and ``N`` the number of values stored per step
over all points: the penalty is ``strength`` times the network's mean
bits per stored value, a term of the loss (:meth:`QMQE.penalty`).  The
bitlengths are a parameter group of the training loop's optimizer
(:meth:`QMQE.param_groups`).  From ``freeze_step`` on (and for evaluation)
every bitlength is frozen at ``ceil(n - 0.01)``: training finishes, and
accuracy is measured, at the exact integer containers that the schedule records.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = [
    "BF16_MAN", "M_RANGE", "E_RANGE", "to_bf16_bits", "bits_to_float", "quantize_bits",
    "quantize_torch", "quantize_lut", "auto_exp_base", "max_exponent", "QuantPoint", "FixedPolicy", "QMQE",
]

BF16_MAN = 7          # M_w of bf16
E_FMAX = 254          # largest finite biased exponent of bf16
QNAN = 0x7FC0
M_RANGE = (0, 7)
E_RANGE = (2, 8)


# ----------------------------------------------------------------------------
# Part 1: the quantizer
# ----------------------------------------------------------------------------

def to_bf16_bits(x: torch.Tensor) -> torch.Tensor:
    """int32 tensor of bf16 bit patterns (0..0xFFFF); fp32 inputs are rounded to nearest even."""
    if x.dtype != torch.bfloat16:
        x = x.to(torch.bfloat16)
    return x.view(torch.int16).to(torch.int32) & 0xFFFF


def bits_to_float(bits: torch.Tensor) -> torch.Tensor:
    """bf16 bit patterns (int32) to the float32 tensor of the same values (exact)."""
    return (bits.to(torch.int32) << 16).view(torch.float32)


def cmax_of(e: int, specials: bool = True) -> int:
    top = (1 << e) - 1
    return top - 1 if specials else top


def max_exponent(bits: torch.Tensor) -> int:
    """Largest biased exponent among the normal values of a bf16 pattern tensor (0 if none)."""
    exp = (bits >> 7) & 0xFF
    exp = torch.where(exp == 0xFF, torch.zeros_like(exp), exp)
    return int(exp.max()) if exp.numel() else 0


def _auto_from(Ep, normal, s, sign, cmax) -> int:
    ok = normal if sign else normal & (s == 0)
    emax = min(int(Ep[ok].max()), E_FMAX) if bool(ok.any()) else 0
    return max(0, emax - cmax)


def auto_exp_base(bits: torch.Tensor, m: int, e: int, sign: bool = True, specials: bool = True) -> int:
    """format.md 2 ``exp_base auto`` for rne: from the tensor's largest *rounded* exponent (a pass over it)."""
    drop = BF16_MAN - m
    mag = bits & 0x7FFF
    E = mag >> 7
    normal = (E != 0) & (E != 0xFF)
    r = mag if drop == 0 else (mag + ((1 << (drop - 1)) - 1) + ((mag >> drop) & 1)) >> drop
    return _auto_from(r >> m, normal, (bits >> 15) & 1, sign, cmax_of(e, specials))


def quantize_bits(bits: torch.Tensor, m: int, e: int, exp_base, sign: bool = True,
                  specials: bool = True, rounding: str = "rne") -> torch.Tensor:
    """``docs/format.md`` 3.1-3.7 on bf16 patterns: the patterns the hardware returns.

    ``exp_base`` is an int, or ``"auto"`` (format.md 2: from the tensor's largest
    rounded exponent).  ``rounding`` is ``rne`` or ``rz``.
    """
    if not (0 <= m <= BF16_MAN and 2 <= e <= 8):
        raise ValueError(f"bad container m={m} e={e}")
    drop = BF16_MAN - m
    s = (bits >> 15) & 1
    mag = bits & 0x7FFF
    E = mag >> 7
    special = E == 0xFF
    nan = special & ((mag & 0x7F) != 0)
    inf = special & ~nan
    normal = (E != 0) & ~special
    if drop == 0:
        r = mag
    elif rounding == "rne":
        r = (mag + ((1 << (drop - 1)) - 1) + ((mag >> drop) & 1)) >> drop
    elif rounding == "rz":
        r = mag >> drop
    else:
        raise ValueError(f"rounding {rounding!r} not supported here (rne, rz)")
    Ep = r >> m
    Q = r & ((1 << m) - 1)
    top = (1 << e) - 1
    cmax = cmax_of(e, specials)
    if exp_base == "auto":
        exp_base = _auto_from(Ep, normal, s, sign, cmax)
    cfin = min(cmax, E_FMAX - exp_base)
    c = Ep - exp_base
    keep = normal & (c >= 1)
    above = normal & (c > cfin)
    zero = torch.zeros_like(bits)
    code = torch.where(keep, torch.clamp(c, max=cfin), zero)
    man = torch.where(keep, Q, zero)
    man = torch.where(above, torch.full_like(man, (1 << m) - 1), man)
    sg = s
    if specials:
        code = torch.where(nan | inf, torch.full_like(code, top), code)
        if m >= 1:
            man = torch.where(nan, torch.full_like(man, 1 << (m - 1)), man)
            sg = torch.where(nan, zero, sg)
        else:
            sg = torch.where(nan | inf, zero, sg)
    else:
        code = torch.where(inf, torch.full_like(code, cfin), code)
        man = torch.where(inf, torch.full_like(man, (1 << m) - 1), man)
        sg = torch.where(nan, zero, sg)
    if not sign:
        neg = (s == 1) & (mag != 0) & ~nan
        code = torch.where(neg, zero, code)
        man = torch.where(neg, zero, man)
        sg = zero
    # decode (3.7)
    out = torch.where(code == 0, zero, ((code + exp_base) << 7) | (man << drop))
    if specials:
        is_top = code == top
        if m >= 1:
            out = torch.where(is_top, torch.where(man == 0, torch.full_like(out, 0xFF << 7),
                                                  torch.full_like(out, QNAN)), out)
            is_nan = is_top & (man != 0)
        else:
            out = torch.where(is_top, torch.full_like(out, QNAN), out)
            is_nan = is_top
    else:
        is_nan = torch.zeros_like(out, dtype=torch.bool)
    if sign:
        out = out | torch.where(is_nan, zero, sg << 15)
    return out


_ALL = None
_LUTS: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
LUT_CACHE = 256       # tables of 65,536 patterns kept (256 KiB each)


def quantize_lut(bits: torch.Tensor, m: int, e: int, exp_base: int, sign: bool = True) -> torch.Tensor:
    """:func:`quantize_bits` (rne, specials kept, integer ``exp_base``) by table look-up.

    A bf16 source has 65,536 patterns: the table is :func:`quantize_bits` of all of
    them (so the result is the same function, bit for bit), computed once per
    container and cached; storing a tensor is then one gather.
    """
    global _ALL
    key = (m, e, int(exp_base), bool(sign))
    t = _LUTS.get(key)
    if t is None:
        if _ALL is None:
            _ALL = torch.arange(1 << 16, dtype=torch.int32)
        t = quantize_bits(_ALL, m, e, int(exp_base), sign)
        _LUTS[key] = t
        if len(_LUTS) > LUT_CACHE:
            _LUTS.popitem(last=False)
    else:
        _LUTS.move_to_end(key)
    return t[bits.long()]


def quantize_torch(x: torch.Tensor, m: int, e: int, exp_base, sign: bool = True, **kw) -> torch.Tensor:
    """``x`` (fp32 or bf16) through a bf16-sourced container, returned as float32."""
    return bits_to_float(quantize_bits(to_bf16_bits(x.detach()), m, e, exp_base, sign, **kw)).reshape(x.shape)


class _STE(torch.autograd.Function):
    """Forward: the quantized tensor; backward: identity to x, and the bitlength gradients."""

    @staticmethod
    def forward(ctx, x, nm, ne, q, dqm, dqe):
        ctx.save_for_backward(dqm, dqe)
        ctx.has_n = (dqm is not None, dqe is not None)
        return q.clone()

    @staticmethod
    def backward(ctx, g):
        dqm, dqe = ctx.saved_tensors
        gm = (g * dqm).sum().reshape(1) if ctx.needs_input_grad[1] else None
        ge = (g * dqe).sum().reshape(1) if ctx.needs_input_grad[2] else None
        return g, gm, ge, None, None, None


# ----------------------------------------------------------------------------
# Part 2: a stored tensor
# ----------------------------------------------------------------------------

@dataclass
class QuantPoint:
    """One stored tensor: ``kind`` is ``weight``, ``act``, ``embed``, ``norm``, ``attn`` or ``grad``;
    ``nonneg``: known >= 0 (sign elided)."""

    name: str
    kind: str
    nonneg: bool = False
    size: int = 0                 # values stored per step (activations: at the nominal batch size)
    window: int = 4               # running max over the maxima of the last `window` steps
    history: list = field(default_factory=list)   # recent max exponents
    nm: torch.Tensor | None = None
    ne: torch.Tensor | None = None
    capture: dict | None = None   # set to {} to capture the next training forward
    hw_stats: dict | None = None  # window "hw": what the packer's statistics reported at the last store

    def running_max(self, bits: torch.Tensor) -> int:
        if not self.history:             # calibration: the first step sees its own tensor
            return max_exponent(bits)
        return max(self.history)

    def observe(self, bits: torch.Tensor) -> None:
        self.history.append(max_exponent(bits))
        del self.history[:-self.window]


def exp_base_for(R: int, e: int, specials: bool = True) -> int:
    """The window follows the tensor: its running max exponent at the top of the e-bit window."""
    return max(0, min(R - cmax_of(e, specials), E_FMAX - 1))


WINDOWS = ("running", "auto", "hw")


class FixedPolicy:
    """fp32 (no quantization), bf16 (m=7, e=8) or any fixed (m, e); base class of the policies.

    ``container(point, training)`` returns the integer ``(m, e)`` of the step, or
    None for no quantization (fp32).  ``recorder`` (a schedule) is told every
    choice made in training.

    ``window`` places each tensor's exponent window (``exp_base``):

    * ``running`` (default): at the top of the tensor's running maximum
      exponent over its last ``QuantPoint.window`` stores (software keeps the
      maxima; step 1 calibrates on the tensor itself);
    * ``auto``: format.md's ``exp_base auto``, from the tensor's own largest
      rounded exponent at this very store (a software pass over the tensor
      before it is written);
    * ``hw``: from the largest exponent the packer's statistics
      (``sfp.hw.expstats``, modelled bit-exactly by :func:`sfp.model.expstats.expstats`)
      reported for this tensor at its previous store; no pass over the tensor.
      Before the first report the window sits at the top of the range
      (largest finite exponent 254).
    """

    name = "fixed"

    def __init__(self, m: int | None = 7, e: int = 8, elide_sign: bool = False, window: str = "running"):
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")
        self.m, self.e = m, e
        self.elide_sign = elide_sign
        self.window = window
        self.points: dict[str, QuantPoint] = {}
        self.step = 0
        self.recorder = None

    def register(self, point: QuantPoint) -> None:
        self.points[point.name] = point

    def container(self, p: QuantPoint, training: bool):
        return None if self.m is None else (self.m, self.e)

    def sign_of(self, p: QuantPoint) -> bool:
        return not (self.elide_sign and p.nonneg)

    def _base_fn(self, p: QuantPoint, bits: torch.Tensor, sign: bool):
        """exp_base as a function of the container (m, e), fixed before this store is observed."""
        if self.window == "auto":
            return lambda m, e: auto_exp_base(bits, m, e, sign)
        if self.window == "hw":
            R = p.hw_stats["emax"] if p.hw_stats else E_FMAX
        else:
            R = p.running_max(bits)
        return lambda m, e: exp_base_for(R, e)

    def __call__(self, p: QuantPoint, x: torch.Tensor, training: bool) -> torch.Tensor:
        choice = self.container(p, training)
        if choice is None:
            if training and self.recorder is not None:
                self.recorder.record(p, self.step, None)
            if training and p.capture is not None:
                p.capture.update(x=x.detach().cpu().numpy().astype(np.float32), settings=None)
            return x
        m, e = choice
        bits = to_bf16_bits(x.detach())
        sign = self.sign_of(p)
        basef = self._base_fn(p, bits, sign)
        base = basef(m, e)
        qb = quantize_lut(bits, m, e, base, sign)
        q = bits_to_float(qb).reshape(x.shape)
        if training:
            settings = dict(m=m, e=e, exp_base=base, sign=sign)
            p.observe(bits)
            if self.window == "hw":
                from sfp.model.expstats import expstats
                from sfp.model.formats import Settings
                p.hw_stats = expstats(bits.numpy().astype(np.uint16).reshape(-1),
                                      Settings(source="bf16", man_bits=m, exp_bits=e, exp_base=base, sign=sign))
            if self.recorder is not None:
                self.recorder.record(p, self.step, settings)
            if p.capture is not None:
                p.capture.update(bits=bits.to(torch.int32).numpy().astype(np.uint16).reshape(-1), settings=settings)
        dqm, dqe = self.bit_grads(p, bits, m, e, basef, sign, training, x.shape)
        if not torch.is_grad_enabled() or (not x.requires_grad and dqm is None):
            return q
        return _STE.apply(x, p.nm if dqm is not None else None, p.ne if dqe is not None else None, q, dqm, dqe)

    def bit_grads(self, p, bits, m, e, basef, sign, training, shape):
        return None, None

    def end_step(self, step: int, loss) -> None:
        """Called by ``Attached.step`` after the optimizer stepped (``step`` = steps done)."""


# ----------------------------------------------------------------------------
# Part 3: Quantum Mantissa + Quantum Exponent
# ----------------------------------------------------------------------------

class QMQE(FixedPolicy):
    """Learned per-tensor mantissa and exponent bitlengths (see the module docstring).

    Knobs: ``strength`` (the footprint penalty, loss units per mean stored bit),
    ``lr`` (learning rate of the bitlengths' optimizer parameter group),
    ``init_m``/``init_e`` (start), ``freeze_step`` (the first step trained at
    the frozen integer containers; None: never frozen in training),
    ``seed`` (collapse draws), ``window`` (see :class:`FixedPolicy`).

    Training-loop interface (``sfp.train.attach``): the bitlengths are
    parameters of the user's optimizer (:meth:`param_groups`), the footprint
    term is added to the loss (:meth:`penalty`), and :meth:`end_step` clamps
    them to their ranges and freezes them.
    """

    name = "qmqe"

    def __init__(self, strength: float = 0.01, lr: float = 0.05, init_m: float = 7.0, init_e: float = 8.0,
                 freeze_step: int | None = None, seed: int = 0, elide_sign: bool = True,
                 quantum_exponent: bool = True, window: str = "running"):
        super().__init__(7, 8, elide_sign, window)
        self.strength, self.lr = strength, lr
        self.init_m, self.init_e = init_m, init_e
        self.freeze_step = freeze_step
        self.quantum_exponent = quantum_exponent
        self.gen = torch.Generator().manual_seed(seed)
        self._draw: dict[str, tuple] = {}

    def register(self, point: QuantPoint) -> None:
        super().register(point)
        point.nm = torch.tensor([self.init_m], requires_grad=True)
        point.ne = torch.tensor([self.init_e], requires_grad=self.quantum_exponent)

    def params(self):
        ps = [p.nm for p in self.points.values()]
        if self.quantum_exponent:
            ps += [p.ne for p in self.points.values()]
        return ps

    def param_groups(self) -> list[dict]:
        return [{"params": self.params(), "lr": self.lr, "weight_decay": 0.0}]

    def penalty(self) -> torch.Tensor:
        """``strength`` x the mean stored bits per value over the points (sizes as weights)."""
        if self.frozen or not self.points:
            return torch.zeros(())
        total = sum(p.size for p in self.points.values())
        bits = sum(p.size * (p.nm + p.ne + int(self.sign_of(p))) for p in self.points.values()) / total
        return self.strength * bits.reshape(())

    @property
    def frozen(self) -> bool:
        return self.freeze_step is not None and self.step >= self.freeze_step

    @staticmethod
    def final(n: torch.Tensor) -> int:
        return int(math.ceil(float(n.detach()) - 0.01))

    @staticmethod
    def _split(n: float, lo: int, hi: int) -> tuple[int, float]:
        n0 = min(int(math.floor(n)), hi - 1)
        n0 = max(n0, lo)
        return n0, n - n0

    def container(self, p, training):
        if not training or self.frozen:
            return self.final(p.nm), self.final(p.ne)
        key = (p.name, self.step)
        if key not in self._draw:
            m0, fm = self._split(float(p.nm.detach()), *M_RANGE)
            e0, fe = self._split(float(p.ne.detach()), *E_RANGE)
            u = torch.rand(2, generator=self.gen)
            m = m0 + int(float(u[0]) < fm)
            e = e0 + int(float(u[1]) < fe)
            self._draw = {k: v for k, v in self._draw.items() if k[1] == self.step}
            self._draw[key] = (m, e, m0, e0)
        return self._draw[key][:2]

    def bit_grads(self, p, bits, m, e, basef, sign, training, shape):
        if not training or self.frozen:
            return None, None
        _, _, m0, e0 = self._draw[(p.name, self.step)]
        # the neighbours' exp_base is placed by the same rule as the chosen container's
        q = lambda mm, ee: bits_to_float(quantize_lut(bits, mm, ee, basef(mm, ee), sign)).reshape(shape)
        dqm = q(m0 + 1, e) - q(m0, e)
        dqe = q(m, e0 + 1) - q(m, e0) if self.quantum_exponent else None
        return dqm, dqe

    def end_step(self, step: int, loss) -> None:
        with torch.no_grad():
            for p in self.points.values():
                p.nm.clamp_(*M_RANGE)
                p.ne.clamp_(*E_RANGE)
                if self.freeze_step is not None and step + 1 == self.freeze_step:
                    p.nm.fill_(self.final(p.nm))
                    p.ne.fill_(self.final(p.ne))
