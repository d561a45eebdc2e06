#!/bin/bash
# The next session's second device call (~380 s): the host floor of a lookup that replays a graph of itself
# (auto_graph_host.py: gpu_table's 1,024-key wall bar is 40 us, the eager enqueue 57-59), where the lookup
# graph's GPU time goes at 16 GiB for batches 32 / 1,024 / 8,192 (timeline.py: each kernel's start and length in
# a replay; at 1,024 the lookup alone is 196 us against a 118 us floor, and e2e's bar of 250 needs it near 130),
# then trt_table at 16 GiB.
# Usage: bash device_next2.sh <commit>  (carry .whl and .data)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1 EMBCACHE_COMMIT=${1:-unknown}
timeout 90 python3 benchmarks/results/profiles/h200-2026-12-02-eve/auto_graph_host.py 2>&1 | grep -v Warn \
  | tee $OUT/auto_graph_host.txt
timeout 200 python3 benchmarks/results/profiles/h200-2026-12-02-eve/timeline.py --gib 16 --batches 32,1024,8192 \
  --skip-plugin --out $OUT 2>&1 | grep -v Warn | tee $OUT/timeline-16gib.txt
gzip -f $OUT/*.json
timeout 190 python3 -m benchmarks.trt_table --no-progress --out $OUT/trt.json > $OUT/trt.txt 2>&1
grep -E "^\| (32|1,024|8,192|131,072|plugin path)|^- batch|^Plugin" $OUT/trt.txt
