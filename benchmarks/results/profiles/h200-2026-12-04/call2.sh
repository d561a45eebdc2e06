#!/bin/bash
# 2026-12-04, call 2 (call 1 again, with the launch attribute fixed): ordered_small launched programmatically after the probe (PDL) and the insert phase's
# rows read before their way is chosen, against main before them (.ab/old = 0ce000a), then the full GPU suite.
# Usage: bash call2.sh <commit>  (carry .whl, .data, .ab/old)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
here=benchmarks/results/profiles/h200-2026-12-04
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader | tee $OUT/gpu.txt
timeout 60 python3 -m pytest -q -p no:cacheprovider -n 0 tests/test_programmatic_launch.py 2>&1 | tail -3 | tee $OUT/pdl.txt
ab() {  # label, tree, pdl
  EMBCACHE_AB_ROOT=$2 timeout 75 python3 $here/ab.py --reps 150 --rows ABF --pdl $3 --label "$1" 2>&1 \
    | grep -v -i warn | tee -a $OUT/ab.txt
}
ab "old r1" $PWD/.ab/old on
ab "new r1" $PWD on
ab "new-pdl-off r1" $PWD off
ab "new r2" $PWD on
ab "old r2" $PWD/.ab/old on
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 400 python3 -m pytest -m gpu -n 16 --maxprocesses 16 --dist worksteal \
  --timeout 300 -q -p no:cacheprovider --durations=3 tests > $OUT/suite.txt 2>&1
rc=$?
tail -8 $OUT/suite.txt
grep -h "idle" $OUT/ab.txt | sed 's/; nodes.*//'
exit $rc
