"""Top-level wrappers with flat AXI4-Stream-style port names, and the Verilog generator.

:class:`PackerTop` / :class:`UnpackerTop` wrap :class:`sfp.hw.packer.Packer` /
:class:`sfp.hw.unpacker.Unpacker` so that the generated Verilog has the port
names a user expects (``s_axis_tdata``, ``s_axis_tvalid``, ``cfg_man_bits``,
``status_negative`` ...) instead of Amaranth's flattened ``s_axis__payload``.
Clock and reset are ``clk`` and ``rst`` (synchronous, active high).

:func:`generate_verilog` writes ``sfp_packer.v``, ``sfp_unpacker.v`` and
``sfp_manifest.json`` (parameters, and every port with direction, width
and description)::

    python -m hw.top -o build/verilog --source bf16 --lanes 8 --word 128
    python -m hw.top -o build/verilog --gecko --group 32      # with the Gecko coder

Gecko builds (``HwParams.gecko``, lanes 1, 2, 4 or 8) have the same packer
ports and one more unpacker port, the block-index input stream
``s_len_tdata/tlast/tvalid/tready`` (the packer's ``m_len`` stream, every
tensor's entries; see :class:`sfp.hw.unpacker.Unpacker`).

Lint: both files pass ``verilator --lint-only -Wall`` with these waivers, with and without Gecko
(checked by ``tests/test_hw_packer.py::test_generated_verilog_lint``), all
properties of Amaranth/Yosys output rather than of the design:

* ``WIDTHEXPAND`` / ``WIDTHTRUNC``: Yosys pads and truncates operands implicitly.
* ``CASEINCOMPLETE``: ``case`` statements without a default for unreachable encodings.
* ``PROCASSINIT``: ``reg x = init;`` together with procedural assignments (Amaranth's init values).
* ``UNUSEDSIGNAL``: Yosys's ``$N`` temporaries and Amaranth's per-field debug
  wires of struct ports, plus inputs unused by design (``cfg_length`` in the
  packer, ``s_len_tlast`` in a Gecko unpacker, the random bits above ``d``
  in each lane).
* ``DECLFILENAME``: the submodules (``sfp_packer.core`` ...) share the top's file.

Both files also compile under Icarus (``iverilog``).  Under cocotb, build
Icarus with ``-g2005``: in cocotb's default ``-g2012`` mode declaration
initialisers make no time-0 event, and ``always @*`` blocks fed only by
registers stay X (see ``sim_tests/test_packer.py``).
"""

from __future__ import annotations

import gc
import json
import warnings
from pathlib import Path

from amaranth import Module, Shape
from amaranth.hdl import UnusedElaboratable
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .packer import Packer
from .params import HwParams, config_layout
from .status import status_layout
from .unpacker import Unpacker
from .wordpack import LEN_WIDTH

__all__ = ["PackerTop", "UnpackerTop", "generate_verilog", "PACKER_MODULE", "UNPACKER_MODULE", "LINT_WAIVERS"]

#: ``verilator --lint-only -Wall`` waivers for the generated Verilog (see the module docstring).
LINT_WAIVERS = ("-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE", "-Wno-PROCASSINIT",
                "-Wno-UNUSEDSIGNAL", "-Wno-DECLFILENAME")

PACKER_MODULE = "sfp_packer"
UNPACKER_MODULE = "sfp_unpacker"

_CFG_DOC = {
    "man_bits": "m, mantissa bits kept (0..max_man_bits)",
    "exp_bits": "e, exponent code width (2..max_exp_bits)",
    "exp_base": "resolved exp_base: the source exponent that maps to code 0",
    "sign": "1: sign stored, 0: elided",
    "specials": "1: top code reserved for Inf/NaN",
    "rounding": "0 rne, 1 rz, 2 stochastic",
    "gecko": "Gecko exponent coding (format.md 5; refused unless the hardware is built with gecko)",
    "seed": "stochastic-rounding seed",
    "length": "values in the tensor (unpacker only; the packer ends a tensor on tlast)",
}


def _cfg_members() -> dict:
    return {f"cfg_{name}": In(field.shape) for name, field in config_layout()}


