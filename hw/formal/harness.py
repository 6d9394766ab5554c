"""Formal harnesses: each function builds one design (an Amaranth ``Fragment``) whose
``Assert``/``Assume``/``Cover`` statements state one family of properties.

The unit under test sits in a wrapper module; its input ports are left
undriven, so in the exported RTLIL they are free inputs the solver chooses
every clock, constrained only by the ``Assume``s here (AXI4-Stream rules on
input streams, a configuration, ``rst`` low).  Each builder returns
``(fragment, info)``; ``sfp.synth.formal`` writes and runs the ``.sby`` file.

Properties on internal queues use :func:`sfp.hw.formal.props.tap`: if the
RTL renames a queue's signals, building the harness fails loudly
(:class:`~sfp.hw.formal.props.TapError`) rather than proving nothing.
"""

from __future__ import annotations

from amaranth import Cat, ClockDomain, Module, Mux, Shape, Signal
from amaranth.hdl import Assert, Assume, Cover, Fragment

from ..params import HwParams
from .props import TapError, stream_rules, tap

__all__ = ["HARNESSES", "small_params"]


def small_params(lanes: int = 2, block: int = 4, **kw) -> HwParams:
    """A small configuration for proofs: bf16 source, W = 64, m <= 3, e <= 4 (8-bit records)."""
    base = dict(source="bf16", lanes=lanes, word=64, block=block, max_man_bits=3, max_exp_bits=4, stochastic=False)
    base.update(kw)
    return HwParams(**base)


def _no_reset(m: Module):
    """The harness owns the ``sync`` domain (its clk and rst become ports); ``rst`` stays low:
    the run starts from the init values, which are the reset values."""
    m.domains.sync = cd = ClockDomain("sync")
    m.d.comb += Assume(~cd.rst)



def _free_unpacker(p: HwParams, cls):
    """A module holding ``cls(p)`` (an :class:`sfp.hw.unpacker.Unpacker`) as ``dut``, out of
    reset, with AXI4-Stream rules assumed on its inputs (``s_axis``, and ``s_len`` in a Gecko
    build) and every input otherwise free; returns (module, dut)."""
    m = Module()
    m.submodules.dut = dut = cls(p)
    _no_reset(m)
    stream_rules(m, dut.s_axis.valid, dut.s_axis.ready, dut.s_axis.payload, role="assume", name="s_axis")
    if p.gecko:
        stream_rules(m, dut.s_len.valid, dut.s_len.ready, dut.s_len.payload, role="assume", name="s_len")
    return m, dut

def _fix_cfg(m: Module, cfg, **fields):
    for k, v in fields.items():
        m.d.comb += Assume(getattr(cfg, k) == v)


# -- queue invariants ------------------------------------------------------------


def _regfifo_invariants(frag: Fragment, path: str, depth: int, label: str):
    """No overflow / underflow of a :class:`sfp.hw.wordpack.RegFifo` at ``path``, as statements.

    The FIFO's caller promises room for ``w_n`` entries (there is no
    ``w_rdy``), so "never overflows" is ``level + w_n - pop <= depth``;
    "never underflows" is that a pop only happens with ``level >= 1``.  The
    pointer/level consistency is stated too: it is true of the FIFO and
    gives k-induction the invariant it needs.
    """
    level = tap(frag, path, "level")
    w_n = tap(frag, path, "w_n")
    rp = tap(frag, path, "rp")
    wp = tap(frag, path, "wp")
    valid = tap(frag, path, "r__valid")
    ready = tap(frag, path, "r__ready")
    pop = valid & ready
    mask = depth - 1
    return [
        Assert(level <= depth, f"{label}: level above depth"),
        Assert(level + w_n - pop <= depth, f"{label}: overflow (a write with no free slot)"),
        Assert(~pop | (level >= 1), f"{label}: underflow (a pop from an empty FIFO)"),
        Assert(((wp - rp) & mask) == (level & mask), f"{label}: pointers disagree with the level"),
    ]


def _accum_invariants(frag: Fragment, path: str):
    """The packer's word and length queues (in :class:`sfp.hw.wordpack.BitAccumulator`) are never
    written while full, and its one-word pending register is never asked to hold two words: the
    accumulator names the disjunction of these three ``overflow`` (the credit gate upstream must
    keep it 0)."""
    return [Assert(~tap(frag, path, "overflow"), "word/length queue or pending word overflow")]


def wordpack_fifos(p: HwParams):
    """WordPacker (RecordConcat -> BitAccumulator behind the CreditGate) with any input beats and
    any sinks: its queues never overflow (Amaranth's FIFOs assert they never underflow or lose
    their pointers themselves); its two output streams obey AXI4-Stream given an AXI4-Stream input."""
    from ..wordpack import WordPacker

    m = Module()
    m.submodules.dut = dut = WordPacker(p)
    _no_reset(m)
    ib = dut.i.payload
    stream_rules(m, dut.i.valid, dut.i.ready, dut.i.payload, role="assume", name="i")
    m.d.comb += [Assume(ib.count <= p.lanes), Assume(ib.v <= p.max_value_bits)]
    stream_rules(m, dut.words.valid, dut.words.ready, dut.words.payload, role="assert", name="words")
    stream_rules(m, dut.lens.valid, dut.lens.ready, dut.lens.payload, role="assert", name="lens")
    frag = Fragment.get(m, "formal")
    frag.add_statements("comb", *_accum_invariants(frag.find_subfragment("dut"), "accum"))
    return frag, {"unit": "WordPacker", "params": p}


def _ring_invariants(d: Fragment, p: HwParams, path: str = "", contract: bool = True):
    """No overflow/underflow of the unpacker's word ring (:class:`sfp.hw.wordunpack.RecordCutter`)."""
    from ..wordunpack import RecordCutter

    level, pops, take = tap(d, path, "level"), tap(d, path, "pops"), tap(d, path, "take")
    rp, wp = tap(d, path, "rp"), tap(d, path, "wp")
    ring = RecordCutter.RING
    extra = []
    # registered copies of `level >= 1`, `level >= 2` (d15d10d): true of the design, and needed by
    # k-induction (an unreachable state where they disagree with `level` would pop an empty ring)
    for name, k in (("ge1", 1), ("ge2", 2)):
        try:
            extra.append(Assert(tap(d, path, name) == (level >= k), f"word ring: {name} disagrees with the level"))
        except TapError:
            pass
    # the prefetched commands (cur, nxt; d15d10d) keep the sequencer's contract they came in with
    try:
        if not contract:
            raise TapError("no command contract")
        from amaranth.lib import data as _data

        from ..unpack_seq import beat_cmd_layout
        cl = beat_cmd_layout(p)
        cur, nxt = _data.View(cl, tap(d, path, "cur")), _data.View(cl, tap(d, path, "nxt"))
        cur_v, nxt_v = tap(d, path, "cur_v"), tap(d, path, "nxt_v")
        extra += [
            Assert(~cur_v | (cur.pops <= 1 + cur.need2), "held command breaks pops <= 1 + need2"),
            Assert(~nxt_v | (nxt.pops <= 1 + nxt.need2), "prefetched command breaks pops <= 1 + need2"),
            Assert(~nxt_v | cur_v, "a prefetched command without a head command"),
        ]
    except TapError:
        pass
    return extra + [
        Assert(level <= ring, "word ring: level above depth"),
        Assert(level + take - pops <= ring, "word ring: overflow"),
        Assert(pops <= level, "word ring: underflow (a word popped that is not there)"),
        Assert(((wp - rp) & (ring - 1)) == (level & (ring - 1)), "word ring: pointers disagree with the level"),
    ]


def _unpacker_invariants(frag: Fragment, p: HwParams):
    """The plain unpacker's own queues: the word ring, and the credit-managed output FIFO, which has
    no back-pressure on its write side (a write while full would lose a beat)."""
    d = frag.find_subfragment("dut")
    w_en, w_rdy = tap(d, "ofifo", "w_en"), tap(d, "ofifo", "w_rdy")
    return _ring_invariants(d, p, "cut") + [Assert(~w_en | w_rdy, "output FIFO: a beat written while full")]


def cutter_ring(p: HwParams, loose: bool = False):
    """RecordCutter with any words, any beat commands (within the sequencer's contract: a beat
    pops at most the words it needs, ``pops <= 1 + need2``), any ``room``: the 4-word ring never
    overflows or underflows."""
    from ..wordunpack import RecordCutter

    m = Module()
    m.submodules.dut = dut = RecordCutter(p)
    _no_reset(m)
    stream_rules(m, dut.words.valid, dut.words.ready, dut.words.payload, role="assume", name="words")
    stream_rules(m, dut.cmd.valid, dut.cmd.ready, dut.cmd.payload, role="assume", name="cmd")
    if not loose:
        m.d.comb += Assume(dut.cmd.payload.pops <= 1 + dut.cmd.payload.need2)
    frag = Fragment.get(m, "formal")
    frag.add_statements("comb", *_ring_invariants(frag.find_subfragment("dut"), p, contract=not loose))
    return frag, {"unit": "RecordCutter", "params": p}


