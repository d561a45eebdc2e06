"""Policy-comparison studies: replay a trace through policy x admission x capacity x ways, beside Belady.

>>> rows = run_study(trace, policies=["lru", "lfu"], capacities=[0.01, 0.05])   # doctest: +SKIP
>>> write_results(rows, "out", "criteo"); plot_results(rows, "out", "criteo")  # doctest: +SKIP

Each cache is an ``embcache.Cache`` (CPU or GPU backend) with 1-value rows in
front of a tier that holds every key, so the figures are the policy's alone:
every key can be admitted, nothing is absent.  Lookups are batch-synchronous
(DESIGN.md section 3): a batch's hits are counted against the cache as it was
when the batch began.  Belady's MIN runs one key at a time (its textbook form),
fully associative and restricted to the cache's own sets.
"""
from __future__ import annotations

import csv
import json
import os
import textwrap
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .belady import belady_curve
from .cache import Cache
from .layout import num_sets_for, sets_of
from .policies import admission_class, policy_class
from .tiers import Tier

__all__ = ["run_study", "skipped_runs", "skipped_notes", "static_keys", "write_results", "plot_results",
           "load_trace_source", "lookahead_gains", "FIELDS"]

FIELDS = ["policy", "admission", "ways", "capacity", "capacity_fraction", "batch", "backend", "lookups",
          "hit_rate", "byte_hit_rate", "evictions", "insertions", "lookups_per_s", "capacity_asked", "hit_writes",
          "lookahead"]


class _EveryKeyTier(Tier):
    """Holds every key (zero rows): the study measures the policy, not the tier."""

    def __repr__(self) -> str:
        return "EveryKeyTier()"

    def _get_many(self, keys):
        return np.zeros((keys.shape[0], self.dim), self.dtype), np.ones(keys.shape[0], np.bool_)

    def _put_many(self, keys, values):
        pass

    def _delete_many(self, keys):
        pass


def _chunks(trace) -> list[np.ndarray]:
    return [trace] if isinstance(trace, np.ndarray) else [np.asarray(c) for c in trace]


def _batches(chunks: list[np.ndarray], batch: int):
    """Consecutive batches of ``batch`` keys across chunk boundaries."""
    carry = np.empty(0, np.int64)
    for chunk in chunks:
        data = np.concatenate([carry, chunk]) if carry.shape[0] else chunk
        whole = data.shape[0] // batch * batch
        for i in range(0, whole, batch):
            yield data[i:i + batch]
        carry = np.array(data[whole:])
    if carry.shape[0]:
        yield carry


def _head(chunks: list[np.ndarray], n: int) -> np.ndarray:
    """The first ``n`` keys of the trace."""
    out, left = [], n
    for chunk in chunks:
        if left <= 0:
            break
        out.append(chunk[:left])
        left -= out[-1].shape[0]
    return np.concatenate(out)


def _capacity(value, distinct: int) -> int:
    return max(1, int(value * distinct)) if isinstance(value, float) and value <= 1.0 else int(value)


def _belady_rows(whole: np.ndarray, capacities: list[int], ways: Sequence[int], distinct: int,
                 weights) -> list[dict]:
    """Belady's MIN, fully associative (once per capacity) and in each ``ways``'s sets."""
    lookups = whole.shape[0]
    shapes = [("belady", None)] + [("belady-sets", w) for w in ways]
    rows = []
    for name, w in shapes:
        slots = [num_sets_for(c, w or ways[0]) * (w or ways[0]) for c in capacities]
        start = time.perf_counter()
        hits = belady_curve(whole, slots, w)
        seconds = time.perf_counter() - start
        for asked, capacity, h in zip(capacities, slots, hits):
            rows.append({"policy": name, "admission": "-", "ways": w or capacity, "capacity": capacity,
                         "capacity_asked": asked,
                         "capacity_fraction": capacity / distinct, "batch": 1, "backend": "cpu",
                         "lookups": lookups, "hit_rate": h / lookups,
                         "byte_hit_rate": float("nan") if weights is not None else h / lookups,
                         "evictions": -1, "insertions": -1, "lookups_per_s": lookups * len(slots) / seconds,
                         "hit_writes": float("nan"), "lookahead": "-"})
    return rows


