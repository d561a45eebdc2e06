#!/bin/bash
# 2026-12-04 (evening), call 2: the two tests that failed in call 1 (the programmatic launch's overlap, now
# behind a gate; the replay tests with the collector off during a capture, and the new test of it), the
# L2-persisting digests experiment (l2_digests.py), then trt_table at 16 GiB.  Carry .whl, .data.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
here=benchmarks/results/profiles/h200-2026-12-04-eve
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 100 python3 -m pytest -m gpu -n 8 --maxprocesses 8 --dist worksteal \
  --timeout 90 -q -p no:cacheprovider tests/test_programmatic_launch.py tests/test_replay_graphs.py > $OUT/tests.txt 2>&1
rc=$?
tail -3 $OUT/tests.txt
timeout 200 python3 $here/l2_digests.py 2>&1 | grep -v -i warn | tee $OUT/l2.txt
timeout 170 python3 -m benchmarks.trt_table --no-progress --out $OUT/trt.json > $OUT/trt.txt 2>&1
tail -14 $OUT/trt.txt
exit $rc
