#!/bin/bash
# 2026-12-04 (second session), call 6: the full GPU suite on the code that had not run on a GPU (98c9d4d,
# a6f81f7, 64ed0bf), then ab.py's 1,024-key rows: .ab/old (1fba2c5), HEAD, and .ab/poll (HEAD with
# poll-relaxed.diff: ordered_small polls F_PROBED with volatile loads and a pause, then one acquire).
# Usage: bash call6.sh <commit>  (carry .whl, .data, .ab/old, .ab/poll)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
here=benchmarks/results/profiles/h200-2026-12-04
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 390 python3 -m pytest -m gpu -n 16 --maxprocesses 16 --dist worksteal \
  --timeout 300 -q -p no:cacheprovider --durations=3 tests > $OUT/suite.txt 2>&1
rc=$?
tail -6 $OUT/suite.txt
ab() {  # label, tree
  EMBCACHE_AB_ROOT=$2 timeout 40 python3 $here/ab.py --reps 150 --rows ABF --label "$1" 2>&1 \
    | grep -v -i warn | tee -a $OUT/ab.txt
}
ab "old r1" $PWD/.ab/old
ab "new r1" $PWD
ab "poll r1" $PWD/.ab/poll
ab "poll r2" $PWD/.ab/poll
ab "new r2" $PWD
grep -h "idle" $OUT/ab.txt | sed 's/; nodes.*//'
exit $rc
