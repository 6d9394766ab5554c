"""The unpacker on an arbitrary word stream: what the hardware returns and flags for one tensor.

:func:`unpack_stream` is the golden model of the RTL unpacker
(``sfp.hw.unpacker.Unpacker``) fed *any* words, not only a valid image: the
words a DMA engine read for one tensor (up to and including the word that
carried ``s_axis_tlast``), the tensor's ``cfg`` settings and length, and, in
a Gecko build, the tensor's block-index entries from ``s_len``.  It returns
the values the unpacker emits, whether it flags an error and which, and the
tensor's ``m_status`` entry (``sfp.hw.status``).  It rejects exactly the
inputs the hardware flags; :func:`sfp.model.container.decode` rejects the
same images (when the words are exactly the image, see ``docs/format.md`` 8).

API
---
``unpack_stream(words, s, length, lanes, s_len=None, supported=True, gecko_build=False) -> StreamResult``

* ``words``: sequence of ints (each ``0 <= w < 2**s.word``, or ``2**W`` with ``W``
  the build's word width when ``s`` is None), the tensor's words in order;
  the last one is the word that carried ``tlast``.  At least one word.
* ``s``: resolved :class:`sfp.model.formats.Settings` (integer
  ``exp_base``; ``word``, ``block``, ``group`` equal to the build's), or
  None for a tensor the build refuses whose settings do not even form a
  valid ``Settings``.
* ``length``: ``cfg.length`` (values; 0 is refused: no beats).
* ``lanes``: N, values per output beat.
* ``s_len``: the tensor's block-index entries (``ceil(length/B)`` ints), only
  read for a Gecko tensor (``s.gecko``) of a Gecko build; a Gecko build takes
  (and drops) them for every other tensor too.  ValueError if a Gecko tensor
  comes with another number of entries: that is the DMA engine's contract,
  the hardware counts them from ``cfg.length``.
* ``supported``: the build can do ``s`` (``sfp.hw.lane.cfg_supported``);
  False models a refused tensor.  ``length == 0`` is refused as well.
* ``gecko_build``: the unit is a Gecko build.  It decodes every tensor (Gecko
  or not) in *slices* of 8 values (format.md 5.1) instead of beats of N, so
  errors zero whole slices; see "granule" below.

``StreamResult`` fields:

* ``values``: uint32 array of ``beats * lanes`` source bit patterns, lane j of
  beat t at ``t*lanes + j``; lanes outside ``tkeep`` (past ``length``) are 0,
  and every value from the error's granule on is 0.
* ``beats``: ``ceil(length / lanes)``, always (also when refused or in error).
* ``error``: None, ``"unsupported"``, ``"corrupt"`` or ``"length"``.
* ``good``: the number of leading values decoded exactly (``length`` when no
  value was zeroed: no error, or a stream that was only too long).
* ``status``: the ``m_status`` entry, a dict with ``negative`` and
  ``special`` (0: packer flags), ``unsupported``, ``corrupt``,
  ``length_error`` (at most one of the last three is 1), ``values``
  (= ``length``) and ``words`` (= ``len(words)``: the unpacker always consumes
  a tensor's words up to ``tlast``).

Decoding proceeds granule by granule: a plain build's granule is one beat
of N values, a Gecko build's one slice of up to 8 values (a block's slices
start at the block's first value).  Words past the ``tlast`` word read as
zero bits.  The first granule at which one of these holds is the error
point (zeros from it on), in this priority:

*corrupt* (Gecko-coded blocks only): the group header has ``b = 0`` with
``z`` or ``k`` nonzero (the encoder never writes it); a unary run of more
than ``Q = 8`` ones among the slice's codes; a Rice symbol above the
group's base (a negative code); the slice ends past its block's last word
(``L_b`` words from the block start); or the block's last slice ends in a
word before the block's last (the parse ended at another length than
``L_b``).

*length*: the granule needs a word at or past the one after ``tlast`` (its
last bit lies there, or, for a block's last granule, the block's last word
``start_b + L_b - 1`` does); or, at a plain-layout block's first granule
of a Gecko tensor, ``L_b`` exceeds the block's plain length (the entry
disagrees with the words the layout uses).  After the tensor's last
granule, words left before ``tlast`` (a stream too long) are a length
error with no value zeroed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import gecko
from .formats import Settings
from .quantize import Fields, from_fields

__all__ = ["StreamResult", "unpack_stream", "SLICE"]

SLICE = gecko.SLICE


@dataclass
class StreamResult:
    values: np.ndarray
    beats: int
    error: str | None
    good: int
    status: dict = field(default_factory=dict)


class _Bits:
    """Reads bit fields of a little-endian word stream; bits past the last word are 0."""

    def __init__(self, words, wbits: int):
        self.words = [int(w) for w in words]
        self.w = wbits

    def word(self, i: int) -> int:
        return self.words[i] if 0 <= i < len(self.words) else 0

    def read(self, pos: int, n: int) -> int:
        if n == 0:
            return 0
        i, sh = divmod(pos, self.w)
        acc, k, got = 0, 0, 0
        while got < n + sh:
            acc |= self.word(i + k) << (k * self.w)
            k += 1
            got += self.w
        return (acc >> sh) & ((1 << n) - 1)


def _status(length: int, nwords: int, kind: str | None) -> dict:
    return {"negative": 0, "special": 0,
            "unsupported": int(kind == "unsupported"), "corrupt": int(kind == "corrupt"),
            "length_error": int(kind == "length"), "values": int(length), "words": int(nwords)}


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def unpack_stream(words, s: Settings | None, length: int, lanes: int, s_len=None,
                  supported: bool = True, gecko_build: bool = False) -> StreamResult:
    """Values, error and status of one tensor through the unpacker (see the module docstring)."""
    words = [int(w) for w in words]
    if not words:
        raise ValueError("a tensor has at least one word (the one with tlast)")
    length = int(length)
    beats = _ceil(length, lanes)
    out = np.zeros(beats * lanes, np.uint32)
    R = len(words)
    if not supported or length <= 0 or s is None:
        return StreamResult(out, beats, "unsupported", 0, _status(length, R, "unsupported"))
    if isinstance(s.exp_base, str):
        raise ValueError("resolve exp_base before modelling the unpacker")
    W, B = s.word, s.block
    nb = _ceil(length, B)
    gran = SLICE if gecko_build else lanes
    coded_tensor = bool(s.gecko) and gecko_build
    if coded_tensor:
        if s_len is None or len(s_len) != nb:
            raise ValueError(f"a Gecko tensor of {length} values has {nb} s_len entries, got "
                             f"{None if s_len is None else len(s_len)}")
        s_len = [int(x) for x in s_len]
    bits = _Bits(words, W)
    v = s.value_bits
    n_s = np.zeros(length, np.uint32)
    n_c = np.zeros(length, np.uint32)
    n_m = np.zeros(length, np.uint32)
    kind, good = None, length
    sb = 0                                          # block start, in words
    for b in range(nb):
        cnt = min(B, length - b * B)
        pw = _ceil(cnt * v, W)
        lb = s_len[b] if coded_tensor else pw
        v0 = b * B
        if coded_tensor and lb < pw:
            kind, at = _gecko_block(bits, s, sb, lb, cnt, R, (n_s, n_c, n_m), v0)
        else:
            kind, at = None, None
            for a in range(0, cnt, gran):
                k = min(gran, cnt - a)
                if a == 0 and lb > pw:
                    kind, at = "length", a
                    break
                end = sb * W + (a + k) * v
                need = sb + lb if a + k == cnt else _ceil(end, W)
                if need > R:
                    kind, at = "length", a
                    break
                for j in range(k):
                    r = bits.read(sb * W + (a + j) * v, v)
                    n_m[v0 + a + j] = r & ((1 << s.man_bits) - 1)
                    n_c[v0 + a + j] = (r >> s.man_bits) & ((1 << s.exp_bits) - 1)
                    n_s[v0 + a + j] = (r >> (s.man_bits + s.exp_bits)) & s.sign_bits
        if kind is not None:
            good = v0 + at
            break
        sb += lb
    if kind is None and sb != R:
        kind = "length"                            # words left before tlast (sb < R; sb > R was caught)
    vals = from_fields(Fields(n_s, n_c, n_m), s)
    vals[good:] = 0
    out[:length] = vals
    return StreamResult(out, beats, kind, good, _status(length, R, kind))


def _gecko_block(bits: _Bits, s: Settings, sb: int, lb: int, cnt: int, R: int, out, v0: int):
    """Parse one Gecko-coded block slice by slice; returns (error kind or None, value index in block)."""
    W, e, m, G = s.word, s.exp_bits, s.man_bits, s.group
    smb = s.sign_bits + m
    emask = (1 << e) - 1
    hb = gecko.header_bits(e)
    Q = gecko.Q
    bend = (sb + lb) * W
    pos = sb * W
    n_s, n_c, n_m = out
    b = z = k = 0
    for a in range(0, cnt, SLICE):
        n = min(SLICE, cnt - a)
        corrupt = False
        if a % G == 0:
            hdr = bits.read(pos, hb)
            b, z, k = hdr & emask, (hdr >> e) & 1, hdr >> (e + 1)
            corrupt |= b == 0 and (z != 0 or k != 0)
            pos += hb
        codes = [0] * n
        if b != 0 and k == 3:
            codes = [bits.read(pos + i * e, e) for i in range(n)]
            pos += n * e
        elif b != 0:
            rem = [bits.read(pos + i * k, k) for i in range(n)]
            pos += n * k
            qs = []
            for i in range(n):
                win = bits.read(pos, Q + 1)
                q = (win ^ (win + 1)).bit_length() - 1          # trailing ones
                if q > Q:
                    corrupt = True
                    break
                qs.append(q)
                pos += q + 1
            if not corrupt:
                for i in range(n):
                    if qs[i] == Q:                              # an escape: its raw code follows
                        codes[i] = bits.read(pos, e)
                        pos += e
                    else:
                        sym = (qs[i] << k) | rem[i]
                        c = 0 if (z and sym == 0) else b - sym + z
                        corrupt |= c < 0
                        codes[i] = c & emask
        if not corrupt:
            for i in range(n):
                r = bits.read(pos + i * smb, smb)
                n_m[v0 + a + i] = r & ((1 << m) - 1)
                n_s[v0 + a + i] = (r >> m) & s.sign_bits
                n_c[v0 + a + i] = codes[i]
            pos += n * smb
            corrupt |= pos > bend
            if a + n == cnt:
                corrupt |= pos <= bend - W               # parse ended before the block's last word
        if corrupt:
            return "corrupt", a
        need = sb + lb if a + n == cnt else _ceil(pos, W)
        if need > R:
            return "length", a
    return None, None
