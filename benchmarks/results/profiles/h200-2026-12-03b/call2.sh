#!/bin/bash
# 2026-12-03 (second session), call 2: A/B of the small miss path (ordered_small's shared tables, the
# probe's early index read) against 6321e98, alternating processes, then the GPU tests of the
# stream-ordered paths.  Usage: bash call2.sh <commit>  (carry .whl, .data and .ab: .ab/old is 6321e98's
# embcache and benchmarks)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
here=benchmarks/results/profiles/h200-2026-12-03b
for r in 0 1 2; do
  for side in old new; do
    root=$PWD; [ $side = old ] && root=$PWD/.ab/old
    echo "== $side (round $r)"
    EMBCACHE_AB_ROOT=$root PYTHONPATH=/tmp/site:$root timeout 80 python3 $here/not_admitted.py --reps 200 --rounds 1 \
      --rows ABF 2>&1 | grep -v -i warn
  done
done > $OUT/ab.txt 2>&1
cat $OUT/ab.txt | cut -c1-230
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 240 python3 -m pytest -m gpu -n 16 --maxprocesses 16 --dist worksteal \
  --timeout 200 -q -p no:cacheprovider tests/test_ordered.py tests/test_replay_graphs.py tests/test_device_source.py \
  tests/test_issue22_small_miss.py tests/test_kernel_sources.py > $OUT/tests.txt 2>&1
tail -8 $OUT/tests.txt
