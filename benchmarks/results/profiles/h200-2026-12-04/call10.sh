#!/bin/bash
# 2026-12-04 (second session), call 10, the device time left (212 s): asv's bench_trt at HEAD (trt_table's
# --quick sizes), for the history.  Usage: bash call10.sh  (carry .whl, .data, .git-head.bundle)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
git fetch -q .git-head.bundle main && git update-ref refs/heads/main FETCH_HEAD && git reset -q
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=$(git rev-parse --short HEAD)
SP=$(python3 -c "import site;print(site.getsitepackages()[0])"); cp -r embcache trt_plugin $SP/; cp -rn /tmp/site/* $SP/
python3 -m asv machine --machine h200 --yes > /dev/null 2>&1
timeout $((105 - SECONDS)) python3 -m asv run -e --machine h200 --python=same --set-commit-hash $(git rev-parse HEAD) \
  --launch-method spawn --bench bench_trt > $OUT/asv.txt 2>&1
rc=$?
cp benchmarks/results/h200/$(git rev-parse --short=8 HEAD)*.json $OUT/ 2>/dev/null
tail -30 $OUT/asv.txt
exit $rc
