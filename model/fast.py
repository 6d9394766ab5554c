"""Fast paths of :func:`sfp.model.container.encode` / ``decode``: the same bytes, several times sooner.

The reference model (:mod:`sfp.model.quantize`, :mod:`sfp.model.blocks`,
:mod:`sfp.model.container`) stays the definition; this module only
reorganises the work, in pure NumPy, and every result is checked against
the reference bit for bit (``tests/test_model_fast.py``: every 16-bit
pattern, Hypothesis over settings and shapes, real training tensors).

Two ideas:

* **Tables instead of arithmetic.**  A 16-bit source (bf16, fp16) has only
  65,536 bit patterns, and for a deterministic rounding (``rne``, ``rz``) a
  value's container record (sign, exponent code, mantissa) depends on its
  pattern and the settings alone.  So the reference's :func:`to_fields` is
  run once on all 65,536 patterns, and a tensor is quantized with one table
  look-up per value; the same for the automatic ``exp_base`` (the rounded
  exponent of each pattern) and for the strict checks (which patterns the
  settings refuse).  Decoding looks records up in the reference's
  :func:`from_fields` of every possible record.
* **Bit planes instead of bit offsets.**  Plain blocks hold fixed-width
  records back to back (format.md 4.2), so packing is ``np.unpackbits`` of
  the records, keeping their low ``value_bits`` bits, and ``np.packbits``
  of each block's bits, padded to whole words; unpacking is the reverse.

* **Gecko encoding, few wide fields.**  The reference chooses each group's
  code (:func:`sfp.model.gecko.code_groups`, reused here); the layout then
  puts each slice's fields side by side in at most seven 64-bit values
  (remainders or raw codes, two halves of unary codes, escapes, two halves
  of sign/mantissa records), built lane by lane, and a sorted-offset packer
  (``np.add.reduceat`` per 64-bit word) writes them.  The last, short block
  takes the reference's layout.

Stochastic rounding depends on the value's index, so no table applies: its
fields come from the reference's own vectorized :func:`to_fields`, and only
the packing is fast.  Not covered, and served by the reference (same bytes,
its speed): fp32 sources (2^32 patterns) and blocks of fewer than 8 values.

* **Gecko decoding** follows the reference's walk (group by group, slice by
  slice, unary code by unary code, every block of the tensor at once), with
  one 64-bit reader over the whole image instead of converting the image at
  every read; any inconsistency hands the file to the reference, which
  raises its own error.  The walk itself is serial within a block (a unary
  code's end is known only after the previous one), which is what bounds it
  (``docs/results.md`` section 1).
"""

from __future__ import annotations

import functools
import zlib

import numpy as np

from . import bitpack, container, gecko
from .blocks import block_counts, pack_image
from .formats import SOURCES, Settings
from .quantize import WEYL, Fields, _Rounded, as_bits, from_fields, resolve, to_fields

__all__ = ["encode", "encode_parts", "decode", "decode_bits", "covered"]

# Values per piece: keeps the packing temporaries in cache.
CHUNK_VALUES = 1 << 17
# Values per piece of Gecko decoding: large, since each of its ~256 serial steps per
# piece costs a NumPy call, yet bounded (about 20 bytes of temporaries per value).
DECODE_PIECE = 1 << 21


def covered(s: Settings) -> bool:
    """Whether :func:`encode` has a fast path for ``s`` (else it calls the reference)."""
    return s.src.width == 16 and s.block % 8 == 0


@functools.lru_cache(maxsize=64)
def _pattern_tables(s: Settings):
    """The rounded exponent of every pattern that the reference would count for ``exp_base="auto"`` (else 0)."""
    allbits = np.arange(1 << 16, dtype=np.uint32)
    r = _Rounded(allbits, s)
    ok = r.normal if s.sign else r.normal & (r.sign == 0)
    emax = np.where(ok, np.minimum(r.exp, s.src.max_finite_exp), 0).astype(np.int32)
    return emax, None


@functools.lru_cache(maxsize=64)
def _record_table(s: Settings) -> np.ndarray:
    """Plain record (sign | code | mantissa, format.md 4.2) of every pattern under resolved ``s``."""
    f, _ = to_fields(np.arange(1 << 16, dtype=np.uint32), s, strict=False)
    m, e = s.man_bits, s.exp_bits
    rec = (f.sign.astype(np.uint32) << np.uint32(e + m)) | (f.code << np.uint32(m)) | f.man
    return rec.astype(np.uint16)


