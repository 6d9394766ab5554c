"""Dump real training tensors of the digits CNN into one ``.npz``.

At several points of training (snapshots) one fixed *probe* minibatch (the
first ``probe_size`` samples of the fixed training split) is run forward and
backward -- without an optimizer step -- and the following float32 arrays are
recorded under keys ``"{snapshot}/{kind}/{name}"``:

``weight``
    every parameter, named as in ``sfp.model.state_dict()``:
    ``conv1.weight conv1.bias conv2.weight ... fc2.bias``.
``act``
    ``input`` (the probe images) and the output of every layer,
    ``conv1.out relu1.out conv2.out relu2.out pool.out fc1.out relu3.out
    fc2.out`` (flatten is a pure reshape of ``pool.out`` and is skipped).
    The input of a layer is the output of the previous one, so each distinct
    tensor is stored once. ``relu*.out`` are the post-ReLU activations (many
    exact zeros).
``grad``
    parameter gradients (``conv1.weight`` ... as for ``weight``) and the
    gradients of the loss w.r.t. every layer output (``conv1.out`` ...
    ``fc2.out``).  Loss = mean cross-entropy over the probe batch, i.e. the
    same scaling as the training loss.

Snapshot names: ``step0000`` (before training), ``stepNNNN`` (after optimizer
step NNNN, counted from 1), ``epochNN`` (after epoch NN), ``last`` (alias for
the final epoch).  Default: ``step0001 epoch01 epoch03 epoch10``.

Only this module (and :mod:`sfp.train.digits`) import torch; :func:`load_tensors`,
:func:`select` and :func:`exponent_stats` work on plain NumPy, and torch is
imported lazily by :func:`dump_tensors`.

Command line::

    python -m train.tensors [-o out/tensors/digits.npz] [--epochs 10] [--ensure]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

__all__ = [
    "KINDS",
    "DEFAULT_EPOCHS",
    "DEFAULT_SNAPSHOTS",
    "default_tensors_path",
    "dump_tensors",
    "ensure_tensors",
    "load_tensors",
    "select",
    "split_key",
    "snapshot_names",
    "exponent_stats",
    "format_stats",
]

KINDS = ("weight", "act", "grad")
DEFAULT_EPOCHS = 10
DEFAULT_SNAPSHOTS = ("step0001", "epoch01", "epoch03", "last")
DEFAULT_PROBE_SIZE = 64

_REPO_ROOT = Path(__file__).resolve().parents[1]


def default_tensors_path() -> Path:
    """Where the training dump is cached.

    ``$SFP_TENSORS`` if set; in a checkout ``<repo>/out/tensors/digits.npz``
    (``out/`` is gitignored); installed from a wheel, never inside the
    package but ``$XDG_CACHE_HOME/sfp/tensors/digits.npz`` (``~/.cache``).
    """
    if os.environ.get("SFP_TENSORS"):
        return Path(os.environ["SFP_TENSORS"])
    if (_REPO_ROOT / "pyproject.toml").is_file():
        return _REPO_ROOT / "out" / "tensors" / "digits.npz"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "sfp" / "tensors" / "digits.npz"


# --------------------------------------------------------------------------
# Keys / loading (NumPy only)
# --------------------------------------------------------------------------


def split_key(key: str) -> tuple[str, str, str]:
    """``"epoch03/act/relu1.out"`` -> ``("epoch03", "act", "relu1.out")``."""
    snap, kind, name = key.split("/", 2)
    return snap, kind, name


def load_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load every array of a dump as ``{key: float32 ndarray}`` (file order)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: np.asarray(z[k], dtype=np.float32) for k in z.files}


def select(
    tensors: Mapping[str, np.ndarray],
    kind: str | None = None,
    snapshot: str | None = None,
    *,
    strip: bool = False,
) -> dict[str, np.ndarray]:
    """Filter a tensor dict by ``kind`` and/or ``snapshot``.

    With ``strip=True`` the returned keys are just the layer names (only
    meaningful when both ``kind`` and ``snapshot`` are given).
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    out = {}
    for k, v in tensors.items():
        s, kd, name = split_key(k)
        if (kind is None or kd == kind) and (snapshot is None or s == snapshot):
            out[name if strip else k] = v
    return out


