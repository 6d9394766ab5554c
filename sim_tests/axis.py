"""Valid/ready (AXI4-Stream style) driver, monitor and sink for cocotb 2.x.

cocotbext-axi does not work with cocotb 2.x, so the RTL testbenches use these.

Port naming in Amaranth's Verilog output
----------------------------------------
``amaranth.back.verilog.convert(component, name=top)`` flattens the
component's signature with ``"__"`` (two underscores) between path parts.
For a ``wiring.Component`` with::

    s_axis: In(stream.Signature(MyStruct))     # data.StructLayout payload
    m_axis: Out(stream.Signature(16))
    io:     Out(wiring.Signature({"x": Out(stream.Signature(4))}))

the top module has the ports::

    clk, rst                                   # only if the design uses the sync domain
    s_axis__valid  (in)    s_axis__ready (out)   s_axis__payload (in, [W-1:0])
    m_axis__valid  (out)   m_axis__ready (in)    m_axis__payload (out, [15:0])
    io__x__valid, io__x__ready, io__x__payload

* ``rst`` is synchronous and active high.
* A ``data.StructLayout`` payload is **one packed vector** (``s_axis__payload``),
  fields packed LSB first in declaration order (``field.offset`` in the layout).
  The per-field wires Amaranth also emits (``\\s_axis__payload.mant``) are
  internal, not ports; use :func:`pack` / :func:`unpack` with the layout.
* Amaranth streams have no separate ``last``: put a ``last`` field in the
  payload layout; it then appears in the dicts this module returns.
* ``always_ready=True`` / ``always_valid=True`` members are constants and have
  no port; pass ``ready=None`` / leave ``valid`` driven high accordingly.
  (Plain ``verilog.convert`` rejects such constant ports on the *top level*;
  :func:`sfp.sim_tests.harness.write_verilog` drops them.)

The classes take the signal handles explicitly (``dut.s_axis__valid`` …), so
they work with any naming (hand-written Verilog, ``tvalid``/``tready``, …).

Timing discipline
-----------------
Everything is synchronous to ``clk``'s rising edge.  Inputs to the DUT are
written right after a rising edge; handshakes are decided by sampling
``valid``/``ready`` in the ``ReadOnly`` phase *before* the next rising edge,
which is race-free under both Icarus and Verilator.  Start drivers and sinks
after reset has been released.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["Beat", "pack", "unpack", "StreamDriver", "StreamMonitor", "StreamSink"]


# ---------------------------------------------------------------------------
# payload packing


def _is_layout(shape: Any) -> bool:
    try:
        from amaranth.lib import data
    except ImportError:  # pragma: no cover - amaranth is a project dependency
        return False
    return isinstance(shape, data.Layout)


def pack(layout: Any, value: Any) -> int:
    """Pack ``value`` into an int according to an Amaranth ``data.Layout``.

    ``value`` may be an int (taken as the raw bits), a dict (struct/union
    fields, missing fields are 0), or a list (``ArrayLayout`` elements).
    Nested layouts recurse.  Signed fields take negative Python ints.
    """
    if layout is None or isinstance(value, int):
        return int(value)
    from amaranth.hdl import Shape

    bits = 0
    if isinstance(value, dict):
        items = value.items()
    else:
        items = enumerate(value)
    for key, v in items:
        field = layout[key]
        if _is_layout(field.shape):
            raw = pack(field.shape, v)
        else:
            raw = int(v)
        width = Shape.cast(field.shape).width
        mask = (1 << width) - 1
        if raw > mask or raw < -(1 << max(width - 1, 0)):
            raise ValueError(f"value {v!r} does not fit field {key!r} of width {width}")
        bits |= (raw & mask) << field.offset
    return bits


def unpack(layout: Any, bits: int) -> Any:
    """Inverse of :func:`pack`: ``bits`` → dict (struct/union), list (array) or int."""
    if layout is None:
        return bits
    from amaranth.hdl import Shape
    from amaranth.lib import data

    if isinstance(layout, data.ArrayLayout):
        out: Any = []
    else:
        out = {}
    for key, field in layout:
        shape = Shape.cast(field.shape)
        raw = (bits >> field.offset) & ((1 << shape.width) - 1)
        if _is_layout(field.shape):
            v = unpack(field.shape, raw)
        elif shape.signed and shape.width and raw >> (shape.width - 1):
            v = raw - (1 << shape.width)
        else:
            v = raw
        if isinstance(out, list):
            out.append(v)
        else:
            out[key] = v
    return out


def _read_int(handle: Any) -> int:
    value = handle.value
    to_unsigned = getattr(value, "to_unsigned", None)
    if to_unsigned is not None:
        return to_unsigned()
    return int(value)


def _read_bit(handle: Any) -> bool:
    value = handle.value
    try:
        return bool(int(value))
    except ValueError:  # X / Z
        return False


# ---------------------------------------------------------------------------


@dataclass
class Beat:
    """One transferred beat.

    ``data`` is an int (raw payload) or, when a layout was given, a dict/list.
    ``last`` is the value of the separate ``last`` signal, or ``None`` when
    the stream has none (Amaranth streams carry ``last`` inside ``data``).
    """

    data: Any
    last: bool | None = None


class StreamDriver:
    """Drives ``valid``/``payload`` (and optional ``last``) of a stream into the DUT.

    Parameters
    ----------
    clk, valid, ready, payload:
        Signal handles (``dut.s_axis__valid`` …).  ``ready=None`` for an
        always-ready sink.
    last:
        Optional separate last signal handle.
    layout:
        Optional Amaranth ``data.Layout`` of the payload; then dict/list items
        are packed with :func:`pack`.
    seed / rng:
        Randomness for idle cycles (``random.Random(seed)`` unless ``rng`` given).
    idle_prob, max_idle:
        Before each beat, with probability ``idle_prob`` hold ``valid`` low for
        1..``max_idle`` cycles.
    """

    def __init__(
        self,
        clk: Any,
        valid: Any,
        ready: Any,
        payload: Any,
        *,
        last: Any = None,
        layout: Any = None,
        seed: int | None = 0,
        rng: random.Random | None = None,
        idle_prob: float = 0.0,
        max_idle: int = 3,
    ) -> None:
        self.clk = clk
        self.valid = valid
        self.ready = ready
        self.payload = payload
        self.last = last
        self.layout = layout
        self.rng = rng if rng is not None else random.Random(seed)
        self.idle_prob = idle_prob
        self.max_idle = max_idle
        self.sent: list[Beat] = []
        self.valid.value = 0
        if self.last is not None:
            self.last.value = 0

    async def _idle(self, cycles: int) -> None:
        self.valid.value = 0
        for _ in range(cycles):
            await RisingEdge(self.clk)

    async def send(self, items: Iterable[Any], *, mark_last: bool = False) -> None:
        """Send ``items`` (ints, dicts/lists with ``layout``, or :class:`Beat`).

        Returns once the last beat has been accepted (handshake at a rising
        edge); ``valid`` is low afterwards.  With a separate ``last`` signal,
        ``mark_last=True`` raises it on the final item when the item does not
        say otherwise.
        """
        items = list(items)
        for i, item in enumerate(items):
            beat = item if isinstance(item, Beat) else Beat(item, None)
            if beat.last is None and self.last is not None:
                beat = Beat(beat.data, mark_last and i == len(items) - 1)
            if self.idle_prob > 0 and self.rng.random() < self.idle_prob:
                await self._idle(self.rng.randint(1, self.max_idle))
            self.payload.value = pack(self.layout, beat.data)
            if self.last is not None:
                self.last.value = int(bool(beat.last))
            self.valid.value = 1
            while True:
                await ReadOnly()
                fire = self.ready is None or _read_bit(self.ready)
                await RisingEdge(self.clk)
                if fire:
                    break
            self.sent.append(beat)
        self.valid.value = 0
        if self.last is not None:
            self.last.value = 0


class StreamMonitor:
    """Passively records every beat with ``valid & ready`` high at a rising edge.

    Does not drive anything; use :class:`StreamSink` to also drive ``ready``.
    ``ready=None`` means always ready.  Beats are appended to ``self.beats``.
    Call :meth:`start` once (it launches a background task).
    """

    def __init__(
        self,
        clk: Any,
        valid: Any,
        ready: Any,
        payload: Any,
        *,
        last: Any = None,
        layout: Any = None,
    ) -> None:
        self.clk = clk
        self.valid = valid
        self.ready = ready
        self.payload = payload
        self.last = last
        self.layout = layout
        self.beats: list[Beat] = []
        self._task: Any = None

    def _sample(self) -> None:
        if _read_bit(self.valid) and (self.ready is None or _read_bit(self.ready)):
            try:
                bits = _read_int(self.payload)
            except ValueError as e:
                raise AssertionError(
                    f"{self.payload._path}: unresolvable payload {self.payload.value!s} "
                    "during a handshake"
                ) from e
            last = None if self.last is None else _read_bit(self.last)
            self.beats.append(Beat(unpack(self.layout, bits), last))

    def _before_cycle(self) -> None:
        """Hook run right after each rising edge (before sampling)."""

    async def _run(self) -> None:
        while True:
            self._before_cycle()
            await ReadOnly()
            self._sample()
            await RisingEdge(self.clk)

    def start(self) -> "StreamMonitor":
        if self._task is None:
            self._task = cocotb.start_soon(self._run())
        return self

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    @property
    def data(self) -> list[Any]:
        """Just the payloads of the recorded beats."""
        return [b.data for b in self.beats]

    async def wait_for(self, count: int, *, timeout_cycles: int = 100_000) -> list[Beat]:
        """Wait until at least ``count`` beats were recorded; fail after ``timeout_cycles``."""
        for _ in range(timeout_cycles):
            if len(self.beats) >= count:
                return self.beats
            await RisingEdge(self.clk)
        if len(self.beats) >= count:
            return self.beats
        raise AssertionError(
            f"timeout: {len(self.beats)} of {count} beats after {timeout_cycles} cycles"
        )


class StreamSink(StreamMonitor):
    """A :class:`StreamMonitor` that also drives ``ready`` with random back-pressure.

    Each cycle ``ready`` is high with probability ``ready_prob`` (1.0 = never
    stalls), drawn from ``random.Random(seed)`` unless ``rng`` is given.
    """

    def __init__(
        self,
        clk: Any,
        valid: Any,
        ready: Any,
        payload: Any,
        *,
        last: Any = None,
        layout: Any = None,
        seed: int | None = 0,
        rng: random.Random | None = None,
        ready_prob: float = 1.0,
    ) -> None:
        if ready is None:
            raise ValueError("StreamSink needs a ready handle; use StreamMonitor for always-ready streams")
        super().__init__(clk, valid, ready, payload, last=last, layout=layout)
        self.rng = rng if rng is not None else random.Random(seed)
        self.ready_prob = ready_prob
        self.ready.value = 0

    def _before_cycle(self) -> None:
        go = self.ready_prob >= 1.0 or self.rng.random() < self.ready_prob
        self.ready.value = int(go)

    def stop(self) -> None:
        super().stop()
        self.ready.value = 0


def check_beats(got: Sequence[Any], expected: Sequence[Any], *, what: str = "stream") -> None:
    """Assert ``got == expected`` with a readable message at the first mismatch."""
    got = list(got)
    expected = list(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        if g != e:
            raise AssertionError(f"{what}: beat {i} differs: got {g!r}, expected {e!r}")
    if len(got) != len(expected):
        raise AssertionError(f"{what}: got {len(got)} beats, expected {len(expected)}")


__all__.append("check_beats")
