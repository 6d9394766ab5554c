#!/usr/bin/env python3
"""Store/load cycles of real training tensors through LiteDRAM's ULX3S SDR controller (simulated).

For each container of the ladder (bf16 as is = m7e8 with the full exponent,
m3e5, m2e4, m1e3; each plain and Gecko) and each of three real training
tensors: the packer -> DmaWriter -> LiteDRAM (native port, 16-bit SDR
SDRAM model, 50 MHz) store and the LiteDRAM -> DmaReader -> unpacker load
of the whole tensor, in memory-clock cycles (units at 200 MHz), measured in
the cocotb simulation (sim_tests/cocotb_dma_tb.py ``measure``; every value
loaded back is checked against the golden model on the way).  fp32 is
measured the same way with an fp32-source build storing the fp32 tensor as
is (m23e8).  Reports the median over the tensors, the speed-up over bf16
and fp32 next to the footprint ratio, the DRAM bus utilisation (16-bit
native beats per memory cycle), and the DRAM access energy saved, an
ESTIMATE from a published per-bit figure (see ENERGY below).

Writes build/dram/results.json, build/dram/dram.png and prints a Markdown
table (the one in docs/results.md, section DRAM).  Usage::

    make dram            # or: python scripts/dram_bench.py [--values N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

# Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, table of
# energies (45 nm): a 64-bit DRAM access costs 1.3-2.6 nJ, i.e. about 20-40 pJ per bit.  An
# estimate for DDR-class DRAM; an SDR SDRAM like the ULX3S's is not measured here.
ENERGY_PJ_PER_BIT = (20.3, 40.6)
ENERGY_SOURCE = "Horowitz, ISSCC 2014: 1.3-2.6 nJ per 64-bit DRAM access (20-41 pJ/bit)"

TENSORS = [("epoch10/weight/conv2.weight", 0), ("epoch10/act/relu1.out", 900), ("epoch10/grad/fc1.weight", 0)]
LADDER = [("bf16", dict(man_bits=7, exp_bits=8, exp_base=0)), ("m3e5", dict(man_bits=3, exp_bits=5)),
          ("m2e4", dict(man_bits=2, exp_bits=4)), ("m1e3", dict(man_bits=1, exp_bits=3))]


def run(build, values: int, source: str, gecko: bool, settings: list[tuple[str, dict]]) -> list[dict]:
    from sfp.hw.params import HwParams
    from sfp.model.formats import Settings
    from sfp.sim_tests.packer_ref import cfg_value, make_case, real_tensor_bits
    from sfp.sim_tests.test_dma import litedram_run

    lanes = 8 if source == "bf16" else 4
    p = HwParams(source=source, lanes=lanes, word=128, block=256, gecko=gecko)
    tensors, data = [], {}
    addr = 0
    for name, kw in settings:
        for key, off in TENSORS:
            s = Settings(source=source, block=p.block, word=p.word, gecko=gecko,
                         **({"group": p.group} if gecko else {}), **kw)
            c = make_case(real_tensor_bits(source, key, values, off), s)
            i = len(tensors)
            tensors.append({"cfg": cfg_value(c.settings, c.n), "data_addr": addr, "index_addr": (1 << 19) + 64 * i,
                            "name": f"{name}{'+gecko' if gecko else ''}", "tensor": key})
            data.update({f"bits_{i}": c.bits, f"words_{i}": np.array([str(w) for w in c.words]),
                         f"lens_{i}": np.array(c.lens, np.int64), f"out_{i}": c.out})
            addr += len(c.words) + 8
    out = build / f"measure_{source}_{int(gecko)}.json"
    litedram_run(p, tensors, data, [], key=f"dram_bench_{source}_{'gecko' if gecko else 'plain'}",
                 testcase="measure", measure_out=str(out))
    res = json.loads(out.read_text())
    for r, t in zip(res, tensors):
        r["tensor"] = t["tensor"]
        r["source"] = source
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--values", type=int, default=4096, help="values per tensor (default 4096)")
    a = ap.parse_args(argv)
    build = ROOT / "build" / "dram"
    build.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    rows = []
    rows += run(build, a.values, "fp32", False, [("fp32", dict(man_bits=23, exp_bits=8, exp_base=0))])
    rows += run(build, a.values, "bf16", False, LADDER)
    rows += run(build, a.values, "bf16", True, LADDER[1:])
    by = {}
    for r in rows:
        by.setdefault(r["name"], []).append(r)
    med = {k: {f: statistics.median(x[f] for x in v) for f in ("store_cycles", "load_cycles", "words")}
           for k, v in by.items()}
    base16, base32 = med["bf16"], med["fp32"]
    table = []
    for name in ["fp32", "bf16", "m3e5", "m3e5+gecko", "m2e4", "m2e4+gecko", "m1e3", "m1e3+gecko"]:
        if name not in med:
            continue
        mm = med[name]
        bits = mm["words"] * 128
        bits16 = base16["words"] * 128
        t = mm["store_cycles"] + mm["load_cycles"]
        row = {
            "container": name, "words": mm["words"], "store_cycles": mm["store_cycles"],
            "load_cycles": mm["load_cycles"],
            "footprint_vs_bf16": bits16 / bits, "footprint_vs_fp32": base32["words"] * 128 / bits,
            "speedup_vs_bf16": (base16["store_cycles"] + base16["load_cycles"]) / t,
            "speedup_vs_fp32": (base32["store_cycles"] + base32["load_cycles"]) / t,
            # 16-bit native beats (data words x 8) over the cycles of the store and of the load
            "bus_util_store": mm["words"] * 8 / mm["store_cycles"], "bus_util_load": mm["words"] * 8 / mm["load_cycles"],
            "energy_saved_vs_bf16_nJ": [2 * (bits16 - bits) * e / 1000 for e in ENERGY_PJ_PER_BIT],
        }
        table.append(row)
    result = {"values": a.values, "tensors": [k for k, _ in TENSORS], "controller": "LiteDRAM 2024.12, ULX3S SDR "
              "(MT48LC16M16, 16-bit, GENSDRPHY replaced by SDRAMPHYModel), 50 MHz; units 200 MHz",
              "energy_source": ENERGY_SOURCE, "rows": rows, "table": table,
              "seconds": round(time.monotonic() - t0, 1)}
    (build / "results.json").write_text(json.dumps(result, indent=1))
    print("| container | words | store cycles | load cycles | footprint vs bf16 | speed-up vs bf16 | "
          "vs fp32 | bus util. store/load | energy saved vs bf16 (store+load, estimate) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for r in table:
        e = r["energy_saved_vs_bf16_nJ"]
        print(f"| {r['container']} | {r['words']:.0f} | {r['store_cycles']:.0f} | {r['load_cycles']:.0f} | "
              f"{r['footprint_vs_bf16']:.2f}x | {r['speedup_vs_bf16']:.2f}x | {r['speedup_vs_fp32']:.2f}x | "
              f"{r['bus_util_store']:.2f} / {r['bus_util_load']:.2f} | {e[0]:.0f}-{e[1]:.0f} nJ |")
    print(f"\n{a.values} values per tensor, median of {len(TENSORS)} real tensors; {ENERGY_SOURCE}; "
          f"{result['seconds']} s")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 3.5))
        xs = [r["footprint_vs_bf16"] for r in table]
        ys = [r["speedup_vs_bf16"] for r in table]
        ax.plot([0.5, max(xs) * 1.1], [0.5, max(xs) * 1.1], ":", color="grey", label="speed-up = footprint ratio")
        ax.scatter(xs, ys)
        for r, x, y in zip(table, xs, ys):
            ax.annotate(r["container"], (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
        ax.set_xlabel("footprint ratio vs bf16")
        ax.set_ylabel("store+load speed-up vs bf16")
        ax.set_title("LiteDRAM SDR (sim): time saved by the containers")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(build / "dram.png", dpi=120)
        print(f"plot: {build / 'dram.png'}")
    except ImportError:
        print("matplotlib not installed: no plot")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
