#!/bin/bash
# 2026-12-04 (second session), call 7: the full GPU suite at b5c56b2 (the CPU probe's digests, held to the GPU
# by the differential tests; the small probe copying the hits' rows in its second pass too), then ab.py's
# 1,024-key rows against .ab/old (3f34257 = 61acd1e's code), alternating.
# Usage: bash call7.sh <commit>  (carry .whl, .data, .ab/old)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
here=benchmarks/results/profiles/h200-2026-12-04
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 400 python3 -m pytest -m gpu -n 16 --maxprocesses 16 --dist worksteal \
  --timeout 300 -q -p no:cacheprovider --durations=3 tests > $OUT/suite.txt 2>&1
rc=$?
tail -4 $OUT/suite.txt
ab() {  # label, tree
  EMBCACHE_AB_ROOT=$2 timeout 40 python3 $here/ab.py --reps 150 --rows ABF --label "$1" 2>&1 \
    | grep -v -i warn | tee -a $OUT/ab.txt
}
ab "old r1" $PWD/.ab/old
ab "new r1" $PWD
ab "old r2" $PWD/.ab/old
ab "new r2" $PWD
exit $rc
