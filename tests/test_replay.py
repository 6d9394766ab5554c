"""Replay: a piece of a training run's container schedule, with its tensors, through the RTL.

A short Quantum Mantissa/Exponent run on the digits CNN writes its schedule
(the JSON the hardware runs read, docs/training.md); the test reads it back
with ``sfp.train.schedule.load_schedule``, takes the containers of the last step
for a sample of tensors (weights and activations), and pushes the very
tensors that step stored through the packer and the unpacker (Amaranth's
simulator on the same RTL as the generated Verilog), plain and with Gecko.
The packer's words and block lengths must equal the golden model's image,
and the unpacker must return ``sfp.model.quantize`` of the tensor.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sfp.hw.params import HwParams                    # noqa: E402
from sfp.hw.simulate import run_packer, run_unpacker  # noqa: E402
from sfp.model.container import encode_image          # noqa: E402
from sfp.model.quantize import quantize               # noqa: E402
from sfp.train.run import run                         # noqa: E402
from sfp.train.schedule import load_schedule          # noqa: E402

SAMPLE = ("weight/conv2.weight", "act/conv2.in", "act/fc1.in", "weight/fc2.weight")
MAX_VALUES = 2048      # a slice per tensor keeps the simulation short


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    r = run("digits", "qmqe", epochs=3)
    path = tmp_path_factory.mktemp("replay") / "schedule.json"
    path.write_text(json.dumps(r["schedule"]))
    return load_schedule(path), r["last_tensors"]


def test_schedule_matches_the_stored_tensors(replay):
    sched, tensors = replay
    final = sched.final()
    assert set(SAMPLE) <= set(final) and set(SAMPLE) <= set(tensors)
    for name in SAMPLE:
        assert final[name] == tensors[name]["settings"].with_(block=final[name].block, word=final[name].word)
    # the policy did choose narrow containers: the replay is not of bf16 as is
    assert any(final[n].man_bits < 7 or final[n].exp_bits < 8 for n in SAMPLE)


@pytest.mark.parametrize("gecko", [False, True])
@pytest.mark.parametrize("name", SAMPLE)
def test_replay_through_rtl(replay, name, gecko):
    sched, tensors = replay
    p = HwParams(source="bf16", lanes=8, word=128, block=256, gecko=gecko)
    s = sched.final(gecko=gecko, group=p.group, block=p.block, word=p.word)[name]
    x = np.ascontiguousarray(tensors[name]["values"].reshape(-1)[:MAX_VALUES]).view(np.uint16)
    pk = run_packer(p, x, s)
    ref = encode_image(x, s)
    image = b"".join(w.to_bytes(p.word // 8, "little") for w in pk.words)
    assert image == ref.payload
    assert pk.lens == ref.block_words.tolist()
    assert pk.beats_per_cycle == 1.0
    up = run_unpacker(p, pk.words, pk.lens, s, x.size)
    assert np.array_equal(up.values.astype(np.uint16), quantize(x, s))
