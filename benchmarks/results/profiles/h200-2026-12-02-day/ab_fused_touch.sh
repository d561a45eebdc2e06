#!/bin/bash
# For the next session: main's ordered_small against the fused touch (fused-touch.patch, branch fused-touch) on one
# machine, the phase stamps of both and their lookups' kernel time, twice each, alternating (~5 minutes with the
# 16 GiB fill; --gib 1 takes less).  Decide with this before landing the patch, then run the full GPU suite and
# the sanitizers (benchmarks.sanitize) on it.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1
P=benchmarks/results/profiles/h200-2026-12-02-day
for round in 0 1; do
  timeout 140 python3 $P/small_phases_blocks.py --gib ${GIB:-16} --blocks 1,8 > $OUT/main-$round.txt 2>&1
  timeout 140 python3 $P/small_phases_blocks.py --gib ${GIB:-16} --blocks 1,8 --patch $P/fused-touch.patch \
    > $OUT/fused-$round.txt 2>&1
  grep -A7 "^batch" $OUT/main-$round.txt $OUT/fused-$round.txt
done