def regfifo_env(p: HwParams, broken: bool = False):
    """A :class:`RegFifo` (depth 4, two write ports) driven by a writer that writes up to two
    entries when ``level <= depth - 2`` (the first WordPacker's rule; the pipelined packer no
    longer instantiates RegFifo, so this pair of proofs now shows the checker's teeth).  ``broken=True`` lets it write
    at ``level <= depth - 1``: the overflow proof must then FAIL (the checker has teeth)."""
    from ..wordpack import RegFifo, word_layout

    m = Module()
    m.submodules.dut = dut = RegFifo(word_layout(p), 4, wports=2)
    _no_reset(m)
    want = Signal(range(3))                   # free input: how many the writer would like to write
    limit = 3 if broken else 2
    m.d.comb += dut.w_n.eq(Mux(dut.level <= limit, want, 0))
    m.d.comb += Assume(want <= 2)
    frag = Fragment.get(m, "formal")
    frag.add_statements("comb", *_regfifo_invariants(frag.find_subfragment("dut"), "", 4, "RegFifo"))
    return frag, {"unit": "RegFifo" + (" (full check broken)" if broken else ""), "params": p}


# -- AXI4-Stream rules on the whole units ------------------------------------------


def packer_axis(p: HwParams, queues: bool = True):
    """Packer: m_axis and m_len obey AXI4-Stream for any cfg and any AXI4-Stream input.
    ``queues=False`` leaves out the accumulator's overflow assertion (proved on its own by
    :func:`packer_credit`; not inductive without the credit invariants), for the k-induction
    proof of the stream rules alone."""
    from ..packer import Packer

    m = Module()
    m.submodules.dut = dut = Packer(p)
    _no_reset(m)
    stream_rules(m, dut.s_axis.valid, dut.s_axis.ready, dut.s_axis.payload, role="assume", name="s_axis")
    stream_rules(m, dut.m_axis.valid, dut.m_axis.ready, dut.m_axis.payload, role="assert", name="m_axis")
    stream_rules(m, dut.m_len.valid, dut.m_len.ready, dut.m_len.payload, role="assert", name="m_len")
    _status_stream(m, dut, "assert")
    frag = Fragment.get(m, "formal")
    if not p.gecko and queues:
        frag.add_statements("comb", *_accum_invariants(frag.find_subfragment("dut"), "accum"))
    return frag, {"unit": "Packer", "params": p}


def unpacker_axis(p: HwParams, queues: bool = True):
    """Unpacker: m_axis obeys AXI4-Stream for any cfg and any AXI4-Stream input words.
    ``queues=False`` leaves out the word ring and output FIFO assertions (proved on their own
    by :func:`cutter_ring` and :func:`unpacker_ofifo`), for the k-induction proof of the
    stream rules alone."""
    from ..unpacker import Unpacker

    m, dut = _free_unpacker(p, Unpacker)
    stream_rules(m, dut.m_axis.valid, dut.m_axis.ready, dut.m_axis.payload, role="assert", name="m_axis")
    _status_stream(m, dut, "assert")
    # Elaborated for platform "formal": Amaranth's SyncFIFO then asserts its own
    # pointer/level invariants (which also make the stream rules inductive).
    frag = Fragment.get(m, "formal")
    if not p.gecko and queues:
        frag.add_statements("comb", *_unpacker_invariants(frag, p))
    return frag, {"unit": "Unpacker", "params": p}


def _status_stream(m, dut, role):
    """The per-tensor ``m_status`` stream, when the unit has one (issue #10 item 2)."""
    if "m_status" in dut.signature.members:
        s = dut.m_status
        stream_rules(m, s.valid, s.ready, s.payload, role=role, name="m_status")


def unpacker_inqueues(p: HwParams):
    """The unpacker's input-side queues, unbounded (k-induction), any cfg, any AXI4-Stream words
    (and ``s_len``), any sinks:

    * the input word FIFO, the descriptor FIFO and (Gecko) the ``s_len`` route queue are
      written with no look at their ``w_rdy`` (``s_axis.ready`` is a register computed from
      their levels a clock before): never written while full;
    * (Gecko) :class:`sfp.hw.gecko_parse.GeckoParser`'s block-index FIFO ``lfifo``: an entry
      that the handshake accepts is written (its ready is the FIFO's), and the parser never
      uses or pops an entry that is not there: a slice that needs its block's entry is
      consumed (``adv``) only while the FIFO's head is valid (``hold`` stops it otherwise).
    """
    from ..unpacker import Unpacker

    m, dut = _free_unpacker(p, Unpacker)
    frag = Fragment.get(m, "formal")
    d = frag.find_subfragment("dut")
    checks = []
    names = ["wfifo", "dfifo"] + (["route_q"] if p.gecko else [])
    for q in names:
        checks.append(Assert(~tap(d, q, "w_en") | tap(d, q, "w_rdy"), f"{q}: written while full"))
    if p.gecko:
        g = "cut/gecko"
        r_en, r_rdy = tap(d, f"{g}/lfifo", "r_en"), tap(d, f"{g}/lfifo", "r_rdy")
        w_en, w_rdy = tap(d, f"{g}/lfifo", "w_en"), tap(d, f"{g}/lfifo", "w_rdy")
        lv, lr = tap(d, g, "lens__valid"), tap(d, g, "lens__ready")
        adv, need = tap(d, g, "adv"), tap(d, g, "need_len")
        checks += [
            Assert((lv & lr) == (w_en & w_rdy), "lfifo: an s_len entry accepted but not written"),
            Assert(~r_en | r_rdy, "lfifo: underflow (an entry popped that is not there)"),
            Assert(~(adv & need) | r_rdy, "lfifo: a slice consumed with its block's entry missing"),
        ]
    frag.add_statements("comb", *checks)
    return frag, {"unit": "Unpacker (input queues)", "params": p}


def _field(raw, *names):
    """A field of a struct-shaped signal found by :func:`tap` (which returns the raw signal):
    read from the signal's struct format, so the harness need not copy the RTL's layout."""
    f = raw._format
    for n in names:
        f = f._fields[n]
    return f._value if hasattr(f, "_fields") else f._chunks[0][0]


def _storage_slots(d: Fragment, path: str, level: str):
    """The slots of the storage ``Memory`` of the Amaranth FIFO at ``path`` that hold entries, as
    (held, data) pairs, in no particular order: each slot is read through an extra combinational
    read port that the harness adds to the elaborated memory (the RTL is unchanged: the port
    exists only in the harness's netlist); slot a is held when it lies within ``level`` (the name
    of the FIFO's count of stored entries) entries from ``consume``.  This is what lets an
    invariant speak of a queue's *contents*: k-induction otherwise starts from arbitrary memory."""
    from amaranth import Const
    from amaranth.hdl._mem import MemoryInstance

    f = d
    for part in path.split("/"):
        f = f.find_subfragment(part)
    mem = f.find_subfragment("storage")
    if not isinstance(mem, MemoryInstance):
        raise TapError(f"{path}: storage is not a memory")
    depth, width = mem._data.depth, Shape.cast(mem._data.shape).width
    consume, held = tap(d, path, "consume"), tap(d, path, level)
    out = []
    for a in range(depth):
        data = Signal(width, name=f"{path.replace('/', '_')}_slot{a}")
        mem.read_port(domain="comb", addr=Const(a, max(1, (depth - 1).bit_length())), data=data,
                      en=Const(1, 1), transparent_for=())
        # slot a is the ((a - consume) mod depth)-th entry in the storage
        dist = Mux(consume <= a, a - consume, a + depth - consume)
        out.append((dist < held, data))
    return out


def _fifo_entries(d: Fragment, path: str):
    """Every entry held by the Amaranth ``SyncFIFOBuffered`` at ``path``, as (held, data) pairs:
    its output register (``r_rdy``, ``r_data``) and the slots of its storage
    (:func:`_storage_slots`, counted by its ``inner_level``)."""
    return [(tap(d, path, "r_rdy"), tap(d, path, "r_data"))] + _storage_slots(d, path, "inner_level")


def _lutqueue_contents(d: Fragment, path: str):
    """Every entry held by the :class:`sfp.hw.wordpack.LutQueue` at ``path``, as (held, data)
    pairs: its output register and the slots of its ``SyncFIFO``'s storage."""
    return [(tap(d, path, "r_rdy"), tap(d, path, "r_data"))] + _storage_slots(d, f"{path}/fifo", "level")


