"""cocotb fuzz campaign on ``sfp_unpacker``: damaged tensors, each followed by a clean one.

Run by ``sim_tests/test_fuzz.py``, which computes every expectation with
the golden model (:func:`sfp.model.stream.unpack_stream`) and passes the
tensors in ``sim_data()``: ``words`` (uint32 chunks, ``W/32`` per word),
``word_off``, ``cfg`` (``CFG_FIELDS`` columns), ``beats``, ``values``,
``val_off``, ``error`` (0 none, 1 length, 2 corrupt, 3 unsupported),
``kind``, and for a Gecko build ``slen``/``slen_off`` (each tensor's
block-index entries, driven on ``s_len`` beside the words).  Tensors ``2k`` (damaged) and ``2k+1`` (clean) form pair ``k``.

One coroutine drives everything, clock by clock (fast under both
simulators): the pair's words back to back on ``s_axis`` (the ``cfg`` pins
set with each tensor's first word), a random ``m_axis_tready``, and, if
the top has it, an always-ready ``m_status``.  Per pair it checks

* no hang: some handshake on ``s_axis`` or ``m_axis`` at least every
  :data:`IDLE_LIMIT` clocks, and the pair done within
  ``PAIR_BASE + PAIR_PER * (words + beats)`` clocks;
* the damaged tensor: exactly ``ceil(length/N)`` beats with ``tlast`` on
  the last, the model's values, and (with ``m_status``) the model's status
  entry (error flag exactly when the model rejects);
* the clean tensor after it: exact.

A failing pair is recorded with its kind and what went wrong, the DUT is
reset (so one defect does not hide the rest) and the campaign goes on;
the summary (``result_file`` in ``sim_params()``, JSON) counts failures
per kind and check.  The cocotb test fails if any pair failed.
"""

from __future__ import annotations

import json
import random
from collections import Counter

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from sfp.sim_tests.cocotb_packer_tb import _bit, do_reset, start
from sfp.sim_tests.harness import sim_data, sim_params

IDLE_LIMIT = 100
PAIR_BASE, PAIR_PER = 60, 3
ERRORS = (None, "length", "corrupt", "unsupported")
CFG_FIELDS = ("man_bits", "exp_bits", "exp_base", "sign", "specials", "rounding", "gecko", "seed", "length")
STATUS_FIELDS = ("negative", "special", "unsupported", "corrupt", "length_error", "values", "words")


def _int(h) -> int:
    try:
        return int(h.value)
    except ValueError:
        return -1                        # X/Z: never equal to an expected value


class Status:
    """Reads ``m_status`` entries: per-field ports ``m_status_t<field>`` or one packed ``m_status_tdata``."""

    def __init__(self, dut):
        self.present = hasattr(dut, "m_status_tvalid")
        if not self.present:
            return
        self.valid, self.ready = dut.m_status_tvalid, dut.m_status_tready
        self.fields = {f: getattr(dut, f"m_status_{f}", None) or getattr(dut, f"m_status_t{f}", None)
                       for f in STATUS_FIELDS}
        self.packed = getattr(dut, "m_status_tdata", None)
        if self.packed is not None and any(h is None for h in self.fields.values()):
            from sfp.hw.status import status_layout
            self.layout = status_layout()

    def read(self) -> dict:
        if all(h is not None for h in self.fields.values()):
            return {f: _int(h) for f, h in self.fields.items()}
        raw = _int(self.packed)
        return {name: (raw >> fld.offset) & ((1 << fld.width) - 1) for name, fld in self.layout}


