"""Golden-model helpers shared by the packer/unpacker tests (amaranth.sim and cocotb).

Everything here is plain NumPy on top of ``model``: the expected DRAM words
and block lengths of a tensor, the expected unpacker output, the records the
word packer is fed with in its stand-alone tests, the ``cfg`` port value of a
:class:`sfp.model.formats.Settings`, and stimulus tensors (real training tensors
and adversarial patterns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sfp.model.container import encode_image
from sfp.model.formats import SOURCES, Settings
from sfp.model.quantize import as_bits, quantize, to_fields

__all__ = [
    "Case", "make_case", "cfg_value", "records", "payload_words", "beats_of",
    "adversarial_bits", "gecko_adversarial_bits", "real_tensor_bits", "ROUNDING_CODE",
]

ROUNDING_CODE = {"rne": 0, "rz": 1, "stochastic": 2}


def cfg_value(s: Settings, length: int) -> dict:
    """The ``cfg`` port (``sfp.hw.params.config_layout``) for resolved settings ``s``."""
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


GECKO_KINDS = ("equal", "zero_group", "alternating", "scattered_zeros", "outlier", "geo_k0", "geo_k1", "geo_k2",
               "uniform", "escapes", "escape_slice")


def gecko_adversarial_bits(rng: np.random.Generator, n: int, s: Settings, kinds=GECKO_KINDS) -> np.ndarray:
    """Source bit patterns whose exponent codes (under ``s``, an int ``exp_base``) stress Gecko group by group.

    Each group of ``s.group`` values gets one pattern: all codes equal,
    all zero (b = 0), alternating extremes, zeros scattered among large
    codes (z flag), one outlier per group, geometric below the maximum (Rice
    k = 0, 1, 2), uniform (raw mode; blocks of it fall back to plain),
    escapes far below the maximum, a whole slice of escapes.  Codes above
    the window's finite range become Inf (specials kept) or the largest
    finite exponent; code 0 is a zero or a subnormal.  Mantissas are exact
    in ``m`` bits (no rounding carry), signs random when stored.
    """
    assert s.exp_base != "auto"
    src = s.src
    e, m, G = s.exp_bits, s.man_bits, s.group
    top = (1 << e) - 1
    cmax = top - 1 if s.specials else top
    cfin = min(cmax, src.max_finite_exp - int(s.exp_base))
    codes = np.zeros(n, np.int64)
    for g0 in range(0, n, G):
        g = min(G, n - g0)
        kind = kinds[int(rng.integers(0, len(kinds)))]
        hi = int(rng.integers(1, top + 1))
        if kind == "equal":
            c = np.full(g, hi)
        elif kind == "zero_group":
            c = np.zeros(g, np.int64)
        elif kind == "alternating":
            c = np.where(np.arange(g) % 2 == 0, 0 if rng.random() < 0.5 else 1, top)
        elif kind == "scattered_zeros":
            c = np.where(rng.random(g) < 0.3, 0, top - rng.integers(0, 2, g))
        elif kind == "outlier":
            c = cfin - rng.integers(0, 2, g)
            c[rng.integers(0, g)] = int(rng.integers(0, top + 1))
        elif kind.startswith("geo_k"):
            k = int(kind[-1])
            hi = cfin - int(rng.integers(0, 2))
            c = hi - np.minimum(rng.geometric(1 / (1.5 * (1 << k)), g) - 1, hi)
            c = np.where(rng.random(g) < 0.1, 0, c)
        elif kind == "uniform":
            c = rng.integers(0, top + 1, g)
        elif kind == "escapes":
            c = np.where(rng.random(g) < 0.5, cfin, rng.integers(1, max(2, cfin - 20), g))
        else:                                   # escape_slice
            c = np.full(g, cfin)
            s0 = 8 * int(rng.integers(0, -(-g // 8)))
            c[s0:s0 + 8] = rng.integers(1, max(2, cfin - 16), min(8, g - s0)) if cfin > 17 else 0
        codes[g0:g0 + g] = np.clip(c, 0, top)
    sign = rng.integers(0, 2, n).astype(np.uint64) if s.sign else np.zeros(n, np.uint64)
    man = (rng.integers(0, 1 << m, n) if m else np.zeros(n, np.int64)).astype(np.uint64) << np.uint64(src.man_width - m)
    exp = np.where(codes == 0, 0, np.minimum(codes + int(s.exp_base), src.max_finite_exp))
    if s.specials:
        exp = np.where(codes > cfin, src.exp_all_ones, exp)
        man = np.where(codes > cfin, np.uint64(0), man)            # Inf, not NaN
    sub = (codes == 0) & (rng.random(n) < 0.3)                     # some subnormals among the zeros
    man = np.where(codes == 0, np.where(sub, np.uint64(1), np.uint64(0)), man)
    bits = (sign << np.uint64(src.width - 1)) | (exp.astype(np.uint64) << np.uint64(src.man_width)) | man
    return bits.astype(np.uint32)


def real_tensor_bits(source: str, keys_like: str, n: int, offset: int = 0) -> np.ndarray:
    """``n`` values of a real training tensor (first key containing ``keys_like``), as source bit patterns.

    float32 arrays are rounded to bf16 (round to nearest even, ml_dtypes) for bf16.
    """
    from sfp.train.tensors import ensure_tensors

    with np.load(ensure_tensors()) as z:
        key = next(k for k in sorted(z.files) if keys_like in k)
        a = np.asarray(z[key], np.float32).reshape(-1)
    a = np.resize(a[offset:], n) if a.size - offset < n else a[offset:offset + n]
    if source == "bf16":
        import ml_dtypes

        return a.astype(ml_dtypes.bfloat16).view(np.uint16).astype(np.uint32)
    return a.view(np.uint32).astype(np.uint32)
