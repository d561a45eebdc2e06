#!/bin/bash
# 2026-12-03 (second session), call 1: the not-admitted row's variants, then the full GPU suite.
# Usage: bash call1.sh <commit>  (carry .whl and .data)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
here=benchmarks/results/profiles/h200-2026-12-03b
timeout 150 python3 $here/not_admitted.py --reps 200 > $OUT/not_admitted.txt 2>&1
grep -v Warn $OUT/not_admitted.txt | tail -16
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 400 python3 -m pytest -m gpu -n 16 --dist worksteal --timeout 300 -q \
  -p no:cacheprovider --durations=3 tests > $OUT/suite.txt 2>&1
tail -6 $OUT/suite.txt
