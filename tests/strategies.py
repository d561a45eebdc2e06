"""Hypothesis strategies shared by the tests."""
import numpy as np
from hypothesis import strategies as st

from embcache.policies import (Always, HitRateDeferred, HitRateThreshold, MinFrequency, RefuseBelowMin, TinyLFU,
                               TinyLFUEvict, TinyLFUTables)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# small keys collide in sets; keys at the int64 limits exercise the hash's wrap-around
keys = st.one_of(
    st.integers(-40, 40),
    st.integers(INT64_MIN + 2, INT64_MIN + 20),
    st.integers(INT64_MAX - 20, INT64_MAX),
)

ADMISSIONS = {
    "always": lambda: Always(),
    "min_frequency": lambda: MinFrequency(n=2, width=16, depth=2, seed=7),
    "refuse_below_min": lambda: RefuseBelowMin(),
    "hit_rate_threshold": lambda: HitRateThreshold(0.5),
    "hit_rate_deferred": lambda: HitRateDeferred(0.5),  # half the batches with a hit defer: often seen
    "tinylfu": lambda: TinyLFU(width=16, depth=2, seed=7, sample=1),  # collisions and halvings: often seen
    # sized to the small caches here (16 to 64 counters a row): collisions and halvings often seen too
    "tinylfu_evict": lambda: TinyLFUEvict(depth=2, seed=7, sample=1),
    "tinylfu_tables": lambda: TinyLFUTables(depth=2, seed=7, sample=1),  # as tinylfu_evict's, and two tables
}


def rows_for(keys, dim, dtype, seed):
    """Deterministic rows (len(keys), dim) of dtype, different for each seed."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((len(keys), dim)).astype(dtype)


def flawed_batch(batch, flaw: str, at: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(keys (n,) int64, rows (n, dim) float32, at)`` of ``batch``, with a NaN value (``flaw="nan"``) or a
    reserved key (``"reserved"``) at position ``at % n``; any other flaw is left for the caller to apply."""
    from embcache.layout import LOCKED_KEY

    keys = np.array(batch, np.int64)
    rows = rows_for(keys, dim, "float32", seed)
    at %= keys.shape[0]
    if flaw == "nan":
        rows[at, at % dim] = np.nan
    elif flaw == "reserved":
        keys[at] = LOCKED_KEY
    return keys, rows, at


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def host(array) -> np.ndarray:
    """A NumPy copy of a NumPy or CuPy array."""
    return array.get() if hasattr(array, "get") and not isinstance(array, np.ndarray) else np.asarray(array)
