"""ReferenceCache: a slow, obviously correct model of the Cache contract (DESIGN.md section 3).

Plain Python objects, one key at a time, no arrays in the cache logic.  It
shares nothing with the package except the policies' score expressions, which
are the policies' definitions, and the exception classes.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from embcache.errors import PreloadOverflowError, StaticInsertError

MASK = 2**64 - 1
MAX_SCORE = 2**63 - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix64(key: int) -> int:
    z = key & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def evaluate(expression: str, score: int, clock: int, count: int) -> int:
    env = {"sat_add": lambda a, b: min(a + b, MAX_SCORE), "min": min, "max": max, "MAX_SCORE": MAX_SCORE}
    return eval(expression, env, {"score": score, "clock": clock, "count": count})


class Slot:
    def __init__(self, key, score, row):
        self.key, self.score, self.row = key, score, row


class ReferenceCache:
    def __init__(self, capacity, dim, policy, admission, tier: dict, default, ways, dtype):
        self.num_sets = -(-capacity // ways)
        self.ways = ways
        self.capacity = self.num_sets * ways
        self.sets = [[None] * ways for _ in range(self.num_sets)]
        self.policy, self.admission = policy, admission.sized(self.capacity)  # as Cache: a sketch sized to it
        self.tier = tier  # key -> row (dim,) of dtype; shared meaning with the cache's tier
        self.dtype = np.dtype(dtype)
        self.default = np.full(dim, default, self.dtype)
        self.dim = dim
        self.clock = 0
        self.stats = Counter()
        self.last = Counter()
        sk = self.admission.sketch
        self.sketch = None if sk is None else [[0] * sk[1] for _ in range(sk[2])]
        # TinyLFUTables (victim mode 3): per table (key >> 32) & 63, the keys whose estimate reached 1 / 2
        self.reached = [[0] * 64 for _ in range(2)]
        self.pending = []  # HitRateDeferred: (key, count, row) a lookup left to place, in placing order
        self.hands = {}  # victim = "hand": set -> the (position, way) its hand rests at (absent: none)
        self.s3 = {}  # victim = "s3fifo": set -> its sequence, whether it has evicted, its ghost

    # -- helpers
    def set_index(self, key):
        return mix64(key) % self.num_sets

    def slot_of(self, key):
        for slot in self.sets[self.set_index(key)]:
            if slot is not None and slot.key == key:
                return slot
        return None

    def __len__(self):
        return sum(slot is not None for s in self.sets for slot in s)

    def begin(self):
        self.flush()
        self.last = Counter()

    def flush(self):
        """Place what a deferred lookup left, before the next operation (query aside); its counts go to
        the totals, in no operation's last counts."""
        if self.pending:
            pending, self.pending, last = self.pending, [], self.last
            self.last = Counter()
            for key, count, row in pending:
                self.place(key, count, row, False)
            self.stats.update(self.last)
            self.last = last

    def tick(self):
        """The clock's step; at a multiple of the policy's age_period every cached score is aged (issue 22)."""
        self.clock += 1
        period = self.policy.age_period
        if period and self.clock % period == 0:
            for s in self.sets:
                for slot in s:
                    if slot is not None:
                        slot.score = evaluate(self.policy.age_score, slot.score, self.clock, 0)

    def end(self):
        self.stats.update(self.last)

    def place(self, key, count, row, refuse_below_min, compares_victim=False):
        self.placing = key
        ways = self.sets[self.set_index(key)]
        slot = self.slot_of(key)
        if slot is not None:
            slot.score = evaluate(self.policy.hit_score, slot.score, self.clock, count)
            slot.row = row
            return
        new = evaluate(self.policy.new_score, 0, self.clock, count)
        empty = [w for w in range(self.ways) if ways[w] is None]
        if getattr(self.policy, "victim", "lowest") == "s3fifo":
            w, new = self.s3fifo_place(self.set_index(key), empty[0] if empty else None)
            self.last["evictions"] += not empty
            ways[w] = Slot(key, new, row)
            self.last["insertions"] += 1
            return
        if empty:
            w = empty[0]
        else:
            w = min(range(self.ways), key=lambda w: (ways[w].score, w))
            if refuse_below_min and new < ways[w].score:
                self.last["refusals"] += 1
                return
            if compares_victim and self.admission.victim_by_frequency:  # TinyLFUEvict: the least of set + key
                w = min(range(self.ways), key=lambda w: (*self.rank(ways[w].key), ways[w].score, w))
                if not (*self.rank(key), new) > (*self.rank(ways[w].key), ways[w].score):
                    self.last["refusals"] += 1
                    return
            else:
                if getattr(self.policy, "victim", "lowest") == "hand":
                    w = self.walk_hand(self.set_index(key))  # the walk runs, whether the key is refused or not
                if compares_victim and not self.estimate(key) > self.estimate(ways[w].key):  # TinyLFU: ties refuse
                    self.last["refusals"] += 1
                    return
            self.last["evictions"] += 1
        ways[w] = Slot(key, new, row)
        self.last["insertions"] += 1

    def walk_hand(self, s):
        """The victim = "hand" walk, step by step (policies/_base.py): from the first slot after the hand in
        (position, way) order (position: the score without its visited bit), round and round, clearing
        visited bits, to the first unvisited slot; the hand rests there (none if no slot is after it)."""
        ways = self.sets[s]
        order = sorted(range(self.ways), key=lambda w: (ways[w].score - (ways[w].score & 1), w))
        pos = {w: (ways[w].score - (ways[w].score & 1), w) for w in order}
        hand = self.hands.get(s)
        start = next((i for i, w in enumerate(order) if hand is None or pos[w] > hand), 0)
        i = start
        while ways[order[i]].score & 1:
            ways[order[i]].score -= 1
            i = (i + 1) % self.ways
        victim = order[i]
        if i == self.ways - 1:
            self.hands.pop(s, None)
        else:
            self.hands[s] = pos[victim]
        return victim

    def s3fifo_place(self, s, empty):
        """S3-FIFO's way and score for a missed key of set ``s`` (policies/s3fifo.py), with lists for its
        queues and ghost: score = sequence * 8 + main * 4 + frequency."""
        ways, n = self.sets[s], self.ways
        small_size, ghost_size = max(1, n // 10), n * 9 // 10
        st = self.s3.setdefault(s, {"seq": 0, "evicted": False, "ghost": []})  # ghost: oldest first
        key = self.placing
        from_ghost = key in st["ghost"]
        if from_ghost:
            st["ghost"].remove(key)
        way = empty
        while way is None:
            st["evicted"] = True
            small = [w for w in range(n) if not ways[w].score & 4]
            main = [w for w in range(n) if ways[w].score & 4]
            if len(main) > n - small_size or not small:
                while way is None:
                    w = min(main, key=lambda w: ways[w].score)
                    f = ways[w].score & 3
                    if f:
                        st["seq"] += 1
                        ways[w].score = st["seq"] * 8 + 4 + f - 1
                    else:
                        way = w
            else:
                while way is None and small:
                    w = min(small, key=lambda w: ways[w].score)
                    small.remove(w)
                    if ways[w].score & 3 >= 2:
                        st["seq"] += 1
                        ways[w].score = st["seq"] * 8 + 4
                    else:
                        way = w
                        if ghost_size and ways[w].key not in st["ghost"]:
                            st["seq"] += 1
                            st["ghost"].append(ways[w].key)
                            del st["ghost"][:-ghost_size]
        small = sum(1 for w in range(n) if w != way and ways[w] is not None and not ways[w].score & 4)
        to_main = from_ghost or (not st["evicted"] and small >= small_size)
        st["seq"] += 1
        return way, st["seq"] * 8 + 4 * to_main

    def sketch_columns(self, key):
        _, width, depth, seed = self.admission.sketch
        return [(r, mix64((key & MASK) + (r + 1) * GOLDEN + seed) & (width - 1)) for r in range(depth)]

    def estimate(self, key):
        return min(self.sketch[r][c] for r, c in self.sketch_columns(key))

    def rank(self, key):
        """TinyLFUEvict's rank of a key: (estimate, 0); TinyLFUTables': (estimate, its table's return chance
        twice * 2^20 // once (2^20 while once is 0) if the estimate is 1, else 0)."""
        e = self.estimate(key)
        if not self.admission.victim_by_table_chance or e != 1:
            return e, 0
        t = (key >> 32) & 63
        once, twice = self.reached[0][t], self.reached[1][t]
        return e, ((twice << 20) // once if once else 1 << 20)

    def count_reached(self, keys, counts, estimates):
        """A key counted c times whose estimate is e after the batch's add was at e - c before it."""
        for k in keys:
            e, c = estimates[k], counts[k]
            for row, level in enumerate((1, 2)):
                self.reached[row][(k >> 32) & 63] += e - c < level <= e

    def count_hits(self, hit_keys, counts, n):
        """TinyLFU (compares_victim): after the misses, the hit keys are counted; then every counter is
        halved once for each multiple of sketch_sample * capacity that the batch's n key occurrences take
        the total of looked-up occurrences past."""
        for k in hit_keys:
            for r, c in self.sketch_columns(k):
                self.sketch[r][c] = min(self.sketch[r][c] + counts[k], MAX_SCORE)
        self.count_reached(hit_keys, counts, {k: self.estimate(k) for k in hit_keys})
        period = self.admission.sketch_sample * self.capacity
        before = self.stats["hits"] + self.stats["misses"]
        halvings = (before + n) // period - before // period if period else 0
        if halvings:
            self.sketch = [[v >> min(halvings, 63) for v in row] for row in self.sketch]

    def sketch_batch(self, keys, counts):
        """Every missed key's count goes in first; then each key's estimate is read."""
        for k in keys:
            for r, c in self.sketch_columns(k):
                self.sketch[r][c] = min(self.sketch[r][c] + counts[k], MAX_SCORE)
        estimates = {k: min(self.sketch[r][c] for r, c in self.sketch_columns(k)) for k in keys}
        self.count_reached(keys, counts, estimates)
        return estimates

    # -- operations
    def lookup(self, keys):
        keys = [int(k) for k in keys]
        self.begin()
        self.tick()
        out = np.array([self.tier.get(k, self.default) for k in keys], self.dtype).reshape(len(keys), self.dim)
        counts = Counter(keys)
        hit_keys = sorted(k for k in counts if self.slot_of(k) is not None)
        missed = sorted(k for k in counts if self.slot_of(k) is None)
        self.last["hits"] = sum(counts[k] for k in hit_keys)
        self.last["misses"] = len(keys) - self.last["hits"]
        self.last["unique_misses"] = len(missed)
        for k in hit_keys:
            slot = self.slot_of(k)
            slot.score = evaluate(self.policy.hit_score, slot.score, self.clock, counts[k])
        batch_ok = self.policy.inserts_on_lookup and self.admission.admit_batch(self.last["hits"], len(keys))
        estimates = self.sketch_batch(missed, counts) if batch_ok and self.sketch is not None else None
        if self.admission.compares_victim:
            self.count_hits(hit_keys, counts, len(keys))
        t = self.admission.defer_at_hit_rate
        defer = t is not None and self.last["hits"] >= t * len(keys)
        for k in missed:
            admit = batch_ok if estimates is None else estimates[k] >= self.admission.sketch[0]
            if k not in self.tier:
                self.last["absent"] += 1
            elif not admit:
                self.last["refusals"] += 1
            elif defer:  # served now, placed when the next operation begins
                self.pending.append((k, counts[k], self.tier[k]))
            else:
                self.place(k, counts[k], self.tier[k], self.admission.refuse_below_min,
                           self.admission.compares_victim)
        self.end()
        return out

    def query(self, keys):
        slots = [self.slot_of(int(k)) for k in keys]
        rows = np.array([s.row if s else self.default for s in slots], self.dtype).reshape(len(slots), self.dim)
        return rows, np.array([s is not None for s in slots], bool)

    def _last_rows(self, keys, rows):
        last = {}
        for k, r in zip(keys, rows):
            last[int(k)] = np.asarray(r, self.dtype)
        return last

    def insert(self, keys, rows):
        self.flush()  # before anything, as the cache does (a deferred batch may fill ways the checks see)
        last = self._last_rows(keys, rows)
        if not self.policy.inserts_on_lookup and any(self.slot_of(k) is None for k in last):
            raise StaticInsertError("static")
        self.begin()
        self.tier.update(last)
        self.tick()
        counts = Counter(int(k) for k in keys)
        for k in sorted(last):
            self.place(k, counts[k], last[k], False)
        self.end()

    def update(self, keys, rows):
        self.begin()
        for k, r in self._last_rows(keys, rows).items():
            self.tier[k] = r
            slot = self.slot_of(k)
            if slot is not None:
                slot.row = r
        self.end()

    def erase(self, keys):
        self.begin()
        for k in set(int(k) for k in keys):
            ways = self.sets[self.set_index(k)]
            for w, slot in enumerate(ways):
                if slot is not None and slot.key == k:
                    ways[w] = None
                    self.last["erased"] += 1
        self.end()

    def preload(self, keys):
        self.flush()
        counts = Counter(int(k) for k in keys)
        new = [k for k in counts if k in self.tier and self.slot_of(k) is None]
        need = Counter(self.set_index(k) for k in new)
        for s, n in need.items():
            if n > sum(slot is None for slot in self.sets[s]):
                raise PreloadOverflowError("overflow")
        self.begin()
        self.tick()
        for k in sorted(counts):
            if k in self.tier:
                self.place(k, counts[k], self.tier[k], False)
            else:
                self.last["absent"] += 1
        self.end()

    def clear(self):
        self.begin()
        self.last["erased"] = len(self)
        self.sets = [[None] * self.ways for _ in range(self.num_sets)]
        self.hands, self.s3 = {}, {}
        self.end()

    def export(self):
        self.flush()
        slots = sorted((slot for s in self.sets for slot in s if slot is not None), key=lambda s: s.key)
        keys = np.array([s.key for s in slots], np.int64)
        rows = np.array([s.row for s in slots], self.dtype).reshape(len(slots), self.dim)
        return keys, rows, np.array([s.score for s in slots], np.int64)

    def stats_dict(self, counter):
        names = ("hits", "misses", "unique_misses", "absent", "insertions", "evictions", "refusals", "erased")
        # the model's tier never fails, so no lookup serves default rows for a tier failure
        # nor sees an invalid key (only a stream-ordered GPU lookup of device keys, or index_rows, counts them);
        # it has no prefetch (tests/test_issue22_lookahead.py's model adds one)
        return {**{n: counter[n] for n in names}, "tier_failures": 0, "invalid": 0, "prefetched": 0}
