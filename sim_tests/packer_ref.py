"""Golden-model helpers shared by the packer/unpacker tests (amaranth.sim and cocotb).

Everything here is plain NumPy on top of ``model``: the expected DRAM words
and block lengths of a tensor, the expected unpacker output, the records the
word packer is fed with in its stand-alone tests, the ``cfg`` port value of a
:class:`model.formats.Settings`, and stimulus tensors (real training tensors
and adversarial patterns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.container import encode_image
from model.formats import SOURCES, Settings
from model.quantize import as_bits, quantize, to_fields

__all__ = [
    "Case", "make_case", "cfg_value", "records", "payload_words", "beats_of",
    "adversarial_bits", "real_tensor_bits", "ROUNDING_CODE",
]

ROUNDING_CODE = {"rne": 0, "rz": 1, "stochastic": 2}


def cfg_value(s: Settings, length: int) -> dict:
    """The ``cfg`` port (``hw.params.config_layout``) for resolved settings ``s``."""
    assert s.exp_base != "auto"
    return {
        "man_bits": s.man_bits, "exp_bits": s.exp_bits, "exp_base": int(s.exp_base),
        "sign": int(s.sign), "specials": int(s.specials), "rounding": ROUNDING_CODE[s.rounding],
        "gecko": int(s.gecko), "seed": int(s.seed), "length": int(length),
    }


def _view(bits: np.ndarray, source: str) -> np.ndarray:
    return np.asarray(bits, dtype=SOURCES[source].dtype)


def records(bits: np.ndarray, s: Settings) -> np.ndarray:
    """Per-value records ``S<<(e+m) | C<<m | Q`` (uint64) as the model computes them."""
    f, s = to_fields(as_bits(_view(bits, s.source), s.source), s, strict=False)
    e, m = s.exp_bits, s.man_bits
    sign = f.sign.astype(np.uint64) & np.uint64(s.sign_bits)
    return (sign << np.uint64(e + m)) | (f.code.astype(np.uint64) << np.uint64(m)) | f.man.astype(np.uint64)


def payload_words(payload: bytes, word: int) -> list[int]:
    """The image as little-endian ``word``-bit integers."""
    nb = word // 8
    assert len(payload) % nb == 0
    return [int.from_bytes(payload[i:i + nb], "little") for i in range(0, len(payload), nb)]


@dataclass
class Case:
    """One tensor with its settings and everything the hardware must produce for it."""

    bits: np.ndarray          # source bit patterns (uint32, flat)
    settings: Settings        # resolved (exp_base is an int)
    words: list               # expected packer words (W-bit ints)
    lens: list                # expected block lengths in words
    out: np.ndarray           # expected unpacker values (bit patterns, uint32)
    neg: bool                 # status_negative expected
    special: bool             # status_special expected
    supported: bool = True

    @property
    def n(self) -> int:
        return int(self.bits.size)

    def cfg(self) -> dict:
        return cfg_value(self.settings, self.n)


def make_case(bits, s: Settings) -> Case:
    """Expected results of packing/unpacking the bit patterns ``bits`` with settings ``s``.

    ``exp_base="auto"`` is resolved here from the tensor (the hardware takes an integer).
    """
    bits = np.asarray(bits, np.uint32).reshape(-1)
    x = _view(bits, s.source)
    f, rs = to_fields(as_bits(x, s.source), s, strict=False)
    enc = encode_image(x, rs, strict=False)
    q = quantize(x, rs, strict=False).astype(np.uint32)
    return Case(bits, rs, payload_words(enc.payload, rs.word), [int(v) for v in enc.block_words],
                q, bool(f.neg_flag), bool(f.special_flag))


def beats_of(values: np.ndarray, lanes: int) -> list[tuple[list[int], int, int]]:
    """Split a flat array into beats: (lane values padded with 0, count of valid lanes, last)."""
    n = len(values)
    out = []
    for t in range(0, n, lanes):
        chunk = [int(v) for v in values[t:t + lanes]]
        cnt = len(chunk)
        out.append((chunk + [0] * (lanes - cnt), cnt, int(t + lanes >= n)))
    return out


def adversarial_bits(source: str, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """Awkward source patterns: specials, subnormals, zeros, window edges, rounding ties, negatives.

    Returns uint32 bit patterns of the source (shuffled, with every interesting
    exponent at every mantissa pattern that is a tie / near-tie for some
    ``man_bits``).
    """
    src = SOURCES[source]
    mw, ew = src.man_width, src.exp_width
    pats = []
    exps = list(range(0, 1 << ew))                 # every exponent incl. 0 (subnormal) and all-ones
    mans = {0, 1, src.man_mask, 1 << (mw - 1), (1 << (mw - 1)) - 1, (1 << (mw - 1)) + 1}
    for d in range(1, mw + 1):                      # ties and neighbours for every dropped-bit count d
        half = 1 << (d - 1)
        for hi in (0, 1, src.man_mask >> d):
            base = (hi << d) & src.man_mask
            mans.update({(base | half) & src.man_mask, (base | (half - 1)) & src.man_mask,
                         (base | (half + 1)) & src.man_mask})
    mans = sorted(mans)
    for e in exps:
        for mm in rng.choice(mans, size=min(len(mans), 6), replace=False):
            for sg in (0, 1):
                pats.append((sg << (src.width - 1)) | (e << mw) | int(mm))
    pats += [0, src.sign_mask, src.qnan, src.qnan | src.sign_mask, (src.exp_all_ones << mw),
             (src.exp_all_ones << mw) | src.sign_mask, (src.exp_all_ones << mw) | 1]
    arr = np.array(pats, np.uint32)
    rng.shuffle(arr)
    if n is not None:
        arr = np.resize(arr, n)
    return arr


def real_tensor_bits(source: str, keys_like: str, n: int, offset: int = 0) -> np.ndarray:
    """``n`` values of a real training tensor (first key containing ``keys_like``), as source bit patterns.

    float32 arrays are rounded to bf16 (round to nearest even, ml_dtypes) for bf16.
    """
    from train.tensors import ensure_tensors

    with np.load(ensure_tensors()) as z:
        key = next(k for k in sorted(z.files) if keys_like in k)
        a = np.asarray(z[key], np.float32).reshape(-1)
    a = np.resize(a[offset:], n) if a.size - offset < n else a[offset:offset + n]
    if source == "bf16":
        import ml_dtypes

        return a.astype(ml_dtypes.bfloat16).view(np.uint16).astype(np.uint32)
    return a.view(np.uint32).astype(np.uint32)