# -- credit invariants: unbounded (k-induction) queue safety behind free-running pipelines -------


def _shadow_line(m: Module, x, length: int, name: str):
    """A harness copy of a fixed-latency pipeline's valid bits: ``x`` delayed by 1..``length``
    clocks.  Returns the list of stages (stage ``length - 1`` is ``x`` of ``length`` clocks ago).

    The units' datapaths are free-running (no enable), so a beat that enters at clock t leaves
    at t + latency whatever else happens: asserting that the unit's own output valid equals the
    shadow's last stage, and that its credit counter equals the shadow's beats plus the queue's
    level, states the credit argument without naming a single internal pipeline register (only
    the counter, the queue and the entry/exit strobes are tapped), so a rewrite of the pipeline
    that keeps its latency keeps the proof; one that changes the latency fails it loudly.
    k-induction needs a depth above ``length``: the shadow and the unit's pipeline start from
    arbitrary (unrelated) contents and agree only once both have been refilled."""
    stages = []
    for i in range(length):
        r = Signal(name=f"{name}_sh{i}")
        m.d.sync += r.eq(x)
        stages.append(r)
        x = r
    return stages


def _popcount(bits):
    total = 0
    for b in bits:
        total = total + b
    return total


def unpacker_ofifo(p: HwParams, out_depth: int | None = None, margin: int | None = None):
    """The unpacker's credit-managed output FIFO (written with no back-pressure) never overflows,
    for any cfg, any AXI4-Stream words (and block index), any ``m_axis``/``m_status`` sinks.

    Inductive invariant (all asserted): a beat issued at clock t (``issued``) is written into
    the output FIFO at exactly t + L (L = splitter + lanes latency, or the lanes' alone in the
    Gecko build), tracked by a shadow delay line in the harness; the credit counter
    ``inflight`` equals the beats in the shadow line plus the FIFO's level; and
    ``inflight <= OUT_DEPTH - ROOM_MARGIN + 2`` (``room`` is registered from the count one
    clock old, and an issued beat is counted one clock after its decision).  From these, no
    write finds the FIFO full.  ``out_depth``/``margin`` build a variant of the unpacker
    (a subclass) with another depth or margin: with a margin of 1 (one credit too many) the
    proof must FAIL on the overflow assertion."""
    from ..dequant import DEQUANT_LATENCY
    from ..recsplit import splitter_latency
    from ..unpacker import Unpacker

    cls = Unpacker
    if out_depth is not None or margin is not None:
        cls = type("UnpackerVariant", (Unpacker,), {
            "OUT_DEPTH": out_depth if out_depth is not None else Unpacker.OUT_DEPTH,
            "ROOM_MARGIN": margin if margin is not None else Unpacker.ROOM_MARGIN})
    depth, marg = cls.OUT_DEPTH, cls.ROOM_MARGIN
    lat = DEQUANT_LATENCY + splitter_latency(p)         # the Gecko build shares the splitter too
    m, dut = _free_unpacker(p, cls)
    frag = Fragment.get(m, "formal")
    d = frag.find_subfragment("dut")
    issued, inflight = tap(d, "", "issued"), tap(d, "", "inflight")
    w_en, w_rdy, level = tap(d, "ofifo", "w_en"), tap(d, "ofifo", "w_rdy"), tap(d, "ofifo", "level")
    m2 = Module()
    line = _shadow_line(m2, issued, lat, "issued")
    m2.d.comb += [
        Assert(w_en == line[-1], "output FIFO: a write not L clocks after an issued beat (latency changed?)"),
        Assert(inflight == level + _popcount(line), "output FIFO: credits != beats in flight + level"),
        Assert(inflight <= depth - marg + 2, "output FIFO: more credits out than depth - margin + 2"),
        Assert(~w_en | w_rdy, "output FIFO: overflow (a beat written while full)"),
    ]
    top = Fragment.get(m2, "formal")
    frag.add_subfragment(top, "credit")
    return frag, {"unit": "Unpacker (output FIFO)", "params": p}


def _lutqueue_entries(d: Fragment, path: str):
    """Entries held by a :class:`sfp.hw.wordpack.LutQueue` at ``path``: its FIFO's level plus its
    output register; and the FIFO's write strobe and ready (to state "never written while full")."""
    return (tap(d, f"{path}/fifo", "level") + tap(d, path, "r_rdy"),
            tap(d, f"{path}/fifo", "w_en"), tap(d, f"{path}/fifo", "w_rdy"))


def _packer_credit(m: Module, d: Fragment, p: HwParams, depth: int, margin: int, lat: int,
                   front_lat: int | None, status_words: bool = False):
    """The credit invariants of the plain packer's queues behind its :class:`CreditGate`
    (``d``: the fragment that holds ``gate`` and ``accum``, and ``status_q`` when ``front_lat``
    is given: the clocks from an accepted beat to the front end's output, where the status
    queue is written).

    Every accepted beat (``gate.fire``) retires (``gate.retire``) exactly ``lat`` clocks later
    (a shadow line, as in :func:`unpacker_ofifo`), so the gate's ``inflight`` is the shadow's
    beat count.  Each queue's counter that the gate reads is its entries (words: the word
    queue plus the pending word).  The gate admits a beat only if in-flight + queued was at
    most ``depth - margin`` two clocks before; since then at most 3 beats were admitted, each
    adds at most one entry per queue, and the words of a run of beats exceed its beats by at
    most one (the carried partial word), so in-flight + words <= depth - margin + 4.  The
    length and status queues are written before a beat retires (at the accumulator's first
    stage, at the front end's output): for them (beats not yet past that point) + entries <=
    depth - margin + 3.  With those, no queue is written while full and the pending word never
    has to hold two.  k-induction needs a depth above ``lat`` (the shadow line refills) plus
    the accumulator's stages (so that the word counts in flight come from its fill register
    rather than from arbitrary pipeline contents)."""
    gate_fire, gate_retire = tap(d, "gate", "fire"), tap(d, "gate", "retire")
    inflight = tap(d, "gate", "inflight")
    line = _shadow_line(m, gate_fire, lat, "fire")
    words_q, lens_q = tap(d, "accum", "words_queued"), tap(d, "accum", "lens_queued")
    pend_v = tap(d, "accum", "pend_v")
    w_ent, w_en, w_rdy = _lutqueue_entries(d, "accum/wq")
    l_ent, l_en, l_rdy = _lutqueue_entries(d, "accum/lq")
    top = depth - margin
    from ..wordpack import BitAccumulator
    f_at = lat - BitAccumulator.latency_of(p) + 1   # shadow stage of a beat in the accumulator's first stage
    m.d.comb += [
        Assert(gate_retire == line[-1], "credit: a retire not L clocks after its beat (latency changed?)"),
        Assert(inflight == _popcount(line), "credit: in-flight count != beats in the pipeline"),
        Assert(words_q == w_ent + pend_v, "credit: word count != word queue + pending word"),
        Assert(lens_q == l_ent, "credit: length count != length queue"),
        Assert(inflight + words_q <= top + 4, "credit: in-flight + words above depth - margin + 4"),
        # a block's length is written at the accumulator's first stage, before its beat retires
        Assert(~l_en | line[f_at], "credit: a length written with no beat at the accumulator's first stage"),
        Assert(_popcount(line[:f_at + 1]) + lens_q <= top + 3,
               "credit: beats before the accumulator + lengths above depth - margin + 3"),
        Assert(~w_en | w_rdy, "word queue overflow (written while full)"),
        Assert(~l_en | l_rdy, "length queue overflow (written while full)"),
        Assert(~tap(d, "accum", "overflow"), "word/length queue or pending word overflow"),
    ]
    if front_lat is not None:
        s_q = tap(d, "status_q", "queued")
        hf_v = tap(d, "status_q", "hf_v")
        f_ent, f_en, f_rdy = _lutqueue_entries(d, "status_q/fq")
        before = _popcount(line[:front_lat])
        m.d.comb += [
            Assert(tap(d, "status_q", "beat__valid") == line[front_lat - 1],
                   "credit: a front-end beat not at its latency (latency changed?)"),
            Assert(s_q == f_ent + hf_v, "credit: status count != status queue + head"),
            Assert(before + s_q <= top + 3, "credit: beats before the front end + status entries too many"),
            Assert(~f_en | f_rdy, "status queue overflow (written while full)"),
        ]
        if status_words:
            _status_words_invariant(m, d, p, lat - front_lat, s_q)


def _bit_count(d: Fragment, path: str, bit: int, invert: bool = False):
    """How many entries held by the :class:`sfp.hw.wordpack.LutQueue` at ``path`` (its storage
    and its output register) have data bit ``bit`` set (clear, ``invert``)."""
    return _popcount([held & (~x[bit] if invert else x[bit]) for held, x in _lutqueue_contents(d, path)])