@cocotb.test()
async def campaign(dut):
    prm = sim_params()
    z = sim_data()
    words, woff, cfgs = z["words"], z["word_off"], z["cfg"]
    beats, values, voff, errors, kinds = z["beats"], z["values"], z["val_off"], z["error"], z["kind"]
    kind_names = prm["kinds"]
    n, sw, chunks = prm["lanes"], prm["src_width"], words.shape[1]
    rng = random.Random(prm.get("seed", 1))
    ready_prob = prm.get("ready_prob", 0.75)
    npairs = len(beats) // 2

    await start(dut)
    status = Status(dut)
    if status.present:
        status.ready.value = 1
    s_valid, s_ready, s_data, s_last = dut.s_axis_tvalid, dut.s_axis_tready, dut.s_axis_tdata, dut.s_axis_tlast
    m_valid, m_ready, m_data, m_keep, m_last = (dut.m_axis_tvalid, dut.m_axis_tready, dut.m_axis_tdata,
                                                dut.m_axis_tkeep, dut.m_axis_tlast)
    cfg_h = [getattr(dut, f"cfg_{f}") for f in CFG_FIELDS]
    gecko = hasattr(dut, "s_len_tvalid")      # a Gecko build reads every tensor's block index on s_len
    if gecko:
        slen, soff = z["slen"], z["slen_off"]
        l_valid, l_ready, l_data, l_last = dut.s_len_tvalid, dut.s_len_tready, dut.s_len_tdata, dut.s_len_tlast

    def word(i: int) -> int:
        return sum(int(words[i, c]) << (32 * c) for c in range(chunks))

    def expected_beats(t: int):
        out = []
        for b in range(int(beats[t])):
            lanes = values[voff[t] + b * n: voff[t] + (b + 1) * n]
            data = sum(int(v) << (j * sw) for j, v in enumerate(lanes))
            cnt = min(n, int(cfgs[t, CFG_FIELDS.index("length")]) - b * n)
            out.append((data, (1 << cnt) - 1, int(b == beats[t] - 1)))
        return out

    def expected_status(t: int) -> dict:
        e = ERRORS[int(errors[t])]
        nw = int(woff[t + 1] - woff[t])
        return {"unsupported": int(e == "unsupported"), "corrupt": int(e == "corrupt"),
                "length_error": int(e == "length"), "values": int(cfgs[t, CFG_FIELDS.index("length")]),
                "words": nw}

    fails: Counter = Counter()
    examples: dict = {}
    failed_pairs: dict = {}
    total_cycles = 0

    def fail(pair: int, what: str, detail: str):
        key = f"{kind_names[int(kinds[2 * pair])]}:{what}"
        fails[key] += 1
        examples.setdefault(key, f"pair {pair}: {detail}")
        failed_pairs.setdefault(pair, []).append(what)

    for k in range(npairs):
        ts = (2 * k, 2 * k + 1)
        feed = [(word(i), int(i == woff[t + 1] - 1), t) for t in ts for i in range(woff[t], woff[t + 1])]
        want = [expected_beats(t) for t in ts]
        lens = [(int(slen[i]), int(i == soff[t + 1] - 1)) for t in ts for i in range(soff[t], soff[t + 1])] \
            if gecko else []
        li = 0
        limit = PAIR_BASE + PAIR_PER * (len(feed) + len(lens) + sum(len(w) for w in want))
        got: list[list] = [[]]
        stats: list = []
        wi, idle, cyc, cur_t = 0, 0, 0, None
        hang = None
        while True:
            if wi < len(feed):
                d, last, t = feed[wi]
                if t != cur_t:
                    for h, v in zip(cfg_h, cfgs[t]):
                        h.value = int(v)
                    cur_t = t
                s_data.value, s_last.value, s_valid.value = d, last, 1
            else:
                s_valid.value = 0
            m_ready.value = int(rng.random() < ready_prob)
            if gecko:
                if li < len(lens):
                    l_data.value, l_last.value, l_valid.value = lens[li][0], lens[li][1], 1
                else:
                    l_valid.value = 0
            await ReadOnly()
            progress = False
            if gecko and li < len(lens) and _bit(l_ready):
                li += 1
                progress = True
            if wi < len(feed) and _bit(s_ready):
                wi += 1
                progress = True
            if _bit(m_valid) and _bit(m_ready):
                progress = True
                got[-1].append((_int(m_data), _int(m_keep), _int(m_last)))
                if _bit(m_last):
                    got.append([])
            if status.present and _bit(status.valid):
                stats.append(status.read())
            await RisingEdge(dut.clk)
            cyc += 1
            idle = 0 if progress else idle + 1
            done = wi == len(feed) and li == len(lens) and len(got) > 2 and (not status.present or len(stats) >= 2)
            if done:
                break
            if idle > IDLE_LIMIT or cyc > limit:
                hang = (f"{'no handshake for ' + str(IDLE_LIMIT) if idle > IDLE_LIMIT else 'over ' + str(limit)}"
                        f" clocks: {wi}/{len(feed)} words, {li}/{len(lens)} s_len entries taken, "
                        f"{sum(map(len, got))} beats out, "
                        f"s_axis_tready={_bit(s_ready)} m_axis_tvalid={_bit(m_valid)}")
                break
        total_cycles += cyc
        s_valid.value = 0
        if gecko:
            l_valid.value = 0
        bad = False
        if hang:
            fail(k, "hang", hang)
            bad = True
        for which, t in enumerate(ts):
            if hang:
                break
            role = "damaged" if which == 0 else "next_clean"
            g, w = got[which], want[which]
            if len(g) != len(w):
                fail(k, f"{role}_beats", f"{len(g)} beats, expected {len(w)}")
                bad = True
            elif g != w:
                j = next(i for i in range(len(w)) if g[i] != w[i])
                fail(k, f"{role}_values", f"beat {j} of {len(w)}: got {g[j]}, expected {w[j]}")
                bad = True
            if status.present:
                es = expected_status(t)
                gs = {f: stats[which][f] for f in es} if which < len(stats) else None
                if gs != es:
                    fail(k, f"{role}_status", f"status {gs}, expected {es}")
                    bad = True
        if bad:
            dut.m_axis_tready.value = 0
            await do_reset(dut)
    summary = {"pairs": npairs, "failed": sum(fails.values()), "cycles": total_cycles,
               "fails": dict(fails), "examples": examples, "status_port": status.present,
               "failed_pairs": failed_pairs}
    with open(prm["result_file"], "w") as f:
        json.dump(summary, f, indent=1)
    dut._log.info("fuzz: %d pairs, %d clocks, failures %s", npairs, total_cycles, dict(fails))
    assert not fails, f"{sum(fails.values())} failing pairs: {dict(fails)}; examples {examples}"
