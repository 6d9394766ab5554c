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

A nextpnr run that fails or runs past ``--timeout`` minutes loses only its seed:
the table marks it (``not placed`` with the reason), the median is over the
seeds that placed, and the exit status is 1.  A synthesis failure, or bad
arguments, is a one-line error with status 2.
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
from .tools import ToolError
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
            progress=None, router: str | None = None, timeout_s: float = 3600) -> dict:
    """Synthesize ``unit`` of ``build`` once and place and route it with every seed.

    A seed whose nextpnr run fails or runs past ``timeout_s`` is kept in ``runs`` with
    ``fmax_mhz`` None and its ``error``; the median is over the seeds that placed (None
    if none did), and ``fmax_seed1`` is the first seed's figure or None.
    """
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
        try:
            pr = place_and_route(os.path.join(sdir, net), "ecp5", sdir, freq_mhz=freq_mhz, seed=s,
                                 router=router, timeout=timeout_s)
        except ToolError as exc:
            # one seed lost (a timeout, most often) must not lose the others' figures
            runs.append({"seed": s, "fmax_mhz": None, "error": str(exc)})
            if progress:
                progress(f"{build} {unit}: seed {s}: not placed: {exc}")
            continue
        runs.append({"seed": s, "fmax_mhz": pr["fmax_mhz"], "critical_path": pr.get("critical_path", {}),
                     "utilization": pr.get("utilization", {})})
        if progress:
            progress(f"{build} {unit}: seed {s}: {pr['fmax_mhz']} MHz")
    fm = [r["fmax_mhz"] for r in runs if r["fmax_mhz"] is not None]
    return {"build": build, "unit": unit, "params": p.as_dict(),
            "lut": own.get("lut"), "carry": own.get("carry"), "ff": own.get("ff"), "bram": own.get("bram"),
            "lutram": own.get("lutram"), "dsp": own.get("dsp"),
            "fmax_seed1": runs[0]["fmax_mhz"], "fmax_median": statistics.median(fm) if fm else None,
            "runs": runs, "router": router or "router1",
            "seconds": round(time.monotonic() - t0, 1)}


def _gbs(p: dict, mhz: float) -> float:
    width = {"bf16": 2, "fp32": 4}[p["source"]]
    return p["lanes"] * width * mhz * 1e6 / 1e9


def _mhz(x: float | None) -> str:
    return "not placed" if x is None else f"{x:.1f}"


def _placed(r: dict) -> int:
    return sum(1 for run in r["runs"] if "error" not in run)


def target_rows(results: list[dict]) -> list[tuple[str, str, str, str]]:
    """(target, required, measured, met) for the issue's targets the results cover.

    A unit no seed placed is "not placed" and its targets are not met."""
    by = {(r["build"], r["unit"]): r for r in results}
    rows = []
    for (b, u), t in TARGETS_MHZ.items():
        r = by.get((b, u))
        if r:
            n, placed = len(r["runs"]), _placed(r)
            seeds = f"{n} seeds" if placed == n else f"{placed} of {n} seeds placed"
            med = r["fmax_median"]
            rows.append((f"{b} {u} Fmax, median of {seeds} (seed 1)", f">= {t:g} MHz",
                         f"{_mhz(med)} ({_mhz(r['fmax_seed1'])}) MHz",
                         "yes" if med is not None and med >= t else "NO"))
    for b in BUILDS:
        for u, what in (("packer", "into the packer"), ("unpacker", "out of the unpacker")):
            r = by.get((b, u))
            if r:
                med = r["fmax_median"]
                g = None if med is None else _gbs(r["params"], med)
                rows.append((f"{b} {u}: {r['params']['source']} {what}", f">= {GBS_TARGET} GB/s",
                             "not placed" if g is None else f"{g:.2f} GB/s",
                             "yes" if g is not None and g >= GBS_TARGET else "NO"))
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
        first = r["runs"][0]
        cp = first.get("critical_path") or {}
        where = ", ".join(cp.get("sources", [])[:3])
        lvl = cp.get("logic_levels")
        crit = f"{lvl} levels, {cp.get('delay_ns')} ns: {where}" if lvl is not None else ""
        lost = [f"seed {run['seed']}: {run['error']}" for run in r["runs"] if "error" in run]
        if lost:
            crit = "; ".join(([crit] if crit else []) + lost)
        # TRELLIS_DPR16X4 (Yosys) is placed as one TRELLIS_RAMW each
        lines.append(f"| {r['build']} | {r['unit']} | {r['lut']} | {r['carry']} | {r['ff']} | {r['bram']} "
                     f"| {r['lutram']} | {_mhz(r['fmax_seed1'])} | {_mhz(r['fmax_median'])} | {crit} |")
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
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="minutes allowed to one nextpnr run (default 60); a seed past it is reported "
                         "as not placed and the others go on")
    a = ap.parse_args(argv)
    try:
        builds = [b for b in a.builds.split(",") if b]
        unit_names = [u for u in a.units.split(",") if u]
        seeds = [int(s) for s in a.seeds.split(",") if s]
        bad = [b for b in builds if b not in BUILDS] + [u for u in unit_names if u not in ("packer", "unpacker")]
        if bad or not seeds:
            raise ValueError(f"unknown build/unit {bad[0]!r}" if bad else "no seeds")
        if not a.timeout > 0:
            raise ValueError(f"--timeout must be > 0 minutes, not {a.timeout:g}")
    except ValueError as exc:
        print(f"fmax: error: {exc}", file=sys.stderr)
        return 2
    results = []
    for b in builds:
        for u in unit_names:
            try:
                r = measure(b, u, os.path.join(a.outdir, b, u), seeds, a.freq,
                            progress=lambda s: print(s, file=sys.stderr, flush=True),
                            router=a.router or ("router2" if b == "gecko" else None),
                            timeout_s=a.timeout * 60)
            except ToolError as exc:          # synthesis itself failed: nothing to report for any seed
                print(f"fmax: error: {b} {u}: {exc}", file=sys.stderr)
                return 2
            results.append(r)
            if a.json:
                _write(a.json, json.dumps(results, indent=1) + "\n")
    print(format_table(results))
    # a seed that did not place leaves the table incomplete: say so in the exit status
    return 1 if any("error" in run for r in results for run in r["runs"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
