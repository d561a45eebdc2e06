#!/bin/bash
# 2026-12-03 (second session), call 3: A/B of ordered_small's block tables in shared memory against
# 6321e98 (alternating processes), then the full GPU suite.  Usage: bash call3.sh <commit>
# (carry .whl, .data and .ab: .ab/old is 6321e98's embcache and benchmarks)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
here=benchmarks/results/profiles/h200-2026-12-03b
for r in 0 1; do
  for side in old new; do
    root=$PWD; [ $side = old ] && root=$PWD/.ab/old
    echo "== $side (round $r)"
    EMBCACHE_AB_ROOT=$root PYTHONPATH=/tmp/site:$root timeout 80 python3 $here/not_admitted.py --reps 200 --rounds 1 \
      --rows ABF 2>&1 | grep -v -i warn
  done
done > $OUT/ab.txt 2>&1
cut -c1-200 $OUT/ab.txt
# pyproject's addopts cap xdist at 8 processes (CI's 2 cores); the GPU machine has 16
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 420 python3 -m pytest -m gpu -n 16 --maxprocesses 16 --dist worksteal \
  --timeout 300 -q -p no:cacheprovider --durations=3 tests > $OUT/suite.txt 2>&1
tail -12 $OUT/suite.txt
