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
        """(values, widths, offsets) of the groups of the blocks where ``coded`` (format.md 5.1)."""
        s, gc, e, G = self.s, self.gc, self.s.exp_bits, self.s.group
        S = gecko.slice_size(G)
        keep = coded[self.gblock]
        ng = int(keep.sum())
        gstart = bstart[self.gblock[keep]] + self.ginblock[keep]
        base, zflag, mode = gc.base[keep], gc.zflag[keep], gc.mode[keep]
        valid, sym = gc.valid[keep], gc.sym[keep]
        q, esc = gc.quotient[keep], gc.escape[keep]
        rice = gc.rice[keep][:, None] & valid
        raw = ((mode == gecko.RAW) & (base > 0))[:, None] & valid
        hb, smb = gecko.header_bits(e), self.smb
        codes = np.zeros((gc.count.size, G), np.int64)
        codes.reshape(-1)[:self.n] = self.f.code
        codes = codes[keep]
        sm = np.zeros(gc.count.size * G, np.uint64)
        sm[:self.n] = _sm(self.f, s)
        sm = sm.reshape(-1, G)[keep]
        k = np.broadcast_to(np.minimum(mode, 2)[:, None], (ng, G))
        li = np.broadcast_to(np.arange(G) % S, (ng, G))        # lane inside its slice

        def per_slice(a):        # (ng, G) -> (ng, G/S, S)
            return a.reshape(ng, G // S, S)

        def excl(a):             # exclusive prefix sum inside each slice, back to (ng, G)
            a3 = per_slice(a)
            return (np.cumsum(a3, axis=2) - a3).reshape(ng, G)

        def slice_sum(a):        # each lane sees its slice's total
            return np.repeat(per_slice(a).sum(axis=2), S, axis=1)

        una = np.where(rice, q + 1, 0)
        exp_lane = np.where(rice, k + una + esc * e, np.where(raw, e, 0))
        ns = slice_sum(valid.astype(np.int64))
        tot = per_slice(np.where(valid, exp_lane + smb, 0)).sum(axis=2)
        sstart = gstart[:, None] + hb + np.cumsum(tot, axis=1) - tot   # (ng, G/S)
        ss = np.repeat(sstart, S, axis=1)
        una_base = ss + ns * k
        exc_base = una_base + slice_sum(una)
        sm_off = ss + slice_sum(np.where(valid, exp_lane, 0)) + li * smb
        header = base | (zflag << e) | (mode << (e + 1))
        rem = np.where(esc, 0, sym & ((1 << k) - 1))
        return [
            (header, hb, gstart),
            (rem[rice], k[rice], (ss + li * k)[rice]),
            ((1 << q[rice]) - 1, una[rice], (una_base + excl(una))[rice]),
            (codes[esc], e, (exc_base + excl(esc.astype(np.int64)) * e)[esc]),
            (codes[raw], e, (ss + li * e)[raw]),
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
    """Decode the Gecko-coded ``blocks`` into ``out`` = (sign, code, man) arrays.

    Group j of every block is decoded at once, slice by slice; inside a slice
    the unary codes are walked lane by lane (vectorized across blocks).
    """
    e, G, m = s.exp_bits, s.group, s.man_bits
    S = gecko.slice_size(G)
    hb, smb = gecko.header_bits(e), s.sign_bits + s.man_bits
    bstart, block_words, counts = bstart[blocks], block_words[blocks], counts[blocks]
    nb = blocks.size
    code = np.zeros(nb * s.block, np.int64)
    sm = np.zeros(nb * s.block, np.uint32)
    pos = bstart.copy()                         # bit cursor of each block
    li = np.arange(S)
    for j in range(s.block // G):               # group j of every block at once
        gn = np.clip(counts - j * G, 0, G)
        act = np.flatnonzero(gn > 0)
        if act.size == 0:
            break
        gn = gn[act]
        hdr = bitpack.unpack(words, hb, pos[act]).astype(np.int64)
        base, z, mode = hdr & ((1 << e) - 1), (hdr >> e) & 1, hdr >> (e + 1)
        if ((base == 0) & ((z != 0) | (mode != 0))).any():
            raise FormatError("Gecko group header with b = 0 but z or k set (corrupted file?)")
        raw = (mode == gecko.RAW) & (base > 0)
        rice = (mode != gecko.RAW) & (base > 0)
        k = np.where(rice, np.minimum(mode, 2), 0)
        cur = pos[act] + hb
        for t in range(G // S):                 # slice t of group j
            ns = np.clip(gn - t * S, 0, S)
            valid = li[None, :] < ns[:, None]
            c = np.zeros((act.size, S), np.int64)
            if raw.any():
                c[raw] = bitpack.unpack(words, e, cur[raw, None] + li * e)
            if rice.any():
                r = np.flatnonzero(rice)
                kr, nr = k[r], ns[r]
                rem = bitpack.unpack(words, np.broadcast_to(kr[:, None], (r.size, S)), cur[r, None] + li * kr[:, None])
                u = cur[r] + nr * kr
                q = np.zeros((r.size, S), np.int64)
                for i in range(S):
                    live = i < nr
                    qi = _TRAILING_ONES[bitpack.unpack(words, gecko.Q + 1, u)]
                    if (live & (qi > gecko.Q)).any():
                        raise FormatError("Gecko unary code longer than its cap (corrupted file?)")
                    q[:, i] = np.where(live, qi, 0)
                    u = u + np.where(live, qi + 1, 0)
                v = valid[r]
                esc = (q == gecko.Q) & v
                exc = bitpack.unpack(words, e, u[:, None] + (np.cumsum(esc, axis=1) - esc) * e)
                cr = np.where(esc, exc, gecko.symbols_to_codes((q << kr[:, None]) | rem, base[r], z[r]))
                if ((cr < 0) & v).any():
                    raise FormatError("Gecko symbol above the group's base (corrupted file?)")
                c[r] = cr
            exp_end = cur + np.where(raw, ns * e, 0)
            if rice.any():
                exp_end[r] = u + esc.sum(axis=1) * e
            smv = bitpack.unpack(words, smb, exp_end[:, None] + li * smb)
            idx = (act * s.block + j * G + t * S)[:, None] + li
            code[idx[valid]] = c[valid]
            sm[idx[valid]] = smv[valid]
            cur = exp_end + ns * smb
        pos[act] = cur
    if ((pos - bstart + s.word - 1) // s.word != block_words).any():
        raise FormatError("Gecko groups do not fill their block length (corrupted file?)")
    keep = (np.arange(nb * s.block) % s.block) < np.repeat(counts, s.block)
    dest = (np.repeat(blocks * s.block, s.block) + np.tile(np.arange(s.block), nb))[keep]
    sign, codes, man = out
    sm = sm[keep]
    codes[dest] = code[keep]
    sign[dest] = (sm >> np.uint32(m)) & np.uint32(s.sign_bits)
    man[dest] = sm & np.uint32((1 << m) - 1)
