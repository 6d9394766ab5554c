"""MX (OCP microscaling) fixed-format baselines as a training policy.

Every stored tensor goes through :func:`sfp.model.mx.mx_quantize` (the golden
model's MX quantizer: blocks of 32 along the flattened tensor, an E8M0 scale
``floor(log2(amax)) - emax_elem``, elements cast with round-to-nearest-even and
saturation) from its fp32 value, straight-through in the backward pass.  MX
is not a container of ``docs/format.md``: nothing is written to the schedule.
"""

from __future__ import annotations

import numpy as np
import torch

from sfp.model.mx import MX_FORMATS, mx_quantize

from .qmqe import FixedPolicy

__all__ = ["MXPolicy", "MX_METHODS"]

#: method name (sfp train --method) -> MX format
MX_METHODS = {"mxfp8e4m3": "mxfp8_e4m3", "mxfp8e5m2": "mxfp8_e5m2", "mxfp6e3m2": "mxfp6_e3m2",
              "mxfp6e2m3": "mxfp6_e2m3", "mxfp4": "mxfp4_e2m1"}


class _MXSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, q):
        return q

    @staticmethod
    def backward(ctx, g):
        return g, None


class MXPolicy(FixedPolicy):
    name = "mx"

    def __init__(self, fmt: str):
        super().__init__(7, 8)
        self.fmt = MX_FORMATS[fmt]

    def __call__(self, p, x, training):
        xs = x.detach().cpu().numpy().astype(np.float32)
        v, _ = mx_quantize(xs, self.fmt)
        if training and p.capture is not None:
            p.capture.update(x=xs.reshape(-1), settings=("mx", self.fmt.name))
        q = torch.from_numpy(v).reshape(x.shape)
        if torch.is_grad_enabled() and x.requires_grad:
            return _MXSTE.apply(x, q)
        return q
