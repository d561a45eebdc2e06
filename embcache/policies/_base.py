"""What a policy is: two score rules (eviction) or an admission decision.

Eviction policies follow HierarchicalKV's score functors: every cached key has
an int64 score, the lowest ``(score, way)`` in a full set is evicted, and a
policy only says

* ``new_score``: the score a key gets when it enters the cache, and
* ``hit_score``: the score of a cached key after it is accessed.

Both are one expression over ``score`` (the slot's current score), ``clock``
(the batch clock, >= 1) and ``count`` (how often the key occurs in the batch),
written in the common subset of Python and C: integer literals, ``+ - *``,
``min``, ``max`` and ``sat_add`` (addition that stops at ``MAX_SCORE``), and
two operators whose right operand must be an integer literal:

* ``a // N`` with ``1 <= N < 2**63``: floor division (rounds toward minus infinity, as Python's ``//``;
  never overflows), so that a rule can read a coarse clock (``clock // 16``: epoch-LRU);
* ``a & N`` with ``0 <= N < 2**63``: bitwise and on the two's-complement bits (the result is in
  ``[0, N]``), so that a rule can unpack a field of a packed score (LRU-2's two clocks).

``+ - *`` wrap around in int64 on every backend.  The backends compile the same text into a Numba
function and a CUDA device function (``embcache.kernels._rules``: C's ``/`` truncates, so ``//``
becomes a sign-correct quotient there, and ``+ - *`` go through uint64), so a policy is defined
exactly once and its value is the same on both for every int64 input; ``_evaluate`` below is that
value, in Python.

``hit_score`` must compose: applying it with ``count=a`` then ``count=b`` must
equal applying it once with ``count=a+b`` (true of ``clock``, ``score`` and
``sat_add(score, count)``), because a backend may apply it once per occurrence.

A class whose own body sets ``name`` is registered under it (``embcache.policies._registry``): a
name registered twice is a ``ConfigError`` at the second definition.  Its traits are derived once,
here, from the checked rules, and are what the backends read (they never parse the rules for them):

* ``hit_changes_score``: the hit rule is not exactly ``score``;
* ``hit_is_stateless``: a hit changes the score and reads neither ``score`` nor ``count`` (LRU's
  ``clock``), so every occurrence writes the same value and a backend may store it while probing;
* ``hit_is_idempotent``: a hit changes the score, reads no ``count``, and a second hit in the same
  batch changes nothing more (LRU's ``clock``, SIEVE's visited bit; checked on the grid below), so
  each occurrence may store its own result while probing, in any order, and a backend may do so;
* ``composes``: the hit rule composes (checked on a grid of scores, clocks and counts in int64
  arithmetic, negative and extreme scores and the clocks around powers of two included; a rule
  that does not is refused at definition, since the backends would disagree).

A class body may declare a trait; a declaration that contradicts the rules is a ``ConfigError``.

The one extension of the score model (issue 22: CLOCK, SIEVE): ``victim = "hand"``.  The lowest
``(score, way)`` is ``victim = "lowest"``, every other policy's rule.  A hand policy's score packs a
*position* and a *visited* bit, ``score = position + visited`` with ``visited = score & 1`` and the
position even (its rules keep it so: ``new_score`` even, ``hit_score`` setting the bit, e.g. ``1`` or
``score + 1 - (score & 1)``); the slots of a set are in the order ``(score - (score & 1), way)``, and
every set has a *hand*, a position in that order or none (``(num_sets, 2)`` int64 of the backend,
``[position, way]``, way -1 for none; a new cache's hands are none, ``Cache.save`` and ``Cache.load``
keep them, ``Cache.clear`` makes them none).  A key that misses a full set takes the way that this walk
stops at: from the first slot after the hand (or the first slot, if no slot is after it, or the hand is
none) in that order, wrapping around from the last slot to the first, clear the visited bit of every
visited slot passed (its score written, ``score - 1``) and stop at the first unvisited one (after one
whole turn every bit is clear, so the walk stops).  The hand then rests at the victim's position, or
becomes none if no slot of the set was after the victim (the next walk starts from the first).

* SIEVE (``new_score = 2 * clock``): positions are admission clocks, so the hand walks from old to new
  keys and passed keys keep their places (libCacheSim's ``Sieve``, whose hand returns to the tail when it
  passes the head).
* CLOCK (``new_score = 0``): every position is 0, so the order is the way order and the hand goes round
  the ways as a clock's does: a new key takes the victim's way, just behind the hand, so it is the last
  the hand reaches; passed keys are likewise behind it (libCacheSim's ``Clock``, which moves them to the
  head of its queue).

A second extension, ``victim = "s3fifo"`` (:class:`~embcache.policies.S3FIFO`), keeps more per set: the
backend's ``(num_sets, 2 + 2 * G)`` int64 state (``layout.new_set_state``: a sequence counter, whether the
set has evicted yet, and a ghost FIFO of ``G`` evicted keys with their stamps), saved, loaded and
cleared as the hands are.  Its placement of every missed key (empty ways included) is S3-FIFO's and gives
the new key's score (``new_score`` is not used); its ``hit_score`` is an ordinary rule.

Insertion into an empty way leaves the hand alone; ``refuse_below_min`` compares the new score with the
lowest score of the full set, as for every policy, before the walk (a refused key moves nothing).  The
walk is deterministic and the backends run the same one: each set is walked by one thread (CPU) or one
warp (GPU), its keys in ascending key order.
"""
from __future__ import annotations

