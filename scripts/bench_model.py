"""Golden-model throughput: encode and decode of 10^7 bf16 values, beside a plain cast round trip.

The baseline is measured in the same run on the same array: ``ml_dtypes``
bf16 -> float32 -> bf16, the cheapest thing one can do to every value.
Each figure is the median of ``--repeat`` runs (the machines are shared and
noisy).  NumPy runs these kernels on one core.

    python scripts/bench_model.py [--values N] [--repeat R] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import ml_dtypes
import numpy as np

from sfp.model.container import decode, encode
from sfp.model.formats import Settings

CASES = {
    "lossless (m7 e8)": Settings(exp_base=0),
    "m3 e5 auto": Settings(man_bits=3, exp_bits=5),
    "m2 e4 auto, no sign": None,   # filled from |x|
    "m3 e5 auto + Gecko": Settings(man_bits=3, exp_bits=5, gecko=True),
    "m7 e8 + Gecko": Settings(exp_base=0, gecko=True),
    "m3 e5 stochastic": Settings(man_bits=3, exp_bits=5, rounding="stochastic", seed=1),
}


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--values", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    # Training-like magnitudes: normal values spanning a few octaves, ~25% ReLU zeros.
    x32 = (rng.standard_normal(args.values) * 0.05).astype(np.float32)
    x32[rng.random(args.values) < 0.25] = 0
    x = x32.astype(ml_dtypes.bfloat16)
    n = x.size

    cast = timed(lambda: x.astype(np.float32).astype(ml_dtypes.bfloat16), args.repeat)
    results = {"values": n, "repeat": args.repeat, "cast_roundtrip_s": cast,
               "cast_mvalues_per_s": n / cast / 1e6, "cases": {}}
    for name, s in CASES.items():
        xin = x
        if s is None:
            s, xin = Settings(man_bits=2, exp_bits=4, sign=False), np.abs(x)
        blob = encode(xin, s)
        enc = timed(lambda: encode(xin, s), args.repeat)
        dec = timed(lambda: decode(blob), args.repeat)
        results["cases"][name] = {
            "encode_s": enc, "decode_s": dec,
            "encode_mvalues_per_s": n / enc / 1e6, "decode_mvalues_per_s": n / dec / 1e6,
            "encode_vs_cast": enc / cast, "decode_vs_cast": dec / cast,
            "bits_per_value": 8 * len(blob) / n,
        }
        print(f"  {name}: encode {n / enc / 1e6:.1f} M/s, decode {n / dec / 1e6:.1f} M/s", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"{n:,} bf16 values, median of {args.repeat} runs; cast round trip (bf16->f32->bf16): "
          f"{cast * 1e3:.1f} ms = {n / cast / 1e6:.0f} M values/s\n")
    print("| settings | bits/value | encode M values/s | decode M values/s | encode / cast | decode / cast |")
    print("|---|---|---|---|---|---|")
    for name, r in results["cases"].items():
        print(f"| {name} | {r['bits_per_value']:.2f} | {r['encode_mvalues_per_s']:.1f} | {r['decode_mvalues_per_s']:.1f} "
              f"| {r['encode_vs_cast']:.1f}x | {r['decode_vs_cast']:.1f}x |")


if __name__ == "__main__":
    main()
