"""The ``.sfpc`` file: a header with settings, shape, block index and checksums, then the DRAM image.

Layout (all integers little-endian; format.md section 6)::

    0   4  magic  b"SFPC"
    4   2  version (1)
    6   1  source (0 bf16, 1 fp32, 2 fp16)
    7   1  man_bits
    8   1  exp_bits
    9   1  exp_base (resolved, never "auto")
    10  1  flags: bit0 sign stored, bit1 specials kept, bit2 gecko, bit3 input was bit patterns, bits4-5 rounding (0 rne, 1 rz, 2 stochastic)
    11  1  ndim
    12  2  word bits W
    14  2  group G
    16  4  block B
    20  4  seed
    24  8  number of values n
    32  8*ndim  shape
    ..  4  number of blocks nb
    ..  4*nb  words per block
    ..  4  CRC-32 of the payload
    ..  4  CRC-32 of every header byte before this field
    ..     payload: sum(words per block) * W/8 bytes, exactly what the packer writes
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from . import bitpack
from .blocks import pack_image, unpack_image
from .formats import FormatError, ROUNDINGS, SOURCES_BY_CODE, Settings
from .quantize import as_bits, from_bits, from_fields, resolve, to_fields

__all__ = ["MAGIC", "VERSION", "Encoded", "encode", "decode", "encode_image", "parse", "header_bytes"]

MAGIC = b"SFPC"
VERSION = 1
_FIXED = struct.Struct("<4sHBBBBBBHHII Q")


@dataclass
class Encoded:
    settings: Settings        # resolved (exp_base is an int)
    shape: tuple
    block_words: np.ndarray   # W-bit words per block
    payload: bytes            # the DRAM image
    raw_bits: bool = False    # the input was unsigned bit patterns; decode returns the same

    @property
    def n(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


# Tensors are processed in pieces of whole blocks: blocks are independent and
# word-aligned, so the pieces' images simply concatenate, and the temporaries
# stay small enough to be cache- and allocator-friendly.
CHUNK_VALUES = 1 << 18


def _chunk(s: Settings) -> int:
    return max(s.block, CHUNK_VALUES // s.block * s.block)


def encode_image(x, s: Settings, strict: bool = True) -> Encoded:
    """Quantize and pack ``x``: the image the hardware writes, with its block index."""
    x = np.asarray(x)
    bits = as_bits(x, s.source)
    s = resolve(x, s)
    step = _chunk(s)
    images, index = [], []
    for i in range(0, bits.size, step):
        fields, _ = to_fields(bits[i:i + step], s, strict=strict, start=i)
        words, block_words = pack_image(fields, s)
        images.append(bitpack.to_bytes(words, int(block_words.sum()) * s.word // 8))
        index.append(block_words)
    block_words = np.concatenate(index) if index else np.zeros(0, np.int64)
    return Encoded(s, tuple(x.shape), block_words, b"".join(images), x.dtype.kind == "u")


def header_bytes(e: Encoded, payload_crc: int | None = None) -> bytes:
    s = e.settings
    flags = (s.sign << 0) | (s.specials << 1) | (s.gecko << 2) | (e.raw_bits << 3) | (ROUNDINGS.index(s.rounding) << 4)
    head = _FIXED.pack(MAGIC, VERSION, s.src.code, s.man_bits, s.exp_bits, s.exp_base, flags,
                       len(e.shape), s.word, s.group, s.block, s.seed, e.n)
    head += struct.pack(f"<{len(e.shape)}Q", *e.shape)
    head += struct.pack(f"<I{len(e.block_words)}I", len(e.block_words), *map(int, e.block_words))
    crc = zlib.crc32(e.payload) if payload_crc is None else payload_crc
    head += struct.pack("<I", crc)
    return head + struct.pack("<I", zlib.crc32(head))


def encode(x, s: Settings) -> bytes:
    """The complete ``.sfpc`` file for tensor ``x``."""
    e = encode_image(x, s)
    return header_bytes(e) + e.payload


def _take(data: bytes, pos: int, n: int, what: str) -> bytes:
    if pos + n > len(data):
        raise FormatError(f"truncated file: {what} needs {pos + n} bytes, file has {len(data)}")
    return data[pos:pos + n]


def parse(data: bytes) -> Encoded:
    """Check and split an ``.sfpc`` file; raises :class:`FormatError` on anything malformed."""
    data = bytes(data)
    fixed = _take(data, 0, _FIXED.size, "header")
    (magic, version, src, m, e, base, flags, ndim, word, group, block, seed, n) = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise FormatError("not an .sfpc file (bad magic)")
    if version != VERSION:
        raise FormatError(f"unsupported .sfpc version {version} (this reader knows {VERSION})")
    pos = _FIXED.size
    shape = struct.unpack(f"<{ndim}Q", _take(data, pos, 8 * ndim, "shape"))
    pos += 8 * ndim
    (nb,) = struct.unpack("<I", _take(data, pos, 4, "block count"))
    pos += 4
    if nb > len(data):
        raise FormatError("corrupted header: impossible block count")
    block_words = np.frombuffer(_take(data, pos, 4 * nb, "block index"), "<u4").astype(np.int64)
    pos += 4 * nb
    payload_crc, head_crc = struct.unpack("<II", _take(data, pos, 8, "checksums"))
    if zlib.crc32(data[:pos + 4]) != head_crc:
        raise FormatError("corrupted header (checksum mismatch)")
    pos += 8
    if src not in SOURCES_BY_CODE or (flags >> 4) >= len(ROUNDINGS) or flags & 0b11000000:
        raise FormatError("corrupted header: unknown source or flags")
    if int(np.prod(shape, dtype=np.int64)) != n:
        raise FormatError("corrupted header: shape does not match the value count")
    s = Settings(source=SOURCES_BY_CODE[src].name, man_bits=m, exp_bits=e, exp_base=base,
                 sign=bool(flags & 1), specials=bool(flags & 2), gecko=bool(flags & 4),
                 rounding=ROUNDINGS[flags >> 4], seed=seed, group=group, block=block, word=word)
    size = int(block_words.sum()) * word // 8
    if len(data) - pos < size:
        raise FormatError(f"truncated file: payload has {len(data) - pos} of {size} bytes")
    if len(data) - pos > size:
        raise FormatError(f"{len(data) - pos - size} unexpected bytes after the payload")
    payload = data[pos:]
    if zlib.crc32(payload) != payload_crc:
        raise FormatError("corrupted payload (checksum mismatch)")
    return Encoded(s, tuple(shape), block_words, payload, bool(flags & 8))


def decode(data: bytes, as_float: bool | None = None) -> np.ndarray:
    """The tensor stored in an ``.sfpc`` file, in its shape.

    Returned as bit patterns (unsigned ints) or as the source's float type;
    by default, as the representation that was encoded.
    """
    e = parse(data)
    if as_float is None:
        as_float = not e.raw_bits
    s = e.settings
    words = bitpack.from_bytes(e.payload)
    out = np.empty(e.n, np.uint32)
    step = _chunk(s)
    per = step // s.block                       # blocks per piece
    starts = np.concatenate([[0], np.cumsum(e.block_words)]) * (s.word // 32)
    for b in range(0, len(e.block_words), per):
        lo, hi = b * s.block, min(e.n, (b + per) * s.block)
        piece = words[starts[b]:starts[min(b + per, len(e.block_words))]]
        fields = unpack_image(piece, e.block_words[b:b + per], s, hi - lo)
        out[lo:hi] = from_fields(fields, s)
    return from_bits(out, s.source, e.shape, as_float=as_float)
