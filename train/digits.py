"""Small deterministic CNN trained on scikit-learn's ``load_digits`` (CPU).

This is the reference workload that produces *real* training tensors
(weights, activations, gradients) for the container measurements and tests.
It is deliberately tiny (8x8 images, ~38k parameters) so that a full training
run takes a few seconds on two CPU cores.

Reusable entry points (quantizer policies such as Quantum Mantissa / BitWave
are meant to plug in through ``hooks``):

* :func:`build_model` -- ``nn.Sequential`` with named layers
  ``conv1 relu1 conv2 relu2 pool flatten fc1 relu3 fc2``.
* :func:`load_data` -- fixed stratified train/test split as float32 tensors.
* :func:`train` -- Adam training loop with duck-typed hook callbacks.
* :func:`evaluate` -- top-1 accuracy.

Everything runs under :func:`deterministic`, which enables
``torch.use_deterministic_algorithms`` and pins the thread count, restoring
the previous global settings afterwards.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch import nn

__all__ = [
    "DigitsData",
    "TrainHooks",
    "build_model",
    "load_data",
    "train",
    "evaluate",
    "deterministic",
    "LAYER_NAMES",
]

#: Names of the layers of :func:`build_model`, in forward order.
LAYER_NAMES = ("conv1", "relu1", "conv2", "relu2", "pool", "flatten", "fc1", "relu3", "fc2")

DEFAULT_SEED = 0
DEFAULT_THREADS = 2


@contextlib.contextmanager
def deterministic(threads: int = DEFAULT_THREADS) -> Iterator[None]:
    """Enable deterministic algorithms and pin the intra-op thread count.

    The previous global torch settings are restored on exit so importing code
    (tests, benchmarks) is not affected.
    """
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.set_num_threads(prev_threads)


def build_model(seed: int = DEFAULT_SEED) -> nn.Sequential:
    """The digits CNN, initialised from ``torch.manual_seed(seed)``.

    conv(1->16,3x3,p1)-ReLU-conv(16->32,3x3,p1)-ReLU-maxpool2-flatten-
    linear(512->64)-ReLU-linear(64->10).  Input shape ``(N, 1, 8, 8)``.
    ReLUs are not in-place so forward hooks see distinct pre/post tensors.
    """
    torch.manual_seed(seed)
    return nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(1, 16, kernel_size=3, padding=1)),
                ("relu1", nn.ReLU()),
                ("conv2", nn.Conv2d(16, 32, kernel_size=3, padding=1)),
                ("relu2", nn.ReLU()),
                ("pool", nn.MaxPool2d(2)),
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(32 * 4 * 4, 64)),
                ("relu3", nn.ReLU()),
                ("fc2", nn.Linear(64, 10)),
            ]
        )
    )


@dataclass
class DigitsData:
    """Fixed train/test split. Images are float32 in [0, 1], shape (N,1,8,8)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    seed: int

    def __iter__(self):  # allows ``xtr, ytr, xte, yte = load_data()``
        return iter((self.x_train, self.y_train, self.x_test, self.y_test))


