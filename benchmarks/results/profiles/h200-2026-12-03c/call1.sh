#!/bin/bash
# The next session's first device call (written 2026-12-03, not yet run): the full GPU suite on the code
# since cad7641 that has not run on a GPU (6f6118e, fe324e1: the shared-memory allowance set once and at
# retune, the distinct-miss hash's high half, and their tests), gpu_table's 1,024-key rows (the admitted
# one fixed in 6321e98), then trt_table at 16 GiB.  About 320 + 40 + 165 s.
# Usage: bash next_call.sh <commit>  (carry .whl and .data)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
# pyproject's addopts cap xdist at 8 processes (CI's 2 cores): the GPU machine has 16
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 420 python3 -m pytest -m gpu -n 16 --maxprocesses 16 --dist worksteal \
  --timeout 300 -q -p no:cacheprovider --durations=3 tests > $OUT/suite.txt 2>&1
tail -6 $OUT/suite.txt
timeout 60 python3 benchmarks/results/profiles/h200-2026-12-03b/not_admitted.py --reps 200 --rounds 1 --rows ABF \
  2>&1 | grep -v -i warn | tee $OUT/latency.txt
timeout 190 python3 -m benchmarks.trt_table --no-progress --out $OUT/trt.json > $OUT/trt.txt 2>&1
tail -40 $OUT/trt.txt
