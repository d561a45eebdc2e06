"""Issue 22's score-rule policies (epoch-LRU, LRU-2) and the two operators they need (``//`` and ``&``).

The contract and stateful grids run every registered policy on both backends already; this file adds
what makes each new policy different (orderings in one set) and checks that a rule has one value on
the evaluator, in Numba and in the C the GPU backend compiles, over the whole int64 range.
"""
import ast
import importlib.util
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest

import embcache
from embcache._cuda import layout_defines
from embcache.errors import ConfigError
from embcache.kernels import _rules
from embcache.policies import LRU2, EpochLRU, Policy, policy_names
from embcache.policies._base import _composes, _evaluate

from .test_policies import cached, one_set

M31 = 2**31


def scores(cache) -> dict:
    keys, _, values = cache.export()
    return dict(zip(keys.tolist(), values.tolist()))


def tick(cache, n: int) -> None:
    for _ in range(n):  # an empty lookup advances the clock and changes nothing else
        cache.lookup(np.empty(0, np.int64))


def test_new_policies_are_registered():
    assert {"epoch_lru", "lru2"} <= set(policy_names())
    assert EpochLRU.hit_is_stateless and EpochLRU.composes and EpochLRU.hit_changes_score
    assert LRU2.composes and not LRU2.hit_is_stateless


# ---------------------------------------------------------------- epoch-LRU


def test_epoch_lru_keeps_the_score_inside_an_epoch_and_orders_by_epoch():
    c = one_set(EpochLRU())
    c.lookup([1]); c.lookup([2]); c.lookup([1])  # clocks 1..3: epoch 0, so 1's hit leaves 0
    assert scores(c) == {1: 0, 2: 0}
    c.lookup([3])  # a tie at epoch 0: the lowest way (key 1, way 0) goes, where LRU would evict 2
    assert cached(c) == [2, 3]
    tick(c, 12)  # clock 16 next: epoch 1
    c.lookup([2])
    assert scores(c) == {2: 1, 3: 0}
    c.lookup([4])  # 3's last access is in the older epoch
    assert cached(c) == [2, 4]


# ---------------------------------------------------------------- LRU-2


def test_lru2_evicts_the_oldest_second_to_last_access():
    c = one_set(LRU2())
    c.lookup([1]); c.lookup([1]); c.lookup([2])  # 1: accesses at 1 and 2; 2: once, at 3
    assert scores(c) == {1: 1 * M31 + 2, 2: 3}
    c.lookup([3])  # LRU would evict 1 (last access 2 < 3); LRU-2 evicts the key seen once
    assert cached(c) == [1, 3]
    c.lookup([4])  # 3 seen once (prev 0) still goes before 1 (prev 1)
    assert cached(c) == [1, 4]
    c.lookup([4]); c.lookup([4])  # 4: prev 6, last 7 (history since it entered at 5)
    assert scores(c)[4] == 6 * M31 + 7
    c.lookup([5])  # 1's second-to-last access (1) is older than 4's (6)
    assert cached(c) == [4, 5]


def test_lru2_counts_a_batchs_occurrences_as_accesses_at_its_clock():
    c = one_set(LRU2())
    c.lookup([7, 7])  # admitted with two accesses at clock 1
    c.lookup([8])
    assert scores(c) == {7: 1 * M31 + 1, 8: 2}
    c.lookup([8, 8, 8])  # a hit occurring three times: both clocks are the batch's
    assert scores(c)[8] == 3 * M31 + 3
    c.lookup([7])
    assert scores(c)[7] == 1 * M31 + 4


def test_lru2_without_the_count_term_does_not_compose():
    # the plain "old last becomes prev" rule differs per occurrence and per batch: refused
    naive = "(score & 2147483647) * 2147483648 + (clock & 2147483647)"
    assert not _composes(naive)
    with pytest.raises(ConfigError, match="does not compose"):
        class NaiveLRU2(Policy):
            name = "test_naive_lru2"
            new_score = "clock"
            hit_score = naive


# ---------------------------------------------------------------- the operators


@pytest.mark.parametrize("text", ["clock // 0", "clock // score", "score & clock", "2 // clock", "clock >> 1",
                                  "clock / 2", "clock % 3", "clock // -1"])
def test_floor_division_and_bitwise_and_take_literals_only(text):
    with pytest.raises(ConfigError):
        _rules.canonical(text)


def test_epoch_rule_would_be_refused_if_it_did_not_compose():
    assert _composes("clock // 16") and _composes("score & 255") and not _composes("score // 2 + clock")


EDGES = [-(2**63), -(2**63) + 1, -(2**62) - 3, -(2**31) - 1, -(2**31), -17, -16, -15, -2, -1, 0, 1, 2, 15, 16, 17,
         2**31 - 1, 2**31, 2**32 + 5, 2**62 + 2**31 + 7, 2**63 - 2, 2**63 - 1]
# rules over every operator, with negative and extreme operands (sat_add stays with non-negative
# scores: see test_sat_add_of_a_negative_score_is_the_evaluators)
RULES = ["clock // 16", "score // 3", "score // 9223372036854775807", "(score & 255) * 3 - clock // 7",
         "max(score, clock) // 1", "min(score & 1, clock - count)", "score * 3 + clock", "0 - score - 1",
         "MAX_SCORE * 2 + score", "score // 16 * 16 + (score & 15)", "(clock - score) // 5 & 4294967295"]


