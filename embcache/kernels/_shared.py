"""Constants that Python and the kernels share, written once here.

Both backends use the outcome codes of ``insert_and_evict`` and the sketch's hash step; the GPU
backend's ``state`` words and probe touch modes are named here too.  ``cuda_defines()`` turns every
one of them into the ``#define`` the CUDA files use, so no ``.cu`` file retypes a number that Python has.
"""
import numpy as np

__all__ = ["NOT_ADMITTED", "INSERTED", "EVICTED", "REFRESHED", "REFUSED", "OUTCOMES", "GOLDEN", "STATE",
           "TOUCH", "TICK", "SMALL_SHARED", "STATE_WORDS", "ORDERED", "ORD_FIELDS", "ORDERED_WORDS", "FIELDS", "ADMIT",
           "cuda_defines"]

# outcome of each key given to insert_and_evict
NOT_ADMITTED, INSERTED, EVICTED, REFRESHED, REFUSED = 0, 1, 2, 3, 4
OUTCOMES = {"NOT_ADMITTED": NOT_ADMITTED, "INSERTED": INSERTED, "EVICTED": EVICTED, "REFRESHED": REFRESHED,
            "REFUSED": REFUSED}

#: Count-min sketch row r hashes ``key + (r + 1) * GOLDEN + seed`` (see ``MinFrequency``).
GOLDEN = np.uint64(0x9E3779B97F4A7C15)

#: Words of ``GPUBackend.state`` (int64 each), the counters the kernels share with the host.
STATE = {
    "STATE_CLOCK": 0,  # the batch clock
    "STATE_MISSES": 1,  # a host-path probe's misses; update/erase: keys that were cached
    "STATE_RESERVED": 2,  # a host-path probe's reserved keys (a stream-ordered one counts into ORD_BATCH)
    "STATE_REPLAY_LOOKUPS": 3,  # keys and misses of captured lookups (graph replays), never reset
    "STATE_REPLAY_MISSES": 4,
    "STATE_LISTED": 5,  # list_misses' cursor
    "STATE_INVALID": 6,  # a host-path probe's keys that lookup(index_rows=)'s rules replaced
    # blocks of the running reporting kernel that have finished (the last one reports): past the words a
    # host-path plan zeroes (STATE_MISSES .. STATE_INVALID), so a plan never resets a running kernel's count
    "STATE_DONE": 7,
    "STATE_OUTCOMES": 8,  # 5 words: the last insert_and_evict's tally of outcome codes
    "STATE_PUBLISHED": 13,  # words 0 .. 12 go to the host's pinned copy
    "STATE_DISTINCT": 13,  # count_source_misses: distinct missed keys
    "STATE_ABSENT": 14,  # and how many of those the source lacked
    "STATE_HOST": 15,  # the device address of the host's pinned copy of the state words
    "STATE_PENDING": 64,  # sets a HitRateDeferred batch left to place (cuda/ordered.cu)
    "STATE_HANDS": 65,  # the device address of the hands (victim = "hand", cuda/insert_one.cuh), else 0
}
#: The stream-ordered lookup's counters (cuda/ordered.cu): three blocks of ORD_FIELDS words in ``state``,
#: this batch's (zeroed when it ends), the totals since the cache was made, and the last batch's.
ORDERED = {"ORD_BATCH": 16, "ORD_TOTAL": 32, "ORD_LAST": 48}
ORD_FIELDS = 16
#: words of the stream-ordered scratch's address array that one block of ordered_small reads (ordered_of)
ORDERED_WORDS = 15
#: word F_* of each block; the first F_COUNTERS are counters (added to the totals), then the batch's
#: cursors and flags
FIELDS = {
    "F_LOOKUPS": 0,  # key occurrences
    "F_MISSES": 1,  # occurrences not cached (invalid ones included)
    "F_UNIQUE": 2,  # distinct missed keys (valid ones)
    "F_ABSENT": 3,  # distinct missed keys the source lacked
    "F_ADMITTED": 4,  # distinct missed keys admission let through
    "F_OUTCOMES": 5,  # 5 words: insert_one's tally, by outcome code
    "F_INVALID": 10,  # occurrences of reserved keys (default row, never admitted)
    "F_BATCHES": 11,  # lookups (1 per batch)
    "F_COUNTERS": 12,
    "F_SETS": 12,  # sets listed by ordered_group (a cursor)
    "F_ADMITS": 13,  # whether the batch admits (ordered_distinct's decision)
    "F_MARK": 14,  # in the last batch's block: the total of INSERTED outcomes when it ended
    # 1 once a small batch's probe has written every slot and count (before its missed rows arrive over
    # PCIe): ordered_small, started early, runs its miss phases from then on (cuda/ordered.cu)
    "F_PROBED": 15,
}
#: how a stream-ordered lookup's batch admits: never (Static), always, or while its hit rate is below t
ADMIT = {"ADMIT_NEVER": 0, "ADMIT_ALWAYS": 1, "ADMIT_BELOW_HIT_RATE": 2}
STATE_WORDS = 72
#: ordered_small's block tables in dynamic shared memory (cuda/ordered.cu): for batches of at most
#: SMALL_SHARED_KEYS keys, SMALL_SHARED_BYTES a block (three hash tables and seven lists of that many
#: 8-byte cells, the last list of bools)
SMALL_SHARED = {"SMALL_SHARED_KEYS": 1024, "SMALL_SHARED_BYTES": 1024 * (9 * 8 + 1)}

#: probe_gather's ``touch`` argument: none; store the hits' scores and tick if every key hit; store
#: them and tick (captured lookups)
TOUCH = {"TOUCH_NONE": 0, "TOUCH_IF_CLEAN": 1, "TOUCH_ALWAYS": 2}
#: ordered_small's ``touch`` argument, what the probe left undone: nothing (it scored the hits and
#: ticked), the tick alone (hits keep their scores), the hits' scores and the tick; or those after an
#: aging pass that ran between the probe and ordered_small (whose scores it must wait for: ordered.cu)
TICK = {"TICK_NONE": 0, "TICK_ONLY": 1, "TICK_TOUCH": 2, "TICK_TOUCH_AGED": 3}


def cuda_defines() -> dict:
    """The ``#define``s of this module's constants, as C literals, for every CUDA file."""
    return {"GOLDEN": f"{int(GOLDEN)}ULL", **OUTCOMES, **STATE, **TOUCH, **TICK, **SMALL_SHARED, **ORDERED, "ORD_FIELDS": ORD_FIELDS, "ORDERED_WORDS": ORDERED_WORDS, **FIELDS, **ADMIT}
