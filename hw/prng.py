"""The stochastic-rounding source of format.md 3.3, N lanes per beat.

Value ``i`` of a tensor gets ``x_i = xorshift32((seed + i * 0x9E3779B9) mod 2^32)``
(a Weyl sequence whitened by one xorshift32 round); the quantizer lane takes the
top ``d`` bits.  Being counter based, ``N`` lanes compute indices
``t*N .. t*N + N-1`` of beat ``t`` in parallel.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StochasticSource", "StochasticPipe", "WEYL", "xorshift32"]

WEYL = 0x9E3779B9
_MASK = 0xFFFFFFFF


def xorshift32(v: Value) -> Value:
    """One xorshift32 round (x ^= x<<13; x ^= x>>17; x ^= x<<5), all mod 2^32: XOR gates only."""
    x = v[:32]
    x = (x ^ (x << 13))[:32]
    x = x ^ (x >> 17)
    x = (x ^ (x << 5))[:32]
    return x


class StochasticSource(wiring.Component):
    """Per-lane random words for stochastic rounding (format.md 3.3).

    Parameters
    ----------
    lanes : int
        Values per beat ``N``.

    Ports (sync domain)
    -------------------
    seed : In(32)
        The tensor's seed.  Read only while ``restart`` is high.
    restart : In(1)
        Start a new tensor: the current beat is index base 0.
    advance : In(1)
        The current beat is consumed: the next beat's base is ``N`` further.
    x : Out(ArrayLayout(32, lanes))
        ``x[j]`` is ``xorshift32(b + j * 0x9E3779B9)`` where ``b`` is the Weyl
        value of the current beat's first index: ``seed`` while ``restart`` is
        high, otherwise the register ``w = seed + t * N * 0x9E3779B9``
        (``t`` = beats advanced since the last restart).

    Semantics and latency
    ---------------------
    ``x`` is combinational from ``w``, ``seed`` and ``restart``: it always
    shows the words of the current beat, with no cycle of latency.

    * ``restart`` alone: ``x`` shows indices ``0 .. N-1`` (from ``seed``) in
      this cycle, and ``w`` is loaded with ``seed`` (next cycle again
      ``0 .. N-1``).
    * ``advance`` alone: next cycle shows the following ``N`` indices.
    * ``restart`` and ``advance`` together: restart wins for the base, i.e. the
      beat consumed in this cycle is indices ``0 .. N-1`` (computed from
      ``seed``), and next cycle shows ``N .. 2N-1``.  So a packer that raises
      ``restart`` together with the first beat's handshake (when it latches the
      tensor's configuration) gets index 0 on that beat, with no bubble.

    After reset ``w = 0`` (as if restarted with seed 0).
    """

    def __init__(self, lanes: int):
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        self.lanes = lanes
        super().__init__({
            "seed": In(32),
            "restart": In(1),
            "advance": In(1),
            "x": Out(data.ArrayLayout(32, lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.lanes
        w = Signal(32)                  # Weyl value of the next beat's first index
        base = Signal(32)               # Weyl value of the current beat's first index
        m.d.comb += base.eq(Mux(self.restart, self.seed, w))
        with m.If(self.advance):
            m.d.sync += w.eq((base + ((n * WEYL) & _MASK))[:32])
        with m.Elif(self.restart):
            m.d.sync += w.eq(self.seed)
        for j in range(n):
            lane = base if j == 0 else (base + ((j * WEYL) & _MASK))[:32]
            m.d.comb += self.x[j].eq(xorshift32(lane))
        return m


class StochasticPipe(wiring.Component):
    """The random words of :class:`StochasticSource`, pipelined for a free-running datapath.

    Where :class:`StochasticSource` answers in the same cycle (a mux, a 32-bit
    adder and three XOR levels in series), this version registers the Weyl
    values of the beat's N indices and then their xorshift32 whitening, so
    every path is an adder or at most two LUT levels of XOR.

    Parameters
    ----------
    lanes : int
        Values per beat ``N``.

    Ports (sync domain, no enable: one beat may enter every cycle)
    ---------------------------------------------------------------
    valid : In(1)
        A beat is at the input this cycle.
    first : In(1)
        It is a tensor's first beat: its indices are ``0 .. N-1`` (from ``seed``).
    seed : In(32)
        The tensor's seed, read when ``valid & first``.
    x : Out(ArrayLayout(32, lanes))
        ``xorshift32(seed + (t*N + j) * 0x9E3779B9)`` for the beat that was at
        the input :attr:`LATENCY` cycles earlier (``t`` = its beat index in the tensor).

    Latency: 2.  Throughput: one beat per clock.
    """

    LATENCY = 2

    def __init__(self, lanes: int):
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        self.lanes = lanes
        super().__init__({
            "valid": In(1),
            "first": In(1),
            "seed": In(32),
            "x": Out(data.ArrayLayout(32, lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.lanes
        for j in range(n):
            # w: Weyl value of lane j of the next beat; both successors are
            # computed in parallel (from the seed and from w) and one is chosen.
            w = Signal(32, name=f"w{j}")
            base = Signal(32, name=f"base{j}")
            m.d.sync += base.eq(Mux(self.first, (self.seed + ((j * WEYL) & _MASK))[:32], w))
            with m.If(self.valid):
                m.d.sync += w.eq(Mux(self.first, (self.seed + (((j + n) * WEYL) & _MASK))[:32],
                                     (w + ((n * WEYL) & _MASK))[:32]))
            m.d.sync += self.x[j].eq(xorshift32(base))
        return m