def load_data(seed: int = DEFAULT_SEED, test_size: float = 0.25) -> DigitsData:
    """Load sklearn digits (bundled, no download) with a stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    ds = load_digits()
    x = (ds.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = ds.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    return DigitsData(
        x_train=torch.from_numpy(np.ascontiguousarray(x_tr)),
        y_train=torch.from_numpy(np.ascontiguousarray(y_tr)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_te)),
        y_test=torch.from_numpy(np.ascontiguousarray(y_te)),
        seed=seed,
    )


class TrainHooks:
    """Optional callbacks for :func:`train` (subclass or duck-type any subset).

    ``step`` counts optimizer steps from 1; ``epoch`` counts from 1.

    * ``on_train_begin(model, optimizer)``
    * ``before_step(model, x, y, step, epoch)`` -- before forward of a
      minibatch (e.g. quantize weights / install activation quantizers).
    * ``after_backward(model, step, epoch)`` -- gradients are in ``.grad``,
      optimizer has not stepped yet (e.g. quantize gradients).
    * ``after_step(model, step, epoch, loss)`` -- after ``optimizer.step()``.
    * ``on_epoch_end(model, epoch, metrics)`` -- ``metrics`` has
      ``epoch, steps, loss, train_acc, test_acc``.
    * ``on_train_end(model, history)``
    """

    def on_train_begin(self, model, optimizer):
        pass

    def before_step(self, model, x, y, step, epoch):
        pass

    def after_backward(self, model, step, epoch):
        pass

    def after_step(self, model, step, epoch, loss):
        pass

    def on_epoch_end(self, model, epoch, metrics):
        pass

    def on_train_end(self, model, history):
        pass


def _as_hook_list(hooks: Any) -> list:
    if hooks is None:
        return []
    if isinstance(hooks, (list, tuple)):
        return list(hooks)
    return [hooks]


def _call(hooks: Iterable, event: str, *args) -> None:
    for h in hooks:
        fn = getattr(h, event, None)
        if fn is not None:
            fn(*args)


def evaluate(model: nn.Module, data: DigitsData, split: str = "test", batch_size: int = 512) -> float:
    """Top-1 accuracy in [0, 1] on ``split`` ("test" or "train")."""
    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            pred = model(x[i : i + batch_size]).argmax(dim=1)
            correct += int((pred == y[i : i + batch_size]).sum())
    model.train(was_training)
    return correct / len(x)


def train(
    model: nn.Module,
    data: DigitsData,
    epochs: int = 10,
    hooks: Any = None,
    *,
    lr: float = 2e-3,
    batch_size: int = 32,
    seed: int = DEFAULT_SEED,
    threads: int = DEFAULT_THREADS,
    log=None,
) -> list[dict]:
    """Train ``model`` with Adam + cross-entropy; returns per-epoch metrics.

    Shuffling uses a private ``torch.Generator`` seeded with ``seed``; the
    global torch RNG is also seeded (for hooks that draw random numbers, e.g.
    stochastic rounding).  ``log`` is an optional callable taking a string.
    """
    hooks = _as_hook_list(hooks)
    history: list[dict] = []
    with deterministic(threads):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        loss_fn = nn.CrossEntropyLoss()
        n = len(data.x_train)
        step = 0
        model.train()
        _call(hooks, "on_train_begin", model, opt)
        for epoch in range(1, epochs + 1):
            perm = torch.randperm(n, generator=gen)
            tot_loss = 0.0
            for i in range(0, n, batch_size):
                idx = perm[i : i + batch_size]
                x, y = data.x_train[idx], data.y_train[idx]
                step += 1
                _call(hooks, "before_step", model, x, y, step, epoch)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                _call(hooks, "after_backward", model, step, epoch)
                opt.step()
                loss_v = loss.item()
                tot_loss += loss_v * len(idx)
                _call(hooks, "after_step", model, step, epoch, loss_v)
            metrics = {
                "epoch": epoch,
                "steps": step,
                "loss": tot_loss / n,
                "train_acc": evaluate(model, data, "train"),
                "test_acc": evaluate(model, data, "test"),
            }
            history.append(metrics)
            if log is not None:
                log(
                    f"epoch {epoch:2d}/{epochs} step {step:4d} loss {metrics['loss']:.4f} "
                    f"train_acc {metrics['train_acc']:.4f} test_acc {metrics['test_acc']:.4f}"
                )
            _call(hooks, "on_epoch_end", model, epoch, metrics)
        opt.zero_grad(set_to_none=True)
        _call(hooks, "on_train_end", model, history)
    return history


def main(argv=None) -> int:
    import argparse
    import sys
    import time

    ap = argparse.ArgumentParser(description="Train the digits CNN on CPU.")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    data = load_data(args.seed)
    model = build_model(args.seed)
    train(model, data, args.epochs, seed=args.seed, log=lambda s: print(s, file=sys.stderr))
    print(f"test accuracy {evaluate(model, data):.4f} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
