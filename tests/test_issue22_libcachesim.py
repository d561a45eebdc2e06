"""Our LRU, FIFO, LRU-2, CLOCK and SIEVE against a peer's: libCacheSim (PyPI ``libcachesim``) replayed set by set.

libCacheSim is GPLv3: it is a test-only dependency (setup.cfg's ``test`` extra), never imported by
the package.  The Criteo sample (``EMBCACHE_DATA``) is split by our layout's set function
(``splitmix64(key) % sets``, 32 ways, ``sets = round(capacity / 32)``); each set's subsequence goes
through its own 32-object libCacheSim cache (objects of size 1), one request at a time, and the sum
of its hits must equal our cache's hits at one key a batch, key for key of the trace.

The rules are the same, so the counts are equal, not close:

* LRU: our score is the clock of a key's last access; one key a batch makes every clock distinct, so
  the lowest score in a full set is its least recently used key, as libCacheSim's list tail is.
* FIFO: our score is the admission clock and a hit changes nothing; libCacheSim's queue evicts the
  oldest insertion and ignores hits.
* LRU-2 (libCacheSim's ``LRUK`` with ``k=2``): our score packs the second-to-last and the last access
  since admission; the lowest is the oldest second-to-last access, and keys seen once (second-to-last
  0) go first in the order of their one access, their admission: libCacheSim's "fewer than K accesses:
  evicted first, in FIFO order".  Neither remembers an evicted key's history.
* CLOCK (libCacheSim's ``Clock``, one bit, new keys unvisited): ours is a hand going round the ways
  (``victim = "hand"`` with every position 0), theirs a queue whose tail is examined and whose visited
  keys go to the head, bit cleared.  The same order: the keys after our hand, in way order, then those
  before it, are their queue from tail to head, since the victim's way takes the new key just behind
  the hand, and the keys the hand passed are behind it in the order passed, as they are at the head.
* SIEVE (libCacheSim's ``Sieve``): our position is the admission clock (distinct in a set at one key a
  batch), so (position, way) order is their queue from tail to head; our hand rests at the victim's
  position and the walk starts after it, theirs at the victim's newer neighbour, and both start again
  from the oldest when the victim was the newest.  Passed keys stay where they are in both.
* All fill a set's empty ways before evicting (libCacheSim: a cache of 32 objects evicts only when
  full), and neither keeps anything of an evicted key.

``ci`` profile: the trace's first 60,000 lookups at 5%; ``thorough``: the whole trace at 1, 5 and 20%.

* S3-FIFO (libCacheSim's ``S3FIFO``, ``move_to_main_threshold = 2``): the rule of ``S3FIFOSet`` below, which
  equals libCacheSim's on random sets and which our ``s3fifo`` policy follows (its queues in the score, the
  ghost, a sequence counter and whether the set has evicted in per-set state).  From 10 ways up; below,
  libCacheSim's small FIFO (``int(0.1 * ways)`` keys) has no room and it admits nothing, ours keeps 1.

A rule that differs, so not asserted here: our LFU breaks a tie of counts by the lowest way, libCacheSim's
``LFU`` by the order in which the keys reached that count.  At one key a batch on the whole sample it
gives 0.592 / 0.713 / 0.798 at 1 / 5 / 20% (the issue's table), ours 0.569 / 0.686 / 0.778: in a set
whose keys were all seen once, ours evicts the key in the lowest way, which is where the last newcomer
went, so a new key keeps its place only until the set's next miss.
"""
import os

import numpy as np
import pytest

from embcache.layout import sets_of
from embcache.study import run_study
from embcache.traces import criteo_files, read_criteo

libcachesim = pytest.importorskip(
    "libcachesim", reason="libcachesim (GPLv3, test-only) is not installed: pip install -e '.[test]' brings it")

WAYS = 32
THOROUGH = os.environ.get("HYPOTHESIS_PROFILE", "ci") == "thorough"
FRACTIONS = (0.01, 0.05, 0.20) if THOROUGH else (0.05,)
PREFIX = None if THOROUGH else 60_000
PEERS = {"lru": lambda: libcachesim.LRU(WAYS, hashpower=8), "fifo": lambda: libcachesim.FIFO(WAYS, hashpower=8),
         "lru2": lambda: libcachesim.LRUK(WAYS, hashpower=8, k=2),
         "clock": lambda: libcachesim.Clock(WAYS, hashpower=8, init_freq=0, n_bit_counter=1),
         "sieve": lambda: libcachesim.Sieve(WAYS, hashpower=8),
         "s3fifo": lambda: libcachesim.S3FIFO(WAYS, hashpower=8)}


@pytest.fixture
def sample(criteo_dir):
    """The trace to replay and the whole sample's distinct keys (73,359: the sizes are fractions of it)."""
    keys = read_criteo(criteo_files(criteo_dir.parent))
    return (keys if PREFIX is None else keys[:PREFIX]), int(np.unique(keys).shape[0])


def peer_hits(trace: np.ndarray, num_sets: int, policy: str) -> int:
    """Hits of libCacheSim's ``policy`` run on each set's subsequence, one 32-object cache a set."""
    sets = sets_of(trace, num_sets)
    order = np.argsort(sets, kind="stable")  # each set's keys in trace order
    bounds = np.searchsorted(sets[order], np.arange(num_sets + 1))
    hits = 0
    request = libcachesim.Request()
    request.obj_size = 1
    for s in range(num_sets):
        cache = PEERS[policy]()
        for key in trace[order[bounds[s]:bounds[s + 1]]].tolist():
            request.obj_id = key
            hits += bool(cache.get(request))
    return hits


