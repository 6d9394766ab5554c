"""Attach a container policy to any ``torch.nn.Module``: one call, no change to the model's code.

::

    h = attach(model, QMQE(strength=0.01), example=x0)        # x0: one minibatch
    opt = torch.optim.Adam([{"params": model.parameters()}, *h.param_groups()], lr=1e-3)
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        (loss + h.penalty()).backward()                       # QM+QE: footprint penalty
        opt.step(); opt.zero_grad()
        h.step(loss.item())                                   # BitWave: the loss callback

How it works.  While the model runs forward, a :class:`torch.overrides.TorchFunctionMode`
sees every torch call and routes the tensors that a training accelerator
writes to memory through the policy (the bit-exact container quantizer of
:mod:`sfp.train.qmqe`, straight-through in the backward pass):

==============================  ==========  =============================================
call                            kind        stored tensor(s)
==============================  ==========  =============================================
``F.linear``, ``F.conv{1,2,3}d``  ``act``     the input (kept for the weight gradient)
``F.embedding``                 ``embed``   the output (the looked-up rows)
``F.layer_norm``, ``group_norm``,  ``norm``    the input (kept for the backward pass)
``batch_norm``, ``rms_norm``
``F.scaled_dot_product_attention``  ``attn``  Q, K, V, the scores ``QK^T*scale`` and the
                                            softmax output (computed explicitly)
``softmax`` elsewhere           ``attn``    its input (scores) and output (probabilities)
``matmul`` / ``bmm`` / ``@``    ``attn``    each operand that is not a parameter
any of these, ``[]``, ``+``, ``*``  ``weight``  every ``nn.Parameter`` argument (once per step)
==============================  ==========  =============================================

Tensor names: ``weight/<parameter name>``, ``<kind>/<module>.<role>`` where
``<module>`` is the innermost module running the call and a second call of
the same role in the same module gets ``#1``, ``#2``...  ``example`` (one
minibatch at the training batch size) is run once at attach time to find
the tensors, their sizes (values stored per step) and which are
non-negative by construction (outputs of ReLU / softmax / sigmoid, through
pooling, reshapes and dropout; the model input if ``nonneg_input``): those
are marked ``nonneg`` and the policy may elide their sign.  A tensor the
example did not reach raises at run time (run a representative example).

Gradients (``grads=(m, e)``, off by default): the gradient flowing back into
every stored activation is also stored, at the fixed container ``m``/``e``
with its window following its own running maximum (points ``grad/...``).

The policy's step counter is the number of :meth:`Attached.step` calls plus
one; the schedule recorder (``h.recorder``) records every training-mode
container choice of every point.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .qmqe import FixedPolicy, QuantPoint
from .schedule import Recorder

__all__ = ["attach", "Attached", "KINDS"]

KINDS = ("weight", "act", "embed", "norm", "attn", "grad")

_LINEAR = {F.linear: "in", F.conv1d: "in", F.conv2d: "in", F.conv3d: "in"}
_NORM = {F.layer_norm: 0, F.group_norm: 0, F.batch_norm: 0}
if hasattr(F, "rms_norm"):
    _NORM[F.rms_norm] = 0
_MATMUL = {torch.matmul, torch.bmm, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.__rmatmul__,
           torch.Tensor.bmm}
_SOFTMAX = {F.softmax, torch.softmax, torch.Tensor.softmax}
_WEIGHT_USERS = {torch.Tensor.__getitem__, torch.Tensor.__add__, torch.Tensor.__radd__, torch.add,
                 torch.Tensor.__mul__, torch.Tensor.__rmul__, torch.mul}
# sign-preserving ops (a non-negative input gives a non-negative output) and sign-making ones
_KEEP_SIGN = {"max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool2d",
              "adaptive_max_pool2d", "flatten", "reshape", "view", "permute", "transpose", "contiguous",
              "dropout", "__getitem__", "clone", "squeeze", "unsqueeze", "max_pool2d_with_indices", "_max_pool2d"}
_MAKE_SIGN = {"relu", "relu_", "relu6", "softmax", "sigmoid", "hardsigmoid"}


def _is_param(t) -> bool:
    return isinstance(t, nn.Parameter)


class _Mode(TorchFunctionMode):
    def __init__(self, h: "Attached"):
        super().__init__()
        self.h = h

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return self.h._dispatch(func, args, kwargs or {})


class _GradQ(torch.autograd.Function):
    """Identity forward; backward stores the incoming gradient through the gradient policy."""

    @staticmethod
    def forward(ctx, x, h, name):
        ctx.h, ctx.name = h, name
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        h = ctx.h
        p = h.points[ctx.name]
        return h.grad_policy(p, g, True), None, None


class Attached:
    """The handle returned by :func:`attach` (see the module docstring)."""

    def __init__(self, model: nn.Module, policy, example, *, nonneg_input: bool = False, grads=None,
                 window: int = 4, recorder: Recorder | None = None):
        self.model, self.policy = model, policy
        self.window = window
        self.points: "OrderedDict[str, QuantPoint]" = OrderedDict()
        self.param_names = {id(p): n for n, p in model.named_parameters()}
        self.recorder = recorder or Recorder("fp32" if getattr(policy, "m", 7) is None else "bf16")
        policy.recorder = self.recorder
        self.grad_policy = None
        if grads is not None:
            m, e = grads
            self.grad_policy = FixedPolicy(m, e)
            self.grad_policy.recorder = self.recorder
        self.steps_done = 0
        self._stack: list[str] = []
        self._count: dict = {}
        self._wcache: dict = {}
        self._discover = False
        self._nonneg: dict = {}
        self._mode = None
        self._hooks = []
        for name, mod in model.named_modules():
            self._hooks.append(mod.register_forward_pre_hook(self._make_pre(name or "model")))
            self._hooks.append(mod.register_forward_hook(self._post, always_call=True))
        self._nonneg_input = nonneg_input
        self._discover = True
        was = model.training
        model.train()
        try:
            with torch.no_grad():
                model(example) if not isinstance(example, (tuple, list)) else model(*example)
        finally:
            self._discover = False
            self._nonneg.clear()
            model.train(was)

    # -- hooks -------------------------------------------------------------------------------
    def _make_pre(self, name):
        def pre(mod, args):
            if not self._stack:                   # the root: one forward starts
                self._count.clear()
                self._wcache.clear()
                self.training = mod.training
                self.policy.step = self.steps_done + 1
                if self.grad_policy is not None:
                    self.grad_policy.step = self.policy.step
                self._mode = _Mode(self)
                self._mode.__enter__()
                if self._discover and self._nonneg_input:
                    for a in args:
                        if isinstance(a, torch.Tensor):
                            self._mark(a)
            self._stack.append(name)
        return pre

    def _post(self, mod, args, out):
        self._stack.pop()
        if not self._stack and self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None

    def remove(self) -> None:
        """Detach: the model runs unquantized again."""
        for hk in self._hooks:
            hk.remove()
        self._hooks.clear()

    # -- the training-loop side ------------------------------------------------------------------
    def param_groups(self) -> list[dict]:
        """The policy's trainable state as optimizer parameter groups (QM+QE bitlengths; else none)."""
        f = getattr(self.policy, "param_groups", None)
        return f() if f else []

    def penalty(self) -> torch.Tensor:
        """The policy's footprint term for the loss (0 for policies without one)."""
        f = getattr(self.policy, "penalty", None)
        return f() if f else torch.zeros(())

    def step(self, loss: float | None = None) -> None:
        """After ``optimizer.step()``: the policy's end-of-step callback (BitWave reads ``loss``)."""
        self.steps_done += 1
        f = getattr(self.policy, "end_step", None)
        if f:
            f(self.steps_done, loss)

    def schedule(self, **meta) -> dict:
        """The recorded schedule (docs/training.md, section 6) with ``meta`` fields."""
        return self.recorder.to_json(steps=self.steps_done, **meta)

    # -- the interception -------------------------------------------------------------------------
    def _mark(self, t):
        self._nonneg[id(t)] = weakref.ref(t)

    def _is_nonneg(self, t) -> bool:
        r = self._nonneg.get(id(t))
        return r is not None and r() is t

    def _name(self, kind, role):
        mod = self._stack[-1] if self._stack else "model"
        key = (kind, mod, role)
        k = self._count.get(key, 0)
        self._count[key] = k + 1
        return f"{kind}/{mod}.{role}" + (f"#{k}" if k else "")

    def _point(self, name, kind, x, nonneg=False):
        p = self.points.get(name)
        if p is None:
            if not self._discover:
                raise RuntimeError(f"attach: stored tensor {name} was not reached by the example forward")
            p = QuantPoint(name, kind, bool(nonneg), x.numel(), self.window)
            self.points[name] = p
            self.policy.register(p)
            if self.grad_policy is not None and kind != "weight":
                g = QuantPoint("grad/" + name.split("/", 1)[1], "grad", False, x.numel(), self.window)
                self.points[g.name] = g
                self.grad_policy.register(g)
                p.grad_point = g.name
        return p

    def _act(self, x, kind, role):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            return x
        name = self._name(kind, role)
        nonneg = self._is_nonneg(x)
        p = self._point(name, kind, x, nonneg)
        if self._discover:                     # the example forward only finds the tensors
            return x
        q = self.policy(p, x, self.training)
        gp = getattr(p, "grad_point", None)
        if gp is not None and self.training and torch.is_grad_enabled() and q.requires_grad:
            q = _GradQ.apply(q, self, gp)
        return q

    def _weight(self, w):
        if not _is_param(w):
            return w
        name = "weight/" + self.param_names.get(id(w), f"param{id(w)}")
        if name in self._wcache:
            return self._wcache[name]
        p = self._point(name, "weight", w)
        if self._discover:
            return w
        q = self.policy(p, w, self.training)
        self._wcache[name] = q
        return q

    def _dispatch(self, func, args, kwargs):
        out = None
        if func in _LINEAR:
            args = list(args)
            args[0] = self._act(args[0], "act", "in")
            args[1] = self._weight(args[1])
            if len(args) > 2:
                args[2] = self._weight(args[2])
            if "bias" in kwargs:
                kwargs = dict(kwargs, bias=self._weight(kwargs["bias"]))
            out = func(*args, **kwargs)
        elif func is F.embedding:
            args = list(args)
            args[1] = self._weight(args[1])
            out = self._act(func(*args, **kwargs), "embed", "out")
        elif func in _NORM:
            args = [self._act(args[0], "norm", "in")] + [self._weight(a) for a in args[1:]]
            kwargs = {k: self._weight(v) for k, v in kwargs.items()}
            out = func(*args, **kwargs)
        elif func is F.scaled_dot_product_attention:
            out = self._sdpa(*args, **kwargs)[0]
        elif func is F.multi_head_attention_forward:
            out = self._mha(*args, **kwargs)
        elif getattr(func, "__name__", "") == "_native_multi_head_attention":
            raise NotImplementedError("attach: nn.MultiheadAttention took its fused inference path")
        elif func in _SOFTMAX:
            x = self._act(args[0], "attn", "scores")
            out = func(x, *args[1:], **kwargs)
            if self._discover:
                self._mark(out)
            out = self._act(out, "attn", "probs")
        elif func in _MATMUL:
            a = [self._weight(t) if _is_param(t) else self._act(t, "attn", "mm") for t in args[:2]]
            out = func(*a, *args[2:], **kwargs)
        elif func in _WEIGHT_USERS:
            out = func(*[self._weight(a) for a in args], **kwargs)
        else:
            out = func(*args, **kwargs)
        if self._discover and isinstance(out, torch.Tensor):
            nm = getattr(func, "__name__", "")
            if nm in _MAKE_SIGN or (nm in _KEEP_SIGN and args and self._is_nonneg(args[0])):
                self._mark(out)
        return out

    def _sdpa(self, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        # explicit attention so that the tensors a backward pass keeps are visible and quantized
        q = self._act(q, "attn", "q")
        k = self._act(k, "attn", "k")
        v = self._act(v, "attn", "v")
        if enable_gqa and k.shape[-3] != q.shape[-3]:
            r = q.shape[-3] // k.shape[-3]
            k, v = k.repeat_interleave(r, -3), v.repeat_interleave(r, -3)
        scale = q.shape[-1] ** -0.5 if scale is None else scale
        s = self._act(torch.matmul(q, k.transpose(-2, -1)) * scale, "attn", "scores")
        L, S = q.shape[-2], k.shape[-2]
        if is_causal:
            s = s.masked_fill(~torch.ones(L, S, dtype=torch.bool, device=s.device).tril(), float("-inf"))
        if attn_mask is not None:
            s = s.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else s + attn_mask
        pr = torch.softmax(s, dim=-1)
        if self._discover:
            self._mark(pr)
        pr = self._act(pr, "attn", "probs")
        if dropout_p > 0:
            pr = F.dropout(pr, dropout_p)
        return torch.matmul(pr, v), pr

    def _mha(self, query, key, value, embed_dim, num_heads, in_proj_weight, in_proj_bias, bias_k, bias_v,
             add_zero_attn, dropout_p, out_proj_weight, out_proj_bias, training=True, key_padding_mask=None,
             need_weights=True, attn_mask=None, use_separate_proj_weight=False, q_proj_weight=None,
             k_proj_weight=None, v_proj_weight=None, static_k=None, static_v=None, average_attn_weights=True,
             is_causal=False):
        # nn.MultiheadAttention's functional body, spelled out with the calls above (its usual options)
        if bias_k is not None or bias_v is not None or add_zero_attn or static_k is not None \
                or static_v is not None or query.dim() != 3:
            raise NotImplementedError("attach: nn.MultiheadAttention with bias_k/bias_v, add_zero_attn, "
                                      "static k/v or unbatched inputs is not supported")
        L, N, E = query.shape
        S = key.shape[0]
        H, dh = num_heads, embed_dim // num_heads
        lin = lambda x, w, b: self._dispatch(F.linear, (x, w, b), {})
        if use_separate_proj_weight:
            ws = [self._weight(w) for w in (q_proj_weight, k_proj_weight, v_proj_weight)]
        else:
            ws = list(self._weight(in_proj_weight).chunk(3))
        bs = list(self._weight(in_proj_bias).chunk(3)) if in_proj_bias is not None else [None] * 3
        if key is query and value is query and not use_separate_proj_weight:     # self-attention: one input
            q, k, v = lin(query, torch.cat(ws), None if in_proj_bias is None else torch.cat(bs)).chunk(3, dim=-1)
        else:
            q, k, v = (lin(t, w, b) for t, w, b in zip((query, key, value), ws, bs))
        heads = lambda t, n: t.reshape(n, N * H, dh).transpose(0, 1).reshape(N, H, n, dh)
        mask = None
        if attn_mask is not None:
            am = attn_mask if attn_mask.dim() == 2 else attn_mask.reshape(N, H, L, S)
            mask = torch.zeros(am.shape).masked_fill(am, float("-inf")) if am.dtype == torch.bool else am
        if key_padding_mask is not None:
            kp = key_padding_mask.reshape(N, 1, 1, S)
            kp = torch.zeros(kp.shape).masked_fill(kp, float("-inf")) if kp.dtype == torch.bool else kp
            mask = kp if mask is None else mask + kp
        out, pr = self._sdpa(heads(q, L), heads(k, S), heads(v, S), attn_mask=mask,
                             dropout_p=dropout_p if training else 0.0, is_causal=is_causal and mask is None)
        self._stack.append(self._stack[-1] + ".out_proj")       # its input: act/<mha>.out_proj.in
        try:
            out = lin(out.permute(2, 0, 1, 3).reshape(L, N, E), out_proj_weight, out_proj_bias)
        finally:
            self._stack.pop()
        if not need_weights:
            return out, None
        return out, pr.mean(dim=1) if average_attn_weights else pr


def attach(model: nn.Module, policy, example, *, nonneg_input: bool = False, grads=None, window: int = 4,
           recorder: Recorder | None = None) -> Attached:
    """Route ``model``'s stored tensors through ``policy`` (module docstring); returns the handle."""
    return Attached(model, policy, example, nonneg_input=nonneg_input, grads=grads, window=window,
                    recorder=recorder)
