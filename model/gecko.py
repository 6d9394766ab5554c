"""Gecko: lossless coding of a group's exponent codes (format.md section 5).

Training tensors' exponent codes cluster just below the group's largest
code, with a tail that halves about every step down (a geometric
distribution, for which Rice codes are near-optimal).  Each group of up to
G codes is stored as

* a header: the group's largest code ``b`` (e bits), a zero flag ``z`` (1 bit)
  and a mode ``k`` (2 bits: Rice parameter 0..2, or 3 = raw);
* if ``b == 0`` (every code is zero) nothing more;
* if ``k == 3``: every code raw, e bits each (bounds any group at e+3 bits over raw);
* else each code's *symbol* s (its distance below ``b``, shifted up by one
  when ``z`` reserves symbol 0 for the zeros ReLU leaves) as a Rice code
  split into three sections: the k low bits of every symbol (fixed
  positions), the quotients q = s >> k in unary (q one-bits, then a zero;
  q >= Q = 8 is an escape written as Q ones and a zero), and the raw e-bit
  codes of the escapes.

The encoder picks the mode that makes the group smallest.  Every unary code
ends in exactly one zero bit, so a decoder finds N boundaries per clock as
the positions of the first N zeros (a prefix count), not by a serial scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Q", "MODE_BITS", "RAW", "SLICE", "slice_size", "header_bits", "worst_case_bits", "GroupCode", "code_groups", "symbols_to_codes"]

Q = 8            # unary cap: q >= Q is an escape
MODE_BITS = 2
RAW = 3          # mode value for raw storage
SLICE = 8        # values per slice: a group's fields are laid out slice by slice


def slice_size(group: int) -> int:
    return min(SLICE, group)


def header_bits(e: int) -> int:
    return e + 1 + MODE_BITS


def worst_case_bits(e: int, g: int) -> int:
    """Upper bound on one group's exponent bits: header plus raw storage."""
    return header_bits(e) + g * e


@dataclass
class GroupCode:
    base: np.ndarray     # (ng,) largest code of each group
    zflag: np.ndarray    # (ng,) 1 when symbol 0 means code 0
    mode: np.ndarray     # (ng,) Rice parameter k, or RAW
    sym: np.ndarray      # (ng, G) symbols (0 in padding)
    valid: np.ndarray    # (ng, G) bool, False in the padding of a short last group
    count: np.ndarray    # (ng,) values in the group
    exp_bits: int

    @property
    def rice(self) -> np.ndarray:
        """(ng,) bool: the group is Rice coded (not all-zero, not raw)."""
        return (self.base > 0) & (self.mode != RAW)

    @property
    def quotient(self) -> np.ndarray:
        """(ng, G) unary run lengths, capped at Q (Q marks an escape)."""
        return np.minimum(self.sym >> np.minimum(self.mode, 2)[:, None], Q)

    @property
    def escape(self) -> np.ndarray:
        return (self.quotient == Q) & self.valid & self.rice[:, None]

    @property
    def bits(self) -> np.ndarray:
        """Exponent bits of each group: header + sections."""
        return header_bits(self.exp_bits) + _body_bits(self.sym, self.valid, self.count, self.exp_bits, self.mode, self.base)


def _body_bits(sym, valid, count, e, mode, base):
    k = np.minimum(mode, 2)
    q = np.minimum(sym >> k[:, None], Q)
    rice = count * k + ((q + 1) * valid).sum(axis=1) + ((q == Q) & valid).sum(axis=1) * e
    body = np.where(mode == RAW, count * e, rice)
    return np.where(base > 0, body, 0)


def code_groups(codes: np.ndarray, group: int, e: int) -> GroupCode:
    """Gecko-code flat ``codes`` in consecutive groups of ``group`` (the last one may be short)."""
    codes = np.asarray(codes)
    n = codes.size
    ng = -(-n // group)
    padded = np.zeros(ng * group, np.int32)
    padded[:n] = codes
    codes = padded.reshape(ng, group)
    count = np.full(ng, group, np.int64)
    if ng:
        count[-1] = n - (ng - 1) * group
    valid = np.arange(group)[None, :] < count[:, None]
    base = codes.max(axis=1) if ng else np.zeros(0, np.int32)
    low = np.where(valid, codes, np.int32(1 << 30)).min(axis=1) if ng else np.zeros(0, np.int32)
    zflag = ((low == 0) & (base > 0)).astype(np.int32)
    sym = np.where((codes == 0) & (zflag[:, None] == 1), 0, base[:, None] - codes + zflag[:, None])
    sym = np.where(valid, sym, 0)
    costs = np.stack([_body_bits(sym, valid, count, e, np.full(ng, k), base) for k in range(RAW + 1)])
    mode = costs.argmin(axis=0).astype(np.int32) if ng else np.zeros(0, np.int32)
    mode = np.where(base > 0, mode, 0)
    return GroupCode(base, zflag, mode, sym, valid, count, e)


def symbols_to_codes(sym: np.ndarray, base, zflag) -> np.ndarray:
    """Decoder side: symbols (ng, G) of Rice-coded groups back to exponent codes."""
    base = np.asarray(base)[:, None].astype(np.int64)
    zflag = np.asarray(zflag)[:, None].astype(np.int64)
    sym = sym.astype(np.int64)
    return np.where((sym == 0) & (zflag == 1), 0, base - sym + zflag)
