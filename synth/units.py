"""What gets synthesized: the hardware units of a configuration, and the PnR wrapper.

:func:`units` maps a unit name to a factory ``HwParams -> Component``.  The
default set is the packer and the unpacker (the two AXI-side blocks a user
instantiates); the lanes and the word (un)packers can be asked for by name
to see where the area goes.  Every factory imports its module lazily, so a
unit whose RTL is not there (yet) is simply not offered.

:class:`ScanWrapper` is the out-of-context harness for place and route: the
unit's ports are far wider than any package has pins, so every input bit is
driven by a register of one long shift chain (serial in), every output bit is
captured in a register and the captures are loaded into a second shift chain
(serial out).  Every output is observable at the pin and every input comes
from a register whose value synthesis cannot know, so nothing of the unit is
optimised away, and every timing path of the unit starts and ends at a
flip-flop (register -> unit -> register), as it would inside a larger design.
The wrapper's own paths are one flip-flop to the next (or through one
2:1 mux on the output chain), far shorter than the unit's.
"""

from __future__ import annotations

import gc
import importlib
import warnings
from typing import Callable

from amaranth.hdl import Cat, UnusedElaboratable, ClockDomain, Elaboratable, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from sfp.hw.params import HwParams

__all__ = ["units", "all_units", "ScanWrapper", "DEFAULT_UNITS", "port_bits"]

#: (module, class, how to construct it): ``"p"`` -> cls(p), ``"lanes"`` -> cls(p.lanes)
_CATALOGUE = {
    "packer": ("sfp.hw.top", "PackerTop", "p"),          # hw.packer.Packer with the AXI port names
    "unpacker": ("sfp.hw.top", "UnpackerTop", "p"),
    "quantizer": ("sfp.hw.lane", "Quantizer", "p"),
    "dequantizer": ("sfp.hw.lane", "Dequantizer", "p"),
    "prng": ("sfp.hw.prng", "StochasticSource", "lanes"),
    "wordpacker": ("sfp.hw.wordpack", "WordPacker", "p"),
    "wordunpacker": ("sfp.hw.wordunpack", "WordUnpacker", "p"),
    # Gecko: the Gecko back end (input queue, GeckoStage, RecordConcat of 8, the K-word
    # BitAccumulator) takes the word packer's place when Gecko is built, so Gecko's share
    # = gecko_encoder - wordpacker; the decoder is a stage of the unpacker's cutter
    # (hw/gecko_parse.py): gecko_decoder is that stage alone.
    "gecko_encoder": ("sfp.hw.gecko_stage", "GeckoWordPacker", "p"),
    "gecko_decoder": ("sfp.hw.gecko_parse", "GeckoParser", "p"),
}

#: Reported by default when available; else the lanes (see :func:`units`).
DEFAULT_UNITS = ("packer", "unpacker")
FALLBACK_UNITS = ("quantizer", "dequantizer")


def _factory(name: str) -> Callable[[HwParams], wiring.Component] | None:
    modname, clsname, how = _CATALOGUE[name]
    try:
        cls = getattr(importlib.import_module(modname), clsname)
    except (ImportError, AttributeError):
        return None
    if how == "lanes":
        return lambda p: cls(p.lanes)
    return lambda p: cls(p)


def all_units() -> dict[str, Callable[[HwParams], wiring.Component]]:
    """Every unit whose RTL is importable, by name."""
    out = {}
    for name in _CATALOGUE:
        f = _factory(name)
        if f is not None:
            out[name] = f
    return out


