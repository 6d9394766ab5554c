"""The last DRAM measurement (``make dram`` / ``sfp dram``) in short form, for ``sfp dram --show`` and ``sfp demo``."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["RESULTS", "summary"]

RESULTS = Path("build") / "dram" / "results.json"


def summary(path: Path = RESULTS) -> str | None:
    """Short form of the last measurement (for ``sfp demo``), or None when there is none."""
    if not path.is_file():
        return None
    r = json.loads(path.read_text())
    lines = [f"DRAM (LiteDRAM SDR controller in simulation, {r['values']} values per tensor, "
             f"median of {len(r['tensors'])} real tensors; measured by `make dram`):"]
    for row in r["table"]:
        lines.append(f"  {row['container']:<12} store {row['store_cycles']:>7.0f}  load {row['load_cycles']:>7.0f} cycles"
                     f"  speed-up vs bf16 {row['speedup_vs_bf16']:.2f}x (footprint {row['footprint_vs_bf16']:.2f}x)")
    return "\n".join(lines)
