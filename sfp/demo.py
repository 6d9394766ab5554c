"""``sfp demo``: the project's main job on built-in defaults.

1. Trains (or reuses) the digits CNN dump, stores a real activation tensor
   and the whole dump in a ladder of containers through the golden model,
   checks that every file decodes to exactly ``quantize(x)``, and prints the
   footprint table.
2. Generates the default configuration's Verilog, pushes a slice of the real
   tensor through the packer and the unpacker in simulation, checks the
   bytes against the golden model and prints cycles per beat.
3. A short Quantum Mantissa/Exponent training run chooses containers.
4. The default configuration's area report (Yosys, generic gates).
5. DRAM, short form: the stored ``make dram`` measurement, labelled as such;
   with ``--dram``, a real store/load run of one tensor (bf16 and m3 e5)
   through the LiteDRAM SDR controller in simulation (minutes: the
   Verilator build).  Without the ``dram`` extra: one line saying so.

``--quick`` stops after step 1.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from sfp.errors import CliError
from sfp.fileio import write_atomic
from sfp.inputs import load_tensors
from sfp.model.formats import Settings

DEMO_TENSOR = "epoch10/act/relu2.out"

LADDER = [
    ("bf16 as is (lossless)", dict(exp_base=0)),
    ("bf16 + Gecko (lossless)", dict(exp_base=0, gecko=True)),
    ("m3 e5", dict(man_bits=3, exp_bits=5)),
    ("m3 e5 + Gecko", dict(man_bits=3, exp_bits=5, gecko=True)),
    ("m2 e4", dict(man_bits=2, exp_bits=4)),
    ("m2 e4 + Gecko", dict(man_bits=2, exp_bits=4, gecko=True)),
    ("m1 e3 + Gecko", dict(man_bits=1, exp_bits=3, gecko=True)),
]


HW_VALUES = 8192
HW_LADDER = [
    ("bf16 as is (lossless)", dict(exp_base=0)),
    ("m3 e5, no sign", dict(man_bits=3, exp_bits=5, sign=False)),
    ("m1 e3, stochastic", dict(man_bits=1, exp_bits=3, rounding="stochastic", seed=7)),
    ("bf16 + Gecko (lossless)", dict(exp_base=0, gecko=True)),
    ("m3 e5 no sign + Gecko", dict(man_bits=3, exp_bits=5, sign=False, gecko=True)),
]


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _rel_err(x: np.ndarray, y: np.ndarray) -> float:
    a, b = x.astype(np.float64), y.astype(np.float64)
    nz = a != 0
    return float(np.median(np.abs(b[nz] - a[nz]) / np.abs(a[nz]))) if nz.any() else 0.0


def register(sub) -> None:
    m = sub.add_parser("demo", help="the main job on built-in defaults: real training tensors through the containers")
    m.add_argument("--tensors", metavar="FILE.npz", help="training dump to use (default: generate/cached digits CNN dump)")
    m.add_argument("--quick", action="store_true", help="golden-model footprints only (no simulation, training or synthesis)")
    m.add_argument("--dram", action="store_true", help="run the DRAM stage for real (a few minutes: the simulator build); "
                   "without it the stage prints the stored `make dram` measurement")
    m.set_defaults(func=run_demo)


def run_demo(args) -> int:
    import ml_dtypes

    from sfp.model.container import decode, encode
    from sfp.model.quantize import quantize
    from sfp.model.stats import combine, footprint

    if args.tensors:
        path = args.tensors
    else:
        try:
            from sfp.train.tensors import ensure_tensors
        except ImportError:
            raise CliError("the demo needs the training extra (pip install -e '.[train]') or --tensors FILE.npz")
        _say("demo: training tensors (digits CNN; cached after the first run) ...")
        path = str(ensure_tensors())
    tensors = load_tensors(path)
    name = DEMO_TENSOR if DEMO_TENSOR in tensors else next(iter(tensors))
    x = tensors[name].astype(ml_dtypes.bfloat16)
    os.makedirs("out/demo", exist_ok=True)

    print(f"\n== One tensor: {name} {tuple(x.shape)}, {x.size} bf16 values ==\n")
    print(f"{'container':<26} {'file bytes':>10} {'bits/val':>8} {'vs fp32':>8} {'vs bf16':>8} {'exp bits':>8} {'median rel err':>14}  round trip")
    for label, kw in LADDER:
        s = Settings(**kw)
        t0 = time.perf_counter()
        blob = encode(x, s)
        y = decode(blob)
        ok = np.array_equal(y.view(np.uint16), quantize(x, s).view(np.uint16))
        fp = footprint(x, s)
        ebits = fp["gecko_exp_bits"] if s.gecko else fp["raw_exp_bits"]
        write_atomic(os.path.join("out/demo", label.split(" (")[0].replace(" ", "_").replace("+", "gecko") + ".sfpc"),
                     lambda f: f.write(blob))
        print(f"{label:<26} {len(blob):>10} {fp['bits_per_value']:>8.2f} {fp['ratio_vs_fp32']:>7.2f}x {fp['ratio_vs_bf16']:>7.2f}x "
              f"{ebits:>8.2f} {_rel_err(x, y):>14.4f}  {'exact' if ok else 'MISMATCH'}  ({(time.perf_counter() - t0) * 1e3:.0f} ms)")
        if not ok:
            raise CliError(f"decode(encode(x)) != quantize(x) for {label}")

    print(f"\n== Whole training dump: {len(tensors)} tensors, per kind ==\n")
    print(f"{'container':<26} {'kind':<7} {'values':>9} {'bits/val':>8} {'vs fp32':>8} {'exp H0':>7} {'Gecko':>6} {'raw e':>5}")
    for label, kw in LADDER[2:]:
        for kind in ("weight", "act", "grad"):
            parts = [footprint(a.astype(ml_dtypes.bfloat16), Settings(**kw)) for k, a in tensors.items() if f"/{kind}/" in k]
            if not parts:
                continue
            c = combine(parts)
            print(f"{label:<26} {kind:<7} {c['values']:>9} {c['bits_per_value']:>8.2f} {c['ratio_vs_fp32']:>7.2f}x "
                  f"{c['exp_entropy_bits']:>7.2f} {c['gecko_exp_bits']:>6.2f} {c['raw_exp_bits']:>5.0f}")
    print("\nfiles written to out/demo/ (sfp decode FILE.sfpc -o OUT.npy reads them back)")
    if getattr(args, "quick", False):
        return 0
    _hardware(x)
    _training()
    _area()
    _dram(bool(getattr(args, "dram", False)))
    return 0


DRAM_VALUES = 1024
DRAM_TENSOR = "epoch10/weight/conv2.weight"


def _dram(run: bool) -> None:
    """DRAM stage, short form.

    With ``run`` (``sfp demo --dram``): a real run, one tensor of 1024 bf16 weights as bf16 and as m3 e5,
    stored and loaded through the LiteDRAM SDR controller + SDRAM model.  It takes minutes, nearly all
    of it the Verilator build, which is redone on every run (the generated Verilog is not byte-identical
    from one process to the next), so it is not the default.  Without ``run``: the stored `make dram`
    measurement, labelled as such.
    """
    import importlib.util
    if importlib.util.find_spec("litedram") is None:
        print("\nDRAM stage skipped: LiteDRAM is not installed (pip install -e '.[dram]'; then make dram)")
        return
    if run:
        _dram_run()
        return
    from sfp.dram_report import RESULTS, summary
    text = summary()
    if text is None:
        print("\nDRAM: no stored measurement: `make dram` (about 15 minutes) measures it; `sfp demo --dram` "
              "runs a short measurement (a few minutes, mostly the simulator build)")
        return
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(RESULTS.stat().st_mtime))
    print(f"\n== DRAM: STORED measurement ({RESULTS}, {when}), not re-run by this demo "
          "(`sfp demo --dram` runs a short one: a few minutes) ==\n")
    print(text)


def _dram_run() -> None:
    import json

    from sfp.hw.params import HwParams
    from sfp.sim_tests.packer_ref import cfg_value, make_case, real_tensor_bits
    from sfp.sim_tests.test_dma import litedram_run

    p = HwParams(lanes=8, word=128, block=256)
    ladder = [("bf16", dict(man_bits=7, exp_bits=8, exp_base=0)), ("m3e5", dict(man_bits=3, exp_bits=5))]
    bits = real_tensor_bits(p.source, DRAM_TENSOR, DRAM_VALUES)
    tens, data, addr = [], {}, 0
    for i, (name, kw) in enumerate(ladder):
        c = make_case(bits, Settings(source=p.source, block=p.block, word=p.word, **kw))
        tens.append({"cfg": cfg_value(c.settings, c.n), "data_addr": addr, "index_addr": (1 << 19) + 64 * i,
                     "name": name})
        data.update({f"bits_{i}": c.bits, f"words_{i}": np.array([str(w) for w in c.words]),
                     f"lens_{i}": np.array(c.lens, np.int64), f"out_{i}": c.out})
        addr += len(c.words) + 8
    os.makedirs("out/demo", exist_ok=True)
    out = os.path.abspath("out/demo/dram_measure.json")
    _say("demo: DRAM stage, a real run through the LiteDRAM SDR controller (simulated) ...")
    t0 = time.monotonic()
    # the simulator's own output (cocotb's log, Verilator's build) goes to a file, not into the demo's tables
    log = os.path.abspath("out/demo/dram_sim.log")
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(log, "w") as f:
            os.dup2(f.fileno(), 1)
            try:
                litedram_run(p, tens, data, [], key="demo_dram", testcase="measure", measure_out=out)
            finally:
                sys.stdout.flush()
                os.dup2(saved, 1)
    except (AssertionError, RuntimeError) as exc:
        raise CliError(f"the DRAM stage failed ({str(exc).splitlines()[0]}); log {log}")
    finally:
        os.close(saved)
    res = json.loads(open(out).read())
    print(f"\n== DRAM: measured now, {DRAM_VALUES} values of {DRAM_TENSOR} through LiteDRAM's ULX3S SDR "
          f"controller + SDRAM model (memory 50 MHz, units 200 MHz; {time.monotonic() - t0:.0f} s) ==\n")
    base = res[0]["store_cycles"] + res[0]["load_cycles"]
    for r in res:
        t = r["store_cycles"] + r["load_cycles"]
        print(f"  {r['name']:<6} {r['words']:>4} words  store {r['store_cycles']:>6.0f}  load {r['load_cycles']:>6.0f} "
              f"memory cycles  speed-up vs bf16 {base / t:.2f}x (footprint {res[0]['words'] / r['words']:.2f}x); "
              "every value checked against the golden model")


def _hardware(x) -> None:
    from sfp.hw.params import HwParams
    from sfp.hw.simulate import run_packer, run_unpacker
    from sfp.hw.top import generate_verilog
    from sfp.model.container import encode_image
    from sfp.model.quantize import quantize, resolve

    xs = np.ascontiguousarray(x.reshape(-1)[:HW_VALUES])
    for p in (HwParams(), HwParams(gecko=True)):
        print(f"\n== Hardware: {p.source}, N={p.lanes}, W={p.word}, B={p.block}, Gecko {'built' if p.gecko else 'not built'} ==\n")
        _say("demo: generating Verilog ...")
        out = "out/demo/verilog" + ("_gecko" if p.gecko else "")
        generate_verilog(p, out)
        print(f"Verilog: {out}/sfp_packer.v, sfp_unpacker.v, sfp_manifest.json\n")
        print(f"{'container':<26} {'values':>7} {'words':>6} {'packer beats/cycle':>19} {'unpacker beats/cycle':>21}  bytes vs model  values vs model")
        for label, kw in HW_LADDER:
            if kw.get("gecko") and not p.gecko:
                continue
            s = resolve(xs, Settings(**kw))
            _say(f"demo: simulating packer and unpacker ({label}) ...")
            pk = run_packer(p, xs, s)
            ref = encode_image(xs, s, strict=False)
            image = b"".join(w.to_bytes(p.word // 8, "little") for w in pk.words)
            bytes_ok = image == ref.payload and pk.lens == ref.block_words.tolist()
            up = run_unpacker(p, pk.words, pk.lens, s, xs.size)
            vals_ok = np.array_equal(up.values.astype(np.uint16), quantize(xs, s, strict=False).view(np.uint16))
            print(f"{label:<26} {xs.size:>7} {len(pk.words):>6} {pk.beats_per_cycle:>19.3f} {up.beats_per_cycle:>21.3f}  "
                  f"{'identical' if bytes_ok else 'MISMATCH':>14}  {'identical' if vals_ok else 'MISMATCH':>15}")
            if not (bytes_ok and vals_ok):
                raise CliError(f"hardware simulation disagrees with the golden model ({label})")


def _training() -> None:
    try:
        from sfp.train.run import run
    except ImportError:
        print("\n(training skipped: the training extra is not installed)")
        return
    print("\n== Training: Quantum Mantissa + Quantum Exponent on digits, 3 epochs ==\n")
    _say("demo: training (a few seconds) ...")
    r = run("digits", "qmqe", epochs=3)
    fp = r["footprint"]["total"]
    print(f"test accuracy {r['accuracy']:.4f}; footprint vs fp32 {fp['vs_fp32']:.2f}x "
          f"({fp['gecko_vs_fp32']:.2f}x with Gecko); full runs: sfp train --task digits --method qmqe")


def _area() -> None:
    from sfp.hw.params import HwParams
    try:
        from sfp.synth.flow import run_config
        from sfp.synth.report import report_text
    except ImportError:
        print("\n(area report skipped: the synthesis extra is not installed)")
        return
    print("\n== Area of the default configuration (Yosys, generic gates) ==\n")
    _say("demo: synthesizing (the first Yosys run compiles for about a minute) ...")
    res = run_config(HwParams(), "generic", "out/demo/synth")
    print(report_text(res))
