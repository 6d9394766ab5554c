"""Elaboration parameters and the port layouts shared by the packer and unpacker.

Two kinds of knobs (docs/hardware.md):

* :class:`HwParams`, fixed at elaboration: source format, lanes N, word W,
  block B, the widest mantissa/exponent the hardware supports, whether
  stochastic rounding and Gecko are built.  They trade area for flexibility.
* :func:`config_layout`, the per-tensor settings (docs/format.md section 2)
  on the ``cfg`` port, latched when a tensor's first beat is accepted, so a
  training policy changes containers between tensors without re-synthesis.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

from amaranth.lib import data

from sfp.model.formats import ROUNDINGS, SOURCES, WORD_SIZES

__all__ = ["HwParams", "ParamError", "params_from_dict", "cfg_fields", "config_layout", "fields_layout", "ROUNDING_CODES"]

ROUNDING_CODES = {name: i for i, name in enumerate(ROUNDINGS)}   # rne 0, rz 1, stochastic 2
LANES = (1, 2, 4, 8, 16)


class ParamError(ValueError):
    """Elaboration parameters the generator cannot build."""


@dataclass(frozen=True)
class HwParams:
    source: str = "bf16"
    lanes: int = 8
    word: int = 128
    block: int = 256
    max_man_bits: int | None = None     # default: the source's full mantissa
    max_exp_bits: int = 8
    stochastic: bool = True
    gecko: bool = False
    group: int = 32

    def __post_init__(self):
        if self.source not in ("bf16", "fp32"):
            raise ParamError(f"source must be bf16 or fp32, got {self.source!r}")
        if self.max_man_bits is None:
            object.__setattr__(self, "max_man_bits", self.src.man_width)
        if self.lanes not in LANES:
            raise ParamError(f"lanes must be one of {LANES}, got {self.lanes}")
        if self.word not in WORD_SIZES:
            raise ParamError(f"word must be one of {WORD_SIZES}, got {self.word}")
        if not 0 <= self.max_man_bits <= self.src.man_width:
            raise ParamError(f"max_man_bits must be 0..{self.src.man_width}, got {self.max_man_bits}")
        if not 2 <= self.max_exp_bits <= 8:
            raise ParamError(f"max_exp_bits must be 2..8, got {self.max_exp_bits}")
        if self.block & (self.block - 1) or not self.lanes <= self.block <= 1 << 16:
            raise ParamError(f"block must be a power of two from lanes ({self.lanes}) to 65536, got {self.block}")
        if self.lanes * self.max_value_bits > self.word:
            raise ParamError(
                f"{self.lanes} lanes x {self.max_value_bits}-bit values = {self.lanes * self.max_value_bits} bits "
                f"per beat exceed the {self.word}-bit word: the packer could not keep up one beat per clock "
                f"(use fewer lanes, a wider word, or smaller maxima)")

    @property
    def src(self):
        return SOURCES[self.source]

    @property
    def max_value_bits(self) -> int:
        return 1 + self.max_exp_bits + self.max_man_bits

    def as_dict(self) -> dict:
        return asdict(self)


def config_layout() -> data.StructLayout:
    """Per-tensor settings on the ``cfg`` port (same layout for every configuration).

    ``length`` (values in the tensor) is read by the unpacker only: the packer
    learns the end of a tensor from ``last``.
    """
    return data.StructLayout({
        "man_bits": 5,      # m, 0..23
        "exp_bits": 4,      # e, 2..8
        "exp_base": 8,      # resolved exp_base
        "sign": 1,          # 1 = sign stored
        "specials": 1,      # 1 = top code is Inf/NaN
        "rounding": 2,      # ROUNDING_CODES
        "gecko": 1,
        "seed": 32,
        "length": 32,
    })


def fields_layout(p: HwParams) -> data.StructLayout:
    """One value's container fields at the hardware's maximum widths (format.md 3)."""
    return data.StructLayout({"man": max(p.max_man_bits, 1), "code": p.max_exp_bits, "sign": 1})


def params_from_dict(d: dict) -> HwParams:
    """HwParams from a JSON object of its fields; ValueError naming the bad field."""
    if not isinstance(d, dict):
        raise ValueError("the configuration must be a JSON object of HwParams fields")
    fields = {f.name: f for f in dataclasses.fields(HwParams)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (fields: {', '.join(fields)})")
    kinds = {"source": str, "lanes": int, "word": int, "block": int, "max_man_bits": (int, type(None)),
             "max_exp_bits": int, "stochastic": bool, "gecko": bool, "group": int}
    for k, v in d.items():
        want = kinds.get(k)
        if want is not None and (not isinstance(v, want) or (want is int and isinstance(v, bool))):
            raise ValueError(f"field {k!r}: {v!r} has the wrong type")
    return HwParams(**d)


def cfg_fields(s, length: int) -> dict:
    """The ``cfg`` port's field values for resolved :class:`sfp.model.formats.Settings` ``s``."""
    if s.exp_base == "auto":
        raise ValueError("resolve exp_base (model.quantize.resolve) before configuring the hardware")
    return {
        "man_bits": s.man_bits, "exp_bits": s.exp_bits, "exp_base": int(s.exp_base),
        "sign": int(s.sign), "specials": int(s.specials), "rounding": ROUNDING_CODES[s.rounding],
        "gecko": int(s.gecko), "seed": int(s.seed), "length": int(length),
    }
