"""trt_plugin on the GPU: DLRM inference latency per batch beside HPS's published figures, and lookups
per second through the plugin path against direct ``Cache.lookup``.

    python -m benchmarks.trt_table [--total-gib 16] [--out results.json]

DLRM: 26 tables of dim 128 sized like the Criteo sample's columns scaled up to ``total_gib`` of
float32 rows in all (synthetic rows), held in a pinned host store; a GPU cache of 20% of the rows
(LFU); keys drawn per table from the per-column Zipf laws fitted to the Criteo sample (so
Criteo-shaped, but SYNTHETIC).  Each batch runs the DLRM graph (bottom MLP 13-512-256-128, dot
interaction, top MLP 479-1024-1024-512-256-1) with its one EmbCacheLookup node: the dense layers
run with CuPy/cuBLAS in fp32 (TensorRT is not installed here), the lookup with embcache, on one
stream; latency is from the batch's start to the stream's end.  HPS's figures are FP32 TensorRT +
HPS on an A100; ours come from whatever GPU ran this (the output says which).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

HPS_A100_US = {32: 380, 1024: 604, 8192: 2432, 131072: 25440}
ITERATIONS = {32: 300, 1024: 200, 8192: 100, 131072: 20}


def _zipf_rows(cp, cdfs, batch: int, iters: int, seed: int):
    """(iters, batch, 26) row numbers per table, each column from its own Zipf CDF (on the device)."""
    cp.random.seed(seed)
    out = cp.empty((iters, batch, len(cdfs)), cp.int64)
    for j, cdf in enumerate(cdfs):
        out[:, :, j] = cp.searchsorted(cdf, cp.random.random((iters, batch)), side="right")
    return out


def dlrm_latency(total_gib: float = 16.0, dim: int = 128, cache_fraction: float = 0.2, policy: str = "lfu",
                 batches=(32, 1024, 8192, 131072), seed: int = 0, progress: bool = True,
                 zero_copy: bool = True, phases: bool = False) -> list[dict]:
    """Latency per batch size.  ``zero_copy``: the GPU reads missed rows straight from the pinned
    store (else the store is ordinary host memory, read on the CPU and copied over)."""
    import cupy as cp
    from tqdm.auto import tqdm

    from embcache import Cache
    from embcache.tiers import HostStore
    from embcache.traces import _zipf_cdf, criteo_files, fit_trace, read_criteo
    from trt_plugin.cupy_runner import CupyGraphRunner
    from trt_plugin.dlrm import build_dlrm

    model = fit_trace(read_criteo(criteo_files()))
    columns = sorted(model.columns, key=lambda c: c.column)
    rows_wanted = int(total_gib * 2**30 / (dim * 4))
    scale = rows_wanted / sum(c.cardinality for c in columns)
    table_rows = [max(1, int(round(c.cardinality * scale))) for c in columns]
    rows = sum(table_rows)
    store = HostStore(dim, "float32", initial_rows=rows, pinned=zero_copy)
    chunk = 1 << 20
    start = time.perf_counter()
    for at in tqdm(range(0, rows, chunk), desc="filling the host store", unit="chunk", disable=not progress):
        n = min(chunk, rows - at)
        values = (cp.random.standard_normal((n, dim), dtype=cp.float32) * 0.05).get()
        store.put_many(np.arange(at, at + n, dtype=np.int64), values)
    fill_s = time.perf_counter() - start
    cache = Cache(int(cache_fraction * rows), dim, policy, backend="gpu", tier=store)
    graph = build_dlrm(table_rows, dim=dim, bottom=(512, 256), top=(1024, 1024, 512, 256), seed=seed,
                       offsets=True, lookup=("(benchmark)", "embeddings"))

    def lookup(fields, keys):
        return cache.lookup(keys.reshape(-1)).reshape(keys.shape + (dim,))

    runner = CupyGraphRunner(graph, lookup)
    cdfs = [cp.asarray(_zipf_cdf(n, c.exponent)) for n, c in zip(table_rows, columns)]
    stream = cp.cuda.get_current_stream()
    # warm the cache on 2^22 samples (109M lookups) of the same distribution
    warm = _zipf_rows(cp, cdfs, 1 << 17, 32, seed + 1) - 1
    for i in range(warm.shape[0]):
        runner.run({"dense": cp.random.standard_normal((warm.shape[1], 13), dtype=cp.float32),
                    "categorical": warm[i]})
    stream.synchronize()
    del warm
    results = []
    for b in batches:
        iters = ITERATIONS.get(b, 50)
        keys = _zipf_rows(cp, cdfs, b, iters, seed + b) - 1
        dense = cp.random.standard_normal((iters, b, 13), dtype=cp.float32)
        s0 = cache.stats
        total, lookup_only = [], []
        for i in range(iters):
            stream.synchronize()
            t = time.perf_counter()
            runner.run({"dense": dense[i], "categorical": keys[i]})
            stream.synchronize()
            total.append(time.perf_counter() - t)
        s1 = cache.stats
        offsets = cp.asarray(np.concatenate([[0], np.cumsum(table_rows)[:-1]]).astype(np.int64))
        for i in range(iters):  # the same keys again, the lookup alone
            stream.synchronize()
            t = time.perf_counter()
            cache.lookup((keys[i] + offsets).reshape(-1))
            stream.synchronize()
            lookup_only.append(time.perf_counter() - t)
        us = np.array(total) * 1e6
        hits, lookups = s1.hits - s0.hits, s1.lookups - s0.lookups
        split = {}
        if phases:  # where the lookup's time goes (synchronized phases: shares, not a timing)
            import collections

            from .phases import timed_phases

            totals = collections.defaultdict(float)
            t = time.perf_counter()
            with timed_phases(cache, totals):
                for i in range(min(iters, 3)):
                    cache.lookup((keys[i] + offsets).reshape(-1))
            totals["other (Python, small ops)"] = time.perf_counter() - t - sum(totals.values())
            split = {k: v / min(iters, 3) * 1e6 for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}
            print(f"batch {b}: unique misses per batch {(s1.unique_misses - s0.unique_misses) / iters:,.0f}; "
                  + ", ".join(f"{k} {v:,.0f} us" for k, v in split.items()), flush=True)
        results.append({"case": f"DLRM batch {b}", "batch": b, "iterations": iters,
                        "median_us": float(np.median(us)), "mean_us": float(us.mean()),
                        "p99_us": float(np.percentile(us, 99)), "hit_rate": hits / lookups,
                        "lookup_only_median_us": float(np.median(lookup_only) * 1e6), "phases_us": split,
                        "hps_a100_us": HPS_A100_US.get(b), "ratio_to_hps": float(np.median(us)) / HPS_A100_US[b]
                        if b in HPS_A100_US else None,
                        "rows": rows, "gib": rows * dim * 4 / 2**30, "cache_rows": cache.capacity,
                        "fill_s": fill_s, "dense": "CuPy fp32 (no TensorRT)", "policy": policy,
                        "misses_from": "pinned store, zero-copy" if zero_copy else "host store, CPU gather + copy"})
    cache.close()
    store.close()
    return results


def plugin_path_model(config: str, n: int, dim: int, table: str = "t", model: str = "m"):
    """The plugin-path benchmark's graph: keys (n,) int64 -> one EmbCacheLookup -> rows (n, dim),
    at the project's IR version (``trt_plugin.fields.IR_VERSION``)."""
    from onnx import TensorProto, helper

    from trt_plugin.fields import OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION, new_model

    node = helper.make_node(OP_TYPE, ["k"], ["r"], config=config, table=table, model=model, dim=dim,
                            default_value=0.0, plugin_version=PLUGIN_VERSION, plugin_namespace=PLUGIN_NAMESPACE)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("k", TensorProto.INT64, [n])],
                              [helper.make_tensor_value_info("r", TensorProto.FLOAT, [n, dim])])
    return new_model(graph)


