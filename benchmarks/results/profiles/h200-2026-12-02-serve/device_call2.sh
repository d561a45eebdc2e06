#!/bin/bash
# The second device call: the batch-32 lookup graph again (after the replay's host fast path), the plugin path,
# the torch-runner GPU tests, then the full-size trt_table.  Writes under $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1
P=benchmarks/results/profiles/h200-2026-12-02-serve
timeout 100 python3 -m pytest -m gpu -q -p no:cacheprovider -n 8 tests/test_torch_runner.py tests/test_trt_plugin.py > $OUT/torch_tests.txt 2>&1
tail -2 $OUT/torch_tests.txt
timeout 150 python3 $P/lookup32.py > $OUT/lookup32.txt 2>&1; grep -v "^ " $OUT/lookup32.txt | tail -8
timeout 120 python3 $P/enqueue_host.py > $OUT/enqueue_host.txt 2>&1; grep -E "^(launches|trt_table)" $OUT/enqueue_host.txt
timeout 280 python3 -m benchmarks.trt_table --no-progress --out $OUT/trt.json > $OUT/trt.txt 2>&1; tail -22 $OUT/trt.txt
