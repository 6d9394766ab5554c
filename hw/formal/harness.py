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

from amaranth import ClockDomain, Module, Mux, Signal
from amaranth.hdl import Assert, Assume, Cover, Fragment

from ..params import HwParams
from .props import stream_rules, tap

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


def wordpack_fifos(p: HwParams):
    """WordPacker with any input beats and any sinks: its word and length FIFOs never overflow or
    underflow; its two output streams obey AXI4-Stream given an AXI4-Stream input."""
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
    d = frag.find_subfragment("dut")
    frag.add_statements("comb", *_regfifo_invariants(d, "wfifo", WordPacker.WORD_FIFO_DEPTH, "word FIFO"))
    frag.add_statements("comb", *_regfifo_invariants(d, "lfifo", WordPacker.LEN_FIFO_DEPTH, "length FIFO"))
    return frag, {"unit": "WordPacker", "params": p}


def _wordunpack_invariants(d: Fragment):
    """No overflow/underflow of the WordUnpacker's settings queue and word ring (``d``: its fragment)."""
    from ..wordunpack import WordUnpacker

    qn, push, pop = tap(d, "", "qn"), tap(d, "", "q_push"), tap(d, "", "q_pop")
    level, pops, take = tap(d, "", "level"), tap(d, "", "pops"), tap(d, "", "take")
    rp, wp = tap(d, "", "rp"), tap(d, "", "wp")
    ring = WordUnpacker.RING
    return [
        Assert(qn <= 2, "settings queue: count above 2"),
        Assert(~push | (qn < 2), "settings queue: push when full"),
        Assert(~pop | (qn > 0), "settings queue: pop when empty"),
        Assert(level <= ring, "word ring: level above depth"),
        Assert(level + take - pops <= ring, "word ring: overflow"),
        Assert(pops <= level, "word ring: underflow (a word popped that is not there)"),
        Assert(((wp - rp) & (ring - 1)) == (level & (ring - 1)), "word ring: pointers disagree with the level"),
    ]


def wordunpack_queues(p: HwParams):
    """WordUnpacker with any input words and cfg: the settings queue and the 4-word ring never
    overflow or underflow; its output obeys AXI4-Stream given an AXI4-Stream input."""
    from ..wordunpack import WordUnpacker

    m = Module()
    m.submodules.dut = dut = WordUnpacker(p)
    _no_reset(m)
    stream_rules(m, dut.i.valid, dut.i.ready, dut.i.payload, role="assume", name="i")
    stream_rules(m, dut.o.valid, dut.o.ready, dut.o.payload, role="assert", name="o")
    frag = Fragment.get(m, "formal")
    frag.add_statements("comb", *_wordunpack_invariants(frag.find_subfragment("dut")))
    return frag, {"unit": "WordUnpacker", "params": p}


def regfifo_env(p: HwParams, broken: bool = False):
    """A :class:`RegFifo` (depth 4, two write ports) driven by a writer that writes up to two
    entries when ``level <= depth - 2`` (the WordPacker's rule).  ``broken=True`` lets it write
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


def packer_axis(p: HwParams):
    """Packer: m_axis and m_len obey AXI4-Stream for any cfg and any AXI4-Stream input."""
    from ..packer import Packer

    m = Module()
    m.submodules.dut = dut = Packer(p)
    _no_reset(m)
    stream_rules(m, dut.s_axis.valid, dut.s_axis.ready, dut.s_axis.payload, role="assume", name="s_axis")
    stream_rules(m, dut.m_axis.valid, dut.m_axis.ready, dut.m_axis.payload, role="assert", name="m_axis")
    stream_rules(m, dut.m_len.valid, dut.m_len.ready, dut.m_len.payload, role="assert", name="m_len")
    _status_stream(m, dut, "assert")
    frag = Fragment.get(m, "formal")
    if not p.gecko:
        # the queue invariants are true of the design and make the stream rules inductive
        from ..wordpack import WordPacker
        w = frag.find_subfragment("dut").find_subfragment("words")
        frag.add_statements("comb", *_regfifo_invariants(w, "wfifo", WordPacker.WORD_FIFO_DEPTH, "word FIFO"))
        frag.add_statements("comb", *_regfifo_invariants(w, "lfifo", WordPacker.LEN_FIFO_DEPTH, "length FIFO"))
    return frag, {"unit": "Packer", "params": p}


def unpacker_axis(p: HwParams):
    """Unpacker: m_axis obeys AXI4-Stream for any cfg and any AXI4-Stream input words."""
    from ..unpacker import Unpacker

    m = Module()
    m.submodules.dut = dut = Unpacker(p)
    _no_reset(m)
    stream_rules(m, dut.s_axis.valid, dut.s_axis.ready, dut.s_axis.payload, role="assume", name="s_axis")
    if p.gecko:
        stream_rules(m, dut.s_len.valid, dut.s_len.ready, dut.s_len.payload, role="assume", name="s_len")
    stream_rules(m, dut.m_axis.valid, dut.m_axis.ready, dut.m_axis.payload, role="assert", name="m_axis")
    _status_stream(m, dut, "assert")
    # Elaborated for platform "formal": Amaranth's SyncFIFO then asserts its own
    # pointer/level invariants (which also make the stream rules inductive).
    frag = Fragment.get(m, "formal")
    if not p.gecko:
        frag.add_statements("comb", *_wordunpack_invariants(frag.find_subfragment("dut").find_subfragment("words")))
    return frag, {"unit": "Unpacker", "params": p}


def _status_stream(m, dut, role):
    """The per-tensor ``m_status`` stream, when the unit has one (issue #10 item 2)."""
    if "m_status" in dut.signature.members:
        s = dut.m_status
        stream_rules(m, s.valid, s.ready, s.payload, role=role, name="m_status")


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
            Cover(fire & st.payload.corrupt, "corrupt stream reported"),
        ]
    return Fragment.get(m, "formal"), {"unit": "Unpacker", "params": p}


HARNESSES = {
    "wordpack_fifos": wordpack_fifos,
    "wordunpack_queues": wordunpack_queues,
    "regfifo_env": regfifo_env,
    "packer_axis": packer_axis,
    "unpacker_axis": unpacker_axis,
    "packer_cover": packer_cover,
    "unpacker_cover": unpacker_cover,
}
