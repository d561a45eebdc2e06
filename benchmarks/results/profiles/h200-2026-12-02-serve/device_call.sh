#!/bin/bash
# One device call: the batch-32 lookup graph profile, the plugin's host time, the torch-runner GPU tests, then
# compute-sanitizer memcheck (both miss paths, every policy, the device-decided admissions) and racecheck
# (subsets), all in parallel, after the timings.  Writes under $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export EMBCACHE_DATA=$PWD/.data PYTHONUNBUFFERED=1
P=benchmarks/results/profiles/h200-2026-12-02-serve
timeout 150 python3 $P/lookup32.py > $OUT/lookup32.txt 2>&1; tail -16 $OUT/lookup32.txt
timeout 120 python3 $P/enqueue_host.py > $OUT/enqueue_host.txt 2>&1; grep -v "^ " $OUT/enqueue_host.txt | tail -25
timeout 100 python3 -m pytest -m gpu -q -p no:cacheprovider -n 8 tests/test_torch_runner.py > $OUT/torch_tests.txt 2>&1
tail -2 $OUT/torch_tests.txt
ADM=always,min_frequency,refuse_below_min,hit_rate_threshold,hit_rate_deferred
i=0
for pol in lru,lfu fifo,clock sieve,s3fifo epoch_lru,lfu_aged lru2,static; do
  for path in one-launch a-kernel-a-phase; do
    timeout ${SAN_S:-300} compute-sanitizer --tool memcheck --error-exitcode 1 python3 -m benchmarks.sanitize \
      --policies $pol --admissions $ADM --miss-path $path > $OUT/memcheck-$pol-$path.txt 2>&1 &
  done
done
for path in one-launch a-kernel-a-phase; do
  timeout ${SAN_S:-300} compute-sanitizer --tool racecheck --error-exitcode 1 python3 -m benchmarks.sanitize \
    --policies lfu --admissions always,hit_rate_deferred --miss-path $path > $OUT/racecheck-lfu-$path.txt 2>&1 &
  timeout ${SAN_S:-300} compute-sanitizer --tool racecheck --error-exitcode 1 python3 -m benchmarks.sanitize \
    --policies sieve,s3fifo --admissions min_frequency --miss-path $path > $OUT/racecheck-sieve-$path.txt 2>&1 &
done
wait
for f in $OUT/memcheck-*.txt $OUT/racecheck-*.txt; do
  echo "== $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|mismatches:' $f | tr '\n' ' ') $(grep -c ': ok' $f) ok"
done
