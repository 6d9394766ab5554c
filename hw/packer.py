"""The packer: N source values per beat in, the tensor's DRAM image (W-bit words) out.

Quantizes each value to its container fields (:class:`sfp.hw.lane.Quantizer`,
format.md 3), forms the ``S<<(e+m) | C<<m | Q`` records (format.md 4.2) and
hands them to :class:`sfp.hw.wordpack.WordPacker`, which builds the words and
the block index (format.md 4.1, 4.3).  Built with ``HwParams.gecko``, the
fields go to :class:`sfp.hw.gecko_pack.GeckoEncoder` instead, which writes the
Gecko layout with the block fallback (format.md 5) for tensors with
``cfg.gecko = 1`` and the plain layout for the others.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import HwParams, config_layout, fields_layout
from .wordpack import WordPacker, _shift_amount, len_layout, word_layout

__all__ = ["Packer", "value_beat_layout", "packer_status_layout"]


def value_beat_layout(p: HwParams) -> data.StructLayout:
    """N source values per beat: ``keep`` is a lane-valid prefix mask, read on the last beat only."""
    return data.StructLayout({
        "data": data.ArrayLayout(p.src.width, p.lanes),
        "keep": p.lanes,
        "last": 1,
    })


def packer_status_layout() -> data.StructLayout:
    return data.StructLayout({"negative": 1, "special": 1, "unsupported": 1})


class Packer(wiring.Component):
    """Quantizes and packs tensors into the container image (plain, or Gecko when built), N values per clock.

    Parameters
    ----------
    p : HwParams
        Source format, lanes N, word W, block B, field maxima, stochastic
        rounding built or not, Gecko built or not.  Without ``p.gecko`` a
        cfg asking for Gecko is refused.  With ``p.gecko`` the group is
        fixed at ``p.group`` (tensors must use ``Settings(group=p.group)``),
        N must be 1, 2, 4 or 8 and B a multiple of G
        (:class:`sfp.hw.params.ParamError` otherwise, raised by the constructor).

    Ports
    -----
    s_axis : In(stream of :func:`value_beat_layout`)
        ``data[j]`` is value ``t*N + j`` of the tensor (t = beat in tensor).
        ``last`` ends the tensor; on that beat ``keep`` (a prefix mask, at
        least one lane) says which lanes hold values.  On other beats all
        lanes are values and ``keep`` is ignored.
    cfg : In(config_layout())
        Per-tensor settings, sampled when a tensor's first beat is accepted
        (``length`` is not used: ``last`` ends the tensor).
    m_axis : Out(stream of {data: W, last: 1})
        The image's words in order; ``last`` on the tensor's final word.
    m_len : Out(stream of {data: 32, last: 1})
        Each block's length L_b in words, in order; ``last`` on the tensor's
        final block.  (Equal to ``encode_image(...).block_words``.)  With
        Gecko a block is Gecko-coded iff L_b is less than its plain length;
        the unpacker needs this stream (its ``s_len``).
    status : Out({negative, special, unsupported})
        Sticky flags (format.md 7) about the current tensor: a negative value
        met with the sign elided, Inf/NaN with specials off, a refused cfg
        (its beats are consumed and dropped, nothing is written).  They are
        cleared at reset and replaced when the next tensor's first beat
        passes the quantizer stage (one cycle after its cfg is sampled), so
        each tensor's flags describe that tensor alone, also back to back.

    Pipeline
    --------
    0. input register: the beat, its cfg (``cfg`` port on a first beat, the
       latched copy otherwise), lane count, block-end and tensor-end flags,
       and the stochastic-rounding source's N words for this beat
       (:class:`sfp.hw.prng.StochasticSource`, restarted with the seed by each
       tensor's first beat, so value index i counts from 0 per tensor).
    1. N combinational :class:`sfp.hw.lane.Quantizer` lanes, registered fields
       and status flags.
    2. records formed from the fields, concatenated by the
       :class:`WordPacker` tree, registered.
    3. bit accumulator, words into the output FIFO.

    With ``p.gecko``, stages 2 and 3 are the :class:`GeckoEncoder`, fed the
    registered stage-1 fields, lane count, tensor end and cfg (it counts
    blocks itself); its ``i.ready`` is the one enable.

    Latency: a word appears on ``m_axis`` 4 cycles after the beat that
    completes it is accepted.  With ``p.gecko`` the whole block is analysed
    before its first word (plain or coded): the block's first word is out
    B/8 + 12 clocks after its last beat is accepted (measured: 44 at
    B = 256 and 20 at B = 64 with N = 8, 27 at B = 128 with N = 4).

    Throughput: one beat (N values) per clock, with no bubble at block or
    tensor boundaries, also between tensors with different settings, while
    ``m_axis`` and ``m_len`` are ready: every stage moves on one enable, which
    is low only when the word FIFO could not take two words or the length
    FIFO one entry; :class:`WordPacker` shows that never happens with ready
    sinks because a block's words never outnumber its beats (N*Vmax <= W is
    checked by :class:`HwParams`).  ``s_axis.ready`` depends only on
    registered FIFO levels.

    With ``p.gecko``: one beat per clock as long as the encoder's four
    block banks rotate in time (see :class:`GeckoEncoder`), i.e. on
    tensors of several blocks with B/N >= 4; each tensor's last, partial
    block holds a bank for its full analysis and emission, so runs of
    tensors shorter than a block stall the input (about B/4 clocks per
    tensor).  Measured with ready sinks, long tensors back to back with
    different settings, Gecko on and off: 1.0 beats/clock at N = 8,
    B = 256 and N = 4, B = 32/128; 0.992 at N = 8, B = 64.
    ``s_axis.ready`` is a function of registered state only.
    """

    def __init__(self, p: HwParams):
        if p.gecko:
            from .gecko_common import check_gecko_params
            check_gecko_params(p)             # ParamError: lanes 1/2/4/8, group, block % group
        self.p = p
        super().__init__({
            "s_axis": In(stream.Signature(value_beat_layout(p))),
            "cfg": In(config_layout()),
            "m_axis": Out(stream.Signature(word_layout(p))),
            "m_len": Out(stream.Signature(len_layout())),
            "status": Out(packer_status_layout()),
        })

    def elaborate(self, platform):
        from .lane import LaneConfig, Quantizer, cfg_supported, lane_cfg_layout
        from .prng import StochasticSource

        m = Module()
        p = self.p
        n, vmax = p.lanes, p.max_value_bits
        bpb = p.block // n

        if p.gecko:
            from .gecko_pack import GeckoEncoder
            m.submodules.words = wp = GeckoEncoder(p)
        else:
            m.submodules.words = wp = WordPacker(p)
        wiring.connect(m, wiring.flipped(self.m_axis), wp.words)
        wiring.connect(m, wiring.flipped(self.m_len), wp.lens)
        en = wp.i.ready                       # one enable for every stage

        # -- stage 0: accept and register the beat ----------------------------
        sa = self.s_axis
        m.d.comb += sa.ready.eq(en)
        fire = sa.valid & en

        in_tensor = Signal()                  # a tensor's first beat has been accepted
        tcfg = Signal(config_layout())        # its settings
        tdrop = Signal()                      # it is refused
        bb = Signal(range(max(bpb, 2)))       # beat in block

        first = ~in_tensor
        cfg_now = Signal(config_layout())
        drop_now = Signal()
        ok = Signal()
        m.d.comb += ok.eq(cfg_supported(p, self.cfg))
        with m.If(first):
            m.d.comb += [cfg_now.eq(self.cfg), drop_now.eq(~ok)]
        with m.Else():
            m.d.comb += [cfg_now.eq(tcfg), drop_now.eq(tdrop)]

        count = Signal(range(n + 1))
        with m.If(sa.payload.last):
            m.d.comb += count.eq(sum(sa.payload.keep[j] for j in range(n)))
        with m.Else():
            m.d.comb += count.eq(n)
        bend = sa.payload.last | (bb == bpb - 1)

        with m.If(fire):
            m.d.sync += in_tensor.eq(~sa.payload.last)
            with m.If(first):
                m.d.sync += [tcfg.eq(self.cfg), tdrop.eq(~ok)]
            with m.If(bend):
                m.d.sync += bb.eq(0)
            with m.Else():
                m.d.sync += bb.eq(bb + 1)

        s0_valid = Signal()
        s0_data = Signal(data.ArrayLayout(p.src.width, n))
        s0_count = Signal(range(n + 1))
        s0_last = Signal()
        s0_first = Signal()
        s0_drop = Signal()
        s0_bend = Signal()
        s0_cfg = Signal(config_layout())
        s0_lcfg = Signal(lane_cfg_layout(p))  # the lanes' constants, decoded from cfg_now
        s0_rnd = Signal(data.ArrayLayout(32, n))

        # The lanes' per-tensor constants are decoded once, from the cfg as it
        # enters stage 0, and registered with the beat: valid for a tensor's
        # first beat, and off the per-value path of stage 1.
        m.submodules.lcfg = lcfg = LaneConfig(p)
        m.d.comb += lcfg.cfg.eq(cfg_now)

        # Stochastic-rounding words of the beat being accepted (combinational
        # from the source): restarted with the seed by a tensor's first beat
        # (indices 0..N-1), advanced by every accepted beat, so value index i
        # counts from 0 at each tensor's first value.  Registered with the beat.
        if p.stochastic:
            m.submodules.prng = prng = StochasticSource(n)
            m.d.comb += [
                prng.seed.eq(self.cfg.seed),
                prng.restart.eq(fire & first),
                prng.advance.eq(fire),
            ]
        with m.If(en):
            m.d.sync += s0_valid.eq(sa.valid)
            with m.If(sa.valid):
                m.d.sync += [
                    s0_data.eq(sa.payload.data),
                    s0_count.eq(count),
                    s0_last.eq(sa.payload.last),
                    s0_first.eq(first),
                    s0_drop.eq(drop_now),
                    s0_bend.eq(bend),
                    s0_cfg.eq(cfg_now),
                    s0_lcfg.eq(lcfg.lcfg),
                ]
                if p.stochastic:
                    m.d.sync += s0_rnd.eq(prng.x)

        # -- stage 1: quantizer lanes ------------------------------------------
        s1_valid = Signal()
        s1_fields = Signal(data.ArrayLayout(fields_layout(p), n))
        s1_count = Signal(range(n + 1))
        s1_last = Signal()
        s1_bend = Signal()
        s1_cfg = Signal(config_layout())
        neg = []
        spc = []
        for j in range(n):
            q = Quantizer(p, predecoded=True)
            m.submodules[f"q{j}"] = q
            m.d.comb += [q.value.eq(s0_data[j]), q.lcfg.eq(s0_lcfg), q.rnd.eq(s0_rnd[j])]
            lane_ok = s0_count > j
            neg.append(q.negative & lane_ok)
            spc.append(q.special & lane_ok)
            with m.If(en):
                m.d.sync += s1_fields[j].eq(q.fields)
        with m.If(en):
            m.d.sync += [
                s1_valid.eq(s0_valid & ~s0_drop),
                s1_count.eq(s0_count),
                s1_last.eq(s0_last),
                s1_bend.eq(s0_bend),
                s1_cfg.eq(s0_cfg),
            ]
            with m.If(s0_valid):
                flags = Cat(Cat(*neg).any() & ~s0_drop, Cat(*spc).any() & ~s0_drop, s0_drop)
                with m.If(s0_first):
                    m.d.sync += self.status.as_value().eq(flags)
                with m.Else():
                    m.d.sync += self.status.as_value().eq(self.status.as_value() | flags)

        if p.gecko:
            # -- stage 2..: the Gecko encoder takes the registered fields --------
            ib = wp.i.payload
            m.d.comb += [
                wp.i.valid.eq(s1_valid),
                ib.fields.eq(s1_fields),
                ib.count.eq(s1_count),
                ib.last.eq(s1_last),
                ib.cfg.eq(s1_cfg),
            ]
            return m

        # -- stage 2 input: records --------------------------------------------
        c = s1_cfg
        ib = wp.i.payload
        mw = len(s1_fields[0].man)
        for j in range(n):
            f = s1_fields[j]
            lane_ok = s1_count > j
            camt = _shift_amount(m, c.man_bits, p.max_man_bits, f"rec{j}_camt")
            samt = _shift_amount(m, c.man_bits + c.exp_bits, vmax - 1, f"rec{j}_samt")
            man = f.man & Cat(*(c.man_bits > i for i in range(mw)))
            rec = man | (f.code << camt) | ((f.sign & c.sign) << samt)
            m.d.comb += ib.recs[j].eq(rec[:vmax] & lane_ok.replicate(vmax))
        m.d.comb += [
            wp.i.valid.eq(s1_valid),
            ib.v.eq(c.sign + c.exp_bits + c.man_bits),
            ib.count.eq(s1_count),
            ib.flush.eq(s1_bend),
            ib.last.eq(s1_last),
        ]
        return m
