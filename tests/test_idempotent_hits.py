"""The ``hit_is_idempotent`` trait: the hit rules a GPU probe may store while it reads (CPU-only checks)."""
from __future__ import annotations

import pytest

import embcache.policies as P
from embcache.errors import ConfigError
from embcache.policies import _registry
from embcache.policies._base import _evaluate


@pytest.mark.parametrize("cls, expected", [
    (P.LRU, True), (P.EpochLRU, True), (P.CLOCK, True), (P.SIEVE, True),
    (P.LFU, False), (P.LFUAged, False), (P.LRU2, False), (P.S3FIFO, False), (P.FIFO, False), (P.Static, False)])
def test_which_built_in_rules_are_idempotent(cls, expected):
    assert cls.hit_is_idempotent is expected
    if cls.hit_is_stateless:  # a rule of the clock alone gives every occurrence one score
        assert cls.hit_is_idempotent


def test_sieve_stores_the_visited_bit_once():
    import ast

    tree = ast.parse(P.SIEVE._hit_rule, mode="eval")
    for score in (0, 2, 4, 1000):  # visited bit clear: a hit sets it, a second hit changes nothing
        once = _evaluate(tree, score, 7, 1)
        assert once == score + 1 and _evaluate(tree, once, 7, 1) == once


def test_a_declared_trait_that_the_rule_contradicts_is_refused():
    with pytest.raises(ConfigError, match="hit_is_idempotent"):
        class Counting(P.Policy):
            name = "test_idempotent_counting"
            new_score = "0"
            hit_score = "sat_add(score, count)"  # composes, but a second hit counts again
            hit_is_idempotent = True
    assert "test_idempotent_counting" not in _registry.policy_names()
