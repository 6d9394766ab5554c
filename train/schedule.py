"""The container schedule: which container every stored tensor used at every training step.

Written by every method (``sfp train``) as JSON; the hardware runs read it
back with :func:`load_schedule`.  Schema (``docs/training.md``)::

    {
      "format": "sfp-train-schedule", "version": 1,
      "task": "digits", "method": "qmqe", "source": "bf16",
      "epochs": 10, "steps": 430, "steps_per_epoch": 43, "batch_size": 32,
      "tensors": {
        "act/conv1.in": {
          "kind": "act", "values_per_step": 2048, "nonneg": true,
          "runs": [[first_step, last_step, man_bits, exp_bits, exp_base, sign], ...]
        }, ...
      }
    }

Steps count optimizer steps from 1.  A run covers the inclusive step range
``first_step .. last_step`` with one container; runs are in order, do not
overlap and cover every step.  ``sign`` is 1 (stored) or 0 (elided).  The
``source`` is ``bf16`` for every method but ``fp32``, whose runs are all
``[.., .., 23, 8, 0, 1]`` over an fp32 source (stored as is).  Every other
container field takes the format's default (rne rounding, specials kept,
no Gecko, block 256, word 128); Gecko is a storage choice of the hardware
run, orthogonal to the schedule.  The last step's containers are also the
ones used for evaluation after training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sfp.model.formats import Settings

__all__ = ["Recorder", "Schedule", "load_schedule", "FORMAT", "VERSION"]

FORMAT = "sfp-train-schedule"
VERSION = 1


class Recorder:
    """Collects (tensor, step, container) during training, run-length encoded."""

    def __init__(self, source: str = "bf16"):
        self.source = source
        self.tensors: dict[str, dict] = {}

    def record(self, point, step: int, c: dict | None) -> None:
        if c is None:   # fp32: stored as is
            row = [23, 8, 0, 1]
        else:
            row = [int(c["m"]), int(c["e"]), int(c["exp_base"]), int(bool(c["sign"]))]
        t = self.tensors.setdefault(point.name, {"kind": point.kind, "values_per_step": int(point.size),
                                                 "nonneg": bool(point.nonneg), "runs": []})
        runs = t["runs"]
        if runs and runs[-1][1] == step:      # already recorded for this step (same choice)
            return
        if runs and runs[-1][2:] == row and runs[-1][1] == step - 1:
            runs[-1][1] = step
        else:
            runs.append([step, step] + row)

    def to_json(self, **meta) -> dict:
        return {"format": FORMAT, "version": VERSION, **meta, "source": self.source, "tensors": self.tensors}


@dataclass
class Schedule:
    meta: dict
    tensors: dict

    @property
    def steps(self) -> int:
        return int(self.meta["steps"])

    @property
    def source(self) -> str:
        return self.meta["source"]

    def names(self) -> list[str]:
        return list(self.tensors)

    def row(self, name: str, step: int) -> list:
        runs = self.tensors[name]["runs"]
        lo, hi = 0, len(runs) - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            a, b = runs[mid][0], runs[mid][1]
            if step < a:
                hi = mid - 1
            elif step > b:
                lo = mid + 1
            else:
                return runs[mid]
        raise KeyError(f"{name}: no container recorded for step {step} (steps 1..{self.steps})")

    def settings(self, name: str, step: int, **kw) -> Settings:
        _, _, m, e, base, sign = self.row(name, step)
        return Settings(source=self.source, man_bits=m, exp_bits=e, exp_base=base, sign=bool(sign), **kw)

    def at(self, step: int, **kw) -> dict[str, Settings]:
        """Per-tensor :class:`Settings` at ``step`` (1-based); ``kw`` sets other fields (e.g. gecko=True)."""
        if not 1 <= step <= self.steps:
            raise KeyError(f"step {step} outside 1..{self.steps}")
        return {name: self.settings(name, step, **kw) for name in self.tensors}

    def final(self, **kw) -> dict[str, Settings]:
        return self.at(self.steps, **kw)


def save_schedule(path, doc: dict) -> None:
    from sfp.fileio import write_text_atomic
    write_text_atomic(path, json.dumps(doc, separators=(",", ":")))


def load_schedule(path, step: int | None = None):
    """Read a schedule.  With ``step``: ``{tensor: Settings}`` at that step; else a :class:`Schedule`."""
    with open(path) as f:
        doc = json.load(f)
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise ValueError(f"{path}: not a {FORMAT} v{VERSION} file")
    meta = {k: v for k, v in doc.items() if k != "tensors"}
    s = Schedule(meta, doc["tensors"])
    return s if step is None else s.at(step)
