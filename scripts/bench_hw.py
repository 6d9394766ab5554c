"""Beats per cycle of the packer and unpacker, per hardware configuration (Amaranth simulation).

Each configuration stores a slice of a real training tensor (the digits
CNN's post-ReLU activation, as bf16 or fp32) in several containers; the
source never idles and every sink is always ready, so any bubble the RTL
makes shows up as beats/cycle below 1.  Every run is also checked byte
for byte against the golden model.  (The cocotb regression in sim_tests/
measures the same on the generated Verilog under Icarus and Verilator.)

    python scripts/bench_hw.py [--values N] [--gecko]
"""

from __future__ import annotations

import argparse
import sys

import ml_dtypes
import numpy as np

from sfp.hw.params import HwParams
from sfp.hw.simulate import run_packer, run_unpacker
from sfp.model.container import encode_image
from sfp.model.formats import Settings
from sfp.model.quantize import quantize, resolve

CONFIGS = [
    HwParams(source="bf16", lanes=8, word=128, block=256),
    HwParams(source="bf16", lanes=1, word=64, block=64),
    HwParams(source="bf16", lanes=4, word=256, block=128),
    HwParams(source="fp32", lanes=4, word=128, block=256),
    HwParams(source="fp32", lanes=2, word=64, block=32, max_man_bits=16, max_exp_bits=6),
]
GECKO_CONFIGS = [
    HwParams(source="bf16", lanes=8, word=128, block=256, gecko=True),
    HwParams(source="fp32", lanes=4, word=128, block=256, gecko=True),
]
SETTINGS = [
    ("full width", {}),
    ("m3 e5 no sign", dict(man_bits=3, exp_bits=5, sign=False)),
    ("m1 e3 stochastic", dict(man_bits=1, exp_bits=3, rounding="stochastic", seed=3)),
]


def tensor(source: str, n: int) -> np.ndarray:
    from sfp.train.tensors import ensure_tensors
    x = np.load(ensure_tensors())["epoch10/act/relu2.out"].reshape(-1)[:n]
    return x.astype(ml_dtypes.bfloat16) if source == "bf16" else x.astype(np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--values", type=int, default=8192)
    ap.add_argument("--gecko", action="store_true", help="also the Gecko configurations")
    args = ap.parse_args(argv)
    configs = CONFIGS + (GECKO_CONFIGS if args.gecko else [])
    print("| configuration | container | values | packer beats/cycle | unpacker beats/cycle | words | bytes = model |")
    print("|---|---|---|---|---|---|---|")
    for p in configs:
        x = tensor(p.source, args.values)
        for label, kw in SETTINGS:
            kw = dict(kw, man_bits=min(kw.get("man_bits", p.max_man_bits), p.max_man_bits),
                      exp_bits=min(kw.get("exp_bits", p.max_exp_bits), p.max_exp_bits))
            if p.gecko:
                kw.update(gecko=True, group=p.group)
            s = resolve(x, Settings(source=p.source, block=p.block, word=p.word, **kw))
            print(f"  {p.source} N={p.lanes} W={p.word} gecko={p.gecko}: {label} ...", file=sys.stderr)
            pk = run_packer(p, x, s)
            ref = encode_image(x, s, strict=False)
            image = b"".join(w.to_bytes(p.word // 8, "little") for w in pk.words)
            up = run_unpacker(p, pk.words, pk.lens, s, x.size)
            want = quantize(x, s, strict=False).view(p.src.dtype)
            ok = image == ref.payload and pk.lens == ref.block_words.tolist() and np.array_equal(up.values.astype(p.src.dtype), want)
            name = f"{p.source} N={p.lanes} W={p.word} B={p.block}" + (" Gecko" if p.gecko else "")
            print(f"| {name} | {label} | {x.size} | {pk.beats_per_cycle:.4f} | {up.beats_per_cycle:.4f} | {len(pk.words)} | {'yes' if ok else 'NO'} |")
            if not ok:
                raise SystemExit(f"mismatch against the golden model: {name}, {label}")


if __name__ == "__main__":
    main()
