"""``sfp dram``: store/load cycles of real tensors through a simulated LiteDRAM controller.

``sfp dram`` runs scripts/dram_bench.py (the ``make dram`` measurement: minutes, it builds and
simulates the LiteDRAM SDR controller with the packer, unpacker and DMA engines) and prints its
table; ``sfp dram --show`` prints the last measured table (build/dram/results.json) without running.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sfp.dram_report import RESULTS, summary
from sfp.errors import CliError

def cmd_dram(args) -> int:
    if not args.show:
        script = Path(__file__).resolve().parent.parent / "scripts" / "dram_bench.py"
        if not script.is_file():
            raise CliError("scripts/dram_bench.py not found (run from a source checkout)")
        r = subprocess.run([sys.executable, str(script), "--values", str(args.values)])
        if r.returncode != 0:
            raise CliError("the DRAM measurement failed (see its output above)")
        return 0
    s = summary()
    if s is None:
        raise CliError(f"no measurement in {RESULTS}: run `sfp dram` or `make dram` first")
    print(s)
    return 0


def register(sub) -> None:
    d = sub.add_parser("dram", help="measure store/load cycles through a simulated LiteDRAM controller")
    d.add_argument("--show", action="store_true", help="print the last measurement instead of running one")
    d.add_argument("--values", type=int, default=4096, help="values per tensor (default 4096)")
    d.set_defaults(func=cmd_dram)