@pytest.mark.parametrize("fraction", FRACTIONS)
@pytest.mark.parametrize("policy", sorted(PEERS))
def test_hit_counts_equal_libcachesims_set_by_set(sample, policy, fraction):
    trace, distinct = sample
    num_sets = max(1, round(fraction * distinct / WAYS))
    (row,) = run_study(trace, [policy], ["always"], [num_sets * WAYS], ways=(WAYS,), batch=1, backend="cpu",
                       belady=False, progress=False)
    assert row["capacity"] == num_sets * WAYS
    ours = round(row["hit_rate"] * row["lookups"])
    assert ours == peer_hits(trace, num_sets, policy)


def test_the_peer_sees_what_a_set_sees():
    # the set split itself: a set of 2 objects with LRU, by hand, against the peer
    request = libcachesim.Request()
    request.obj_size = 1
    cache = libcachesim.LRU(2, hashpower=4)
    got = []
    for key in (1, 2, 1, 3, 2, 1):
        request.obj_id = key
        got.append(bool(cache.get(request)))
    assert got == [False, False, True, False, False, False]


def test_the_package_never_imports_the_gpl_peer():
    import ast
    import pathlib

    import embcache

    for path in pathlib.Path(embcache.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.split(".")[0] == "libcachesim"], path


# ---------------------------------------------------------------- S3-FIFO: the rule, pinned down before the policy
class S3FIFOSet:
    """One set as libCacheSim's ``S3FIFO`` (the version this test installs) decides, in plain Python: the rule
    our ``s3fifo`` policy follows (written apart from it and from ``tests/reference.py``).

    Small FIFO of ``int(0.1 * ways)`` keys, main FIFO of the rest, ghost FIFO of ``int(0.9 * ways)`` evicted
    keys; a frequency per key (a hit adds one; only ``min(freq, 3)`` is ever read, so 2 bits suffice).
    A miss that is in the ghost leaves it and enters main; any other miss enters small, except that until the
    set's first eviction a miss that finds small full enters main.  While the set is full: if main holds more
    than its share, or small is empty, main's oldest key is reinserted at main's head with ``min(freq, 3) - 1``
    while its freq >= 1, else evicted; otherwise small's oldest key moves to main's head (freq 0) while its
    freq >= 2, else it is evicted into the ghost (unless there already; a full ghost drops its oldest).
    Whole sample, set by set, 32 ways: 0.6064 / 0.7215 / 0.8008 at 1 / 5 / 20% (279,401 / 332,436 / 368,994
    hits, equal to libCacheSim's here; the issue's table, from another simulator, has 0.606 / 0.720 / 0.797).
    """

    def __init__(self, ways: int):
        self.small_size, self.ghost_size, self.ways = int(ways * 0.1), int(ways * 0.9), ways
        self.small, self.main, self.ghost = [], [], []  # oldest first
        self.freq = {}
        self.has_evicted = False

    def get(self, key: int) -> bool:
        if key in self.freq:
            self.freq[key] += 1
            return True
        from_ghost = key in self.ghost
        if from_ghost:
            self.ghost.remove(key)
        while len(self.small) + len(self.main) >= self.ways:
            self._evict()
        if from_ghost:
            self.main.append(key)
        elif self.small_size == 0:  # libCacheSim admits nothing else when small has no room at all (ways < 10)
            return False
        elif not self.has_evicted and len(self.small) >= self.small_size:
            self.main.append(key)
        else:
            self.small.append(key)
        self.freq[key] = 0
        return False

    def _evict(self) -> None:
        self.has_evicted = True
        if len(self.main) > self.ways - self.small_size or not self.small:
            while self.main:
                key = self.main.pop(0)
                if self.freq[key] >= 1:
                    self.main.append(key)
                    self.freq[key] = min(self.freq[key], 3) - 1
                else:
                    del self.freq[key]
                    return
            return
        while self.small:  # may move every key to main and evict none: get() then evicts again
            key = self.small.pop(0)
            if self.freq[key] >= 2:
                self.main.append(key)
                self.freq[key] = 0
            else:
                del self.freq[key]
                if key not in self.ghost:
                    self.ghost.append(key)
                    if len(self.ghost) > self.ghost_size:
                        self.ghost.pop(0)
                return


def test_the_s3fifo_rule_equals_libcachesims_on_random_sets():
    rng = np.random.default_rng(22)
    request = libcachesim.Request()
    request.obj_size = 1
    for trial in range(60 if THOROUGH else 20):
        model, peer = S3FIFOSet(WAYS), libcachesim.S3FIFO(WAYS, hashpower=8)
        for key in rng.integers(0, int(rng.integers(20, 120)), 600).tolist():
            request.obj_id = key
            assert model.get(key) == bool(peer.get(request)), trial


@pytest.mark.parametrize("ways", [16, 32, 64])
def test_our_s3fifo_follows_the_rule_in_one_set(ways):
    """Our cache of one set, one key a batch, against ``S3FIFOSet`` key for key: the same hits and contents."""
    from embcache import Cache
    from embcache.tiers import HostStore

    rng = np.random.default_rng(ways)
    tier = HostStore(1)
    tier.put_many(np.arange(400), np.zeros((400, 1), np.float32))
    for trial in range(8):
        cache, model = Cache(ways, 1, "s3fifo", backend="cpu", tier=tier, ways=ways), S3FIFOSet(ways)
        for key in rng.integers(0, int(rng.integers(ways, 6 * ways)), 40 * ways).tolist():
            hits = cache.stats.hits
            cache.lookup(np.array([key], np.int64))
            assert (cache.stats.hits > hits) == model.get(key), trial
            assert sorted(cache.export()[0].tolist()) == sorted(model.freq), trial