def snapshot_names(tensors: Mapping[str, np.ndarray]) -> list[str]:
    """Snapshots present in a dump, in recording order."""
    seen: dict[str, None] = {}
    for k in tensors:
        seen.setdefault(split_key(k)[0], None)
    return list(seen)


def _entropy_bits(values: np.ndarray, nbins: int) -> float:
    counts = np.bincount(values, minlength=nbins).astype(np.float64)
    counts = counts[counts > 0]
    if counts.size == 0:
        return 0.0
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def exponent_stats(tensors: Mapping[str, np.ndarray]) -> dict[str, dict]:
    """Per-kind statistics over all tensors (all snapshots) of that kind.

    * ``n``: number of values;
    * ``zero_frac``: fraction of exact zeros (+0 or -0) in float32;
    * ``exp_entropy``: order-0 entropy (bits/value) of the bfloat16 biased
      exponent field (bits 14..7 of the bf16 pattern; float32 -> bf16 with
      round-to-nearest-even via ``ml_dtypes.bfloat16``);
    * ``exp_entropy_nonzero``: the same, over the values that are nonzero
      in float32.
    """
    import ml_dtypes

    stats = {}
    for kind in KINDS:
        arrs = [v.ravel() for v in select(tensors, kind).values()]
        if not arrs:
            continue
        x = np.concatenate(arrs).astype(np.float32)
        bits = x.astype(ml_dtypes.bfloat16).view(np.uint16)
        exp = ((bits >> 7) & 0xFF).astype(np.int64)
        nz = x != 0
        stats[kind] = {
            "n": int(x.size),
            "zero_frac": float(1.0 - nz.mean()),
            "exp_entropy": _entropy_bits(exp, 256),
            "exp_entropy_nonzero": _entropy_bits(exp[nz], 256),
        }
    return stats


