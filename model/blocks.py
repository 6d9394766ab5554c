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


def _plain_items(f: Fields, s: Settings, sel: np.ndarray, bstart: np.ndarray):
    """(values, width, offsets) of the plain records of the values ``sel`` (format.md 4.2-4.3)."""
    vb = s.value_bits
    values = (f.sign[sel].astype(np.uint64) << np.uint64(s.exp_bits + s.man_bits)) \
        | (f.code[sel].astype(np.uint64) << np.uint64(s.man_bits)) | f.man[sel].astype(np.uint64)
    offsets = bstart[sel // s.block] + (sel % s.block) * vb
    return values, np.full(sel.size, vb, np.int64), offsets


def pack_image(f: Fields, s: Settings) -> tuple[np.ndarray, np.ndarray]:
    """(uint32 words of the image, words of W bits per block).

    With Gecko, a block whose Gecko coding would not be shorter than its
    plain layout is stored plain (format.md 5.2): the block index tells
    which, so Gecko never costs a block more than the plain layout.
    """
    n = f.code.size
    counts = block_counts(n, s.block)
    plain_words = _word_align(counts * s.value_bits, s.word)
    if not s.gecko:
        bstart = np.concatenate([[0], np.cumsum(plain_words)[:-1]]) * s.word
        items = [_plain_items(f, s, np.arange(n, dtype=np.int64), bstart)]
        block_words = plain_words
    else:
        gk = _GeckoLayout(f, s, counts)
        coded = gk.block_words < plain_words
        block_words = np.where(coded, gk.block_words, plain_words)
        bstart = np.concatenate([[0], np.cumsum(block_words)[:-1]]) * s.word
        sel = np.flatnonzero(np.repeat(~coded, counts))
        items = [_plain_items(f, s, sel, bstart)] + gk.items(coded, bstart)
    values = np.concatenate([np.asarray(v, np.uint64).reshape(-1) for v, _, _ in items])
    widths = np.concatenate([np.broadcast_to(np.asarray(w, np.int64), np.shape(o)).reshape(-1) for _, w, o in items])
    offsets = np.concatenate([np.asarray(o, np.int64).reshape(-1) for _, _, o in items])
    total = int(block_words.sum()) * s.word
    return bitpack.pack(values, widths, offsets, total), block_words


class _GeckoLayout:
    """Gecko coding of every group, and each group's fields once block starts are known."""

    def __init__(self, f: Fields, s: Settings, counts: np.ndarray):
        e, G = s.exp_bits, s.group
        self.f, self.s, self.n = f, s, f.code.size
        self.gc = gc = gecko.code_groups(f.code, G, e)
        ng = gc.count.size
        self.gblock = np.arange(ng, dtype=np.int64) // (s.block // G)   # B % G == 0: groups never straddle blocks
        self.smb = s.sign_bits + s.man_bits
        self.expbits = gc.bits
        self.gbits = self.expbits + gc.count * self.smb
        nb = counts.size
        block_bits = np.bincount(self.gblock, weights=self.gbits, minlength=nb).astype(np.int64)
        self.block_words = _word_align(block_bits, s.word)
        cum = np.cumsum(self.gbits) - self.gbits        # exclusive prefix over all groups ...
        first = np.concatenate([[0], np.cumsum(np.bincount(self.gblock, minlength=nb))[:-1]])
        self.ginblock = cum - cum[first[self.gblock]]   # ... restarted at every block

    def items(self, coded: np.ndarray, bstart: np.ndarray):
        """(values, widths, offsets) of the groups of the blocks where ``coded``."""
        s, gc, e, G = self.s, self.gc, self.s.exp_bits, self.s.group
        keep = coded[self.gblock]
        ng = int(keep.sum())
        gstart = bstart[self.gblock[keep]] + self.ginblock[keep]
        count, base, zflag, mode = gc.count[keep], gc.base[keep], gc.zflag[keep], gc.mode[keep]
        valid, sym = gc.valid[keep], gc.sym[keep]
        q, esc, rice = gc.quotient[keep], gc.escape[keep], gc.rice[keep][:, None] & valid
        raw = ((mode == gecko.RAW) & (base > 0))[:, None] & valid
        hb, smb = gecko.header_bits(e), self.smb
        lane = np.arange(G)[None, :]
        codes = np.zeros((gc.count.size, G), np.int64)
        codes.reshape(-1)[:self.n] = self.f.code
        codes = codes[keep]
        sm = np.zeros(gc.count.size * G, np.uint64)
        sm[:self.n] = _sm(self.f, s)
        sm = sm.reshape(-1, G)[keep]
        k = np.minimum(mode, 2)[:, None]
        body = gstart[:, None] + hb
        una_len = q + 1
        una_off = body + count[:, None] * k + np.cumsum(una_len * valid, axis=1) - una_len
        exc_base = body[:, 0] + count * k[:, 0] + (una_len * valid).sum(axis=1)
        exc_off = exc_base[:, None] + (np.cumsum(esc, axis=1) - esc) * e
        sm_off = (gstart + self.expbits[keep])[:, None] + lane * smb
        header = base | (zflag << e) | (mode << (e + 1))
        rem = np.where(esc, 0, sym & ((1 << k) - 1))
        kw = np.broadcast_to(k, (ng, G))
        return [
            (header, hb, gstart),
            (rem[rice], kw[rice], (body + lane * k)[rice]),
            ((1 << q[rice]) - 1, una_len[rice], una_off[rice]),
            (codes[esc], e, exc_off[esc]),
            (codes[raw], e, (body + lane * e)[raw]),
            (sm[valid], smb, sm_off[valid]),
        ]


def unpack_image(words: np.ndarray, block_words: np.ndarray, s: Settings, n: int) -> Fields:
    """Fields of ``n`` values from the image ``words`` (uint32) with its block index."""
    counts = block_counts(n, s.block)
    if len(block_words) != counts.size:
        raise FormatError(f"block index has {len(block_words)} entries, {counts.size} expected for {n} values")
    block_words = np.asarray(block_words, np.int64)
    bstart = np.concatenate([[0], np.cumsum(block_words)[:-1]]) * s.word
    plain_words = _word_align(counts * s.value_bits, s.word)
    coded = (block_words < plain_words) if s.gecko else np.zeros(counts.size, bool)
    if not np.array_equal(block_words[~coded], plain_words[~coded]):
        raise FormatError("block index does not match the settings (corrupted file?)")
    m, e = s.man_bits, s.exp_bits
    sign, code, man = (np.zeros(n, np.uint32) for _ in range(3))
    plain = np.flatnonzero(np.repeat(~coded, counts))
    if plain.size:
        vb = s.value_bits
        v = bitpack.unpack(words, vb, bstart[plain // s.block] + (plain % s.block) * vb)
        sign[plain] = (v >> np.uint32(e + m)) & np.uint32(s.sign_bits)
        code[plain] = (v >> np.uint32(m)) & np.uint32((1 << e) - 1)
        man[plain] = v & np.uint32((1 << m) - 1)
    if coded.any():
        _unpack_gecko(words, np.flatnonzero(coded), block_words, bstart, counts, s, (sign, code, man))
    return Fields(sign, code, man)


# trailing one-bits of a (Q+1)-bit window: the unary quotient (Q+1 means a corrupt run)
_TRAILING_ONES = np.array([(v ^ (v + 1)).bit_length() - 1 for v in range(1 << (gecko.Q + 1))], np.int64)


def _unpack_gecko(words, blocks, block_words, bstart, counts, s: Settings, out) -> None:
    """Decode the Gecko-coded ``blocks`` into ``out`` = (sign, code, man) arrays."""
    e, G, m = s.exp_bits, s.group, s.man_bits
    hb, smb = gecko.header_bits(e), s.sign_bits + s.man_bits
    bstart, block_words, counts = bstart[blocks], block_words[blocks], counts[blocks]
    nb = blocks.size
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
    if ((pos - bstart + s.word - 1) // s.word != block_words).any():
        raise FormatError("Gecko groups do not fill their block length (corrupted file?)")
    keep = (np.arange(nb * s.block) % s.block) < np.repeat(counts, s.block)
    dest = (np.repeat(blocks * s.block, s.block) + np.tile(np.arange(s.block), nb))[keep]
    sign, codes, man = out
    sm = sm[keep]
    codes[dest] = code[keep]
    sign[dest] = (sm >> np.uint32(m)) & np.uint32(s.sign_bits)
    man[dest] = sm & np.uint32((1 << m) - 1)