import ast
from typing import ClassVar

from ._registry import _register, import_path

__all__ = ["Policy", "Admission", "SCORE_VARIABLES", "SCORE_FUNCTIONS", "check_score_expression"]

SCORE_VARIABLES = ("score", "clock", "count", "MAX_SCORE")
SCORE_FUNCTIONS = ("min", "max", "sat_add")
_BINOPS = (ast.Add, ast.Sub, ast.Mult)
# operators whose right operand is an integer literal, with the literals they accept
_LITERAL_OPS = {ast.FloorDiv: (1, "a positive"), ast.BitAnd: (0, "a non-negative")}


def check_score_expression(text: str) -> str:
    """Return ``text`` if it is a valid score expression, else raise ``ValueError``."""
    from ..errors import ConfigError

    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"score expression {text!r} is not valid syntax: {exc.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and type(node.op) in _LITERAL_OPS:
            low, what = _LITERAL_OPS[type(node.op)]
            right = node.right
            if not (isinstance(right, ast.Constant) and type(right.value) is int and low <= right.value < 2**63):
                raise ConfigError(
                    f"score expression {text!r}: the right operand of {ast.unparse(node)!r} must be {what} "
                    f"integer literal below 2**63 (e.g. 'clock // 16', 'score & 2147483647')"
                )
        ok = isinstance(node, (ast.Expression, ast.Load, ast.BinOp, *_BINOPS, *_LITERAL_OPS))
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
                f"only {', '.join(SCORE_VARIABLES)}, non-negative integer literals, + - *, // and & by a "
                f"literal and {', '.join(SCORE_FUNCTIONS)}(a, b) are allowed so that every backend can compile it"
            )
    return text


_VICTIMS = ("lowest", "hand", "s3fifo")
_MASK, _SIGN = 2**64 - 1, 2**63
_MAX_SCORE = 2**63 - 1  # layout.MAX_SCORE; policies import nothing of the layout's arrays


def _wrap(value: int) -> int:
    """``value`` as int64 arithmetic leaves it (both backends wrap)."""
    value &= _MASK
    return value - 2**64 if value & _SIGN else value


