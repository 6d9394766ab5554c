"""Fuzz campaign (issue #10 item 4): the RTL unpacker on damaged real tensors, Icarus and Verilator.

Every kind of bad memory contents of the issue's table
(:data:`sfp.sim_tests.fuzz_cases.KINDS`) is cut into real training tensors
packed by the golden model; each damaged tensor is followed by a clean one.
One build per simulator streams all pairs (``cocotb_fuzz_tb``) and checks,
per pair, no hang, ``ceil(length/N)`` beats, the model's values and
(when the top has ``m_status``) the model's error flags, and the clean
tensor after it exact.  :data:`PAIRS` pairs per simulator for the plain
build and :data:`PAIRS_GECKO` for the Gecko build in the default suite
(``SFP_FUZZ_PAIRS``, ``SFP_FUZZ_PAIRS_GECKO`` to change them).

The model-side tests check the generator and the model against what each
damage kind implies by itself (independent of the model's decoder).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from functools import lru_cache

import numpy as np
import pytest

from sfp.hw.params import HwParams
from sfp.sim_tests.fuzz_cases import CFG_FIELDS, GECKO_KINDS, KINDS, implied_error, make_pairs
from sfp.sim_tests.harness import SIMULATORS, build_root, run_sim

#: The fuzzed build: bf16, N = 4, W = 64, B = 64 (full maxima): many blocks per tensor, short runs.
P = HwParams(source="bf16", lanes=4, word=64, block=64)
PAIRS = int(os.environ.get("SFP_FUZZ_PAIRS", "800"))
#: The fuzzed Gecko build (G = 16): flips in coded and plain blocks, wrong s_len entries besides the rest.
PG = HwParams(source="bf16", lanes=4, word=64, block=64, gecko=True, group=16)
PAIRS_GECKO = int(os.environ.get("SFP_FUZZ_PAIRS_GECKO", "200"))
ERRORS = (None, "length", "corrupt", "unsupported")


@lru_cache(maxsize=None)
def _pairs(n: int, seed: int, gecko: bool = False):
    return make_pairs(PG if gecko else P, n, seed)


# -- the generator and the model, against what each kind implies ----------------------------


@pytest.mark.parametrize("gecko", [False, True], ids=["plain", "gecko"])
def test_every_kind_is_generated_and_implies_the_models_verdict(gecko):
    p = PG if gecko else P
    pairs = _pairs(PAIRS_GECKO if gecko else PAIRS, 1, gecko)
    seen = Counter(b.kind for b, _ in pairs)
    assert set(seen) == set((GECKO_KINDS if gecko else KINDS)[1:]), seen
    verdicts = Counter()
    for bad, good in pairs:
        assert bad.expect.error in implied_error(bad.kind, gecko), (bad.kind, bad.detail, bad.expect.error)
        assert good.expect.error is None
        assert bad.expect.beats == -(-bad.cfg["length"] // p.lanes)
        verdicts[(bad.kind, bad.expect.error)] += 1
    # the ambiguous kinds must be both accepted and rejected somewhere, or they test one side only
    for kind in ("random_words", "length_plus", "length_minus"):
        assert verdicts[(kind, "length")] > 0, (kind, verdicts)
    if gecko:                                  # the Gecko checks are exercised, not only the length ones
        assert verdicts[("s_len_off", "corrupt")] > 0 and verdicts[("flip_many", "corrupt")] > 0, verdicts


def test_flips_change_at_most_the_value_they_hit():
    """A single flip in a plain record changes that value alone; a padding flip changes nothing."""
    from sfp.model.stream import unpack_stream

    for bad, _ in _pairs(PAIRS, 1, False):
        if bad.kind not in ("flip_sign", "flip_code", "flip_man", "flip_pad"):
            continue
        # the undamaged words: flip the same bit back (the detail names value i, or the padding bit)
        clean = unpack_stream(_unflip(bad), bad.settings, bad.cfg["length"], P.lanes)
        diff = np.flatnonzero(clean.values != bad.expect.values)
        if bad.kind == "flip_pad":
            assert diff.size == 0, bad.detail
        else:
            i = int(bad.detail.split()[1])
            assert set(diff.tolist()) <= {i}, (bad.detail, diff)


def _unflip(t):
    """The words before a single flip: XOR with the bit the detail names."""
    v = t.settings.value_bits
    if t.kind == "flip_pad":
        pos = int(t.detail.split()[-1])
    else:
        i, off = int(t.detail.split()[1]), int(t.detail.split()[3])
        blk, j = divmod(i, P.block)
        # block starts: recompute from the (undamaged) plain lengths
        lens = [-(-min(P.block, t.cfg["length"] - b * P.block) * v // P.word)
                for b in range(-(-t.cfg["length"] // P.block))]
        pos = sum(lens[:blk]) * P.word + j * v + off
    w = list(t.words)
    w[pos // P.word] ^= 1 << (pos % P.word)
    return w


# -- the RTL campaign ---------------------------------------------------------------------------


def _campaign_data(pairs, p):
    chunks = p.word // 32
    tensors = [t for pair in pairs for t in pair]
    words, woff, vals, voff = [], [0], [], [0]
    for t in tensors:
        for w in t.words:
            words.append([(w >> (32 * c)) & 0xFFFFFFFF for c in range(chunks)])
        woff.append(len(words))
        vals.append(np.asarray(t.expect.values, np.uint32))
        voff.append(voff[-1] + len(t.expect.values))
    return {
        "words": np.array(words, np.uint32).reshape(-1, chunks),
        "word_off": np.array(woff, np.int64),
        "cfg": np.array([[t.cfg[f] for f in CFG_FIELDS] for t in tensors], np.int64),
        "beats": np.array([t.expect.beats for t in tensors], np.int64),
        "values": np.concatenate(vals),
        "val_off": np.array(voff, np.int64),
        "error": np.array([ERRORS.index(t.expect.error) for t in tensors], np.int8),
        "kind": np.array([(GECKO_KINDS if p.gecko else KINDS).index(t.kind) for t in tensors], np.int8),
        "slen": np.array([x for t in tensors for x in t.s_len], np.int64),
        "slen_off": np.cumsum([0] + [len(t.s_len) for t in tensors]).astype(np.int64),
    }


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("gecko", [False, True], ids=["plain", "gecko"])
def test_fuzz_unpacker_rtl(simulator, gecko):
    from sfp.hw.top import UnpackerTop

    p = PG if gecko else P
    n = PAIRS_GECKO if gecko else PAIRS
    pairs = _pairs(n, 2 if simulator == "verilator" else 1, gecko)   # different cases per simulator
    key = f"fuzz_unpacker_bf16_n4_w64_b64{'_gecko_g16' if gecko else ''}"
    result = build_root() / key / simulator / "fuzz_result.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    result.unlink(missing_ok=True)
    kinds = GECKO_KINDS if gecko else KINDS
    try:
        run_sim(UnpackerTop(p), top="sfp_unpacker", key=key, test_module="sfp.sim_tests.cocotb_fuzz_tb",
                simulator=simulator, params={"lanes": p.lanes, "src_width": p.src.width, "kinds": list(kinds),
                                             "result_file": str(result), "seed": 7},
                data=_campaign_data(pairs, p))
    except AssertionError:
        if result.is_file():
            r = json.loads(result.read_text())
            lines = [f"{k}: {v} of {n} pairs (e.g. {r['examples'][k]})" for k, v in sorted(r["fails"].items())]
            # what the failing damaged tensors were (the generator's description), grouped
            details = Counter(pairs[int(k)][0].detail.split(" for ")[0] if pairs[int(k)][0].kind.startswith("length")
                              else pairs[int(k)][0].detail for k in r.get("failed_pairs", {}))
            lines += [f"  damaged tensor '{d}': {c} failing pairs" for d, c in details.most_common(12)]
            pytest.fail(f"{simulator}: {r['failed']} failures over {r['pairs']} pairs "
                        f"(m_status port: {r['status_port']}):\n  " + "\n  ".join(lines), pytrace=False)
        raise
