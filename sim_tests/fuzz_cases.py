"""Bad memory contents for the unpacker: corrupted real packed tensors and what the model says of them.

The fuzz campaign (``sim_tests/test_fuzz.py``, issue #10 item 4) streams
*pairs* through the RTL unpacker: a corrupted tensor, then a clean one.
This module makes them.  Each corrupted tensor starts from a real training
tensor packed by the golden model (:func:`sfp.sim_tests.packer_ref.make_case`)
and is damaged in one of the ways of :data:`KINDS` (the table of issue
#10): bit flips at every position class (sign, exponent code, mantissa,
block padding; several at once), truncation, extension, random words,
a wrong ``cfg.length``, a refused ``cfg``.  The expected result of every
tensor, damaged or not, is :func:`sfp.model.stream.unpack_stream`'s: the
values, ``ceil(length/N)`` beats, and the error (``None``, ``"length"``,
``"corrupt"``, ``"unsupported"``).

A damaged tensor's expectation is the model's, never the testbench's own
guess; what this module adds are the *independent* expectations a kind
implies by itself (:func:`implied_error`: a flip in the padding changes
nothing, a truncated stream must be rejected, ...), which the tests check
against the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sfp.model.formats import Settings
from sfp.sim_tests.packer_ref import make_case, real_tensor_bits

__all__ = ["KINDS", "Tensor", "make_pairs", "implied_error", "REAL_KEYS", "CFG_FIELDS"]

#: The ``cfg`` port fields in ``sfp.hw.params.config_layout`` order.
CFG_FIELDS = ("man_bits", "exp_bits", "exp_base", "sign", "specials", "rounding", "gecko", "seed", "length")

KINDS = (
    "clean",         # the follower of every pair (and a control)
    "flip_sign",     # one bit flipped in a record's sign
    "flip_code",     # ... in its exponent code
    "flip_man",      # ... in its mantissa
    "flip_pad",      # ... in a block's zero padding
    "flip_many",     # 40 random bit flips anywhere
    "truncate",      # the last k words missing (tlast on the last word sent)
    "extend",        # k random words appended
    "random_words",  # the whole stream replaced by random words (random count)
    "length_plus",   # cfg.length too large (+1, +N, +B, +1000)
    "length_minus",  # cfg.length too small (-1, -N, -B, -1000, at least 1)
    "refused",       # a cfg the build cannot do (the words are the tensor's)
)

REAL_KEYS = ("epoch10/weight/conv2.weight", "epoch10/act/relu1.out", "epoch10/grad/fc1.weight",
             "epoch01/grad/conv2.out", "epoch01/weight/fc1.weight")


@dataclass
class Tensor:
    kind: str
    words: list                       # W-bit ints, the last one carries tlast
    cfg: dict                         # the cfg port (CFG_FIELDS)
    settings: Settings | None         # as the model reads them (None: refused, not a valid Settings)
    supported: bool
    detail: str = ""
    expect: object = field(default=None, repr=False)   # sfp.model.stream.StreamResult


def _settings_pool(p):
    """Container settings a training policy would use, within the build's maxima."""
    out = []
    for m, e, sign, rnd in ((p.max_man_bits, p.max_exp_bits, True, "rne"), (3, 4, True, "rne"),
                            (2, 5, False, "rz"), (1, 3, True, "rne"), (0, 2, True, "rz"), (5, 6, True, "rne")):
        out.append(dict(man_bits=min(m, p.max_man_bits), exp_bits=min(e, p.max_exp_bits), sign=sign, rounding=rnd))
    return out


