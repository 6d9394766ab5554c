"""sfp.train.attach: the drop-in API on arbitrary models (the docs example runs as written)."""

from __future__ import annotations

import os
import re

import ml_dtypes
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from sfp.model.formats import Settings  # noqa: E402
from sfp.model.quantize import quantize  # noqa: E402
from sfp.train.attach import attach  # noqa: E402
from sfp.train.bitwave import BitWave  # noqa: E402
from sfp.train.qmqe import FixedPolicy  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _doc_example() -> str:
    with open(os.path.join(ROOT, "docs", "training.md")) as f:
        text = f.read()
    m = re.search(r"<!-- example: attach -->\s*```python\n(.*?)```", text, re.S)
    assert m, "docs/training.md lost its attach example"
    return m.group(1)


def test_docs_example_runs_as_written():
    ns: dict = {}
    exec(compile(_doc_example(), "docs/training.md", "exec"), ns)
    h, model, steps = ns["h"], ns["model"], ns["STEPS"]
    kinds = {p.kind for p in h.points.values()}
    assert kinds == {"weight", "act", "embed", "norm", "attn"}
    names = set(h.points)
    for role in ("q", "k", "v", "scores", "probs"):
        assert f"attn/attn.{role}" in names
    assert h.points["attn/attn.probs"].nonneg and not h.points["attn/attn.scores"].nonneg
    # every stored tensor has a container for every step, in the schedule
    sch = ns["schedule"]
    for name, t in sch["tensors"].items():
        assert t["runs"][0][0] == 1 and t["runs"][-1][1] == steps, name
    # the penalty moved the big tensors' bitlengths down from bf16 (m7 e8)
    big = max(h.points.values(), key=lambda p: p.size)
    assert float(big.nm.detach()) < 7 and float(big.ne.detach()) < 8
    # and the quantization is live: removing it changes the model's output
    x = ns["tokens"][:16]
    model.eval()
    with torch.no_grad():
        a = model(x)
        h.remove()
        b = model(x)
    assert not torch.equal(a, b)


def _golden(t: torch.Tensor, m, e, base, sign=True) -> torch.Tensor:
    xb = t.detach().numpy().astype(ml_dtypes.bfloat16)
    q = quantize(xb, Settings(man_bits=m, exp_bits=e, exp_base=base, sign=sign)).astype(np.float32)
    return torch.from_numpy(q)


def test_linear_and_conv_see_golden_model_tensors():
    """The layer computes on exactly sfp.model.quantize of its input, weight and bias (at the recorded windows)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
    x = torch.randn(8, 2, 6, 6)
    pol = FixedPolicy(2, 4, elide_sign=True)
    h = attach(net, pol, example=x)
    for p in h.points.values():
        p.capture = {}
    y = net(x)
    c = {n: p.capture["settings"] for n, p in h.points.items()}
    g = lambda name, t: _golden(t, 2, 4, c[name]["exp_base"], c[name]["sign"])
    conv, lin = net[0], net[3]
    a = F.conv2d(g("act/0.in", x), g("weight/0.weight", conv.weight), g("weight/0.bias", conv.bias))
    h1 = torch.relu(a).flatten(1)
    ref = F.linear(g("act/3.in", h1), g("weight/3.weight", lin.weight), g("weight/3.bias", lin.bias))
    assert torch.equal(y, ref)
    # the ReLU output (through flatten) is found non-negative: its sign is elided; the input's is not
    assert h.points["act/3.in"].nonneg and c["act/3.in"]["sign"] is False
    assert not h.points["act/0.in"].nonneg and c["act/0.in"]["sign"] is True


def test_nonneg_input_and_unseen_tensor():
    net = nn.Sequential(nn.Linear(3, 3))
    h = attach(net, FixedPolicy(3, 5, elide_sign=True), example=torch.rand(4, 3), nonneg_input=True)
    assert h.points["act/0.in"].nonneg

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x, use_b=False):
            return self.b(x) if use_b else self.a(x)

    m = Branchy()
    attach(m, FixedPolicy(3, 5), example=torch.rand(4, 3))
    with pytest.raises(RuntimeError, match="not reached by the example"):
        m(torch.rand(4, 3), True)


def test_sdpa_and_mha_match_unquantized_torch():
    """With no quantization (fp32 policy) the explicit attention equals torch's own."""
    torch.manual_seed(1)
    mha = nn.MultiheadAttention(16, 4, batch_first=True)
    x = torch.randn(3, 7, 16)
    mask = torch.rand(7, 7) > 0.7
    mask.fill_diagonal_(False)
    kp = torch.zeros(3, 7, dtype=torch.bool)
    kp[0, -2:] = True
    ref, refw = mha(x, x, x, attn_mask=mask, key_padding_mask=kp)
    attach(mha, FixedPolicy(None), example=(x, x, x))
    got, gotw = mha(x, x, x, attn_mask=mask, key_padding_mask=kp)
    assert torch.allclose(got, ref, atol=1e-5) and torch.allclose(gotw, refw, atol=1e-6)

    class Causal(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    q, k, v = torch.randn(3, 2, 2, 5, 8).unbind(0)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    mod = Causal()
    h = attach(mod, FixedPolicy(None), example=(q, k, v))
    assert torch.allclose(mod(q, k, v), ref, atol=1e-6)
    assert {"attn/model.q", "attn/model.scores", "attn/model.probs"} <= set(h.points)


def test_gradients_optionally_stored():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(6, 3))
    x = torch.randn(16, 6)
    h = attach(net, FixedPolicy(None), example=x, grads=(2, 4))
    assert "grad/0.in" in h.points and h.points["grad/0.in"].kind == "grad"
    for p in h.points.values():
        p.capture = {}
    xi = x.clone().requires_grad_(True)
    net(xi).pow(2).sum().backward()
    s = h.points["grad/0.in"].capture["settings"]
    h.remove()
    xr = x.clone().requires_grad_(True)
    g_true = torch.autograd.grad(net(xr).pow(2).sum(), xr)[0]
    # the gradient reaching the input is the golden model's m2 e4 container of the true gradient
    assert not torch.equal(xi.grad, g_true)
    assert torch.equal(xi.grad, _golden(g_true, 2, 4, s["exp_base"]))
    assert h.schedule()["tensors"]["grad/0.in"]["kind"] == "grad"


def test_bitwave_callback_through_the_handle():
    net = nn.Sequential(nn.Linear(4, 4))
    pol = BitWave(beta=0.5, period=1, tol=0.0)
    h = attach(net, pol, example=torch.rand(2, 4))
    for i in range(4):
        h.step(1.0 / (i + 1))
    assert pol.container(None, True) == pol.ladder[3]
    net(torch.rand(2, 4))
    assert pol.step == 5
