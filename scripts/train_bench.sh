#!/bin/sh
# The training benchmark of docs/results.md, section 6 (long: hours on 2 busy shared cores; resumable:
# runs already in $OUT are skipped).  Most important runs first.
set -e
PY=${PY:-.venv/bin/python}
OUT=${OUT:-out/train-bench}
run() { $PY -m sfp.train.run --out "$OUT" --img docs/img "$@" > /dev/null; }
CORE=fp32,bf16,qmqe,bitwave
run --seeds 0 --tasks transformer,mnist --methods $CORE
run --seeds 0 --tasks transformer --methods qmqe:strength=0.002,qmqe:window=hw
run --seeds 0 --tasks mnist --methods qmqe:strength=0.005
run --seeds 0 --tasks digits,cancer --methods $CORE
run --seeds 1,2 --tasks mnist --methods fp32,qmqe,bitwave,qmqe:strength=0.005
run --seeds 0 --tasks mnist --methods qmqe:window=hw,qmqe:window=auto,mxfp6e2m3,mxfp4
run --seeds 1,2 --tasks transformer --methods fp32,qmqe
run --seeds 0 --tasks transformer --methods mxfp8e4m3,mxfp4
run --seeds 1,2 --tasks transformer --methods bitwave
run --seeds 1,2 --tasks mnist,transformer --methods bf16
run --seeds 0 --tasks transformer --methods mxfp6e2m3,qmqe:window=auto,mxfp8e5m2,mxfp6e3m2
run --seeds 1,2 --tasks digits,cancer --methods $CORE
$PY -m sfp.train.run --out "$OUT" --report
