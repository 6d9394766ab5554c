"""``sfp synth`` (area, Fmax) and ``sfp board`` (FPGA bitstream) — see docs/synthesis.md.

Registered by :mod:`sfp.cli`; every user error is a :class:`sfp.cli.CliError`.
"""

from __future__ import annotations

import json
import os
import sys

__all__ = ["register", "cmd_synth", "cmd_board", "load_config"]

BOARDS = ("ulx3s",)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cli_error():
    from sfp.cli import CliError
    return CliError


def load_config(path: str | None, *, sweep: bool = False):
    """HwParams (or, for a sweep, the raw JSON spec) from ``--config FILE``."""
    CliError = _cli_error()
    if path is None:
        return None
    from sfp.cli import load_json
    obj = load_json(path)
    if sweep:
        return obj
    from sfp.synth.flow import params_from_dict
    try:
        return params_from_dict(obj)
    except (ValueError, TypeError) as exc:
        raise CliError(f"{path}: {exc}")


def _fmt(v) -> str:
    if v is None:
        return "—"
    return f"{v:g}" if isinstance(v, float) else str(v)


def report_text(res: dict) -> str:
    """The human-readable report of one configuration."""
    from sfp.hw.params import HwParams
    from sfp.synth.sweep import throughput_gbs
    p = HwParams(**res["params"])
    t = res["target"]
    lines = [f"configuration: {json.dumps(res['params'])}", f"target: {t}   tool: {res['tool']}"]
    cols = ["cells", "ff", "kge", "transistors", "area_um2"] if t == "generic" else ["lut", "ff", "carry", "mux", "lutram", "bram", "dsp"]
    cols = [c for c in cols if any(c in m for m in list(res["units"].values()) + [res["total"]])]
    has_f = any("fmax_mhz" in m for m in res["units"].values())
    head = f"{'unit':<14}" + "".join(f"{c:>12}" for c in cols) + (f"{'Fmax MHz':>10}{'GB/s':>8}" if has_f else "")
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


def cmd_synth(args) -> int:
    CliError = _cli_error()
    from sfp.synth.tools import ToolError
    if args.liberty and not os.path.isfile(args.liberty):
        raise CliError(f"{args.liberty}: no such file")
    if args.liberty and args.target != "generic":
        raise CliError("--liberty applies to --target generic")
    if args.pnr and args.target not in ("ecp5", "ice40"):
        raise CliError(f"--pnr needs --target ecp5 or ice40 (got {args.target})")
    unit_names = [u.strip() for u in args.units.split(",") if u.strip()] if args.units else None
    progress = None if args.quiet else _say
    try:
        if args.sweep:
            from sfp.synth.sweep import grid, run_sweep, write_outputs
            try:
                configs = grid(load_config(args.config, sweep=True))
            except ValueError as exc:
                raise CliError(f"{args.config}: {exc}")
            results = run_sweep(configs, args.target, args.outdir, pnr=args.pnr, liberty=args.liberty,
                                unit_names=unit_names, jobs=args.jobs, freq_mhz=args.freq, progress=progress)
            paths = write_outputs(results, args.target, args.outdir)
            if args.json:
                print(json.dumps(results, indent=1))
            else:
                with open(paths["md"]) as f:
                    print(f.read(), end="")
            _say(f"sweep: wrote {paths['json']}, {paths['md']}, {paths['png']}")
            failed = sum(len(r.get("errors", {})) for r in results)
            if failed:
                raise CliError(f"{failed} sweep job(s) failed (see the table)")
            return 0
        from sfp.hw.params import HwParams
        from sfp.synth.flow import run_config
        p = load_config(args.config) or HwParams()
        try:
            res = run_config(p, args.target, args.outdir, pnr=args.pnr, liberty=args.liberty,
                             unit_names=unit_names, freq_mhz=args.freq, progress=progress)
        except ValueError as exc:
            raise CliError(str(exc))
    except ToolError as exc:
        raise CliError(str(exc))
    print(json.dumps(res, indent=1) if args.json else report_text(res))
    return 0


def cmd_board(args) -> int:
    CliError = _cli_error()
    if args.name not in BOARDS:
        raise CliError(f"unknown board {args.name!r} (known: {', '.join(BOARDS)})")
    from sfp.hw.board import BoardError, build_ulx3s
    p = load_config(args.config)
    try:
        info = build_ulx3s(p, args.outdir, progress=None if args.quiet else _say)
    except BoardError as exc:
        raise CliError(str(exc))
    print(json.dumps(info, indent=1) if args.json else
          f"{info['bitstream']} ({info['bytes']} bytes); {info['summary']}")
    return 0


def register(sub) -> None:
    from sfp.synth.yosys import TARGETS
    s = sub.add_parser("synth", help="synthesize the packer/unpacker: area per unit, optionally Fmax after place and route",
                       description="Area per unit with Yosys (generic gates/kGE, ecp5, ice40, xilinx); --pnr places "
                                   "and routes with nextpnr for post-route Fmax.  See docs/synthesis.md.")
    s.add_argument("--config", metavar="FILE", help="JSON object of HwParams fields (default: the defaults); "
                   "with --sweep, fields may be lists (swept) or the file a list of objects")
    s.add_argument("--target", choices=TARGETS, default="generic", help="default: generic")
    s.add_argument("--pnr", action="store_true", help="place and route (ecp5: LFE5U-85F; ice40: HX8K) for post-route Fmax")
    s.add_argument("--freq", type=float, default=200.0, metavar="MHZ", help="clock constraint for --pnr (default 200)")
    s.add_argument("--liberty", metavar="FILE", help="map onto this standard-cell library: area from the library (generic target)")
    s.add_argument("--units", metavar="LIST", help="comma-separated units (default: packer,unpacker; also "
                   "quantizer, dequantizer, prng, wordpacker, wordunpacker, gecko_encoder, gecko_decoder)")
    s.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    s.add_argument("--sweep", action="store_true", help="many configurations in parallel: table + PNG plot in --outdir")
    s.add_argument("--jobs", type=int, metavar="J", help="parallel jobs for --sweep (default: the number of cores)")
    s.add_argument("--outdir", default=os.path.join("build", "synth"), metavar="DIR", help="work directory (default build/synth)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(func=cmd_synth)

    b = sub.add_parser("board", help="build an FPGA bitstream of the loopback test design (packer -> unpacker -> checker)")
    b.add_argument("name", metavar="NAME", help=f"board: {', '.join(BOARDS)}")
    b.add_argument("--config", metavar="FILE", help="JSON object of HwParams fields (default: the defaults)")
    b.add_argument("--outdir", default=os.path.join("build", "board"), metavar="DIR", help="build directory (default build/board)")
    b.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    b.set_defaults(func=cmd_board)
