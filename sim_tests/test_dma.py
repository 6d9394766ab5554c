"""RTL simulations of the DMA path: packer -> writer -> memory bus -> reader -> unpacker, two clocks.

:class:`sfp.hw.dma_system.DmaSystem` under cocotb (``cocotb_dma_tb``) with
our own memory models (sim_tests/mem_models.py): an AXI4 slave with random
back-pressure and latency, B responses reordered across IDs, read bursts of
the two IDs (index, data) reordered and interleaved, one address range
answered SLVERR; and a LiteDRAM-native-port memory 16 bits wide (the
width adapter splits each 128-bit word into 8).  The units' clock (5 ns)
and the memory clock (7.3 ns) are unrelated.

Stimulus: real training tensors (weights, activations, gradients, rounded
to bf16) with the container ladder (bf16 lossless, m3e5, m2e4, m1e3; plain
and, in the Gecko build, Gecko), lengths that are not multiples of the
block; one tensor's data straddles a 4 KiB boundary.  Expected words, block
lengths and values come from the golden model (``encode_image``,
``quantize``).  Loads: whole tensors, single blocks, a range clipped at the
tensor's end, a refused range.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from sfp.hw.dma_system import DmaSystem
from sfp.hw.params import HwParams
from sfp.model.formats import Settings
from sfp.sim_tests.harness import run_sim
from sfp.sim_tests.packer_ref import cfg_value, make_case, real_tensor_bits

LADDER = [
    ("bf16", dict(man_bits=7, exp_bits=8, exp_base=0)),
    ("m3e5", dict(man_bits=3, exp_bits=5)),
    ("m2e4", dict(man_bits=2, exp_bits=4)),
    ("m1e3", dict(man_bits=1, exp_bits=3)),
]

SOURCES = [("epoch10/weight/conv2.weight", 0), ("epoch10/act/relu1.out", 900), ("epoch10/grad/fc1.weight", 0),
           ("epoch01/weight/fc1.weight", 0)]


def _tensors(p: HwParams, gecko: bool, err: bool):
    """Cases + per-tensor placement (word addresses)."""
    B = p.block
    lengths = [2 * B + 37, 3 * B + 5, 20 * B + 11, 2 * B]
    per_page = 4096 // (p.word // 8)
    out, data = [], {}
    d_addr = per_page - 5                       # the first tensor straddles a 4 KiB boundary
    i_addr = 1 << 14
    for i, ((key, off), n, (name, kw)) in enumerate(zip(SOURCES, lengths, LADDER)):
        s = Settings(source=p.source, block=B, word=p.word, gecko=gecko and i % 2 == 1,
                     **({"group": p.group} if gecko else {}), **kw)
        c = make_case(real_tensor_bits(p.source, key, n, off), s)
        out.append({"cfg": cfg_value(c.settings, c.n), "data_addr": d_addr, "index_addr": i_addr, "name": name})
        data[f"bits_{i}"] = c.bits
        data[f"words_{i}"] = np.array([str(w) for w in c.words])     # W-bit ints as text (npz has no big ints)
        data[f"lens_{i}"] = np.array(c.lens, np.int64)
        data[f"out_{i}"] = c.out
        d_addr += len(c.words) + 3
        i_addr += -(-len(c.lens) // (p.word // 32)) + 1
    if err:                                     # a fifth tensor in the SLVERR range
        c = make_case(real_tensor_bits(p.source, "epoch10/weight/conv1.weight", B + 3), Settings(
            source=p.source, block=B, word=p.word, man_bits=3, exp_bits=5))
        i = len(out)
        out.append({"cfg": cfg_value(c.settings, c.n), "data_addr": 1 << 16, "index_addr": (1 << 16) + 512,
                    "name": "err", "err": True})
        data.update({f"bits_{i}": c.bits, f"words_{i}": np.array([str(w) for w in c.words]),
                     f"lens_{i}": np.array(c.lens, np.int64), f"out_{i}": c.out})
    return out, data


def _loads(tensors, B):
    loads = []
    for i, t in enumerate(tensors):
        nb = -(-t["cfg"]["length"] // B)
        loads.append((i, 0, nb))                # whole tensor
        loads.append((i, nb - 1, nb))           # its last (partial) block alone
        if nb > 2:
            loads.append((i, 1, 2))             # a middle block
            loads.append((i, 1, nb + 5))        # a range clipped at the end
    loads.append((0, 3, 3))                     # empty range: refused
    return loads


# Verilator flags for these builds: Yosys emits an empty `always @*`; LiteX's Verilog warns a lot.
VERILATOR_ARGS = ["-Wno-fatal"]

CASES = {
    # small blocks: many index words per tensor, so index and data reads overlap (and get reordered)
    "axi": dict(p=HwParams(lanes=8, word=128, block=32), bus="axi", gecko=False, err=True),
    "axi_gecko": dict(p=HwParams(lanes=8, word=128, block=32, gecko=True), bus="axi", gecko=True, err=False),
    # Verilator: under Icarus an X from the 4-state start-up reaches the native adapter's command
    # register and the run stalls (not understood yet; the same design passes in amaranth.sim and
    # Verilator, see tests/test_hw_dma.py::test_native_adapter_roundtrip)
    "native16": dict(p=HwParams(lanes=8, word=128, block=64), bus="native", gecko=False, err=False,
                     sim="verilator"),
}


# native16 builds with Verilator (~2.5 min): outside the default suite (SFP_DMA_ALL=1 runs it); the
# native adapter is covered by tests/test_hw_dma.py and, with the real controller, by the LiteDRAM test.
DEFAULT = [c for c in CASES if c != "native16" or os.environ.get("SFP_DMA_ALL")]


@pytest.mark.parametrize("case", DEFAULT)
def test_dma_store_load(case):
    c = CASES[case]
    p = c["p"]
    tensors, data = _tensors(p, c["gecko"], c["err"])
    aw = 20
    params = {"lanes": p.lanes, "word": p.word, "block": p.block, "gecko": p.gecko, "group": p.group,
              "addr_width": aw, "bus": c["bus"], "native_width": 16, "tensors": tensors,
              "loads": _loads(tensors, p.block), "seed": 7}
    if os.environ.get("SFP_DMA_DEBUG"):
        params["debug"] = os.environ["SFP_DMA_DEBUG"].split(",")
    if c["err"]:
        params["err_range"] = [(1 << 16) * (p.word // 8), ((1 << 16) + 1024) * (p.word // 8)]
    if c["bus"] == "axi":
        params["expect_stats"] = ["b_reordered", "r_reordered"]
    run_sim(lambda: DmaSystem(p, c["bus"], addr_width=aw, native_width=16, native_addr_width=aw + 3),
            top="dma_top", key=f"dma_{case}", test_module="sfp.sim_tests.cocotb_dma_tb",
            simulator=os.environ.get("SFP_DMA_SIM", c.get("sim", "icarus")),
            params=params, data=data,
            build_args=VERILATOR_ARGS if os.environ.get("SFP_DMA_SIM", c.get("sim")) == "verilator" else ())


if __name__ == "__main__":                       # debugging: python -m sfp.sim_tests.test_dma CASE [block]
    import sys
    name = sys.argv[1]
    if len(sys.argv) > 2:
        c = dict(CASES[name])
        c["p"] = HwParams(lanes=8, word=128, block=int(sys.argv[2]), gecko=c["gecko"])
        CASES[name + "_b"] = c
        name += "_b"
    test_dma_store_load(name)


def _litedram_params(p, tensors, loads, **kw):
    return {"source": p.source, "lanes": p.lanes, "word": p.word, "block": p.block, "gecko": p.gecko,
            "group": p.group, "addr_width": 20, "bus": "litedram", "tensors": tensors, "loads": loads, "seed": 3,
            "clk_ps": 5000, "mem_clk_ps": 20000, **kw}


def litedram_run(p, tensors, data, loads, *, key, testcase=None, **kw):
    """DmaSystem on the generated ULX3S SDR controller (LiteDRAM + its SDRAM model), under Icarus."""
    from sfp.hw.dram_system import LiteDramSystem
    from sfp.hw.litedram_gen import generate

    core = generate("sdr", sim=True)
    sim = os.environ.get("SFP_DMA_SIM", "verilator")
    return run_sim(lambda: LiteDramSystem(p, core, addr_width=20), top="dram_top", key=key,
                   test_module="sfp.sim_tests.cocotb_dma_tb", simulator=sim, testcase=testcase,
                   params=_litedram_params(p, tensors, loads, **kw), data=data, extra_sources=[core.verilog],
                   build_args=VERILATOR_ARGS if sim == "verilator" else ())


def test_litedram_sdr_store_load():
    """Real tensors through the real LiteDRAM SDR controller and back: whole tensors and single blocks."""
    pytest.importorskip("litedram")
    p = HwParams(lanes=8, word=128, block=64)
    tensors, data = _tensors(p, False, False)
    keep = [0, 2]                                  # bf16 as is, m2e4 (21 blocks)
    tensors = [tensors[i] for i in keep]
    data = {k.rsplit("_", 1)[0] + f"_{keep.index(int(k.rsplit('_', 1)[1]))}": v for k, v in data.items()
            if int(k.rsplit("_", 1)[1]) in keep}
    loads = [(0, 0, 3), (0, 2, 3), (1, 0, 21), (1, 7, 8), (1, 20, 21)]
    litedram_run(p, tensors, data, loads, key="dram_sdr_b64", testcase="store_and_load")
