"""Launch shapes of the GPU hit path, per compute capability and row size.

The table lives in ``tuning.json`` beside this file.  Each compute capability
has a list of shapes, each for rows up to ``max_row_bytes`` bytes (``null``:
any larger row):

* ``group``: lanes that probe one key's set and copy its row (a power of two <= 32);
* ``keys_per_group``: keys a group has in flight at once;
* ``block``: threads per block;
* ``digests`` (optional, default false): probe a 1-byte digest per slot first
  and read only the keys whose digest matches (HierarchicalKV's idea).
* ``split`` (optional, default false): the probe kernel finds the slots only and
  a second kernel copies the rows, one thread per word, as the gather ceiling does;
* ``touching`` (optional): keys of this shape to use instead when the policy's probe
  stores each hit's score (LRU), e.g. ``{"split": true}``.

An entry may also have ``devices``: ``{"<GPU name>": {"measured": ..., "shapes": [...]}}``,
shapes measured on one named GPU of that architecture (an H200 beside an H100's 9.0
entry), which a GPU of that name takes instead of the entry's own.

Each entry also has ``utility_block``: threads per block of every other kernel (the
grid-stride utility kernels: insertion, unique, writes, sketch, the miss list, the touch).
Optional ``ordered_block`` / ``ordered_small_max`` / ``ordered_small_blocks`` /
``ordered_small_max_one_block`` (see :func:`ordered_shape`) size the stream-ordered
lookup's fused miss path, and ``ordered_measured`` says where they were timed;
``embcache autotune`` keeps them.

Entries with ``"measured": null`` are starting points that nobody has timed on
that architecture; ``embcache autotune`` measures the candidates on the GPU at
hand and writes its entry.  Digests cost one byte a slot of device memory on
top of the key and score (16 bytes): 17 bytes a slot where they are on, one
over DESIGN.md section 5's budget, which is why the table says where.
"""
from __future__ import annotations

from .._cuda import vector_bytes
from .._tuning import TABLE_PATH, _entry, load_table, utility_block  # the reading of the table: neutral ground

__all__ = ["TABLE_PATH", "load_table", "launch_shape", "utility_block", "ordered_shape", "vector_bytes"]

_REQUIRED = ("group", "keys_per_group", "block")
_OPTIONAL = ("digests", "split")  # flags, false where the table leaves them out


def launch_shape(compute_capability: str, row_bytes: int, table: dict | None = None, device: str | None = None,
                 touching: bool = False) -> dict:
    """The shape for rows of ``row_bytes`` bytes on a GPU of ``compute_capability`` (e.g. ``"9.0"``).

    An architecture missing from the table takes the nearest lower one's entry.  ``device``: the
    GPU's name (``"NVIDIA H200"``); an entry's ``devices`` may hold shapes measured on a named GPU of
    that architecture, which then take the place of the entry's own.  ``touching``: the policy's
    probe stores each hit's score (LRU); a shape's optional ``touching`` keys override it then, as
    a probe that writes may want another shape than one that only reads.
    """
    cc, entry = _entry(compute_capability, table)
    shapes = entry.get("devices", {}).get(device, entry)["shapes"] if device else entry["shapes"]
    for shape in shapes:
        if shape["max_row_bytes"] is None or row_bytes <= shape["max_row_bytes"]:
            if touching:
                shape = {**shape, **shape.get("touching", {})}
            return {**{k: shape[k] for k in _REQUIRED}, **{k: bool(shape.get(k, False)) for k in _OPTIONAL}}
    raise ValueError(f"tuning entry {cc} has no shape for {row_bytes}-byte rows")


def ordered_shape(compute_capability: str, table: dict | None = None) -> tuple[int, int, int, int]:
    """``(block, max_keys, blocks, max_keys_one_block)`` of the stream-ordered lookup's fused miss path on
    a GPU of ``compute_capability``: a batch of up to ``max_keys`` keys runs its miss path in one launch of
    ``blocks`` blocks of ``block`` threads (each block the sets of its share, barriers between phases), a
    longer one as a kernel per phase; a lookup whose batch must stay in one block (a sketch, a deferred
    insertion) takes the one launch up to ``max_keys_one_block``.  Entries without the keys
    ``ordered_block`` / ``ordered_small_max`` / ``ordered_small_blocks`` / ``ordered_small_max_one_block``
    take 1024 / 8192 / 1 / ``ordered_small_max``."""
    cc, entry = _entry(compute_capability, table)
    block, most = int(entry.get("ordered_block", 1024)), int(entry.get("ordered_small_max", 8192))
    blocks, one = int(entry.get("ordered_small_blocks", 1)), int(entry.get("ordered_small_max_one_block", most))
    if block <= 0 or block % 32 or block > 1024 or most < 0 or one < 0 or blocks < 1:
        raise ValueError(f"tuning entry {cc} has ordered_block {block}, ordered_small_max {most}, "
                         f"ordered_small_blocks {blocks}, ordered_small_max_one_block {one}: give a multiple of 32 "
                         "up to 1024, numbers of keys and at least one block")
    return block, most, blocks, one
