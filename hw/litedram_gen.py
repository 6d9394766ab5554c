"""Generate (and cache) standalone LiteDRAM controllers with ``litedram_gen``.

Needs the ``dram`` extra (``litex``, ``litedram``, ``migen``, pinned; the
``--sim`` build also ``liteeth``, ``litescope``, ``pythondata-misc-tapcfg``).
Two controllers:

* ``"sdr"``: the ULX3S's SDR SDRAM (MT48LC16M16, 16 bits, GENSDRPHY), 50 MHz;
* ``"ddr3"``: an ECP5 DDR3 board (2 x MT41K64M16, ECP5DDRPHY), 75 MHz.

With ``sim=True`` the PHY is LiteDRAM's ``SDRAMPHYModel`` (a behavioural
SDRAM with the module's timings, inside the generated Verilog), so the
controller runs under Icarus or Verilator.  Output goes to
``build/litedram/<name>/`` and is reused while the configuration and the
LiteDRAM version are unchanged (a stamp file holds their hash).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CONTROLLERS", "LiteDramCore", "generate", "LiteDramGenError"]

REPO_ROOT = Path(__file__).resolve().parent.parent

CONTROLLERS = {
    "sdr": {
        "device": "LFE5U-85F-6BG381C", "cpu": "None", "memtype": "SDR", "uart": "rs232",
        "sdram_module": "MT48LC16M16", "sdram_module_nb": 2, "sdram_rank_nb": 1, "sdram_phy": "GENSDRPHY",
        "sys_clk_freq": 50e6, "user_ports": {"native_0": {"type": "native"}},
    },
    "ddr3": {
        "device": "LFE5U-85F-8BG381C", "cpu": "None", "memtype": "DDR3", "uart": "rs232",
        "sdram_module": "MT41K64M16", "sdram_module_nb": 4, "sdram_rank_nb": 1, "sdram_phy": "ECP5DDRPHY",
        "sys_clk_freq": 75e6, "init_clk_freq": 25e6, "cmd_latency": 0, "rtt_nom": "60ohm", "rtt_wr": "60ohm",
        "ron": "34ohm", "user_ports": {"native_0": {"type": "native"}},
    },
}


class LiteDramGenError(RuntimeError):
    """litedram_gen is missing or failed (one line)."""


@dataclass
class LiteDramCore:
    name: str              # Verilog module name
    verilog: Path
    csr_csv: Path
    sdram_phy_h: Path
    data_width: int        # native user port
    addr_width: int
    sys_clk_hz: float

    @property
    def sim(self) -> bool:
        """Built with LiteDRAM's SDRAM model (``--sim``): no pins, no reset input."""
        return self.name.endswith("_sim")

    def init_writes(self, delay_scale: int = 1):
        from .dram_init import init_writes
        return init_writes(self.sdram_phy_h.read_text(), self.csr_csv.read_text(), delay_scale=delay_scale)


def _versions() -> str:
    try:
        from importlib.metadata import version
        return ",".join(f"{p}={version(p)}" for p in ("litedram", "litex", "migen"))
    except Exception as exc:                      # pragma: no cover
        raise LiteDramGenError(f"LiteDRAM is not installed ({exc}): pip install -e '.[dram]'")


def generate(kind: str = "sdr", *, sim: bool = True, build_root: Path | None = None) -> LiteDramCore:
    """Generate (or reuse) the controller ``kind``; returns its files and user-port widths."""
    if kind not in CONTROLLERS:
        raise LiteDramGenError(f"unknown controller {kind!r} (one of {', '.join(CONTROLLERS)})")
    cfg = CONTROLLERS[kind]
    name = f"litedram_{kind}" + ("_sim" if sim else "")
    root = Path(build_root or os.environ.get("SFP_LITEDRAM_BUILD", REPO_ROOT / "build" / "litedram")).resolve()
    out = root / name
    key = hashlib.sha256(json.dumps([cfg, sim, _versions()], sort_keys=True).encode()).hexdigest()
    stamp = out / "stamp"
    vfile = out / "gateware" / f"{name}.v"
    if not (stamp.is_file() and stamp.read_text() == key and vfile.is_file()):
        out.mkdir(parents=True, exist_ok=True)
        yml = out / f"{name}.yml"
        yml.write_text(json.dumps(cfg, indent=2))     # JSON is YAML
        cmd = [sys.executable, "-m", "litedram.gen", "--no-compile", "--output-dir", str(out), "--name", name]
        if sim:
            cmd.append("--sim")
        cmd.append(str(yml))
        try:
            r = subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=600)
        except FileNotFoundError as exc:           # pragma: no cover
            raise LiteDramGenError(str(exc))
        (out / "gen.log").write_text(r.stdout + r.stderr)
        if r.returncode != 0 or not vfile.is_file():
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
            raise LiteDramGenError(f"litedram_gen failed for {kind}: {tail[0]} (log {out / 'gen.log'})")
        stamp.write_text(key)
    text = vfile.read_text()
    dw = re.search(r"output\s+wire\s+\[(\d+):0\]\s+user_port_native_0_rdata_data", text)
    aw = re.search(r"input\s+wire\s+\[(\d+):0\]\s+user_port_native_0_cmd_addr", text)
    if not (dw and aw):
        raise LiteDramGenError(f"no native user port found in {vfile}")
    return LiteDramCore(name, vfile, out / "csr.csv", out / "software" / "include" / "generated" / "sdram_phy.h",
                         int(dw.group(1)) + 1, int(aw.group(1)) + 1, cfg["sys_clk_freq"])


if __name__ == "__main__":
    for k in sys.argv[1:] or ["sdr"]:
        c = generate(k, sim=True)
        print(c)
