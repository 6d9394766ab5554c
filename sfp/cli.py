"""``sfp``: the command line over the golden model (and, as they land, the hardware flows).

Every failure a user can cause (a missing file, a bad setting, a corrupted
container) ends in one line on stderr and exit status 2; outputs are
written to a temporary file and renamed, so a failed run leaves none.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import tempfile
import zipfile

import numpy as np

from sfp.model.formats import FormatError, ROUNDINGS, SOURCES, WORD_SIZES, Settings

EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


# -- input and output ----------------------------------------------------------

def source_of(x: np.ndarray, requested: str | None) -> tuple[np.ndarray, str]:
    """The array as the source format's values and that format's name.

    float32 arrays may be asked for as bf16 (or fp16): they are rounded to
    nearest even first, the cast an accelerator makes on its way to memory.
    """
    kind, size = x.dtype.kind, x.dtype.itemsize
    name = x.dtype.name
    natural = {("f", 4): "fp32", ("u", 4): "fp32", ("f", 2): "fp16" if name == "float16" else "bf16",
               ("V", 2): "bf16", ("u", 2): "bf16"}.get((kind, size))
    if name == "bfloat16":
        natural = "bf16"
    if natural is None:
        raise CliError(f"unsupported dtype {x.dtype}: expected float32, bfloat16, float16, or uint16/uint32 bit patterns")
    if requested is None or requested == natural or (kind == "u" and size == 2 and requested in ("bf16", "fp16")):
        return x, requested or natural
    if kind == "f" and size == 4 and requested in ("bf16", "fp16"):
        if requested == "bf16":
            import ml_dtypes
            return x.astype(ml_dtypes.bfloat16), "bf16"
        return x.astype(np.float16), "fp16"
    raise CliError(f"dtype {x.dtype} cannot be read as --source {requested}")


def load_npy(path: str) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CliError(f"{path}: no such file")
    except (ValueError, OSError, EOFError) as exc:
        raise CliError(f"{path}: not a readable .npy file ({_first_line(exc)})")
    if isinstance(x, np.lib.npyio.NpzFile):
        raise CliError(f"{path}: is an .npz archive; encode takes one .npy tensor")
    return x


def load_tensors(path: str) -> dict[str, np.ndarray]:
    """One .npy, or every array of an .npz, by name."""
    try:
        obj = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CliError(f"{path}: no such file")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CliError(f"{path}: not a readable .npy/.npz file ({_first_line(exc)})")
    if isinstance(obj, np.lib.npyio.NpzFile):
        with obj:
            try:
                return {k: obj[k] for k in obj.files}
            except (ValueError, OSError, zipfile.BadZipFile) as exc:
                raise CliError(f"{path}: corrupted .npz ({_first_line(exc)})")
    return {os.path.basename(path): obj}


def load_json(path: str):
    """The JSON document in ``path``; CliError naming the problem."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise CliError(f"{path}: no such file")
    except IsADirectoryError:
        raise CliError(f"{path}: is a directory")
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: not valid JSON ({str(exc).splitlines()[0]})")


def write_atomic(path: str, write) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it into place."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CliError(f"{path}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".sfp-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# -- settings ------------------------------------------------------------------

def add_settings_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("container settings (docs/format.md section 2)")
    g.add_argument("--source", choices=sorted(SOURCES), help="source format (default: from the dtype; uint16 means bf16)")
    g.add_argument("--man-bits", type=int, metavar="M", help="mantissa bits kept (default: all)")
    g.add_argument("--exp-bits", type=int, metavar="E", help="exponent code bits, 2..8 (default: 8)")
    g.add_argument("--exp-base", default="auto", metavar="N|auto",
                   help="source exponent mapped to code 0; auto fits the tensor's largest exponent (default)")
    g.add_argument("--no-sign", action="store_true", help="elide the sign bit (negative values are an error)")
    g.add_argument("--rounding", choices=ROUNDINGS, default="rne", help="mantissa rounding (default: rne)")
    g.add_argument("--seed", type=int, default=0, help="stochastic rounding seed (default: 0)")
    g.add_argument("--no-specials", action="store_true", help="no Inf/NaN code (Inf/NaN inputs are an error)")
    g.add_argument("--gecko", action="store_true", help="Gecko lossless exponent coding")
    g.add_argument("--group", type=int, default=Settings.group, metavar="G", help=f"Gecko group size (default: {Settings.group})")
    g.add_argument("--block", type=int, default=Settings.block, metavar="B", help=f"values per block (default: {Settings.block})")
    g.add_argument("--word", type=int, default=Settings.word, metavar="W", choices=WORD_SIZES,
                   help=f"memory word bits (default: {Settings.word})")


