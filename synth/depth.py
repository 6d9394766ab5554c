"""Logic depth of a synthesized ECP5 netlist, every register-to-register path at once (a quick look before nextpnr).

nextpnr reports one critical path per run, and a run of the packer takes
minutes; this walks the Yosys ECP5 JSON netlist of a unit once and gives,
for every endpoint (flip-flop or RAM input), the deepest logic in front of
it in "LUT levels" (LUT4 = 1, PFUMX/L6MUX21 = 0.2, a CCU2C = 1 to enter the
chain, 0.1 per cell along it), grouped by the source line of the endpoint's
driver.  On the -6 part each LUT level with its routing costs about 1.3 ns,
so 200 MHz wants about 3 levels (../shared/BRIEF.md).  A heuristic: routing
of high-fanout nets is not in it.

    python -m sfp.synth.depth NETLIST.json [--top N] [--min LEVELS]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys

# (cell type) -> {output port: {input port: delay in levels}}
_ARCS = {
    "LUT4": {"Z": {p: 1.0 for p in "ABCD"}},
    "PFUMX": {"Z": {"ALUT": 0.2, "BLUT": 0.2, "C0": 1.0}},
    "L6MUX21": {"Z": {"D0": 0.2, "D1": 0.2, "SD": 1.0}},
    "CCU2C": {"S0": {**{p: 1.0 for p in ("A0", "B0", "C0", "D0")}, "CIN": 0.3},
              "S1": {**{p: 1.0 for p in ("A0", "B0", "C0", "D0", "A1", "B1", "C1", "D1")}, "CIN": 0.3},
              "COUT": {**{p: 1.0 for p in ("A0", "B0", "C0", "D0", "A1", "B1", "C1", "D1")}, "CIN": 0.1}},
    "TRELLIS_DPR16X4": {f"DO[{i}]": {"RAD": 1.0} for i in range(4)},
}
_SEQ_IN = {"TRELLIS_FF": ("DI", "CE", "LSR", "M"), "TRELLIS_DPR16X4": ("DI", "WAD", "WRE"),
           "DP16KD": None, "PDPW16KD": None}


def _bits(conn):
    return [b for b in conn if isinstance(b, int)]


def analyse(netlist: dict, top: str | None = None):
    mods = netlist["modules"]
    name = top or next(n for n, mod in mods.items() if mod.get("attributes", {}).get("top"))
    mod = mods[name]
    netsrc = {}
    for nname, net in mod["netnames"].items():
        src = net.get("attributes", {}).get("src", "")
        for b in _bits(net["bits"]):
            if b not in netsrc or (src and not netsrc[b][1]):
                netsrc[b] = (nname, src)
    driver = {}          # bit -> (cell, out port)
    for cname, c in mod["cells"].items():
        for port, conn in c["connections"].items():
            if c.get("port_directions", {}).get(port) == "output":
                for i, b in enumerate(conn):
                    if isinstance(b, int):
                        driver[b] = (cname, port if len(conn) == 1 else f"{port}[{i}]")
    cells = mod["cells"]
    memo = {}

    def arrival(bit, depth=0):
        if bit in memo:
            return memo[bit]
        memo[bit] = (0.0, None)          # cycle guard
        d = driver.get(bit)
        res = (0.0, bit)
        if d is not None:
            cname, port = d
            c = cells[cname]
            arcs = _ARCS.get(c["type"], {})
            pin_arcs = arcs.get(port) or arcs.get(port.split("[")[0]) or {}
            best = (0.0, bit)
            for inport, delay in pin_arcs.items():
                for b in _bits(c["connections"].get(inport, [])):
                    a, _ = arrival(b, depth + 1)
                    if a + delay > best[0]:
                        best = (a + delay, b)
            res = (best[0], best[1]) if pin_arcs else (0.0, bit)
        memo[bit] = res
        return res

    sys.setrecursionlimit(100000)
    ends = []
    for cname, c in cells.items():
        t = c["type"]
        if t not in _SEQ_IN:
            continue
        ports = _SEQ_IN[t] or [p for p, d in c.get("port_directions", {}).items() if d == "input"]
        for p in ports:
            for b in _bits(c["connections"].get(p, [])):
                a, _ = arrival(b)
                ends.append((a, b, cname, p))
    return ends, netsrc


def _where(src: str) -> str:
    hits = re.findall(r"((?:hw|synth)/[\w/]+\.py:\d+)", src)
    return hits[0] if hits else src[:60]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sfp.synth.depth", description=__doc__.splitlines()[0])
    ap.add_argument("netlist")
    ap.add_argument("--top", default=None)
    ap.add_argument("--min", type=float, default=3.0, help="report endpoints at least this deep")
    ap.add_argument("-n", type=int, default=30, help="source lines to list")
    a = ap.parse_args(argv)
    with open(a.netlist) as f:
        nl = json.load(f)
    ends, netsrc = analyse(nl, a.top)
    groups = collections.defaultdict(lambda: [0.0, 0, ""])
    for lvl, b, cname, port in ends:
        if lvl < a.min:
            continue
        key = _where(netsrc.get(b, ("", ""))[1]) + f" ({netsrc.get(b, ('?', ''))[0][:40]})"
        g = groups[key]
        g[1] += 1
        if lvl > g[0]:
            g[0], g[2] = lvl, f"{cname}.{port}"
    print(f"{len(ends)} endpoints; {sum(g[1] for g in groups.values())} at >= {a.min} levels")
    for key, (lvl, cnt, ex) in sorted(groups.items(), key=lambda kv: -kv[1][0])[:a.n]:
        print(f"{lvl:5.1f}  {cnt:5d}  {key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
