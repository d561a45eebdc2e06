"""Constants both backends use: the outcome codes of insert_and_evict and the sketch's hash step."""
import numpy as np

# outcome of each key given to insert_and_evict
NOT_ADMITTED, INSERTED, EVICTED, REFRESHED, REFUSED = 0, 1, 2, 3, 4
OUTCOMES = {"NOT_ADMITTED": NOT_ADMITTED, "INSERTED": INSERTED, "EVICTED": EVICTED, "REFRESHED": REFRESHED,
            "REFUSED": REFUSED}

#: Count-min sketch row r hashes ``key + (r + 1) * GOLDEN + seed`` (see ``MinFrequency``).
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