@functools.lru_cache(maxsize=64)
def _value_table(s: Settings) -> np.ndarray:
    """Source bit pattern (uint16) of every plain record of resolved ``s``."""
    rec = np.arange(1 << s.value_bits, dtype=np.uint32)
    m, e = s.man_bits, s.exp_bits
    f = Fields((rec >> np.uint32(e + m)) & np.uint32(s.sign_bits), (rec >> np.uint32(m)) & np.uint32((1 << e) - 1),
               rec & np.uint32((1 << m) - 1))
    return from_fields(f, s).astype(np.uint16)


def _pack8(r: np.ndarray, vb: int) -> np.ndarray:
    """Records ``r`` (uint16, a multiple of 8 of them, ``vb`` <= 16 bits each) back to back: bytes (n/8, vb).

    Eight records of vb bits fill exactly vb bytes: they are summed into one
    or two 64-bit words (the fields do not overlap, so a sum is an OR) whose
    low bytes are the stream.
    """
    R = r.reshape(-1, 8).astype(np.uint64)
    sh = [np.uint64(j * vb) for j in range(8)]
    if vb <= 8:
        w0 = R[:, 0].copy()
        for j in range(1, 8):
            w0 |= R[:, j] << sh[j]
        return w0.view(np.uint8).reshape(-1, 8)[:, :vb]
    lo, hi = R[:, 0].copy(), R[:, 4].copy()
    for j in range(1, 4):
        lo |= R[:, j] << sh[j]
        hi |= R[:, 4 + j] << sh[j]
    half = np.uint64(4 * vb)                          # 36..60 bits: the second half straddles the words
    w0 = lo | (hi << half)
    w1 = hi >> np.uint64(64 - 4 * vb)
    return np.concatenate([w0.view(np.uint8).reshape(-1, 8), w1.view(np.uint8).reshape(-1, 8)[:, :vb - 8]], axis=1)


def _unpack8(b: np.ndarray, vb: int) -> np.ndarray:
    """Inverse of :func:`_pack8`: bytes (k, vb) -> records (8k,) uint16."""
    k = b.shape[0]
    full = np.zeros((k, 16), np.uint8)
    full[:, :vb] = b
    w = full.view(np.uint64)                          # (k, 2): the stream's first and second 64 bits
    mask = np.uint64((1 << vb) - 1)
    out = np.empty((k, 8), np.uint16)
    if vb <= 8:
        w0 = w[:, 0]
        for j in range(8):
            out[:, j] = (w0 >> np.uint64(j * vb)) & mask
        return out.reshape(-1)
    half = 4 * vb
    lo = w[:, 0] & np.uint64((1 << half) - 1)
    hi = (w[:, 0] >> np.uint64(half)) | (w[:, 1] << np.uint64(64 - half))
    for j in range(4):
        out[:, j] = (lo >> np.uint64(j * vb)) & mask
        out[:, 4 + j] = (hi >> np.uint64(j * vb)) & mask
    return out.reshape(-1)


def _plain_rows(r: np.ndarray, vb: int, nblocks: int) -> np.ndarray:
    """Records ``r`` (uint16) of ``nblocks`` whole blocks, packed: (nblocks, B * vb / 8) bytes."""
    if vb == 16:
        return r.astype("<u2", copy=False).view(np.uint8).reshape(nblocks, -1)
    return _pack8(r, vb).reshape(nblocks, -1)


