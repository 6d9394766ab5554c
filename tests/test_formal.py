"""The fast formal proofs (SymbiYosys + yices, all from PyPI), in the default test suite.

Each test writes the proof's ``.sby`` under ``build/formal/<name>`` and
runs it (``sfp.synth.formal``); the result must be the expected one:
PASS for the properties, FAIL for the deliberately broken variants (a FIFO
whose full check is loosened, the word ring without its command contract,
the unpacker's and the packer's credit gates with one credit too many: the
checker has teeth), and those must fail on the overflow/underflow assertion.  ``make formal`` runs every proof, the slow ones too;
docs/verification.md lists them with their times.
"""

from __future__ import annotations

import pytest

from sfp.synth.formal import PROOFS, run_proof

FAST = [p for p in PROOFS if p.fast]


@pytest.mark.parametrize("proof", FAST, ids=[p.name for p in FAST])
def test_proof(proof):
    r = run_proof(proof, timeout=600)
    assert r.status == proof.expect, (
        f"{proof.name} ({proof.mode}, depth {proof.depth}): {r.status}, expected {proof.expect}\n"
        f"{r.summary}\n(log: {r.workdir / 'run.log'})")


@pytest.mark.parametrize("name,word", [("regfifo_broken_fails", "overflow"), ("cutter_ring_loose_fails", "underflow"),
                                       ("unpacker_ofifo_broken_fails", "overflow"),
                                       ("wordpack_credit_broken_fails", "overflow")])
def test_broken_variant_fails_on_the_right_assertion(name, word):
    """A broken variant fails for the right reason: the overflow/underflow assertion, not another."""
    proof = next(p for p in PROOFS if p.name == name)
    r = run_proof(proof, timeout=600)
    assert r.status == "FAIL"
    log = (r.workdir / "run.log").read_text()
    import re
    from pathlib import Path

    m = re.search(r"failed assertion \S+ at (\S+):(\d+)", log)
    assert m, log[-2000:]
    line = Path(m.group(1)).read_text().splitlines()[int(m.group(2)) - 1]
    assert word in line, line
