"""Prototype replays for issue 22's 20% bar: one key a batch, 32 ways, set = splitmix64(key) % sets.

Not part of the library and not a benchmark: Numba replays of ``lru + tinylfu_evict``'s rule and of the
candidate rules that docs/study.md lists under "What else was tried", to compare them on the Criteo
sample and the drifting trace before implementing one.  The first rule is the library's, with its sized
count-min sketch (the same hashes, halving every 40 x capacity lookups): it gives the library's hit
counts exactly (284,401 / 335,893 / 371,322 at 736 / 3,680 / 14,656 slots, docs/study/criteo-1key-evict.csv).

    EMBCACHE_DATA=/work/shared/data python -m benchmarks.hit20_replay [criteo] [drift:10000000] ...

prints every rule's hit rate and hits at 1 / 5 / 20% of the trace's distinct keys (the Criteo sample:
736 / 3,680 / 14,656 slots), one key a batch.
"""
from __future__ import annotations

import sys
import time

import numba
import numpy as np

from embcache.layout import mix64_array, mix64_bits

# the sketch's row constant (MinFrequency's docstring: mix64(key + (row + 1) * 0x9E3779B97F4A7C15 + seed))
GOLDEN = np.uint64(0x9E3779B97F4A7C15)

__all__: list[str] = []


