#!/bin/bash
# The next session's first device call (written 2026-12-04 evening, not yet run): the full GPU suite at HEAD
# (cf1267f's no_collection and the torch runner's capture guard have not run on a GPU), then
# benchmarks.probe_bound at 4.25 GiB (the stripped-down probes beside Cache.lookup on the H200; only its
# 1 GiB --quick ran there), then wall_ab.py with a cProfile of 3,000 lookups (the plain call's host time).
# About 400 + 60 + 40 s.  Carry .whl, .data.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
here=benchmarks/results/profiles/h200-2026-12-04-eve
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 420 python3 -m pytest -m gpu -n 16 --maxprocesses 16 --dist worksteal \
  --timeout 300 -q -p no:cacheprovider --durations=3 tests > $OUT/suite.txt 2>&1
rc=$?
tail -4 $OUT/suite.txt
timeout 90 python3 -m benchmarks.probe_bound --json $OUT/probe_bound.json 2>&1 | grep -v -i warn | tee $OUT/probe_bound.txt
timeout 60 python3 $here/wall_ab.py --label head --reps 400 --profile 3000 2>&1 | grep -v -i warn > $OUT/wall.txt
grep "wall median\|empty" $OUT/wall.txt
exit $rc
