"""The GPU benchmark table of issue 4: throughput of each case beside a ceiling measured in the same run.

    python -m benchmarks.gpu_table [--json results.json] [--quick] [--policies fifo,sieve,epoch_lru]

Ceilings (benchmarks/ceilings.cu): the best of five random-row gather kernels
over the cache's own row array (same size, same dim) for the hit path (since
2026-12-01 two of them with stores, or loads and stores, that L2 evicts first:
``gather_chunk_cs`` measured 8-10% faster than the plain one on the H200, so
ratios from then on are to a higher ceiling than before); a
zero-copy gather of the same rows from pinned host memory for the miss path.
Times are medians of device-event timings after warm-up; every lookup is the
public ``Cache.lookup`` (argument checks, the counter read-back, the clock tick
and the touch included).
"""
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import time

import numpy as np

import embcache
from embcache._cuda import launch_grid
from embcache.autotune import distinct_keys, median_ms
from embcache.kernels.tuning import utility_block
from embcache.layout import EMPTY_KEY
from embcache.policies import HitRateThreshold
from embcache.tiers import HostStore

from ._internals import backend, fill_every_set, host_rows

GIB = 2**30


def _ceiling_module():
    import cupy

    return cupy.RawModule(code=(pathlib.Path(__file__).with_name("ceilings.cu")).read_text(), options=("-std=c++17",))


def _block() -> int:
    """Threads per block of the ceiling kernels: the utility block of this GPU's tuning entry."""
    import cupy

    cc = cupy.cuda.Device().compute_capability
    return utility_block(f"{cc[:-1]}.{cc[-1]}")