def settings_from(args, source: str) -> Settings:
    if args.exp_base == "auto":
        base = "auto"
    else:
        try:
            base = int(args.exp_base)
        except ValueError:
            raise CliError(f"--exp-base must be an integer or 'auto', got {args.exp_base!r}")
    return Settings(source=source, man_bits=args.man_bits, exp_bits=args.exp_bits, exp_base=base,
                    sign=not args.no_sign, rounding=args.rounding, seed=args.seed,
                    specials=not args.no_specials, gecko=args.gecko, group=args.group,
                    block=args.block, word=args.word)


# -- commands ------------------------------------------------------------------

def cmd_encode(args) -> int:
    from sfp.model.container import encode
    x, source = source_of(load_npy(args.input), args.source)
    data = encode(x, settings_from(args, source))
    write_atomic(args.output, lambda f: f.write(data))
    print(f"{args.input}: {x.size} values -> {args.output} ({len(data)} bytes)", file=sys.stderr)
    return 0


def cmd_decode(args) -> int:
    from sfp.model.container import decode
    try:
        with open(args.input, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CliError(f"{args.input}: no such file")
    except OSError as exc:
        raise CliError(f"{args.input}: {exc.strerror}")
    try:
        y = decode(data)
    except FormatError as exc:
        raise CliError(f"{args.input}: {exc}")
    write_atomic(args.output, lambda f: np.save(f, y, allow_pickle=False))
    return 0


def _ratio(r) -> str:
    return f"{r:>7.2f}x" if r is not None else f"{'-':>8}"


def stats_table(rows: list[tuple[str, dict]]) -> str:
    head = f"{'tensor':<34} {'values':>9} {'bits/val':>8} {'vs fp32':>8} {'vs bf16':>8} {'exp H0':>7} {'gecko':>6} {'raw e':>5}"
    lines = [head, "-" * len(head)]
    for name, r in rows:
        lines.append(f"{name[-34:]:<34} {r['values']:>9} {r['bits_per_value']:>8.3f} {_ratio(r['ratio_vs_fp32'])} "
                     f"{_ratio(r['ratio_vs_bf16'])} {r['exp_entropy_bits']:>7.3f} {r['gecko_exp_bits']:>6.3f} {r['raw_exp_bits']:>5.2f}")
    return "\n".join(lines)


def cmd_stats(args) -> int:
    from sfp.model.stats import combine, footprint
    tensors = load_tensors(args.input)
    rows = []
    for name, arr in tensors.items():
        x, source = source_of(arr, args.source)
        try:
            rows.append((name, footprint(x, settings_from(args, source))))
        except FormatError as exc:
            raise CliError(f"{name}: {exc}")
    total = combine([r for _, r in rows])
    if args.json:
        out = dict(total)
        out["tensors"] = {name: r for name, r in rows}
        print(json.dumps(out, indent=1))
    else:
        print(stats_table(rows + ([("TOTAL", total)] if len(rows) > 1 else [])))
    return 0


def cmd_demo(args) -> int:
    from sfp.demo import run_demo
    return run_demo(args)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``sfp CMD: error: ...``) and exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"sfp: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sfp", description="Schrödinger's FP: dynamic floating-point containers, golden model and hardware generator")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    e = sub.add_parser("encode", help="store a tensor (.npy) in a container file (.sfpc)")
    e.add_argument("input", metavar="IN.npy")
    e.add_argument("-o", "--output", required=True, metavar="OUT.sfpc")
    add_settings_args(e)
    e.set_defaults(func=cmd_encode)

    d = sub.add_parser("decode", help="read a container file back into a tensor (.npy)")
    d.add_argument("input", metavar="IN.sfpc")
    d.add_argument("-o", "--output", required=True, metavar="OUT.npy")
    d.set_defaults(func=cmd_decode)

    s = sub.add_parser("stats", help="footprint of a tensor (.npy) or of every tensor of an .npz")
    s.add_argument("input", metavar="IN.npy|IN.npz")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    add_settings_args(s)
    s.set_defaults(func=cmd_stats)

    m = sub.add_parser("demo", help="the main job on built-in defaults: real training tensors through the containers")
    m.add_argument("--tensors", metavar="FILE.npz", help="training dump to use (default: generate/cached digits CNN dump)")
    m.add_argument("--quick", action="store_true", help="golden-model footprints only (no simulation, training or synthesis)")
    m.set_defaults(func=cmd_demo)

    # Commands over the hardware, synthesis and training live in their own
    # modules; each exposes ``register(subparsers)`` and raises CliError on bad input.
    for name in PLUGINS:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(sub)
    return p


PLUGINS = ("sfp.hw_cmd", "sfp.synth_cmd", "sfp.train_cmd", "sfp.dram_cmd")




def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)   # argparse itself exits 2 with a one-line usage error
    try:
        return args.func(args)
    except (CliError, FormatError) as exc:
        print(f"sfp: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("sfp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run the importable module's main, not this __main__ copy, so that the
    # CliError raised by the command modules is the one main() catches.
    from sfp.cli import main as _main
    sys.exit(_main())
