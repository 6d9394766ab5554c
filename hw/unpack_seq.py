"""The unpacker's beat sequencer: a tensor's settings in, one command per output beat out.

For the plain layout (format.md 4) where each beat's records lie in the
word stream depends only on the tensor's settings, never on the data: beat
t of a block of B values starts ``t*N*v`` bits after the block's first
word, and each block starts on a word boundary.  :class:`BeatSequencer`
walks that arithmetic ahead of the data, so that the unit that holds the
words (:class:`sfp.hw.wordunpack.RecordCutter`) only has to check that the
words are there and pop them: its loop stays short.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .lane import cfg_supported
from .params import HwParams, config_layout

__all__ = ["BeatSequencer", "tensor_consts", "tensor_consts_layout", "beat_cmd_layout", "desc_layout",
           "gecko_consts_layout"]


def desc_layout() -> data.StructLayout:
    """A tensor's descriptor, pushed when its first word is accepted: ``cfg`` as sampled."""
    return data.StructLayout({"cfg": config_layout()})


def tensor_consts_layout(p: HwParams) -> data.StructLayout:
    """The per-tensor constants that travel with every beat down the datapath."""
    mw = p.src.man_width
    return data.StructLayout({
        "v": range(p.max_value_bits + 1),  # record width s + e + m
        "m": 5, "e": 4, "sign": 1,         # field widths
        "me": 5,                           # m + e: the sign's position in a record
        "base": 8, "specials": 1,          # Dequantizer
        "d": mw.bit_length(),              # M_w - m
        "top": p.max_exp_bits,             # 2^e - 1
        "m_ge1": 1,
        "mmask": max(p.max_man_bits, 1),   # 2^m - 1
    })


def tensor_consts(m: Module, p: HwParams, cfg, name: str = "consts"):
    """A signal holding :func:`tensor_consts_layout` of ``cfg`` (combinational: register it after)."""
    mw, mmax, emax = p.src.man_width, p.max_man_bits, p.max_exp_bits
    wq = max(mmax, 1)
    k = Signal(tensor_consts_layout(p), name=name)
    c = cfg
    m.d.comb += [
        k.v.eq(c.sign + c.exp_bits + c.man_bits), k.m.eq(c.man_bits), k.e.eq(c.exp_bits), k.sign.eq(c.sign),
        k.me.eq(c.man_bits + c.exp_bits), k.base.eq(c.exp_base), k.specials.eq(c.specials),
        k.d.eq(mw - c.man_bits),
        k.top.eq(Const((1 << emax) - 1, emax) >> (emax - c.exp_bits)[:4]),
        k.m_ge1.eq(c.man_bits != 0),
        k.mmask.eq(Const((1 << mmax) - 1, wq) >> (mmax - c.man_bits)[:wq.bit_length()]),
    ]
    return k


