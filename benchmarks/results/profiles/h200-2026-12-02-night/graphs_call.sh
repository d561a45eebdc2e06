#!/bin/bash
# One device call for Cache(graphs=True): its GPU tests first, then gpu_table's three 1,024-key latency rows
# (wall eager and with graphs=True), the plugin-path rows, then the full GPU suite.
# Usage: bash graphs_call.sh <commit>  (carry .whl and .data)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
timeout 150 python3 -m pytest -m gpu -n 8 --timeout 120 -q -p no:cacheprovider -x tests/test_replay_graphs.py \
  > $OUT/graphs-tests.txt 2>&1
tail -25 $OUT/graphs-tests.txt
grep -q " failed\| error" $OUT/graphs-tests.txt && exit 1
timeout 120 python3 - <<'PY' 2>&1 | grep -v Warn | tee $OUT/latency.txt
from benchmarks.gpu_table import latency_row
for args in ((128, 1024, 20), (128, 1024, 20, 0.1), (128, 1024, 20, 0.1, True)):
    r = latency_row(*args)
    print(f"{r['case']}: GPU {r['gpu_us']:.1f} us, wall eager {r['wall_us']:.1f} us, wall graphs=True {r['wall_graphs_us']:.1f} us")
PY
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 400 python3 -m pytest -m gpu -n 16 --dist worksteal --timeout 300 -q \
  -p no:cacheprovider --durations=3 tests > $OUT/suite.txt 2>&1
tail -4 $OUT/suite.txt
