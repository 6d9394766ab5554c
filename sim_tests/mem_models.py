"""cocotb memory models for the DMA tests: an AXI4 slave and a LiteDRAM-native-port memory.

cocotbext-axi (0.1.28, the newest on PyPI) depends on cocotb-bus and does
not run under cocotb 2.x, so these are our own.  Both keep the memory as a
dict of W-bit (AXI) / M-bit (native) words; a word never written reads as
a fixed junk pattern, so reading unwritten memory shows up as a mismatch.

:class:`Axi4SlaveMem` checks the master's side of the protocol as it goes
(each violation is recorded in ``errors``; the test asserts it is empty):
INCR bursts only, full-width beats, 1..256 beats, no burst across a 4 KiB
boundary, aligned addresses, WLAST exactly on each burst's last beat,
WSTRB all ones, valid held until ready with a stable payload (AW, AR, W).
Its own freedoms, all random from one seed: AWREADY/WREADY/ARREADY
back-pressure, a latency per transaction, B responses returned out of order
across IDs (in order within an ID, as AXI requires), read bursts of
different IDs reordered and their beats interleaved, RVALID gaps, and an
address range answered with SLVERR.
"""

from __future__ import annotations

import random

from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["Axi4SlaveMem", "NativeMem", "JUNK"]

JUNK = 0x5A5A_A5A5_DEAD_BEEF_0123_4567_89AB_CDEF


def _int(h) -> int:
    try:
        return int(h.value)
    except ValueError:
        return -1


