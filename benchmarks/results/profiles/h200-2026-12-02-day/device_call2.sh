#!/bin/bash
# Second device call: trt_table at 16 GiB, the 1,024-key latency rows, then the full GPU suite (after cbf7f97's
# fused touch in ordered_small).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-cbf7f97}
timeout 190 python3 -m benchmarks.trt_table --no-progress --out $OUT/trt.json > $OUT/trt.txt 2>&1
grep -E "^\| (32|1,024|8,192|131,072|plugin path)|^- batch|^Plugin" $OUT/trt.txt
timeout 40 python3 benchmarks/results/profiles/h200-2026-12-02-host/latency_rows.py --rounds 2 > $OUT/latency.txt 2>&1
tail -8 $OUT/latency.txt
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 355 python3 -m pytest -m gpu -n 16 --dist worksteal --timeout 300 -q \
  -p no:cacheprovider --durations=3 tests > $OUT/suite.txt 2>&1
tail -8 $OUT/suite.txt
