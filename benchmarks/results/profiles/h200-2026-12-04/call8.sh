#!/bin/bash
# 2026-12-04 (second session), call 8: the GPU tests of the stream-ordered paths at HEAD (the probe also
# prefetching a miss's set records into L2), ab.py against .ab/old (3f34257 = 61acd1e's code), gpu_table's
# three 1,024-key latency rows (latency.py: GPU and wall times), trt_table at 16 GiB, then asv's bench_trt.
# Usage: bash call8.sh  (carry .whl, .data, .ab/old, .git-head.bundle; make the bundle first:
# git bundle create -q .git-head.bundle main)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
git fetch -q .git-head.bundle main && git update-ref refs/heads/main FETCH_HEAD && git reset -q
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=$(git rev-parse --short HEAD)
here=benchmarks/results/profiles/h200-2026-12-04
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 180 python3 -m pytest -m gpu -n 16 --maxprocesses 16 --dist worksteal \
  --timeout 150 -q -p no:cacheprovider tests/test_ordered.py tests/test_replay_graphs.py tests/test_deferred.py \
  tests/test_device_source.py tests/test_lookup_out.py tests/test_issue21_memory_store.py tests/test_issue22_hand.py \
  tests/test_issue22_aging.py tests/test_issue22_lookahead.py tests/test_issue22_tinylfu.py \
  tests/test_programmatic_launch.py tests/test_launcher.py tests/test_torch_runner.py > $OUT/tests.txt 2>&1
rc=$?
tail -2 $OUT/tests.txt
ab() {  # label, tree
  EMBCACHE_AB_ROOT=$2 timeout 35 python3 $here/ab.py --reps 150 --rows ABF --label "$1" 2>&1 \
    | grep -v -i warn | tee -a $OUT/ab.txt
}
ab "old r1" $PWD/.ab/old
ab "new r1" $PWD
ab "old r2" $PWD/.ab/old
ab "new r2" $PWD
timeout 90 python3 $here/latency.py --json $OUT/latency.json 2>&1 | grep -v -i warn | tee $OUT/latency.txt
timeout 150 python3 -m benchmarks.trt_table --no-progress --out $OUT/trt.json > $OUT/trt.txt 2>&1
tail -14 $OUT/trt.txt
left=$((585 - SECONDS))
if [ $left -gt 60 ]; then
  SP=$(python3 -c "import site;print(site.getsitepackages()[0])"); cp -r embcache trt_plugin $SP/; cp -rn /tmp/site/* $SP/
  python3 -m asv machine --machine h200 --yes > /dev/null 2>&1
  timeout $left python3 -m asv run -e --machine h200 --python=same --set-commit-hash $(git rev-parse HEAD) \
    --launch-method spawn --bench bench_trt > $OUT/asv.txt 2>&1
  cp benchmarks/results/h200/$(git rev-parse --short=8 HEAD)*.json $OUT/ 2>/dev/null
  tail -25 $OUT/asv.txt
fi
exit $rc
