"""Place and route with nextpnr (ECP5, iCE40) on a :class:`~sfp.synth.units.ScanWrapper`'d unit.

Devices: ECP5 LFE5U-85F, speed grade 6, CABGA381 (the ULX3S-85F's part);
iCE40 HX8K in CT256 (the largest iCE40 HX).  The clock is constrained with
``--freq`` (default 200 MHz, the project's ECP5 target); timing failure is
not an error (``--timing-allow-fail``): the achieved Fmax is the result.

From the ``--report`` JSON: post-route Fmax of the wrapper's clock,
utilisation (used/available per cell type), and the critical path reduced to
where it lies: its start and end cells, logic levels, logic vs routing delay
and the project source lines (``hw/...py:N``) its nets come from.
"""

from __future__ import annotations

import json
import os
import re

from .tools import ToolError, nextpnr, run

__all__ = ["DEVICES", "place_and_route", "parse_report", "summarize_path"]

DEVICES = {
    "ecp5": {"args": ["--85k", "--package", "CABGA381", "--speed", "6"], "name": "LFE5U-85F-6BG381C",
             "lut_key": "TRELLIS_COMB", "ff_key": "TRELLIS_FF"},
    "ice40": {"args": ["--hx8k", "--package", "ct256"], "name": "iCE40HX8K-CT256",
              "lut_key": "ICESTORM_LC", "ff_key": None},
}


def summarize_path(path: list[dict]) -> dict:
    """Where a nextpnr critical path lies: endpoints, levels, delays, source lines."""
    if not path:
        return {}
    logic = sum(s.get("delay", 0.0) for s in path if s.get("type") in ("logic", "clk-to-q", "setup"))
    routing = sum(s.get("delay", 0.0) for s in path if s.get("type") == "routing")
    levels = sum(1 for s in path if s.get("type") == "logic")
    sources: list[str] = []
    for s in path:
        for src in s.get("sources", []) or []:
            m = re.search(r"((?:hw|synth)/[\w/]+\.py):(\d+)", src)
            if m:
                loc = f"{m.group(1)}:{m.group(2)}"
                if loc not in sources:
                    sources.append(loc)
    nets = [s["net"] for s in path if s.get("type") == "routing" and s.get("net")]
    return {
        "from": path[0].get("from", {}).get("cell"),
        "to": path[-1].get("to", {}).get("cell"),
        "start_net": nets[0] if nets else None,
        "end_net": nets[-1] if nets else None,
        "delay_ns": round(logic + routing, 3),
        "logic_ns": round(logic, 3),
        "routing_ns": round(routing, 3),
        "logic_levels": levels,
        "sources": sources,
    }


def parse_report(report: dict, arch: str) -> dict:
    """Fmax (MHz), utilisation and the critical path from a nextpnr ``--report`` object."""
    fmax = report.get("fmax") or {}
    clocks = {name: v.get("achieved") for name, v in fmax.items() if v.get("achieved") is not None}
    if not clocks:
        raise ValueError("nextpnr report has no achieved Fmax (no clocked path?)")
    clk = min(clocks, key=clocks.get)
    util = {k: {"used": v["used"], "available": v["available"]}
            for k, v in (report.get("utilization") or {}).items() if v.get("used")}
    crit = None
    for cp in report.get("critical_paths") or []:
        if cp.get("from") == cp.get("to") or crit is None:
            crit = cp
            if cp.get("from") == cp.get("to"):
                break
    dev = DEVICES[arch]
    out = {
        "fmax_mhz": round(float(clocks[clk]), 2),
        "constraint_mhz": fmax[clk].get("constraint"),
        "clock": clk,
        "utilization": util,
        "critical_path": summarize_path(crit["path"]) if crit else {},
    }
    lut = util.get(dev["lut_key"])
    if lut:
        out["lut_used"], out["lut_available"] = lut["used"], lut["available"]
    return out


def fmax_from_log(text: str) -> float | None:
    """The post-route Fmax from a nextpnr log: the last 'Max frequency for clock' line."""
    vals = re.findall(r"Max frequency for clock\s+'[^']*':\s+([\d.]+) MHz", text)
    return float(vals[-1]) if vals else None


def place_and_route(netlist_json: str, arch: str, workdir: str, *, freq_mhz: float = 200.0,
                    seed: int = 1, timeout: float = 3600, router: str | None = None) -> dict:
    """nextpnr on a Yosys JSON netlist in ``workdir``; the :func:`parse_report` dict (+ ``log_fmax_mhz``).
    ``router``: nextpnr's ``--router`` (``router1``, its default, or ``router2``)."""
    if arch not in DEVICES:
        raise ValueError(f"no place and route for {arch!r} (ecp5 or ice40)")
    rep = f"pnr_{arch}.json"
    log = os.path.join(workdir, f"nextpnr_{arch}.log")
    cmd = [nextpnr(arch), *DEVICES[arch]["args"], "--json", os.path.basename(netlist_json),
           "--report", rep, "--freq", f"{freq_mhz:g}", "--seed", str(seed), "--timing-allow-fail"]
    if router:
        cmd += ["--router", router]
    text = run(cmd, log, cwd=workdir, timeout=timeout)
    try:
        with open(os.path.join(workdir, rep)) as f:
            out = parse_report(json.load(f), arch)
    except (OSError, ValueError) as exc:
        raise ToolError(f"cannot read the nextpnr report in {workdir}: {exc}")
    out["log_fmax_mhz"] = fmax_from_log(text)
    out["device"] = DEVICES[arch]["name"]
    out["router"] = router or "router1"
    out["seed"] = seed
    return out
