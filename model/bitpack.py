"""Placing fields of 0..32 bits at arbitrary bit offsets of a little-endian bit stream.

Bit ``k`` of the stream is bit ``k % 8`` of byte ``k // 8`` (format.md 4.1), so
a stream of 32-bit little-endian words is the same bytes as a stream of
W-bit words for any W.  Both directions are vectorized: packing sums each
field's low and high parts into 32-bit words (the fields never overlap, so a
sum is an OR, and every partial sum stays below 2^53, exact in float64).
"""

from __future__ import annotations

import numpy as np

__all__ = ["pack", "unpack", "to_bytes", "from_bytes"]

_U32 = np.uint64(0xFFFFFFFF)


def pack(values, widths, offsets, total_bits: int) -> np.ndarray:
    """uint32 words holding ``values`` (each masked to its width) at ``offsets``."""
    nwords = (int(total_bits) + 31) // 32
    off = np.asarray(offsets, np.int64)
    widths = np.broadcast_to(np.asarray(widths, np.uint64), off.shape)
    v = np.asarray(values).astype(np.uint64) & ((np.uint64(1) << widths) - np.uint64(1))
    idx = off >> 5
    sh = (off & 31).astype(np.uint64)
    lo = ((v << sh) & _U32).astype(np.float64)
    hi = (v >> (np.uint64(32) - sh)).astype(np.float64)
    # A zero-width field may sit at offset == total_bits: its word index is nwords.
    acc = np.bincount(idx, weights=lo, minlength=nwords + 2)
    acc += np.bincount(idx + 1, weights=hi, minlength=nwords + 2)
    return acc[:nwords].astype(np.uint32)


def unpack(words: np.ndarray, widths, offsets) -> np.ndarray:
    """uint32 field values read back from ``words`` (bits past the end read as 0)."""
    off = np.asarray(offsets, np.int64)
    w = np.concatenate([words.astype(np.uint64), np.zeros(2, np.uint64)])
    idx = np.minimum(off >> 5, words.size)   # reads past the end see zeros
    sh = (off & 31).astype(np.uint64)
    both = w[idx] | (w[idx + 1] << np.uint64(32))
    widths = np.broadcast_to(np.asarray(widths, np.uint64), off.shape)
    return ((both >> sh) & ((np.uint64(1) << widths) - np.uint64(1))).astype(np.uint32)


def to_bytes(words: np.ndarray, nbytes: int) -> bytes:
    b = words.astype("<u4").tobytes()
    return b[:nbytes] + bytes(max(0, nbytes - len(b)))


def from_bytes(data: bytes) -> np.ndarray:
    pad = (-len(data)) % 4
    return np.frombuffer(bytes(data) + bytes(pad), "<u4").astype(np.uint32)
