"""Measure exponent-coding candidates on real training tensors (docs/format.md 5.3).

For every tensor of the training dump, the exponent codes (after rounding to
bf16 and the container's exponent window) are coded by each candidate; the
table gives exponent bits per value, headers included, totalled per kind of
tensor, beside the order-0 entropy of each tensor's codes (value-weighted),
and the ratio to it.  The chosen scheme is the model's own ``sfp.model.gecko``;
the others are computed here, as bit counts only.

    python scripts/gecko_choice.py [--tensors FILE.npz] [--exp-bits 8 4 3]
"""

from __future__ import annotations

import argparse
import sys

import ml_dtypes
import numpy as np

from sfp.model import gecko
from sfp.model.formats import Settings
from sfp.model.quantize import as_bits, to_fields
from sfp.model.stats import entropy_bits


def _groups(c: np.ndarray, G: int):
    n = c.size
    ng = -(-n // G)
    p = np.zeros(ng * G, np.int64)
    p[:n] = c
    valid = (np.arange(ng * G) < n).reshape(ng, G)
    return p.reshape(ng, G), valid


def fixed_width_bits(c: np.ndarray, e: int, G: int) -> int:
    """Base = group max (e bits), width field (4 bits), every delta at the widest delta's width."""
    g, valid = _groups(c, G)
    d = g.max(1, keepdims=True) - np.where(valid, g, g.max(1, keepdims=True))
    w = np.ceil(np.log2(d.max(1) + 1)).astype(np.int64)
    return int((e + 4 + valid.sum(1) * w).sum())


def patched_bits(c: np.ndarray, e: int, G: int) -> int:
    """Base = group max, best width w per group (3 bits), all-ones delta escapes to a raw code."""
    g, valid = _groups(c, G)
    d = g.max(1, keepdims=True) - g
    costs = [valid.sum(1) * w + ((d >= (1 << w) - 1) & valid).sum(1) * e for w in range(e)]
    return int((e + 3 + np.min(costs, axis=0)).sum())


def measure(path: str, exp_bits=(8, 4, 3), groups=(16, 32, 64)):
    d = np.load(path)
    kinds: dict[str, list] = {}
    for k in d.files:
        kinds.setdefault(k.split("/")[1], []).append(d[k])
    rows = []
    for e in exp_bits:
        for kind in ("weight", "act", "grad"):
            n = 0
            acc = {"H0": 0.0, "fixed32": 0, "patched32": 0}
            acc.update({f"gecko{G}": 0 for G in groups})
            for arr in kinds.get(kind, []):
                x = arr.astype(ml_dtypes.bfloat16)
                f, _ = to_fields(as_bits(x, "bf16"), Settings(exp_bits=e))
                c = f.code.astype(np.int64)
                n += c.size
                acc["H0"] += entropy_bits(c) * c.size
                acc["fixed32"] += fixed_width_bits(c, e, 32)
                acc["patched32"] += patched_bits(c, e, 32)
                for G in groups:
                    acc[f"gecko{G}"] += int(gecko.code_groups(c, G, e).bits.sum())
            rows.append((e, kind, n, {k: v / n for k, v in acc.items()}))
    return rows


def table(rows, groups=(16, 32, 64)) -> str:
    cols = ["fixed32", "patched32"] + [f"gecko{G}" for G in groups]
    names = {"fixed32": "fixed width G=32", "patched32": "fixed+escapes G=32", **{f"gecko{G}": f"Gecko G={G}" for G in groups}}
    out = ["| e | tensors | values | entropy H0 | " + " | ".join(names[c] for c in cols) + " | cut vs 8-bit (Gecko G=32) |",
           "|---|---|---|---|" + "---|" * len(cols) + "---|"]
    for e, kind, n, r in rows:
        cells = [f"{r[c]:.2f} ({r[c] / r['H0']:.2f}x)" for c in cols]
        out.append(f"| {e} | {kind} | {n:,} | {r['H0']:.2f} | " + " | ".join(cells) + f" | {100 * (1 - r['gecko32'] / 8):.0f}% |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tensors", help="training dump .npz (default: generate/cached digits dump)")
    ap.add_argument("--exp-bits", type=int, nargs="+", default=[8, 4, 3])
    args = ap.parse_args(argv)
    path = args.tensors
    if path is None:
        from sfp.train.tensors import ensure_tensors
        path = str(ensure_tensors())
    print(f"tensors: {path}", file=sys.stderr)
    print(table(measure(path, args.exp_bits)))


if __name__ == "__main__":
    main()