def plugin_path(n: int = 1 << 16, dim: int = 128, rows: int = 1 << 20, repeats: int = 50) -> list[dict]:
    """Lookups per second, all hits, through the plugin's enqueue body (``lookup_into``, the config's
    cache) and through the ONNX Runtime op, against ``Cache.lookup`` on the same cache."""
    import cupy as cp

    from trt_plugin.config import Config, ModelConfig, TableConfig
    from trt_plugin.fields import LookupFields
    from trt_plugin.ort import SurgeredSession
    from trt_plugin.tables import close_all, lookup_into, open_table_store, table_cache, write_table

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        t = TableConfig("t", dim, ("rocksdb:t",), rows=rows, capacity=rows, keys_are_rows=True)
        config = Config((ModelConfig("m", (t,), backend="gpu"),), base=Path(tmp))
        path = config.save(os.path.join(tmp, "c.json"))
        store = open_table_store(config, t, create=True)
        write_table(store, np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32), progress=False)
        store.close()
        cache, _ = table_cache(path, "t", backend="gpu")
        fields = LookupFields(str(path), "t", dim, "m")
        keys = cp.random.randint(0, rows, n, dtype=cp.int64)
        for _ in range(50):  # until every key is cached (LFU admits a key once it has missed enough)
            before = cache.stats.misses
            cache.lookup(keys)
            if cache.stats.misses == before:
                break
        buf = cp.empty((n, dim), cp.float32)
        session = SurgeredSession(plugin_path_model(str(path), n, dim), backend="gpu")
        host_keys = keys.get()
        stream = cp.cuda.get_current_stream()

        def timed(fn):
            fn()
            stream.synchronize()
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            stream.synchronize()
            return (time.perf_counter() - t0) / repeats

        misses = cache.stats.misses
        direct = timed(lambda: cache.lookup(keys))
        plugin = timed(lambda: lookup_into(fields, keys, buf))
        ort = timed(lambda: session.run({"k": host_keys}))
        if cache.stats.misses != misses:
            raise RuntimeError("the plugin-path benchmark missed: its figures would not be all-hit ones")
        for case, seconds in (("direct Cache.lookup", direct), ("plugin path (lookup_into)", plugin),
                              ("ONNX Runtime op (rows to host)", ort)):
            out.append({"case": f"{case}, {n} keys dim {dim} all hits", "us": seconds * 1e6,
                        "m_keys_s": n / seconds / 1e6, "ratio_to_direct": direct / seconds})
        close_all()
    return out


