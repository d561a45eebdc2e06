#!/bin/bash
# 2026-12-04 (second session), call 9 (call 8's machine was taken back before it finished, and 522 s of
# device time were left): the GPU tests of the stream-ordered paths at HEAD (the probe prefetching a miss's
# set records into L2), ab.py against .ab/old (3f34257 = 61acd1e's code), then gpu_table's three 1,024-key
# latency rows (latency.py: GPU and wall times).
# Usage: bash call9.sh <commit>  (carry .whl, .data, .ab/old)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
here=benchmarks/results/profiles/h200-2026-12-04
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 150 python3 -m pytest -m gpu -n 16 --maxprocesses 16 --dist worksteal \
  --timeout 120 -q -p no:cacheprovider tests/test_ordered.py tests/test_replay_graphs.py tests/test_deferred.py \
  tests/test_device_source.py tests/test_lookup_out.py tests/test_issue21_memory_store.py tests/test_issue22_hand.py \
  tests/test_issue22_aging.py tests/test_issue22_lookahead.py tests/test_issue22_tinylfu.py \
  tests/test_programmatic_launch.py tests/test_launcher.py tests/test_torch_runner.py > $OUT/tests.txt 2>&1
rc=$?
tail -2 $OUT/tests.txt
ab() {  # label, tree
  EMBCACHE_AB_ROOT=$2 timeout 30 python3 $here/ab.py --reps 150 --rows ABF --label "$1" 2>&1 \
    | grep -v -i warn | tee -a $OUT/ab.txt
}
ab "old r1" $PWD/.ab/old
ab "new r1" $PWD
ab "old r2" $PWD/.ab/old
ab "new r2" $PWD
timeout 70 python3 $here/latency.py --json $OUT/latency.json 2>&1 | grep -v -i warn | tee $OUT/latency.txt
exit $rc
