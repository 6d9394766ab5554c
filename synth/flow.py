"""The synthesis flow: configuration -> Verilog per unit -> Yosys (-> nextpnr) -> figures.

One *job* is one (configuration, unit, target) triple; :func:`run_job` is a
plain top-level function of picklable arguments so that a sweep can run jobs
in worker processes.  :func:`run_config` runs the units of one configuration
and adds their total.
"""

from __future__ import annotations

import os
import time
from typing import Callable

from amaranth.back import verilog

from sfp.fileio import write_text_atomic
from sfp.hw.params import params_from_dict, HwParams

from .pnr import DEVICES, place_and_route
from .tools import tool_version, yosys
from .units import ScanWrapper, units
from .yosys import TARGETS, synthesize

__all__ = ["params_from_dict", "config_tag", "run_job", "run_config", "SUMMABLE", "PNR_TARGETS",
           "ICE40_LC"]

PNR_TARGETS = ("ecp5", "ice40")
#: Logic cells of the iCE40 HX8K: a wrapped unit with more LUTs + carries than this is not placed.
ICE40_LC = 7680
#: Metrics added up over units for the total.
SUMMABLE = ("lut", "ff", "carry", "bram", "dsp", "lutram", "srl", "mux", "cells", "transistors", "kge", "area_um2",
            "sequential_area_um2", "memory_bits")




def config_tag(p: HwParams) -> str:
    """A short readable name of a configuration (also its build directory)."""
    d = p.as_dict()
    tag = f"{d['source']}_n{d['lanes']}_w{d['word']}_m{d['max_man_bits']}e{d['max_exp_bits']}"
    if not d["stochastic"]:
        tag += "_nosr"
    if d["gecko"]:
        tag += f"_gecko{d['group']}"
    if d["block"] != 256:
        tag += f"_b{d['block']}"
    return tag


def _write(path: str, text: str) -> None:
    write_text_atomic(path, text)


def run_job(pdict: dict, unit: str, target: str, workdir: str, pnr: bool = False,
            liberty: str | None = None, freq_mhz: float = 200.0, seed: int = 1, router: str | None = None) -> dict:
    """Synthesize one unit of one configuration for one target (and place and route it; ``router``:
    nextpnr's ``--router``, default its own).

    Returns the metrics dict; ``seconds`` is the wall time.  Raises ToolError/ValueError.
    """
    t0 = time.monotonic()
    p = params_from_dict(pdict)
    factory = units(p, [unit])[unit]
    os.makedirs(workdir, exist_ok=True)
    top = f"sfp_{unit}"
    vpath = os.path.join(workdir, f"{top}.v")
    _write(vpath, verilog.convert(factory(p), name=top))
    out = synthesize(vpath, top, target, workdir, liberty=liberty)
    if pnr:
        if target not in PNR_TARGETS:
            raise ValueError(f"place and route is for targets {' and '.join(PNR_TARGETS)}, not {target}")
        wrap = ScanWrapper(factory(p))
        wtop = f"{top}_wrap"
        wpath = os.path.join(workdir, f"{wtop}.v")
        _write(wpath, verilog.convert(wrap, name=wtop, ports=wrap.ports()))
        net = f"{wtop}_{target}.json"
        wrapped = synthesize(wpath, wtop, target, os.path.join(workdir, "wrap"), netlist_json=net)
        out["wrapper"] = {"in_bits": wrap.n_in, "out_bits": wrap.n_out,
                          "ff_overhead": wrap.n_in + 2 * wrap.n_out + 1, "synth": wrapped}
        if target == "ice40" and wrapped["lut"] + wrapped["carry"] > ICE40_LC:
            out["pnr"] = {"skipped": f"does not fit {DEVICES['ice40']['name']}: "
                                     f"{wrapped['lut']} LUTs + {wrapped['carry']} carries > {ICE40_LC} logic cells"}
        else:
            pr = place_and_route(os.path.join(workdir, "wrap", net), target, os.path.join(workdir, "wrap"),
                                 freq_mhz=freq_mhz, seed=seed, router=router)
            out["pnr"] = pr
            out["fmax_mhz"] = pr["fmax_mhz"]
    out["seconds"] = round(time.monotonic() - t0, 1)
    return out


def total_of(per_unit: dict[str, dict]) -> dict:
    tot: dict = {}
    for m in per_unit.values():
        for k in SUMMABLE:
            if isinstance(m.get(k), (int, float)) and not isinstance(m.get(k), bool):
                tot[k] = round(tot.get(k, 0) + m[k], 3)
    fm = [m["fmax_mhz"] for m in per_unit.values() if m.get("fmax_mhz") is not None]
    if fm and len(fm) == len(per_unit):
        tot["fmax_mhz"] = min(fm)      # both units on one clock: the slower one sets it
    return tot


def run_config(p: HwParams, target: str, outdir: str, *, pnr: bool = False, liberty: str | None = None,
               unit_names: list[str] | None = None, freq_mhz: float = 200.0, seed: int = 1,
               router: str | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Every unit of ``p`` for ``target``, one after the other; ``{"params", "target", "tool", "units", "total"}``."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r} (one of {', '.join(TARGETS)})")
    if pnr and target not in PNR_TARGETS:
        raise ValueError(f"--pnr needs --target ecp5 or ice40 (got {target})")
    names = list(units(p, unit_names))
    per_unit = {}
    base = os.path.join(outdir, config_tag(p), target + ("_lib" if liberty else ""))
    for i, name in enumerate(names, 1):
        if progress:
            progress(f"[{i}/{len(names)}] {config_tag(p)} {name}: {target} synthesis{' + place and route' if pnr else ''} ...")
        per_unit[name] = run_job(p.as_dict(), name, target, os.path.join(base, name), pnr=pnr,
                                 liberty=liberty, freq_mhz=freq_mhz, seed=seed, router=router)
        if progress:
            progress(f"[{i}/{len(names)}] {name}: done in {per_unit[name]['seconds']} s")
    res = {"params": p.as_dict(), "target": target, "tool": tool_version(yosys()), "units": per_unit,
           "total": total_of(per_unit)}
    if p.gecko:
        res["note"] = ("Gecko's share: these figures minus the same configuration with gecko false; "
                       "per block: gecko_encoder - wordpacker, gecko_decoder - wordunpacker "
                       "(--units gecko_encoder,gecko_decoder,wordpacker,wordunpacker)")
    return res