def _status_words_invariant(m: Module, d: Fragment, p: HwParams, back_lat: int, s_q):
    """The plain packer's ``StatusQueue`` word-count queue ``wq`` never overflows, unbounded.

    Follow one accepted (not refused) tensor: its front half enters ``fq`` with its last beat
    at the front end's output, that beat retires from the accumulator ``back_lat`` clocks later
    writing the tensor's last word (``last`` set) into the word queue or the pending word, the
    word is taken on ``m_axis`` and its count queued in ``wq``, moved to the head register
    ``hw``, and joined with the front half.  So, at every clock,

        (accepted last beats in the back end: a shadow line of the front end's output)
      + (pending word with ``last``) + (words with ``last`` in the word queue)
      + (entries of ``wq``) + ``hw_v``
      = (front halves of accepted tensors in ``fq`` and in the head register ``hf``)
      <= ``queued``,

    and the credit invariants bound ``queued``.  The ``last`` bits in the word queue and the
    ``unsupported`` bits in ``fq`` are counted in the queues' storage (:func:`_bit_count`).  A
    tensor end that wrote no last word, or a word count queued for a refused tensor, breaks the
    equation."""
    from amaranth.lib import data as _data

    from ..packer import StatusQueue, field_beat_layout
    from ..wordpack import word_layout

    beat = _data.View(field_beat_layout(p), tap(d, "status_q", "beat__payload"))
    ends = _shadow_line(m, tap(d, "status_q", "beat__valid") & beat.last & ~beat.drop, back_lat, "tend")
    last_bit = word_layout(p)["last"].offset
    uns_bit = StatusQueue.FRONT["unsupported"].offset
    pend_v = tap(d, "accum", "pend_v")
    pend_last = tap(d, "accum", "pend")[last_bit]
    hf_uns = tap(d, "status_q", "hf")[uns_bit]
    hf_v, hw_v = tap(d, "status_q", "hf_v"), tap(d, "status_q", "hw_v")
    cnt_ent, cnt_en, cnt_rdy = _lutqueue_entries(d, "status_q/wq")
    lasts = _popcount(ends) + (pend_v & pend_last) + _bit_count(d, "accum/wq", last_bit)
    accepted = _bit_count(d, "status_q/fq", uns_bit, invert=True) + (hf_v & ~hf_uns)
    m.d.comb += [
        Assert(lasts + cnt_ent + hw_v == accepted,
               "status words: tensor ends in the back end + counts queued != accepted front halves"),
        Assert(accepted <= s_q, "status words: accepted front halves above the status count"),
        Assert(~cnt_en | cnt_rdy, "status word-count queue overflow (written while full)"),
    ]
    _front_tensor_invariant(m, d, p)


def _front_tensor_invariant(m: Module, d: Fragment, p: HwParams):
    """The front end's per-tensor registers agree: once a tensor has been open at the input for
    four clocks (so its first beat has passed the refusal stage), ``tdrop`` is exactly the refusal
    of the settings held in ``tcfg``.  Reachable states satisfy it by construction; k-induction
    needs it said, or it starts inside an accepted tensor whose held settings would be refused
    (say ``exp_bits`` = 0, a record width of 0): its last beat then writes no word, and the
    status equation above breaks in a state no reset can reach."""
    from amaranth.lib import data as _data

    from ..lane import cfg_checks
    from ..params import config_layout

    in_tensor = tap(d, "front", "in_tensor")
    tcfg = _data.View(config_layout(), tap(d, "front", "tcfg"))
    tdrop = tap(d, "front", "tdrop")
    held = in_tensor & Cat(*_shadow_line(m, in_tensor, 3, "in_tensor")).all()    # now and 1..3 clocks ago
    ok = Cat(*cfg_checks(p, tcfg)).all()
    m.d.comb += Assert(~held | (tdrop == ~ok), "front end: tdrop is not the refusal of the held tcfg")


def _gecko_packer_credit(m: Module, d: Fragment, depths, margin: int, front_lat: int, rec_lat: int):
    """The Gecko build's credit invariants: the gate covers the Gecko back end's input queue
    (``gecko/q``, written as a beat leaves the record former: a beat retires there) and the
    status queue (written at the front end's output), each with its own depth; only names of
    :class:`sfp.hw.packer.Packer` and the back end's input queue are tapped, none of the
    Gecko stage's."""
    gate_fire, gate_retire = tap(d, "gate", "fire"), tap(d, "gate", "retire")
    inflight = tap(d, "gate", "inflight")
    line = _shadow_line(m, gate_fire, front_lat + rec_lat, "fire")
    g_n = tap(d, "gecko", "in_queued")
    g_ent, g_en, g_rdy = _lutqueue_entries(d, "gecko/q")
    s_q = tap(d, "status_q", "queued")
    hf_v = tap(d, "status_q", "hf_v")
    f_ent, f_en, f_rdy = _lutqueue_entries(d, "status_q/fq")
    top_g, top_s = depths[0] - margin, depths[1] - margin
    before = _popcount(line[:front_lat])
    m.d.comb += [
        Assert(gate_retire == line[-1], "credit: a retire not L clocks after its beat (latency changed?)"),
        Assert(tap(d, "status_q", "beat__valid") == line[front_lat - 1],
               "credit: a front-end beat not at its latency (latency changed?)"),
        Assert(inflight == _popcount(line), "credit: in-flight count != beats in the pipeline"),
        Assert(g_n == g_ent, "credit: Gecko input queue count != its entries"),
        Assert(s_q == f_ent + hf_v, "credit: status count != status queue + head"),
        Assert(inflight + g_n <= top_g + 3, "credit: in-flight + Gecko input queue above depth - margin + 3"),
        Assert(before + s_q <= top_s + 3, "credit: beats before the front end + status entries too many"),
        Assert(~g_en | g_rdy, "Gecko input queue overflow (written while full)"),
        Assert(~f_en | f_rdy, "status queue overflow (written while full)"),
    ]


def _gecko_backend_credit(m: Module, d: Fragment, p: HwParams, path: str = "gecko", margin: int | None = None):
    """The credit invariants of :class:`sfp.hw.gecko_stage.GeckoWordPacker`'s own gate (``d``: the
    fragment that holds ``path``, the back end): its KQ interleaved word queues and its length
    queue never overflow, unbounded.

    The gate counts the rows the :class:`GeckoStage` issues (``gate.fire``); a row leaves the
    pipeline (``gate.retire``, the accumulator's accumulate stage) exactly ``GeckoStage.latency +
    BitAccumulator.latency_of(p) - 1`` clocks later (a shadow line, as in :func:`unpacker_ofifo`).
    A row completes at most K words (``BitAccumulator.words_per_beat``) and one block length.
    With S = K * in-flight + words queued: a retire changes S by (its words - K) <= 0, a pop
    lowers it, an issue raises it by K; the gate issues only if S was <= depth - K * margin two
    clocks before (its ``total`` and ``ready`` are registers), so S <= depth - K * margin + 3K.
    The word queues are written round robin from ``wsel`` and read round robin from ``rsel``, so
    each bank holds its share of the words queued (asserted exactly: bank q holds the words j <
    count with (rsel + j) mod KQ = q, and wsel = rsel + count mod KQ), which keeps every bank
    below its depth.  The length queue is written at the accumulator's first stage, as in the
    plain packer (:func:`_packer_credit`)."""
    from ..wordpack import BitAccumulator, CreditGate

    g = d.find_subfragment(path)
    acc_k = BitAccumulator.words_per_beat(p, _gecko_chunk(p))
    kq = 1 << (acc_k - 1).bit_length()
    gs_lat = _gecko_stage_latency(p)
    lat = gs_lat + BitAccumulator.latency_of(p) - 1
    fire, retire, inflight = tap(g, "gate", "fire"), tap(g, "gate", "retire"), tap(g, "gate", "inflight")
    line = _shadow_line(m, fire, lat, "row")
    words_q, lens_q = tap(g, "accum", "words_queued"), tap(g, "accum", "lens_queued")
    banks = [_lutqueue_entries(g, f"accum/wq{q}") for q in range(kq)]
    l_ent, l_en, l_rdy = _lutqueue_entries(g, "accum/lq")
    depth = _gecko_backend_depth(p)
    marg = CreditGate.MARGIN if margin is None else margin
    top_w, top_l = depth - acc_k * marg, depth - marg
    f_at = gs_lat                            # shadow stage of a row in the accumulator's first stage
    m.d.comb += [
        Assert(retire == line[-1], "gecko credit: a retire not L clocks after its row (latency changed?)"),
        Assert(inflight == _popcount(line), "gecko credit: in-flight count != rows in the pipeline"),
        Assert(words_q == _popcount([b[0] for b in banks]), "gecko credit: word count != the banks' entries"),
        Assert(lens_q == l_ent, "gecko credit: length count != length queue"),
        Assert(acc_k * inflight + words_q <= top_w + 3 * acc_k,
               "gecko credit: K * in-flight + words above depth - K * margin + 3K"),
        Assert(~l_en | line[f_at], "gecko credit: a length written with no row at the accumulator's first stage"),
        Assert(_popcount(line[:f_at + 1]) + lens_q <= top_l + 3,
               "gecko credit: rows before the accumulator + lengths above depth - margin + 3"),
        Assert(~l_en | l_rdy, "gecko length queue overflow (written while full)"),
    ]
    for q, (_ent, w_en, w_rdy) in enumerate(banks):
        m.d.comb += Assert(~w_en | w_rdy, f"gecko word queue {q} overflow (written while full)")
    if kq > 1:
        lg = (kq - 1).bit_length()
        wsel, rsel = tap(g, "accum", "wsel"), tap(g, "accum", "rsel")
        m.d.comb += Assert(wsel == (rsel + words_q)[:lg], "gecko credit: wsel != rsel + words queued (mod KQ)")
        for q, (ent, _w_en, _w_rdy) in enumerate(banks):
            o = Signal(lg, name=f"bank{q}_off")
            m.d.comb += o.eq((q + kq - rsel)[:lg])
            share = Mux(words_q > o, (words_q - o + (kq - 1)) >> lg, 0)
            m.d.comb += Assert(ent == share, f"gecko credit: word queue {q} does not hold its round-robin share")


