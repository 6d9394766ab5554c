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

__all__ = ["KINDS", "GECKO_KINDS", "Tensor", "make_pairs", "implied_error", "REAL_KEYS", "CFG_FIELDS"]

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

#: The damage kinds of a Gecko build (whose unpacker also reads the block index on ``s_len``).
GECKO_KINDS = (
    "clean",
    "flip_coded",    # one bit flipped inside a Gecko-coded block (header, unary, remainder, raw or fields)
    "flip_plainblk", # ... inside a plain-layout block (fallback block or a tensor with gecko = 0)
    "flip_many",
    "truncate",
    "extend",
    "random_words",
    "length_plus",   # (s_len carries ceil(length/B) entries: the extra ones at the plain length)
    "length_minus",  # (s_len cut to ceil(length/B) entries)
    "s_len_off",     # one block-index entry off by +-1
    "refused",
)

REAL_KEYS = ("epoch10/weight/conv2.weight", "epoch10/act/relu1.out", "epoch10/grad/fc1.weight",
             "epoch01/grad/conv2.out", "epoch01/weight/fc1.weight")


@dataclass
class Tensor:
    kind: str
    words: list                       # W-bit ints, the last one carries tlast
    s_len: list                       # block-index entries sent on s_len (Gecko builds)
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
    if p.gecko:
        kw = dict(man_bits=int(rng.integers(0, min(4, p.max_man_bits + 1))),
                  exp_bits=int(rng.integers(3, p.max_exp_bits + 1)), gecko=bool(rng.integers(0, 5)),
                  group=p.group, sign=True)
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


def _plain_len(s, count, W):
    return -(-count * s.value_bits // W)


def _damage_gecko(kind, c, cfg, p, rng):
    """(words, s_len, cfg, settings, supported, detail) for the Gecko-only kinds, else None."""
    s, words, lens, W, B = c.settings, list(c.words), list(c.lens), p.word, p.block
    n = c.n
    starts = [sum(lens[:b]) for b in range(len(lens))]
    plain = [_plain_len(s, min(B, n - b * B), W) for b in range(len(lens))]
    if kind in ("flip_coded", "flip_plainblk"):
        want_coded = kind == "flip_coded"
        blocks = [b for b in range(len(lens)) if (lens[b] < plain[b]) == want_coded and lens[b] > 0]
        if not blocks:
            return None
        b = blocks[int(rng.integers(len(blocks)))]
        pos = starts[b] * W + int(rng.integers(lens[b] * W))
        return _flip(words, pos, W), lens, cfg, s, True, f"block {b} bit {pos}"
    if kind == "s_len_off":
        b = int(rng.integers(len(lens)))
        d = int(rng.choice([-1, 1]))
        if lens[b] + d < 0:
            d = 1
        lens[b] += d
        return words, lens, cfg, s, True, f"L_{b} {d:+d}"
    if kind in ("length_plus", "length_minus"):
        d = [1, p.lanes, B, 1000][int(rng.integers(4))]
        length = n + d if kind == "length_plus" else max(1, n - d)
        if length == n:
            return None
        nb = -(-length // B)
        new = lens[:nb] + [_plain_len(s, min(B, length - b * B), W) for b in range(len(lens), nb)]
        return words, new, dict(cfg, length=length), s, True, f"length {length} for {n}"
    return None


def _damage(kind, c, cfg, p, rng):
    """(words, s_len, cfg, settings, supported, detail) of one damaged tensor, or None if the kind does not apply."""
    if p.gecko:
        d = _damage_gecko(kind, c, cfg, p, rng)
        if d is not None or kind in ("flip_coded", "flip_plainblk", "s_len_off"):
            return d
    d = _damage_plain(kind, c, cfg, p, rng)
    return None if d is None else (d[0], list(c.lens)) + d[1:]


def _damage_plain(kind, c, cfg, p, rng):
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


def implied_error(kind: str, gecko: bool = False) -> set:
    """The error kinds a damage kind allows by itself (independent of the model's decoder).

    Plain layout: no check can see a flipped data bit (a wrong value, no
    flag); padding is never read; missing or extra words, a refusal always
    show.  In a Gecko build damaged coded blocks may also be ``corrupt``.  A wrong ``cfg.length`` shows unless the words happen to hold the
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
        # Gecko build: a flipped coded bit may or may not make an invalid code or a wrong parse length
        "flip_coded": {None, "corrupt", "length"}, "flip_plainblk": {None},
        # an entry +1 can turn a coded block into a plain-length one, read as plain: not detectable
        "s_len_off": {None, "corrupt", "length"},
    }[kind] | ({"corrupt", "length"} if gecko and kind in ("flip_many", "random_words") else set()) \
        | ({"corrupt"} if gecko and kind in ("length_plus", "length_minus") else set())


def make_pairs(p, npairs: int, seed: int, lanes: int | None = None):
    """``npairs`` (damaged, clean) pairs for the build ``p`` (plain or Gecko), with the model's expectations."""
    from sfp.model.stream import unpack_stream

    rng = np.random.default_rng(seed)
    cache: dict = {}
    bad_kinds = (GECKO_KINDS if p.gecko else KINDS)[1:]
    gb = bool(p.gecko)
    out = []
    lanes = lanes or p.lanes
    while len(out) < npairs:
        kind = bad_kinds[len(out) % len(bad_kinds)]
        c, cfg = _clean(p, rng, cache)
        d = _damage(kind, c, cfg, p, rng)
        if d is None:
            continue
        words, s_len, dcfg, s, ok, detail = d
        bad = Tensor(kind, words, s_len, dcfg, s, ok, detail)
        bad.expect = unpack_stream(words, s, dcfg["length"], lanes, s_len=s_len, supported=ok, gecko_build=gb)
        c2, cfg2 = _clean(p, rng, cache)
        good = Tensor("clean", list(c2.words), list(c2.lens), cfg2, c2.settings, True, "")
        good.expect = unpack_stream(good.words, c2.settings, cfg2["length"], lanes, s_len=good.s_len,
                                    gecko_build=gb)
        out.append((bad, good))
    return out
