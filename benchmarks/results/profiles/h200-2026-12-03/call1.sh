#!/bin/bash
# Device call 1 of 2026-12-03: the ordered tests (the side-stream miss rows among them) and the plugin's graphs
# test, then overlap_ab.py at 16 GiB.  Usage: bash call1.sh <commit>  (carry .whl and .data)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
D=benchmarks/results/profiles/h200-2026-12-03
timeout 240 python3 -m pytest -m gpu -n 16 --dist worksteal --timeout 200 -q -p no:cacheprovider tests/test_ordered.py \
  tests/test_issue21_memory_store.py tests/test_replay_graphs.py tests/test_issue20_trt.py > $OUT/tests.txt 2>&1
tail -15 $OUT/tests.txt
grep -q " failed\| error" $OUT/tests.txt && exit 1
timeout 300 python3 $D/overlap_ab.py 2>&1 | grep -v Warn | tee $OUT/overlap-ab.txt
