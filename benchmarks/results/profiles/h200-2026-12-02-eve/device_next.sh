#!/bin/bash
# For the next session's first device call (~420 s): the torch runner's GPU tests first (c645a18's review fixes
# and its three new tests have not run on a GPU), then the full GPU suite.  device_next2.sh is the second call.
# Usage: bash device_next.sh <commit>  (carry .whl and .data)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
timeout 150 python3 -m pytest -m gpu -n 8 --timeout 120 -q -p no:cacheprovider tests/test_torch_runner.py \
  > $OUT/runner-tests.txt 2>&1
tail -4 $OUT/runner-tests.txt
grep -q " failed\| error" $OUT/runner-tests.txt && exit 1
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 400 python3 -m pytest -m gpu -n 16 --dist worksteal --timeout 300 -q \
  -p no:cacheprovider --durations=3 tests > $OUT/suite.txt 2>&1
tail -4 $OUT/suite.txt
