"""The tuning table's per-GPU shapes (``devices``) and a probe that writes (``touching``): CPU-only checks."""
from __future__ import annotations

import copy

from embcache.kernels import tuning


def _table():
    table = copy.deepcopy(tuning.load_table())
    entry = table["entries"]["9.0"]
    entry["shapes"] = [{"max_row_bytes": 256, "group": 4, "keys_per_group": 1, "block": 256},
                       {"max_row_bytes": None, "group": 32, "keys_per_group": 1, "block": 256}]
    entry["devices"] = {"GPU X": {"measured": "test", "shapes": [
        {"max_row_bytes": 256, "group": 8, "keys_per_group": 2, "block": 128, "split": False,
         "touching": {"group": 4, "split": True}},
        {"max_row_bytes": None, "group": 16, "keys_per_group": 1, "block": 256}]}}
    return table


def test_a_named_gpu_takes_its_own_shapes_and_others_the_entrys():
    table = _table()
    assert tuning.launch_shape("9.0", 256, table)["group"] == 4
    assert tuning.launch_shape("9.0", 256, table, device="GPU Y")["group"] == 4  # not in devices
    mine = tuning.launch_shape("9.0", 256, table, device="GPU X")
    assert (mine["group"], mine["keys_per_group"], mine["block"], mine["split"]) == (8, 2, 128, False)
    assert tuning.launch_shape("9.0", 1024, table, device="GPU X")["group"] == 16
    assert tuning.launch_shape("9.0", 1024, table)["group"] == 32


def test_touching_keys_override_the_shape_only_for_a_probe_that_writes():
    table = _table()
    touching = tuning.launch_shape("9.0", 200, table, device="GPU X", touching=True)
    assert (touching["group"], touching["keys_per_group"], touching["split"]) == (4, 2, True)
    assert "touching" not in touching
    # a shape without touching keys is the same either way
    assert tuning.launch_shape("9.0", 1024, table, device="GPU X", touching=True) == \
        tuning.launch_shape("9.0", 1024, table, device="GPU X")


def test_the_shipped_h200_shapes_are_complete():
    for row_bytes in (64, 128, 256, 512, 4096):
        for touching in (False, True):
            shape = tuning.launch_shape("9.0", row_bytes, device="NVIDIA H200", touching=touching)
            assert shape["group"] in (1, 2, 4, 8, 16, 32) and shape["block"] % 32 == 0


def test_an_entry_rewritten_by_autotune_keeps_what_autotune_does_not_time():
    from embcache import autotune

    entry = _table()["entries"]["9.0"]
    kept = autotune._kept(entry)
    assert kept["devices"] == entry["devices"]
    assert kept["ordered_small_max"] == entry["ordered_small_max"] and "ordered_measured" in kept
    assert "shapes" not in kept and "measured" not in kept  # those autotune measures again
    assert autotune._kept({"shapes": []}) == {}


def test_the_sm90_one_launch_miss_path_is_the_measured_one():
    # small_max.py on the H200: 8 blocks beat one block and a kernel a phase up to 1,664 keys (26 x 64)
    assert tuning.ordered_shape("9.0") == (1024, 1664, 8, 1024)
    assert tuning.ordered_shape("8.0") == (1024, 8192, 1, 8192)  # an entry without the keys: the defaults
