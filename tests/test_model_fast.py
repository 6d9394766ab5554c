"""sfp.model.fast against the reference (sfp.model.container), bit for bit.

The reference is the definition; the fast path must produce the same file
bytes on encode and the same array on decode, for every 16-bit pattern
(exhaustive), over Hypothesis-drawn settings, shapes and value
distributions, on real training tensors, and for the refusals (same
FormatError).  Settings the fast path does not cover must fall back to the
reference (same bytes as well).
"""

from __future__ import annotations

import io

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from sfp.codec_cmd import save_npy_bits
from sfp.model import container, fast
from sfp.model.formats import FormatError, Settings

ALL16 = np.arange(1 << 16, dtype=np.uint16)


def _same(x, s: Settings):
    try:
        ref = container.encode(x, s)
    except FormatError as exc:
        with pytest.raises(FormatError) as got_exc:
            fast.encode(x, s)
        assert str(got_exc.value) == str(exc)
        return None
    got = fast.encode(x, s)
    assert got == ref, s
    a, b = container.decode(ref), fast.decode(ref)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))
    return ref


@pytest.mark.parametrize("source", ["bf16", "fp16"])
@pytest.mark.parametrize("man_exp", [(None, None), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (6, 8), (7, 8), (9, 5), (10, 5)])
@pytest.mark.parametrize("rounding", ["rne", "rz"])
def test_every_pattern(source, man_exp, rounding):
    m, e = man_exp
    if source == "bf16" and (m or 0) > 7 or source == "fp16" and (e or 0) > 5:
        pytest.skip("not a container of this source")
    for base in ("auto", 0, 100 if source == "bf16" else 10):
        _same(ALL16, Settings(source=source, man_bits=m, exp_bits=e, exp_base=base, rounding=rounding))
        _same(ALL16, Settings(source=source, man_bits=m, exp_bits=e, exp_base=base, rounding=rounding, gecko=True))
    # stochastic rounding: every pattern takes either carry over a few seeds (tables of both)
    for seed in (1, 2, 3, 0xDEADBEEF):
        st_s = Settings(source=source, man_bits=m, exp_bits=e, rounding="stochastic", seed=seed)
        _same(ALL16, st_s)
        _same(np.random.default_rng(seed).permutation(ALL16), st_s.with_(gecko=True))
    # shuffled and without specials/sign where that is legal
    rng = np.random.default_rng(1)
    x = rng.permutation(ALL16)
    _same(x, Settings(source=source, man_bits=m, exp_bits=e, rounding=rounding, specials=True, block=64, word=256))
    _same(x, Settings(source=source, man_bits=m, exp_bits=e, rounding=rounding, gecko=True, group=8, block=64))
    pos = x[(x < 0x7F80) if source == "bf16" else (x < 0x7C00)]
    _same(pos, Settings(source=source, man_bits=m, exp_bits=e, rounding=rounding, sign=False, specials=False))


def test_refusals_are_the_references():
    neg = np.array([0x3F80, 0x0000, 0x8000, 0xFFC1, 0xBF80], np.uint16)    # -0 and -NaN allowed, -1.0 not
    for s in (Settings(man_bits=3, exp_bits=5, sign=False), Settings(man_bits=3, exp_bits=5, specials=False)):
        for x in (neg, np.array([0x3F80, 0x7F80], np.uint16), np.array([0x8000, 0xFFC1], np.uint16)):
            try:
                ref = container.encode(x, s)
            except FormatError as exc:
                with pytest.raises(FormatError, match=str(exc).replace("(", r"\(").replace(")", r"\)")):
                    fast.encode(x, s)
            else:
                assert fast.encode(x, s) == ref
    with pytest.raises(FormatError):
        fast.encode(np.zeros(4, np.float16), Settings(source="bf16"))          # the reference's dtype check


def test_uncovered_settings_fall_back():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(3000) * 0.1).astype(ml_dtypes.bfloat16)
    for s in (Settings(man_bits=3, exp_bits=5, block=4), Settings(source="fp32", man_bits=5),
              Settings(source="fp32", man_bits=5, gecko=True)):
        assert not fast.covered(s)
        _same(x.astype(np.float32) if s.source == "fp32" else x, s)