def gather_ceiling(table_words, rows: int, row_bytes: int, idx, repeat=20) -> tuple[float, str]:
    """Best ms of the gather kernels copying rows ``idx`` of ``table_words`` (any array or a pointer).

    ``idx``: one device array of row numbers, read again at every repetition, or a list of them of one
    length, taken in turn (fresh rows each time, as a cache's misses are: rows read again find their
    address translations warm, which over pinned host memory reads faster than a fresh batch can)."""
    import cupy

    turns = idx if isinstance(idx, list) else [idx]
    chunks = row_bytes // 16
    out = cupy.empty((turns[0].shape[0], row_bytes // 4), cupy.uint32)
    mod = _ceiling_module()
    best = (float("inf"), "")
    n = np.int64(turns[0].shape[0])
    block = _block()
    for name in ("gather_chunk", "gather_chunk_cs", "gather_chunk_st", "gather_chunk4", "gather_warp"):
        kernel = mod.get_function(name)
        threads = turns[0].shape[0] * (32 if name == "gather_warp" else chunks)
        one_thread_a_word = name in ("gather_chunk", "gather_chunk_cs", "gather_chunk_st")  # the whole grid
        grid = -(-threads // block) if one_thread_a_word else launch_grid(threads, block)
        turn = iter(range(1 << 30))

        def launch(kernel=kernel, grid=grid, turn=turn):
            rows_now = turns[next(turn) % len(turns)]
            kernel((grid,), (block,), (table_words, rows_now, out, n, np.int32(chunks)))

        ms = median_ms(launch, repeat)
        best = min(best, (ms, name))
    return best


def filled_cache(dim: int, dtype: str, table_bytes: int, tier=None, admission="always", ways: int = 32,
                 policy: str = "lru", max_batch: int | None = None):
    """A GPU cache whose row array is ``table_bytes`` bytes, every set full (load factor 1.0)."""
    itemsize = np.dtype(dtype).itemsize if dtype != "bfloat16" else 2
    capacity = table_bytes // (dim * itemsize)
    cache = embcache.Cache(capacity, dim, policy, admission, dtype, "gpu",
                           HostStore(dim, dtype) if tier is None else tier, ways=ways, max_batch=max_batch)
    fill_every_set(cache)
    return cache


def cached_sample(cache, n: int, seed: int):
    """n keys drawn at random from the cache's slots, so that every lookup hits."""
    import cupy

    b = backend(cache)
    slots = cupy.random.default_rng(seed).integers(0, b.keys.shape[0], 2 * n)
    keys = b.keys[slots]
    return keys[keys != EMPTY_KEY][:n]


def hit_rows(dim: int, dtype: str, table_bytes: int, batch: int, repeat: int, ways: int = 32,
             policy: str = "lru", ordered: bool | None = None) -> dict:
    """All-hit lookups of ``batch`` keys against the best gather of the same rows.

    ``ordered`` None: the table's first rows, as they have been measured since issue 4 (no ``out=``).
    True or False: the policy rows, each lookup into one ``out=`` buffer (as the plugin's); True: the
    tier is a pinned HostStore, so the lookup is the stream-ordered one (it returns without waiting;
    timed to the end of its kernels, and also back to back: ``pipelined_ms``); False: an unpinned
    HostStore (the host path, which waits for the counters)."""
    tier = HostStore(dim, dtype, pinned=True) if ordered else None
    cache = filled_cache(dim, dtype, table_bytes, tier=tier, ways=ways, policy=policy,
                         max_batch=batch if ordered else None)
    b = backend(cache)
    keys = [cached_sample(cache, batch, s) for s in range(4)]
    idx = [b.find(k) for k in keys]
    ceiling_ms, kernel = gather_ceiling(b.values, b.values.shape[0], b.row_bytes, idx[0], repeat)
    turn = iter(range(10**9))
    out = b.new_rows(batch)
    into = None if ordered is None else out
    ms = median_ms(lambda: cache.lookup(keys[next(turn) % 4], out=into), repeat)
    assert cache.stats.last.hits == batch
    probe_ms = median_ms(lambda: b.find_and_gather(keys[next(turn) % 4], out), repeat)
    pipelined = None
    if ordered:  # back to back, as a server issues them: each call's Python runs while the last one's kernels do
        import cupy

        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        for _ in range(repeat):
            cache.lookup(keys[next(turn) % 4], out=out)
        end.record()
        end.synchronize()
        pipelined = cupy.cuda.get_elapsed_time(start, end) / repeat
    suffix = "" if ways == 32 else f", {ways} ways"
    suffix += "" if ordered is None else f", {policy}, out=" + (", stream-ordered" if ordered else ", host path")
    row = {"case": f"lookup all hits, {batch:,} keys, dim {dim} {dtype}{suffix}", "table_gib": b.values.nbytes / GIB,
           "ms": ms, "g_keys_s": batch / ms / 1e6, "ceiling": f"{kernel} gather", "ceiling_ms": ceiling_ms,
           "ceiling_g_rows_s": batch / ceiling_ms / 1e6, "ratio": ceiling_ms / ms, "probe_gather_ms": probe_ms,
           "ways": ways, "policy": policy, "ordered": bool(ordered)}
    if pipelined is not None:
        row.update(pipelined_ms=pipelined, pipelined_ratio=ceiling_ms / pipelined)
    cache.close()
    if tier is not None:
        tier.close()
    return row


def query_rows(dim: int, table_bytes: int, batch: int, repeat: int) -> dict:
    """``Cache.query`` (read-only: no score, no clock, no stats) of ``batch`` cached keys, against the
    same-run gather ceiling; compare with the fastest all-hit lookup at the same dim."""
    cache = filled_cache(dim, "float32", table_bytes)
    b = backend(cache)
    keys = [cached_sample(cache, batch, s) for s in range(4)]
    ceiling_ms, kernel = gather_ceiling(b.values, b.values.shape[0], b.row_bytes, b.find(keys[0]), repeat)
    turn = iter(range(10**9))
    out = b.new_rows(batch)
    ms = median_ms(lambda: cache.query(keys[next(turn) % 4], out=out), repeat)
    assert bool(cache.query(keys[0])[1].all())
    row = {"case": f"query all hits, {batch:,} keys, dim {dim} float32", "table_gib": b.values.nbytes / GIB,
           "ms": ms, "g_keys_s": batch / ms / 1e6, "ceiling": f"{kernel} gather", "ceiling_ms": ceiling_ms,
           "ceiling_g_rows_s": batch / ceiling_ms / 1e6, "ratio": ceiling_ms / ms}
    cache.close()
    return row


def miss_setup(dim: int, table_bytes: int, batch: int, hit_rate: float):
    """A full cache in front of a pinned HostStore and 4 batches at ``hit_rate``: (cache, store, batches, rng)."""
    import cupy

    stored = 4 * int(batch * (1 - hit_rate))
    store = HostStore(dim, "float32", initial_rows=stored, pinned=True)
    store_keys = distinct_keys(10**15, stored, np)
    store.put_many(store_keys, np.random.default_rng(0).standard_normal((store_keys.shape[0], dim), np.float32))
    # admission off above 50% hits: the cache stays as it is, so every repetition misses the same way
    cache = filled_cache(dim, "float32", table_bytes, tier=store, admission=HitRateThreshold(0.5))
    misses = int(batch * (1 - hit_rate))
    rng = np.random.default_rng(1)
    batches = []
    for s in range(4):
        k = cupy.concatenate([cached_sample(cache, batch - misses, s),
                              cupy.asarray(rng.choice(store_keys, misses, replace=False))])
        batches.append(k[cupy.asarray(rng.permutation(batch))])
    return cache, store, batches, rng


def miss_rows(dim: int, table_bytes: int, batch: int, hit_rate: float, repeat: int) -> dict:
    """Lookups at ``hit_rate`` whose misses come from a pinned HostStore (zero-copy)."""
    import cupy

    cache, store, batches, rng = miss_setup(dim, table_bytes, batch, hit_rate)
    misses = int(batch * (1 - hit_rate))
    turn = iter(range(10**9))
    ms = median_ms(lambda: cache.lookup(batches[next(turn) % 4]), repeat)
    assert cache.stats.last.misses == misses and cache.stats.last.absent == 0
    all_hit = [cached_sample(cache, batch, 10 + s) for s in range(4)]
    hit_ms = median_ms(lambda: cache.lookup(all_hit[next(turn) % 4]), repeat)
    # ceiling: the same number of random rows gathered from pinned host memory by the GPU
    idx = cupy.asarray(rng.integers(0, host_rows(store).shape[0], misses))
    ptr = np.uint64(cupy.cuda.runtime.pointerGetAttributes(host_rows(store).ctypes.data).devicePointer)
    ceiling_ms, kernel = gather_ceiling(ptr, host_rows(store).shape[0], dim * 4, idx, repeat)
    row = {"case": f"lookup {hit_rate:.0%} hits, {batch:,} keys, dim {dim} float32, misses from pinned HostStore",
           "ms": ms, "g_keys_s": batch / ms / 1e6, "missed_rows_m_s": misses / ms / 1e3,
           "miss_ms_over_all_hit": ms - hit_ms, "ceiling": f"zero-copy {kernel} gather from pinned host",
           "ceiling_ms": ceiling_ms, "ceiling_m_rows_s": misses / ceiling_ms / 1e3,
           "ratio": ceiling_ms / ms, "ratio_miss_part": ceiling_ms / max(ms - hit_ms, 1e-9)}
    cache.close()
    store.close()
    return row


def insert_rows(dim: int, table_bytes: int, batch: int, repeat: int) -> dict:
    """insert_and_evict of new keys into a full cache: the backend operation Cache.insert and lookups call."""
    import cupy

    cache = filled_cache(dim, "float32", table_bytes)
    b = backend(cache)
    rows = cupy.random.random((batch, dim), dtype=cupy.float32).view(cupy.uint32)
    ones, admit = cupy.ones(batch, cupy.int64), cupy.ones(batch, cupy.bool_)
    fresh = iter(range(10**9))

    def insert():
        keys = cupy.sort(distinct_keys(10**16 + next(fresh) * batch, batch, cupy))[:batch]
        b.insert_and_evict(keys, ones[:keys.shape[0]], rows[:keys.shape[0]], admit[:keys.shape[0]], False)

    ms = median_ms(insert, repeat)
    sort_ms = median_ms(lambda: cupy.sort(distinct_keys(10**16 + next(fresh) * batch, batch, cupy)), repeat)
    b.insert_and_evict(cupy.sort(distinct_keys(10**17, batch, cupy)), ones, rows, admit, False)
    counts = b.tally()
    row = {"case": f"insert_and_evict {batch:,} new keys into a full cache, dim {dim} float32",
           "ms": ms - sort_ms, "g_keys_s": batch / (ms - sort_ms) / 1e6, "evicted_fraction": counts[2] / batch,
           "note": "excludes making and sorting the new keys (measured separately and subtracted)"}
    cache.close()
    return row


_SPIN_US = 40  # the queued timing's wait ahead of the start event: longer than the host takes to enqueue a replay
_ONE_THREAD = ((1,), (1,))  # the spin kernel's launch: one thread is all it is


def replay_times(cache, keys, out, stream, take, reps: int, queued: bool = False) -> tuple:
    """``(graph, times)``: ``cache.lookup(keys, out=out)`` captured on ``stream``, then ``reps`` replays,
    each on the batch ``take()`` gives copied into ``keys``, timed between events (GPU time, us).

    By default the stream is idle when the start event is recorded, so a time includes the wait for the
    host to submit the graph (0.0-2.3 us more than queued for the 1,024-key rows on the H200,
    2026-12-04).  ``queued``: a kernel that spins for ``_SPIN_US`` us goes before the start event, so
    the replay is already queued when the event passes, and a time is the graph's own execution on the
    device, its launch gaps between nodes included."""
    import cupy

    spin = _ceiling_module().get_function("spin") if queued else None
    with stream:
        stream.begin_capture()
        cache.lookup(keys, out=out)
        graph = stream.end_capture()
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        times = []
        for _ in range(reps):
            keys[...] = take()
            if spin is not None:
                spin(*_ONE_THREAD, (np.int64(_SPIN_US * 1000),))
            start.record(stream)
            graph.launch(stream)
            end.record(stream)
            end.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, end) * 1e3)
    return graph, times


def latency_row(dim: int, batch: int, repeat: int, miss_fraction: float = 0.0, admit: bool = False,
                on_graph=None) -> dict:
    """A small batch, stream-ordered (a pinned HostStore behind the cache): the GPU time of a replayed
    CUDA graph of the whole lookup (misses, admission, insertion and eviction included), and the wall
    time of ``Cache.lookup`` from Python (it returns without waiting).

    ``miss_fraction`` of each batch are keys the cache lacks and the store holds; with ``admit`` they are
    new keys every time and are admitted (each lookup inserts and evicts), else admission is off above
    50% hits and every repetition misses the same way.
    """
    import cupy

    misses = int(batch * miss_fraction)
    reps = repeat * 10
    # fresh missed keys for every lookup, timed or not: 2 x (5 + reps) timed walls, 2 x reps graph replays
    # and on_graph's (up to 64); a batch used twice would hit where it missed (take() refuses to reuse one)
    batches_made = 4 * reps + 10 + (64 if on_graph is not None else 0) if admit else 4
    fresh = misses * batches_made
    store = HostStore(dim, "float32", initial_rows=max(fresh, 16), pinned=True)
    store_keys = distinct_keys(10**15, fresh, np)
    if fresh:
        store.put_many(store_keys, np.random.default_rng(0).standard_normal((fresh, dim), np.float32))
    cache = filled_cache(dim, "float32", GIB, tier=store, admission="always" if admit else HitRateThreshold(0.5))
    rng = np.random.default_rng(1)
    batches = []
    for s in range(batches_made):
        new = store_keys[s * misses:(s + 1) * misses] if admit else rng.choice(store_keys, misses, replace=False)
        k = cupy.concatenate([cached_sample(cache, batch - misses, s), cupy.asarray(new)])
        batches.append(k[cupy.asarray(rng.permutation(batch))])
    out = cupy.empty((batch, dim), cupy.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    turn = iter(range(10**9))

    def take():
        i = next(turn)
        if admit and i >= len(batches):
            raise RuntimeError("latency_row ran out of fresh batches: a reused one would time hits as misses")
        return batches[i % len(batches)]

    def timed_walls(graphs: bool) -> list:
        """Host time of each of ``reps`` lookups, after 5 untimed ones (graphs: Cache(graphs=True)'s replays,
        the flag set on this cache: no second 4 GiB fill)."""
        backend(cache).replay_graphs = graphs
        for _ in range(5):
            cache.lookup(take(), out=out)
        walls = []
        for _ in range(reps):
            k = take()
            t = time.perf_counter()
            cache.lookup(k, out=out)
            walls.append((time.perf_counter() - t) * 1e6)
        stream.synchronize()
        backend(cache).replay_graphs = False
        return walls

    with stream:
        walls, graph_walls = timed_walls(False), timed_walls(True)
        keys = cupy.empty(batch, cupy.int64)
        graph, gpu = replay_times(cache, keys, out, stream, take, reps)
        _, gpu_queued = replay_times(cache, keys, out, stream, take, reps, queued=True)
        if on_graph is not None:
            def replay(i):
                with stream:
                    keys[...] = take()
                    graph.launch(stream)

            on_graph(replay)
            stream.synchronize()
    last = cache.stats.last
    what = ("all hits" if not misses else
            f"{misses} misses from a pinned HostStore, " + ("admitted (insert + evict)" if admit else "not admitted"))
    row = {"case": f"lookup {batch} keys, {what}, dim {dim} float32", "gpu_us": float(np.median(gpu)),
           "gpu_queued_us": float(np.median(gpu_queued)),
           "wall_us": float(np.median(walls)), "wall_graphs_us": float(np.median(graph_walls)),
           "last_misses": last.misses if last else None}
    cache.close()
    store.close()
    return row


def measure(quick: bool = False, policies: tuple[str, ...] = (), policy_rows_only: bool = False) -> dict:
    """The table's rows; ``policies``: also all-hit rows for each (host path and stream-ordered) at dim
    32 / 64 / 128, and ``query`` rows at the same dims (issue 22's hit-path bars); ``policy_rows_only``:
    those alone."""
    import cupy

    table = GIB if quick else 4 * GIB + GIB // 4
    batch = 1 << 20
    repeat = 10 if quick else 20
    dev = cupy.cuda.Device()
    cases = [(hit_rows, d, "float32", table, batch, repeat) for d in (32, 64, 128)]
    cases += [(hit_rows, 128, "float16", table, batch, repeat)]
    # fewer ways probe fewer key bytes per lookup (8 B a way): the trade of associativity for speed
    cases += [(hit_rows, d, "float32", table, batch, repeat, 8) for d in (32, 64, 128)]
    cases += [(miss_rows, 128, table, batch, 0.9, repeat),
              (insert_rows, 32, table, batch, repeat), (latency_row, 128, 1024, repeat),
              (latency_row, 128, 1024, repeat, 0.1), (latency_row, 128, 1024, repeat, 0.1, True)]
    if policy_rows_only:
        cases = []
    for policy in policies:
        cases += [(hit_rows, d, "float32", table, batch, repeat, 32, policy, o) for o in (False, True)
                  for d in (32, 64, 128)]
    if policies:
        cases += [(query_rows, d, table, batch, repeat) for d in (32, 64, 128)]
    rows = []
    for fn, *args in cases:
        try:
            rows.append(fn(*args))
        except Exception as exc:  # one broken case must not hide the others' numbers
            rows.append({"case": f"{fn.__name__}{tuple(args)}", "error": repr(exc)})
        print(rows[-1], flush=True)
        cupy.get_default_memory_pool().free_all_blocks()
    return {"device": cupy.cuda.runtime.getDeviceProperties(dev.id)["name"].decode(),
            "compute_capability": dev.compute_capability, "date": datetime.date.today().isoformat(),
            "cupy": cupy.__version__, "python": platform.python_version(), "rows": rows}


def format_table(result: dict) -> str:
    # ratios to three decimals: the bars are two-decimal figures (0.60, 0.75, 0.85), which a ratio rounded
    # to two could read as met
    lines = [f"{result['device']} (sm_{result['compute_capability']}), {result['date']}",
             f"{'case':<92}{'ms':>9}{'G keys/s':>10}{'ceiling ms':>12}{'ratio':>8}"]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"{r['case']:<92}FAILED: {r['error']}")
            continue
        if "gpu_us" in r:
            queued = f" ({r['gpu_queued_us']:.1f} us queued behind other work)" if "gpu_queued_us" in r else ""
            lines.append(f"{r['case']:<92}GPU {r['gpu_us']:.1f} us (graph replay){queued}, wall {r['wall_us']:.1f} us "
                         f"from Python (returns without waiting); with graphs=True {r['wall_graphs_us']:.1f} us")
            continue
        ceiling = f"{r['ceiling_ms']:>12.3f}{r['ratio']:>8.3f}" if "ceiling_ms" in r else ""
        lines.append(f"{r['case']:<92}{r['ms']:>9.3f}{r['g_keys_s']:>10.2f}{ceiling}")
        if "probe_gather_ms" in r:
            lines.append(f"{'':<8}of which the probe+gather kernel alone {r['probe_gather_ms']:.3f} ms")
        if "pipelined_ms" in r:
            lines.append(f"{'':<8}back to back (the next call issued while this one's kernels run): "
                         f"{r['pipelined_ms']:.3f} ms a lookup, ratio {r['pipelined_ratio']:.3f}")
        if "ratio_miss_part" in r:
            lines.append(f"{'':<8}missed rows {r['missed_rows_m_s']:.0f} M/s; ceiling {r['ceiling_m_rows_s']:.0f} M rows/s; "
                         f"miss part alone (lookup minus an all-hit lookup) {r['miss_ms_over_all_hit']:.3f} ms, "
                         f"ratio {r['ratio_miss_part']:.3f}")
    return "\n".join(lines)


def run_cli(doc: str, measure_fn, show=None, policies: bool = False) -> None:
    """The command line of a GPU benchmark script: ``--quick`` to ``measure_fn``, ``--json`` to save, ``show``
    to print; ``policies``: a ``--policies`` option too, passed on as a tuple of names."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="1 GiB tables and fewer repeats")
    if policies:
        parser.add_argument("--policies", default="", help="comma-separated policies whose all-hit lookups "
                            "(and query) to add, e.g. fifo,sieve,epoch_lru")
        parser.add_argument("--policy-rows-only", action="store_true", help="only the --policies rows")
    args = parser.parse_args()
    extra = {"policies": tuple(p for p in args.policies.split(",") if p),
             "policy_rows_only": args.policy_rows_only} if policies else {}
    result = measure_fn(args.quick, **extra)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))
    if show is not None:
        print(show(result))


def main() -> None:
    run_cli(__doc__, measure, format_table, policies=True)


if __name__ == "__main__":
    main()
