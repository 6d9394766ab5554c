"""Formal-verification harnesses for the packer and the unpacker (docs/verification.md).

The properties live in harness wrappers around the units, not in the RTL
files, so that they observe the units through their ports and survive a
rewrite of the insides.  Where a property is about an internal queue (a
FIFO never overflows), :mod:`.props` finds the queue's signals by name in
the elaborated design (:func:`.props.tap`) and a missing name is an error,
never a silently vacuous proof.

:mod:`.props` — AXI4-Stream rules and the signal finder;
:mod:`.harness` — the harness components, one per proof family;
``sfp.synth.formal`` — writes the ``.sby`` files and runs SymbiYosys.
"""