def _hit_writes(cache: Cache) -> float:
    """The share of ``cache``'s hits whose score the hit path stored (NaN where the backend does not count)."""
    writes = cache._backend.score_writes  # the CPU backend's measure (kernels.cpu.CPUBackend.score_writes)
    hits = cache.stats.hits
    return float("nan") if writes is None else (writes / hits if hits else 0.0)


def static_keys(warmup: np.ndarray, num_sets: int, ways: int) -> np.ndarray:
    """The keys a static cache preloads: in each set, the ``ways`` most frequent keys of ``warmup``.

    Ties go to the smaller key, so the choice is reproducible.
    """
    keys, counts = np.unique(np.asarray(warmup, np.int64), return_counts=True)
    sets = sets_of(keys, num_sets)
    order = np.lexsort((keys, -counts, sets))  # by set, then most frequent first
    sets = sets[order]
    first = np.searchsorted(sets, sets, side="left")  # index of each set's first entry
    rank = np.arange(order.shape[0]) - first
    return keys[order[rank < ways]]


def _never_inserts(policy: str) -> bool:
    """Whether the policy ``policy`` names (through the registry) never inserts on lookup, as static."""
    return not policy_class(policy).inserts_on_lookup


def _no_lookahead(policy: str) -> str | None:
    """Why the policy ``policy`` names runs no lookahead window (a reason for the notes), or None."""
    cls = policy_class(policy)
    if not cls.inserts_on_lookup:
        return f"a {cls.name} cache never evicts, so every window equals none"
    if cls.victim == "s3fifo":
        return f"{cls.name} does not take lookahead (its queues choose victims by rules of their own)"
    return None


def skipped_runs(policies: Sequence[str], admissions: Sequence[str]) -> list[tuple[str, str]]:
    """The (policy, admission) pairs ``run_study`` leaves out, because another run gives the same result.

    A policy that never inserts on lookup (``static``) never admits, so only its first admission rule
    is run.  Names resolve through ``embcache.policies``' registry (unknown ones raise ``ConfigError``).
    """
    return [(p, a) for p in policies if _never_inserts(p) for a in admissions[1:]]


