#!/bin/bash
# For the next session's first device call (~560 s): the full GPU suite on main (654050d's runner changes and the
# strengthened launch test have not run on a GPU), then trt_table at 16 GiB with the GC-off timing (2212658).
# Usage: bash device_next.sh <commit>  (carry .whl and .data)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 400 python3 -m pytest -m gpu -n 16 --dist worksteal --timeout 300 -q \
  -p no:cacheprovider --durations=3 tests > $OUT/suite.txt 2>&1
tail -6 $OUT/suite.txt
timeout 185 python3 -m benchmarks.trt_table --no-progress --out $OUT/trt.json > $OUT/trt.txt 2>&1
grep -E "^\| (32|1,024|8,192|131,072|plugin path)|^- batch|^Plugin" $OUT/trt.txt
