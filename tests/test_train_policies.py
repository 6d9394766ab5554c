"""Training policies (train/qmqe.py, train/bitwave.py, train/schedule.py, sfp train)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from sfp.model.formats import Settings  # noqa: E402
from sfp.model.quantize import quantize  # noqa: E402
from sfp.train.bitwave import BitWave, BitWaveController, default_ladder  # noqa: E402
from sfp.train.qmqe import QMQE, QuantPoint, bits_to_float, quantize_bits, quantize_torch, to_bf16_bits  # noqa: E402
from sfp.train.schedule import Recorder, load_schedule  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL = np.arange(1 << 16, dtype=np.uint16)
ALL_T = torch.from_numpy(ALL.astype(np.int32))

CASES = [(m, e, base, sign) for m, e in ((0, 2), (1, 3), (2, 4), (3, 5), (7, 8), (1, 8), (4, 3))
         for base in (0, 118, 250, "auto") for sign in (True, False)]


@pytest.mark.parametrize("m,e,base,sign", CASES)
def test_bit_exact_all_bf16_patterns(m, e, base, sign):
    """Every one of the 65,536 bf16 patterns, vs the golden model (hardware semantics for elided signs)."""
    ref = quantize(ALL, Settings(man_bits=m, exp_bits=e, exp_base=base, sign=sign), strict=False)
    got = quantize_bits(ALL_T, m, e, base, sign).numpy().astype(np.uint16)
    assert np.array_equal(ref, got), np.flatnonzero(ref != got)[:5]


@pytest.mark.parametrize("specials,rounding", [(False, "rne"), (True, "rz")])
def test_bit_exact_specials_off_and_rz(specials, rounding):
    for m, e, base in ((2, 4, 120), (0, 3, 0), (5, 6, "auto")):
        s = Settings(man_bits=m, exp_bits=e, exp_base=base, specials=specials, rounding=rounding)
        ref = quantize(ALL, s, strict=False)
        got = quantize_bits(ALL_T, m, e, base, True, specials=specials, rounding=rounding).numpy().astype(np.uint16)
        assert np.array_equal(ref, got)


def test_fp32_source_is_rounded_to_bf16_first():
    import ml_dtypes
    x = np.random.default_rng(1).standard_normal(5000).astype(np.float32) * 3
    got = quantize_torch(torch.from_numpy(x), 2, 4, "auto")
    ref = quantize(x.astype(ml_dtypes.bfloat16), Settings(man_bits=2, exp_bits=4)).astype(np.float32)
    assert np.array_equal(got.numpy().view(np.uint32), ref.view(np.uint32))
    assert np.array_equal(bits_to_float(to_bf16_bits(torch.from_numpy(x))).numpy(), x.astype(ml_dtypes.bfloat16).astype(np.float32))


def _point(policy, n=4096, seed=0, name="w"):
    p = QuantPoint(name, "weight", False, n)
    policy.register(p)
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal(n).astype(np.float32)).requires_grad_(True)
    return p, x


def test_forward_at_integer_bitlength_is_bit_exact():
    """A QM/QE layer collapsed to an integer container returns exactly model.quantize's values."""
    import ml_dtypes
    pol = QMQE(init_m=3.0, init_e=4.0)
    p, x = _point(pol)
    pol.step = 1
    p.capture = {}
    y = pol(p, x, True)                      # frac = 0: the collapse is certain
    c = p.capture["settings"]
    xb = x.detach().numpy().astype(ml_dtypes.bfloat16)
    emax = int(((xb.view(np.uint16) >> 7) & 0xFF).max())   # the window follows the tensor's max exponent
    assert (c["m"], c["e"], c["exp_base"], c["sign"]) == (3, 4, emax - 14, True)
    ref = quantize(xb, Settings(man_bits=3, exp_bits=4, exp_base=c["exp_base"])).astype(np.float32)
    assert np.array_equal(y.detach().numpy().view(np.uint32), ref.view(np.uint32))
    y.sum().backward()                       # STE: identity to the value
    assert torch.equal(x.grad, torch.ones_like(x))


