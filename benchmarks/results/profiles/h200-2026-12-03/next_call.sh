#!/bin/bash
# The next session's first device call (written 2026-12-03, not yet run): the full GPU suite (390c118's
# graphs-full test among it, which has never run), then trt_table at 16 GiB (the plugin-path rows now with
# trt_plugin's graphs on).  About 300 + 165 s.  Usage: bash next_call.sh <commit>  (carry .whl and .data)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 400 python3 -m pytest -m gpu -n 16 --dist worksteal --timeout 300 -q \
  -p no:cacheprovider --durations=3 tests > $OUT/suite.txt 2>&1
tail -4 $OUT/suite.txt
timeout 190 python3 -m benchmarks.trt_table --no-progress --out $OUT/trt.json > $OUT/trt.txt 2>&1
tail -40 $OUT/trt.txt
