"""Run one training method on one task; account the footprint; write schedule, results and plots.

:func:`run` trains with :func:`sfp.train.digits.train` (fixed seeds, 2 threads)
and a policy (``fp32``, ``bf16``, ``qmqe``, ``bitwave``).  At every
``measure_every``-th step (and the last step) it captures the tensors that
step actually stored (the bf16 patterns of every weight and of that
minibatch's activations, at the containers the step used) and runs them
through :func:`sfp.model.stats.footprint`, plain and with Gecko: every footprint
figure is the golden model's DRAM image size (block padding included) of
real tensors.  ``fp32`` tensors are accounted as fp32 sources stored as is
(``m23 e8``, ``exp_base`` 0); ``bf16`` as bf16 sources at ``m7 e8``.

Footprint figures (``footprint`` in the result), for ``weight``, ``act`` and
``total``:

* ``bits_per_value`` / ``gecko_bits_per_value``: stored bits over stored
  values, summed over the measured steps (the training-wide footprint);
* ``vs_fp32`` = 32 / bits per value, ``vs_bf16`` = 16 / bits per value (and
  ``gecko_vs_*``);
* ``final``: the same at the last step only (the containers training ended with).
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import torch

from sfp.model.formats import Settings
from sfp.model.stats import footprint

from . import digits as D
from .bitwave import BitWave
from .qmqe import FixedPolicy, QMQE
from .schedule import Recorder
from .tasks import QuantNet, load_task

__all__ = ["METHODS", "make_policy", "run", "plot_run"]

METHODS = ("fp32", "bf16", "qmqe", "bitwave")
BATCH = 32
THREADS = 1      # one intra-op thread: results do not depend on the core count, and 2 shared cores are faster so


def make_policy(method: str, epochs: int, seed: int = 0, steps_per_epoch: int = 1, **knobs):
    if method == "fp32":
        return FixedPolicy(None)
    if method == "bf16":
        return FixedPolicy(7, 8, elide_sign=False)
    if method == "qmqe":
        return QMQE(epochs=epochs, seed=seed, **knobs)
    if method == "bitwave":
        return BitWave(**knobs)
    raise ValueError(f"unknown method {method!r}")


class _Monitor:
    """Hook: captures stored tensors at measured steps, accounts them, logs bitlengths."""

    def __init__(self, net: QuantNet, policy, measure_every: int, last_step: int, source: str):
        self.net, self.policy = net, policy
        self.every, self.last = measure_every, last_step
        self.source = source
        self.measured: list[dict] = []
        self.bits_log: list[dict] = []     # per step: {name: [n_m, n_e]} (real for qmqe)
        self.last_tensors: dict[str, dict] = {}   # the last step's stored tensors (for hardware replay)

    def _due(self, step):
        return step % self.every == 0 or step == self.last or step == 1

    def before_step(self, model, x, y, step, epoch):
        self.step = step
        for p in self.net.points.values():
            p.capture = {} if self._due(step) else None

    def after_step(self, model, step, epoch, loss):
        row = {}
        for p in self.net.points.values():
            if isinstance(self.policy, QMQE):
                row[p.name] = [float(p.nm.detach()), float(p.ne.detach())]
        self.bits_log.append(row)
        if not self._due(step):
            return
        rec = {"step": step, "epoch": epoch, "tensors": {}}
        for p in self.net.points.values():
            cap, p.capture = p.capture, None
            if not cap:
                continue
            if cap["settings"] is None:
                x, base = cap["x"], Settings(source="fp32", exp_base=0)
            else:
                c = cap["settings"]
                x = cap["bits"]
                base = Settings(source="bf16", man_bits=c["m"], exp_bits=c["e"], exp_base=c["exp_base"], sign=c["sign"])
            if step == self.last:
                self.last_tensors[p.name] = {"values": x, "settings": base}
            plain = footprint(x, base)
            gk = footprint(x, base.with_(gecko=True))
            rec["tensors"][p.name] = {"kind": p.kind, "values": plain["values"], "bits": plain["image_bits"],
                                      "gecko_bits": gk["image_bits"]}
        self.measured.append(rec)


def _summary(records: list[dict]) -> dict:
    out = {}
    for kind in ("weight", "act", "total"):
        v = b = g = 0
        for r in records:
            for t in r["tensors"].values():
                if kind == "total" or t["kind"] == kind:
                    v += t["values"]
                    b += t["bits"]
                    g += t["gecko_bits"]
        bpv, gbpv = b / v, g / v
        out[kind] = {"values": v, "bits_per_value": bpv, "gecko_bits_per_value": gbpv,
                     "vs_fp32": 32 / bpv, "vs_bf16": 16 / bpv,
                     "gecko_vs_fp32": 32 / gbpv, "gecko_vs_bf16": 16 / gbpv}
    return out


def run(task: str, method: str, epochs: int | None = None, seed: int = 0, measure_every: int | None = None,
        log=None, **knobs) -> dict:
    """Train and account; returns the result dict (see the module docstring) with the schedule inside."""
    t0 = time.perf_counter()
    data, base, shape, input_nonneg, default_epochs, lr = load_task(task, seed)
    epochs = epochs or default_epochs
    steps_per_epoch = math.ceil(len(data.x_train) / BATCH)
    steps = epochs * steps_per_epoch
    policy = make_policy(method, epochs, seed, steps_per_epoch, **knobs)
    net = QuantNet(base, policy, shape, BATCH, input_nonneg)
    rec = Recorder("fp32" if method == "fp32" else "bf16")
    policy.recorder = rec
    mon = _Monitor(net, policy, measure_every or max(1, steps_per_epoch // 8), steps, rec.source)
    history = D.train(net, data, epochs, [policy, mon], lr=lr, batch_size=BATCH, seed=seed, threads=THREADS, log=log)
    with D.deterministic(THREADS):
        acc = D.evaluate(net, data)
    fp = _summary(mon.measured)
    fp["final"] = _summary(mon.measured[-1:])
    schedule = rec.to_json(task=task, method=method, epochs=epochs, steps=steps,
                           steps_per_epoch=steps_per_epoch, batch_size=BATCH, seed=seed)
    return {
        "task": task, "method": method, "epochs": epochs, "seed": seed, "steps": steps,
        "knobs": {k: v for k, v in knobs.items()},
        "accuracy": acc, "test_examples": len(data.x_test),
        "history": history, "footprint": fp,
        "measured_steps": [r["step"] for r in mon.measured],
        "measurements": mon.measured, "qm_bits": mon.bits_log,
        "bitwave_log": getattr(getattr(policy, "ctl", None), "log", None),
        "schedule": schedule, "seconds": time.perf_counter() - t0,
        # not JSON: the last step's stored tensors {name: {"values", "settings"}}, for hardware replay
        "last_tensors": mon.last_tensors,
    }


# ----------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------

def _series(schedule: dict, name: str, col: int) -> np.ndarray:
    steps = schedule["steps"]
    out = np.full(steps + 1, np.nan)
    for r in schedule["tensors"][name]["runs"]:
        out[r[0]:r[1] + 1] = r[col]
    return out[1:]


def plot_run(result: dict, out_dir: str, prefix: str = "") -> list[str]:
    """``<prefix>bitlengths.png`` and ``<prefix>footprint.png`` in ``out_dir``; returns the paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sch = result["schedule"]
    names = list(sch["tensors"])
    steps = np.arange(1, sch["steps"] + 1)
    title = f"{result['task']} / {result['method']}"
    paths = []

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharex=True)
    cmap = plt.get_cmap("tab20")
    for i, name in enumerate(names):
        col = cmap(i % 20)
        for ax, c, j in ((axes[0], 2, 0), (axes[1], 3, 1)):
            ax.step(steps, _series(sch, name, c), where="post", color=col, lw=0.8, alpha=0.45)
            if result["qm_bits"] and result["qm_bits"][0]:
                ax.plot(steps, [r[name][j] for r in result["qm_bits"]], color=col, lw=1.6, label=name if c == 2 else None)
            elif c == 2:
                ax.lines[-1].set_label(name)
    axes[0].set_title(f"{title}: mantissa bits")
    axes[1].set_title(f"{title}: exponent bits")
    for ax in axes:
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("bits (thin: container used; thick: learned n)" if result["qm_bits"] and result["qm_bits"][0] else "bits")
    axes[0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    p = os.path.join(out_dir, f"{prefix}bitlengths.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ms = result["measurements"]
    xs = [r["step"] for r in ms]
    for kind, color in (("weight", "tab:blue"), ("act", "tab:orange"), ("total", "k")):
        s = [_summary([r])[kind] for r in ms]
        ax.plot(xs, [d["bits_per_value"] for d in s], color=color, label=f"{kind} plain", marker=".", ms=3)
        ax.plot(xs, [d["gecko_bits_per_value"] for d in s], color=color, ls="--", label=f"{kind} Gecko")
    ax.axhline(16, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("training step")
    ax.set_ylabel("stored bits per value (measured)")
    ax.set_title(f"{title}: footprint over training")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    p = os.path.join(out_dir, f"{prefix}footprint.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths


# ----------------------------------------------------------------------------
# the results table (docs/results.md, section 6)
# ----------------------------------------------------------------------------

def table(results: dict) -> str:
    """Markdown table: rows (task, method); results[(task, method)] = run() result."""
    head = ("| task | method | accuracy | Δ vs fp32 (pp) | weights vs fp32 | acts vs fp32 | **total vs fp32** | total vs bf16 "
            "| weights +Gecko | acts +Gecko | **total +Gecko vs fp32** | total +Gecko vs bf16 | total at the end (plain / Gecko) |")
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for (task, method), r in results.items():
        f = r["footprint"]
        ref = results.get((task, "fp32"))
        d = (r["accuracy"] - ref["accuracy"]) * 100 if ref else float("nan")
        n = r["test_examples"]
        lines.append(
            f"| {task} | {method} | {r['accuracy'] * 100:.2f}% ({round(r['accuracy'] * n)}/{n}) | {d:+.2f} "
            f"| {f['weight']['vs_fp32']:.2f}x | {f['act']['vs_fp32']:.2f}x | **{f['total']['vs_fp32']:.2f}x** "
            f"| {f['total']['vs_bf16']:.2f}x | {f['weight']['gecko_vs_fp32']:.2f}x | {f['act']['gecko_vs_fp32']:.2f}x "
            f"| **{f['total']['gecko_vs_fp32']:.2f}x** | {f['total']['gecko_vs_bf16']:.2f}x "
            f"| {f['final']['total']['vs_fp32']:.2f}x / {f['final']['total']['gecko_vs_fp32']:.2f}x |")
    return "\n".join(lines)


def final_containers(r: dict) -> str:
    sch = r["schedule"]
    parts = []
    for name, t in sch["tensors"].items():
        _, _, m, e, base, sign = t["runs"][-1]
        parts.append(f"`{name}` m{m} e{e}{'' if sign else ' unsigned'}")
    return ", ".join(parts)


def main(argv=None) -> int:
    """``python -m train.run [--out out/train] [--img docs/img]``: every task x method, table on stdout."""
    import argparse
    import shutil
    import sys

    ap = argparse.ArgumentParser(description="Run every task x method and print the results table.")
    ap.add_argument("--out", default=os.path.join("out", "train"))
    ap.add_argument("--img", default=None, help="also copy the plots here as <task>-<method>-*.png")
    ap.add_argument("--tasks", default="digits,cancer")
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args(argv)
    results = {}
    for task in args.tasks.split(","):
        for method in args.methods.split(","):
            r = run(task, method)
            results[(task, method)] = r
            d = os.path.join(args.out, f"{task}-{method}")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "result.json"), "w") as f:
                json.dump({k: v for k, v in r.items() if k not in ("schedule", "last_tensors")}, f, indent=1)
            with open(os.path.join(d, "schedule.json"), "w") as f:
                json.dump(r["schedule"], f, separators=(",", ":"))
            for p in plot_run(r, d):
                if args.img:
                    os.makedirs(args.img, exist_ok=True)
                    shutil.copy(p, os.path.join(args.img, f"train-{task}-{method}-{os.path.basename(p)}"))
            print(f"{task} {method}: accuracy {r['accuracy']:.4f}, total {r['footprint']['total']['vs_fp32']:.2f}x "
                  f"({r['footprint']['total']['gecko_vs_fp32']:.2f}x Gecko) vs fp32, {r['seconds']:.0f} s", file=sys.stderr, flush=True)
    print(table(results))
    print()
    for (task, method), r in results.items():
        if method in ("qmqe", "bitwave"):
            print(f"* {task} / {method}, final containers: {final_containers(r)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
