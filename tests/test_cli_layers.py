"""The package's layering, read from the source: the CLI is a thin layer without import cycles,
the libraries depend one way (model <- hw <- synth), and shared helpers exist once.

Imports are collected from the whole syntax tree, so an import inside a
function (how the old ``sfp/cli.py`` <-> ``sfp/demo.py`` <-> ``sfp/synth_cmd.py``
loop was hidden) counts like one at the top of a module.
"""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import pytest

from sfp.fileio import write_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
# Repository folder -> package name (pyproject.toml's package-dir).
PACKAGES = {"sfp": "sfp", "model": "sfp.model", "hw": "sfp.hw", "synth": "sfp.synth",
            "sim_tests": "sfp.sim_tests", "train": "sfp.train"}


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, pkg in PACKAGES.items():
        for f in sorted((ROOT / folder).glob("*.py")):
            mods[pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"] = f
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module of the project that ``name`` imports, anywhere in its body."""
    pkg = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


def _command_modules() -> set[str]:
    """``sfp.cli.COMMAND_MODULES``, which the CLI imports by name (importlib)."""
    tree = ast.parse(MODULES["sfp.cli"].read_text())
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "COMMAND_MODULES")
    return set(ast.literal_eval(node.value))


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}
GRAPH["sfp.cli"] |= _command_modules()


def _cycle(nodes: set[str]) -> list[str] | None:
    """A cycle of the import graph restricted to ``nodes``, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(GRAPH[n] & nodes):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(nodes):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_the_graph_sees_function_level_imports():
    """The checker itself: it finds lazy imports and a made-up cycle (else the tests below prove nothing)."""
    assert "sfp.model.fast" in GRAPH["sfp.codec_cmd"]           # imported inside cmd_encode
    assert "sfp.hw.top" in GRAPH["sfp.hw_cmd"]                  # imported inside cmd_generate
    assert "sfp.model" in GRAPH["sfp.model.blocks"]             # from . import bitpack
    assert _command_modules() <= GRAPH["sfp.cli"]
    GRAPH["sfp.errors"].add("sfp.cli")                          # a back edge is found
    try:
        assert _cycle({"sfp.cli", "sfp.errors"}) == ["sfp.cli", "sfp.errors", "sfp.cli"]
    finally:
        GRAPH["sfp.errors"].discard("sfp.cli")


def test_no_import_cycle_among_cli_modules():
    cli = {n for n in MODULES if n.count(".") == 1 and n.startswith("sfp.")} | {"sfp"}
    assert _cycle(cli) is None


def test_command_modules_do_not_import_the_cli_or_each_other():
    cmds = {"sfp.codec_cmd", "sfp.demo", "sfp.hw_cmd", "sfp.synth_cmd", "sfp.train_cmd"}
    for c in cmds:
        assert not GRAPH[c] & (cmds | {"sfp.cli"}), (c, GRAPH[c] & (cmds | {"sfp.cli"}))


def test_libraries_depend_one_way():
    """model <- hw <- synth; sim_tests uses hw + model; nothing imports the CLI layer."""
    allowed = {
        "sfp.model.": {"sfp.model."},
        "sfp.hw.": {"sfp.model.", "sfp.hw."},
        "sfp.synth.": {"sfp.model.", "sfp.hw.", "sfp.synth.", "sfp.fileio"},
        "sfp.sim_tests.": {"sfp.model.", "sfp.hw.", "sfp.sim_tests.", "sfp.train.tensors"},
        "sfp.train.": {"sfp.model.", "sfp.train.", "sfp.fileio"},
    }
    for name, deps in GRAPH.items():
        for prefix, ok in allowed.items():
            if name.startswith(prefix):
                bad = {d for d in deps if not any((d + ".").startswith(o) or d == o for o in ok)}
                assert not bad, f"{name} imports {sorted(bad)}"


def test_one_atomic_write_helper_and_no_private_amaranth_attributes():
    for name, path in MODULES.items():
        text = path.read_text()
        if name != "sfp.fileio":
            assert "mkstemp" not in text, f"{name}: use sfp.fileio.write_atomic"
        assert "_MustUse__" not in text, f"{name}: Amaranth private attribute"
    assert "argparse" not in MODULES["sfp.hw.top"].read_text()     # no second CLI in hw/


def test_write_atomic_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_atomic(out, boom)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]     # no temporary left
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "nodir" / "x", lambda f: f.write(b"x"))


def test_write_atomic_replaces_with_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "t.txt", "é\n")
    finally:
        os.umask(old)
    p = tmp_path / "t.txt"
    assert p.read_text(encoding="utf-8") == "é\n"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
