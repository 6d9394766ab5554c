"""``sfp generate`` and ``sfp sim`` from the command line (subprocesses, as a user runs them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sfp.hw.params import HwParams
from sfp.sim_tests.simenv import sim_env

ROOT = Path(__file__).resolve().parent.parent


def sfp(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sfp.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=sim_env())


def assert_user_error(r):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sfp: error: "), r.stderr


def test_generate_writes_verilog_manifest_and_a_working_fusesoc_core(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"source": "bf16", "lanes": 4, "word": 64, "block": 64}))
    out = tmp_path / "gen"
    r = sfp("generate", "--config", cfg, "-o", out)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["sfp_codec.core", "sfp_manifest.json", "sfp_packer.v", "sfp_unpacker.v"]
    man = json.loads((out / "sfp_manifest.json").read_text())
    assert man["params"] == HwParams(source="bf16", lanes=4, word=64, block=64).as_dict()
    ports = {q["name"]: q for q in man["modules"]["sfp_packer"]["ports"]}
    assert ports["s_axis_tdata"]["width"] == 4 * 16 and ports["m_axis_tdata"]["width"] == 64
    for mod in ("sfp_packer", "sfp_unpacker"):
        assert f"module {mod}(" in (out / f"{mod}.v").read_text()
    fusesoc = shutil.which("fusesoc", path=os.path.dirname(sys.executable)) or shutil.which("fusesoc")
    if fusesoc is None:
        pytest.skip("fusesoc is not installed (it comes with the test extra)")
    env = sim_env()
    info = subprocess.run([fusesoc, "--cores-root", out, "core-info", "::sfp_codec:0.1.0"],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    assert info.returncode == 0 and "lint" in info.stdout, info.stdout + info.stderr
    if shutil.which("verilator", path=env.get("PATH")):
        # The core's lint target runs Verilator (-Wall with the documented waivers) through Edalize.
        for target in ("lint", "lint_unpacker"):
            lint = subprocess.run([fusesoc, "--cores-root", out, "run", "--target", target, "::sfp_codec:0.1.0"],
                                  capture_output=True, text=True, cwd=tmp_path, env=env)
            assert lint.returncode == 0, lint.stdout[-2000:] + lint.stderr[-2000:]


def test_generate_is_reproducible(tmp_path):
    """Two runs (two processes) write byte-identical Verilog: no name may come from object ids or
    hashing order, or a user's diff of the generated files (and a FuseSoC core's cache) breaks."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"source": "bf16", "lanes": 4, "word": 64, "block": 64, "gecko": True, "group": 16}))
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        r = sfp("generate", "--config", cfg, "-o", out)
        assert r.returncode == 0, r.stderr
    for name in ("sfp_packer.v", "sfp_unpacker.v", "sfp_manifest.json"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name


@pytest.mark.parametrize("content, what", [
    ("{not json", "not valid JSON"),
    ('{"lanes": 3}', "lanes"),
    ('{"colour": "red"}', "unknown field"),
    ('{"lanes": 16, "word": 128}', "exceed"),          # 16 x 16-bit values do not fit a 128-bit word
    ('[1, 2]', "JSON object"),
])
def test_generate_rejects_bad_config_without_output(tmp_path, content, what):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(content)
    r = sfp("generate", "--config", cfg, "-o", tmp_path / "gen")
    assert_user_error(r)
    assert what in r.stderr
    assert not (tmp_path / "gen").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".sfp-")]


def test_generate_missing_config_and_bad_output(tmp_path):
    assert_user_error(sfp("generate", "--config", tmp_path / "nope.json", "-o", tmp_path / "gen"))
    (tmp_path / "file").write_text("x")
    assert_user_error(sfp("generate", "-o", tmp_path / "file"))
    assert_user_error(sfp("generate", "-o", tmp_path / "no" / "such" / "dir"))


def test_sim_rejects_bad_config(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"word": 100}')
    assert_user_error(sfp("sim", "--config", cfg))


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog is not installed (make sim-deps)")
def test_sim_runs_the_regression_for_one_configuration(tmp_path):
    """`sfp sim --config` runs packer, unpacker and loopback cocotb tests for that configuration only."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"source": "bf16", "lanes": 2, "word": 64, "block": 32, "max_man_bits": 3,
                               "max_exp_bits": 5, "stochastic": False}))
    r = sfp("sim", "--sim", "icarus", "--config", cfg)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "custom-icarus" in r.stdout or "custom" in r.stdout or " passed" in r.stdout
    assert "failed" not in r.stdout