def test_gradient_reaches_bitlengths():
    pol = QMQE(init_m=2.0, init_e=3.0)               # collapses to m2 e3; neighbours m3, e4
    p, x = _point(pol)
    with torch.no_grad():                           # spread over ~16 binades: a 3-bit window flushes some
        x *= torch.exp2(torch.linspace(-14, 2, x.numel()))
    pol.step = 1
    loss = ((pol(p, x, True) - x.detach()) ** 2).sum()     # reconstruction error
    loss.backward()
    assert p.nm.grad is not None and p.ne.grad is not None
    assert float(p.nm.grad) < 0          # more mantissa bits bring the output nearer to x
    assert float(p.ne.grad) < 0          # so does a wider exponent window (fewer values flushed to 0)


def _steps(pol, n, loss_fn=None):
    """n training steps of the bitlengths alone (their optimizer group, the penalty in the loss)."""
    opt = torch.optim.Adam(pol.param_groups())
    for step in range(1, n + 1):
        pol.step = step
        loss = pol.penalty() + (loss_fn() if loss_fn else 0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        pol.end_step(step, float(loss.detach()))


def test_penalty_reduces_bitlengths():
    """With no task gradient, the penalty alone walks every bitlength down to its floor."""
    pol = QMQE(strength=1.0, lr=0.1, init_m=7.0, init_e=8.0)
    pts = [_point(pol, n, i, f"t{i}")[0] for i, n in enumerate((100, 10000))]
    _steps(pol, 150)
    for p in pts:
        assert float(p.nm.detach()) == 0.0 and float(p.ne.detach()) == 2.0


def test_penalty_is_strength_times_mean_bits():
    pol = QMQE(strength=0.5, init_m=3.0, init_e=4.0, elide_sign=False)
    _point(pol, 100, 0, "a")
    _point(pol, 300, 1, "b")
    assert abs(float(pol.penalty().detach()) - 0.5 * (1 + 3 + 4)) < 1e-6
    pol.points["b"].nm.data.fill_(1.0)                # mean bits = (100*8 + 300*6) / 400 = 6.5
    assert abs(float(pol.penalty().detach()) - 0.5 * 6.5) < 1e-6


def test_freeze_step_fixes_integer_containers():
    pol = QMQE(strength=0.0, init_m=2.4, init_e=4.6, freeze_step=3)
    p, x = _point(pol)
    _steps(pol, 2)
    assert (float(p.nm.detach()), float(p.ne.detach())) == (3.0, 5.0)    # ceil(n - 0.01)
    pol.step = 3
    assert pol.frozen and pol.container(p, True) == (3, 5) and float(pol.penalty().detach()) == 0.0


def test_penalty_against_task_gradient():
    """The task gradient holds the bitlength up; a stronger penalty lands lower."""
    def train(strength):
        pol = QMQE(strength=strength, lr=0.05, init_m=7.0, init_e=8.0, quantum_exponent=False)
        p, x = _point(pol, 2000, 3)
        target = x.detach()
        _steps(pol, 200, lambda: ((pol(p, x, True) - target) ** 2).sum())
        return float(p.nm.detach())
    weak, strong = train(0.05), train(50.0)
    assert strong < weak
    assert strong <= 1.0 and weak >= 2.0


def test_bitwave_reacts_to_loss():
    c = BitWaveController(10, beta=0.5, period=2, tol=0.01, up=1, hold=1)
    for i in range(20):                       # steadily falling loss: down every decision
        c.update(1.0 * 0.9 ** i)
    assert c.rung == 9
    rung = c.rung
    for _ in range(12):                       # flat loss: stall -> climb
        c.update(0.9 ** 19)
    assert c.rung < rung
    rung = c.rung
    for x in (1.0, 2.0, 3.0, 4.0):            # worsening: climb further
        c.update(x)
    assert c.rung < rung
    assert all(a in ("down", "up", "hold") for *_, a, _r in c.log)


def test_bitwave_ladder_and_policy():
    lad = default_ladder()
    assert lad[0] == (7, 8) and lad[-1] == (0, 3)
    assert all(sum(a) - sum(b) == 1 for a, b in zip(lad, lad[1:]))
    pol = BitWave(beta=0.5, period=1, tol=0.0)
    p, x = _point(pol)
    assert pol.container(p, True) == (7, 8)
    for i in range(4):                        # first update: baseline; then one rung down per improvement
        pol.end_step(i + 1, 1.0 / (i + 1))
    assert pol.container(p, True) == lad[3]


def test_schedule_round_trip(tmp_path):
    rec = Recorder("bf16")
    a = QuantPoint("act/fc1.in", "act", True, 64)
    w = QuantPoint("weight/fc1.weight", "weight", False, 640)
    for step in range(1, 11):
        rec.record(a, step, dict(m=3 if step < 6 else 1, e=4, exp_base=120, sign=False))
        rec.record(w, step, dict(m=2, e=5, exp_base=100 + step // 4, sign=True))
    path = tmp_path / "s.json"
    from sfp.train.schedule import save_schedule
    save_schedule(path, rec.to_json(task="t", method="qmqe", epochs=1, steps=10, steps_per_epoch=10, batch_size=32))
    doc = json.loads(path.read_text())
    assert doc["tensors"]["act/fc1.in"]["runs"] == [[1, 5, 3, 4, 120, 0], [6, 10, 1, 4, 120, 0]]
    s = load_schedule(path)
    assert s.at(7)["act/fc1.in"] == Settings(man_bits=1, exp_bits=4, exp_base=120, sign=False)
    assert s.at(4)["weight/fc1.weight"] == Settings(man_bits=2, exp_bits=5, exp_base=101)
    assert load_schedule(path, 10) == s.final()
    assert s.at(1, gecko=True)["act/fc1.in"].gecko
    with pytest.raises(KeyError):
        s.at(11)


def _sfp(*args, cwd=ROOT):
    code = "import sys; from sfp.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd)


def test_cli_train_json(tmp_path):
    out = tmp_path / "run"
    r = _sfp("train", "--task", "cancer", "--method", "qmqe", "--epochs", "2", "--gecko", "--json", "--out", str(out))
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    for k in ("accuracy", "footprint_vs_fp32", "footprint_vs_bf16"):
        assert k in j
    assert 0.5 <= j["accuracy"] <= 1.0 and j["footprint_vs_fp32"] > 2.0
    assert abs(j["footprint_vs_fp32"] - 2 * j["footprint_vs_bf16"]) < 1e-9
    assert j["gecko"] is True
    s = load_schedule(out / "schedule.json")
    assert s.steps == 2 * 14 and set(s.final()) >= {"act/fc1.in", "weight/fc1.weight"}
    for f in ("result.json", "bitlengths.png", "footprint.png"):
        assert (out / f).stat().st_size > 0


@pytest.mark.parametrize("args", [
    ("--task", "imagenet", "--method", "qmqe"),
    ("--task", "digits", "--method", "int8"),
    ("--task", "digits", "--method", "fp32", "--epochs", "0"),
    ("--task", "digits", "--method", "bf16", "--strength", "0.1"),
    ("--task", "digits", "--method", "qmqe", "--strength", "-1"),
    ("--task", "digits"),
    ("--task", "mnist", "--method", "fp32", "--window", "hw"),
    ("--task", "transformer", "--method", "mxfp9"),
])
def test_cli_bad_input(args, tmp_path):
    out = tmp_path / "o"
    r = _sfp("train", *args, "--out", str(out))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not out.exists()


def test_cli_out_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = _sfp("train", "--task", "cancer", "--method", "fp32", "--epochs", "1", "--out", str(f))
    assert r.returncode == 2 and "not a directory" in r.stderr
    assert f.read_text() == "x"
