"""``make fmax``: place and route the default plain and Gecko builds and print targets beside figures.

For each build (plain: the default :class:`sfp.hw.params.HwParams`, bf16
N = 8 W = 128 B = 256; Gecko: the same with ``gecko = True``) and unit
(packer, unpacker), the unit is synthesized once for ECP5 inside the
:class:`sfp.synth.units.ScanWrapper` (every port registered) and placed and
routed on the LFE5U-85F-6 with seeds 1, 2 and 3 (``--seeds``).  The table
gives the cells of the placed design that belong to the unit (LUT4, CCU2C,
FF, DP16KD, TRELLIS_RAMW: the unit's own synthesis, without the wrapper's
registers), Fmax at seed 1 and the median over the seeds, and each target
of issue #9 with whether it is met.

This is a benchmark, not a test: about 3-6 minutes of nextpnr per plain unit
and seed on one core, 15-35 minutes per Gecko unit (routed with nextpnr's
``router2``: the default router did not finish the Gecko packer in 28 minutes).  ``python -m sfp.synth.fmax --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time

from amaranth.back import verilog

from sfp.hw.params import HwParams

from .pnr import place_and_route
from .units import ScanWrapper, units
from .yosys import synthesize

__all__ = ["BUILDS", "TARGETS_MHZ", "measure", "format_table", "target_rows", "main"]

BUILDS = {"plain": {}, "gecko": {"gecko": True}}

#: Post-route Fmax targets (MHz, LFE5U-85F-6) of issue #9 item 3.
TARGETS_MHZ = {("plain", "packer"): 200.0, ("plain", "unpacker"): 200.0,
               ("gecko", "packer"): 200.0, ("gecko", "unpacker"): 150.0}
LUT_BUDGET_PLAIN = 14000        # plain packer + unpacker LUT4
GECKO_LUT_RATIO = 1.5           # Gecko build LUT4 <= 1.5 x plain
GBS_TARGET = 3.4                # GB/s of source values in / out


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def measure(build: str, unit: str, workdir: str, seeds=(1, 2, 3), freq_mhz: float = 200.0,
            progress=None, router: str | None = None) -> dict:
    """Synthesize ``unit`` of ``build`` once and place and route it with every seed."""
    p = HwParams(**BUILDS[build])
    factory = units(p, [unit])[unit]
    os.makedirs(workdir, exist_ok=True)
    top = f"sfp_{unit}"
    t0 = time.monotonic()
    vpath = os.path.join(workdir, f"{top}.v")
    _write(vpath, verilog.convert(factory(p), name=top))
    own = synthesize(vpath, top, "ecp5", workdir)
    wrap = ScanWrapper(factory(p))
    wtop = f"{top}_wrap"
    wdir = os.path.join(workdir, "wrap")
    os.makedirs(wdir, exist_ok=True)
    _write(os.path.join(wdir, f"{wtop}.v"), verilog.convert(wrap, name=wtop, ports=wrap.ports()))
    net = f"{wtop}_ecp5.json"
    synthesize(os.path.join(wdir, f"{wtop}.v"), wtop, "ecp5", wdir, netlist_json=net)
    runs = []
    for s in seeds:
        if progress:
            progress(f"{build} {unit}: nextpnr seed {s} ...")
        sdir = os.path.join(wdir, f"seed{s}")
        os.makedirs(sdir, exist_ok=True)
        shutil.copyfile(os.path.join(wdir, net), os.path.join(sdir, net))
        pr = place_and_route(os.path.join(sdir, net), "ecp5", sdir, freq_mhz=freq_mhz, seed=s,
                             router=router)
        runs.append({"seed": s, "fmax_mhz": pr["fmax_mhz"], "critical_path": pr.get("critical_path", {}),
                     "utilization": pr.get("utilization", {})})
        if progress:
            progress(f"{build} {unit}: seed {s}: {pr['fmax_mhz']} MHz")
    fm = [r["fmax_mhz"] for r in runs]
    return {"build": build, "unit": unit, "params": p.as_dict(),
            "lut": own.get("lut"), "carry": own.get("carry"), "ff": own.get("ff"), "bram": own.get("bram"),
            "lutram": own.get("lutram"), "dsp": own.get("dsp"),
            "fmax_seed1": fm[0], "fmax_median": statistics.median(fm), "runs": runs, "router": router or "router1",
            "seconds": round(time.monotonic() - t0, 1)}


def _gbs(p: dict, mhz: float) -> float:
    width = {"bf16": 2, "fp32": 4}[p["source"]]
    return p["lanes"] * width * mhz * 1e6 / 1e9


def target_rows(results: list[dict]) -> list[tuple[str, str, str, str]]:
    """(target, required, measured, met) for the issue's targets the results cover."""
    by = {(r["build"], r["unit"]): r for r in results}
    rows = []
    for (b, u), t in TARGETS_MHZ.items():
        r = by.get((b, u))
        if r:
            rows.append((f"{b} {u} Fmax, median of {len(r['runs'])} seeds (seed 1)", f">= {t:g} MHz",
                         f"{r['fmax_median']:.1f} ({r['fmax_seed1']:.1f}) MHz",
                         "yes" if r["fmax_median"] >= t else "NO"))
    for b in BUILDS:
        pk, up = by.get((b, "packer")), by.get((b, "unpacker"))
        if pk:
            g = _gbs(pk["params"], pk["fmax_median"])
            rows.append((f"{b} packer: {pk['params']['source']} into the packer", f">= {GBS_TARGET} GB/s",
                         f"{g:.2f} GB/s", "yes" if g >= GBS_TARGET else "NO"))
        if up:
            g = _gbs(up["params"], up["fmax_median"])
            rows.append((f"{b} unpacker: {up['params']['source']} out of the unpacker", f">= {GBS_TARGET} GB/s",
                         f"{g:.2f} GB/s", "yes" if g >= GBS_TARGET else "NO"))
    pl = [by.get(("plain", u)) for u in ("packer", "unpacker")]
    if all(pl):
        lut = sum(r["lut"] for r in pl)
        rows.append(("plain packer + unpacker LUT4", f"<= {LUT_BUDGET_PLAIN}", str(lut),
                     "yes" if lut <= LUT_BUDGET_PLAIN else "NO"))
        gk = [by.get(("gecko", u)) for u in ("packer", "unpacker")]
        if all(gk):
            ratio = sum(r["lut"] for r in gk) / lut
            rows.append(("Gecko build LUT4 / plain build LUT4", f"<= {GECKO_LUT_RATIO}", f"{ratio:.2f}",
                         "yes" if ratio <= GECKO_LUT_RATIO else "NO"))
    return rows


