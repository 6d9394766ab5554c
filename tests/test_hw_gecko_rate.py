"""Gecko at full rate on adversarial exponents, with no slack: bf16 stored whole (m=7, e=8, s=1).

At N = 8 and W = 128 a full-width bf16 beat fills a word exactly, so any bit
Gecko added would cost a bubble; the block fallback (format.md 5) must keep
the packer and the unpacker at one beat per clock whatever the exponents,
and the bytes must still be the golden model's.
"""

from __future__ import annotations

import numpy as np
import pytest

from sfp.hw.params import HwParams
from sfp.hw.simulate import run_packer, run_unpacker
from sfp.model.container import encode_image
from sfp.model.formats import Settings
from sfp.model.quantize import quantize
from sfp.sim_tests.packer_ref import GECKO_KINDS, gecko_adversarial_bits


@pytest.mark.parametrize("kind", GECKO_KINDS)
def test_full_rate_on_adversarial_exponents(kind):
    p = HwParams(gecko=True)
    s = Settings(man_bits=7, exp_bits=8, exp_base=0, gecko=True, group=p.group, block=p.block, word=p.word)
    x = gecko_adversarial_bits(np.random.default_rng(7), 4 * p.block, s, kinds=(kind,)).astype(np.uint16)
    pk = run_packer(p, x, s)
    ref = encode_image(x, s, strict=False)
    assert b"".join(w.to_bytes(p.word // 8, "little") for w in pk.words) == ref.payload
    assert pk.lens == ref.block_words.tolist()
    up = run_unpacker(p, pk.words, pk.lens, s, x.size)
    assert np.array_equal(up.values.astype(np.uint16), quantize(x, s, strict=False))
    assert pk.beats_per_cycle == 1.0, pk
    assert up.beats_per_cycle == 1.0, up