def measure(total_gib: float = 16.0, progress: bool = True, zero_copy: bool = True, phases: bool = False) -> dict:
    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    return {"device": props["name"].decode(),
            "rows": plugin_path() + dlrm_latency(total_gib, progress=progress, zero_copy=zero_copy, phases=phases)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--total-gib", type=float, default=16.0)
    parser.add_argument("--host-store", action="store_true",
                        help="misses read on the CPU from ordinary host memory (default: GPU zero-copy reads "
                             "of a pinned store)")
    parser.add_argument("--phases", action="store_true", help="also print where each batch's lookup time goes")
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args(argv)
    result = measure(args.total_gib, zero_copy=not args.host_store, phases=args.phases)
    print(f"device: {result['device']}")
    for r in result["rows"]:
        if "batch" in r:
            print(f"{r['case']:<22} median {r['median_us']:9.1f} us  mean {r['mean_us']:9.1f}  p99 "
                  f"{r['p99_us']:9.1f}  hit rate {r['hit_rate']:.3f}  lookup alone {r['lookup_only_median_us']:8.1f} us"
                  f"  HPS A100 {r['hps_a100_us']} us  ratio {r['ratio_to_hps']:.2f}")
        else:
            print(f"{r['case']:<58} {r['us']:9.1f} us  {r['m_keys_s']:8.1f} M keys/s  x{r['ratio_to_direct']:.2f}")
    rows = [r for r in result["rows"] if "batch" in r]
    if rows:
        print(f"{rows[0]['rows']:,} rows ({rows[0]['gib']:.1f} GiB), cache {rows[0]['cache_rows']:,} rows, "
              f"store filled in {rows[0]['fill_s']:.1f} s; dense: {rows[0]['dense']}; misses from "
              f"{rows[0]['misses_from']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