def _evaluate(tree: ast.AST, score: int, clock: int, count: int) -> int:
    """A checked rule's value in int64 arithmetic (``sat_add`` stops at MAX_SCORE)."""
    if isinstance(tree, ast.Expression):
        return _evaluate(tree.body, score, clock, count)
    if isinstance(tree, ast.Constant):
        return tree.value
    if isinstance(tree, ast.Name):
        return {"score": score, "clock": clock, "count": count, "MAX_SCORE": _MAX_SCORE}[tree.id]
    if isinstance(tree, ast.BinOp):
        a, b = _evaluate(tree.left, score, clock, count), _evaluate(tree.right, score, clock, count)
        op = type(tree.op)
        # // and & of an int64 by a checked literal stay in int64: Python's values are the backends'
        value = (a + b if op is ast.Add else a - b if op is ast.Sub else a * b if op is ast.Mult
                 else a // b if op is ast.FloorDiv else a & b)
        return _wrap(value)
    a, b = (_evaluate(arg, score, clock, count) for arg in tree.args)
    return {"min": min, "max": max}[tree.func.id](a, b) if tree.func.id != "sat_add" else \
        (_MAX_SCORE if a + b > _MAX_SCORE else _wrap(a + b))


# where a rule that does not compose shows it: small, negative and extreme scores, early and late clocks
# (around the powers of two where a // or & by a literal changes value), small counts
_SCORES = (0, 1, 2, 3, 7, 64, 1000, 2**31 - 1, 2**31, 2**32 + 3, 2**62 + 2**31 + 5, _MAX_SCORE - 5, _MAX_SCORE,
           -1, -1000, -(2**63))
_CLOCKS = (1, 2, 5, 15, 16, 17, 1000, 2**31 - 1, 2**31, 2**32 + 1, 2**40)
_COUNTS = ((1, 1), (1, 2), (2, 1), (2, 3), (3, 5), (7, 1))


def _composes(hit_score: str) -> bool:
    tree = ast.parse(hit_score, mode="eval")
    return all(_evaluate(tree, _evaluate(tree, s, c, a), c, b) == _evaluate(tree, s, c, a + b)
               for s in _SCORES for c in _CLOCKS for a, b in _COUNTS)


def _hand_rules(new_score: str, hit_score: str) -> bool:
    """Whether new scores have the visited bit clear and hit scores have it set (on the grid of _composes)."""
    new, hit = ast.parse(new_score, mode="eval"), ast.parse(hit_score, mode="eval")
    return all(_evaluate(new, 0, c, a) & 1 == 0 and _evaluate(hit, s, c, a) & 1 == 1
               for s in _SCORES for c in _CLOCKS for a, _ in _COUNTS)


def _canonical(text: str) -> str:
    return ast.unparse(ast.parse(check_score_expression(text), mode="eval"))


def _idempotent(hit_score: str) -> bool:
    tree = ast.parse(hit_score, mode="eval")
    return all(_evaluate(tree, _evaluate(tree, s, c, 1), c, 1) == _evaluate(tree, s, c, 1)
               for s in _SCORES for c in _CLOCKS)


def _traits(hit_score: str) -> dict:
    names = {n.id for n in ast.walk(ast.parse(hit_score, mode="eval")) if isinstance(n, ast.Name)}
    changes = hit_score != "score"
    return {"hit_changes_score": changes, "hit_is_stateless": changes and not names & {"score", "count"},
            "hit_is_idempotent": changes and "count" not in names and _idempotent(hit_score),
            "composes": _composes(hit_score)}


class Policy:
    """An eviction policy: the lowest score in a full set is evicted.

    Subclasses set ``name``, ``new_score`` and ``hit_score`` (see the module
    docstring); ``inserts_on_lookup = False`` makes lookups never insert.  The traits
    ``hit_changes_score``, ``hit_is_stateless``, ``hit_is_idempotent`` and ``composes`` are derived
    from the rules.

    The rule language (issue 22's extension included): ``score``, ``clock``, ``count``,
    ``MAX_SCORE``, non-negative literals, ``+ - *`` (int64 wrap-around), ``min``, ``max``,
    ``sat_add``, ``a // N`` (floor division by a literal ``N >= 1``) and ``a & N`` (bitwise and with a
    literal ``N >= 0``); every backend gives every int64 input the value ``_evaluate`` gives it.
    ``//`` gives coarse clocks (:class:`~embcache.policies.EpochLRU`), ``&`` unpacks fields of a packed
    score (:class:`~embcache.policies.LRU2`).

    ``victim = "hand"`` (CLOCK, SIEVE) replaces "the lowest score is evicted" by a walk of a per-set
    hand over the slots that clears visited bits (the score's lowest bit) until it finds an unvisited
    slot: the one extension of the model, described in the module docstring.

    **Aging** (issue 22): what a per-slot rule cannot express is a change of every slot's score at a
    moment when the slots are not accessed.  LFU with aging (every count halved at each multiple of
    ``A`` clocks) is one: two untouched slots with counts 3 and 2 tie at 1 after a halving, which no
    rule applied at access time can do.  So a policy may declare ``age_period = A`` (a positive int;
    0, the default, never ages) and ``age_score``, a rule over ``score`` and ``clock`` in the same
    language (``count`` reads 0; default ``"score // 2"`` once a period is set).  Whenever the clock
    advances to a multiple of ``A`` (the tick of a ``lookup``, ``insert`` or ``preload``), the backend
    applies ``age_score`` to the score of every occupied slot before that operation changes any score:
    before the hits' rule, before insertion, as one pass over the scores (O(capacity / A) a batch).
    A lookup that fails before it ticks (a tier error) ages nothing.  Deterministic and identical on
    both backends (the GPU runs the pass as a kernel that reads the device clock, so a captured lookup
    ages when its replay reaches a multiple).  The trait ``ages`` is ``age_period > 0``; ``rule()``
    records both fields for a policy that ages.  ``composes`` concerns ``hit_score`` alone.  The period
    is a kernel argument, not compiled in: a class that ages may take it as a constructor argument and
    set it on the instance (``LFUAged(period=...)``, recorded by ``config()``); ``age_score`` and
    ``ages`` stay the class's.
    """

    name: ClassVar[str]
    new_score: ClassVar[str]
    hit_score: ClassVar[str]
    inserts_on_lookup: ClassVar[bool] = True
    #: clocks between two aging passes (0: never); see "Aging" above
    age_period: ClassVar[int] = 0
    #: the aging pass's rule over ``score`` and ``clock``, applied to every occupied slot
    age_score: ClassVar[str] = "score // 2"
    ages: ClassVar[bool] = False
    #: which slot of a full set a missed key takes: ``"lowest"`` (score, way), or ``"hand"``'s walk
    victim: ClassVar[str] = "lowest"
    hit_changes_score: ClassVar[bool]
    hit_is_stateless: ClassVar[bool]
    hit_is_idempotent: ClassVar[bool]
    composes: ClassVar[bool]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        from ..errors import ConfigError

        own = cls.__dict__
        if "name" not in own:  # a base for other policies: registers nothing, is checked when named
            if {"new_score", "hit_score", "inserts_on_lookup", "age_period", "age_score", "victim"} & own.keys() and \
                    hasattr(cls, "name"):
                raise ConfigError(f"{cls.__qualname__} changes the rules of {cls.name!r} but keeps its name; "
                                  "set name = '...' in its class body")
            return
        for rule in ("new_score", "hit_score"):
            if not isinstance(getattr(cls, rule, None), str):
                raise ConfigError(f"{cls.__qualname__}.{rule} must be a score expression string, e.g. 'clock'")
        cls._new_rule, cls._hit_rule = _canonical(cls.new_score), _canonical(cls.hit_score)
        period = cls.age_period
        if isinstance(period, bool) or not isinstance(period, int) or not 0 <= period < 2**63:
            raise ConfigError(f"{cls.__qualname__}.age_period = {period!r}: clocks between two aging passes, an int "
                              ">= 0 (0 never ages)")
        if not isinstance(cls.age_score, str):
            raise ConfigError(f"{cls.__qualname__}.age_score must be a score expression string, e.g. 'score // 2'")
        cls._age_rule = _canonical(cls.age_score)
        if "count" in {n.id for n in ast.walk(ast.parse(cls._age_rule, mode="eval")) if isinstance(n, ast.Name)}:
            raise ConfigError(f"{cls.__qualname__}.age_score {cls.age_score!r} reads count, which an aging pass "
                              "does not have; write it over score and clock")
        cls.ages = period > 0
        if cls.victim not in _VICTIMS:
            raise ConfigError(f"{cls.__qualname__}.victim = {cls.victim!r}; choose one of {', '.join(_VICTIMS)}")
        if cls.victim == "hand" and not _hand_rules(cls._new_rule, cls._hit_rule):
            raise ConfigError(f"{cls.__qualname__}: a hand policy's new_score must be even (visited bit clear) and "
                              f"its hit_score odd (bit set) for every input; {cls.new_score!r} / {cls.hit_score!r} "
                              "are not (e.g. new_score = '2 * clock', hit_score = 'score + 1 - (score & 1)')")
        derived = _traits(cls._hit_rule)
        for trait, value in derived.items():
            if trait in own and own[trait] is not value:
                raise ConfigError(f"{cls.__qualname__} declares {trait} = {own[trait]!r}, but its hit_score "
                                  f"{cls.hit_score!r} gives {value!r}")
            setattr(cls, trait, value)
        if not cls.composes:
            raise ConfigError(f"{cls.__qualname__}.hit_score {cls.hit_score!r} does not compose: applied with "
                              "count=a and then count=b it differs from one application with count=a+b, so the "
                              "backends (per occurrence or per batch) would disagree; write it over clock, "
                              "score and sat_add(score, count)")
        _register(cls, "eviction policy")

    def __setattr__(self, name: str, value: object) -> None:
        # the rules and traits are the class's, checked once at definition; an instance that changed one
        # would compile other kernels than its traits describe (and save another rule than it runs)
        if name in ("new_score", "hit_score", "inserts_on_lookup", "hit_changes_score", "hit_is_stateless",
                    "hit_is_idempotent", "composes", "age_period", "age_score", "ages", "victim"):
            from ..errors import ConfigError

            raise ConfigError(f"{type(self).__name__}.{name} is a class-level rule: define a subclass with its "
                              "own name instead of setting it on an instance")
        super().__setattr__(name, value)

    def rule(self) -> dict:
        """What this policy does, as ``Cache.save`` records it and ``Cache.load`` checks it."""
        # "victim" only where it is not the lowest score: files saved before it existed still match
        return {"new_score": self._new_rule, "hit_score": self._hit_rule,
                "inserts_on_lookup": bool(self.inserts_on_lookup),
                **({"age_score": self._age_rule, "age_period": int(self.age_period)} if self.ages else {}),
                **({} if self.victim == "lowest" else {"victim": self.victim})}

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

    Hooks, all optional, none of which touches arrays:

    * ``admit_batch(hits, lookups)``: whether this batch's misses may enter at all;
    * ``sketch``: ``(threshold, width, depth, seed)`` of a count-min sketch of
      missed keys; a key enters once its estimated miss count reaches ``threshold``;
    * ``refuse_below_min``: refuse a key whose new score is below the lowest
      score of its full set instead of evicting;
    * ``compares_victim`` (issue 22, :class:`~embcache.policies.TinyLFU`): the sketch also counts
      every lookup's hit keys (after its misses), is halved (``>> 1``) each time the key occurrences
      looked up since the cache was made (``stats.lookups``) pass a multiple of ``sketch_sample`` times
      the cache's capacity (0: never; Caffeine halves after ten times its capacity in accesses), and a
      missed key enters a full set only if its
      estimate is greater than the estimate of the key it would evict (the lowest ``(score, way)``),
      both read at placement; a tie refuses it.  Needs a ``sketch``; decided on the host path.
      With a policy whose ``victim`` is ``"hand"``, the key compared is the one the hand's walk picks
      (the walk runs, its bits cleared and its hand moved, whether the key is then refused or not).
    * ``victim_by_frequency`` (with ``compares_victim``, :class:`~embcache.policies.TinyLFUEvict`): the
      sketch picks the victim too: in a full set the key with the lowest ``(estimate, score, way)``
      goes, and the missed key enters only if ``(estimate, new score)`` is greater than that key's
      ``(estimate, score)``, as if the newcomer were one of the set's keys and the least of them left.
      The policy's scores only break ties of frequency; a ``"hand"`` policy's walk does not run (the
      hand stays); S3-FIFO places keys by its own queues, as with ``compares_victim``.
    * ``victim_by_table_chance`` (with ``victim_by_frequency``, :class:`~embcache.policies.TinyLFUTables`):
      a key whose estimate is 1 also ranks by its table's learned return chance (``(key >> 32) & 63``
      the table; the cache counts, per table, the keys whose estimate reached 1 and 2 where the sketch
      counts them): the victim is the lowest ``(estimate, chance, score, way)``, the newcomer ranked alike.
    * ``sized(capacity)``: the admission a cache of ``capacity`` slots uses (a sketch sized to it);
      the default is the admission itself.

    Writes (``insert``, ``preload``) bypass admission.
    """

    name: ClassVar[str]
    refuse_below_min: ClassVar[bool] = False
    sketch: tuple[int, int, int, int] | None = None
    #: a hit rate t: a lookup whose hit rate is at least t places its admitted misses only when the
    #: cache's next operation begins (HPS's deferred insertion); None places them before it returns
    defer_at_hit_rate: float | None = None
    compares_victim: ClassVar[bool] = False
    #: with ``compares_victim``: the sketch's least frequent key of a full set is the victim
    victim_by_frequency: ClassVar[bool] = False
    #: with ``victim_by_frequency``: keys seen once rank by their table's learned return chance
    victim_by_table_chance: ClassVar[bool] = False
    #: looked-up key occurrences per cache slot between two halvings of a ``compares_victim`` sketch (0: never)
    sketch_sample: int = 0

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if "name" in own:  # as Policy: only a class that names itself registers
            _register(cls, "admission policy")
        elif ({"refuse_below_min", "sketch", "admit_batch", "compares_victim", "victim_by_frequency",
               "victim_by_table_chance"} & own.keys()
              and hasattr(cls, "name")):
            from ..errors import ConfigError

            raise ConfigError(f"{cls.__qualname__} changes the rule of {cls.name!r} but keeps its name; "
                              "set name = '...' in its class body")

    def admit_batch(self, hits: int, lookups: int) -> bool:
        """Whether a lookup with ``hits`` of ``lookups`` key occurrences may insert its misses."""
        return True

    def device_rule(self) -> tuple[str, float] | None:
        """``admit_batch`` as a rule a backend may decide without calling Python, or None.

        ``("always", 0.0)``: every batch admits; ``("below_hit_rate", t)``: a batch
        admits when it has key occurrences and ``hits < t * lookups`` (in double
        precision).  A class that overrides ``admit_batch`` and not this returns
        None: its lookups call ``admit_batch`` on the host, so they wait for the
        device and cannot be captured in a CUDA graph.
        """
        if type(self).admit_batch is Admission.admit_batch:
            return ("always", 0.0)
        return None

    def config(self) -> dict:
        """Constructor arguments, for ``Cache.save``."""
        return {}

    def sized(self, capacity: int) -> Admission:
        """The admission a cache of ``capacity`` slots uses: this one (a sketch sized to the cache overrides it)."""
        return self

    def victim_mode(self) -> int:
        """What placement compares (the backends' ``insert_and_evict`` argument): 0 nothing, 1 the key
        with its policy's victim (``compares_victim``), 2 the sketch picks the victim (``victim_by_frequency``),
        3 the sketch and the tables' return chances pick it (``victim_by_table_chance``)."""
        if self.compares_victim and self.victim_by_frequency:
            return 3 if self.victim_by_table_chance else 2
        return int(bool(self.compares_victim))

    def rule(self) -> dict:
        """The traits the cache acts on, as ``Cache.save`` records them and ``Cache.load`` checks them."""
        return {"refuse_below_min": bool(self.refuse_below_min),
                "sketch": None if self.sketch is None else [int(v) for v in self.sketch],
                "admit_batch": import_path(type(self).admit_batch),
                **({} if self.defer_at_hit_rate is None else {"defer_at_hit_rate": float(self.defer_at_hit_rate)}),
                **({"compares_victim": True, "sketch_sample": int(self.sketch_sample)} if self.compares_victim
                   else {}),
                **({"victim_by_frequency": True} if self.victim_mode() >= 2 else {}),
                **({"victim_by_table_chance": True} if self.victim_mode() == 3 else {})}

    __repr__ = Policy.__repr__
    __eq__ = Policy.__eq__
    __hash__ = Policy.__hash__
