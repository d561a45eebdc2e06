#!/bin/bash
# 2026-12-04, call 1: ordered_small launched programmatically after the probe (PDL) and the insert phase's
# rows read before their way is chosen, against main before them (.ab/old = 0ce000a), then the full GPU suite.
# Usage: bash call1.sh <commit>  (carry .whl, .data, .ab/old)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
here=benchmarks/results/profiles/h200-2026-12-04
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader | tee $OUT/gpu.txt
ab() {  # label, tree, pdl
  EMBCACHE_AB_ROOT=$2 timeout 75 python3 $here/ab.py --reps 150 --rows ABF --pdl $3 --label "$1" 2>&1 \
    | grep -v -i warn | tee -a $OUT/ab.txt
}
for round in 1 2; do
  ab "old r$round" $PWD/.ab/old on
  ab "new r$round" $PWD on
done
ab "new-pdl-off" $PWD off
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 390 python3 -m pytest -m gpu -n 16 --maxprocesses 16 --dist worksteal \
  --timeout 300 -q -p no:cacheprovider --durations=3 tests > $OUT/suite.txt 2>&1
tail -8 $OUT/suite.txt
grep -h "idle" $OUT/ab.txt | sed 's/; nodes.*//'