def units(p: HwParams, names: list[str] | None = None) -> dict[str, Callable[[HwParams], wiring.Component]]:
    """Units to synthesize for ``p``: ``names`` if given, else packer + unpacker (else the lanes).

    A unit that refuses ``p`` at construction (e.g. the packer with Gecko, which
    it does not build yet) is left out of the default set and is an error
    (ValueError) when asked for by name.
    """
    avail = all_units()
    if names:
        unknown = [n for n in names if n not in _CATALOGUE]
        if unknown:
            raise ValueError(f"unknown unit {unknown[0]!r} (known: {', '.join(_CATALOGUE)})")
        missing = [n for n in names if n not in avail]
        if missing:
            raise ValueError(f"unit {missing[0]!r} is not available (its RTL module does not import)")
        chosen = {n: avail[n] for n in names}
        for n, f in chosen.items():
            try:
                _probe(f, p, n)
            except ValueError as exc:
                raise ValueError(f"{n}: {exc}")
        return chosen
    # The packer and unpacker when their RTL imports (a configuration they
    # refuse is an error, not a silent switch to other units); else the lanes.
    for group in (DEFAULT_UNITS, FALLBACK_UNITS):
        chosen = {n: avail[n] for n in group if n in avail}
        for n, f in chosen.items():
            try:
                _probe(f, p, n)
            except ValueError as exc:
                raise ValueError(f"{n}: {exc}")
        if chosen:
            return chosen
    raise ValueError("no unit can be built for this configuration")


#: The tops build their core in elaborate(): construct the core to see whether it accepts p.
_CORE = {"packer": ("sfp.hw.packer", "Packer"), "unpacker": ("sfp.hw.unpacker", "Unpacker")}


def _probe(f, p: HwParams, name: str | None = None) -> None:
    """Construct the unit to see whether it accepts ``p`` (ValueError if not); the object is dropped."""
    makers = [f]
    if name in _CORE:
        mod, cls = _CORE[name]
        try:
            makers.append(getattr(importlib.import_module(mod), cls))
        except (ImportError, AttributeError):
            pass
    err = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)   # probes are built to be dropped
        for make in makers:
            try:
                make(p)
            except ValueError as exc:
                err = str(exc)
                break
        gc.collect()            # a half-built object dies here, inside the filter
    if err is not None:
        raise ValueError(err)


def port_bits(unit: wiring.Component) -> tuple[list, list]:
    """The unit's input and output port values (flattened, as seen from outside)."""
    ins, outs = [], []
    for _path, member, value in unit.signature.flatten(unit):
        (ins if member.flow == In else outs).append(value)
    return ins, outs


class ScanWrapper(Elaboratable):
    """Registers around ``unit`` with a 4-pin interface: ``clk``, ``rst``, ``sin``, ``load``, ``sout``.

    * input chain: ``n_in`` flip-flops shifting ``sin`` in, their outputs are
      the unit's inputs (every input port bit);
    * capture: ``n_out`` flip-flops sampling the unit's outputs every cycle;
    * output chain: ``n_out`` flip-flops, loaded from the captures while
      ``load`` is high, otherwise shifting towards ``sout``.

    ``rst`` is registered once before it resets the unit's ``sync`` domain.
    Overhead: ``n_in + 2 * n_out + 2`` flip-flops and ``n_out`` 2:1 muxes.
    """

    def __init__(self, unit: wiring.Component):
        self.unit = unit
        self.sin = Signal()
        self.load = Signal()
        self.rst_in = Signal()
        self.sout = Signal()
        self.cd = ClockDomain("sync")
        ins, outs = port_bits(unit)
        self.n_in = sum(len(Value.cast(v)) for v in ins)
        self.n_out = sum(len(Value.cast(v)) for v in outs)

    def ports(self):
        return [self.cd.clk, self.sin, self.load, self.rst_in, self.sout]

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.unit
        ins, outs = port_bits(self.unit)
        in_bits = Cat(*[Value.cast(v) for v in ins])
        out_bits = Cat(*[Value.cast(v) for v in outs])

        m.domains.sync = cd = self.cd      # its clk is the top's only clock port
        rst_q = Signal(reset_less=True)
        m.d.sync += rst_q.eq(self.rst_in)
        m.d.comb += cd.rst.eq(rst_q)

        chain = Signal(len(in_bits), reset_less=True)
        m.d.sync += chain.eq(Cat(self.sin, chain[:-1]) if len(in_bits) > 1 else self.sin)
        m.d.comb += in_bits.eq(chain)

        cap = Signal(len(out_bits), reset_less=True)
        sh = Signal(len(out_bits), reset_less=True)
        m.d.sync += cap.eq(out_bits)
        with m.If(self.load):
            m.d.sync += sh.eq(cap)
        with m.Else():
            m.d.sync += sh.eq(sh >> 1)
        m.d.comb += self.sout.eq(sh[0])
        return m
