"""Proves the simulation harness: an Amaranth stream component under Icarus and Verilator.

The DUT is a SyncFIFOBuffered followed by a one-stage registered stream
pipeline, with a ``data.StructLayout`` payload (``data`` + ``last``).  The
cocotb side (``cocotb_harness_tb``) drives it with random valid gaps and
random ready back-pressure and checks every beat arrives once, in order.
"""

import pytest
from amaranth import Module
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from sfp.sim_tests.harness import SIMULATORS, run_sim


def beat_layout(width: int) -> data.StructLayout:
    return data.StructLayout({"data": width, "last": 1})


class FifoPipe(wiring.Component):
    """``s_axis`` → SyncFIFOBuffered(depth) → registered stage → ``m_axis``."""

    def __init__(self, width: int = 8, depth: int = 4):
        self.width = width
        self.depth = depth
        layout = beat_layout(width)
        super().__init__({
            "s_axis": In(stream.Signature(layout)),
            "m_axis": Out(stream.Signature(layout)),
        })

    def elaborate(self, platform):
        m = Module()
        width = self.width + 1
        m.submodules.fifo = q = fifo.SyncFIFOBuffered(width=width, depth=self.depth)

        # Input side: connect the stream to the FIFO write port.
        m.d.comb += [
            q.w_data.eq(self.s_axis.payload.as_value()),
            q.w_en.eq(self.s_axis.valid),
            self.s_axis.ready.eq(q.w_rdy),
        ]

        # Output side: one registered stage (a plain pipeline register that
        # accepts a new beat when it is empty or being emptied this cycle).
        out = self.m_axis
        take = q.r_rdy & (~out.valid | out.ready)
        m.d.comb += q.r_en.eq(take)
        with m.If(take):
            m.d.sync += [out.payload.eq(q.r_data), out.valid.eq(1)]
        with m.Elif(out.ready):
            m.d.sync += out.valid.eq(0)
        return m


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_stream_fifo_pipe(simulator):
    width, depth = 8, 4
    run_sim(
        lambda: FifoPipe(width=width, depth=depth),
        top="fifo_pipe",
        key=f"harness_fifo_pipe_w{width}_d{depth}",
        test_module="sfp.sim_tests.cocotb_harness_tb",
        simulator=simulator,
        params={"width": width, "depth": depth, "n_beats": 300},
    )