def test_stochastic_rounding_across_pieces():
    """Stochastic rounding (index-dependent) over more values than one processing piece, and its refusal index."""
    rng = np.random.default_rng(3)
    n = container.CHUNK_VALUES * 2 + 777
    x = (rng.standard_normal(n) * 0.1).astype(ml_dtypes.bfloat16)
    for seed in (0, 1, 0xFFFFFFFF):
        _same(x, Settings(man_bits=2, exp_bits=4, rounding="stochastic", seed=seed))
    _same(x, Settings(man_bits=2, exp_bits=4, rounding="stochastic", seed=3, gecko=True))
    _same(x.view(np.uint16).reshape(7, -1) if n % 7 == 0 else x.reshape(1, -1),
          Settings(source="fp16", man_bits=4, exp_bits=5, rounding="stochastic", seed=5))
    y = np.abs(x)
    y[container.CHUNK_VALUES + 5] = -1
    _same(y, Settings(man_bits=2, exp_bits=4, rounding="stochastic", sign=False))


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hypothesis_settings_shapes_values(data):
    source = data.draw(st.sampled_from(["bf16", "fp16"]))
    width_e = 8 if source == "bf16" else 5
    width_m = 7 if source == "bf16" else 10
    e = data.draw(st.integers(2, width_e))
    m = data.draw(st.integers(0, width_m))
    s = Settings(source=source, man_bits=m, exp_bits=e, rounding=data.draw(st.sampled_from(["rne", "rz", "stochastic"])),
                 seed=data.draw(st.integers(0, 2**32 - 1)),
                 exp_base=data.draw(st.sampled_from(["auto", 0, 3, 120])) if source == "bf16" else
                 data.draw(st.sampled_from(["auto", 0, 9])),
                 specials=data.draw(st.booleans()), sign=data.draw(st.booleans()), block=data.draw(st.sampled_from([8, 16, 64, 256, 1024])),
                 gecko=data.draw(st.booleans()), group=data.draw(st.sampled_from([4, 8])),
                 word=data.draw(st.sampled_from([64, 128, 256, 512])))
    n = data.draw(st.integers(0, 3000))
    kind = data.draw(st.sampled_from(["normal", "patterns", "wide"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    if kind == "patterns":
        x = rng.integers(0, 1 << 16, n).astype(np.uint16)
    else:
        scale = 1e-3 if kind == "normal" else 1e3
        f = (rng.standard_normal(n) * scale * np.exp2(rng.integers(-20, 20, n))).astype(np.float32)
        if data.draw(st.booleans()):
            f = np.abs(f)
        with np.errstate(over="ignore"):      # beyond fp16's range: Inf, which is a case too
            x = f.astype(ml_dtypes.bfloat16) if source == "bf16" else f.astype(np.float16)
    shape = data.draw(st.sampled_from([(n,), (1, n)]))
    _same(x.reshape(shape), s)


@pytest.fixture(scope="module")
def real():
    from sfp.train.tensors import ensure_tensors
    with np.load(ensure_tensors()) as z:
        return {k: z[k] for k in sorted(z.files)[:12]}


def test_real_tensors(real):
    for name, a in real.items():
        x = np.asarray(a, np.float32).astype(ml_dtypes.bfloat16)
        for s in (Settings(man_bits=2, exp_bits=4), Settings(man_bits=3, exp_bits=5), Settings(exp_base=0),
                  Settings(man_bits=2, exp_bits=4, gecko=True), Settings(exp_base=0, gecko=True)):
            _same(x, s)


def test_cli_npy_bytes_are_np_save_of_the_reference():
    """sfp decode writes the decoded tensor without ml_dtypes: the same .npy bytes as np.save."""
    cases = [(np.arange(-50, 50, dtype=np.float32).reshape(10, 10).astype(ml_dtypes.bfloat16), "bf16"),
             (np.arange(12, dtype=np.float16).reshape(3, 4), "fp16"), (np.arange(7, dtype=np.float32), "fp32"),
             (np.arange(9, dtype=np.uint16), "bf16"), (np.arange(9, dtype=np.uint32), "fp32"),
             (np.float32(3.0), "fp32"), (np.zeros((0, 3), ml_dtypes.bfloat16), "bf16")]
    for x, src in cases:
        data = container.encode(x, Settings(source=src))
        want = io.BytesIO()
        np.save(want, container.decode(data))
        bits, e = fast.decode_bits(data)
        got = io.BytesIO()
        save_npy_bits(got, bits, e.settings.source, e.raw_bits)
        assert got.getvalue() == want.getvalue(), (src, x.dtype)


def test_gecko_decoding_in_pieces(monkeypatch):
    """Gecko decoding works piece by piece (bounded memory): tiny pieces give the reference's values."""
    monkeypatch.setattr(fast, "DECODE_PIECE", 64)
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(20_000 + 13) * 0.05).astype(ml_dtypes.bfloat16)
    x[rng.random(x.size) < 0.3] = 0
    for s in (Settings(man_bits=2, exp_bits=4, gecko=True), Settings(exp_base=0, gecko=True, block=64, group=16)):
        _same(x, s)


def test_gecko_corrupted_images_fail_like_the_reference():
    """Payloads damaged under valid checksums: the same array or the same FormatError as the reference."""
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(5000) * 0.05).astype(ml_dtypes.bfloat16)
    x[rng.random(x.size) < 0.3] = 0
    e = container.parse(container.encode(x, Settings(man_bits=2, exp_bits=4, gecko=True, block=64, group=16)))
    raised = 0
    for trial in range(40):
        p = bytearray(e.payload)
        for i in rng.integers(0, len(p), 1 + trial % 4):
            p[i] ^= 1 << int(rng.integers(0, 8))
        bad = container.Encoded(e.settings, e.shape, e.block_words, bytes(p), e.raw_bits)
        data = container.header_bytes(bad) + bytes(p)
        try:
            want = container.decode(data)
        except FormatError as exc:
            raised += 1
            with pytest.raises(FormatError) as got:
                fast.decode(data)
            assert str(got.value) == str(exc)
        else:
            assert np.array_equal(fast.decode(data).view(np.uint16), want.view(np.uint16))
    assert raised > 0          # the damage did reach the refusals


def test_random_bits_are_the_references():
    from sfp.model.quantize import stochastic_bits
    for n, seed, drop, start in ((1000, 0, 1, 0), (5000, 0xFFFFFFFF, 7, 123), (300, 7, 20, (1 << 32) - 150),
                                 (10, 1, 0, 5), (70000, 0x9E3779B9, 23, 1 << 40)):
        assert np.array_equal(fast._random_bits(n, seed, drop, start), stochastic_bits(n, seed, drop, start))
