#!/bin/bash
# timeline.py on the device (~3 minutes with a fresh machine's start). Usage: bash call1.sh <commit>
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
timeout 400 python3 benchmarks/results/profiles/h200-2026-12-02-eve/timeline.py --gib ${GIB:-4} --out $OUT 2>&1 \
  | grep -v Warning | tee $OUT/timeline.txt
gzip -f $OUT/*.json
