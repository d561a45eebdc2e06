"""What a policy is: two score rules (eviction) or an admission decision.

Eviction policies follow HierarchicalKV's score functors: every cached key has
an int64 score, the lowest ``(score, way)`` in a full set is evicted, and a
policy only says

* ``new_score``: the score a key gets when it enters the cache, and
* ``hit_score``: the score of a cached key after it is accessed.

Both are one expression over ``score`` (the slot's current score), ``clock``
(the batch clock, >= 1) and ``count`` (how often the key occurs in the batch),
written in the common subset of Python and C: integer literals, ``+ - *``,
``min``, ``max`` and ``sat_add`` (addition that stops at ``MAX_SCORE``).  The
backends compile the same text into a Numba function and a CUDA device
function, so a policy is defined exactly once.

``hit_score`` must compose: applying it with ``count=a`` then ``count=b`` must
equal applying it once with ``count=a+b`` (true of ``clock``, ``score`` and
``sat_add(score, count)``), because a backend may apply it once per occurrence.
"""
from __future__ import annotations

import ast
from typing import ClassVar

__all__ = ["Policy", "Admission", "SCORE_VARIABLES", "SCORE_FUNCTIONS", "check_score_expression"]

SCORE_VARIABLES = ("score", "clock", "count", "MAX_SCORE")
SCORE_FUNCTIONS = ("min", "max", "sat_add")
_BINOPS = (ast.Add, ast.Sub, ast.Mult)


def check_score_expression(text: str) -> str:
    """Return ``text`` if it is a valid score expression, else raise ``ValueError``."""
    from ..errors import ConfigError

    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"score expression {text!r} is not valid syntax: {exc.msg}") from None
    for node in ast.walk(tree):
        ok = isinstance(node, (ast.Expression, ast.Load, ast.BinOp, *_BINOPS))
        ok |= isinstance(node, ast.Name) and node.id in SCORE_VARIABLES + SCORE_FUNCTIONS
        ok |= isinstance(node, ast.Constant) and type(node.value) is int and 0 <= node.value < 2**63
        ok |= (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in SCORE_FUNCTIONS
            and len(node.args) == 2
            and not node.keywords
        )
        if not ok:
            raise ConfigError(
                f"score expression {text!r} uses {type(node).__name__} ({ast.unparse(node)!r}); "
                f"only {', '.join(SCORE_VARIABLES)}, non-negative integer literals, + - * and "
                f"{', '.join(SCORE_FUNCTIONS)}(a, b) are allowed so that every backend can compile it"
            )
    return text


class Policy:
    """An eviction policy: the lowest score in a full set is evicted.

    Subclasses set ``name``, ``new_score`` and ``hit_score`` (see the module
    docstring); ``inserts_on_lookup = False`` makes lookups never insert.
    """

    name: ClassVar[str]
    new_score: ClassVar[str]
    hit_score: ClassVar[str]
    inserts_on_lookup: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        check_score_expression(cls.new_score)
        check_score_expression(cls.hit_score)

    def config(self) -> dict:
        """Constructor arguments, for ``Cache.save``."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(self.config().items()))))


class Admission:
    """An admission policy: which missed keys of a lookup enter the cache.

    Three hooks, all optional, none of which touches arrays:

    * ``admit_batch(hits, lookups)``: whether this batch's misses may enter at all;
    * ``sketch``: ``(threshold, width, depth, seed)`` of a count-min sketch of
      missed keys; a key enters once its estimated miss count reaches ``threshold``;
    * ``refuse_below_min``: refuse a key whose new score is below the lowest
      score of its full set instead of evicting.

    Writes (``insert``, ``preload``) bypass admission.
    """

    name: ClassVar[str]
    refuse_below_min: ClassVar[bool] = False
    sketch: tuple[int, int, int, int] | None = None

    def admit_batch(self, hits: int, lookups: int) -> bool:
        return True

    def config(self) -> dict:
        return {}

    __repr__ = Policy.__repr__
    __eq__ = Policy.__eq__
    __hash__ = Policy.__hash__
