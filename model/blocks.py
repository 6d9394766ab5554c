"""The DRAM image: values in blocks of B, each block starting on a W-bit word (format.md 4-5).

``pack_image`` turns container fields into the exact words the hardware
packer writes; ``unpack_image`` reads them back.  Blocks are independent,
so decoding walks the groups of all blocks in lock-step (B/G vectorized
steps) rather than value by value.
"""

from __future__ import annotations

import numpy as np

from . import bitpack, gecko
from .formats import FormatError, Settings
from .quantize import Fields

__all__ = ["pack_image", "unpack_image", "block_counts"]


def block_counts(n: int, block: int) -> np.ndarray:
    nb = -(-n // block)
    counts = np.full(nb, block, np.int64)
    if nb:
        counts[-1] = n - (nb - 1) * block
    return counts


def _word_align(bits: np.ndarray, word: int) -> np.ndarray:
    return (bits + word - 1) // word


def _sm(f: Fields, s: Settings) -> np.ndarray:
    """The sign/mantissa record of each value: sign above the m mantissa bits."""
    return (f.sign.astype(np.uint64) << np.uint64(s.man_bits)) | f.man.astype(np.uint64)


def pack_image(f: Fields, s: Settings) -> tuple[np.ndarray, np.ndarray]:
    """(uint32 words of the image, words of W bits per block)."""
    n = f.code.size
    counts = block_counts(n, s.block)
    if s.gecko:
        return _pack_gecko(f, s, counts)
    vb = s.value_bits
    block_words = _word_align(counts * vb, s.word)
    starts = np.concatenate([[0], np.cumsum(block_words)[:-1]]) * s.word
    i = np.arange(n, dtype=np.int64)
    offsets = starts[i // s.block] + (i % s.block) * vb
    values = (_sm(f, s) >> np.uint64(s.man_bits) << np.uint64(s.exp_bits + s.man_bits)) \
        | (f.code.astype(np.uint64) << np.uint64(s.man_bits)) | f.man.astype(np.uint64)
    total = int(block_words.sum()) * s.word
    return bitpack.pack(values, vb, offsets, total), block_words


def _group_layout(n: int, s: Settings):
    """Group counts, and for each group its block and index inside the block."""
    counts = block_counts(n, s.group)           # groups never straddle a block: B % G == 0
    g = np.arange(counts.size, dtype=np.int64)
    per_block = s.block // s.group
    return counts, g // per_block, g % per_block


def _pack_gecko(f: Fields, s: Settings, counts: np.ndarray):
    e, G = s.exp_bits, s.group
    n = f.code.size
    gc = gecko.code_groups(f.code, G, e)
    ng = gc.count.size
    gblock = np.arange(ng, dtype=np.int64) // (s.block // G)   # B % G == 0: groups never straddle blocks
    smb = s.sign_bits + s.man_bits
    hb = gecko.header_bits(e)
    expbits = gc.bits
    gbits = expbits + gc.count * smb
    nb = counts.size
    block_bits = np.bincount(gblock, weights=gbits, minlength=nb).astype(np.int64)
    block_words = _word_align(block_bits, s.word)
    bstart = np.concatenate([[0], np.cumsum(block_words)[:-1]]) * s.word
    cum = np.cumsum(gbits) - gbits                 # exclusive prefix over all groups ...
    first = np.concatenate([[0], np.cumsum(np.bincount(gblock, minlength=nb))[:-1]])
    gstart = bstart[gblock] + cum - cum[first[gblock]]   # ... restarted at every block

    lane = np.arange(G)[None, :]
    valid = gc.valid
    codes = np.zeros((ng, G), np.int64)
    codes.reshape(-1)[:n] = f.code
    rice, raw = gc.rice[:, None] & valid, ((gc.mode == gecko.RAW) & (gc.base > 0))[:, None] & valid
    k = np.minimum(gc.mode, 2)[:, None]
    q = gc.quotient
    esc = gc.escape
    body = gstart[:, None] + hb
    rem_off = body + lane * k
    una_len = q + 1
    una_off = body + gc.count[:, None] * k + np.cumsum(una_len * valid, axis=1) - una_len
    exc_base = body[:, 0] + gc.count * k[:, 0] + (una_len * valid).sum(axis=1)
    exc_off = exc_base[:, None] + (np.cumsum(esc, axis=1) - esc) * e
    sm_off = (gstart + expbits)[:, None] + lane * smb
    sm = np.zeros(ng * G, np.uint64)
    sm[:n] = _sm(f, s)
    header = gc.base | (gc.zflag << e) | (gc.mode << (e + 1))
    rem = np.where(esc, 0, gc.sym & ((1 << k) - 1))
    kw = np.broadcast_to(k, (ng, G))
    parts = [  # (values, widths, offsets) of every field of the image
        (header, hb, gstart),
        (rem[rice], kw[rice], rem_off[rice]),
        ((1 << q[rice]) - 1, una_len[rice], una_off[rice]),
        (codes[esc], e, exc_off[esc]),
        (codes[raw], e, (body + lane * e)[raw]),
        (sm.reshape(ng, G)[valid], smb, sm_off[valid]),
    ]
    values = np.concatenate([np.asarray(v, np.uint64).reshape(-1) for v, _, _ in parts])
    offsets = np.concatenate([np.asarray(o, np.int64).reshape(-1) for _, _, o in parts])
    widths = np.concatenate([np.broadcast_to(np.asarray(w, np.int64), np.shape(o)).reshape(-1) for _, w, o in parts])
    total = int(block_words.sum()) * s.word
    return bitpack.pack(values, widths, offsets, total), block_words


def unpack_image(words: np.ndarray, block_words: np.ndarray, s: Settings, n: int) -> Fields:
    """Fields of ``n`` values from the image ``words`` (uint32) with its block index."""
    counts = block_counts(n, s.block)
    if len(block_words) != counts.size:
        raise FormatError(f"block index has {len(block_words)} entries, {counts.size} expected for {n} values")
    block_words = np.asarray(block_words, np.int64)
    bstart = np.concatenate([[0], np.cumsum(block_words)[:-1]]) * s.word
    if s.gecko:
        return _unpack_gecko(words, block_words, bstart, counts, s, n)
    vb = s.value_bits
    expect = _word_align(counts * vb, s.word)
    if not np.array_equal(expect, block_words):
        raise FormatError("block index does not match the settings (corrupted file?)")
    i = np.arange(n, dtype=np.int64)
    v = bitpack.unpack(words, vb, bstart[i // s.block] + (i % s.block) * vb)
    m, e = s.man_bits, s.exp_bits
    return Fields((v >> np.uint32(e + m)) & np.uint32(s.sign_bits),
                  (v >> np.uint32(m)) & np.uint32((1 << e) - 1),
                  v & np.uint32((1 << m) - 1))


# trailing one-bits of a (Q+1)-bit window: the unary quotient (Q+1 means a corrupt run)
_TRAILING_ONES = np.array([(v ^ (v + 1)).bit_length() - 1 for v in range(1 << (gecko.Q + 1))], np.int64)


def _unpack_gecko(words, block_words, bstart, counts, s: Settings, n: int) -> Fields:
    e, G, m = s.exp_bits, s.group, s.man_bits
    hb, smb = gecko.header_bits(e), s.sign_bits + s.man_bits
    nb = counts.size
    code = np.zeros(nb * s.block, np.int64)
    sm = np.zeros(nb * s.block, np.uint32)
    pos = bstart.copy()                         # bit cursor of each block
    lane = np.arange(G)
    for j in range(s.block // G):               # group j of every block at once
        gn = np.clip(counts - j * G, 0, G)
        act = np.flatnonzero(gn > 0)
        if act.size == 0:
            break
        p, gn = pos[act], gn[act]
        hdr = bitpack.unpack(words, hb, p).astype(np.int64)
        base, z, mode = hdr & ((1 << e) - 1), (hdr >> e) & 1, hdr >> (e + 1)
        valid = lane[None, :] < gn[:, None]
        body = p + hb
        c = np.zeros((act.size, G), np.int64)
        end = body.copy()                       # end of the exponent part of each group
        raw = (mode == gecko.RAW) & (base > 0)
        if raw.any():
            r = np.flatnonzero(raw)
            c[r] = bitpack.unpack(words, e, body[r, None] + lane * e)
            end[r] = body[r] + gn[r] * e
        rice = np.flatnonzero((mode != gecko.RAW) & (base > 0))
        if rice.size:
            k = mode[rice]
            rem = bitpack.unpack(words, np.broadcast_to(k[:, None], (rice.size, G)), body[rice, None] + lane * k[:, None])
            cur = body[rice] + gn[rice] * k
            q = np.zeros((rice.size, G), np.int64)
            for i in range(G):
                live = i < gn[rice]
                qi = _TRAILING_ONES[bitpack.unpack(words, gecko.Q + 1, cur)]
                if (live & (qi > gecko.Q)).any():
                    raise FormatError("Gecko unary code longer than its cap (corrupted file?)")
                q[:, i] = np.where(live, qi, 0)
                cur = cur + np.where(live, qi + 1, 0)
            v = valid[rice]
            esc = (q == gecko.Q) & v
            rank = np.cumsum(esc, axis=1) - esc
            exc = bitpack.unpack(words, e, cur[:, None] + rank * e)
            sym = (q << k[:, None]) | rem
            cr = np.where(esc, exc, gecko.symbols_to_codes(sym, base[rice], z[rice]))
            if ((cr < 0) & v).any():
                raise FormatError("Gecko symbol above the group's base (corrupted file?)")
            c[rice] = cr
            end[rice] = cur + esc.sum(axis=1) * e
        smv = bitpack.unpack(words, smb, end[:, None] + lane * smb)
        idx = (act * s.block + j * G)[:, None] + lane
        code[idx[valid]] = c[valid]
        sm[idx[valid]] = smv[valid]
        pos[act] = end + gn * smb
    if (pos > bstart + block_words * s.word).any():
        raise FormatError("Gecko groups overrun their block length (corrupted file?)")
    keep = (np.arange(nb * s.block) % s.block) < np.repeat(counts, s.block)
    code, sm = code[keep].astype(np.uint32), sm[keep]
    return Fields((sm >> np.uint32(m)) & np.uint32(s.sign_bits), code, sm & np.uint32((1 << m) - 1))