def format_stats(stats: Mapping[str, dict]) -> str:
    lines = [
        f"{'kind':<7}{'values':>10}{'zeros':>9}{'H(bf16 exp)':>13}{'H(exp|x!=0)':>13}",
    ]
    for kind, s in stats.items():
        lines.append(
            f"{kind:<7}{s['n']:>10d}{s['zero_frac']:>9.4f}"
            f"{s['exp_entropy']:>13.4f}{s['exp_entropy_nonzero']:>13.4f}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Recording (torch)
# --------------------------------------------------------------------------


def _resolve_snapshots(snapshots: Iterable[str], epochs: int) -> tuple[set[int], set[int], list[str]]:
    steps: set[int] = set()
    ep: set[int] = set()
    for s in snapshots:
        if s == "last":
            ep.add(epochs)
        elif s.startswith("step"):
            steps.add(int(s[4:]))
        elif s.startswith("epoch"):
            n = int(s[5:])
            if not 1 <= n <= epochs:
                raise ValueError(f"snapshot {s!r} outside 1..{epochs} epochs")
            ep.add(n)
        else:
            raise ValueError(f"bad snapshot name {s!r}")
    names = [f"step{n:04d}" for n in sorted(steps)] + [f"epoch{n:02d}" for n in sorted(ep)]
    return steps, ep, names


def _record(model, x, y, snap: str, out: dict[str, np.ndarray]) -> None:
    """Forward + backward one probe batch; store weights/acts/grads under ``snap``."""
    import torch
    from torch import nn

    def put(kind: str, name: str, t: "torch.Tensor") -> None:
        out[f"{snap}/{kind}/{name}"] = t.detach().cpu().numpy().astype(np.float32, copy=True)

    acts: dict[str, torch.Tensor] = {}
    act_grads: dict[str, torch.Tensor] = {}
    handles = []

    def fwd_hook(name):
        def hook(_mod, _inp, output):
            acts[name] = output.detach().clone()
            if output.requires_grad:
                output.register_hook(lambda g: act_grads.__setitem__(name, g.detach().clone()))

        return hook

    layers = [(n, m) for n, m in model.named_children() if not isinstance(m, nn.Flatten)]
    for name, mod in layers:
        handles.append(mod.register_forward_hook(fwd_hook(name)))

    was_training = model.training
    model.train()
    saved_grads = {n: p.grad for n, p in model.named_parameters()}
    try:
        for n, p in model.named_parameters():
            p.grad = None
        for n, p in model.named_parameters():
            put("weight", n, p)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        put("act", "input", x)
        for name, _ in layers:
            put("act", f"{name}.out", acts[name])
        for n, p in model.named_parameters():
            put("grad", n, p.grad)
        for name, _ in layers:
            put("grad", f"{name}.out", act_grads[name])
    finally:
        for h in handles:
            h.remove()
        for n, p in model.named_parameters():
            p.grad = saved_grads[n]
        model.train(was_training)


def _atomic_savez(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    from sfp.fileio import write_atomic
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: np.savez(f, **arrays), durable=True)   # a cache: fsync before the rename


def dump_tensors(
    path: str | os.PathLike,
    epochs: int = DEFAULT_EPOCHS,
    snapshots: Iterable[str] = DEFAULT_SNAPSHOTS,
    *,
    seed: int = 0,
    probe_size: int = DEFAULT_PROBE_SIZE,
    log=None,
) -> dict:
    """Train the digits CNN and write the snapshot tensors to ``path``.

    Returns a summary dict: ``path, snapshots, history`` (per-epoch metrics),
    ``test_acc`` (final), ``seconds``, ``n_values`` (per kind).
    """
    from . import digits

    t0 = time.perf_counter()
    path = Path(path)
    snap_steps, snap_epochs, names = _resolve_snapshots(snapshots, epochs)
    data = digits.load_data(seed)
    model = digits.build_model(seed)
    px, py = data.x_train[:probe_size], data.y_train[:probe_size]
    arrays: dict[str, np.ndarray] = {}

    def snap(name):
        _record(model, px, py, name, arrays)
        if log is not None:
            log(f"  snapshot {name}")

    class Hooks(digits.TrainHooks):
        def on_train_begin(self, model_, optimizer):
            if 0 in snap_steps:
                snap("step0000")

        def after_step(self, model_, step, epoch, loss):
            if step in snap_steps:
                snap(f"step{step:04d}")

        def on_epoch_end(self, model_, epoch, metrics):
            if epoch in snap_epochs:
                snap(f"epoch{epoch:02d}")

    history = digits.train(model, data, epochs, hooks=Hooks(), seed=seed, log=log)
    missing = [n for n in names if not any(k.startswith(n + "/") for k in arrays)]
    if missing:
        raise ValueError(f"snapshots never reached (too few steps?): {missing}")
    _atomic_savez(path, arrays)
    n_values = {k: sum(v.size for v in select(arrays, k).values()) for k in KINDS}
    summary = {
        "path": path,
        "snapshots": names,
        "history": history,
        "test_acc": history[-1]["test_acc"] if history else digits.evaluate(model, data),
        "seconds": time.perf_counter() - t0,
        "n_values": n_values,
    }
    if log is not None:
        log(f"wrote {path} ({len(arrays)} arrays, {sum(n_values.values())} values) "
            f"in {summary['seconds']:.1f} s, final test_acc {summary['test_acc']:.4f}")
    return summary


def ensure_tensors(path: str | os.PathLike | None = None, **kwargs) -> Path:
    """Return ``path`` (default :func:`default_tensors_path`), generating it
    with ``dump_tensors(path, **kwargs)`` first if it does not exist.

    The file is a cache: it is *not* regenerated when ``kwargs`` differ from
    those used to create it; delete it (or use another path) to force that.
    """
    path = Path(path) if path is not None else default_tensors_path()
    if not path.exists():
        dump_tensors(path, **kwargs)
    return path


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m train.tensors", description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=default_tensors_path(), help="output .npz (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    ap.add_argument("--snapshots", default=",".join(DEFAULT_SNAPSHOTS), help="comma list (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--probe-size", type=int, default=DEFAULT_PROBE_SIZE)
    ap.add_argument("--ensure", action="store_true", help="reuse the file if it already exists")
    ap.add_argument("--no-stats", action="store_true", help="do not print bf16 exponent statistics")
    args = ap.parse_args(argv)

    if args.ensure and args.output.exists():
        _stderr(f"using existing {args.output}")
    else:
        dump_tensors(
            args.output,
            epochs=args.epochs,
            snapshots=[s for s in args.snapshots.split(",") if s],
            seed=args.seed,
            probe_size=args.probe_size,
            log=_stderr,
        )
    if not args.no_stats:
        print(format_stats(exponent_stats(load_tensors(args.output))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
