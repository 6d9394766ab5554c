"""Run one training method on one task; account the footprint; write schedule, results and plots.

:func:`run` builds the task (:mod:`sfp.train.tasks`), attaches the method's
policy with :func:`sfp.train.attach.attach` (the same API a user calls on
their own model) and trains with Adam (fixed seeds, deterministic, one
intra-op thread).  At step 1, every ``measure_every``-th step and the last
two steps it captures the tensors that step actually stored (the bf16
patterns of every weight and of that minibatch's activations, at the
containers the step used) and runs them through
:func:`sfp.model.stats.footprint`, plain and with Gecko: every footprint
figure is the golden model's DRAM image size (block padding included) of
real tensors.  ``fp32`` tensors are accounted as fp32 sources stored as is
(``m23 e8``, ``exp_base`` 0); MX tensors as ``n * element_bits + 8`` per
block of 32 (:func:`sfp.model.mx.mx_bits`; Gecko does not apply).

Footprint figures (``footprint`` in the result) per group -- ``weight``,
``act`` (every activation), ``linear_in`` (conv/linear inputs), ``embed``,
``norm``, ``attn`` (Q, K, V, scores, probabilities), ``grad`` (when
quantized) and ``total``:

* ``bits_per_value`` / ``gecko_bits_per_value``: stored bits over stored
  values, summed over the measured steps (the training-wide footprint);
* ``vs_fp32`` = 32 / bits per value, ``vs_bf16`` = 16 / bits per value (and
  ``gecko_vs_*``);
* ``final``: the same at the last step only (the containers training ended with).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import torch

from sfp.model.formats import Settings
from sfp.model.mx import mx_bits
from sfp.model.stats import footprint

from . import digits as D
from .attach import attach
from .bitwave import BitWave
from .mx import MX_METHODS, MXPolicy
from .qmqe import FixedPolicy, QMQE
from .tasks import load_task

__all__ = ["METHODS", "make_policy", "run", "plot_run"]

METHODS = ("fp32", "bf16", "qmqe", "bitwave") + tuple(MX_METHODS)
BATCH = 32
THREADS = 1      # one intra-op thread: results do not depend on the core count, and 2 shared cores are faster so
GROUPS = {"weight": ("weight",), "act": ("act", "embed", "norm", "attn"), "linear_in": ("act",),
          "embed": ("embed",), "norm": ("norm",), "attn": ("attn",), "grad": ("grad",),
          "total": ("weight", "act", "embed", "norm", "attn", "grad")}


def make_policy(method: str, seed: int = 0, freeze_step: int | None = None, **knobs):
    if method == "fp32":
        return FixedPolicy(None)
    if method == "bf16":
        return FixedPolicy(7, 8, elide_sign=False)
    if method == "qmqe":
        return QMQE(seed=seed, freeze_step=freeze_step, **knobs)
    if method == "bitwave":
        return BitWave(**knobs)
    if method in MX_METHODS:
        return MXPolicy(MX_METHODS[method])
    raise ValueError(f"unknown method {method!r}")


class _Monitor:
    """Captures stored tensors at measured steps and accounts them (golden-model footprints)."""

    def __init__(self, h, policy, measure_every: int, last_step: int):
        self.h, self.policy = h, policy
        self.every, self.last = measure_every, last_step
        # the grid sits mid-way between multiples of `every`: not on epoch ends, where a short last
        # minibatch would stand for a whole stretch of training
        self.offset = measure_every // 2
        self.measured: list[dict] = []
        self.bits_log: list[dict] = []     # per step: {name: [n_m, n_e]} (real for qmqe)
        self.last_tensors: dict[str, dict] = {}   # the last step's stored tensors (for hardware replay)
        self.prev_tensors: dict[str, dict] = {}   # the step before (for the hardware-window loop)

    def _due(self, step):
        return step % self.every == self.offset or step >= self.last - 1 or step == 1

    def before_step(self, step):
        for p in self.h.points.values():
            p.capture = {} if self._due(step) else None

    def after_step(self, step, epoch):
        if isinstance(self.policy, QMQE):
            self.bits_log.append({p.name: [float(p.nm.detach()), float(p.ne.detach())]
                                  for p in self.h.points.values() if p.nm is not None})
        if not self._due(step):
            return
        rec = {"step": step, "epoch": epoch, "tensors": {}}
        for p in self.h.points.values():
            cap, p.capture = p.capture, None
            if not cap:
                continue
            c = cap["settings"]
            if isinstance(c, tuple):                       # MX
                n = cap["x"].size
                plain = {"values": n, "image_bits": mx_bits(n, c[1])}
                gk = plain
                x, base = cap["x"], None
            else:
                if c is None:
                    x, base = cap["x"], Settings(source="fp32", exp_base=0)
                else:
                    x = cap["bits"]
                    base = Settings(source="bf16", man_bits=c["m"], exp_bits=c["e"], exp_base=c["exp_base"],
                                    sign=c["sign"])
                plain = footprint(x, base)
                gk = footprint(x, base.with_(gecko=True))
            if step == self.last:
                self.last_tensors[p.name] = {"values": x, "settings": base}
            elif step == self.last - 1:
                self.prev_tensors[p.name] = {"values": x, "settings": base}
            rec["tensors"][p.name] = {"kind": p.kind, "values": plain["values"], "bits": plain["image_bits"],
                                      "gecko_bits": gk["image_bits"]}
        self.measured.append(rec)


def _summary(records: list[dict], weights=None) -> dict:
    out = {}
    weights = weights or [1.0] * len(records)
    for group, kinds in GROUPS.items():
        v = b = g = 0
        for r, wt in zip(records, weights):
            for t in r["tensors"].values():
                if t["kind"] in kinds:
                    v += wt * t["values"]
                    b += wt * t["bits"]
                    g += wt * t["gecko_bits"]
        if not v:
            continue
        bpv, gbpv = b / v, g / v
        out[group] = {"values": v, "bits_per_value": bpv, "gecko_bits_per_value": gbpv,
                      "vs_fp32": 32 / bpv, "vs_bf16": 16 / bpv,
                      "gecko_vs_fp32": 32 / gbpv, "gecko_vs_bf16": 16 / gbpv}
    return out


def footprint_of(measured: list[dict], every: int, steps: int, offset: int = 0) -> dict:
    """Training-wide figures: the trapezoid rule over the measurement grid (step 1, every ``every``-th
    step, the last step), so that every part of training weighs the same (the step before the last is
    measured for the replay tests, not counted); ``final``: the last step alone."""
    grid = [r for r in measured if r["step"] == 1 or r["step"] % every == offset or r["step"] == steps]
    w = [0.5 if k in (0, len(grid) - 1) else 1.0 for k in range(len(grid))]    # trapezoid over the grid
    fp = _summary(grid, w)
    fp["final"] = _summary([r for r in measured if r["step"] == steps])
    return fp


def run(task: str, method: str, epochs: int | None = None, seed: int = 0, measure_every: int | None = None,
        log=None, grads=None, steps_per_epoch: int | None = None, **knobs) -> dict:
    """Train and account; returns the result dict (see the module docstring) with the schedule inside.

    ``steps_per_epoch`` (tests) cuts every epoch short; ``grads=(m, e)`` also stores the activation
    gradients at that container (``attach``); ``knobs`` go to the policy (e.g. ``strength``, ``window``).
    """
    t0 = time.perf_counter()
    with D.deterministic(THREADS):
        T = load_task(task, seed, BATCH)
        epochs = epochs or T.epochs
        spe = min(T.steps_per_epoch, steps_per_epoch or T.steps_per_epoch)
        steps = epochs * spe
        freeze_step = (epochs - 1) * spe + 1 if method == "qmqe" and epochs > 1 else None
        policy = make_policy(method, seed, freeze_step, **knobs)
        model = T.model
        h = attach(model, policy, T.example, nonneg_input=T.nonneg_input, grads=grads)
        mon = _Monitor(h, policy, measure_every or max(1, steps // 10), steps)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam([{"params": list(model.parameters())}, *h.param_groups()], lr=T.lr)
        history = []
        step = 0
        model.train()
        for epoch in range(1, epochs + 1):
            tot, cnt = 0.0, 0
            for k, (x, y) in enumerate(T.batches(epoch, gen)):
                if k >= spe:
                    break
                step += 1
                mon.before_step(step)
                loss = T.loss(model, x, y)
                (loss + h.penalty()).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                lv = loss.item()
                h.step(lv)
                mon.after_step(step, epoch)
                tot += lv
                cnt += 1
            model.eval()
            with torch.no_grad():
                metrics = {"epoch": epoch, "steps": step, "loss": tot / cnt, **T.evaluate(model)}
            model.train()
            history.append(metrics)
            if log is not None:
                m = " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k not in ("epoch", "steps", "loss"))
                log(f"{task}/{method} epoch {epoch}/{epochs} step {step} train_loss {metrics['loss']:.4f} {m} "
                    f"({time.perf_counter() - t0:.0f} s)")
        model.eval()
        with torch.no_grad():
            final = T.evaluate(model)
    fp = footprint_of(mon.measured, mon.every, steps, mon.offset)
    schedule = h.schedule(task=task, method=method, epochs=epochs, steps_per_epoch=spe, batch_size=BATCH,
                          seed=seed)
    return {
        "task": task, "method": method, "epochs": epochs, "seed": seed, "steps": steps,
        "knobs": {k: v for k, v in knobs.items()}, "grads": list(grads) if grads else None,
        "metric": T.metric, "accuracy": final["accuracy"], "val_loss": final.get("val_loss"),
        "test_examples": T.eval_examples,
        "history": history, "footprint": fp,
        "measured_steps": [r["step"] for r in mon.measured], "measure_every": mon.every, "measure_offset": mon.offset,
        "measurements": mon.measured, "qm_bits": mon.bits_log,
        "bitwave_log": getattr(getattr(policy, "ctl", None), "log", None),
        "schedule": schedule, "seconds": time.perf_counter() - t0,
        # not JSON: the last two steps' stored tensors {name: {"values", "settings"}}, for hardware replay
        "last_tensors": mon.last_tensors, "prev_tensors": mon.prev_tensors,
        "hw_stats": {p.name: p.hw_stats for p in h.points.values() if p.hw_stats is not None},
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
# the benchmark (docs/results.md, section 6): every task x method x seed, resumable
# ----------------------------------------------------------------------------

def parse_spec(spec: str) -> tuple[str, dict, str]:
    """``method[:knob=value,...]`` -> (method, knobs, run label); values are int/float/str."""
    method, _, rest = spec.partition(":")
    knobs = {}
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        for cast in (int, float, str):
            try:
                knobs[k] = cast(v)
                break
            except ValueError:
                pass
    label = method + "".join(f"-{k}-{v}" for k, v in knobs.items())
    return method, knobs, label


def _save(r: dict, d: str) -> None:
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "schedule.json"), "w") as f:
        json.dump(r["schedule"], f, separators=(",", ":"))
    tmp = os.path.join(d, "result.json.tmp")
    with open(tmp, "w") as f:
        json.dump({k: v for k, v in r.items() if k not in ("schedule", "last_tensors", "prev_tensors")}, f)
    os.replace(tmp, os.path.join(d, "result.json"))


def _load_results(out: str) -> list[dict]:
    rs = []
    for d in sorted(os.listdir(out)) if os.path.isdir(out) else []:
        f = os.path.join(out, d, "result.json")
        if os.path.exists(f):
            with open(f) as fh:
                r = json.load(fh)
            r["label"] = d.rsplit("-s", 1)[0].split("-", 1)[1]
            r["footprint"] = footprint_of(r["measurements"], r.get("measure_every") or max(1, r["steps"] // 10),
                                          r["steps"], r.get("measure_offset", 0))
            rs.append(r)
    return rs


TASK_ORDER = ("mnist", "transformer", "digits", "cancer")
ORDER = ("fp32", "bf16", "qmqe", "bitwave", "qmqe-window-hw", "qmqe-window-auto", "mxfp8e4m3", "mxfp8e5m2",
         "mxfp6e3m2", "mxfp6e2m3", "mxfp4")


def _labels(rs):
    labs = list(dict.fromkeys(r["label"] for r in rs))
    return sorted(labs, key=lambda l: (ORDER.index(l) if l in ORDER else len(ORDER), l))


def _ms(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return float("nan"), float("nan")
    a = np.array(vals, float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def report(out: str) -> str:
    """Markdown tables (mean over the seeds found, +- sample deviation) from ``out``'s result.json files."""
    rs = _load_results(out)
    tasks = sorted(dict.fromkeys(r["task"] for r in rs),
                   key=lambda t: TASK_ORDER.index(t) if t in TASK_ORDER else 9)
    lines = []
    for task in tasks:
        trs = [r for r in rs if r["task"] == task]
        labels = _labels(trs)
        lm = trs[0]["metric"] == "val_loss"
        key = "val_loss" if lm else "accuracy"
        groups = [g for g in ("weight", "act", "linear_in", "embed", "norm", "attn", "grad")
                  if any(g in r["footprint"] for r in trs)]
        lines.append(f"\n**{task}** ({'validation loss, nats/char' if lm else 'test accuracy'}; "
                     f"footprint = training-wide stored bits vs fp32, plain / with Gecko)\n")
        head = ["method", "seeds", "val loss" if lm else "accuracy",
                "vs fp32 at the same seeds" + (" (%)" if lm else " (pp)")]
        head += [f"{g} vs fp32" for g in groups] + ["**total vs fp32**", "total vs bf16"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for lab in labels:
            rr = [r for r in trs if r["label"] == lab]
            mu, sd = _ms([r[key] for r in rr])
            seeds = {r["seed"] for r in rr}          # the difference is against fp32 at the same seeds
            ref = _ms([r[key] for r in trs if r["label"] == "fp32" and r["seed"] in seeds])[0]
            if lm:
                metric, delta = f"{mu:.4f} ± {sd:.4f}", f"{(mu / ref - 1) * 100:+.2f}"
            else:
                metric, delta = f"{mu * 100:.2f}% ± {sd * 100:.2f}", f"{(mu - ref) * 100:+.2f}"
            row = [lab, str(len(rr)), metric, delta]
            for g in groups:
                a = _ms([r["footprint"].get(g, {}).get("vs_fp32") for r in rr])[0]
                b = _ms([r["footprint"].get(g, {}).get("gecko_vs_fp32") for r in rr])[0]
                row.append(f"{a:.2f}x / {b:.2f}x" if a == a else "-")
            a, asd = _ms([r["footprint"]["total"]["vs_fp32"] for r in rr])
            b, bsd = _ms([r["footprint"]["total"]["gecko_vs_fp32"] for r in rr])
            c = _ms([r["footprint"]["total"]["vs_bf16"] for r in rr])[0]
            d = _ms([r["footprint"]["total"]["gecko_vs_bf16"] for r in rr])[0]
            row += [f"**{a:.2f}x / {b:.2f}x**", f"{c:.2f}x / {d:.2f}x"]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_summary(out: str, img: str) -> list[str]:
    """Per task: metric against total footprint vs fp32 (mean over seeds; hollow marker: with Gecko)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = _load_results(out)
    paths = []
    for task in dict.fromkeys(r["task"] for r in rs):
        trs = [r for r in rs if r["task"] == task]
        key = "val_loss" if trs[0]["metric"] == "val_loss" else "accuracy"
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for i, lab in enumerate(_labels(trs)):
            rr = [r for r in trs if r["label"] == lab]
            y = _ms([r[key] * (1 if key == "val_loss" else 100) for r in rr])
            a = _ms([r["footprint"]["total"]["vs_fp32"] for r in rr])[0]
            b = _ms([r["footprint"]["total"]["gecko_vs_fp32"] for r in rr])[0]
            col = plt.get_cmap("tab10")(i % 10)
            ax.errorbar([a], [y[0]], yerr=[y[1]], fmt="o", color=col, label=f"{lab} ({len(rr)} seeds)")
            if lab in ("fp32", "bf16", "qmqe", "bitwave") or lab.startswith("qmqe"):
                ax.plot([b], [y[0]], "o", mfc="none", color=col)
                ax.plot([a, b], [y[0], y[0]], ":", color=col, lw=0.8)
        ax.set_xlabel("stored footprint over training, x smaller than fp32 (hollow: with Gecko)")
        ax.set_ylabel("validation loss (nats/char)" if key == "val_loss" else "test accuracy (%)")
        ax.set_title(f"{task}: accuracy vs footprint (mean over seeds, bars: sample deviation)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        pth = os.path.join(img, f"train-{task}-summary.png")
        fig.savefig(pth, dpi=110)
        plt.close(fig)
        paths.append(pth)
    return paths


def main(argv=None) -> int:
    """``python -m sfp.train.run [--tasks ..] [--methods ..] [--seeds 0,1,2] [--out DIR] [--img DIR]``.

    Runs every task x method x seed not yet in ``--out`` (each run's ``result.json`` and
    ``schedule.json`` in ``<out>/<task>-<label>-s<seed>/``), then prints the tables;
    ``--report`` only prints them.  Methods may carry knobs: ``qmqe:window=hw``.
    """
    import argparse
    import shutil

    ap = argparse.ArgumentParser(description="Training benchmark: every task x method x seed (resumable).")
    ap.add_argument("--out", default=os.path.join("out", "train-bench"))
    ap.add_argument("--img", default=None, help="also write seed 0's plots here as train-<task>-<label>-*.png")
    ap.add_argument("--tasks", default="mnist,transformer,digits,cancer")
    ap.add_argument("--methods", default="fp32,bf16,qmqe,bitwave")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--report", action="store_true", help="only print the tables of the runs in --out")
    args = ap.parse_args(argv)
    if not args.report:
        for seed in [int(x) for x in args.seeds.split(",")]:
            for task in args.tasks.split(","):
                for spec in args.methods.split(","):
                    method, knobs, label = parse_spec(spec)
                    d = os.path.join(args.out, f"{task}-{label}-s{seed}")
                    if os.path.exists(os.path.join(d, "result.json")):
                        continue
                    log = lambda m: print(m, file=sys.stderr, flush=True)
                    r = run(task, method, seed=seed, log=log, **knobs)
                    _save(r, d)
                    if args.img and seed == 0:
                        os.makedirs(args.img, exist_ok=True)
                        for pth in plot_run(r, d):
                            shutil.copy(pth, os.path.join(args.img, f"train-{task}-{label}-{os.path.basename(pth)}"))
                    f = r["footprint"]["total"]
                    print(f"{task} {label} s{seed}: {r['metric']} {r[r['metric']]:.4f}, total {f['vs_fp32']:.2f}x "
                          f"({f['gecko_vs_fp32']:.2f}x Gecko) vs fp32, {r['seconds']:.0f} s", file=sys.stderr, flush=True)
    print(report(args.out))
    if args.img and args.report:
        os.makedirs(args.img, exist_ok=True)
        plot_summary(args.out, args.img)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