def _clean(p, rng, cache):
    """A clean packed real tensor: (case, cfg dict) with 1 to about 3.5 blocks of values."""
    from sfp.sim_tests.packer_ref import cfg_value

    key = REAL_KEYS[int(rng.integers(len(REAL_KEYS)))]
    n = int(rng.integers(1, 7 * p.block // 2))
    off = int(rng.integers(0, 4000))
    if key not in cache:
        cache[key] = real_tensor_bits(p.source, key, 8000)
    bits = np.resize(cache[key][off:], n)
    kw = _settings_pool(p)[int(rng.integers(len(_settings_pool(p))))]
    s = Settings(source=p.source, block=p.block, word=p.word, exp_base="auto", **kw)
    c = make_case(bits, s)
    return c, cfg_value(c.settings, c.n)


def _record_bits(s: Settings):
    """Bit offsets inside a record per position class (format.md 4.2: Q, then C, then S)."""
    m, e = s.man_bits, s.exp_bits
    return {"flip_man": list(range(m)), "flip_code": list(range(m, m + e)),
            "flip_sign": [m + e] if s.sign else []}


def _flip(words, pos, wbits):
    w = list(words)
    i, b = divmod(pos, wbits)
    w[i] ^= 1 << b
    return w


def _damage(kind, c, cfg, p, rng):
    """(words, cfg, settings, supported, detail) of one damaged tensor, or None if the kind does not apply."""
    s, words, W, B, N = c.settings, list(c.words), p.word, p.block, p.lanes
    v, n = s.value_bits, c.n
    rand_word = lambda: int.from_bytes(rng.bytes(W // 8), "little")
    if kind in ("flip_sign", "flip_code", "flip_man"):
        offs = _record_bits(s)[kind]
        if not offs:
            return None
        i = int(rng.integers(n))                      # the value whose record is hit
        blk, j = divmod(i, B)
        start = sum(c.lens[:blk]) * W                 # the block's first bit
        off = offs[int(rng.integers(len(offs)))]
        return _flip(words, start + j * v + off, W), cfg, s, True, f"value {i} bit {off}"
    if kind == "flip_pad":
        cands = []
        for blk, lb in enumerate(c.lens):
            cnt = min(B, n - blk * B)
            used = cnt * v
            if used < lb * W:
                cands.append((sum(c.lens[:blk]) * W + used, lb * W - used))
        if not cands:
            return None
        base, size = cands[int(rng.integers(len(cands)))]
        off = int(rng.integers(size))
        return _flip(words, base + off, W), cfg, s, True, f"padding bit {base + off}"
    if kind == "flip_many":
        for pos in rng.choice(len(words) * W, size=min(40, len(words) * W), replace=False):
            words = _flip(words, int(pos), W)
        return words, cfg, s, True, "40 flips"
    if kind == "truncate":
        if len(words) < 2:
            return None
        k = int(rng.integers(1, len(words)))
        return words[:-k], cfg, s, True, f"{k} words short"
    if kind == "extend":
        k = int(rng.integers(1, 12))
        return words + [rand_word() for _ in range(k)], cfg, s, True, f"{k} words extra"
    if kind == "random_words":
        k = int(rng.integers(1, 2 * len(words) + 2))
        return [rand_word() for _ in range(k)], cfg, s, True, f"{k} random words"
    if kind in ("length_plus", "length_minus"):
        d = [1, N, B, 1000][int(rng.integers(4))]
        length = n + d if kind == "length_plus" else max(1, n - d)
        if length == n:
            return None
        return words, dict(cfg, length=length), s, True, f"length {length} for {n}"
    if kind == "refused":
        bad = [dict(exp_bits=1), dict(exp_bits=p.max_exp_bits + 1), dict(rounding=3),
               dict(exp_base=p.src.max_finite_exp)]
        if p.max_man_bits < p.src.man_width:
            bad.append(dict(man_bits=p.max_man_bits + 1))
        if not p.gecko:
            bad.append(dict(gecko=1))
        if not p.stochastic:
            bad.append(dict(rounding=2))
        over = bad[int(rng.integers(len(bad)))]
        return words, dict(cfg, **over), None, False, f"refused {over}"
    raise ValueError(kind)


def implied_error(kind: str) -> set:
    """The error kinds a damage kind allows by itself (independent of the model's decoder).

    Plain layout: no check can see a flipped data bit (a wrong value, no
    flag); padding is never read; missing or extra words, a refusal always
    show.  A wrong ``cfg.length`` shows unless the words happen to hold the
    other length too (a value more that fits in a block's padding).
    """
    return {
        "clean": {None},
        "flip_pad": {None},
        "flip_sign": {None}, "flip_code": {None}, "flip_man": {None}, "flip_many": {None},
        "truncate": {"length"},
        "extend": {"length"},
        "length_plus": {None, "length"},
        "length_minus": {None, "length"},
        "random_words": {None, "length"},
        "refused": {"unsupported"},
    }[kind]


def make_pairs(p, npairs: int, seed: int, lanes: int | None = None):
    """``npairs`` (damaged, clean) pairs for a plain build ``p``, with the model's expectations."""
    from sfp.model.stream import unpack_stream

    rng = np.random.default_rng(seed)
    cache: dict = {}
    bad_kinds = KINDS[1:]
    out = []
    lanes = lanes or p.lanes
    while len(out) < npairs:
        kind = bad_kinds[len(out) % len(bad_kinds)]
        c, cfg = _clean(p, rng, cache)
        d = _damage(kind, c, cfg, p, rng)
        if d is None:
            continue
        words, dcfg, s, ok, detail = d
        bad = Tensor(kind, words, dcfg, s, ok, detail)
        bad.expect = unpack_stream(words, s, dcfg["length"], lanes, supported=ok)
        c2, cfg2 = _clean(p, rng, cache)
        good = Tensor("clean", list(c2.words), cfg2, c2.settings, True, "")
        good.expect = unpack_stream(good.words, c2.settings, cfg2["length"], lanes)
        out.append((bad, good))
    return out
