"""Sweeps: many configurations, jobs in parallel worker processes, a table and a plot.

A sweep is a list of HwParams dicts (:func:`grid`); every (configuration,
unit) pair is one job of :func:`sfp.synth.flow.run_job`, run by a
``ProcessPoolExecutor`` with one worker per core.  The results are written
as JSON, a Markdown table and a PNG plot of area against N and W.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import json
import os
import time
from typing import Callable

from sfp.fileio import write_atomic, write_text_atomic
from sfp.hw.params import HwParams

from .flow import config_tag, params_from_dict, run_job, total_of
from .tools import tool_version, yosys
from .units import units

__all__ = ["DEFAULT_GRID", "grid", "run_sweep", "table_markdown", "plot", "throughput_gbs"]

#: The default sweep: (source, lanes, word) at full maxima, plus narrower maxima.
DEFAULT_GRID = (
    [{"source": "bf16", "lanes": n, "word": w} for n, w in ((2, 64), (4, 64), (4, 128), (8, 128), (8, 256), (16, 256))]
    + [{"source": "fp32", "lanes": n, "word": w} for n, w in ((2, 64), (4, 128), (8, 256))]
    + [{"source": "bf16", "lanes": n, "word": w, "max_man_bits": 3, "max_exp_bits": 5}
       for n, w in ((8, 128), (16, 256))]
)


def grid(spec: dict | list | None) -> list[dict]:
    """Configurations of a sweep.

    ``None``: :data:`DEFAULT_GRID`.  A list: those HwParams dicts.  A dict:
    fields whose value is a list are swept (Cartesian product), the others
    fixed; combinations HwParams refuses (e.g. N x Vmax > W) are skipped.
    """
    if spec is None:
        return [dict(d) for d in DEFAULT_GRID]
    if isinstance(spec, list):
        for d in spec:
            params_from_dict(d)
        return [dict(d) for d in spec]
    if not isinstance(spec, dict):
        raise ValueError("a sweep configuration is a JSON object (lists are swept) or a list of objects")
    keys = list(spec)
    axes = [spec[k] if isinstance(spec[k], list) else [spec[k]] for k in keys]
    out, refused = [], []
    for combo in itertools.product(*axes):
        d = dict(zip(keys, combo))
        try:
            params_from_dict(d)
        except ValueError as exc:
            refused.append(str(exc))
            continue
        out.append(d)
    if not out:
        raise ValueError(f"no valid configuration in the sweep ({refused[0] if refused else 'empty'})")
    return out


def throughput_gbs(p: HwParams, fmax_mhz: float | None) -> float | None:
    """Source-side throughput at one beat per clock: N values x bytes per value x Fmax, in GB/s (1e9 B/s)."""
    if fmax_mhz is None:
        return None
    return round(p.lanes * (p.src.width // 8) * fmax_mhz * 1e6 / 1e9, 3)


def run_sweep(configs: list[dict], target: str, outdir: str, *, pnr: bool = False, liberty: str | None = None,
              unit_names: list[str] | None = None, jobs: int | None = None, freq_mhz: float = 200.0,
              router: str | None = None, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Every unit of every configuration; one result per configuration (as :func:`sfp.synth.flow.run_config`)."""
    todo = []
    for d in configs:
        p = params_from_dict(d)
        for name in units(p, unit_names):
            wd = os.path.join(outdir, config_tag(p), target + ("_lib" if liberty else ""), name)
            todo.append((d, name, wd))
    jobs = jobs or os.cpu_count() or 1
    results: dict[tuple[int, str], dict] = {}
    errors: dict[tuple[int, str], str] = {}
    t0 = time.monotonic()
    if progress:
        progress(f"sweep: {len(configs)} configurations, {len(todo)} jobs ({target}"
                 f"{' + place and route' if pnr else ''}), {jobs} in parallel")
    with cf.ProcessPoolExecutor(max_workers=jobs) as ex:
        futs = {ex.submit(run_job, d, name, target, wd, pnr, liberty, freq_mhz, 1, router): (configs.index(d), name)
                for d, name, wd in todo}
        for done, fut in enumerate(cf.as_completed(futs), 1):
            key = futs[fut]
            try:
                results[key] = fut.result()
                msg = f"{results[key]['seconds']} s"
            except Exception as exc:          # a failed job is reported, the others go on
                errors[key] = f"{type(exc).__name__}: {exc}"
                msg = f"FAILED ({errors[key]})"
            if progress:
                progress(f"[{done}/{len(todo)}] {config_tag(params_from_dict(configs[key[0]]))} {key[1]}: {msg} "
                         f"(elapsed {time.monotonic() - t0:.0f} s)")
    out = []
    for i, d in enumerate(configs):
        p = params_from_dict(d)
        per = {n: results[(i, n)] for n in units(p, unit_names) if (i, n) in results}
        errs = {n: errors[(i, n)] for n in units(p, unit_names) if (i, n) in errors}
        rec = {"params": p.as_dict(), "tag": config_tag(p), "target": target, "tool": tool_version(yosys()),
               "units": per, "total": {} if errs else total_of(per)}     # no total of a partial set
        if errs:
            rec["errors"] = errs
        out.append(rec)
    return out