def format_table(results: list[dict]) -> str:
    """The Markdown tables printed by ``make fmax``: figures per unit, then the targets."""
    head = ("| build | unit | LUT4 | CCU2C | FF | DP16KD | TRELLIS_RAMW | Fmax seed 1 (MHz) "
            "| Fmax median (MHz) | critical path (seed 1) |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in results:
        cp = r["runs"][0].get("critical_path") or {}
        where = ", ".join(cp.get("sources", [])[:3])
        lvl = cp.get("logic_levels")
        crit = f"{lvl} levels, {cp.get('delay_ns')} ns: {where}" if lvl is not None else ""
        # TRELLIS_DPR16X4 (Yosys) is placed as one TRELLIS_RAMW each
        lines.append(f"| {r['build']} | {r['unit']} | {r['lut']} | {r['carry']} | {r['ff']} | {r['bram']} "
                     f"| {r['lutram']} | {r['fmax_seed1']:.1f} | {r['fmax_median']:.1f} | {crit} |")
    lines += ["", "| target (issue #9) | required | measured | met |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in target_rows(results)]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sfp.synth.fmax", description=__doc__.splitlines()[0])
    ap.add_argument("--builds", default="plain,gecko", help="comma-separated: plain, gecko")
    ap.add_argument("--units", default="packer,unpacker", help="comma-separated: packer, unpacker")
    ap.add_argument("--seeds", default="1,2,3", help="nextpnr seeds (the first is reported as 'seed 1')")
    ap.add_argument("--freq", type=float, default=200.0, help="clock constraint (MHz)")
    ap.add_argument("--outdir", default="build/fmax")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--router", choices=("router1", "router2"), default=None,
                    help="nextpnr router (default: router1 for the plain build, router2 for the Gecko build, "
                         "whose packer router1 did not finish routing in 28 min)")
    a = ap.parse_args(argv)
    try:
        builds = [b for b in a.builds.split(",") if b]
        unit_names = [u for u in a.units.split(",") if u]
        seeds = [int(s) for s in a.seeds.split(",") if s]
        bad = [b for b in builds if b not in BUILDS] + [u for u in unit_names if u not in ("packer", "unpacker")]
        if bad or not seeds:
            raise ValueError(f"unknown build/unit {bad[0]!r}" if bad else "no seeds")
    except ValueError as exc:
        print(f"fmax: error: {exc}", file=sys.stderr)
        return 2
    results = []
    for b in builds:
        for u in unit_names:
            r = measure(b, u, os.path.join(a.outdir, b, u), seeds, a.freq,
                        progress=lambda s: print(s, file=sys.stderr, flush=True),
                        router=a.router or ("router2" if b == "gecko" else None))
            results.append(r)
            if a.json:
                _write(a.json, json.dumps(results, indent=1) + "\n")
    print(format_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