def run_study(trace: np.ndarray | Iterable[np.ndarray], policies: Sequence[str] = ("lru", "lfu", "fifo"),
              admissions: Sequence[str] = ("always",),
              capacities: Sequence[float | int] = (0.01, 0.05, 0.20), ways: Sequence[int] = (32,), batch: int = 1024,
              backend: str = "auto", belady: bool = True, column_bytes: dict[int, int] | None = None,
              static_warmup: float = 0.1, progress: bool = True, lookahead: Sequence[int] = (0,)) -> list[dict]:
    """Replay ``trace`` through every policy x admission x capacity x ways; one result dict per run.

    Parameters
    ----------
    trace : (n,) int64 array, or an iterable of such chunks (``traces.iter_trace``)
        Keys in lookup order.
    policies, admissions : names
        Registered names (``embcache.policies.policy_names()``, ``admission_names()``) or import paths
        ``module:Class`` (imported first, so a user's policy needs no other import); the result rows
        name each by its registered name.  Checked before any replay: an unknown one raises
        ``ConfigError`` listing the registered names.
    capacities : floats in (0, 1] (fractions of the trace's distinct keys) or ints (rows)
        Each is rounded up to whole sets by the cache; ``capacity`` in the results is the real one.
    batch : int
        Keys per ``lookup``.
    belady : bool
        Add Belady's MIN rows: ``policy="belady"`` (fully associative, same capacity) and
        ``"belady-sets"`` (the cache's sets and ways).  Needs the whole trace in memory.
    column_bytes : dict, optional
        Row bytes per column (key >> 32) for the byte hit rate; all rows the same size if None
        (then the byte hit rate equals the hit rate).
    static_warmup : float
        For ``policy="static"`` (any policy that never inserts on lookup): the cache is preloaded, before
        the replay, with each set's most frequent keys among the trace's first ``static_warmup`` fraction of lookups
        (``static_keys``).  The replay still covers the whole trace, warm-up included, so those
        lookups were seen in advance: a static cache planned from a day of traffic, replayed on it.
    lookahead : ints >= 0
        Lookahead windows, in batches (issue 22): each run is repeated for every window ``W``, every
        ``lookup`` of batch ``i`` given ``upcoming=`` the keys of batches ``i + 1 .. i + W`` (``Cache.lookup``:
        eviction spares them; 0: no lookahead).  A policy that never evicts (static) or takes no
        lookahead (s3fifo) runs ``W = 0`` only (:func:`skipped_notes` says so).

    Returns
    -------
    list of dict with the keys of ``FIELDS``: ``lookahead`` the window in batches (``"-"`` for Belady), hit rate
    per key occurrence, byte hit rate, evictions,
    insertions, lookups per second (wall time of the replay) and ``hit_writes``, the share of hits that
    stored a score (a hit whose rule leaves its score as it was stores nothing; counted by the CPU
    backend, one per hit occurrence that changed its score; NaN on the GPU backend and for Belady).  ``capacity`` is the cache's real
    size (``num_sets * ways``), ``capacity_asked`` the rows asked for.  Pairs that
    :func:`skipped_runs` names have no rows.
    """
    from tqdm.auto import tqdm

    policies = [policy_class(p).name for p in policies]  # an unknown name fails before the trace is read
    admissions = [admission_class(a).name for a in admissions]
    windows = _windows(lookahead)
    chunks = _chunks(trace)
    lookups = sum(c.shape[0] for c in chunks)
    if any(_never_inserts(p) for p in policies) and not 0.0 < static_warmup <= 1.0:
        raise ValueError(f"static_warmup must be a fraction in (0, 1], got {static_warmup}")
    whole = np.concatenate(chunks) if belady or column_bytes or max(windows) > 0 else None
    distinct = int(np.unique(whole if whole is not None else np.concatenate(chunks)).shape[0])
    weights = None
    if column_bytes:
        table = np.zeros(int((whole >> 32).max()) + 1, np.float64)
        for col, size in column_bytes.items():
            if col < table.shape[0]:
                table[col] = size
        weights = table[whole >> 32]
    skipped = set(skipped_runs(policies, admissions))
    runs = [(p, a, c, w, lw) for c in capacities for w in ways for p in policies for a in admissions
            for lw in windows if (p, a) not in skipped and (lw == 0 or _no_lookahead(p) is None)]
    rows: list[dict] = []
    with tqdm(total=len(runs) * lookups, unit="key", unit_scale=True, desc="study", disable=not progress) as bar:
        for policy, admission, cap, w, window in runs:
            cache = Cache(_capacity(cap, distinct), 1, policy, admission, backend=backend, tier=_EveryKeyTier(1),
                          ways=w)
            if _never_inserts(policy):
                cache.preload(static_keys(_head(chunks, max(1, int(static_warmup * lookups))), cache.num_sets, w))
            hit_bytes = 0.0
            start = time.perf_counter()
            at = 0
            for keys in _batches(chunks, batch):
                if weights is not None:  # hits are the keys cached when the batch begins
                    found = cache.query(keys)[1]
                    found = found.get() if hasattr(found, "get") else found
                    hit_bytes += float(weights[at:at + keys.shape[0]][found].sum())
                if window:  # the next batches are consecutive slices of the trace
                    end = at + keys.shape[0]
                    cache.lookup(keys, upcoming=whole[end:end + window * batch])
                else:
                    cache.lookup(keys)
                at += keys.shape[0]
                bar.update(keys.shape[0])
            seconds = time.perf_counter() - start
            s = cache.stats
            rows.append({"policy": policy, "admission": admission, "ways": w, "capacity": cache.capacity,
                         "capacity_asked": _capacity(cap, distinct),
                         "capacity_fraction": cache.capacity / distinct, "batch": batch, "backend": cache.backend,
                         "lookups": lookups, "hit_rate": s.hit_rate,
                         "byte_hit_rate": hit_bytes / weights.sum() if weights is not None else s.hit_rate,
                         "evictions": s.evictions, "insertions": s.insertions, "lookups_per_s": lookups / seconds,
                         "hit_writes": _hit_writes(cache), "lookahead": window})
            cache.close()
    if belady:
        rows += _belady_rows(whole, [_capacity(c, distinct) for c in capacities], ways, distinct, weights)
    return rows


