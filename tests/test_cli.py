"""The ``sfp`` command line, run as a subprocess (``python -m sfp.cli``).

Round trips (encode -> decode gives exactly ``quantize``), ``stats --json``
against counts made by hand, and every class of bad input: exit status 2, one
line on stderr starting with ``sfp: error:`` (usage errors too), no traceback, and no output file (an
existing one is left untouched, and no temporary file is left behind).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from sfp.model.formats import Settings
from sfp.model.quantize import quantize

ROOT = Path(__file__).resolve().parents[1]


def sfp(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "sfp.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=120)


def save(path: Path, x) -> Path:
    np.save(path, x, allow_pickle=False)
    return path


def bf16_bits(values) -> np.ndarray:
    return np.asarray(values, np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)


def assert_ok(r):
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


def assert_user_error(r, *, usage=False):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("sfp: error: "), lines[0]
    if usage:
        assert "--help" in lines[0], lines[0]
    assert r.stdout == ""


def no_leftovers(directory: Path):
    assert not [p for p in os.listdir(directory) if p.startswith(".sfp-")]


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------

rng = np.random.default_rng(0)
F32 = (rng.standard_normal(1000) * np.exp2(rng.integers(-8, 8, 1000))).astype(np.float32).reshape(10, 100)
F32[0, :5] = [0.0, -0.0, np.inf, -np.inf, np.nan]


@pytest.mark.parametrize("kind, args", [
    ("bf16-bits", []),
    ("bf16-bits", ["--man-bits", "3", "--exp-bits", "5", "--gecko"]),
    ("bf16-float", ["--man-bits", "2", "--exp-bits", "4", "--exp-base", "120", "--rounding", "stochastic", "--seed", "77",
                    "--block", "64", "--group", "16", "--gecko", "--word", "512"]),
    ("fp32", ["--man-bits", "10", "--exp-bits", "6", "--rounding", "rz", "--word", "64", "--block", "8"]),
    ("fp32-bits", ["--man-bits", "0", "--exp-bits", "2"]),
    ("fp32-as-bf16", ["--source", "bf16", "--man-bits", "4", "--gecko"]),
    ("fp32-as-fp16", ["--source", "fp16", "--man-bits", "7", "--exp-bits", "5"]),
    ("fp16", ["--man-bits", "5", "--exp-bits", "3", "--gecko", "--group", "4", "--block", "4"]),
    ("nonneg", ["--no-sign", "--no-specials", "--man-bits", "1", "--exp-bits", "3"]),
])
def test_encode_decode_roundtrip(tmp_path, kind, args):
    x = {
        "bf16-bits": F32.astype(ml_dtypes.bfloat16).view(np.uint16),
        "bf16-float": F32.astype(ml_dtypes.bfloat16),
        "fp32": F32,
        "fp32-bits": F32.view(np.uint32),
        "fp32-as-bf16": F32,
        "fp32-as-fp16": F32,
        "fp16": F32.astype(np.float16),
        "nonneg": np.abs(F32[1:]).astype(ml_dtypes.bfloat16).view(np.uint16),
    }[kind]
    src = save(tmp_path / "x.npy", x)
    r = sfp("encode", src, "-o", tmp_path / "x.sfpc", *args)
    assert_ok(r)
    r = sfp("decode", tmp_path / "x.sfpc", "-o", tmp_path / "y.npy")
    assert_ok(r)
    y = np.load(tmp_path / "y.npy")
    # the same settings, as the model takes them
    kw, it = {}, iter(args)
    flags = {"--gecko": ("gecko", True), "--no-sign": ("sign", False), "--no-specials": ("specials", False)}
    for a in it:
        if a in flags:
            kw[flags[a][0]] = flags[a][1]
        else:
            key, v = a[2:].replace("-", "_"), next(it)
            kw[key] = v if key in ("source", "rounding") else int(v)
    if kind == "fp32-as-bf16":
        xin = F32.astype(ml_dtypes.bfloat16)       # rounded to nearest even first (format.md 1)
    elif kind == "fp32-as-fp16":
        xin = F32.astype(np.float16)
    else:
        xin = x
    natural = {np.dtype(np.uint16): "bf16", np.dtype(ml_dtypes.bfloat16): "bf16", np.dtype(np.float16): "fp16",
               np.dtype(np.float32): "fp32", np.dtype(np.uint32): "fp32"}[xin.dtype]
    kw["source"] = natural
    want = quantize(xin, Settings(**kw))
    assert y.shape == x.shape
    assert y.dtype.itemsize == want.dtype.itemsize
    assert y.tobytes() == want.tobytes()
    if x.dtype.kind == "u":
        assert y.dtype == x.dtype             # bit patterns in, bit patterns out
    elif want.dtype == ml_dtypes.bfloat16:    # bf16 floats out (np.save stores bfloat16 as |V2)
        assert y.dtype.itemsize == 2 and y.dtype.kind in "Vf"
    else:
        assert y.dtype == want.dtype          # floats in, floats out (the source's float type)


def test_lossless_defaults_roundtrip_exactly(tmp_path):
    x = F32[1:].astype(ml_dtypes.bfloat16).view(np.uint16)      # no Inf/NaN row
    x = x[(x & 0x7F80) != 0]                                    # no zeros/subnormals
    src = save(tmp_path / "x.npy", x)
    assert_ok(sfp("encode", src, "-o", tmp_path / "x.sfpc"))
    assert_ok(sfp("decode", tmp_path / "x.sfpc", "-o", tmp_path / "y.npy"))
    assert np.array_equal(np.load(tmp_path / "y.npy"), x)


# ---------------------------------------------------------------------------
# stats
# ---------------------------------------------------------------------------

def gecko_group_bits(codes, e):
    """Exponent bits of one group (format.md 5.1), written out directly."""
    b = max(codes)
    if b == 0:
        return e + 3
    z = int(0 in codes)
    sym = [0 if z and c == 0 else b - c + z for c in codes]
    best = len(codes) * e
    for k in (0, 1, 2):
        best = min(best, sum(k + min(y >> k, 8) + 1 + (e if y >> k >= 8 else 0) for y in sym))
    return e + 3 + best


def test_stats_json_hand_counted(tmp_path):
    # 150 x 1.0 then 150 x 2.0, lossless bf16: codes 127 and 128 (auto base 0), 16-bit records
    x = bf16_bits([1.0] * 150 + [2.0] * 150)
    src = save(tmp_path / "t.npy", x)
    for word in (128, 512):
        r = sfp("stats", src, "--json", "--word", word)
        assert_ok(r)
        out = json.loads(r.stdout)
        for key in ("values", "bits_per_value", "ratio_vs_fp32", "ratio_vs_bf16", "exp_entropy_bits", "gecko_exp_bits"):
            assert key in out and key in out["tensors"]["t.npy"], key
        # blocks of 256: 256 * 16 = 4096 bits = 32 words (or 8); 44 * 16 = 704 bits -> 6 x 128 or 2 x 512
        image = 4096 + (6 * 128 if word == 128 else 2 * 512)
        assert out["values"] == 300
        assert out["bits_per_value"] == pytest.approx(image / 300)
        assert out["ratio_vs_fp32"] == pytest.approx(32 * 300 / image)
        assert out["ratio_vs_bf16"] == pytest.approx(16 * 300 / image)
        assert out["exp_entropy_bits"] == pytest.approx(1.0)
        codes = [127] * 150 + [128] * 150
        gbits = sum(gecko_group_bits(codes[i:i + 32], 8) for i in range(0, 300, 32))
        assert gbits == 4 * 43 + (11 + 22 * 2 + 10) + 4 * 43 + (11 + 12)
        assert out["gecko_exp_bits"] == pytest.approx(gbits / 300)


def test_stats_npz_and_table(tmp_path):
    a = bf16_bits([1.0, 2.0, 4.0, 8.0] * 16)                          # 64 values, 4 codes equally: H = 2
    b = np.ones(100, np.float32)                                       # fp32, 1 code: H = 0
    path = tmp_path / "two.npz"
    np.savez(path, a=a, b=b)
    r = sfp("stats", path, "--json", "--block", "64", "--word", "64")
    assert_ok(r)
    out = json.loads(r.stdout)
    assert sorted(out["tensors"]) == ["a", "b"]
    assert out["values"] == 164
    ta, tb = out["tensors"]["a"], out["tensors"]["b"]
    assert ta["exp_entropy_bits"] == pytest.approx(2.0) and tb["exp_entropy_bits"] == pytest.approx(0.0)
    # a: one block of 64 x 16 bits = 16 words of 64; b: fp32 records of 32 bits, blocks 64 + 36:
    # 32 words + 18 words
    assert ta["bits_per_value"] == pytest.approx(16.0)
    assert tb["bits_per_value"] == pytest.approx((32 + 18) * 64 / 100)
    assert out["bits_per_value"] == pytest.approx((16 * 64 + 50 * 64) / 164)
    assert out["exp_entropy_bits"] == pytest.approx(2.0 * 64 / 164)
    r = sfp("stats", path)
    assert_ok(r)
    assert "a" in r.stdout and "TOTAL" in r.stdout


def test_stats_source_bf16_from_float32(tmp_path):
    x = np.array([1.0, 1.0039062, 3.0], np.float32)     # 1.0039062 rounds to bf16 1.0 or 1.0078125
    src = save(tmp_path / "f.npy", x)
    r = sfp("stats", src, "--json", "--source", "bf16", "--word", "64")
    assert_ok(r)
    out = json.loads(r.stdout)
    assert out["tensors"]["f.npy"]["settings"]["source"] == "bf16"
    assert out["bits_per_value"] == pytest.approx(64 / 3)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------

SENTINEL = b"do not touch\n"


def check_no_output(tmp_path, r, out: Path, *, usage=False):
    assert_user_error(r, usage=usage)
    assert not out.exists()
    no_leftovers(tmp_path)


@pytest.fixture
def good_npy(tmp_path):
    return save(tmp_path / "good.npy", bf16_bits([1.0, -2.0, 0.5, 3.0]))


@pytest.mark.parametrize("dtype", ["int16", "int32", "float64", "int8", "complex64", "bool"])
def test_unknown_dtype(tmp_path, dtype):
    src = save(tmp_path / "x.npy", np.ones(8, dtype))
    out = tmp_path / "x.sfpc"
    check_no_output(tmp_path, sfp("encode", src, "-o", out), out)
    assert_user_error(sfp("stats", src))


@pytest.mark.parametrize("dtype, source", [("float16", "bf16"), ("float32", "fp16x"), ("uint16", "fp32"), ("uint32", "bf16")])
def test_dtype_cannot_be_read_as_source(tmp_path, dtype, source):
    src = save(tmp_path / "x.npy", np.ones(8, dtype))
    out = tmp_path / "x.sfpc"
    r = sfp("encode", src, "-o", out, "--source", source)
    check_no_output(tmp_path, r, out, usage=source not in ("bf16", "fp16", "fp32"))


@pytest.mark.parametrize("args", [
    ["--man-bits", "8"], ["--man-bits", "-1"], ["--exp-bits", "1"], ["--exp-bits", "9"],
    ["--exp-base", "254"], ["--exp-base", "-1"], ["--exp-base", "abc"], ["--exp-base", "1.5"],
    ["--block", "3"], ["--block", "0"], ["--block", "131072"], ["--group", "3"], ["--group", "512"],
    ["--gecko", "--block", "16", "--group", "32"], ["--seed", "-1"], ["--seed", str(2**32)],
])
def test_settings_out_of_range(tmp_path, good_npy, args):
    out = tmp_path / "x.sfpc"
    check_no_output(tmp_path, sfp("encode", good_npy, "-o", out, *args), out)
    assert_user_error(sfp("stats", good_npy, *args))


@pytest.mark.parametrize("args", [
    ["--word", "100"], ["--rounding", "nearest"], ["--source", "fp8"], ["--man-bits", "x"], ["--bogus"],
])
def test_usage_errors(tmp_path, good_npy, args):
    out = tmp_path / "x.sfpc"
    check_no_output(tmp_path, sfp("encode", good_npy, "-o", out, *args), out, usage=True)


def test_fp16_ranges(tmp_path):
    src = save(tmp_path / "h.npy", np.ones(4, np.float16))
    out = tmp_path / "h.sfpc"
    for args in (["--man-bits", "11"], ["--exp-bits", "6"], ["--exp-base", "30"]):
        check_no_output(tmp_path, sfp("encode", src, "-o", out, *args), out)
    assert_ok(sfp("encode", src, "-o", out, "--man-bits", "10", "--exp-bits", "5", "--exp-base", "29"))


def test_negative_with_sign_elided(tmp_path, good_npy):
    out = tmp_path / "x.sfpc"
    r = sfp("encode", good_npy, "-o", out, "--no-sign")
    check_no_output(tmp_path, r, out)
    assert "index 1" in r.stderr
    assert_user_error(sfp("stats", good_npy, "--no-sign"))
    # a negative subnormal is negative too (format.md 3.6); -0 is fine
    src = save(tmp_path / "s.npy", np.array([0x8001], np.uint16))
    check_no_output(tmp_path, sfp("encode", src, "-o", out, "--no-sign"), out)
    src = save(tmp_path / "z.npy", np.array([0x8000, 0x3F80], np.uint16))
    assert_ok(sfp("encode", src, "-o", out, "--no-sign"))


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_specials_not_allowed(tmp_path, value):
    src = save(tmp_path / "x.npy", np.array([1.0, value, 2.0], np.float32))
    out = tmp_path / "x.sfpc"
    check_no_output(tmp_path, sfp("encode", src, "-o", out, "--no-specials"), out)
    assert_user_error(sfp("stats", src, "--no-specials"))


@pytest.fixture
def good_sfpc(tmp_path, good_npy):
    out = tmp_path / "good.sfpc"
    assert_ok(sfp("encode", good_npy, "-o", out, "--gecko", "--group", "4", "--block", "4"))
    return out


def test_truncated_and_corrupted_sfpc(tmp_path, good_sfpc):
    data = good_sfpc.read_bytes()
    out = tmp_path / "y.npy"
    cases = {"empty": b"", "short": data[:10], "truncated": data[:-1], "header-only": data[:40],
             "trailing": data + b"\0", "flipped": data[:50] + bytes([data[50] ^ 1]) + data[51:],
             "magic": b"XXXX" + data[4:], "npy": (tmp_path / "good.npy").read_bytes()}
    for name, blob in cases.items():
        bad = tmp_path / f"{name}.sfpc"
        bad.write_bytes(blob)
        r = sfp("decode", bad, "-o", out)
        check_no_output(tmp_path, r, out)
        assert str(bad) in r.stderr or bad.name in r.stderr


def test_missing_files(tmp_path, good_npy, good_sfpc):
    out = tmp_path / "o"
    check_no_output(tmp_path, sfp("encode", tmp_path / "nope.npy", "-o", out), out)
    check_no_output(tmp_path, sfp("decode", tmp_path / "nope.sfpc", "-o", out), out)
    assert_user_error(sfp("stats", tmp_path / "nope.npz"))
    # output into a directory that does not exist
    r = sfp("encode", good_npy, "-o", tmp_path / "no" / "dir" / "x.sfpc")
    assert_user_error(r)
    assert not (tmp_path / "no").exists()
    # input that is a directory, or not a .npy at all
    assert_user_error(sfp("decode", tmp_path, "-o", out))
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not numpy at all")
    check_no_output(tmp_path, sfp("encode", junk, "-o", out), out)
    assert_user_error(sfp("stats", junk))
    badzip = tmp_path / "bad.npz"
    badzip.write_bytes(b"PK\x03\x04" + b"\0" * 30)
    assert_user_error(sfp("stats", badzip))
    assert not out.exists()


def test_existing_output_left_untouched(tmp_path, good_npy, good_sfpc):
    out = tmp_path / "existing.bin"
    out.write_bytes(SENTINEL)
    neg = sfp("encode", good_npy, "-o", out, "--no-sign")
    assert_user_error(neg)
    bad = tmp_path / "bad.sfpc"
    bad.write_bytes(good_sfpc.read_bytes()[:-3])
    assert_user_error(sfp("decode", bad, "-o", out))
    assert_user_error(sfp("encode", good_npy, "-o", out, "--man-bits", "99"))
    assert_user_error(sfp("encode", good_npy, "-o", out, "--word", "7"), usage=True)
    assert out.read_bytes() == SENTINEL
    no_leftovers(tmp_path)
    # and a successful run replaces it
    assert_ok(sfp("encode", good_npy, "-o", out))
    assert out.read_bytes()[:4] == b"SFPC"


def test_gecko_zero_width_records_cli(tmp_path):
    """Regression (fixed in b7890fa): 0-bit sign/mantissa records ending on a word boundary crashed."""
    src = save(tmp_path / "ones.npy", np.full(59, 0x3F80, np.uint16))
    out = tmp_path / "o.sfpc"
    r = sfp("encode", src, "-o", out, "--gecko", "--no-sign", "--man-bits", "0", "--exp-bits", "2",
            "--group", "64", "--block", "64", "--word", "64")
    assert_ok(r)
    assert_ok(sfp("decode", out, "-o", tmp_path / "y.npy"))
    assert np.array_equal(np.load(tmp_path / "y.npy"), np.full(59, 0x3F80, np.uint16))
