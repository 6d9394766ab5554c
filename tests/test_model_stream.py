"""sfp.model.stream (the unpacker on arbitrary word streams) against independent expectations.

* Valid images (plain and Gecko, real training tensors and synthetic data):
  the values are ``quantize(x)`` and no error is flagged.
* Truncated / extended streams where the expected cut is known by hand
  (one 128-bit word per 8-value beat), and refused tensors.
* Corrupted Gecko images: the stream model flags an error exactly when the
  container decoder (``sfp.model.container.decode``, a separate vectorized
  implementation) rejects the same image, and returns the same values
  when neither does; wrong ``s_len`` entries are always flagged.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from sfp.model.container import decode, encode, encode_image
from sfp.model.formats import FormatError, Settings
from sfp.model.quantize import quantize
from sfp.model.stream import unpack_stream
from sfp.sim_tests.packer_ref import real_tensor_bits


def words_of(payload: bytes, W: int) -> list[int]:
    nb = W // 8
    return [int.from_bytes(payload[i:i + nb], "little") for i in range(0, len(payload), nb)]


def image(x, s: Settings):
    e = encode_image(x, s, strict=False)
    return words_of(e.payload, s.word), [int(v) for v in e.block_words], e.settings


@functools.lru_cache(maxsize=None)
def _real(n: int, key: str, offset: int) -> np.ndarray:
    return real_tensor_bits("bf16", key, n, offset).astype(np.uint16)


def real(n: int, key: str = "act", offset: int = 0) -> np.ndarray:
    return _real(n, key, offset).copy()


CASES = [
    (Settings(man_bits=7, exp_bits=8, exp_base=0), 8, False),
    (Settings(man_bits=2, exp_bits=4, word=64, block=64), 4, False),
    (Settings(man_bits=3, exp_bits=5, sign=False, block=32, word=256), 16, False),
    (Settings(man_bits=2, exp_bits=8, gecko=True, exp_base=0), 8, True),
    (Settings(man_bits=1, exp_bits=4, gecko=True, block=64, group=16), 2, True),
    (Settings(man_bits=3, exp_bits=8, gecko=False, block=64), 4, True),    # plain tensor, Gecko build
]


@pytest.mark.parametrize("s,lanes,gb", CASES)
@pytest.mark.parametrize("key", ["act", "grad", "weight"])
def test_valid_images_decode_exactly(s, lanes, gb, key):
    x = real(1000 + lanes, key)
    words, lens, rs = image(x, s)
    r = unpack_stream(words, rs, x.size, lanes, s_len=lens, gecko_build=gb)
    want = quantize(x, rs, strict=False).astype(np.uint32)
    assert r.error is None and r.good == x.size
    assert r.beats == -(-x.size // lanes)
    assert np.array_equal(r.values[:x.size], want)
    assert not r.values[x.size:].any()
    assert r.status == {"negative": 0, "special": 0, "unsupported": 0, "corrupt": 0, "length_error": 0,
                        "values": x.size, "words": len(words)}


def test_truncated_plain_stream_zeroes_from_the_first_missing_word():
    # bf16 lossless, W = 128, one block: each 8-value beat is exactly one word,
    # so a stream cut to R words decodes exactly 8R values.
    s = Settings(man_bits=7, exp_bits=8, exp_base=0, block=4096)
    x = real(800)
    words, _, rs = image(x, s)
    assert len(words) == 100
    want = quantize(x, rs, strict=False).astype(np.uint32)
    for R in (1, 37, 99):
        r = unpack_stream(words[:R], rs, x.size, 8)
        assert r.error == "length" and r.good == 8 * R
        assert np.array_equal(r.values[:8 * R], want[:8 * R]) and not r.values[8 * R:].any()
        assert r.status["length_error"] == 1 and r.status["words"] == R and r.status["values"] == 800


def test_extended_stream_is_a_length_error_with_every_value_exact():
    s = Settings(man_bits=7, exp_bits=8, exp_base=0)
    x = real(800)
    words, _, rs = image(x, s)
    r = unpack_stream(words + [123, 456], rs, x.size, 8)
    assert r.error == "length" and r.good == 800 and r.status["words"] == len(words) + 2
    assert np.array_equal(r.values, quantize(x, rs, strict=False).astype(np.uint32))


def test_block_padding_word_missing():
    # v = 6, B = 16: 96 bits per block -> 1 word of 128 each; 3 blocks; cut after 2
    s = Settings(man_bits=1, exp_bits=4, sign=True, exp_base=120, block=16)
    x = real(48)
    words, _, rs = image(x, s)
    assert len(words) == 3
    r = unpack_stream(words[:2], rs, 48, 4)
    assert r.error == "length" and r.good == 32


@pytest.mark.parametrize("length", [0, 1, 17])
def test_refused_tensor_still_has_its_beats(length):
    r = unpack_stream([5, 6, 7], None, length, 8, supported=False)
    assert r.error == "unsupported" and r.beats == -(-length // 8) and not r.values.any()
    assert r.status["unsupported"] == 1 and r.status["words"] == 3 and r.status["values"] == length
    r = unpack_stream([5], Settings(), 0, 8)                 # length 0 is refused too
    assert r.error == "unsupported" and r.beats == 0


GECKO = [
    (Settings(man_bits=2, exp_bits=8, gecko=True, exp_base=0, block=256, group=32), "act"),
    (Settings(man_bits=1, exp_bits=4, gecko=True, block=64, group=16), "grad"),
    (Settings(man_bits=0, exp_bits=3, gecko=True, sign=False, block=32, group=8, word=64), "weight"),
]


@pytest.mark.parametrize("s,key", GECKO)
def test_corrupt_gecko_agrees_with_the_container_decoder(s, key):
    rng = np.random.default_rng(7)
    x = real(600, key, offset=3000)
    if not s.sign:
        x = x & 0x7FFF
    e = encode_image(x, s, strict=False)
    assert (e.block_words < -(-np.minimum(600 - np.arange(len(e.block_words)) * s.block, s.block)
                               * e.settings.value_bits // s.word)).any(), "want Gecko-coded blocks"
    W = s.word
    flagged = 0
    for trial in range(150):
        pay = bytearray(e.payload)
        for _ in range(int(rng.integers(1, 4))):
            bit = int(rng.integers(0, len(pay) * 8))
            pay[bit // 8] ^= 1 << (bit % 8)
        words = words_of(bytes(pay), W)
        r = unpack_stream(words, e.settings, 600, 8, s_len=list(e.block_words), gecko_build=True)
        e2 = type(e)(e.settings, e.shape, e.block_words, bytes(pay), True)
        from sfp.model.container import header_bytes
        try:
            ref = decode(header_bytes(e2) + bytes(pay)).astype(np.uint32)
        except FormatError:
            ref = None
        assert (ref is None) == (r.error is not None), trial
        if ref is None:
            flagged += 1
            assert r.error == "corrupt" and r.good < 600 and not r.values[r.good:].any()
        else:
            assert np.array_equal(r.values[:600], ref)
    assert flagged >= 10                      # the corruptions do exercise the checks


@pytest.mark.parametrize("s,key", GECKO)
def test_wrong_block_index_entries_are_flagged(s, key):
    x = real(600, key)
    if not s.sign:
        x = x & 0x7FFF
    words, lens, rs = image(x, s)
    for b in range(len(lens)):
        for d in (-1, 1):
            bad = list(lens)
            bad[b] += d
            if bad[b] < 0:
                continue
            r = unpack_stream(words, rs, 600, 8, s_len=bad, gecko_build=True)
            assert r.error in ("corrupt", "length"), (b, d)
            assert r.good <= b * s.block + s.block


@pytest.mark.parametrize("s,key", GECKO)
def test_gecko_stream_cut_short_or_long(s, key):
    x = real(600, key)
    if not s.sign:
        x = x & 0x7FFF
    words, lens, rs = image(x, s)
    want = quantize(x, rs, strict=False).astype(np.uint32)
    for R in (1, len(words) // 2, len(words) - 1):
        r = unpack_stream(words[:R], rs, 600, 8, s_len=lens, gecko_build=True)
        assert r.error == "length" and r.status["words"] == R
        # what was decoded is exact; the cut lies in the block holding word R
        assert np.array_equal(r.values[:r.good], want[:r.good]) and not r.values[r.good:].any()
        blk = int(np.searchsorted(np.cumsum(lens), R, side="right"))
        assert blk * s.block <= r.good <= (blk + 1) * s.block
    r = unpack_stream(words + [0], rs, 600, 8, s_len=lens, gecko_build=True)
    assert r.error == "length" and r.good == 600 and np.array_equal(r.values[:600], want)


def test_gecko_header_with_b0_and_flags_is_rejected_by_both():
    # G = 8, e = 4: a group of all-zero codes has header b = 0, z = 0, k = 0; set k
    s = Settings(man_bits=0, exp_bits=4, gecko=True, exp_base=100, block=64, group=8, word=64)
    x = np.zeros(64, np.uint16)
    data = encode(x, s)
    e = encode_image(x, s)
    assert e.block_words[0] < 64 * 5 // 64
    pay = bytearray(e.payload)
    pay[0] |= 1 << 5                              # k's low bit (header bits: b 0-3, z 4, k 5-6)
    words = words_of(bytes(pay), 64)
    r = unpack_stream(words, e.settings, 64, 8, s_len=list(e.block_words), gecko_build=True)
    assert r.error == "corrupt" and r.good == 0
    from sfp.model.container import header_bytes
    with pytest.raises(FormatError, match="b = 0"):
        decode(header_bytes(type(e)(e.settings, e.shape, e.block_words, bytes(pay), True)) + bytes(pay))
    assert decode(data).size == 64
