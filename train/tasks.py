"""Training tasks on data sets shipped inside PyPI packages (no downloads).

* ``digits``: the digits CNN of :mod:`sfp.train.digits` (sklearn ``load_digits``,
  1347 train / 450 test images of 8x8).
* ``cancer``: an MLP 30-64-32-2 on sklearn ``load_breast_cancer`` (426 train /
  143 test, stratified, features standardized with the training split's mean
  and deviation).

:class:`QuantNet` wraps an ``nn.Sequential`` and routes every *stored* tensor
through a policy (:mod:`sfp.train.qmqe`): the weight and bias of every Conv2d /
Linear layer (``weight/<layer>.weight``, ``weight/<layer>.bias``) and the
input of every Conv2d / Linear layer (``act/<layer>.in``) -- the tensors a
layer reads from memory and that are kept for its backward pass (ReLU and
pooling are fused into the producing layer, so ``relu1.out`` is written once
as ``act/conv2.in``).  An activation is marked non-negative (sign elided when
the policy elides signs) when it comes out of a ReLU (through pooling /
flatten) or is the digits images (in [0, 1]).  Gradients are not quantized.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from . import digits as D
from .qmqe import QuantPoint

__all__ = ["TASKS", "QuantNet", "load_task"]


class QuantNet(nn.Module):
    """``base`` with its stored tensors quantized by ``policy`` (parameters are the base's only)."""

    def __init__(self, base: nn.Sequential, policy, input_shape, batch_size: int, input_nonneg: bool,
                 window: int = 4):
        super().__init__()
        self.base = base
        self.policy = policy
        self.points: "OrderedDict[str, QuantPoint]" = OrderedDict()
        # shapes of the layer inputs at the nominal batch size
        x = torch.zeros((batch_size,) + tuple(input_shape))
        nonneg = input_nonneg
        with torch.no_grad():
            for name, layer in base.named_children():
                if isinstance(layer, (nn.Conv2d, nn.Linear)):
                    self._add(f"act/{name}.in", "act", nonneg, x.numel(), window)
                    for pn, prm in layer.named_parameters():
                        self._add(f"weight/{name}.{pn}", "weight", False, prm.numel(), window)
                x = layer(x)
                if isinstance(layer, nn.ReLU):
                    nonneg = True
                elif not isinstance(layer, (nn.MaxPool2d, nn.Flatten)):
                    nonneg = False

    def _add(self, name, kind, nonneg, size, window):
        p = QuantPoint(name, kind, nonneg, size, window)
        self.points[name] = p
        self.policy.register(p)

    def q(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.policy(self.points[name], x, self.training)

    def forward(self, x):
        for name, layer in self.base.named_children():
            if isinstance(layer, nn.Conv2d):
                x = self.q(f"act/{name}.in", x)
                x = F.conv2d(x, self.q(f"weight/{name}.weight", layer.weight), self.q(f"weight/{name}.bias", layer.bias),
                             layer.stride, layer.padding, layer.dilation, layer.groups)
            elif isinstance(layer, nn.Linear):
                x = self.q(f"act/{name}.in", x)
                x = F.linear(x, self.q(f"weight/{name}.weight", layer.weight), self.q(f"weight/{name}.bias", layer.bias))
            else:
                x = layer(x)
        return x


def _digits(seed: int):
    return D.load_data(seed), D.build_model(seed), (1, 8, 8), True


def _cancer_model(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("fc1", nn.Linear(30, 64)), ("relu1", nn.ReLU()),
        ("fc2", nn.Linear(64, 32)), ("relu2", nn.ReLU()),
        ("fc3", nn.Linear(32, 2)),
    ]))


def _cancer(seed: int):
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    ds = load_breast_cancer()
    x = ds.data.astype(np.float64)
    y = ds.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    mu, sd = x_tr.mean(axis=0), x_tr.std(axis=0)
    f = lambda a: torch.from_numpy(np.ascontiguousarray(((a - mu) / sd).astype(np.float32)))
    data = D.DigitsData(f(x_tr), torch.from_numpy(y_tr), f(x_te), torch.from_numpy(y_te), seed)
    return data, _cancer_model(seed), (30,), False


#: task -> (loader(seed) -> (data, base model, input shape, input non-negative), default epochs, lr)
TASKS = {
    "digits": (_digits, 10, 2e-3),
    "cancer": (_cancer, 30, 1e-3),
}


def load_task(task: str, seed: int = 0):
    loader, epochs, lr = TASKS[task]
    data, base, shape, nonneg = loader(seed)
    return data, base, shape, nonneg, epochs, lr
