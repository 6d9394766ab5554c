"""The per-tensor status entry that the packer and the unpacker emit on ``m_status``.

One entry per tensor, in tensor order, so that no flag is lost to timing
(the sticky per-tensor flags of the first version could be read during a
single clock when tensors ran back to back) and a refused tensor is visible.
The golden model computes the same entries; the tests compare them field by
field.

Fields (both units use the one layout; a field a unit cannot raise stays 0):

* ``negative`` — packer: a negative value was stored with the sign elided
  (format.md 3.4; stored as its magnitude's container);
* ``special`` — packer: an Inf/NaN met ``specials = 0`` (format.md 3.5);
* ``unsupported`` — the tensor's ``cfg`` asks for something this build
  cannot do (refused: nothing stored / nothing decoded);
* ``corrupt`` — unpacker: the words cannot be a valid image (an invalid Gecko
  code, a block whose parse ends at another length than its index entry);
* ``length_error`` — unpacker: the word stream ended early or late relative
  to ``cfg.length`` and the block lengths, or an ``s_len`` entry disagrees
  with the words its block used;
* ``values`` — values in the tensor (packer: counted from ``s_axis``;
  unpacker: ``cfg.length``);
* ``words`` — words written (packer) or consumed (unpacker) for the tensor.
"""

from __future__ import annotations

from amaranth.lib import data

__all__ = ["status_layout"]


def status_layout() -> data.StructLayout:
    """The ``m_status`` payload (same for every configuration)."""
    return data.StructLayout({
        "negative": 1,
        "special": 1,
        "unsupported": 1,
        "corrupt": 1,
        "length_error": 1,
        "values": 32,
        "words": 32,
    })
