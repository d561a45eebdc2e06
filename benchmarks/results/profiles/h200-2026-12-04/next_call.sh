#!/bin/bash
# The next session's first device call (written 2026-12-04, not yet run): the full GPU suite on the code since
# 1fba2c5 that has not run on a GPU (98c9d4d: TICK_TOUCH_AGED, the wait after an aging pass; a6f81f7: rows of
# out read through L2, programmatic only for sm_90 machine code, the driver fallback; 64ed0bf: the F_PROBED
# test), then ab.py's 1,024-key rows against 1fba2c5 (.ab/old), two rounds.  About 360 + 100 s.
# Before it: git worktree add --detach .ab/old 1fba2c5 (carry .whl, .data, .ab/old).
# Usage: bash next_call.sh <commit>
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
here=benchmarks/results/profiles/h200-2026-12-04
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 400 python3 -m pytest -m gpu -n 16 --maxprocesses 16 --dist worksteal \
  --timeout 300 -q -p no:cacheprovider --durations=3 tests > $OUT/suite.txt 2>&1
rc=$?
tail -6 $OUT/suite.txt
for round in 1 2; do
  for tree in old new; do
    root=$PWD; [ $tree = old ] && root=$PWD/.ab/old
    EMBCACHE_AB_ROOT=$root timeout 50 python3 $here/ab.py --reps 150 --rows ABF --label "$tree r$round" 2>&1 \
      | grep -v -i warn | tee -a $OUT/ab.txt
  done
done
grep -h "idle" $OUT/ab.txt | sed 's/; nodes.*//'
exit $rc