def _connect_cfg(m: Module, top, cfg) -> None:
    for name, _ in config_layout():
        m.d.comb += getattr(cfg, name).eq(getattr(top, f"cfg_{name}"))


class PackerTop(wiring.Component):
    """:class:`sfp.hw.packer.Packer` with flat AXI4-Stream port names (see :func:`port_table`).

    ``s_axis_tdata`` holds N source values, lane j in bits ``[j*SW +: SW]``
    (SW = source width); ``s_axis_tkeep`` has one bit per lane (not per
    byte), a prefix mask read only on the ``tlast`` beat.

    ``m_status_tdata`` is the :func:`sfp.hw.status.status_layout` entry
    packed LSB first: bit 0 ``negative``, 1 ``special``, 2 ``unsupported``,
    3 ``corrupt`` (0 here), 4 ``length_error`` (0 here), bits 5-36
    ``values``, bits 37-68 ``words``; one entry per tensor, after its last
    word was taken.  It never holds up the data path (entries that find the
    8-entry queue full are dropped and set ``status_lost``).
    """

    def __init__(self, p: HwParams):
        self.p = p
        n, sw = p.lanes, p.src.width
        super().__init__({
            "s_axis_tdata": In(n * sw), "s_axis_tkeep": In(n), "s_axis_tlast": In(1),
            "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "m_axis_tdata": Out(p.word), "m_axis_tlast": Out(1),
            "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_len_tdata": Out(LEN_WIDTH), "m_len_tlast": Out(1),
            "m_len_tvalid": Out(1), "m_len_tready": In(1),
            **_cfg_members(),
            "m_status_tdata": Out(status_layout().size), "m_status_tvalid": Out(1), "m_status_tready": In(1),
            "status_negative": Out(1), "status_special": Out(1), "status_unsupported": Out(1),
            "status_lost": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = Packer(self.p)
        sa, ma, ml = core.s_axis, core.m_axis, core.m_len
        m.d.comb += [
            sa.payload.data.eq(self.s_axis_tdata),
            sa.payload.keep.eq(self.s_axis_tkeep),
            sa.payload.last.eq(self.s_axis_tlast),
            sa.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(sa.ready),
            self.m_axis_tdata.eq(ma.payload.data),
            self.m_axis_tlast.eq(ma.payload.last),
            self.m_axis_tvalid.eq(ma.valid),
            ma.ready.eq(self.m_axis_tready),
            self.m_len_tdata.eq(ml.payload.data),
            self.m_len_tlast.eq(ml.payload.last),
            self.m_len_tvalid.eq(ml.valid),
            ml.ready.eq(self.m_len_tready),
            self.status_negative.eq(core.status.negative),
            self.status_special.eq(core.status.special),
            self.status_unsupported.eq(core.status.unsupported),
            self.status_lost.eq(core.status.lost),
            self.m_status_tdata.eq(core.m_status.payload),
            self.m_status_tvalid.eq(core.m_status.valid),
            core.m_status.ready.eq(self.m_status_tready),
        ]
        _connect_cfg(m, self, core.cfg)
        return m


class UnpackerTop(wiring.Component):
    """:class:`sfp.hw.unpacker.Unpacker` with flat AXI4-Stream port names (see :func:`port_table`).

    With ``p.gecko`` it also has ``s_len_tdata`` (32), ``s_len_tlast``,
    ``s_len_tvalid`` (in) and ``s_len_tready`` (out): the block index.

    ``m_status_tdata`` is the :func:`sfp.hw.status.status_layout` entry
    packed LSB first: bit 0 ``negative`` (0 here), 1 ``special`` (0 here),
    2 ``unsupported``, 3 ``corrupt``, 4 ``length_error``, bits 5-36
    ``values``, bits 37-68 ``words``.
    """

    def __init__(self, p: HwParams):
        self.p = p
        n, sw = p.lanes, p.src.width
        s_len = {"s_len_tdata": In(LEN_WIDTH), "s_len_tlast": In(1),
                 "s_len_tvalid": In(1), "s_len_tready": Out(1)} if p.gecko else {}
        super().__init__({
            "s_axis_tdata": In(p.word), "s_axis_tlast": In(1),
            "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            **s_len,
            "m_axis_tdata": Out(n * sw), "m_axis_tkeep": Out(n), "m_axis_tlast": Out(1),
            "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            **_cfg_members(),
            "m_status_tdata": Out(status_layout().size), "m_status_tvalid": Out(1), "m_status_tready": In(1),
            "status_unsupported": Out(1), "status_corrupt": Out(1), "status_length_error": Out(1),
            "status_lost": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = Unpacker(self.p)
        ms = core.m_status
        m.d.comb += [
            self.m_status_tdata.eq(ms.payload),
            self.m_status_tvalid.eq(ms.valid),
            ms.ready.eq(self.m_status_tready),
            self.status_corrupt.eq(core.status.corrupt),
            self.status_length_error.eq(core.status.length_error),
            self.status_lost.eq(core.status.lost),
        ]
        sa, ma = core.s_axis, core.m_axis
        m.d.comb += [
            sa.payload.data.eq(self.s_axis_tdata),
            sa.payload.last.eq(self.s_axis_tlast),
            sa.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(sa.ready),
            self.m_axis_tdata.eq(ma.payload.data),
            self.m_axis_tkeep.eq(ma.payload.keep),
            self.m_axis_tlast.eq(ma.payload.last),
            self.m_axis_tvalid.eq(ma.valid),
            ma.ready.eq(self.m_axis_tready),
            self.status_unsupported.eq(core.status.unsupported),
        ]
        if self.p.gecko:
            sl = core.s_len
            m.d.comb += [
                sl.payload.data.eq(self.s_len_tdata),
                sl.payload.last.eq(self.s_len_tlast),
                sl.valid.eq(self.s_len_tvalid),
                self.s_len_tready.eq(sl.ready),
            ]
        _connect_cfg(m, self, core.cfg)
        return m


_DOC = {
    "clk": "clock (all logic is in this one domain)",
    "rst": "synchronous reset, active high",
    "status_negative": "sticky: a negative value met with the sign elided (stored as +0)",
    "status_special": "sticky: Inf/NaN met with specials off (stored saturated / +0)",
    "status_unsupported": "sticky: the tensor was refused: its cfg holds an invalid code (exp_bits < 2, "
                          "rounding 3, exp_base above the largest finite exponent - 1) or asks for more than "
                          "the build has (man_bits/exp_bits above the maxima, stochastic rounding or Gecko "
                          "not built)",
    "m_len_tdata": "length in words of one block (the block index entry L_b)",
    "m_len_tlast": "the tensor's last block",
    "m_len_tvalid": "block length valid",
    "m_len_tready": "block length accepted",
    "s_len_tdata": "block index entry L_b (words of one block), every tensor's, in order: "
                   "the packer's m_len stream (Gecko builds only)",
    "s_len_tlast": "the tensor's last block (not used: the count is ceil(cfg_length / block))",
    "s_len_tvalid": "block length valid",
    "s_len_tready": "block length accepted",
    "m_status_tdata": "per-tensor status entry, one per tensor in order (hw/status.py layout, LSB first): "
                      "bit 2 unsupported (refused: zero beats), 3 corrupt (invalid Gecko code / block parse), "
                      "4 length_error (words ended early/late vs cfg_length and the block lengths, or an s_len "
                      "entry disagrees), bits 5-36 values (cfg_length), bits 37-68 words consumed (up to tlast)",
    "m_status_tvalid": "status entry valid",
    "m_status_tready": "status entry accepted (never holds up the data path; entries that find the "
                       "8-entry queue full are dropped and set status_lost)",
    "status_corrupt": "flags of the last finished tensor: its words cannot be a valid Gecko image",
    "status_length_error": "flags of the last finished tensor: its word stream or block index disagreed "
                           "with cfg_length (output completed with zeros from the error on)",
    "status_lost": "sticky until reset: an m_status entry was dropped (m_status not read)",
}


def _signature_of(cls, p: HwParams) -> wiring.Signature:
    """The signature of ``cls(p)``, a top built only to read its ports and then dropped.

    Amaranth warns (``UnusedElaboratable``) when an elaboratable dies unused;
    the public way to say that this one is meant to be dropped is to filter
    that warning while it dies (``gc.collect`` inside the filter, in case a
    reference cycle keeps it alive past the ``del``).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        top = cls(p)
        sig = top.signature
        del top
        gc.collect()
    return sig


def port_table(which: str, p: HwParams) -> list[dict]:
    """Ports of the ``"packer"`` or ``"unpacker"`` top: name, direction, width, description."""
    sig = _signature_of(PackerTop if which == "packer" else UnpackerTop, p)
    n, sw = p.lanes, p.src.width
    vals = f"{n} x {p.source} values, lane j at bits [j*{sw} +: {sw}]"
    words = f"{p.word}-bit memory word (little-endian image: stream bit k of the word at bit k)"
    doc = dict(_DOC)
    if which == "packer":
        doc.update({
            "s_axis_tdata": vals, "s_axis_tkeep": "lane-valid prefix mask, read on the tlast beat only",
            "s_axis_tlast": "last beat of the tensor", "s_axis_tvalid": "beat valid", "s_axis_tready": "beat accepted",
            "m_axis_tdata": words, "m_axis_tlast": "the tensor's final word",
            "m_axis_tvalid": "word valid", "m_axis_tready": "word accepted",
            "m_status_tdata": "per-tensor status entry, one per tensor in order, after its last word was taken "
                              "(hw/status.py layout, LSB first): bit 0 negative, 1 special, 2 unsupported "
                              "(refused: no words), 3-4 zero, bits 5-36 values (counted from s_axis), "
                              "bits 37-68 words written",
            "status_negative": "flags of the tensor at the lanes' output (replaced by the next tensor's first "
                               "beat): a negative value met with the sign elided (stored as its magnitude)",
            "status_special": "flags of the tensor at the lanes' output: Inf/NaN met with specials off",
        })
    else:
        doc.update({
            "s_axis_tdata": words, "s_axis_tlast": "the tensor's final word",
            "s_axis_tvalid": "word valid", "s_axis_tready": "word accepted",
            "m_axis_tdata": vals + " (lanes outside tkeep are 0)",
            "m_axis_tkeep": "lane-valid prefix mask (all ones except maybe on the tlast beat)",
            "m_axis_tlast": "last beat of the tensor", "m_axis_tvalid": "beat valid", "m_axis_tready": "beat accepted",
            "status_unsupported": "flags of the last finished tensor: its cfg exceeds the built maxima, or "
                                  "cfg_length = 0 (refused: its words consumed up to tlast, ceil(cfg_length/N) "
                                  "zero beats emitted)",
        })
    for name, _ in config_layout():
        doc[f"cfg_{name}"] = "per-tensor setting, sampled with the tensor's first beat/word: " + _CFG_DOC[name]
    ports = [{"name": "clk", "direction": "input", "width": 1, "description": doc["clk"]},
             {"name": "rst", "direction": "input", "width": 1, "description": doc["rst"]}]
    for name, member in sig.members.items():
        ports.append({"name": name, "direction": "input" if member.flow == In else "output",
                      "width": Shape.cast(member.shape).width, "description": doc[name]})
    return ports


def generate_verilog(p: HwParams, outdir) -> dict:
    """Write ``sfp_packer.v``, ``sfp_unpacker.v`` and ``sfp_manifest.json`` into ``outdir``.

    Returns the manifest (also written as JSON).
    """
    from amaranth.back import verilog

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    manifest = {"params": p.as_dict(), "modules": {}}
    for which, cls, name in (("packer", PackerTop, PACKER_MODULE), ("unpacker", UnpackerTop, UNPACKER_MODULE)):
        text = verilog.convert(cls(p), name=name)
        (outdir / f"{name}.v").write_text(text)
        manifest["modules"][name] = {
            "file": f"{name}.v",
            "ports": port_table(which, p),
        }
    (outdir / "sfp_manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