def _windows(lookahead: Sequence[int]) -> list[int]:
    from .errors import ConfigError

    windows = [int(w) for w in lookahead]
    if not windows or any(w < 0 or w != v for w, v in zip(windows, lookahead)):
        raise ConfigError(f"lookahead windows are whole numbers of batches >= 0 (0: none), got {list(lookahead)}")
    return list(dict.fromkeys(windows))


def lookahead_gains(rows: list[dict]) -> list[dict]:
    """For every run with a lookahead window, its hit rate beside the same run's without one: dicts of
    policy, admission, ways, capacity, capacity_fraction, batch, lookahead, hit_rate, base (the hit rate
    without lookahead) and gain (the difference, in hit-rate points as a fraction)."""
    base = {(r["policy"], r["admission"], r["ways"], r["capacity"], r["batch"]): r["hit_rate"]
            for r in rows if r.get("lookahead") == 0}
    out = []
    for r in rows:
        key = (r["policy"], r["admission"], r["ways"], r["capacity"], r["batch"])
        if isinstance(r.get("lookahead"), int) and r["lookahead"] > 0 and key in base:
            out.append({"policy": r["policy"], "admission": r["admission"], "ways": r["ways"],
                        "capacity": r["capacity"], "capacity_fraction": r["capacity_fraction"], "batch": r["batch"],
                        "lookahead": r["lookahead"], "hit_rate": r["hit_rate"], "base": base[key],
                        "gain": r["hit_rate"] - base[key]})
    return out


