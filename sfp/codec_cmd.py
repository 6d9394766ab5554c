"""``sfp encode``, ``sfp decode`` and ``sfp stats``: the golden model on files.

Thin wrappers: read the input (:mod:`sfp.inputs`), build the
:class:`~sfp.model.formats.Settings` from the options, call
:mod:`sfp.model`, write the output atomically (:mod:`sfp.fileio`).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from sfp.errors import CliError
from sfp.fileio import write_atomic
from sfp.inputs import load_npy, load_tensors, output_path, source_of
from sfp.model.formats import FormatError, ROUNDINGS, SOURCES, WORD_SIZES, Settings

__all__ = ["register", "add_settings_args", "settings_from", "cmd_encode", "cmd_decode", "cmd_stats", "stats_table"]


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
    from sfp.model.fast import encode_parts     # the reference's bytes (tests/test_model_fast.py), sooner
    output_path(args.output)
    x, source = source_of(load_npy(args.input), args.source)
    header, payload = encode_parts(x, settings_from(args, source))

    def write(f):
        f.write(header)
        f.write(memoryview(payload))

    write_atomic(args.output, write)
    print(f"{args.input}: {x.size} values -> {args.output} ({len(header) + payload.size} bytes)", file=sys.stderr)
    return 0


def save_npy_bits(f, bits: np.ndarray, source: str, raw_bits: bool) -> None:
    """Write ``bits`` (the source's bit patterns) as the ``.npy`` that ``np.save`` writes for the decoded tensor.

    The same bytes as ``np.save(f, decode(data))``: float16/float32 arrays as
    such, bfloat16 as ``ml_dtypes`` saves it (``<V2`` records), bit patterns
    as unsigned integers.  Written from the patterns, so the command does not
    import ``ml_dtypes`` (about a second of start-up on a loaded machine).
    """
    if raw_bits:
        descr = bits.dtype.newbyteorder("<").str
    else:
        descr = {"bf16": "<V2", "fp16": "<f2", "fp32": "<f4"}[source]
    np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": bits.shape})
    f.write(memoryview(np.ascontiguousarray(bits, bits.dtype.newbyteorder("<")).reshape(-1)).cast("B"))


def cmd_decode(args) -> int:
    from sfp.model.fast import decode_bits
    output_path(args.output)
    try:
        with open(args.input, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CliError(f"{args.input}: no such file")
    except IsADirectoryError:
        raise CliError(f"{args.input}: is a directory")
    except OSError as exc:
        raise CliError(f"{args.input}: {exc.strerror}")
    try:
        bits, e = decode_bits(data)
    except FormatError as exc:
        raise CliError(f"{args.input}: {exc}")
    write_atomic(args.output, lambda f: save_npy_bits(f, bits, e.settings.source, e.raw_bits))
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


def register(sub) -> None:
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
