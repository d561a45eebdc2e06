#!/bin/bash
# First device call of the day session: the full GPU suite, then the replay's parts (raw stream, direct
# launch) and small_max with 16 blocks.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1
P=benchmarks/results/profiles/h200-2026-12-02-day
timeout 60 python3 $P/replay_parts2.py > $OUT/replay_parts2.txt 2>&1
tail -24 $OUT/replay_parts2.txt
EMBCACHE_FAILURE_LOG=$OUT/failures.txt timeout 400 python3 -m pytest -m gpu -n 16 --dist worksteal --timeout 300 -q \
  -p no:cacheprovider --durations=5 tests > $OUT/suite.txt 2>&1
tail -12 $OUT/suite.txt
timeout 90 python3 benchmarks/results/profiles/h200-2026-12-01-night/small_max.py --gib 16 --batches 32 --blocks 16 \
  > $OUT/small_max.txt 2>&1
tail -15 $OUT/small_max.txt
