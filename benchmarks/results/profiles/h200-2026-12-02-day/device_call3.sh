#!/bin/bash
# Third device call (less device time left than a full suite and trt_table need together): the GPU tests of
# the stream-ordered path (test_gpu, test_ordered, the runners', the sources'), then trt_table at 16 GiB and
# the 1,024-key latency rows.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 230 python3 -m pytest -m gpu -n 16 --dist worksteal --timeout 220 -q \
  -p no:cacheprovider --durations=3 tests/test_gpu.py tests/test_ordered.py tests/test_torch_runner.py \
  tests/test_trt_plugin.py tests/test_lookup_out.py tests/test_device_source.py tests/test_issue22_aging.py \
  tests/test_issue22_lookahead.py tests/test_issue21_memory_store.py > $OUT/tests.txt 2>&1
tail -6 $OUT/tests.txt
timeout 185 python3 -m benchmarks.trt_table --no-progress --out $OUT/trt.json > $OUT/trt.txt 2>&1
grep -E "^\| (32|1,024|8,192|131,072|plugin path)|^- batch|^Plugin" $OUT/trt.txt
timeout 30 python3 benchmarks/results/profiles/h200-2026-12-02-host/latency_rows.py --rounds 2 > $OUT/latency.txt 2>&1
tail -8 $OUT/latency.txt
