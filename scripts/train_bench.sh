#!/bin/sh
# The training benchmark of docs/results.md, section 6 (long: ~1 h on 2 shared cores; resumable).
# Seed 0: every method, MX baselines and the exponent-window variants; seeds 1 and 2: the core methods.
set -e
PY=${PY:-.venv/bin/python}
OUT=${OUT:-out/train-bench}
$PY -m sfp.train.run --out "$OUT" --img docs/img --seeds 0 \
    --methods fp32,bf16,qmqe,bitwave,mxfp8e4m3,mxfp8e5m2,mxfp6e3m2,mxfp6e2m3,mxfp4,qmqe:window=hw,qmqe:window=auto > /dev/null
$PY -m sfp.train.run --out "$OUT" --seeds 1,2 --methods fp32,bf16,qmqe,bitwave > /dev/null
$PY -m sfp.train.run --out "$OUT" --report
