#!/bin/bash
# 2026-12-04 (evening), call 3: the full GPU suite at HEAD (the collector off during a capture; the gated
# programmatic-launch test), then gpu_table's policy rows (the issue-22 hit path: FIFO, SIEVE, epoch-LRU, LRU).
# Carry .whl, .data.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 420 python3 -m pytest -m gpu -n 16 --maxprocesses 16 --dist worksteal \
  --timeout 300 -q -p no:cacheprovider --durations=3 tests > $OUT/suite.txt 2>&1
rc=$?
tail -4 $OUT/suite.txt
left=$((590 - SECONDS))
[ $left -gt 40 ] && timeout $left python3 -m benchmarks.gpu_table --policies fifo,sieve,epoch_lru,lru --policy-rows-only \
  --json $OUT/gpu_table.json > $OUT/gpu_table.txt 2>&1; tail -20 $OUT/gpu_table.txt
exit $rc
