#!/bin/bash
# The next session's second device call (written 2026-12-04 evening, not yet run): compute-sanitizer on the
# kernels changed since the last sanitizer run (2026-12-02, 48d7b60: ../h200-2026-12-02-serve/): the
# programmatic launch of ordered_small, the probe's F_PROBED announcement and its rows-later second pass.
# memcheck over every policy and device-decided admission on both miss paths, racecheck on subsets, in
# parallel; each run's summary line into $OUT/sanitizers.txt, the runs' whole output into $OUT/runs.txt.
# Carry .whl, .data.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1
ADM=always,min_frequency,refuse_below_min,hit_rate_threshold,hit_rate_deferred
mkdir -p /tmp/san
for pol in lru,lfu fifo,clock sieve,s3fifo epoch_lru,lfu_aged lru2,static; do
  for path in one-launch a-kernel-a-phase; do
    timeout ${SAN_S:-400} compute-sanitizer --tool memcheck --error-exitcode 1 python3 -m benchmarks.sanitize \
      --policies $pol --admissions $ADM --miss-path $path > /tmp/san/memcheck-$pol-$path.txt 2>&1 &
  done
done
for path in one-launch a-kernel-a-phase; do
  timeout ${SAN_S:-400} compute-sanitizer --tool racecheck --error-exitcode 1 python3 -m benchmarks.sanitize \
    --policies lru,lfu --admissions always,hit_rate_deferred --miss-path $path > /tmp/san/racecheck-lfu-$path.txt 2>&1 &
  timeout ${SAN_S:-400} compute-sanitizer --tool racecheck --error-exitcode 1 python3 -m benchmarks.sanitize \
    --policies sieve,s3fifo --admissions min_frequency --miss-path $path > /tmp/san/racecheck-sieve-$path.txt 2>&1 &
done
wait
for f in /tmp/san/*.txt; do
  echo "== $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|mismatches:' $f | tr '\n' ' ') $(grep -c ': ok' $f) ok"
done | tee $OUT/sanitizers.txt
for f in /tmp/san/*.txt; do echo "==== $f"; cat $f; done > $OUT/runs.txt