def _block_bytes(s: Settings, count: int) -> int:
    return -(-count * s.value_bits // s.word) * s.word // 8


def _pack_plain(vals: np.ndarray, s: Settings, table: np.ndarray | None = None) -> np.ndarray:
    """The plain image (uint8) of ``vals``: blocks of B records, each block padded to whole W-bit words.

    The records are ``table[vals]`` (or ``vals`` themselves when ``table`` is
    None), looked up piece by piece so the temporaries stay in cache.
    """
    n, vb, B = vals.size, s.value_bits, s.block
    if n == 0:
        return np.zeros(0, np.uint8)
    counts = block_counts(n, B)
    nb = counts.size
    full = _block_bytes(s, B)
    out = np.zeros((nb, full), np.uint8)
    per = max(1, CHUNK_VALUES // B)                  # blocks per piece
    for b0 in range(0, nb, per):
        b1 = min(nb, b0 + per)
        v = vals[b0 * B:b1 * B]
        r = v if table is None else table[v]
        if r.size < (b1 - b0) * B:                   # a short last block: zero records after the tensor
            r = np.concatenate([r, np.zeros((b1 - b0) * B - r.size, np.uint16)])
        rows = _plain_rows(r, vb, b1 - b0)
        out[b0:b1, :rows.shape[1]] = rows            # the rest of the row: the block's word padding
    return out.reshape(-1)[:(nb - 1) * full + _block_bytes(s, int(counts[-1]))]


def _unpack_plain(payload: np.ndarray, s: Settings, n: int, table: np.ndarray) -> np.ndarray:
    """``table[record]`` of the ``n`` records of a plain image (uint8)."""
    vb, B = s.value_bits, s.block
    out = np.empty(n, table.dtype)
    if n == 0:
        return out
    nb = block_counts(n, B).size
    full = _block_bytes(s, B)
    pad = nb * full - payload.size                   # the last block may be shorter
    if pad:
        payload = np.concatenate([payload, np.zeros(pad, np.uint8)])
    rows_all = payload.reshape(nb, full)
    per = max(1, CHUNK_VALUES // B)
    for b0 in range(0, nb, per):
        b1 = min(nb, b0 + per)
        rows = rows_all[b0:b1, :B * vb // 8]
        if vb == 16:
            rec = np.ascontiguousarray(rows).view("<u2").reshape(-1)
        else:
            rec = _unpack8(rows.reshape(-1, vb), vb)
        lo, hi = b0 * B, min(n, b1 * B)
        out[lo:hi] = table[rec[:hi - lo]]
    return out


def _max_exp(bits: np.ndarray, s: Settings) -> int:
    """The reference's largest rounded exponent of a stored finite nonzero value (format.md 2).

    Rounding (rne, rz) is monotone in the magnitude, so the largest rounded
    exponent is that of the largest finite magnitude (positive values only
    when the sign is elided): one max over the tensor, one table look-up.
    """
    if bits.size == 0:
        return 0
    src = s.src
    special = np.uint16(src.exp_all_ones << src.man_width)      # first Inf/NaN magnitude
    if s.sign:
        mag = bits & np.uint16(src.sign_mask - 1)
        top = int(np.where(mag < special, mag, 0).max())
    else:
        top = int(np.where(bits < special, bits, 0).max())     # negative patterns are >= special
    emax_t, _ = _pattern_tables(s.with_(exp_base=0))
    return int(emax_t[top])


def _refused(bits: np.ndarray, s: Settings) -> bool:
    """Whether the reference would refuse a value (negative with the sign elided, Inf/NaN without specials)."""
    src = s.src
    special = src.exp_all_ones << src.man_width
    sign = src.sign_mask
    if not s.sign and ((bits > np.uint16(sign)) & (bits <= np.uint16(sign | special))).any():
        return True                                  # nonzero negative finite or -Inf (-NaN is stored as NaN)
    if not s.specials and ((bits & np.uint16(sign - 1)) >= np.uint16(special)).any():
        return True
    return False


def encode_parts(x, s: Settings) -> tuple[bytes, np.ndarray]:
    """(header, payload) of :func:`encode`: the file is ``header + payload.tobytes()``.

    Two parts so that a caller writing a file need not copy the payload again.
    """
    x = np.asarray(x)
    if not covered(s) or x.dtype.itemsize != 2 or x.dtype.kind not in "uVf":
        data = container.encode(x, s)
        e = container.parse(data)
        return data[:len(data) - len(e.payload)], np.frombuffer(e.payload, np.uint8)
    as_bits(x.reshape(-1)[:0], s.source)          # the reference's dtype checks (FormatError)
    bits = np.ascontiguousarray(x).reshape(-1).view(np.uint16)
    if s.rounding == "stochastic" and s.src.man_width - s.man_bits != 1:
        table, vals, s = _stochastic_tables_and_index(bits, s)
        if table is None:
            container.encode(x, s)                  # raises the reference's FormatError, same index
            raise AssertionError("the fast path refused what the reference accepts")
    elif s.rounding == "stochastic":
        rec, s = _stochastic_records(x, bits, s)
        vals, table = rec, None
    else:
        table, s = _table_records(bits, s)
        if table is None:
            container.encode(x, s)                  # raises the reference's FormatError, same index
            raise AssertionError("the fast path refused what the reference accepts")
        vals = bits
    if s.gecko:
        payload, block_words = _pack_gecko(vals if table is None else table[vals], s)
    else:
        payload = _pack_plain(vals, s, table)
        counts = block_counts(bits.size, s.block)
        block_words = -(-counts * s.value_bits // s.word)
    e = container.Encoded(s, tuple(x.shape), block_words, b"", x.dtype.kind == "u")
    return container.header_bytes(e, zlib.crc32(payload)), payload


def encode(x, s: Settings) -> bytes:
    """The ``.sfpc`` file of ``x``: exactly :func:`sfp.model.container.encode`'s bytes."""
    header, payload = encode_parts(x, s)
    return header + payload.tobytes()


def _table_records(bits: np.ndarray, s: Settings):
    """(record table, resolved settings); (None, s) if the reference would refuse a value."""
    if _refused(bits, s):
        return None, s
    if s.exp_base == "auto":
        s = s.with_(exp_base=max(0, _max_exp(bits, s) - s.max_code))
    return _record_table(s), s


def _record(f: Fields, s: Settings) -> np.ndarray:
    m, e = s.man_bits, s.exp_bits
    return ((f.sign.astype(np.uint32) << np.uint32(e + m)) | (f.code << np.uint32(m)) | f.man).astype(np.uint16)


@functools.lru_cache(maxsize=16)
def _carry_patterns(s: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Every pattern, and every pattern with its dropped bits set (see :func:`_stochastic_tables`)."""
    drop = s.src.man_width - s.man_bits
    allp = np.arange(1 << 16, dtype=np.uint32)
    return allp, allp | np.uint32((1 << drop) - 1)


@functools.lru_cache(maxsize=16)
def _stochastic_tables(s: Settings) -> np.ndarray:
    """Records of every (carry, pattern) for stochastic rounding, index ``carry << 16 | pattern``.

    The reference rounds ``r = (mag + rnd) >> drop``, that is the truncated
    magnitude plus a carry of 0 or 1; everything else it derives from ``r``
    and from the pattern's own class (zero, subnormal, normal, Inf, NaN).  So
    carry 0 is the reference's ``rz`` record of the pattern, and carry 1 its
    ``rne`` record of the pattern with every dropped bit set (for drop >= 2
    that rounds up by exactly one, and the class is unchanged: the dropped
    bits are mantissa bits).  Inf/NaN records do not depend on ``r``; a carry
    needs a nonzero dropped part, so zeros never take it.
    """
    allp, filled = _carry_patterns(s)
    f0, _ = to_fields(allp, s.with_(rounding="rz"), strict=False)
    f1, _ = to_fields(filled, s.with_(rounding="rne"), strict=False)
    rec0, rec1 = _record(f0, s), _record(f1, s)
    special = ((allp >> np.uint32(s.src.man_width)) & np.uint32(s.src.exp_all_ones)) == np.uint32(s.src.exp_all_ones)
    rec1[special] = rec0[special]
    return np.concatenate([rec0, rec1])


@functools.lru_cache(maxsize=16)
def _stochastic_exp_table(s: Settings) -> np.ndarray:
    """The rounded exponent that ``exp_base="auto"`` counts, of every (carry, pattern) (as above)."""
    allp, filled = _carry_patterns(s)
    out = []
    for bits, rounding in ((allp, "rz"), (filled, "rne")):
        r = _Rounded(bits, s.with_(rounding=rounding))
        ok = r.normal if s.sign else r.normal & (r.sign == 0)
        out.append(np.where(ok, np.minimum(r.exp, s.src.max_finite_exp), 0).astype(np.int32))
    return np.concatenate(out)


def _random_bits(n: int, seed: int, drop: int, start: int) -> np.ndarray:
    """:func:`sfp.model.quantize.stochastic_bits` in 32-bit arithmetic (the same bits: the counter
    is used modulo 2^32, and uint32 products wrap modulo 2^32)."""
    if drop == 0:
        return np.zeros(n, np.uint32)
    x = np.arange(n, dtype=np.uint32)
    x += np.uint32(start & 0xFFFFFFFF)
    x *= np.uint32(WEYL)
    x += np.uint32(seed)
    x ^= x << np.uint32(13)
    x ^= x >> np.uint32(17)
    x ^= x << np.uint32(5)
    return x >> np.uint32(32 - drop)


def _stochastic_tables_and_index(bits: np.ndarray, s: Settings):
    """(record table, per-value table index ``carry << 16 | pattern``, resolved settings), or (None, None, s)
    if the reference would refuse a value.  The carries use the reference's random bits."""
    if _refused(bits, s):
        return None, None, s
    drop = s.src.man_width - s.man_bits
    idx = np.empty(bits.size, np.uint32)
    fmask = np.uint32((1 << drop) - 1)
    for i in range(0, bits.size, CHUNK_VALUES):
        b = bits[i:i + CHUNK_VALUES].astype(np.uint32)
        rnd = _random_bits(b.size, s.seed, drop, i)
        carry = ((b & fmask) + rnd) >> np.uint32(drop)
        idx[i:i + CHUNK_VALUES] = b | (carry << np.uint32(16))
    if s.exp_base == "auto":
        emax = int(_stochastic_exp_table(s.with_(exp_base=0))[idx].max()) if idx.size else 0
        s = s.with_(exp_base=max(0, emax - s.max_code))
    return _stochastic_tables(s), idx, s


def _stochastic_records(x, bits: np.ndarray, s: Settings):
    """(records, resolved settings) for stochastic rounding that drops one bit (no carry table: see
    :func:`_stochastic_tables`): the reference's own vectorized functions, in its pieces (same error index)."""
    s = resolve(x, s)
    rec = np.empty(bits.size, np.uint16)
    step = container._chunk(s)
    m, e = s.man_bits, s.exp_bits
    for i in range(0, bits.size, step):
        f, _ = to_fields(bits[i:i + step].astype(np.uint32), s, strict=True, start=i)
        rec[i:i + step] = (f.sign << np.uint32(e + m)) | (f.code << np.uint32(m)) | f.man
    return rec, s


def decode_bits(data: bytes) -> tuple[np.ndarray, container.Encoded]:
    """(source bit patterns in the tensor's shape, parsed header) of an ``.sfpc`` file.

    The bit patterns are those of :func:`sfp.model.container.decode`
    (uint16 for 16-bit sources, uint32 for fp32).
    """
    e = container.parse(data)
    s = e.settings
    if s.src.width != 16 or s.block % 8:
        out = container.decode(data, as_float=False)
        return out, e
    if s.gecko:
        try:
            bits = _decode_gecko(np.frombuffer(e.payload, np.uint8), s, e.n, e.block_words)
        except _Corrupt:
            container.decode(data)                   # raises the reference's FormatError
            raise AssertionError("the fast Gecko decoder refused what the reference accepts")
        return bits.reshape(e.shape), e
    return _unpack_plain(np.frombuffer(e.payload, np.uint8), s, e.n, _value_table(s)).reshape(e.shape), e


def decode(data: bytes, as_float: bool | None = None) -> np.ndarray:
    """The tensor of an ``.sfpc`` file: exactly :func:`sfp.model.container.decode`'s array."""
    bits, e = decode_bits(data)
    if as_float is None:
        as_float = not e.raw_bits
    if not as_float:
        return bits
    from .quantize import _float_dtype
    return bits.view(_float_dtype(SOURCES[e.settings.source]))


# -- Gecko ------------------------------------------------------------------------

def _pack_gecko(rec: np.ndarray, s: Settings) -> tuple[np.ndarray, np.ndarray]:
    """(image bytes, W-bit words per block) of plain records ``rec`` stored with Gecko (format.md 5)."""
    n, B, m, e = rec.size, s.block, s.man_bits, s.exp_bits

    def split(r):            # exponent codes and sign/mantissa records of plain records
        return ((r >> np.uint16(m)) & np.uint16((1 << e) - 1),
                ((r >> np.uint16(e + m)) << np.uint16(m)) | (r & np.uint16((1 << m) - 1)))

    nfull = n // B * B
    per = max(1, CHUNK_VALUES // B) * B                # values per piece, whole blocks
    images, index = [], []
    for i in range(0, nfull, per):
        img, bw = _gecko_blocks(*split(rec[i:min(nfull, i + per)]), s)
        images.append(img)
        index.append(bw)
    if nfull < n:                                      # a short last block: the reference's layout
        code, sm = split(rec[nfull:])
        f = Fields(sm.astype(np.uint32) >> np.uint32(m), code.astype(np.uint32),
                   sm.astype(np.uint32) & np.uint32((1 << m) - 1))
        words, bw = pack_image(f, s)
        images.append(np.frombuffer(bitpack.to_bytes(words, int(bw.sum()) * s.word // 8), np.uint8))
        index.append(np.asarray(bw, np.int64))
    if not images:
        return np.zeros(0, np.uint8), np.zeros(0, np.int64)
    return np.concatenate(images), np.concatenate(index)


def _pack_items(values: np.ndarray, widths: np.ndarray, offsets: np.ndarray, nwords: int) -> np.ndarray:
    """uint64 words of a bit stream from fields (value, width <= 64, bit offset) given in stream order.

    The fields do not overlap, so a word is the sum of the fields' parts that
    fall in it; offsets never decrease, so those sums are ``np.add.reduceat``
    over runs of equal word index.
    """
    words = np.zeros(nwords + 1, np.uint64)
    keep = widths > 0
    v, off = values[keep], offsets[keep]
    if v.size == 0:
        return words[:nwords]
    idx = off >> 6
    sh = (off & 63).astype(np.uint64)
    lo = v << sh
    hi = (v >> np.uint64(1)) >> (np.uint64(63) - sh)        # v >> (64 - sh), 0 when sh == 0
    starts = np.flatnonzero(np.concatenate([[True], idx[1:] != idx[:-1]]))
    u = idx[starts]
    words[u] = np.add.reduceat(lo, starts)
    words[u + 1] += np.add.reduceat(hi, starts)
    return words[:nwords]


def _lanes_sum(vals: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Sum over the last axis of ``vals << shifts`` (uint64): fields placed side by side."""
    return (vals.astype(np.uint64) << shifts.astype(np.uint64)).sum(axis=-1, dtype=np.uint64)


def _gecko_blocks(code: np.ndarray, sm: np.ndarray, s: Settings) -> tuple[np.ndarray, np.ndarray]:
    """(image bytes, W-bit words per block) of whole blocks (``code.size`` a multiple of B), format.md 5."""
    e, G, B, W = s.exp_bits, s.group, s.block, s.word
    S = gecko.slice_size(G)
    nsl, H = G // S, S // 2 if S >= 2 else 1
    smb, hb = s.sign_bits + s.man_bits, gecko.header_bits(e)
    nb = code.size // B
    gc = gecko.code_groups(code, G, e)
    ng = gc.base.size
    base, z, mode = gc.base.astype(np.int64), gc.zflag.astype(np.int64), gc.mode.astype(np.int64)
    k = np.minimum(mode, 2)
    rice = (base > 0) & (mode != gecko.RAW)
    raw = (base > 0) & (mode == gecko.RAW)
    sym = gc.sym.reshape(ng, nsl, S)
    c3 = code.reshape(ng, nsl, S)
    sm3 = sm.reshape(ng, nsl, S)
    u64 = np.uint64
    kk = k.astype(u64)[:, None]                     # (ng, 1) against (ng, nsl) lane slices
    kmask = ((np.int64(1) << k) - 1)[:, None]
    ricec, rawc = rice[:, None], raw[:, None]
    zero = np.zeros((ng, nsl), u64)
    # Lane by lane (S steps over (ng, nsl) slices): reductions over a short last
    # axis are slow in NumPy, explicit accumulation is not.
    a_rice, a_raw, x_val = zero.copy(), zero.copy(), zero.copy()
    rank = np.zeros((ng, nsl), np.int64)
    halves = [[zero.copy(), np.zeros((ng, nsl), np.int64)] for _ in range(0, S, H)]
    mh = [zero.copy() for _ in range(0, S, H)]
    for l in range(S):
        sl = sym[..., l].astype(np.int64)
        cl = c3[..., l].astype(u64)
        ql = np.minimum(sl >> k[:, None], gecko.Q)
        escl = (ql == gecko.Q) & ricec
        a_rice |= np.where(escl, 0, sl & kmask).astype(u64) << (kk * u64(l))
        a_raw |= cl << u64(l * e)
        hv = halves[l // H]
        wl = np.where(ricec, ql + 1, 0)
        hv[0] |= np.where(ricec, (np.int64(1) << ql) - 1, 0).astype(u64) << hv[1].astype(u64)
        hv[1] += wl
        x_val |= np.where(escl, cl << (rank * e).astype(u64), u64(0))
        rank += escl
        mh[l // H] |= sm3[..., l].astype(u64) << u64((l % H) * smb)
    a_val = np.where(ricec, a_rice, np.where(rawc, a_raw, u64(0)))
    a_w = np.broadcast_to(np.where(rice, S * k, np.where(raw, S * e, 0))[:, None], (ng, nsl))
    x_w = rank * e
    mw = [np.full((ng, nsl), min(H, S - h0) * smb) for h0 in range(0, S, H)]
    per_slice = [(a_val, a_w)] + [tuple(hv) for hv in halves] + [(x_val, x_w)] + list(zip(mh, mw))
    nslot = len(per_slice)
    vals = np.zeros((ng, 1 + nsl * nslot), np.uint64)
    wids = np.zeros((ng, 1 + nsl * nslot), np.int64)
    vals[:, 0] = (base | (z << e) | (mode << (e + 1))).astype(np.uint64)
    wids[:, 0] = hb
    for j, (v, w) in enumerate(per_slice):
        vals[:, 1 + j::nslot] = v
        wids[:, 1 + j::nslot] = w
    wids_b = wids.reshape(nb, -1)
    block_bits = wids_b.sum(axis=1)
    coded_words = -(-block_bits // W)
    plain_words = -(-B * s.value_bits // W)
    coded = coded_words < plain_words
    block_words = np.where(coded, coded_words, plain_words)
    bstart = np.concatenate([[0], np.cumsum(block_words)[:-1]]) * W
    offs = (np.cumsum(wids_b, axis=1) - wids_b) + bstart[:, None]
    sel = np.repeat(coded, wids_b.shape[1])
    total = int(block_words.sum()) * W
    words = _pack_items(vals.reshape(-1)[sel], wids_b.reshape(-1)[sel], offs.reshape(-1)[sel], total // 64)
    image = words.view(np.uint8)
    if not coded.all():                                  # blocks Gecko would not shorten: stored plain (5.2)
        m = s.man_bits
        rec = ((sm >> np.uint64(m)) << np.uint64(e + m)) | (code.astype(np.uint64) << np.uint64(m)) \
            | (sm & np.uint64((1 << m) - 1))
        rows = _plain_rows(rec.astype(np.uint16).reshape(nb, B)[~coded].reshape(-1), s.value_bits, int((~coded).sum()))
        starts = bstart[~coded] // 8
        for r, st0 in zip(rows, starts):
            image[st0:st0 + r.size] = r
    return image, block_words


class _Corrupt(Exception):
    """The fast Gecko decoder met something the reference refuses: let the reference say what."""


def _stream64(payload: np.ndarray) -> np.ndarray:
    """The image as little-endian 64-bit words, with two zero words after it (reads past the end see 0)."""
    pad = (-payload.size) % 8 + 16
    return np.concatenate([payload, np.zeros(pad, np.uint8)]).view("<u8")


def _read(w: np.ndarray, off: np.ndarray, width) -> np.ndarray:
    """Fields of ``width`` (<= 57) bits at bit offsets ``off`` (int64) of the stream ``w`` (int64 result)."""
    idx = off >> 6
    sh = (off & 63).astype(np.uint64)
    both = (w[idx] >> sh) | ((w[idx + 1] << np.uint64(1)) << (np.uint64(63) - sh))
    mask = (np.uint64(1) << np.asarray(width, np.uint64)) - np.uint64(1)
    return (both & mask).astype(np.int64)


# trailing one-bits of a (Q+1)-bit window: the unary quotient (Q+1 means a corrupt run)
_TRAILING_ONES = np.array([(v ^ (v + 1)).bit_length() - 1 for v in range(1 << (gecko.Q + 1))], np.int64)


def _unpack_gecko_fast(w: np.ndarray, blocks: np.ndarray, bstart: np.ndarray, block_words: np.ndarray,
                       counts: np.ndarray, s: Settings, code_out: np.ndarray, sm_out: np.ndarray, first: int) -> None:
    """The Gecko-coded ``blocks`` into rows ``block - first`` of ``code_out``/``sm_out``: the reference's
    walk (blocks.py), with one 64-bit reader of the whole image, all the piece's blocks in each step."""
    e, G, B = s.exp_bits, s.group, s.block
    S = gecko.slice_size(G)
    hb, smb = gecko.header_bits(e), s.sign_bits + s.man_bits
    bstart, block_words, counts = bstart[blocks], block_words[blocks], counts[blocks]
    pos = bstart.copy()
    li = np.arange(S)
    for j in range(B // G):
        gn = np.clip(counts - j * G, 0, G)
        act = np.flatnonzero(gn > 0)
        if act.size == 0:
            break
        gn = gn[act]
        hdr = _read(w, pos[act], hb)
        base, z, mode = hdr & ((1 << e) - 1), (hdr >> e) & 1, hdr >> (e + 1)
        raw = (mode == gecko.RAW) & (base > 0)
        rice = (mode != gecko.RAW) & (base > 0)
        r = np.flatnonzero(rice)
        rw = np.flatnonzero(raw)
        kr = np.minimum(mode[r], 2)
        cur = pos[act] + hb
        for t in range(G // S):
            ns = np.clip(gn - t * S, 0, S)
            valid = li[None, :] < ns[:, None]
            c = np.zeros((act.size, S), np.int64)
            if rw.size:
                c[rw] = _read(w, cur[rw, None] + li * e, e)
            exp_end = cur + np.where(raw, ns * e, 0)
            if r.size:
                nr = ns[r]
                rem = _read(w, cur[r, None] + li * kr[:, None], kr[:, None])
                u = cur[r] + nr * kr
                q = np.zeros((r.size, S), np.int64)
                for i in range(S):
                    live = i < nr
                    qi = _TRAILING_ONES[_read(w, u, gecko.Q + 1)]
                    if (live & (qi > gecko.Q)).any():
                        raise _Corrupt
                    q[:, i] = np.where(live, qi, 0)
                    u = u + np.where(live, qi + 1, 0)
                v = valid[r]
                esc = (q == gecko.Q) & v
                exc = _read(w, u[:, None] + (np.cumsum(esc, axis=1) - esc) * e, e)
                cr = np.where(esc, exc, gecko.symbols_to_codes((q << kr[:, None]) | rem, base[r], z[r]))
                if ((cr < 0) & v).any():
                    raise _Corrupt
                c[r] = cr
                exp_end[r] = u + esc.sum(axis=1) * e
            smv = _read(w, exp_end[:, None] + li * smb, smb)
            # lanes past a short last group hold garbage here; the caller keeps the first n values only
            lo = j * G + t * S
            code_out[blocks[act] - first, lo:lo + S] = c
            sm_out[blocks[act] - first, lo:lo + S] = smv
            cur = exp_end + ns * smb
        pos[act] = cur
    if ((pos - bstart + s.word - 1) // s.word != block_words).any():
        raise _Corrupt


def _decode_gecko(payload: np.ndarray, s: Settings, n: int, block_words: np.ndarray) -> np.ndarray:
    """Source bit patterns (uint16) of a Gecko container's ``n`` values; _Corrupt if the reference would refuse."""
    B, m, e, W = s.block, s.man_bits, s.exp_bits, s.word
    counts = block_counts(n, B)
    block_words = np.asarray(block_words, np.int64)
    if len(block_words) != counts.size:
        raise _Corrupt
    plain_words = -(-counts * s.value_bits // W)
    coded = block_words < plain_words
    if not np.array_equal(block_words[~coded], plain_words[~coded]):
        raise _Corrupt
    bstart = np.concatenate([[0], np.cumsum(block_words)[:-1]]) * W
    nb = counts.size
    w = _stream64(payload)
    nbytes = B * s.value_bits // 8
    buf = np.concatenate([payload, np.zeros(nbytes, np.uint8)])
    table = _value_table(s)
    out = np.empty(n, np.uint16)
    per = max(1, DECODE_PIECE // B)                     # blocks per piece: bounded temporaries
    for b0 in range(0, nb, per):
        b1 = min(nb, b0 + per)
        code = np.zeros((b1 - b0, B), np.int32)
        sm = np.zeros((b1 - b0, B), np.int32)
        cb = b0 + np.flatnonzero(coded[b0:b1])
        if cb.size:
            _unpack_gecko_fast(w, cb, bstart, block_words, counts, s, code, sm, b0)
        rec = (((sm >> m) << (e + m)) | (code << m) | (sm & ((1 << m) - 1))).astype(np.uint16)   # int32: fits
        pb = b0 + np.flatnonzero(~coded[b0:b1])
        if pb.size:                                     # blocks stored plain (format.md 5.2)
            rows = buf[(bstart[pb] // 8)[:, None] + np.arange(nbytes)]
            if s.value_bits == 16:
                rec[pb - b0] = rows.view("<u2")
            else:
                rec[pb - b0] = _unpack8(rows.reshape(-1, s.value_bits), s.value_bits).reshape(pb.size, B)
        lo, hi = b0 * B, min(n, b1 * B)
        out[lo:hi] = table[rec.reshape(-1)[:hi - lo]]
    return out