def _inputs():
    rng = np.random.default_rng(22)
    randoms = rng.integers(-(2**63), 2**63 - 1, size=60, dtype=np.int64, endpoint=True).tolist()
    values = EDGES + randoms
    return [(s, c, n) for s in values for c, n in ((values[(i * 7) % len(values)], 1 + i % 5)
                                                    for i in range(0, len(values), 9))]


def _policy_rules():
    out = set(RULES)
    for name in policy_names():
        rule = embcache.policies.get_policy(name).rule()
        out |= {rule["new_score"], rule["hit_score"]}
    return sorted(out)


def _numba_values(rule: str, inputs, tmp_path) -> list:
    text = _rules.numba_module(rule, rule, "test")
    path = tmp_path / f"rule_{abs(hash(rule))}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [int(module.hit_fn(np.int64(s), np.int64(c), np.int64(n))) for s, c, n in inputs]


def test_numba_gives_the_evaluators_values(tmp_path):
    inputs = _inputs()
    for rule in _policy_rules():
        if "sat_add" in rule:
            continue  # sat_add's negative scores: see below
        tree = ast.parse(_rules.canonical(rule), mode="eval")
        assert _numba_values(rule, inputs, tmp_path) == [_evaluate(tree, s, c, n) for s, c, n in inputs], rule


def _helpers() -> str:
    # the score helpers as common.cuh defines them, for a host compiler (the same text, less __device__)
    source = (pathlib.Path(_rules.__file__).parent / "cuda" / "common.cuh").read_text()
    lines = [line for line in source.splitlines()
             if re.match(r"__device__ __forceinline__ i64 (sat_add|score_min|score_max)\(", line)]
    assert len(lines) == 3
    return "\n".join(line.replace("__device__ __forceinline__ ", "") for line in lines)


def _c_values(rules, inputs, tmp_path) -> list:
    compiler = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler to check the CUDA expressions on the host")
    functions = "\n".join(f"static i64 rule{i}(i64 score, i64 clock, i64 count) {{ return (i64)({_rules.c_expression(r)}); }}"
                          for i, r in enumerate(rules))
    calls = " ".join(f'printf("%lld\\n", rule{i}(s, c, n));' for i in range(len(rules)))
    program = (f"#include <cstdio>\ntypedef long long i64;\ntypedef unsigned long long u64;\n"
               f"#define MAX_SCORE {layout_defines()['MAX_SCORE']}\n{_helpers()}\n{functions}\n"
               f"int main() {{ i64 s, c, n; while (scanf(\"%lld %lld %lld\", &s, &c, &n) == 3) {{ {calls} }} }}\n")
    (tmp_path / "rules.cpp").write_text(program)
    # -fsanitize=undefined: the expressions must not lean on signed overflow (CUDA's C++ leaves it undefined)
    flags = ["-O2", "-std=c++17", "-fsanitize=undefined", "-fno-sanitize-recover=all"]
    built = subprocess.run([compiler, *flags, "rules.cpp", "-o", "rules"], cwd=tmp_path, capture_output=True, text=True)
    if built.returncode:
        flags = flags[:2]  # no sanitizer runtime here: the values are still checked
        built = subprocess.run([compiler, *flags, "rules.cpp", "-o", "rules"], cwd=tmp_path, capture_output=True,
                               text=True)
    assert built.returncode == 0, built.stderr
    stdin = "".join(f"{s} {c} {n}\n" for s, c, n in inputs)
    ran = subprocess.run([str(tmp_path / "rules")], input=stdin, capture_output=True, text=True, check=True)
    values = [int(v) for v in ran.stdout.split()]
    return [values[i::len(rules)] for i in range(len(rules))]


def test_the_cuda_expressions_give_the_evaluators_values(tmp_path):
    inputs = _inputs()
    rules = [r for r in _policy_rules() if "sat_add" not in r]
    for rule, got in zip(rules, _c_values(rules, inputs, tmp_path)):
        tree = ast.parse(_rules.canonical(rule), mode="eval")
        assert got == [_evaluate(tree, s, c, n) for s, c, n in inputs], rule


def test_sat_add_agrees_for_the_scores_policies_give(tmp_path):
    inputs = [(s, c, n) for s, c, n in _inputs() if s >= 0 and 0 <= n]
    rules = ["sat_add(score, count)", "sat_add(score, 64 * count)"]
    for rule, got in zip(rules, _c_values(rules, inputs, tmp_path)):
        tree = ast.parse(rule, mode="eval")
        assert got == [_evaluate(tree, s, c, n) for s, c, n in inputs], rule


def test_sat_add_of_a_negative_score_is_the_evaluators(tmp_path):
    inputs = [(-5, 1, 1), (-(2**63), 1, 1)]
    (got,) = _c_values(["sat_add(score, count)"], inputs, tmp_path)
    assert got == [_evaluate(ast.parse("sat_add(score, count)", mode="eval"), s, c, n) for s, c, n in inputs]
