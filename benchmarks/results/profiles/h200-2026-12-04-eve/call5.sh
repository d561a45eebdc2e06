#!/bin/bash
# 2026-12-04 (evening), call 5 (~180 s of device time left): after the review's fixes (no_collection around
# every capture, the torch runner's included; the tests' checks), the GPU tests they touch.  Carry .whl, .data.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1
timeout 100 python3 -m pytest -m "gpu or not gpu" -n 16 --maxprocesses 16 --dist worksteal --timeout 90 -q \
  -p no:cacheprovider tests/test_no_collection.py tests/test_replay_graphs.py tests/test_programmatic_launch.py \
  tests/test_torch_runner.py "tests/test_gpu.py::test_lookups_alternating_between_streams_keep_one_scratch_size" \
  > $OUT/tests.txt 2>&1
rc=$?
tail -3 $OUT/tests.txt
exit $rc
