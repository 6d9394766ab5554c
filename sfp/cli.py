"""``sfp``: the command line, a thin layer over :mod:`sfp.model`, :mod:`sfp.hw`, :mod:`sfp.synth` and :mod:`sfp.train`.

This module only builds the parser and runs a command.  Each command lives
in its own module, which exposes ``register(subparsers)`` and raises
:class:`sfp.errors.CliError` on bad input:

=====================  ==========================================
``sfp.codec_cmd``      ``encode``, ``decode``, ``stats``
``sfp.demo``           ``demo``
``sfp.hw_cmd``         ``generate``, ``sim``
``sfp.synth_cmd``      ``synth``, ``board``
``sfp.train_cmd``      ``train``
=====================  ==========================================

Command modules import :mod:`sfp.errors`, :mod:`sfp.inputs` and
:mod:`sfp.fileio`, never this module or each other, so there are no import
cycles (``tests/test_cli_layers.py``).  Every failure a user can cause ends
in one line on stderr and exit status 2; outputs are written atomically, so
a failed run leaves none.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from sfp.errors import EXIT_USAGE, CliError
from sfp.model.formats import FormatError

__all__ = ["main", "build_parser", "COMMAND_MODULES"]

# In the order of ``sfp --help``.
COMMAND_MODULES = ("sfp.codec_cmd", "sfp.demo", "sfp.hw_cmd", "sfp.synth_cmd", "sfp.train_cmd", "sfp.dram_cmd")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``sfp CMD: error: ...``) and exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"sfp: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sfp", description="Schrödinger's FP: dynamic floating-point containers, golden model and hardware generator")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


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
    sys.exit(main())