def _load(name):
    """A trace's keys: a name ``embcache study --trace`` takes, or ``tables4:ROWS``: four drifting Zipf
    tables of 10^3, 10^4, 10^5 and 10^6 keys (table j's keys ``(j << 32) | k``, each reshuffled every
    ROWS / 100 rows), one key of each a row."""
    if name.startswith("tables4:"):
        from embcache.traces import drifting_zipf_trace
        rows = int(name.split(":")[1])
        parts = [(np.int64(j) << 32) | np.concatenate(list(drifting_zipf_trace(rows, n, interval=max(rows // 100, 1),
                                                                               seed=j)))
                 for j, n in enumerate((1000, 10_000, 100_000, 1_000_000))]
        return np.stack(parts, 1).ravel()
    from embcache.study import load_trace_source
    chunks, _ = load_trace_source(name)
    return np.concatenate(list(chunks)).astype(np.int64)


def _prep(keys, num_sets, width, depth=4, seed=0):
    uniq, ids = np.unique(keys, return_inverse=True)
    sets = (mix64_array(uniq) % np.uint64(num_sets)).astype(np.int64)
    cols = np.empty((uniq.shape[0], depth), np.int64)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as the sketch's hash wants
        for r in range(depth):
            z = uniq.view(np.uint64) + np.uint64(r + 1) * GOLDEN + np.uint64(seed)
            cols[:, r] = (mix64_bits(z) & np.uint64(width - 1)).astype(np.int64)
    return ids.astype(np.int64), sets, cols


@numba.njit(cache=True)
def _est(k, counts, sketch, cols, exact):
    if exact:
        return counts[k]
    best = np.int64(1) << 62
    for r in range(sketch.shape[0]):
        v = sketch[r, cols[k, r]]
        if v < best:
            best = v
    return best


@numba.njit(cache=True)
def _add(k, counts, sketch, cols, exact):
    counts[k] += 1
    if not exact:
        for r in range(sketch.shape[0]):
            sketch[r, cols[k, r]] += 1


@numba.njit(cache=True)
def _halve(counts, sketch, exact):
    if exact:
        for i in range(counts.shape[0]):
            counts[i] >>= 1
    else:
        for r in range(sketch.shape[0]):
            for c in range(sketch.shape[1]):
                sketch[r, c] >>= 1


@numba.njit(cache=True)
def _count(k, clock, period, counts, sketch, cols, exact):
    """Key ``k`` counted at lookup ``clock``, then every counter halved when ``clock`` is a multiple of
    ``period`` (0: never), as the library's sketch is."""
    _add(k, counts, sketch, cols, exact)
    if period > 0 and clock % period == 0:
        _halve(counts, sketch, exact)


@numba.njit(cache=True)
def _fill_empty(tk, sc, where, base, ways, k, clock):
    """Key ``k`` into the first empty way of the set at ``base``, if it has one (True), at ``clock``."""
    for w in range(ways):
        if tk[base + w] < 0:
            tk[base + w] = k
            sc[base + w] = clock
            where[k] = base + w
            return True
    return False


@numba.njit(cache=True)
def _hit_or_fill(tk, sc, where, sets, ways, k, clock):
    """1: ``k`` hit (its last access is now ``clock``); 2: it took an empty way of its set; 0: it missed a
    full set, whose victim the caller picks."""
    slot = where[k]
    if slot >= 0:
        sc[slot] = clock
        return 1
    return 2 if _fill_empty(tk, sc, where, sets[k] * ways, ways, k, clock) else 0


@numba.njit(cache=True)
def _eff(e, age, mode, p1, p2):
    """The frequency a rule ranks by: the estimate ``e`` of a key last seen ``age`` lookups ago."""
    if mode == 0:
        return e
    if mode == 1:  # capped
        return min(e, p1)
    if mode == 2:  # log2 buckets
        b = 0
        while e > 1:
            e >>= 1
            b += 1
        return b
    if mode == 3:  # halved once per p1 lookups of age beyond p2
        if age <= p2:
            return e
        sh = (age - p2) // p1
        if sh > 62:
            return 0
        return e >> sh
    if mode == 4:  # dead after p1 lookups idle: rank 0
        if age > p1:
            return 0
        return e
    return e


@numba.njit(cache=True)
def _sketched_state(cap, nkeys, depth, width):
    """A sketched replay's arrays: each slot's key (-1: empty) and score, each key's exact count, the
    count-min sketch (depth, width), and each key's slot (-1: not cached)."""
    return (np.full(cap, -1, np.int64), np.zeros(cap, np.int64), np.zeros(nkeys, np.int64),
            np.zeros((depth, width), np.int64), np.full(nkeys, -1, np.int64))


@numba.njit(cache=True)
def replay_freq(ids, sets, cols, nkeys, num_sets, ways, width, depth, sample, exact, mode, p1, p2, scale):
    """tinylfu_evict over LRU with the ranked frequency ``_eff``; p1/p2 are in lookups (scaled by ``scale``
    times the capacity when ``scale`` > 0)."""
    cap = num_sets * ways
    if scale > 0:
        p1 = p1 * cap // scale
        p2 = p2 * cap // scale
    tk, sc, counts, sketch, where = _sketched_state(cap, nkeys, depth, width)
    hits = 0
    period = sample * cap
    for t in range(ids.shape[0]):
        clock = t + 1
        k = ids[t]
        _count(k, clock, period, counts, sketch, cols, exact)
        got = _hit_or_fill(tk, sc, where, sets, ways, k, clock)
        hits += got == 1
        if got:
            continue
        base = sets[k] * ways
        low = -1
        low_e = np.int64(1) << 62
        for w in range(ways):
            j = base + w
            e = _eff(_est(tk[j], counts, sketch, cols, exact), clock - sc[j], mode, p1, p2)
            if low < 0 or e < low_e or (e == low_e and sc[j] < sc[low]):
                low, low_e = j, e
        mine = _eff(_est(k, counts, sketch, cols, exact), 0, mode, p1, p2)
        if mine > low_e or (mine == low_e and clock > sc[low]):
            where[tk[low]] = -1
            tk[low] = k
            sc[low] = clock
            where[k] = low
    return hits


CRITEO_CAPS = (736, 3680, 14656)


def _sized_width(capacity):
    return 1 << max(int(16 * capacity - 1).bit_length(), 4)


def _over_capacities(keys, caps, ways, replay, sample, exact, *rule, tables=()):
    """Hits of a sketched replay at each capacity: its sets (round(cap / ways)), sketch width and prepared
    trace, then ``replay(ids, sets, cols, *tables, universe, num_sets, ways, width, 4, sample, exact, *rule)``
    (a depth-4 sketch)."""
    out = []
    for cap in caps:
        num_sets = max(1, round(cap / ways))
        width = _sized_width(num_sets * ways)
        ids, sets, cols = _prep(keys, num_sets, width)
        out.append(replay(ids, sets, cols, *tables, int(ids.max()) + 1, num_sets, ways, width, 4, sample, exact,
                          *rule))
    return out


def run_freq(keys, caps, exact=True, mode=0, p1=0, p2=0, scale=0, sample=40, ways=32):
    return _over_capacities(keys, caps, ways, replay_freq, sample, exact, mode, p1, p2, scale)


def _fmt(hits, n):
    return " / ".join(f"{h / n:.5f} ({h})" for h in hits)


@numba.njit(cache=True)
def _pval(g, e, reached, cmax):
    """The learned chance that a key of table ``g`` seen ``e`` times is seen again, x 2**20."""
    c = min(e, cmax)
    if c < 1:
        return 0
    a = reached[g, c]
    if a == 0:
        return 1 << 20
    return (reached[g, c + 1] << 20) // a if c < cmax else (reached[g, cmax + 1] << 20) // max(reached[g, cmax], 1)


@numba.njit(cache=True)
def _table_rank(e, g, reached, cmax, mode):
    """``(a, b)``, the rank of a key of estimate ``e`` and table ``g`` under ``replay_table``'s ``mode``
    (the lowest ``(a, b, last access)`` is the victim)."""
    if mode == 1:
        return (e << 21 if e >= 2 else _pval(g, 1, reached, cmax)), np.int64(0)
    if mode == 4:
        return e, (_pval(g, 1, reached, cmax) if e == 1 else np.int64(0))
    if mode == 3:
        return e, _pval(g, e, reached, cmax)
    return _pval(g, e, reached, cmax), e


@numba.njit(cache=True)
def replay_table(ids, sets, cols, tables, ntables, nkeys, num_sets, ways, width, depth, sample, exact, mode, cmax):
    """Frequency victim whose rank knows the key's table (``tables[k]``), its chance ``_pval`` learned online
    from ``reached[t, c]``, the keys of table t whose estimate reached c as they were counted: mode 1,
    singletons (estimate <= 1) rank by their table's chance, below every key seen twice; mode 2, every
    key ranks by its table's chance at its count (up to cmax), ties by estimate then LRU; mode 3, the
    victim is the lowest (estimate, chance of a singleton of its table, last access); mode 4, the lowest
    (estimate, that chance if the estimate is 1 else 0, last access).  The newcomer is ranked with the
    set's keys, as ``tinylfu_evict`` ranks it, and enters unless it is the least."""
    cap = num_sets * ways
    tk, sc, counts, sketch, where = _sketched_state(cap, nkeys, depth, width)
    reached = np.zeros((ntables, cmax + 2), np.int64)
    hits = 0
    period = sample * cap
    for t in range(ids.shape[0]):
        clock = t + 1
        k = ids[t]
        _add(k, counts, sketch, cols, exact)
        e = _est(k, counts, sketch, cols, exact)
        if e <= cmax + 1:
            reached[tables[k], e] += 1
        if period > 0 and clock % period == 0:
            _halve(counts, sketch, exact)
        got = _hit_or_fill(tk, sc, where, sets, ways, k, clock)
        hits += got == 1
        if got:
            continue
        base = sets[k] * ways
        low = -1
        low_a = np.int64(0)
        low_b = np.int64(0)
        for w in range(ways):
            j = base + w
            x = tk[j]
            a, b = _table_rank(_est(x, counts, sketch, cols, exact), tables[x], reached, cmax, mode)
            if low < 0 or a < low_a or (a == low_a and (b < low_b or (b == low_b and sc[j] < sc[low]))):
                low, low_a, low_b = j, a, b
        a, b = _table_rank(_est(k, counts, sketch, cols, exact), tables[k], reached, cmax, mode)
        if a > low_a or (a == low_a and b >= low_b):
            where[tk[low]] = -1
            tk[low] = k
            sc[low] = clock
            where[k] = low
    return hits


def run_table(keys, caps, exact=True, mode=1, cmax=4, sample=40, ways=32, ntables=64):
    tables = ((np.unique(keys) >> 32) % ntables).astype(np.int64)
    return _over_capacities(keys, caps, ways, replay_table, sample, exact, mode, cmax, tables=(tables, ntables))


@numba.njit(cache=True)
def replay_freq2(ids, sets, cols, nkeys, num_sets, ways, width, depth, sample, exact, mode, ghost, boost):
    """The frequency victim with: mode 1, a per-set ghost FIFO of the ``ghost`` keys last evicted (or
    refused), whose returning key's estimate is raised by ``boost`` at its comparison; mode 2, ties of
    estimate broken by LRU-2 with retained history (the second-to-last access, kept after eviction,
    then the last); mode 3, as 1 but only keys evicted with estimate 1 enter the ghost."""
    cap = num_sets * ways
    tk, sc, counts, sketch, where = _sketched_state(cap, nkeys, depth, width)
    last = np.zeros(nkeys, np.int64)
    prev = np.zeros(nkeys, np.int64)
    gk = np.full((num_sets, max(ghost, 1)), -1, np.int64)
    gpos = np.zeros(num_sets, np.int64)
    hits = 0
    period = sample * cap
    for t in range(ids.shape[0]):
        clock = t + 1
        k = ids[t]
        prev[k] = last[k]
        last[k] = clock
        _count(k, clock, period, counts, sketch, cols, exact)
        got = _hit_or_fill(tk, sc, where, sets, ways, k, clock)
        hits += got == 1
        if got:
            continue
        s = sets[k]
        base = s * ways
        low = -1
        low_e = np.int64(1) << 62
        for w in range(ways):
            j = base + w
            x = tk[j]
            e = _est(x, counts, sketch, cols, exact)
            if mode == 2:
                better = e < low_e or (e == low_e and (prev[x] < prev[tk[low]] or
                                                       (prev[x] == prev[tk[low]] and last[x] < last[tk[low]])))
            else:
                better = e < low_e or (e == low_e and sc[j] < sc[low])
            if low < 0 or better:
                low, low_e = j, e
        mine = _est(k, counts, sketch, cols, exact)
        if mode == 1 or mode == 3:
            for g in range(ghost):
                if gk[s, g] == k:
                    mine += boost
                    gk[s, g] = -1
                    break
        if mode == 2:
            y = tk[low]
            enter = mine > low_e or (mine == low_e and (prev[k] > prev[y] or (prev[k] == prev[y] and last[k] > last[y])))
        else:
            enter = mine > low_e or (mine == low_e and clock > sc[low])
        out = k
        if enter:
            out = tk[low]
            where[out] = -1
            tk[low] = k
            sc[low] = clock
            where[k] = low
        if ghost > 0 and (mode == 1 or (mode == 3 and _est(out, counts, sketch, cols, exact) <= 1)):
            gk[s, gpos[s] % ghost] = out
            gpos[s] += 1
    return hits


def run_freq2(keys, caps, exact=True, mode=1, ghost=32, boost=1, sample=40, ways=32):
    return _over_capacities(keys, caps, ways, replay_freq2, sample, exact, mode, ghost, boost)


@numba.njit(cache=True)
def replay_arc(ids, sets, num_sets, ways):
    """ARC (Megiddo & Modha) in every set of ``ways`` slots: T1/T2 resident, B1/B2 ghosts of up to ways keys each."""
    c = ways
    # per set, 2c entries: key, list (1 T1, 2 T2, 3 B1, 4 B2, 0 free), stamp
    ek = np.full((num_sets, 2 * c), -1, np.int64)
    el = np.zeros((num_sets, 2 * c), np.int64)
    es = np.zeros((num_sets, 2 * c), np.int64)
    p = np.zeros(num_sets)
    hits = 0
    for t in range(ids.shape[0]):
        clock = t + 1
        k = ids[t]
        s = sets[k]
        at = -1
        n = np.zeros(5, np.int64)
        for j in range(2 * c):
            n[el[s, j]] += 1
            if ek[s, j] == k and el[s, j] > 0:
                at = j
        lst = el[s, at] if at >= 0 else 0
        if lst == 1 or lst == 2:
            hits += 1
            el[s, at] = 2
            es[s, at] = clock
            continue
        if lst == 3:
            p[s] = min(float(c), p[s] + max(n[4] / max(n[3], 1), 1.0))
        elif lst == 4:
            p[s] = max(0.0, p[s] - max(n[3] / max(n[4], 1), 1.0))
        in_b2 = lst == 4
        if lst == 0:
            if n[1] + n[3] == c:
                if n[1] < c:
                    _arc_drop_lru(ek, el, es, s, 3, 0)
                    n[3] -= 1
                    _arc_replace(el, es, s, n, p[s], False)
                else:
                    _arc_drop_lru(ek, el, es, s, 1, 0)
                    n[1] -= 1
            elif n[1] + n[2] + n[3] + n[4] >= c:
                if n[1] + n[2] + n[3] + n[4] == 2 * c:
                    _arc_drop_lru(ek, el, es, s, 4, 0)
                    n[4] -= 1
                _arc_replace(el, es, s, n, p[s], False)
            for j in range(2 * c):
                if el[s, j] == 0:
                    at = j
                    break
            ek[s, at] = k
            el[s, at] = 1
            es[s, at] = clock
        else:
            _arc_replace(el, es, s, n, p[s], in_b2)
            el[s, at] = 2
            es[s, at] = clock
    return hits


@numba.njit(cache=True)
def _arc_lru(el, es, s, lst):
    best = -1
    for j in range(el.shape[1]):
        if el[s, j] == lst and (best < 0 or es[s, j] < es[s, best]):
            best = j
    return best


@numba.njit(cache=True)
def _arc_drop_lru(ek, el, es, s, lst, _):
    j = _arc_lru(el, es, s, lst)
    if j >= 0:
        el[s, j] = 0
        ek[s, j] = -1


@numba.njit(cache=True)
def _arc_replace(el, es, s, n, p, in_b2):
    """ARC's REPLACE: T1's LRU to B1 or T2's LRU to B2 (its stamp stays: B's order is eviction order, as
    its LRU is T's LRU of then; stamped now instead so that B1/B2 are in eviction order)."""
    if n[1] >= 1 and ((in_b2 and n[1] == p) or n[1] > p):
        j = _arc_lru(el, es, s, 1)
        el[s, j] = 3
        n[1] -= 1
        n[3] += 1
    else:
        j = _arc_lru(el, es, s, 2)
        if j < 0:
            j = _arc_lru(el, es, s, 1)
            el[s, j] = 3
            n[1] -= 1
            n[3] += 1
            return
        el[s, j] = 4
        n[2] -= 1
        n[4] += 1


@numba.njit(cache=True)
def replay_lirs(ids, sets, num_sets, ways, hirs, nonres):
    """LIRS (Jiang & Zhang) in every set: ``ways - hirs`` LIR slots, ``hirs`` resident HIR slots, and up to
    ``nonres`` non-resident HIR entries of stack S kept as key ghosts.  Status: 1 LIR, 2 resident HIR,
    3 non-resident HIR; ``ss`` the entry's recency in S (0: not in S), ``qs`` its place in queue Q."""
    m = ways + nonres
    ek = np.full((num_sets, m), -1, np.int64)
    st = np.zeros((num_sets, m), np.int64)
    ss = np.zeros((num_sets, m), np.int64)
    qs = np.zeros((num_sets, m), np.int64)
    nlir = np.zeros(num_sets, np.int64)
    nres = np.zeros(num_sets, np.int64)
    llirs = ways - hirs
    hits = 0
    for t in range(ids.shape[0]):
        clock = t + 1
        k = ids[t]
        s = sets[k]
        at = -1
        for j in range(m):
            if st[s, j] > 0 and ek[s, j] == k:
                at = j
                break
        status = st[s, at] if at >= 0 else 0
        if status == 1:
            hits += 1
            ss[s, at] = clock
            _lirs_prune(ek, st, ss, s)
            continue
        if status == 2:
            hits += 1
            if ss[s, at] > 0:
                st[s, at] = 1
                ss[s, at] = clock
                _lirs_demote(st, ss, qs, s, clock)
                _lirs_prune(ek, st, ss, s)
            else:
                ss[s, at] = clock
                qs[s, at] = clock
            continue
        # a miss
        if nres[s] < ways:
            nres[s] += 1
            if at < 0:
                at = _lirs_free(ek, st, ss, s)
            ek[s, at] = k
            if nlir[s] < llirs:
                st[s, at] = 1
                nlir[s] += 1
                ss[s, at] = clock
                continue
            if status == 3 and ss[s, at] > 0:
                st[s, at] = 1
                ss[s, at] = clock
                _lirs_demote(st, ss, qs, s, clock)
                _lirs_prune(ek, st, ss, s)
            else:
                st[s, at] = 2
                ss[s, at] = clock
                qs[s, at] = clock
            continue
        # evict Q's front (the oldest resident HIR)
        v = -1
        for j in range(m):
            if st[s, j] == 2 and (v < 0 or qs[s, j] < qs[s, v]):
                v = j
        if ss[s, v] > 0:
            st[s, v] = 3
        else:
            st[s, v] = 0
            ek[s, v] = -1
        if status == 3 and ss[s, at] > 0:
            st[s, at] = 1
            ss[s, at] = clock
            _lirs_demote(st, ss, qs, s, clock)
            _lirs_prune(ek, st, ss, s)
        else:
            if at < 0:
                at = _lirs_free(ek, st, ss, s)
            ek[s, at] = k
            st[s, at] = 2
            ss[s, at] = clock
            qs[s, at] = clock
    return hits


@numba.njit(cache=True)
def _lirs_demote(st, ss, qs, s, clock):
    """The LIR entry at S's bottom becomes a resident HIR at Q's end."""
    b = -1
    for j in range(st.shape[1]):
        if st[s, j] == 1 and (b < 0 or ss[s, j] < ss[s, b]):
            b = j
    st[s, b] = 2
    ss[s, b] = 0
    qs[s, b] = clock


@numba.njit(cache=True)
def _lirs_prune(ek, st, ss, s):
    """Remove the HIR entries below S's bottom LIR entry from S."""
    low = np.int64(1) << 62
    for j in range(st.shape[1]):
        if st[s, j] == 1 and ss[s, j] < low:
            low = ss[s, j]
    for j in range(st.shape[1]):
        if st[s, j] >= 2 and 0 < ss[s, j] < low:
            ss[s, j] = 0
            if st[s, j] == 3:
                st[s, j] = 0
                ek[s, j] = -1


@numba.njit(cache=True)
def _lirs_free(ek, st, ss, s):
    """A free entry; when none, the least recent non-resident HIR entry is dropped for it."""
    old = -1
    for j in range(st.shape[1]):
        if st[s, j] == 0:
            return j
        if st[s, j] == 3 and (old < 0 or ss[s, j] < ss[s, old]):
            old = j
    st[s, old] = 0
    ek[s, old] = -1
    return old


def run_sets(keys, caps, fn, *args, ways=32):
    out = []
    for cap in caps:
        num_sets = max(1, round(cap / ways))
        ids, sets, _ = _prep(keys, num_sets, 16)
        out.append(fn(ids, sets, num_sets, ways, *args))
    return out


@numba.njit(cache=True)
def replay_climb(ids, sets, cols, nkeys, num_sets, ways, width, depth, sample, exact, w0, period_x, fixed):
    """W-TinyLFU per set with a window of ``w`` ways (LRU; its least recent key is the candidate that meets
    the main part's frequency victim, (estimate, last access) as tinylfu_evict) and one ``w`` for all
    sets, moved by a hill climber (Caffeine's): every ``period_x * capacity`` lookups, one way in the
    direction that last raised the hit rate, reversed when it fell (``fixed``: never moved)."""
    cap = num_sets * ways
    tk, sc, counts, sketch, where = _sketched_state(cap, nkeys, depth, width)
    win = np.zeros(cap, np.bool_)
    nwin = np.zeros(num_sets, np.int64)
    hits = 0
    period = sample * cap
    w = w0
    direction = 1
    climb = period_x * cap
    last_rate = -1.0
    phits = 0
    wsum = 0
    for t in range(ids.shape[0]):
        clock = t + 1
        k = ids[t]
        _count(k, clock, period, counts, sketch, cols, exact)
        if not fixed and clock % climb == 0:
            rate = phits / climb
            if rate < last_rate:
                direction = -direction
            last_rate = rate
            phits = 0
            w = min(max(w + direction, 0), ways - 1)
        wsum += w
        slot = where[k]
        if slot >= 0:
            hits += 1
            phits += 1
            sc[slot] = clock
            continue
        s = sets[k]
        base = s * ways
        while nwin[s] > w:  # the window shrank: its least recent keys join the main part
            o = -1
            for j in range(base, base + ways):
                if win[j] and (o < 0 or sc[j] < sc[o]):
                    o = j
            win[o] = False
            nwin[s] -= 1
        empty = -1
        for j in range(base, base + ways):
            if tk[j] < 0:
                empty = j
                break
        if empty >= 0:
            tk[empty] = k
            sc[empty] = clock
            where[k] = empty
            if nwin[s] < w:
                win[empty] = True
                nwin[s] += 1
            continue
        low = -1
        low_e = np.int64(1) << 62
        cand = -1
        for j in range(base, base + ways):
            if win[j]:
                if cand < 0 or sc[j] < sc[cand]:
                    cand = j
                continue
            e = _est(tk[j], counts, sketch, cols, exact)
            if low < 0 or e < low_e or (e == low_e and sc[j] < sc[low]):
                low, low_e = j, e
        if w == 0 or cand < 0 or nwin[s] < w:
            # no window to pass through (or it is growing): the newcomer meets the main victim itself
            mine = _est(k, counts, sketch, cols, exact)
            if low < 0 or mine > low_e or (mine == low_e and clock > sc[low]):
                if low < 0:
                    low = cand
                where[tk[low]] = -1
                tk[low] = k
                sc[low] = clock
                where[k] = low
                if nwin[s] < w and not win[low]:
                    win[low] = True
                    nwin[s] += 1
            continue
        ce = _est(tk[cand], counts, sketch, cols, exact)
        if low >= 0 and (ce > low_e or (ce == low_e and sc[cand] > sc[low])):
            # the candidate joins the main part; the newcomer takes the main victim's slot, in the window
            win[cand] = False
            win[low] = True
            where[tk[low]] = -1
            tk[low] = k
            sc[low] = clock
            where[k] = low
        else:
            where[tk[cand]] = -1
            tk[cand] = k
            sc[cand] = clock
            where[k] = cand
    return hits, wsum / ids.shape[0]


def run_climb(keys, caps, w0=1, period_x=1, fixed=False, exact=True, sample=40, ways=32):
    return _over_capacities(keys, caps, ways, replay_climb, sample, exact, w0, period_x, fixed)


def _rules():
    """(label, function of (keys, capacities) -> hits per capacity) of every rule replayed."""
    return [
        ("tinylfu_evict over LRU (the library's rule, sized sketch)", lambda k, c: run_freq(k, c, False)),
        ("the same, every estimate exact", lambda k, c: run_freq(k, c, True)),
        ("frequency capped at 3", lambda k, c: run_freq(k, c, False, 1, 3)),
        ("frequency capped at 4", lambda k, c: run_freq(k, c, False, 1, 4)),
        ("frequency capped at 8", lambda k, c: run_freq(k, c, False, 1, 8)),
        ("log2 buckets of frequency", lambda k, c: run_freq(k, c, False, 2)),
        ("frequency halved per 8 x capacity idle lookups past 8 x capacity", lambda k, c: run_freq(k, c, False, 3, 8, 8, 1)),
        ("frequency 0 after 16 x capacity idle lookups", lambda k, c: run_freq(k, c, False, 4, 16, 0, 1)),
        ("ghost of the 8 last evicted or refused keys a set, +1 on return", lambda k, c: run_freq2(k, c, False, 1, 8, 1)),
        ("ghost of the 8 last evicted singletons a set, +1 on return", lambda k, c: run_freq2(k, c, False, 3, 8, 1)),
        ("ties by LRU-2 with retained history", lambda k, c: run_freq2(k, c, False, 2, 0)),
        ("W-TinyLFU per set, window 1 way", lambda k, c: [h for h, _ in run_climb(k, c, 1, 1, True, False)]),
        ("W-TinyLFU per set, hill-climbed window (10 x capacity)", lambda k, c: [h for h, _ in run_climb(k, c, 1, 10, False, False)]),
        ("ARC per set", lambda k, c: run_sets(k, c, replay_arc)),
        ("LIRS per set (1 HIR way, 32 non-resident HIR)", lambda k, c: run_sets(k, c, replay_lirs, 1, 32)),
        ("LIRS per set (2 HIR ways, 64 non-resident HIR)", lambda k, c: run_sets(k, c, replay_lirs, 2, 64)),
        ("ties by the key's table's learned return chance (key >> 32)", lambda k, c: run_table(k, c, False, 3, 1)),
        ("singletons ranked by their table's learned return chance", lambda k, c: run_table(k, c, False, 4, 1)),
    ]


def main(argv: list[str]) -> None:
    """Print every rule's hit rate (and hits) at 1 / 5 / 20% of the distinct keys of each named trace."""
    for name in argv or ["criteo", "drift:10000000"]:
        keys = _load(name)
        n, distinct = keys.shape[0], np.unique(keys).shape[0]
        caps = CRITEO_CAPS if name == "criteo" else tuple(round(f * distinct) for f in (0.01, 0.05, 0.2))
        print(f"{name}: {n:,} lookups, {distinct:,} keys, capacities {caps}, 32 ways, one key a batch", flush=True)
        for label, fn in _rules():
            t0 = time.time()
            print(f"  {label}: {_fmt(fn(keys, caps), n)}  [{time.time() - t0:.0f} s]", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
