#!/bin/bash
# 2026-12-04, call 5: ordered_small places its keys before it waits for the probe, and copies the rows after;
# the probe skips its second pass where no row is left.  The GPU tests of the stream-ordered paths, an A/B
# against 1fba2c5 (.ab/old).
# Usage: bash call5.sh <commit>  (carry .whl, .data, .ab/old)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
here=benchmarks/results/profiles/h200-2026-12-04
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 230 python3 -m pytest -m gpu -n 16 --maxprocesses 16 --dist worksteal \
  --timeout 200 -q -p no:cacheprovider tests/test_ordered.py tests/test_replay_graphs.py tests/test_deferred.py \
  tests/test_device_source.py tests/test_lookup_out.py tests/test_issue21_memory_store.py tests/test_issue22_hand.py \
  tests/test_issue22_aging.py tests/test_issue22_lookahead.py tests/test_issue22_tinylfu.py \
  tests/test_programmatic_launch.py tests/test_launcher.py tests/test_torch_runner.py > $OUT/tests.txt 2>&1
rc=$?
tail -3 $OUT/tests.txt
ab() {  # label, tree
  EMBCACHE_AB_ROOT=$2 timeout 50 python3 $here/ab.py --reps 150 --rows ABF --label "$1" 2>&1 \
    | grep -v -i warn | tee -a $OUT/ab.txt
}
ab "old r1" $PWD/.ab/old
ab "new r1" $PWD
ab "old r2" $PWD/.ab/old
ab "new r2" $PWD
grep -h "idle" $OUT/ab.txt | sed 's/; nodes.*//'
exit $rc
