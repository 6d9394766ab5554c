"""A reader rejects malformed .sfpc files with FormatError (format.md section 6).

* Any single changed byte: the two CRC-32s (header, payload) detect every
  error burst of up to 32 bits, so every position and several XOR patterns
  must be rejected.
* Truncation at every length, trailing bytes.
* Wrong magic / version / flags / source / settings / shape / block index,
  with the checksums recomputed so that the field check itself is exercised.
* Payload garbage with valid checksums: decode either returns a tensor or
  raises FormatError; never another exception (a CLI traceback).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sfp.model.container import decode, encode, parse
from sfp.model.formats import FormatError, Settings

rng = np.random.default_rng(42)
_X = ((rng.integers(118, 130, 150).astype(np.uint32) << 7) | rng.integers(0, 128, 150).astype(np.uint32)).astype(np.uint16)
_X[::7] = 0
SMALL = {
    "plain": (_X[:37], Settings(man_bits=3, exp_bits=4, word=64, block=16)),
    "gecko": (_X.reshape(10, 15), Settings(man_bits=1, exp_bits=8, exp_base=0, gecko=True, group=8, block=32, word=64)),
    "fp32-0d": (np.array(3.5, np.float32), Settings(source="fp32", man_bits=20, exp_bits=6)),
    "fp16-empty": (np.zeros((0, 3), np.float16), Settings(source="fp16", gecko=True, group=4, block=4)),
}


def header_end(data: bytes) -> int:
    """Offset of the header checksum field."""
    ndim = data[11]
    pos = 32 + 8 * ndim
    (nb,) = struct.unpack_from("<I", data, pos)
    return pos + 4 + 4 * nb + 4


def recrc(data: bytes) -> bytes:
    """Recompute both checksums (format.md 6) so that a doctored file passes them."""
    h = header_end(data)
    payload = data[h + 4:]
    head = bytearray(data[:h])
    head[h - 4:h] = struct.pack("<I", zlib.crc32(payload))
    return bytes(head) + struct.pack("<I", zlib.crc32(bytes(head))) + payload


def test_recrc_is_identity_on_good_files():
    for x, s in SMALL.values():
        data = encode(x, s)
        assert recrc(data) == data


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_single_byte_change_is_rejected(name):
    x, s = SMALL[name]
    data = encode(x, s)
    y = decode(data)
    assert y.shape == np.asarray(x).shape
    for pos in range(len(data)):
        for flip in (0x01, 0x80, 0xFF, 0x5A):
            bad = bytearray(data)
            bad[pos] ^= flip
            with pytest.raises(FormatError):
                decode(bytes(bad))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_truncation_and_trailing_bytes(name):
    x, s = SMALL[name]
    data = encode(x, s)
    for n in range(len(data)):
        with pytest.raises(FormatError):
            decode(data[:n])
    for extra in (b"\0", b"\0" * 4, b"\x01" * 16, data):
        with pytest.raises(FormatError):
            decode(data + extra)


def _doctor(data: bytes, offset: int, fmt: str, value) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return recrc(bytes(b))


@pytest.mark.parametrize("offset, fmt, value, what", [
    (0, "<4s", b"SFPD", "magic"),
    (0, "<4s", b"\0\0\0\0", "magic"),
    (4, "<H", 0, "version"),
    (4, "<H", 2, "version"),
    (6, "<B", 3, "source"),
    (7, "<B", 8, "man_bits > 7 for bf16"),
    (8, "<B", 1, "exp_bits < 2"),
    (8, "<B", 9, "exp_bits > 8"),
    (9, "<B", 254, "exp_base > E_fmax - 1"),
    (10, "<B", 0b0011_0011, "rounding 3"),
    (10, "<B", 0b0100_0011, "flag bit 6"),
    (10, "<B", 0b1000_0011, "flag bit 7"),
    (12, "<H", 100, "word"),
    (14, "<H", 3, "group"),
    (14, "<H", 512, "group"),
    (16, "<I", 3, "block"),
    (16, "<I", 1 << 17, "block"),
    (24, "<Q", 36, "n != prod(shape)"),
    (24, "<Q", 38, "n != prod(shape)"),
    (32, "<Q", 36, "shape != n"),
])
def test_bad_header_fields_with_valid_checksums(offset, fmt, value, what):
    x, s = SMALL["plain"]          # shape (37,), 3 blocks of 16
    data = encode(x, s)
    with pytest.raises(FormatError):
        decode(_doctor(data, offset, fmt, value))


def test_gecko_with_block_not_multiple_of_group_rejected():
    x, s = SMALL["gecko"]          # group 8, block 32
    data = encode(x, s)
    with pytest.raises(FormatError):
        decode(_doctor(data, 14, "<H", 64))


def test_block_index_must_match_the_layout():
    x, s = SMALL["plain"]          # 37 values of 8 bits in 64-bit words, blocks of 16: L = 2, 2, 1
    data = encode(x, s)
    assert parse(data).block_words.tolist() == [2, 2, 1]
    nb_at = 32 + 8
    assert struct.unpack_from("<I", data, nb_at)[0] == 3
    # swap two lengths (same total: the payload is unchanged and its CRC still fits)
    with pytest.raises(FormatError):
        decode(_swap_index(data, nb_at, 1, 2))
    # wrong block count
    b = bytearray(data)
    struct.pack_into("<I", b, nb_at, 2)
    b = bytes(b[:nb_at + 4 + 8]) + bytes(b[nb_at + 4 + 12:])
    with pytest.raises(FormatError):
        decode(recrc(b))


def _swap_index(data, nb_at, i, j):
    b = bytearray(data)
    li = struct.unpack_from("<I", b, nb_at + 4 + 4 * i)[0]
    lj = struct.unpack_from("<I", b, nb_at + 4 + 4 * j)[0]
    struct.pack_into("<I", b, nb_at + 4 + 4 * i, lj)
    struct.pack_into("<I", b, nb_at + 4 + 4 * j, li)
    return recrc(bytes(b))


def _gecko_file():
    """A tensor whose first block is Gecko-coded in 1 word (plain: 2), second plain."""
    x = np.array([0x3F80] * 8 + [E << 7 for E in (1, 200, 50, 250, 3, 100, 180, 20)], np.uint16)
    s = Settings(man_bits=0, exp_bits=8, exp_base=0, gecko=True, group=4, block=8, word=64)
    data = encode(x, s)
    assert parse(data).block_words.tolist() == [1, 2]
    return x, s, data


def test_gecko_block_longer_than_plain_rejected():
    x, s, data = _gecko_file()
    nb_at = 32 + 8
    b = bytearray(data)
    struct.pack_into("<I", b, nb_at + 4, 3)       # L_0 = 3 > plain 2: no layout gives that
    b = bytes(b) + bytes(16)                      # two more 64-bit words of payload
    with pytest.raises(FormatError):
        decode(recrc(b))


def test_gecko_block_with_extra_padding_word_rejected():
    x = np.array([0x3F80] * 32, np.uint16)
    s = Settings(man_bits=0, exp_bits=8, exp_base=0, gecko=True, group=4, block=32, word=64)
    data = encode(x, s)
    # plain: 32 * 9 = 288 bits = 5 words; Gecko: 8 groups * 19 bits = 152 bits = 3 words
    assert parse(data).block_words.tolist() == [3]
    nb_at = 32 + 8
    b = bytearray(data)
    struct.pack_into("<I", b, nb_at + 4, 4)       # 4 < 5 words: still "Gecko-coded" by length
    with pytest.raises(FormatError):
        decode(recrc(bytes(b) + bytes(8)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SMALL) + ["gecko-coded"]), st.data())
def test_payload_garbage_with_valid_checksums(name, data):
    """Decoding doctored payloads raises FormatError or returns a tensor of the right shape."""
    if name == "gecko-coded":
        _, _, good = _gecko_file()
        shape = (16,)
    else:
        x, s = SMALL[name]
        good, shape = encode(x, s), np.asarray(x).shape
    h = header_end(good) + 4
    if len(good) == h:
        return
    b = bytearray(good)
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(h, len(b) - 1))
        b[pos] = data.draw(st.integers(0, 255))
    try:
        y = decode(recrc(bytes(b)))
    except FormatError:
        return
    assert y.shape == shape