def table_markdown(results: list[dict], target: str) -> str:
    """One row per configuration and unit (+ total): LUT/FF/carry or kGE, Fmax, throughput."""
    fpga = target != "generic"
    head = ["configuration", "unit"] + (["LUT4", "FF", "carry", "DSP", "LUTRAM"] if fpga else ["cells", "FF", "kGE"])
    timed = any(m.get("fmax_mhz") is not None for r in results for m in r["units"].values())
    if timed:
        head += ["Fmax (MHz)", "GB/s at Fmax"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        p = params_from_dict(r["params"])
        rows = list(r["units"].items()) + ([("total", r["total"])] if len(r["units"]) > 1 else [])
        for name, m in rows:
            if fpga:
                vals = [m.get("lut"), m.get("ff"), m.get("carry"), m.get("dsp"), m.get("lutram")]
            else:
                vals = [m.get("cells"), m.get("ff"), m.get("kge")]
            if timed:
                fm = m.get("fmax_mhz")
                vals += [fm, throughput_gbs(p, fm)]
            cells = ["—" if v is None else (f"{v:g}" if isinstance(v, float) else str(v)) for v in vals]
            lines.append(f"| {r['tag']} | {name} | " + " | ".join(cells) + " |")
        for name, err in (r.get("errors") or {}).items():
            lines.append(f"| {r['tag']} | {name} | failed: {err} |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], target: str, path: str) -> None:
    """PNG: total area against N (one line per W and source) and against W (one line per N)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = "kge" if target == "generic" else "lut"
    label = "area (kGE, NAND2 eq.)" if metric == "kge" else "LUT4 (packer + unpacker)"
    pts = []
    for r in results:
        p = params_from_dict(r["params"])
        v = r["total"].get(metric)
        if v is not None:
            full = p.max_man_bits == p.src.man_width and p.max_exp_bits == 8
            pts.append((p.source + ("" if full else f" m{p.max_man_bits}e{p.max_exp_bits}"), p.lanes, p.word, v))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for (src, w), grp in itertools.groupby(sorted(pts, key=lambda t: (t[0], t[2], t[1])), key=lambda t: (t[0], t[2])):
        g = list(grp)
        axes[0].plot([t[1] for t in g], [t[3] for t in g], marker="o", label=f"{src}, W={w}")
    for (src, n), grp in itertools.groupby(sorted(pts, key=lambda t: (t[0], t[1], t[2])), key=lambda t: (t[0], t[1])):
        g = list(grp)
        axes[1].plot([t[2] for t in g], [t[3] for t in g], marker="s", label=f"{src}, N={n}")
    axes[0].set_xlabel("lanes N (values per clock)")
    axes[1].set_xlabel("memory word W (bits)")
    for ax in axes:
        ax.set_ylabel(label)
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Schrödinger's FP packer + unpacker area, target {target}")
    fig.tight_layout()
    try:
        write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=120))
    finally:
        plt.close(fig)


def write_outputs(results: list[dict], target: str, outdir: str) -> dict[str, str]:
    """sweep_<target>.json / .md / .png in ``outdir``; their paths."""
    os.makedirs(outdir, exist_ok=True)
    paths = {k: os.path.join(outdir, f"sweep_{target}.{k}") for k in ("json", "md", "png")}
    write_text_atomic(paths["json"], json.dumps(results, indent=1))
    write_text_atomic(paths["md"], table_markdown(results, target))
    plot(results, target, paths["png"])
    return paths