def gecko_consts_layout(p: HwParams) -> data.StructLayout:
    """A Gecko build's per-tensor block constants (registered here, off the parse loop)."""
    return data.StructLayout({
        "gecko": 1,                                   # cfg.gecko
        "nb_m1": 32,                                  # blocks - 1
        "tail": range(p.block + 1),                   # values in the last block
        "pw_full": range(p.block * p.max_value_bits // p.word + 2),   # plain words of a full block
        "pw_tail": range(p.block * p.max_value_bits // p.word + 2),   # ... of the last block
    })


def beat_cmd_layout(p: HwParams) -> data.StructLayout:
    """One command of :class:`BeatSequencer`: where the beat's records are, and what it is.

    A Gecko build's commands also carry :func:`gecko_consts_layout` (for
    :class:`sfp.hw.gecko_parse.GeckoParser`); a plain build's do not.
    """
    extra = {"g": gecko_consts_layout(p)} if p.gecko else {}
    return data.StructLayout({**extra,
        "off": range(p.word),              # bit offset of the beat in the head word
        "need2": 1,                        # the beat's bits reach into the second word
        "pops": range(3),                  # words used up by the beat (block end: + padding)
        "final": 1,                        # the tensor's last beat
        "nobeat": 1,                       # length 0: no beat, only the tensor's words to consume
        "refused": 1,                      # the build cannot do the tensor's cfg: a zero beat
        "keep": p.lanes,
        "length": 32,                      # cfg.length (for the status entry)
        "k": tensor_consts_layout(p),
    })


class BeatSequencer(wiring.Component):
    """Turns each tensor's descriptor into ``ceil(length/N)`` beat commands, one per clock.

    Parameters
    ----------
    p : HwParams
        N = ``lanes``, W = ``word``, B = ``block`` (B >= N), field maxima.

    Ports
    -----
    desc : In(stream of :func:`desc_layout`)
        One per tensor, in order.
    cmd : Out(stream of :func:`beat_cmd_layout`)
        One per output beat (a zero-length or refused tensor: see
        ``nobeat``/``refused``).  ``cmd.ready`` must not depend on ``cmd.valid``.

    Pipeline: the descriptor passes two register stages (P1: ``cfg``
    checks and ``v``, ``length - 1``; P2: the tail, its bits
    ``tail * v``, the beat count, the Dequantizer constants); P2 is the
    "next tensor" register that the beat loop loads in the clock its
    current tensor's last command leaves.  P2 is refilled from P1 in the
    clock after it was taken, so tensors of at least 3 beats follow one
    another without a gap.

    The beat loop (one command per clock while ``cmd`` is ready): a beat
    down-counter whose sign bit says "last beat", a block down-counter
    likewise, and the bit offset ``off``: ``end = off + bits``; the beat
    needs a second word if ``end > W``; it uses up ``end >= W`` words, or
    at a block's last beat the rest of its word (and the second word if it
    needed one); ``off`` becomes ``end mod W``, or 0 at a block's end.
    """

    def __init__(self, p: HwParams):
        self.p = p
        super().__init__({
            "desc": In(stream.Signature(desc_layout())),
            "cmd": Out(stream.Signature(beat_cmd_layout(p))),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        N, W, B = p.lanes, p.word, p.block
        lgN = N.bit_length() - 1
        bpb = B // N
        beat_bits = N * p.max_value_bits

        # -- P1 / P2: per-tensor constants, a small stalling pipeline ------------
        p1 = Signal(data.StructLayout({"valid": 1, "cfg": config_layout(), "ok": 1, "v": 6, "lm1": 32}))
        p2 = Signal(data.StructLayout({
            "valid": 1, "ok": 1, "nobeat": 1, "length": 32, "beats_m2": 33, "tail_bits": range(beat_bits + 1),
            "full_bits": range(beat_bits + 1), "keep_tail": N, "k": tensor_consts_layout(p),
            **({"g": gecko_consts_layout(p)} if p.gecko else {}),
        }))
        load = Signal()                       # the beat loop takes p2 this clock
        # P2 refills only once it is empty (a registered test): the beat loop's `load`
        # stays off the descriptor FIFO's read path (P2 is refilled in the clock after it is
        # taken, which costs nothing for tensors of 2 beats or more).
        p2_free = ~p2.valid
        p1_free = ~p1.valid | p2_free
        d = self.desc
        m.d.comb += d.ready.eq(p1_free)
        with m.If(p1_free):
            c = d.payload.cfg
            m.d.sync += [
                p1.valid.eq(d.valid),
                p1.cfg.eq(c),
                p1.ok.eq(cfg_supported(p, c) & (c.length != 0)),
                p1.v.eq(c.sign + c.exp_bits + c.man_bits),
                p1.lm1.eq(c.length - 1),
            ]
        with m.If(load):
            m.d.sync += p2.valid.eq(0)
        with m.If(p2_free):
            c = p1.cfg
            tail = Signal(range(N + 1))
            m.d.comb += tail.eq((p1.lm1 & (N - 1)) + 1)
            m.d.sync += [
                p2.valid.eq(p1.valid),
                p2.ok.eq(p1.ok),
                p2.nobeat.eq(c.length == 0),
                p2.length.eq(c.length),
                p2.beats_m2.eq((p1.lm1 >> lgN) - 1),
                # tail * v as shifts and adds (tail - 1 = the low bits of length - 1): a DSP
                # multiplier here was the critical path (103.9 MHz)
                p2.tail_bits.eq(sum((Mux(p1.lm1[i], p1.v << i, 0) for i in range(lgN)), p1.v)),
                p2.full_bits.eq(p1.v << lgN),
                p2.keep_tail.eq(Cat(*(tail > j for j in range(N)))),
                p2.k.eq(tensor_consts(m, p, c)),
            ]
            if p.gecko:
                lgB, lgW = B.bit_length() - 1, W.bit_length() - 1
                tailb = Signal(range(B + 1))
                m.d.comb += tailb.eq((p1.lm1 & (B - 1)) + 1)
                m.d.sync += [
                    p2.g.gecko.eq(c.gecko),
                    p2.g.nb_m1.eq(p1.lm1 >> lgB),
                    p2.g.tail.eq(tailb),
                    p2.g.pw_full.eq(((p1.v << lgB) + W - 1) >> lgW),
                    p2.g.pw_tail.eq((tailb * p1.v + W - 1) >> lgW),
                ]
            with m.If(p1.cfg.length == 0):
                m.d.sync += p2.beats_m2.eq(-1)

        # -- the beat loop ------------------------------------------------------------
        active = Signal()
        t = Signal(data.StructLayout({
            "ok": 1, "nobeat": 1, "length": 32, "tail_bits": range(beat_bits + 1), "full_bits": range(beat_bits + 1),
            "lim_tail": range(-beat_bits, W + 1), "lim_full": range(-beat_bits, W + 1),   # W - bits
            "keep_tail": N, "k": tensor_consts_layout(p), **({"g": gecko_consts_layout(p)} if p.gecko else {}),
        }))
        cnt = Signal(33)                      # beats left - 2; negative: this is the last beat
        bcnt = Signal(range(-1, max(bpb - 1, 1)))   # beats left in the block - 2, signed
        off = Signal(range(W))
        final = cnt[-1]
        bend = final | bcnt[-1] if bpb > 1 else Const(1)
        o = self.cmd
        step = Signal()
        m.d.comb += step.eq(active & o.ready)
        m.d.comb += load.eq(p2.valid & (~active | (step & final)))

        nbits = Signal(range(beat_bits + 1))
        m.d.comb += nbits.eq(Mux(final, t.tail_bits, t.full_bits))
        end = Signal(range(W + beat_bits + 1))
        m.d.comb += end.eq(off + nbits)
        # end > W and end >= W as compares of off with per-tensor constants W - bits (no adder
        # in front of the compare)
        lim = Signal(range(-beat_bits, W + 1))
        m.d.comb += lim.eq(Mux(final, t.lim_tail, t.lim_full))
        need2 = Signal()
        m.d.comb += need2.eq(off > lim)
        pops = Signal(range(3))
        m.d.comb += pops.eq(Mux(bend, 1 + need2, off >= lim))
        refused = ~t.ok
        m.d.comb += [
            o.valid.eq(active),
            o.payload.off.eq(off),
            o.payload.need2.eq(need2 & ~refused),
            o.payload.pops.eq(Mux(refused | t.nobeat, 0, pops)),
            o.payload.final.eq(final),
            o.payload.nobeat.eq(t.nobeat),
            o.payload.refused.eq(refused),
            o.payload.keep.eq(Mux(final, t.keep_tail, (1 << N) - 1)),
            o.payload.length.eq(t.length),
            o.payload.k.eq(t.k),
        ]
        if p.gecko:
            m.d.comb += o.payload.g.eq(t.g)
        with m.If(step):
            m.d.sync += cnt.eq(cnt - 1)
            if bpb > 1:
                m.d.sync += bcnt.eq(Mux(bend, bpb - 2, bcnt - 1))
            m.d.sync += off.eq(Mux(bend, 0, end[:len(off)]))
            with m.If(final):
                m.d.sync += active.eq(0)
        with m.If(load):
            m.d.sync += [
                active.eq(1),
                t.ok.eq(p2.ok), t.nobeat.eq(p2.nobeat), t.length.eq(p2.length),
                t.tail_bits.eq(p2.tail_bits), t.full_bits.eq(p2.full_bits), t.keep_tail.eq(p2.keep_tail),
                t.lim_tail.eq(W - p2.tail_bits), t.lim_full.eq(W - p2.full_bits),
                t.k.eq(p2.k),
                cnt.eq(p2.beats_m2), off.eq(0),
            ]
            if p.gecko:
                m.d.sync += t.g.eq(p2.g)
            if bpb > 1:
                m.d.sync += bcnt.eq(bpb - 2)
        return m
