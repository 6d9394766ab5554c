"""Reusable formal properties: AXI4-Stream handshake rules and a finder for internal signals.

Amaranth 0.5 has no ``Past``: the rules keep the previous cycle's state in
their own registers.  All harnesses run from the design's reset state (the
``init`` values, which sby takes as the initial state) with ``rst`` held
low; reset itself is not explored.
"""

from __future__ import annotations

from amaranth import Module, Signal, Value
from amaranth.hdl import Assert, Assume, Fragment

__all__ = ["stream_rules", "tap", "TapError", "free_inputs"]


def stream_rules(m: Module, valid, ready, payload, *, role: str, name: str = "s") -> Signal:
    """AXI4-Stream source rules on one stream: once ``valid`` is high it stays high
    until ``ready``, and the payload does not change while it waits.

    ``role="assert"`` checks them of a stream the design drives (an output);
    ``role="assume"`` imposes them on a stream the environment drives (an
    input).  Returns the registered "stalled last cycle" flag.
    """
    check = {"assert": Assert, "assume": Assume}[role]
    stalled = Signal(name=f"{name}_stalled")
    prev = Signal(Value.cast(payload).shape(), name=f"{name}_prev_payload")
    m.d.sync += [stalled.eq(valid & ~ready), prev.eq(payload)]
    with m.If(stalled):
        m.d.comb += [
            check(valid, f"{name}: valid dropped before ready"),
            check(Value.cast(payload) == prev, f"{name}: payload changed while stalled"),
        ]
    return stalled


class TapError(LookupError):
    """A signal a property needs is not in the elaborated design (the RTL changed)."""


def _signals(frag: Fragment):
    lhs, rhs = {}, {}
    for stmts in frag.statements.values():
        for st in stmts:
            for sig in st._lhs_signals():
                lhs.setdefault(sig.name, {})[id(sig)] = sig
            for sig in st._rhs_signals():
                rhs.setdefault(sig.name, {})[id(sig)] = sig
    return lhs, rhs


def tap(frag: Fragment, path: str, name: str):
    """The signal called ``name`` used by the sub-fragment at ``path`` ("a/b", "" for ``frag``).

    A signal driven there wins over one only read there; two distinct
    signals of that name, or none, raise :class:`TapError`.
    """
    f = frag
    for part in [x for x in path.split("/") if x]:
        try:
            f = f.find_subfragment(part)
        except (NameError, KeyError) as e:
            raise TapError(f"no submodule {part!r} on the path {path!r}: {e}") from None
    lhs, rhs = _signals(f)
    for table in (lhs, rhs):
        found = table.get(name, {})
        if len(found) == 1:
            return next(iter(found.values()))
        if len(found) > 1:
            raise TapError(f"{len(found)} signals named {name!r} in {path!r}")
    raise TapError(f"no signal {name!r} in {path!r}")


def free_inputs(frag: Fragment) -> list:
    """Signals read somewhere in the design and driven nowhere: the solver's free inputs."""
    driven, read = {}, {}

    def walk(f):
        for port in getattr(f, "_read_ports", ()):    # a memory's read data is driven by the memory
            for sig in port._data._rhs_signals():
                driven[id(sig)] = sig
        for stmts in f.statements.values():
            for st in stmts:
                for sig in st._lhs_signals():
                    driven[id(sig)] = sig
                for sig in st._rhs_signals():
                    read[id(sig)] = sig
        for sub, _name, _loc in f.subfragments:
            walk(sub)

    walk(frag)
    ports = [sig for k, sig in read.items() if k not in driven]
    for cd in frag.domains.values():
        ports += [cd.clk] + ([cd.rst] if cd.rst is not None and id(cd.rst) not in read else [])
    return ports
