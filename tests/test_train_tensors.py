"""Real training tensors from the digits CNN (train/)."""

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from sfp.train import tensors as T  # noqa: E402

EPOCHS = 3
SNAPSHOTS = ("step0001", "epoch01", "last")


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    path = tmp_path_factory.mktemp("tensors") / "digits.npz"
    assert not path.exists()
    got = T.ensure_tensors(path, epochs=EPOCHS, snapshots=SNAPSHOTS)
    assert got == path and path.exists()
    return path, T.load_tensors(path)


def test_npz_contents(dump):
    path, t = dump
    assert T.snapshot_names(t) == ["step0001", "epoch01", f"epoch{EPOCHS:02d}"]
    for key, arr in t.items():
        snap, kind, name = T.split_key(key)
        assert kind in T.KINDS, key
        assert arr.dtype == np.float32, key
        assert arr.size > 0 and np.isfinite(arr).all(), key
    for snap in T.snapshot_names(t):
        for kind in T.KINDS:
            assert T.select(t, kind, snap), (snap, kind)
        w = T.select(t, "weight", snap, strip=True)
        a = T.select(t, "act", snap, strip=True)
        g = T.select(t, "grad", snap, strip=True)
        assert set(w) == {f"{l}.{p}" for l in ("conv1", "conv2", "fc1", "fc2") for p in ("weight", "bias")}
        assert {"input", "conv1.out", "relu1.out", "conv2.out", "relu2.out", "pool.out",
                "fc1.out", "relu3.out", "fc2.out"} <= set(a)
        # parameter gradients match parameter shapes; activation grads match activations
        for n, arr in w.items():
            assert g[n].shape == arr.shape
        for n, arr in a.items():
            if n != "input":
                assert g[n].shape == arr.shape
        # post-ReLU activations are nonnegative with many exact zeros
        assert (a["relu1.out"] >= 0).all() and (a["relu1.out"] == 0).mean() > 0.05
        np.testing.assert_array_equal(a["relu1.out"], np.maximum(a["conv1.out"], 0))
    # ensure_tensors is a cache: an existing file is not rewritten
    mtime = path.stat().st_mtime_ns
    assert T.ensure_tensors(path) == path and path.stat().st_mtime_ns == mtime


def test_exponent_stats(dump):
    _, t = dump
    st = T.exponent_stats(t)
    assert set(st) == set(T.KINDS)
    for s in st.values():
        assert 0 <= s["zero_frac"] < 1 and 0 < s["exp_entropy"] <= 8


def test_accuracy():
    from sfp.train import digits

    data = digits.load_data(0)
    model = digits.build_model(0)
    hist = digits.train(model, data, epochs=4)
    assert len(hist) == 4
    assert digits.evaluate(model, data) > 0.90


def test_reproducible(tmp_path, dump):
    _, t_ref = dump
    p = tmp_path / "again.npz"
    T.dump_tensors(p, epochs=1, snapshots=("step0001", "epoch01"))
    t = T.load_tensors(p)
    for snap in ("step0001", "epoch01"):
        ref = T.select(t_ref, snapshot=snap)
        new = T.select(t, snapshot=snap)
        assert ref.keys() == new.keys()
        for k in ref:
            np.testing.assert_array_equal(new[k], ref[k], err_msg=k)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left no temp file


def test_no_torch_import_outside_train():
    # Loading tensors / stats must not pull torch in.
    code = ("import sys, train, train.tensors; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
