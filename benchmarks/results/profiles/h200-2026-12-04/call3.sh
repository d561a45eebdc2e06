#!/bin/bash
# 2026-12-04, call 3: trt_table at 16 GiB, and gpu_table's 1,024-key rows, at the code of call 2.
# Usage: bash call3.sh <commit>  (carry .whl and .data)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
timeout 200 python3 -m benchmarks.trt_table --no-progress --out $OUT/trt.json > $OUT/trt.txt 2>&1
rc=$?
tail -32 $OUT/trt.txt
exit $rc
