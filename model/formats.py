"""Source formats and per-tensor container settings.

A *source format* is the IEEE-style binary floating-point format a tensor
lives in on chip (bfloat16, float32, float16).  A *container* is the
narrower format the tensor is stored in off chip; its shape is fixed by a
:class:`Settings`.  Everything here is plain data: the bit-level semantics
are in :mod:`sfp.model.quantize` and :mod:`sfp.model.bitstream`, and the normative
text is ``docs/format.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Union

import numpy as np

__all__ = [
    "SourceFormat", "SOURCES", "BF16", "FP32", "FP16",
    "Settings", "ROUNDINGS", "WORD_SIZES", "FormatError",
]


class FormatError(ValueError):
    """A setting, input or file that the container format cannot represent."""


@dataclass(frozen=True)
class SourceFormat:
    name: str
    code: int            # as stored in the .sfpc header
    exp_width: int       # E_w
    man_width: int       # M_w
    dtype: type          # unsigned integer type that holds the bit pattern

    @property
    def width(self) -> int:
        return 1 + self.exp_width + self.man_width

    @property
    def exp_all_ones(self) -> int:
        return (1 << self.exp_width) - 1

    @property
    def max_finite_exp(self) -> int:
        """Largest biased exponent of a finite value."""
        return self.exp_all_ones - 1

    @property
    def sign_mask(self) -> int:
        return 1 << (self.width - 1)

    @property
    def man_mask(self) -> int:
        return (1 << self.man_width) - 1

    @property
    def qnan(self) -> int:
        """The canonical quiet NaN: positive, exponent all ones, mantissa MSB set."""
        return (self.exp_all_ones << self.man_width) | (1 << (self.man_width - 1))


BF16 = SourceFormat("bf16", 0, 8, 7, np.uint16)
FP32 = SourceFormat("fp32", 1, 8, 23, np.uint32)
FP16 = SourceFormat("fp16", 2, 5, 10, np.uint16)
SOURCES = {f.name: f for f in (BF16, FP32, FP16)}
SOURCES_BY_CODE = {f.code: f for f in (BF16, FP32, FP16)}

ROUNDINGS = ("rne", "rz", "stochastic")
WORD_SIZES = (64, 128, 256, 512)

Base = Union[int, str]


@dataclass(frozen=True)
class Settings:
    """Per-tensor container settings (see ``docs/format.md`` section 2).

    ``man_bits`` and ``exp_bits`` default to the source's full widths
    (capped at 8 exponent bits), which with ``exp_base=0`` is lossless for
    every finite normal input.  ``exp_base`` may be ``"auto"`` until the
    tensor is seen; :func:`sfp.model.quantize.resolve` replaces it with an int.
    """

    source: str = "bf16"
    man_bits: int | None = None
    exp_bits: int | None = None
    exp_base: Base = "auto"
    sign: bool = True
    rounding: str = "rne"
    seed: int = 0
    specials: bool = True
    gecko: bool = False
    group: int = 32
    block: int = 256
    word: int = 128

    def __post_init__(self):
        src = SOURCES.get(self.source)
        if src is None:
            raise FormatError(f"unknown source format {self.source!r} (expected one of {', '.join(SOURCES)})")
        if self.man_bits is None:
            object.__setattr__(self, "man_bits", src.man_width)
        if self.exp_bits is None:
            object.__setattr__(self, "exp_bits", min(8, src.exp_width))
        self.validate()

    # -- derived -------------------------------------------------------------
    @property
    def src(self) -> SourceFormat:
        return SOURCES[self.source]

    @property
    def sign_bits(self) -> int:
        return 1 if self.sign else 0

    @property
    def value_bits(self) -> int:
        """Bits of one value outside Gecko: sign + exponent code + mantissa."""
        return self.sign_bits + self.exp_bits + self.man_bits

    @property
    def top_code(self) -> int:
        return (1 << self.exp_bits) - 1

    @property
    def max_code(self) -> int:
        """Largest finite exponent code, before clipping to the source range."""
        return self.top_code - 1 if self.specials else self.top_code

    def max_finite_code(self, base: int | None = None) -> int:
        """Largest finite code whose source exponent is still a finite one."""
        base = self.exp_base if base is None else base
        return min(self.max_code, self.src.max_finite_exp - base)

    def with_(self, **kw) -> "Settings":
        return replace(self, **kw)

    # -- checks --------------------------------------------------------------
    def validate(self) -> None:
        src = self.src
        if not isinstance(self.man_bits, (int, np.integer)) or not 0 <= self.man_bits <= src.man_width:
            raise FormatError(f"man_bits must be 0..{src.man_width} for {src.name}, got {self.man_bits}")
        emax = min(8, src.exp_width)
        if not isinstance(self.exp_bits, (int, np.integer)) or not 2 <= self.exp_bits <= emax:
            raise FormatError(f"exp_bits must be 2..{emax} for {src.name}, got {self.exp_bits}")
        if self.exp_base != "auto":
            if not isinstance(self.exp_base, (int, np.integer)) or not 0 <= self.exp_base <= src.max_finite_exp - 1:
                raise FormatError(f"exp_base must be 0..{src.max_finite_exp - 1} or 'auto' for {src.name}, got {self.exp_base!r}")
        if self.rounding not in ROUNDINGS:
            raise FormatError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {self.rounding!r}")
        if not 0 <= int(self.seed) < 1 << 32:
            raise FormatError(f"seed must be a 32-bit unsigned integer, got {self.seed}")
        if self.word not in WORD_SIZES:
            raise FormatError(f"word must be one of {', '.join(map(str, WORD_SIZES))} bits, got {self.word}")
        if not (self.block >= 1 and self.block & (self.block - 1) == 0 and self.block <= 1 << 16):
            raise FormatError(f"block must be a power of two from 1 to 65536 values, got {self.block}")
        if not (self.group >= 4 and self.group & (self.group - 1) == 0 and self.group <= 256):
            raise FormatError(f"group must be a power of two from 4 to 256 values, got {self.group}")
        if self.gecko and self.block % self.group:
            raise FormatError(f"block ({self.block}) must be a multiple of the Gecko group ({self.group})")
