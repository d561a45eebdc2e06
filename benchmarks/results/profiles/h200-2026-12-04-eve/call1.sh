#!/bin/bash
# 2026-12-04 (evening session), call 1: the full GPU suite at HEAD (plan_or_hits' GPU delegation and the
# RedisStore changes have not run on a GPU), then the plain call's wall time: wall_ab.py on .ab/old
# (6e247f6, whose wall was 37-39 us on 2026-12-02) and on HEAD, alternately, with a cProfile of HEAD's,
# and latency.py's GPU times at HEAD.  Carry .whl, .data, .ab/old.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
here=benchmarks/results/profiles/h200-2026-12-04-eve
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 400 python3 -m pytest -m gpu -n 16 --maxprocesses 16 --dist worksteal \
  --timeout 300 -q -p no:cacheprovider --durations=3 tests > $OUT/suite.txt 2>&1
rc=$?
tail -4 $OUT/suite.txt
w() { EMBCACHE_AB_ROOT=$2 timeout 60 python3 $here/wall_ab.py --label "$1" ${3:+--profile $3} 2>&1 | grep -v -i warn | tee -a $OUT/wall.txt; }
w "old r1" $PWD/.ab/old
w "new r1" $PWD 300
w "old r2" $PWD/.ab/old
w "new r2" $PWD
timeout 60 python3 benchmarks/results/profiles/h200-2026-12-04/latency.py 2>&1 | grep -v -i warn | tee $OUT/latency.txt
exit $rc
