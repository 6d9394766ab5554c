"""Golden-model throughput through the CLI: ``sfp encode`` / ``sfp decode`` of a 10^7-value bf16 file.

Every figure is wall time of the whole command (process start, imports, file
reading and writing included), the median of ``--repeat`` runs, beside a
plain NumPy round trip of the same file measured in the same run the same
way (a process that does ``np.save(out, np.load(in))``): the floor for any
command that reads and writes the tensor.  The machines are shared and
noisy: compare the rows with the baseline of the same run.

The tensor is training-like (normal values over a few octaves, 25 % ReLU
zeros, rounded to bf16), as ``np.save`` of an ``ml_dtypes`` bf16 array.

    python scripts/bench_model.py [--values N] [--repeat R] [--json]   (make bench)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import ml_dtypes
import numpy as np

TARGET = 20.0       # M values/s, issue #12

# name -> sfp encode options (decode needs none: the file says everything)
CASES = {
    "lossless (m7 e8, exp_base 0)": ["--exp-base", "0"],
    "m3 e5": ["--man-bits", "3", "--exp-bits", "5"],
    "m2 e4, no sign (|x|)": ["--man-bits", "2", "--exp-bits", "4", "--no-sign"],
    "m1 e3": ["--man-bits", "1", "--exp-bits", "3"],
    "m3 e5 stochastic": ["--man-bits", "3", "--exp-bits", "5", "--rounding", "stochastic", "--seed", "1"],
    "m7 e8 + Gecko": ["--exp-base", "0", "--gecko"],
    "m3 e5 + Gecko": ["--man-bits", "3", "--exp-bits", "5", "--gecko"],
    "m2 e4 + Gecko": ["--man-bits", "2", "--exp-bits", "4", "--gecko"],
}


# As an installed package runs: bytecode cached (pip compiles it at install time; a
# PYTHONDONTWRITEBYTECODE environment would recompile the modules in every process).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str], repeat: int) -> float:
    """Median wall time of ``cmd`` over ``repeat`` runs, after one untimed warm-up run."""
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sfp_command() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "sfp")
    return [exe] if os.access(exe, os.X_OK) else [sys.executable, "-m", "sfp.cli"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--values", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    x32 = (rng.standard_normal(args.values) * 0.05).astype(np.float32)
    x32[rng.random(args.values) < 0.25] = 0
    x = x32.astype(ml_dtypes.bfloat16)
    n = x.size
    sfp = sfp_command()
    work = tempfile.mkdtemp(prefix="sfp-bench-")
    try:
        src, absx = os.path.join(work, "x.npy"), os.path.join(work, "absx.npy")
        np.save(src, x)
        np.save(absx, np.abs(x))
        base = timed([sys.executable, "-c", "import sys, numpy as np; np.save(sys.argv[2], np.load(sys.argv[1]))",
                      src, os.path.join(work, "copy.npy")], args.repeat)
        results = {"values": n, "repeat": args.repeat, "command": sfp, "baseline_s": base,
                   "baseline_mvalues_per_s": n / base / 1e6, "cases": {}}
        print(f"  np.load + np.save in a fresh process: {base:.3f} s = {n / base / 1e6:.1f} M values/s", file=sys.stderr)
        for name, opts in CASES.items():
            inp = absx if "--no-sign" in opts else src
            blob, out = os.path.join(work, "x.sfpc"), os.path.join(work, "y.npy")
            enc = timed([*sfp, "encode", inp, "-o", blob, *opts], args.repeat)
            dec = timed([*sfp, "decode", blob, "-o", out], args.repeat)
            results["cases"][name] = {
                "options": " ".join(opts), "encode_s": enc, "decode_s": dec,
                "encode_mvalues_per_s": n / enc / 1e6, "decode_mvalues_per_s": n / dec / 1e6,
                "bits_per_value": 8 * os.path.getsize(blob) / n,
            }
            print(f"  {name}: encode {n / enc / 1e6:.1f} M/s, decode {n / dec / 1e6:.1f} M/s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"{n:,} bf16 values, `sfp encode`/`sfp decode` wall time incl. process start and file I/O, "
          f"median of {args.repeat} runs; np.load + np.save of the same file in a fresh process: "
          f"{base:.3f} s = {n / base / 1e6:.1f} M values/s\n")
    print(f"| container (sfp encode options) | bits/value | encode M values/s | decode M values/s "
          f"| encode / baseline time | decode / baseline time | >= {TARGET:.0f} M/s |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results["cases"].items():
        ok = min(r["encode_mvalues_per_s"], r["decode_mvalues_per_s"]) >= TARGET
        print(f"| {name} (`{r['options']}`) | {r['bits_per_value']:.2f} | {r['encode_mvalues_per_s']:.1f} "
              f"| {r['decode_mvalues_per_s']:.1f} | {r['encode_s'] / base:.2f}x | {r['decode_s'] / base:.2f}x "
              f"| {'yes' if ok else 'no'} |")


if __name__ == "__main__":
    main()
