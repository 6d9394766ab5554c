"""Building blocks of free-running pipelines: delay lines and variable shifters cut into register stages.

The unpacker's datapath stages run without a stall signal (a 200 MHz clock
leaves no room for a stall that fans out to thousands of flip-flops): the
unit that issues beats holds a credit for a slot in the output FIFO before
it issues one, so every register of the pipeline simply advances each clock.
These helpers build such stages: every register is in ``m.d.sync`` with no
enable.
"""

from __future__ import annotations

from amaranth import C, Cat, Module, Signal, Value
from amaranth.lib import data

__all__ = ["delay", "shift_right_stages", "shift_stage_count"]


def delay(m: Module, value, cycles: int, name: str = "dly"):
    """``value`` delayed by ``cycles`` clocks (a chain of registers; ``cycles = 0`` returns it as is)."""
    cur = value
    for i in range(cycles):
        shape = cur.shape() if isinstance(cur, data.View) else Value.cast(cur).shape()
        nxt = Signal(shape, name=f"{name}_{i}")
        m.d.sync += nxt.eq(cur)
        cur = nxt
    return cur


def shift_stage_count(amount_bits: int, step: int = 2) -> int:
    """Register stages :func:`shift_right_stages` uses for an amount of ``amount_bits`` bits."""
    return -(-amount_bits // step)


def shift_right_stages(m: Module, x, amount, out_width: int, unit: int = 1, step: int = 2, name: str = "sh"):
    """``(x >> (amount * unit))[:out_width]``, registered after every ``step`` bits of ``amount``.

    The amount's bits are applied from the most significant down, so each
    stage only keeps the bits the later stages can still select
    (``out_width + unit * (2**lo - 1)``): the shifter narrows as it goes.
    Each stage is a ``2**step``-to-1 multiplexer per output bit (one LUT4
    level and a PFUMX on ECP5 for ``step = 2``).  Returns the last stage's
    register; its latency is :func:`shift_stage_count` ``(len(amount), step)``
    clocks.  ``amount`` is delayed alongside the data internally.
    """
    amount = Value.cast(amount)
    nbits = len(amount)
    bits = Value.cast(x)
    amt = amount
    hi = nbits
    stage = 0
    while hi > 0:
        lo = max(0, hi - step)
        keep = out_width + unit * ((1 << lo) - 1)
        sel = amt[lo:hi]
        # pad the input so every selected slice exists
        need = keep + unit * (((1 << (hi - lo)) - 1) << lo)
        if len(bits) < need:
            bits = Cat(bits, C(0, need - len(bits)))
        out = Signal(keep, name=f"{name}_s{stage}")
        with m.Switch(sel):
            for k in range(1 << (hi - lo)):
                with m.Case(k):
                    m.d.sync += out.eq(bits[unit * (k << lo):unit * (k << lo) + keep])
        rest = Signal(max(lo, 1), name=f"{name}_a{stage}")
        if lo:
            m.d.sync += rest.eq(amt[:lo])
        bits, amt = out, rest[:lo]
        hi = lo
        stage += 1
    if stage == 0:
        out = Signal(out_width, name=f"{name}_s0")
        m.d.comb += out.eq(bits[:out_width])
        return out
    return bits
