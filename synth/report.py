"""The human-readable report of a synthesis result (:func:`sfp.synth.flow.run_config`'s dict)."""

from __future__ import annotations

import json

from sfp.hw.params import HwParams
from sfp.synth.sweep import throughput_gbs

__all__ = ["report_text"]

# Column titles: a Liberty run's logic area (µm²), its flip-flops' share, and the
# memories' bits (kept apart from the logic: an ASIC would use SRAM macros).
_LABELS = {"area_um2": "area um2", "sequential_area_um2": "seq um2", "memory_bits": "mem bits"}


def _fmt(v) -> str:
    if v is None:
        return "—"
    return f"{v:g}" if isinstance(v, float) else str(v)


def report_text(res: dict) -> str:
    """The human-readable report of one configuration."""
    p = HwParams(**res["params"])
    t = res["target"]
    lines = [f"configuration: {json.dumps(res['params'])}", f"target: {t}   tool: {res['tool']}"]
    cols = ["cells", "ff", "kge", "transistors", "area_um2", "sequential_area_um2", "memory_bits"] if t == "generic" else ["lut", "ff", "carry", "mux", "lutram", "bram", "dsp"]
    cols = [c for c in cols if any(c in m for m in list(res["units"].values()) + [res["total"]])]
    has_f = any("fmax_mhz" in m for m in res["units"].values())
    head = f"{'unit':<14}" + "".join(f"{_LABELS.get(c, c):>12}" for c in cols) + (f"{'Fmax MHz':>10}{'GB/s':>8}" if has_f else "")
    lines += [head, "-" * len(head)]
    rows = list(res["units"].items()) + ([("total", res["total"])] if len(res["units"]) > 1 else [])
    for name, m in rows:
        ln = f"{name:<14}" + "".join(f"{_fmt(m.get(c)):>12}" for c in cols)
        if has_f:
            fm = m.get("fmax_mhz")
            ln += f"{_fmt(fm):>10}{_fmt(throughput_gbs(p, fm)):>8}"
        lines.append(ln)
    for name, m in res["units"].items():
        pr = m.get("pnr")
        if not pr:
            continue
        if "skipped" in pr:
            lines.append(f"{name}: place and route skipped: {pr['skipped']}")
            continue
        cp = pr.get("critical_path") or {}
        lines.append(f"{name}: {pr['device']}, post-route Fmax {pr['fmax_mhz']} MHz "
                     f"(constraint {pr['constraint_mhz']} MHz); {pr.get('lut_used')} of {pr.get('lut_available')} LUT/logic cells with the wrapper")
        if cp:
            lines.append(f"  critical path {cp['delay_ns']} ns ({cp['logic_levels']} logic levels, {cp['logic_ns']} ns logic, "
                         f"{cp['routing_ns']} ns routing): {cp['from']} -> {cp['to']}")
            if cp.get("sources"):
                lines.append(f"  through {', '.join(cp['sources'])}")
    if res.get("note"):
        lines.append(res["note"])
    return "\n".join(lines)
