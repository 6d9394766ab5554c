"""Exponent statistics measured while a tensor is stored: a tap on the packer's input stream.

Quantum Exponent places each tensor's exponent window (``exp_base``) from
its exponent range.  Every value already flows through the packer, so the
hardware can measure that range while it stores the tensor, and software
needs no separate pass: the training policy's ``window="hw"`` mode
(:class:`sfp.train.qmqe.FixedPolicy`) sets the next step's window from the
report of the previous step.  The golden model is
:func:`sfp.model.expstats.expstats` (the definitions are there).

:class:`ExpStats` is the tap itself; :class:`PackerWithStats` is a
:class:`sfp.hw.packer.Packer` with a tap on its ``s_axis`` handshake (the
packer is wrapped, not modified).
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sfp.model.expstats import NBINS

from .packer import Packer, value_beat_layout
from .params import HwParams, ROUNDING_CODES, config_layout

__all__ = ["ExpStats", "PackerWithStats", "stats_layout"]

COUNT_BITS = 32


def stats_layout(p: HwParams) -> data.StructLayout:
    ew = p.src.exp_width
    return data.StructLayout({
        "emax": ew, "emin": ew,
        "hist": data.ArrayLayout(COUNT_BITS, NBINS),
        "saturated": COUNT_BITS, "flushed": COUNT_BITS, "values": COUNT_BITS,
    })


class ExpStats(wiring.Component):
    """Per-tensor exponent statistics of the beats a packer accepts.

    Parameters
    ----------
    p : HwParams
        Source format and lane count N (those of the observed packer).

    Ports
    -----
    beat : In(:func:`sfp.hw.packer.value_beat_layout`)
        The packer's ``s_axis.payload``.
    fire : In(1)
        ``s_axis.valid & s_axis.ready``: the beat is accepted this cycle.
    cfg : In(config_layout())
        The packer's ``cfg``; sampled, as the packer does, with a tensor's
        first accepted beat.
    stats : Out(stream of :func:`stats_layout`)
        One report per tensor, in tensor order (fields: model/expstats.py).
    overrun : Out(1)
        Sticky (until reset): a report was replaced before ``stats`` took it
        (the consumer fell more than one tensor behind); never silent.

    Latency: a tensor's report is valid 2 cycles after its last beat is
    accepted.  Throughput: the tap only listens, it drives nothing the
    packer sees, so the packer's rate is unchanged (one beat per clock);
    it accepts a beat every cycle itself (one register stage, then a
    combinational reduction of the N lanes into the accumulators).
    """

    def __init__(self, p: HwParams):
        self.p = p
        super().__init__({
            "beat": In(value_beat_layout(p)),
            "fire": In(1),
            "cfg": In(config_layout()),
            "stats": Out(stream.Signature(stats_layout(p))),
            "overrun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        src = p.src
        n, mw, ew, w = p.lanes, src.man_width, src.exp_width, src.width
        top = (1 << ew) - 1

        # -- stage 0: register the accepted beat and the tensor's cfg ------------------------
        first = Signal(init=1)                 # the next accepted beat starts a tensor
        held = Signal(config_layout())         # the current tensor's cfg
        r_valid = Signal()
        r_first = Signal()
        r_beat = Signal(value_beat_layout(p))
        r_cfg = Signal(config_layout())
        m.d.sync += r_valid.eq(self.fire)
        with m.If(self.fire):
            m.d.sync += [first.eq(self.beat.last), r_first.eq(first), r_beat.eq(self.beat),
                         r_cfg.eq(Mux(first, self.cfg, held))]
            with m.If(first):
                m.d.sync += held.eq(self.cfg)

        # -- stage 1: classify the N lanes, reduce, accumulate -----------------------------------
        cfg = r_cfg
        drop = Signal(range(mw + 1))
        m.d.comb += drop.eq(mw - cfg.man_bits)
        rne = (cfg.rounding == ROUNDING_CODES["rne"]) & (drop != 0)
        half = (Const(1, mw + 1) << drop) >> 1                      # 1 << (drop - 1), 0 if drop = 0
        cmax = Signal(9)
        m.d.comb += cmax.eq((Const(1, 9) << cfg.exp_bits) - Mux(cfg.specials, 2, 1))
        room = Signal(9)                                            # 254 - exp_base: codes before Inf
        m.d.comb += room.eq(src.max_finite_exp - cfg.exp_base)
        cfin = Mux(cmax < room, cmax, room)

        lane_max, lane_min, normals, sats, flushes, ons = [], [], [], [], [], []
        bins = [[] for _ in range(NBINS)]
        for j in range(n):
            v = r_beat.data[j]
            on = ~r_beat.last | r_beat.keep[j]
            sgn = v[w - 1]
            mag = v[:w - 1]
            E = mag[mw:]
            normal = Signal(name=f"normal{j}")
            m.d.comb += normal.eq(on & (E != 0) & (E != top))
            inc = Mux(rne, half - 1 + ((mag >> drop) & 1), 0)
            ep = Signal(ew + 1, name=f"ep{j}")
            m.d.comb += ep.eq((mag + inc) >> mw)                   # exponent after the mantissa carry
            c = Signal(range(-256, 512), name=f"c{j}")
            m.d.comb += c.eq(ep - cfg.exp_base)
            stored = normal & (~sgn | cfg.sign)
            sats.append(stored & (c > cfin))
            flushes.append(stored & (c < 1))
            normals.append(normal)
            ons.append(on)
            lane_max.append(Mux(normal, E, 0))
            lane_min.append(Mux(normal, E, top))
            for k in range(NBINS):
                bins[k].append(normal & (E[ew - 3:] == k))

        def tree(vals, pick):
            while len(vals) > 1:
                nxt = [pick(a, b) for a, b in zip(vals[::2], vals[1::2])]
                vals = nxt + ([vals[-1]] if len(vals) % 2 else [])
            return vals[0]

        def popcount(bits):
            return tree(list(bits), lambda a, b: a + b)

        bmax = tree(lane_max, lambda a, b: Mux(a > b, a, b))
        bmin = tree(lane_min, lambda a, b: Mux(a < b, a, b))

        acc = Signal(stats_layout(p))          # emin holds `top` while no normal value was seen
        new = Signal(stats_layout(p))
        keep = ~r_first                        # a tensor's first beat restarts the sums
        m.d.comb += [
            new.emax.eq(Mux(keep & (acc.emax > bmax), acc.emax, bmax)),
            new.emin.eq(Mux(keep & (acc.emin < bmin), acc.emin, bmin)),
            new.saturated.eq(Mux(keep, acc.saturated, 0) + popcount(sats)),
            new.flushed.eq(Mux(keep, acc.flushed, 0) + popcount(flushes)),
            new.values.eq(Mux(keep, acc.values, 0) + popcount(ons)),
        ]
        for k in range(NBINS):
            m.d.comb += new.hist[k].eq(Mux(keep, acc.hist[k], 0) + popcount(bins[k]))

        report = Signal(stats_layout(p))
        out_valid = Signal()
        m.d.comb += [self.stats.valid.eq(out_valid), self.stats.payload.eq(report)]
        with m.If(r_valid):
            m.d.sync += acc.eq(new)
        with m.If(r_valid & r_beat.last):
            m.d.sync += [report.eq(new), out_valid.eq(1)]
            # no normal value: emax is 0 and emin reports 0 too (not the `top` sentinel)
            m.d.sync += report.emin.eq(Mux(new.emax == 0, 0, new.emin))
            with m.If(out_valid & ~self.stats.ready):
                m.d.sync += self.overrun.eq(1)
        with m.Elif(self.stats.ready):
            m.d.sync += out_valid.eq(0)
        return m


class PackerWithStats(wiring.Component):
    """A :class:`sfp.hw.packer.Packer` whose input stream is observed by an :class:`ExpStats` tap.

    Parameters: ``p`` (HwParams) as for the packer.  Ports: every port of the
    packer, forwarded unchanged (same names, same timing), plus ``stats``
    and ``stats_overrun`` (the tap's ``stats`` and ``overrun``).  Latency and
    throughput: the packer's; a tensor's report follows 2 cycles after its
    last beat is accepted.
    """

    def __init__(self, p: HwParams):
        self.p = p
        self._packer = Packer(p)
        members = dict(self._packer.signature.members.items())
        members["stats"] = Out(stream.Signature(stats_layout(p)))
        members["stats_overrun"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.packer = pk = self._packer
        m.submodules.tap = tap = ExpStats(self.p)
        for name, member in pk.signature.members.items():
            outer, inner = getattr(self, name), getattr(pk, name)
            if member.is_port:
                if member.flow == wiring.In:
                    m.d.comb += inner.eq(outer)
                else:
                    m.d.comb += outer.eq(inner)
            else:
                wiring.connect(m, wiring.flipped(outer), inner)
        m.d.comb += [
            tap.beat.eq(self.s_axis.payload),
            tap.fire.eq(self.s_axis.valid & pk.s_axis.ready),
            tap.cfg.eq(self.cfg),
        ]
        wiring.connect(m, tap.stats, wiring.flipped(self.stats))
        m.d.comb += self.stats_overrun.eq(tap.overrun)
        return m