def write_results(rows: list[dict], out: str | os.PathLike, stem: str = "study") -> tuple[Path, Path]:
    """``out/<stem>.csv`` and ``out/<stem>.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{stem}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=1))
    return out / f"{stem}.csv", out / f"{stem}.json"


def _label(r: dict, several_ways: bool) -> str:
    text = r["policy"] if r["admission"] in ("always", "-") else f"{r['policy']} + {r['admission']}"
    if isinstance(r.get("lookahead"), int) and r["lookahead"] > 0:
        text += f", lookahead {r['lookahead']}"
    return f"{text}, {r['ways']} ways" if several_ways and r["policy"] != "belady" else text


_MARKERS = "osD^vP*Xh<>p"


def _figure(rows: list[dict], title: str = "", notes: Sequence[str] = ()):
    """The study's figure: every series its own colour and marker, the legend beside the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    several_ways = len({r["ways"] for r in rows if not r["policy"].startswith("belady")}) > 1
    lines: dict[str, list] = {}
    for r in rows:
        lines.setdefault(_label(r, several_ways), []).append((r["capacity_fraction"], r["hit_rate"]))
    online = sorted(k for k in lines if not k.startswith("belady"))
    optimum = sorted(k for k in lines if k.startswith("belady"))
    # tab10/tab20 while they last, then evenly spaced hues: no two series share a colour
    cmap = plt.get_cmap("tab10" if len(online) <= 10 else "tab20" if len(online) <= 20 else "turbo")
    colours = [cmap(i) for i in range(len(online))] if len(online) <= 20 else \
        [cmap(x) for x in np.linspace(0.0, 1.0, len(online))]
    greys = [(g, g, g, 1.0) for g in np.linspace(0.0, 0.6, max(1, len(optimum)))]
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    for i, label in enumerate(online + optimum):
        x, y = zip(*sorted(lines[label]))
        if i < len(online):
            style, colour = ("-", "-.", "--")[i // len(_MARKERS) % 3], colours[i]
        else:
            style, colour = ("--" if label == "belady" else ":"), greys[i - len(online)]
        ax.plot(x, y, linestyle=style, marker=_MARKERS[i % len(_MARKERS)], ms=4, label=label, color=colour)
    ax.set_xscale("log")
    ax.set_xlabel("cache capacity (fraction of the trace's distinct keys)")
    ax.set_ylabel("hit rate (per key occurrence)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    ax.set_title(textwrap.fill(title, 90), fontsize=9)  # trace descriptions run long
    if notes:
        fig.text(0.01, 0.005, textwrap.fill("; ".join(notes), 140), fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, 0.06 if notes else 0, 1, 1))
    return fig


def skipped_notes(policies: Sequence[str], admissions: Sequence[str], lookahead: Sequence[int] = (0,)) -> list[str]:
    """One sentence per combination ``run_study`` skipped, for the plot and the command's output."""
    notes = [f"{p} + {a} skipped: a {p} cache never admits, so it equals {p} + {admissions[0]}"
             for p, a in skipped_runs(policies, admissions)]
    if any(w > 0 for w in lookahead):
        notes += [f"{p}: lookahead windows skipped: {_no_lookahead(p)}" for p in policies if _no_lookahead(p)]
    return notes


def plot_results(rows: list[dict], out: str | os.PathLike, stem: str = "study", title: str = "",
                 notes: Sequence[str] = ()) -> list[Path]:
    """Hit rate against capacity, one line per policy (+ admission), Belady dashed; PNG and SVG.

    Every series has its own colour and marker (Belady's in greys, dashed and dotted) and the
    legend sits outside the axes.  ``notes`` (e.g. :func:`skipped_notes`) are printed under the plot.
    SVG text stays text (searchable).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig = _figure(rows, title, notes)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{stem}.png", out / f"{stem}.svg"]
        for p in paths:
            fig.savefig(p, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return paths


#: lookups of the synthetic stand-in for the Criteo sample: as many as the sample has
FALLBACK_LOOKUPS = 460_760


def _data_root(data_root: str | os.PathLike | None) -> Path:
    from . import traces
    from .errors import ConfigError

    if data_root is None:
        return traces.data_dir()
    if not Path(data_root).is_dir():
        raise ConfigError(f"--data {data_root}: no such folder; name the folder that holds criteo/ "
                          "(train_head10k.txt, test_head10k.txt)")
    return Path(data_root)


def _criteo_missing(root: Path) -> str:
    return (f"the Criteo sample is not under {root}/criteo (train_head10k.txt and test_head10k.txt, the first "
            "10,000 rows of the Kaggle Display Advertising Challenge's train.txt and test.txt); put them there, "
            "or point EMBCACHE_DATA or --data at the folder holding criteo/")


def _synthetic(spec: str, root: Path, notify: Callable[[str], None] | None) -> tuple[list[np.ndarray], str]:
    from . import traces
    from .errors import ConfigError

    parts = spec.split(":")[1:]
    usage = f"{spec!r}: a synthetic trace is synthetic:LOOKUPS[:SEED[:SCALE]], e.g. synthetic:1000000:0:10"
    try:
        if not 1 <= len(parts) <= 3:
            raise ValueError
        number = float(parts[0])
        lookups = int(number)
        seed = int(parts[1]) if len(parts) > 1 else 0
        scale = float(parts[2]) if len(parts) > 2 else 1.0
    except ValueError:
        raise ConfigError(usage) from None
    if lookups != number or lookups < 1 or seed < 0 or not 0 < scale < float("inf"):
        raise ConfigError(f"{usage}: LOOKUPS a whole number >= 1, SEED >= 0, SCALE > 0")
    model, fitted = traces.criteo_model(root)
    if not fitted and notify is not None:
        notify(f"the Criteo sample is not under {root}/criteo; the synthetic trace uses the per-column fit "
               "recorded from it (the same parameters)")
    how = "fitted to the Criteo sample" if fitted else "with the Criteo sample's recorded fit"
    return list(model.generate(lookups, seed=seed, scale=scale)), (
        f"SYNTHETIC: {lookups:,} lookups, per-column Zipf {how} (KS {model.ks:.3f}), "
        f"cardinalities x{scale:g}, seed {seed}")


_DRIFT_USAGE = ("a drifting trace is drift:LOOKUPS[:KEYS[:INTERVAL[:FRACTION[:EXPONENT[:SEED]]]]], e.g. "
                "drift:100000000 (KEYS and INTERVAL default to LOOKUPS / 100, FRACTION 0.1, EXPONENT 1.0, SEED 0)")


def _drift(spec: str) -> tuple[list[np.ndarray], str]:
    from . import traces
    from .errors import ConfigError

    parts = spec.split(":")[1:]
    try:
        if not 1 <= len(parts) <= 6:
            raise ValueError
        numbers = [float(v) for v in parts]
        lookups = int(numbers[0])
        whole = [lookups] + [int(v) for v in numbers[1:3]]
        if any(w != v for w, v in zip(whole, numbers)):
            raise ValueError
        keys = whole[1] if len(whole) > 1 else max(1, lookups // 100)
        interval = whole[2] if len(whole) > 2 else max(1, lookups // 100)
        fraction = numbers[3] if len(numbers) > 3 else 0.1
        exponent = numbers[4] if len(numbers) > 4 else 1.0
        seed = int(parts[5]) if len(parts) > 5 else 0
        if lookups < 1 or seed < 0:
            raise ValueError
        chunks = list(traces.drifting_zipf_trace(lookups, keys, exponent, interval, fraction, seed))
    except (ValueError, ConfigError) as exc:
        detail = f" ({exc})" if isinstance(exc, ConfigError) else ""
        raise ConfigError(f"{spec!r}: {_DRIFT_USAGE}{detail}") from None
    return chunks, (f"SYNTHETIC, DRIFTING: {lookups:,} lookups, Zipf({exponent:g}) over {keys:,} keys, "
                    f"{fraction:g} of the ranking reshuffled every {interval:,} lookups, seed {seed}")


def load_trace_source(source: str | None, data_root: str | os.PathLike | None = None,
                      notify: Callable[[str], None] | None = None, **key_file: Any) -> tuple[Iterable[np.ndarray], str]:
    """The chunks of a named trace and a one-line description of it.

    Parameters
    ----------
    source : str or None
        ``criteo`` (the sample), ``synthetic:LOOKUPS[:SEED[:SCALE]]`` (per-column Zipf fitted to the
        sample; ``SCALE`` multiplies every column's cardinality),
        ``drift:LOOKUPS[:KEYS[:INTERVAL[:FRACTION[:EXPONENT[:SEED]]]]]`` (a Zipf law whose ranking is
        partly reshuffled every INTERVAL lookups: ``traces.drifting_zipf_trace``), a trace folder (``embcache trace
        convert``), a ``.npy`` of integer keys, or a text file of keys (``traces.iter_key_file``, which
        ``key_file`` options go to).  None: the Criteo sample when it is there, else
        ``synthetic:460760`` (as many lookups as the sample), and ``notify`` is told.
    data_root : folder holding ``criteo/``, optional
        Default ``traces.data_dir()`` (``$EMBCACHE_DATA``, else ``shared/data`` beside the clone).
        A folder given here must exist, and must hold the sample when the sample is what is read.
    notify : callable(str), optional
        Told, in a sentence, when a synthetic stand-in replaces the missing sample.

    Raises
    ------
    ConfigError
        A source that names nothing, a malformed ``synthetic:`` or ``drift:`` spec, a missing ``data_root``, or
        ``criteo`` without the sample.
    """
    from . import traces
    from .errors import ConfigError

    root = _data_root(data_root)
    if source is None:
        if traces.criteo_files(root):
            source = "criteo"
        elif data_root is not None:
            raise ConfigError(_criteo_missing(root))
        else:
            if notify is not None:
                notify(f"{_criteo_missing(root)}; using synthetic:{FALLBACK_LOOKUPS} instead")
            return _synthetic(f"synthetic:{FALLBACK_LOOKUPS}", root, None)
    if source == "criteo":
        files = traces.criteo_files(root)
        if not files:
            raise ConfigError(_criteo_missing(root) + "; or read synthetic:LOOKUPS instead")
        return [traces.read_criteo(files)], "Criteo sample (real)"
    if source.startswith("synthetic:"):
        return _synthetic(source, root, notify)
    if source.startswith("drift:"):
        return _drift(source)
    path = Path(source)
    if path.is_dir():
        meta = traces.trace_meta(path)
        return traces.iter_trace(path), f"trace folder {source} ({meta.get('source', '')})"
    if path.is_file():
        if path.suffix.lower() == ".npy":
            if key_file:
                raise ConfigError(f"{source}: --columns/--sep/--values/--header are for text files, not .npy")
            return traces.iter_npy_keys(path), f"keys of {source}"
        return traces.iter_key_file(path, **key_file), f"keys of {source}"
    raise ConfigError(f"{source!r} is not 'criteo', 'synthetic:LOOKUPS[:SEED[:SCALE]]', 'drift:LOOKUPS[:...]', "
                      "a trace folder or a key "
                      "file (.npy, or text with one key a line): no such file or folder")