class Axi4SlaveMem:
    """AXI4 slave memory on ``dut.<prefix>aw*`` ... ``<prefix>r*`` (master-side names, see hw/axi4_master.py).

    Parameters: ``word`` (data bits), ``seed``, ``ready_prob`` (AW/W/AR
    ready probability), ``latency`` (min, max clocks from address to first
    response), ``r_gap_prob`` (RVALID idle per beat), ``interleave``
    (switch between ready read bursts of different IDs between beats),
    ``err_range`` ((lo, hi) byte addresses answered SLVERR, or None).
    """

    def __init__(self, dut, clk, word, *, prefix="axi__", seed=0, ready_prob=0.6, latency=(2, 30),
                 r_gap_prob=0.2, interleave=True, err_range=None):
        self.dut, self.clk, self.word, self.p = dut, clk, word, prefix
        self.nb = word // 8
        self.rng = random.Random(seed)
        self.ready_prob, self.latency, self.r_gap_prob = ready_prob, latency, r_gap_prob
        self.interleave, self.err_range = interleave, err_range
        self.mem: dict[int, int] = {}               # byte address of a word -> word
        self.errors: list[str] = []
        self.aw: list[tuple] = []                   # accepted AW: (id, addr, len, err)
        self.wbeats: list[int] = []                 # beats of the burst being received
        self.wdone: list[list[int]] = []            # complete W bursts waiting for their AW
        self.b_pending: list[list] = []             # [time, id, resp]
        self.r_pending: list[list] = []             # [time, id, addr, len, beat, err]
        self.cur_b = None
        self.cur_r = None
        self.now = 0
        self.stats = {"aw": 0, "ar": 0, "w": 0, "r": 0, "b_reordered": 0, "r_reordered": 0, "max_outstanding": 0}
        self._held = {}
        for n in ("awready", "wready", "arready", "bvalid", "rvalid"):
            self._h(n).value = 0

    def _h(self, name):
        return getattr(self.dut, self.p + name)

    def start(self):
        import cocotb
        self._task = cocotb.start_soon(self._run())
        return self

    def read_word(self, byte_addr: int) -> int:
        return self.mem.get(byte_addr, JUNK & ((1 << self.word) - 1))

    def _err(self, msg):
        if len(self.errors) < 20:
            self.errors.append(f"t={self.now}: {msg}")

    def _is_err(self, addr, length):
        if self.err_range is None:
            return False
        lo, hi = self.err_range
        return addr < hi and addr + length * self.nb > lo

    def _check_addr(self, kind, addr, length, size, burst):
        if burst != 1:
            self._err(f"{kind}BURST {burst} (INCR expected)")
        if (1 << size) != self.nb:
            self._err(f"{kind}SIZE {size} (full width {self.nb} bytes expected)")
        if addr % self.nb:
            self._err(f"{kind}ADDR {addr:#x} not aligned")
        if (addr // 4096) != ((addr + (length + 1) * self.nb - 1) // 4096):
            self._err(f"{kind} burst {addr:#x}+{length + 1} beats crosses 4 KiB")

    def _stable(self, ch, names):
        """Valid held until ready with a stable payload (checked on the cycle after a stall)."""
        valid = _int(self._h(ch + "valid"))
        ready = _int(self._h(ch + "ready"))
        vals = tuple(_int(self._h(n)) for n in names)
        prev = self._held.get(ch)
        if prev is not None and prev != vals:
            self._err(f"{ch.upper()} payload changed or valid dropped while stalled")
        self._held[ch] = vals if (valid == 1 and ready != 1) else None
        if prev is not None and valid != 1:
            self._err(f"{ch.upper()}VALID dropped before READY")

    async def _run(self):
        rng = self.rng
        lat = lambda: rng.randint(*self.latency)
        while True:
            # -- drive this cycle's outputs ------------------------------------------------------
            for n in ("awready", "wready", "arready"):
                self._h(n).value = int(rng.random() < self.ready_prob)
            self.stats["b_ids_max"] = max(self.stats.get("b_ids_max", 0), len({b[1] for b in self.b_pending}))
            if self.cur_b is None:
                ready = [b for b in self.b_pending if b[0] <= self.now]
                if ready:
                    ids = sorted({b[1] for b in ready})
                    pick_id = rng.choice(ids)
                    b = next(b for b in self.b_pending if b[1] == pick_id)   # oldest of that ID
                    if b[0] <= self.now:
                        if b is not self.b_pending[0]:
                            self.stats["b_reordered"] += 1
                        self.b_pending.remove(b)
                        self.cur_b = b
            if self.cur_b is not None:
                self._h("bvalid").value = 1
                self._h("bid").value = self.cur_b[1]
                self._h("bresp").value = self.cur_b[2]
            else:
                self._h("bvalid").value = 0
            if self.cur_r is None or (self.interleave and rng.random() < 0.3):
                cands = []
                for i in sorted({r[1] for r in self.r_pending}):
                    r = next(r for r in self.r_pending if r[1] == i)      # per ID, oldest first
                    if r[0] <= self.now:
                        cands.append(r)
                if cands and (self.cur_r is None or self.cur_r[4] == 0 or self.interleave):
                    nxt = rng.choice(cands)
                    if self.cur_r is not None and self.cur_r[4] > 0 and nxt is not self.cur_r:
                        pass                                             # beats of two IDs interleave
                    if nxt is not self.r_pending[0]:
                        self.stats["r_reordered"] += 1
                    self.cur_r = nxt
            r = self.cur_r
            if r is not None and rng.random() >= self.r_gap_prob:
                _, rid, addr, length, beat, err = r
                self._h("rvalid").value = 1
                self._h("rid").value = rid
                self._h("rdata").value = self.read_word(addr + beat * self.nb)
                self._h("rresp").value = 2 if err else 0
                self._h("rlast").value = int(beat == length)
            else:
                self._h("rvalid").value = 0
            self.stats["max_outstanding"] = max(self.stats["max_outstanding"], len(self.r_pending) + len(self.aw))

            await ReadOnly()
            # -- sample handshakes ---------------------------------------------------------------
            self._stable("aw", ("awid", "awaddr", "awlen"))
            self._stable("ar", ("arid", "araddr", "arlen"))
            self._stable("w", ("wdata", "wlast"))
            if _int(self._h("awvalid")) == 1 and _int(self._h("awready")) == 1:
                a, ln = _int(self._h("awaddr")), _int(self._h("awlen"))
                self._check_addr("AW", a, ln, _int(self._h("awsize")), _int(self._h("awburst")))
                self.aw.append((_int(self._h("awid")), a, ln, self._is_err(a, ln + 1)))
                self.stats["aw"] += 1
            if _int(self._h("wvalid")) == 1 and _int(self._h("wready")) == 1:
                self.stats["w"] += 1
                if _int(self._h("wstrb")) != (1 << self.nb) - 1:
                    self._err("WSTRB not all ones")
                self.wbeats.append(_int(self._h("wdata")))
                if _int(self._h("wlast")) == 1:          # W may run ahead of AW (AXI allows it)
                    self.wdone.append(self.wbeats)
                    self.wbeats = []
            while self.aw and self.wdone:
                wid, a, ln, err = self.aw.pop(0)
                beats = self.wdone.pop(0)
                if len(beats) != ln + 1:
                    self._err(f"WLAST after {len(beats)} beats, AWLEN says {ln + 1}")
                if not err:
                    for i, v in enumerate(beats):
                        self.mem[a + i * self.nb] = v
                # bimodal write latency, mostly slow for odd IDs and fast for even ones, so that
                # responses of the two IDs overtake each other often
                slow = rng.random() < (0.8 if wid & 1 else 0.2)
                blat = rng.randint(40, 80) if slow else rng.randint(1, 3)
                self.b_pending.append([self.now + blat, wid, 2 if err else 0])
            if self.cur_b is not None and _int(self._h("bready")) == 1:
                self.cur_b = None
            if _int(self._h("arvalid")) == 1 and _int(self._h("arready")) == 1:
                a, ln = _int(self._h("araddr")), _int(self._h("arlen"))
                self._check_addr("AR", a, ln, _int(self._h("arsize")), _int(self._h("arburst")))
                self.r_pending.append([self.now + lat(), _int(self._h("arid")), a, ln, 0, self._is_err(a, ln + 1)])
                self.stats["ar"] += 1
            if _int(self._h("rvalid")) == 1 and _int(self._h("rready")) == 1 and r is not None:
                self.stats["r"] += 1
                r[4] += 1
                if r[4] > r[3]:
                    self.r_pending.remove(r)
                    self.cur_r = None
            await RisingEdge(self.clk)
            self.now += 1


class NativeMem:
    """LiteDRAM native user port memory (``dut.<prefix>cmd_*``, ``wdata_*``, ``rdata_*``).

    Behaves like LiteDRAM's port as far as the user sees it: commands in
    order with random ``cmd_ready``; write data taken in command order with
    random ``wdata_ready``; read data returned in order after a random
    latency, ignoring ``rdata_ready`` (LiteDRAM does; the model records it
    as an error if the user was not ready, i.e. a word would be lost).
    """

    def __init__(self, dut, clk, width, *, prefix="native__", seed=0, ready_prob=0.6, latency=(4, 20)):
        self.dut, self.clk, self.width, self.p = dut, clk, width, prefix
        self.rng = random.Random(seed)
        self.ready_prob, self.latency = ready_prob, latency
        self.mem: dict[int, int] = {}
        self.errors: list[str] = []
        self.wq: list[int] = []          # addresses of accepted writes waiting for data
        self.rq: list[list] = []         # [time, addr]
        self.now = 0
        for n in ("cmd_ready", "wdata_ready", "rdata_valid", "rdata_data"):
            getattr(dut, prefix + n).value = 0

    def _h(self, name):
        return getattr(self.dut, self.p + name)

    def start(self):
        import cocotb
        self._task = cocotb.start_soon(self._run())
        return self

    async def _run(self):
        rng = self.rng
        mask = (1 << self.width) - 1
        while True:
            self._h("cmd_ready").value = int(rng.random() < self.ready_prob)
            self._h("wdata_ready").value = int(bool(self.wq) and rng.random() < self.ready_prob)
            out = self.rq[0] if self.rq and self.rq[0][0] <= self.now else None
            self._h("rdata_valid").value = int(out is not None)
            if out is not None:
                self._h("rdata_data").value = self.mem.get(out[1], JUNK & mask)
            await ReadOnly()
            if out is not None:
                if _int(self._h("rdata_ready")) != 1:
                    self.errors.append(f"t={self.now}: read data lost (rdata_ready low)")
                self.rq.pop(0)
            if _int(self._h("cmd_valid")) == 1 and _int(self._h("cmd_ready")) == 1:
                a = _int(self._h("cmd_addr"))
                if _int(self._h("cmd_we")) == 1:
                    self.wq.append(a)
                else:
                    t = max(self.now + rng.randint(*self.latency), (self.rq[-1][0] + 1) if self.rq else 0)
                    self.rq.append([t, a])
            if _int(self._h("wdata_valid")) == 1 and _int(self._h("wdata_ready")) == 1:
                we = _int(self._h("wdata_we"))
                if we != (1 << (self.width // 8)) - 1:
                    self.errors.append(f"t={self.now}: partial write mask {we:#x}")
                self.mem[self.wq.pop(0)] = _int(self._h("wdata_data"))
            await RisingEdge(self.clk)
            self.now += 1