def _gecko_chunk(p: HwParams) -> int:
    from ..gecko_stage import gecko_chunk_bits
    return gecko_chunk_bits(p)


def _gecko_concat_latency(p: HwParams) -> int:
    from ..gecko_common import SLICE
    from ..wordpack import RecordConcat
    return RecordConcat.latency_of(p, SLICE)


def _gecko_stage_latency(p: HwParams) -> int:
    """``GeckoStage.latency`` as built (the instance is only asked, never elaborated)."""
    from ..gecko_stage import GeckoStage
    gs = GeckoStage(p, _gecko_concat_latency(p))
    gs._MustUse__silence = True
    return gs.latency


def _gecko_backend_depth(p: HwParams) -> int:
    """The depth GeckoWordPacker gives its word queues (all banks) and its length queue."""
    from ..gecko_common import SLICE
    from ..wordpack import BitAccumulator, CreditGate, queue_depth
    k = BitAccumulator.words_per_beat(p, _gecko_chunk(p))
    flight = 1 + _gecko_stage_latency(p) + BitAccumulator.latency_of(p) + 2
    return queue_depth(k * (flight + CreditGate.MARGIN) + p.block // SLICE)


def packer_credit(p: HwParams, unit: str = "packer", depth: int | None = None, margin: int | None = None,
                  backend: bool = False, status_words: bool = False):
    """The plain packer's credit-gated queues never overflow, unbounded (k-induction), for any
    cfg (refusals included), any AXI4-Stream input, any sinks (see :func:`_packer_credit`).
    ``unit="wordpacker"``: :class:`WordPacker` alone (records in).  ``depth``/``margin`` build a
    variant (a subclass) with another queue depth or credit margin.  ``backend=True`` (Gecko
    builds) also states the Gecko back end's own credit invariants (:func:`_gecko_backend_credit`).
    ``status_words=True`` (plain builds) adds the invariant of the status queue's word-count
    queue (:func:`_status_words_invariant`; a separate proof: it counts inside two queues)."""
    from ..lane import DECODE_LATENCY, quantizer_latency
    from ..packer import Packer
    from ..wordpack import BitAccumulator, CreditGate, RecordConcat, WordPacker, queue_depth

    base = WordPacker if unit == "wordpacker" else Packer
    cls = base
    if depth is not None or margin is not None:
        cls = type(base.__name__ + "Variant", (base,), {"QUEUE_DEPTH": depth, "GATE_MARGIN": margin})
    m = Module()
    m.submodules.dut = dut = cls(p)
    _no_reset(m)
    ib = dut.s_axis if unit != "wordpacker" else dut.i
    stream_rules(m, ib.valid, ib.ready, ib.payload, role="assume", name="in")
    acc_lat = BitAccumulator.latency_of(p)
    cat_lat = RecordConcat.latency_of(p)
    if unit == "wordpacker":
        m.d.comb += [Assume(ib.payload.count <= p.lanes), Assume(ib.payload.v <= p.max_value_bits)]
        qd = depth or queue_depth(1 + cat_lat + acc_lat)
        lat, front = cat_lat + acc_lat, None
    else:
        qd = depth or queue_depth(dut.latency)
        # the front end registers the accepted beat twice before its decode and quantizer stages
        lat = dut.latency
        front = 2 + DECODE_LATENCY + quantizer_latency(p)
    frag = Fragment.get(m, "formal")
    d = frag.find_subfragment("dut")
    m2 = Module()
    if p.gecko:
        from ..packer import RecordFormer
        _gecko_packer_credit(m2, d, dut.queue_depths, CreditGate.MARGIN if margin is None else margin, front,
                             RecordFormer.latency)
        if backend:                           # the Gecko back end's own gate and queues as well
            _gecko_backend_credit(m2, d, p)
        frag.add_subfragment(Fragment.get(m2, "formal"), "credit")
        return frag, {"unit": "Packer (Gecko build; credit-gated queues)", "params": p}
    _packer_credit(m2, d, p, qd, CreditGate.MARGIN if margin is None else margin, lat, front, status_words)
    frag.add_subfragment(Fragment.get(m2, "formal"), "credit")
    return frag, {"unit": base.__name__ + " (credit-gated queues" + (", status word counts)" if status_words
                                                                     else ")"), "params": p}


# -- covers --------------------------------------------------------------------------


def packer_cover(p: HwParams):
    """Reachability: a block end (an m_len entry), a tensor end (m_axis last), a refusal."""
    from ..packer import Packer

    m = Module()
    m.submodules.dut = dut = Packer(p)
    _no_reset(m)
    stream_rules(m, dut.s_axis.valid, dut.s_axis.ready, dut.s_axis.payload, role="assume", name="s_axis")
    ml, ma = dut.m_len, dut.m_axis
    m.d.comb += [
        Cover(ml.valid & ml.ready & ~ml.payload.last, "block end inside a tensor"),
        Cover(ma.valid & ma.ready & ma.payload.last, "tensor end"),
        Cover(dut.status.unsupported, "refusal"),
    ]
    return Fragment.get(m, "formal"), {"unit": "Packer", "params": p}


def unpacker_cover(p: HwParams):
    """Reachability: a tensor end (m_axis last), a refusal, an error flag (if the unit has one)."""
    from ..unpacker import Unpacker

    m = Module()
    m.submodules.dut = dut = Unpacker(p)
    _no_reset(m)
    stream_rules(m, dut.s_axis.valid, dut.s_axis.ready, dut.s_axis.payload, role="assume", name="s_axis")
    ma = dut.m_axis
    m.d.comb += [
        Cover(ma.valid & ma.ready & ma.payload.last, "tensor end"),
        Cover(dut.status.unsupported, "refusal"),
    ]
    if "m_status" in dut.signature.members:
        st = dut.m_status
        fire = st.valid & st.ready
        m.d.comb += [
            Cover(fire & st.payload.unsupported, "refusal reported on m_status"),
            Cover(fire & st.payload.length_error, "length error reported"),
        ]
        if p.gecko:                           # only a Gecko-coded block can be corrupt
            m.d.comb += Cover(fire & st.payload.corrupt, "corrupt stream reported")
    return Fragment.get(m, "formal"), {"unit": "Unpacker", "params": p}


# -- round trip: packer then unpacker -----------------------------------------------


def _held_cfg(m: Module, name: str = "cfg"):
    """A free ``cfg`` that the solver picks once and holds (Amaranth 0.5 has no AnyConst)."""
    from ..params import config_layout

    cfg = Signal(config_layout(), name=name)
    prev = Signal(config_layout(), name=f"{name}_prev")
    started = Signal(name=f"{name}_started")
    m.d.sync += [started.eq(1), prev.eq(cfg)]
    with m.If(started):
        m.d.comb += Assume(cfg.as_value() == prev.as_value())
    return cfg


def _supported(m: Module, p: HwParams, cfg):
    from ..lane import cfg_supported

    m.d.comb += Assume(cfg_supported(p, cfg))


def roundtrip(p: HwParams, length: int = 5, tensors: int = 2, cover: bool = False, fixed: bool = True,
              lengths: tuple | None = None):
    """Packer -> Unpacker (words straight across) for symbolic values and a symbolic, supported,
    held cfg: tensors of ``lengths`` values (default ``tensors`` tensors of ``length``) back to
    back come out as exactly the lanes' quantized values (``Dequantizer(Quantizer(x))`` of the
    same cfg, computed beside the units), with ``keep``/``last`` as specified and no extra
    beat.  With ``cover=True`` the proof instead covers the last beat of the last tensor coming
    out (non-vacuity, and the depth the bounded check needs: the bounded check covers the
    whole run when its depth exceeds the step of that cover).  ``fixed=True`` fixes the cfg at
    m = 3, e = 4, sign, exp_base 120, specials, rne (the values stay symbolic): with a symbolic
    cfg the pipelined units are too slow for the solver at the depth needed.  The packer does
    not read ``cfg.length`` (``last`` ends a tensor); the unpacker's ``cfg.length`` is the
    length of the tensor whose first word it is offered."""
    from amaranth.lib import data

    from ..lane import Dequantizer, Quantizer
    from ..packer import Packer
    from ..unpacker import Unpacker

    n, sw = p.lanes, p.src.width
    lengths = tuple(lengths) if lengths else (length,) * tensors
    ks = [-(-ln // n) for ln in lengths]                  # beats per tensor
    tails = [ln - (k - 1) * n for ln, k in zip(lengths, ks)]
    total = sum(ks)
    nt = len(lengths)
    m = Module()
    m.submodules.pk = pk = Packer(p)
    m.submodules.up = up = Unpacker(p)
    _no_reset(m)
    cfg = _held_cfg(m)
    _supported(m, p, cfg)
    m.d.comb += [Assume(cfg.length == lengths[0]), Assume(cfg.gecko == 0), pk.cfg.eq(cfg)]
    # the unpacker's cfg: the held one, with the length of the tensor at its input
    ut = Signal(range(nt + 1))                # tensors whose last word the unpacker took
    ulen = lengths[-1]
    for i in reversed(range(nt - 1)):
        ulen = Mux(ut == i, lengths[i], ulen)
    m.d.comb += [up.cfg.eq(cfg), up.cfg.length.eq(ulen)]
    with m.If(up.s_axis.valid & up.s_axis.ready & up.s_axis.payload.last):
        m.d.sync += ut.eq(ut + 1)
    if fixed:
        _fix_cfg(m, cfg, man_bits=min(3, p.max_man_bits), exp_bits=min(4, p.max_exp_bits), sign=1,
                 exp_base=120, specials=1, rounding=0)
    # packer words straight into the unpacker; the block index is not needed (plain layout)
    m.d.comb += [
        up.s_axis.payload.eq(pk.m_axis.payload),
        up.s_axis.valid.eq(pk.m_axis.valid),
        pk.m_axis.ready.eq(up.s_axis.ready),
    ]
    sa = pk.s_axis
    stream_rules(m, sa.valid, sa.ready, sa.payload, role="assume", name="s_axis")
    beat = Signal(range(total + 1))           # beats accepted so far
    inb = Signal(range(max(ks)))              # beat within its tensor
    ti = Signal(range(nt + 1))                # tensor of the next input beat
    k_now, tail_now = ks[-1], tails[-1]
    for i in reversed(range(nt - 1)):
        k_now, tail_now = Mux(ti == i, ks[i], k_now), Mux(ti == i, tails[i], tail_now)
    fire = sa.valid & sa.ready
    is_last = inb == k_now - 1
    m.d.comb += [
        Assume(sa.payload.last == is_last),
        Assume(~sa.valid | (beat < total)),
    ]
    with m.If(sa.payload.last):
        m.d.comb += Assume(sa.payload.keep == (1 << tail_now) - 1)
    with m.If(fire):
        m.d.sync += [beat.eq(beat + 1), inb.eq(Mux(is_last, 0, inb + 1)), ti.eq(ti + is_last)]

    # the scoreboard: each accepted beat's expected output beat
    layout = data.StructLayout({"data": n * sw, "keep": n, "last": 1})
    board = [Signal(layout, name=f"expect{i}") for i in range(total)]
    exp_data = []
    for j in range(n):
        q, dq = Quantizer(p), Dequantizer(p)
        m.submodules[f"q{j}"], m.submodules[f"dq{j}"] = q, dq
        m.d.comb += [q.value.eq(sa.payload.data[j]), q.cfg.eq(cfg), q.rnd.eq(0),
                     dq.fields.eq(q.fields), dq.cfg.eq(cfg)]
        lane_on = ~sa.payload.last | (j < tail_now)
        exp_data.append(Mux(lane_on, dq.value, 0))
    with m.If(fire):
        for i in range(total):
            with m.If(beat == i):
                m.d.sync += [board[i].data.eq(Cat(*exp_data)),
                             board[i].keep.eq(Mux(sa.payload.last, (1 << tail_now) - 1, (1 << n) - 1)),
                             board[i].last.eq(sa.payload.last)]
    out = Signal(range(total + 1))            # beats out so far
    ma = up.m_axis
    ofire = ma.valid & ma.ready
    with m.If(ofire):
        m.d.sync += out.eq(out + 1)
        m.d.comb += Assert(out < beat, "an output beat with no input beat behind it")
        for i in range(total):
            with m.If(out == i):
                m.d.comb += [
                    Assert(ma.payload.data.as_value() == board[i].data, "values differ"),
                    Assert(ma.payload.keep == board[i].keep, "keep differs"),
                    Assert(ma.payload.last == board[i].last, "last differs"),
                ]
    if cover:
        m.d.comb += Cover(ofire & (out == total - 1), "the last beat of the last tensor out")
    return Fragment.get(m, "formal"), {"unit": "Packer+Unpacker", "params": p}


# -- the unpacker on arbitrary words: bounded liveness, completion, error reporting ------------


def _plain_words(m: Module, p: HwParams, length, v, max_len: int):
    """The plain image's word count (sum of L_b) for ``length`` values of ``v`` bits (length <= max_len)."""
    lg_w = p.word.bit_length() - 1
    total = 0
    for b in range(-(-max_len // p.block)):
        cnt = Signal(range(p.block + 1), name=f"blk{b}_cnt")
        rest = length - b * p.block
        m.d.comb += cnt.eq(Mux(length <= b * p.block, 0, Mux(rest >= p.block, p.block, rest)))
        total = total + ((cnt * v + (p.word - 1)) >> lg_w)
    return total


def unpacker_live(p: HwParams, max_len: int = 8, stall: int = 12, refused: bool = False, fixed: tuple = (7, 8)):
    """The unpacker fed arbitrary words (any data, ``tlast`` anywhere) and arbitrary supported cfgs
    with ``1 <= length <= max_len``, its input always valid and its output always ready:

    * it takes a word again within ``stall`` clocks (no deadlock);
    * each tensor's output is ``ceil(length/N)`` beats with ``last`` exactly on the final one
      (checked against the lengths recorded at each tensor's first word, in order);
    * if the unit has ``m_status``: an entry per tensor, and ``length_error`` exactly when the
      words up to ``tlast`` are not the format's count (sum of L_b) for that cfg.

    ``refused=True`` also lets the cfg be one the build refuses (it must then still complete).
    ``fixed=(m, e)`` holds the container settings at m, e with the sign (records of 1 + e + m
    bits) and leaves only ``length`` (and the words) free: with symbolic widths the solver is
    much slower.  ``fixed=None`` leaves them free."""
    from ..unpacker import Unpacker

    n = p.lanes
    m = Module()
    m.submodules.dut = dut = Unpacker(p)
    _no_reset(m)
    cfg = dut.cfg
    m.d.comb += [Assume(dut.s_axis.valid), Assume(dut.m_axis.ready),
                 Assume(cfg.length >= 1), Assume(cfg.length <= max_len)]
    if not refused:
        _supported(m, p, cfg)
    if fixed and not refused:
        _fix_cfg(m, cfg, man_bits=fixed[0], exp_bits=fixed[1], sign=1, gecko=0)
    if "m_status" in dut.signature.members:
        m.d.comb += Assume(dut.m_status.ready)

    # no deadlock: s_axis.ready is never low for more than `stall` clocks in a row
    wait = Signal(range(stall + 2))
    sa = dut.s_axis
    fire = sa.valid & sa.ready
    m.d.sync += wait.eq(Mux(fire, 0, Mux(wait == stall + 1, wait, wait + 1)))
    m.d.comb += Assert(wait <= stall, "s_axis not ready for too long (deadlock)")

    # per tensor, recorded at its first word: expected beats (and words, for the status check)
    from ..lane import cfg_supported
    qd = 16
    beats_q = [Signal(range(max_len + 1), name=f"beats_q{i}") for i in range(qd)]
    words_q = [Signal(16, name=f"words_q{i}") for i in range(qd)]
    ok_q = [Signal(name=f"ok_q{i}") for i in range(qd)]
    wr = Signal(range(qd))
    rd = Signal(range(qd))
    in_t = Signal()                           # inside a tensor (a first word was taken)
    consumed = Signal(16)                     # words taken of the current input tensor
    v = Signal(range(32))
    m.d.comb += v.eq(cfg.sign + cfg.exp_bits + cfg.man_bits)
    st_rd = Signal(range(qd))
    m.d.comb += Assert(((wr - rd) & (qd - 1)) < qd - 1, "harness: too many tensors in flight")
    wl = Signal(range(qd))                    # tensors whose last word was taken
    with m.If(fire):
        m.d.sync += in_t.eq(~sa.payload.last)
        with m.If(~in_t):
            m.d.sync += wr.eq(wr + 1)
            for i in range(qd):
                with m.If(wr == i):
                    m.d.sync += [beats_q[i].eq((cfg.length + (n - 1)) >> (n.bit_length() - 1)),
                                 ok_q[i].eq(cfg_supported(p, cfg))]
        with m.If(sa.payload.last):
            m.d.sync += [wl.eq(wl + 1), consumed.eq(0)]
            for i in range(qd):
                with m.If(wl == i):
                    m.d.sync += words_q[i].eq(Mux(in_t, consumed, 0) + 1)
        with m.Else():
            m.d.sync += consumed.eq(Mux(in_t, consumed, 0) + 1)

    ma = dut.m_axis
    ofire = ma.valid & ma.ready
    ob = Signal(range(max_len + 1))           # beat within the output tensor
    head_beats = Signal(range(max_len + 1))
    for i in range(qd):
        with m.If(rd == i):
            m.d.comb += head_beats.eq(beats_q[i])
    with m.If(ofire):
        m.d.comb += [
            Assert(rd != wr, "an output beat for a tensor not yet started"),
            Assert(ma.payload.last == (ob == head_beats - 1), "last not on the tensor's ceil(length/N)-th beat"),
        ]
        with m.If(ma.payload.last):
            m.d.sync += [ob.eq(0), rd.eq(rd + 1)]
        with m.Else():
            m.d.sync += ob.eq(ob + 1)
    if "m_status" in dut.signature.members:
        st = dut.m_status
        # expected words of the tensor whose status comes out: recorded per tensor
        exp_words_q = [Signal(16, name=f"exp_words_q{i}") for i in range(qd)]
        with m.If(fire & ~in_t):
            for i in range(qd):
                with m.If(wr == i):
                    m.d.sync += exp_words_q[i].eq(_plain_words(m, p, cfg.length, v, max_len))
        with m.If(st.valid & st.ready):
            m.d.sync += st_rd.eq(st_rd + 1)
            for i in range(qd):
                with m.If(st_rd == i):
                    m.d.comb += Assert(st_rd != wl, "a status entry for a tensor not yet ended")
                    with m.If(ok_q[i]):
                        m.d.comb += Assert(st.payload.length_error == (words_q[i] != exp_words_q[i]),
                                           "length_error differs from (words != sum of L_b)")
                    with m.Else():
                        m.d.comb += Assert(st.payload.unsupported, "refused tensor without unsupported")
    return Fragment.get(m, "formal"), {"unit": "Unpacker", "params": p}


def unpacker_stall(p: HwParams, bound: int = 12, cover: bool = False, status: bool = True,
                   invariants: bool = False, stall_check: bool = True, credits: bool = True):
    """No deadlock, as a safety property: with ``m_axis.ready`` high and a word offered on
    ``s_axis`` (and, Gecko, an entry offered on ``s_len``), the unpacker makes progress at least
    once every ``bound`` + 1 clocks: it takes a word, emits a beat, or (``status=True``) finishes
    a tensor (writes its ``m_status`` entry: a tensor of length 0 has no beat, so a run of them
    buffered in the input FIFOs is progress without beats).  A harness counter counts the
    consecutive clocks in which the offer stands and nothing of that happens (any other clock
    clears it); it must stay <= ``bound``.  Any cfg (refusals and length 0 included), any words
    and ``tlast``, any ``m_status`` sink.  ``cover=True`` instead covers each value 1..``bound``
    of the counter (that the bound is reached: it is tight).

    Run as a bounded check.  ``invariants=True`` adds :func:`_stall_invariants` (asserted) for a
    k-induction attempt; those invariants are proved inductive on their own
    (``stall_check=False``, ``credits=False``: ``unpacker_path_inv_n2``), but the stall bound's
    own induction (depth >= bound + 2, since the counter starts anywhere <= bound) did not finish
    in the time available (docs/verification.md).  The bound 16 for N = 2, B = 4 is
    measured, not derived: a cover reaches a stall of 16 clocks in step 23 (the first tensor's
    first beat comes 22 clocks after its first word; the input closes after 6 words, when the
    descriptor FIFO holds 3 one-word tensors) and no stall of 17 through step 34."""
    from ..unpacker import Unpacker

    m = Module()
    m.submodules.dut = dut = Unpacker(p)
    _no_reset(m)
    sa, ma = dut.s_axis, dut.m_axis
    stream_rules(m, sa.valid, sa.ready, sa.payload, role="assume", name="s_axis")
    offer = sa.valid & ma.ready
    if p.gecko:
        stream_rules(m, dut.s_len.valid, dut.s_len.ready, dut.s_len.payload, role="assume", name="s_len")
        offer = offer & dut.s_len.valid
    frag = Fragment.get(m, "formal")
    progress = (sa.valid & sa.ready) | (ma.valid & ma.ready)
    if status:
        progress = progress | tap(frag.find_subfragment("dut"), "sfifo", "w_en")
    m2 = Module()
    cap = bound + 5
    stall = Signal(range(cap + 1), name="stall")
    m2.d.sync += stall.eq(Mux(offer & ~progress, Mux(stall == cap, cap, stall + 1), 0))
    if cover:
        for t in range(1, bound + 1):
            m2.d.comb += Cover(stall == t, f"a stall of {t} clocks")
    elif stall_check:
        m2.d.comb += Assert(stall <= bound, f"more than {bound} clocks with no word taken, no beat out, "
                                            f"no tensor finished")
    if invariants:
        _stall_invariants(m2, frag, p, credits=credits)
    frag.add_subfragment(Fragment.get(m2, "formal"), "stall")
    return frag, {"unit": "Unpacker (stall bound)", "params": p}


def _stall_invariants(m2: Module, frag: Fragment, p: HwParams, credits: bool = True):
    """Invariants of the plain unpacker's word and command paths, asserted (never assumed), for the
    k-induction of the stall bound (:func:`unpacker_stall`, ``invariants=True``).  Proved inductive
    on their own (``unpacker_path_inv_n2``: prove, depth 4, without the credit part, which
    ``unpacker_ofifo_n2`` proves); each is true in every reachable state because:

    * word ring (:func:`_ring_invariants`): ``ge1``/``ge2`` are registered from the next level,
      the pointers move with the level, and no underflow/overflow, given the command contract:
    * every command queued in ``cfifo`` (read from its storage, :func:`_fifo_entries`), held
      (``cur``) or prefetched (``nxt``) is one the sequencer can make: ``pops <= 1 + need2``
      (``pops`` is ``1 + need2`` at a block end, else ``off >= lim`` <= 1); ``nobeat`` only on a
      final, refused command (length 0: ``cnt = -1``, ``ok = 0``); a refused command pops nothing
      and has no ``need2`` (both masked by ``refused``).  k-induction otherwise starts from a
      queue holding a command with ``pops = 2, need2 = 0``, which underflows the ring;
    * tensors: the tensors whose ``last`` word the cutter has not popped (``last`` bits in
      ``wfifo``'s entries and the ring's held slots, plus one while ``first`` is low), plus the
      cutter's tensor once its last word is popped (``ended``), equal the tensors still in the
      descriptor/command path (``dfifo`` entries, sequencer P1, P2, the beat loop while active,
      final commands in ``cfifo``/``nxt``/``cur``, and the cutter in DRAIN, which has consumed its
      final command but not its words).  Each transfer moves one tensor between two terms (a
      first word pushes a descriptor and, with ``last``, a ``last`` bit; the cutter's ``done``
      pops the last word as it retires the final command or leaves DRAIN).  Without it the
      induction starts from, e.g., four descriptors and an empty word path with the input closed
      (``s_axis.ready`` low): no progress ever;
    * DRAIN only before the last word is popped (DRAIN is entered when the final beat did not pop
      it, and left when it does);
    * the newest word in the word path (``wfifo``'s tail, else the ring's) carries the ``last``
      bit that set ``first``: no orphan words after a tensor's ``last``;
    * sequencer: P1's ``ok`` implies a non-zero length and ``lm1 = length - 1``; P2 and the beat
      loop's ``nobeat`` is ``length == 0``, and such a tensor has one (final, refused) command;
    * ``wfifo``, ``dfifo`` (:func:`unpacker_inqueues`) and ``cfifo`` (its writer's ready is a
      registered ``level < depth - 1``) are never written while full;
    * ``credits=True``: the output FIFO's credit invariants of :func:`unpacker_ofifo`.
    """
    from ..dequant import DEQUANT_LATENCY
    from ..recsplit import splitter_latency
    from ..unpacker import Unpacker

    d = frag.find_subfragment("dut")
    level, rp, wp = tap(d, "cut", "level"), tap(d, "cut", "rp"), tap(d, "cut", "wp")
    checks = [Assert(tap(d, "cut", n) == (level >= k), f"word ring: {n} disagrees with the level")
              for n, k in (("ge1", 1), ("ge2", 2))]
    checks.append(Assert(((wp - rp) & 3) == (level & 3), "word ring: pointers disagree with the level"))
    # the input queues (unpacker_inqueues)
    for q in ("wfifo", "dfifo"):
        checks.append(Assert(~tap(d, q, "w_en") | tap(d, q, "w_rdy"), f"{q}: written while full"))
    # the output FIFO's credits (unpacker_ofifo)
    if credits:
        lat = DEQUANT_LATENCY + splitter_latency(p)
        issued, inflight = tap(d, "", "issued"), tap(d, "", "inflight")
        w_en, olevel = tap(d, "ofifo", "w_en"), tap(d, "ofifo", "level")
        line = _shadow_line(m2, issued, lat, "issued")
        checks += [
            Assert(w_en == line[-1], "output FIFO: a write not L clocks after an issued beat"),
            Assert(inflight == olevel + _popcount(line), "output FIFO: credits != beats in flight + level"),
            Assert(inflight <= Unpacker.OUT_DEPTH - Unpacker.ROOM_MARGIN + 2, "output FIFO: too many credits"),
        ]
    # the commands queued between the sequencer and the cutter keep the ring's contract
    from amaranth.lib import data as _data

    from ..unpack_seq import beat_cmd_layout
    cl = beat_cmd_layout(p)
    checks.append(Assert(~tap(d, "cfifo", "w_en") | tap(d, "cfifo", "w_rdy"), "cfifo: written while full"))
    cq = [(h, _data.View(cl, x)) for h, x in _fifo_entries(d, "cfifo")]
    for i, (h, c) in enumerate(cq):
        checks.append(Assert(~h | (c.pops <= 1 + c.need2), f"cfifo entry {i} breaks pops <= 1 + need2"))
    checks += _ring_invariants(d, p, "cut")
    # tensors: those whose last word is not yet popped by the cutter (plus the cutter's current
    # one once it is) = those with a descriptor or a final command still to act on
    W = p.word
    wq = _fifo_entries(d, "wfifo")
    ring_last, rp_, lvl = tap(d, "cut", "ring_last"), rp, level
    ring_held_last = [ring_last[j] & (((j - rp_) & 3) < lvl) for j in range(4)]
    first = tap(d, "", "first")
    t_words = _popcount([h & x[W] for h, x in wq]) + _popcount(ring_held_last) + ~first
    cur, nxt = _data.View(cl, tap(d, "cut", "cur")), _data.View(cl, tap(d, "cut", "nxt"))
    cur_v, nxt_v = tap(d, "cut", "cur_v"), tap(d, "cut", "nxt_v")
    state, ended = tap(d, "cut", "state"), tap(d, "cut", "ended")
    p1, p2 = tap(d, "seq", "p1"), tap(d, "seq", "p2")
    t_cmds = (tap(d, "dfifo", "level") + p1[0] + p2[0] + tap(d, "seq", "active")
              + _popcount([h & c.final for h, c in cq]) + (cur_v & cur.final) + (nxt_v & nxt.final)
              + (state == 2))
    n_words, n_cmds = Signal(8, name="inv_tensors_words"), Signal(8, name="inv_tensors_cmds")
    m2.d.comb += [n_words.eq(t_words + ended), n_cmds.eq(t_cmds)]
    checks.append(Assert(n_words == n_cmds, "tensors in the word path != tensors in the command path"))
    checks.append(Assert(~(state == 2) | ~ended, "cutter: DRAIN after the last word was popped"))
    # the newest word in the word path (wfifo's tail, else the ring's) is the last one accepted:
    # its `last` bit is what `first` says (no orphan words after a tensor's `last`)
    wmem = wq[1:]
    wprod, wil = tap(d, "wfifo", "produce"), tap(d, "wfifo", "inner_level")
    newest_last = Mux(lvl != 0, ring_last.bit_select((wp - 1)[:2], 1), 0)
    newest_last = Mux(wq[0][0], wq[0][1][W], newest_last)
    for a, (_h, x) in enumerate(wmem):
        newest_last = Mux((wil != 0) & (wprod == (a + 1) % len(wmem)), x[W], newest_last)
    nonempty = (wil != 0) | wq[0][0] | (lvl != 0)
    checks.append(Assert(~nonempty | (first == newest_last), "the newest word's last bit disagrees with first"))
    # every command (queued, held, prefetched) is one the sequencer can make
    for i, (h, c) in enumerate(cq + [(cur_v, cur), (nxt_v, nxt)]):
        checks += [
            Assert(~h | ~c.nobeat | (c.final & c.refused), f"command {i}: a nobeat command not final and refused"),
            Assert(~h | ~c.refused | ((c.pops == 0) & ~c.need2), f"command {i}: a refused command pops words"),
        ]
    # the sequencer's registers
    act, cnt = tap(d, "seq", "active"), tap(d, "seq", "cnt")
    t = tap(d, "seq", "t")
    checks += [
        Assert(~act | ~_field(t, "nobeat") | (cnt[-1] & ~_field(t, "ok")), "seq: a length-0 tensor with beats"),
        Assert(~act | (_field(t, "nobeat") == (_field(t, "length") == 0)), "seq: nobeat != (length == 0)"),
        Assert(~p2[0] | (_field(p2, "nobeat") == (_field(p2, "length") == 0)), "seq: p2 nobeat != (length == 0)"),
        Assert(~p2[0] | ~_field(p2, "nobeat") | ((_field(p2, "beats_m2") == (1 << 33) - 1) & ~_field(p2, "ok")),
               "seq: p2 of length 0 with beats"),
        Assert(~p1[0] | ~_field(p1, "ok") | (_field(p1, "cfg", "length") != 0), "seq: p1 ok with length 0"),
        Assert(~p1[0] | (_field(p1, "lm1") == (_field(p1, "cfg", "length") - 1)[:32]), "seq: p1 lm1 != length - 1"),
    ]
    m2.d.comb += checks

# -- reset -----------------------------------------------------------------------------


def reset_outputs(p: HwParams, which: str = "packer"):
    """One clock of ``rst`` is a full reset, from any state: in the clock after ``rst`` was high,
    no output stream is valid (``m_axis``, ``m_len``, ``m_status``) and the sticky status flags
    are clear.  ``rst`` is free here (not held low), inputs arbitrary; k-induction, so it holds
    from every state, not only from those reached in a bounded run."""
    from ..packer import Packer
    from ..unpacker import Unpacker

    m = Module()
    m.domains.sync = cd = ClockDomain("sync")
    m.submodules.dut = dut = (Packer if which == "packer" else Unpacker)(p)
    was_rst = Signal()
    m.d.sync += was_rst.eq(cd.rst)
    outs = [dut.m_axis]
    for name in ("m_len", "m_status"):
        if name in dut.signature.members:
            outs.append(getattr(dut, name))
    with m.If(was_rst):
        for s in outs:
            m.d.comb += Assert(~s.valid, "an output valid right after reset")
        m.d.comb += Assert(dut.status.as_value() == 0, "a status flag set right after reset")
    return Fragment.get(m, "formal"), {"unit": which, "params": p}


HARNESSES = {
    "wordpack_fifos": wordpack_fifos,
    "cutter_ring": cutter_ring,
    "regfifo_env": regfifo_env,
    "packer_axis": packer_axis,
    "unpacker_axis": unpacker_axis,
    "packer_cover": packer_cover,
    "unpacker_cover": unpacker_cover,
    "roundtrip": roundtrip,
    "unpacker_live": unpacker_live,
    "reset_outputs": reset_outputs,
    "unpacker_ofifo": unpacker_ofifo,
    "packer_credit": packer_credit,
    "unpacker_inqueues": unpacker_inqueues,
    "unpacker_stall": unpacker_stall,
}
