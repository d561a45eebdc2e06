#!/bin/bash
# 2026-12-04 (evening), call 4 (the last: ~490 s of device time left): the scratch fix (no doubling at a
# stream switch) under the GPU tests of the paths it touches, then l2_setaside.py at dims 128 and 64.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 250 python3 -m pytest -m gpu -n 16 --maxprocesses 16 --dist worksteal \
  --timeout 200 -q -p no:cacheprovider tests/test_gpu.py tests/test_lookup_out.py tests/test_stateful.py \
  tests/test_contract.py tests/test_backend_protocol.py tests/test_ordered.py tests/test_replay_graphs.py \
  tests/test_idempotent_hits.py tests/test_issue20_plan.py tests/test_issue22_cpu_lookup_path.py > $OUT/tests.txt 2>&1
rc=$?
tail -3 $OUT/tests.txt
timeout 70 python3 benchmarks/results/profiles/h200-2026-12-04-eve/l2_setaside.py --dims 128,64 --mib 0,4,8,16 2>&1 \
  | grep -v -i warn | tee $OUT/l2_setaside.txt
exit $rc
