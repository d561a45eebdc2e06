"""The embcache-trt config file: models, their tables, where each table lives, and cache settings.

Two spellings are read:

* the native one, written by ``embcache-trt surgery``::

    {"embcache_trt": 1,
     "models": [{"name": "dlrm", "backend": "auto", "devices": [0],
                 "tables": [{"name": "t0", "dim": 16, "rows": 1000, "dtype": "float32",
                             "store": "rocksdb:dlrm-tables/t0", "capacity": 0.2,
                             "policy": "lfu", "admission": "always", "ways": 32,
                             "default_value": 0.0}]}]}

* HPS's ``ps.json`` (``models[].model``, ``sparse_files``, ``embedding_table_names``,
  ``embedding_vecsize_per_table``, ``gpucacheper``, ``hit_rate_threshold``,
  ``default_value_for_each_table``, ``deployed_device_list``, ``volatile_db``, ``persistent_db``, ...),
  so HPS users bring theirs.  Each HPS table becomes a native one: ``gpucacheper`` is the capacity
  fraction, ``volatile_db`` and ``persistent_db`` its tiers (volatile first), ``sparse_files`` the
  HugeCTR folders to import from.

Relative paths (stores, sparse files) are relative to the config file's folder.  Unknown fields
and fields that contradict each other are :class:`embcache.errors.ConfigError` naming the field.

Names and where tables live
---------------------------
A ps.json (model, table) pair gets its own RocksDB folder ``persistent_db.path/<model>.<table>`` and
Redis namespace ``<model>.<table>``, with both names escaped by :func:`store_name` (every character
outside ``A-Z a-z 0-9 _ -`` -- the ``.`` included -- becomes ``%XX`` of its UTF-8 bytes), so distinct
pairs never share a folder or a namespace (``a.b``/``c`` is ``a%2Eb.c``, ``a``/``b.c`` is ``a.b%2Ec``).
A model or table name that is empty, ``.``, ``..``, absolute, or holds a path separator or a NUL is a
ConfigError: it would name a place outside ``persistent_db.path`` (or one that looks like it).
Case-insensitive file systems fold ``A`` and ``a`` together: keep names distinct in more than case there.

HPS ps.json fields
------------------
Mapped (change what embcache does):

* top level: ``models``, ``volatile_db``, ``persistent_db``;
* ``volatile_db``: ``type`` (hash_map kinds -> a ``memory`` tier, ``redis_cluster`` -> a Redis
  Cluster store, ``disabled``), ``address``, and for ``redis_cluster``: ``user_name`` -> ``username``,
  ``password``, ``enable_tls`` -> ``tls``, ``tls_ca_certificate`` -> ``tls_ca_certs``,
  ``tls_client_certificate`` -> ``tls_certfile``, ``tls_client_key`` -> ``tls_keyfile``
  (RedisStore's keyword arguments; see :func:`redis_options`); ``cache_missed_embeddings`` ->
  the tiers' ``promote`` (rows found in the persistent_db are copied into the volatile one; HPS's
  default, false, copies nothing);
* ``persistent_db``: ``type`` (``rocks_db`` or ``disabled``), ``path``;
* per model: ``model``, ``sparse_files``, ``embedding_table_names``, ``embedding_vecsize_per_table``,
  ``default_value_for_each_table``, ``gpucacheper``, ``gpucache`` (true only), ``embedding_cache_type`` /
  ``use_static_table``;
* ``deployed_device_list`` -> the model's ``devices``: each listed GPU gets its own cache of each
  table (a replica, all in front of the table's one store), and a lookup is served by the cache of
  the caller's device (the keys' device, else CuPy's current one); a lookup from a GPU not in the
  list is a ConfigError naming the field.  (On the CPU backend there is one cache and no device.)
* ``hit_rate_threshold`` -> when misses are inserted, as HPS does it: a batch whose hit rate is at or
  above the threshold returns first and its misses are placed when the cache's next operation begins;
  below it they are placed before it returns.  The model's tables get the admission
  ``embcache.policies.HitRateDeferred(threshold)``; a table that names another admission than
  ``always`` beside a threshold is a ConfigError (both would say which misses enter).

Refused (a ConfigError naming the field, because embcache cannot do what it asks):

* ``update_source`` other than absent or ``{"type": "null"}`` (embcache reads updates with
  ``embcache serve-updates``, not HPS's Kafka source);
* ``volatile_db.tls_server_name_identification`` when TLS is on (RedisStore checks the certificate
  against the address's host; it cannot send another name);
* ``volatile_db.user_name`` / ``password`` / ``enable_tls`` / ``tls_*`` set to a non-default value on a
  volatile_db that is not ``redis_cluster`` (there is no server to authenticate with);
* ``gpucache: false``, ``embedding_cache_type`` other than dynamic/static, contradictions;

Ignored, with the reason (HPS's own tuning knobs; they change no row embcache returns):

* ``supportlonglong``, ``i64_input_key``: EmbCacheLookup takes int32 and int64 keys alike;
* ``fuse_embedding_table``, ``use_multi_worker``, ``thread_pool_size``, ``num_of_worker_buffer_in_pool``,
  ``num_of_refresher_buffer_in_pool``, ``use_context_stream``, ``use_hctr_cache_implementation``,
  ``init_ec``, ``max_batch_size``, ``maxnum_des_feature_per_sample``,
  ``maxnum_catfeature_query_per_table_per_sample``, ``label_dim``, ``slot_num``: HPS's worker pools
  and buffer sizes; embcache sizes its batches from the keys it is given;
* ``cache_refresh_percentage_per_iteration``, ``refresh_delay``, ``refresh_interval``,
  ``volatile_db.refresh_time_after_fetch``: HPS's cache refresh; embcache's caches are refreshed by
  updates (``embcache serve-updates``);
* ``dense_file``, ``network_file``: the dense model is TensorRT's, not embcache's;
* ``volatile_db``: ``num_partitions``, ``num_node_connections``, ``allocation_rate``,
  ``shared_memory_size``, ``shared_memory_name``, ``initial_cache_size``, ``max_batch_size``,
  ``max_get_batch_size``, ``max_set_batch_size``, ``max_num_pending_requests``: memory layout and
  request batching; ``overflow_margin``, ``overflow_policy``, ``overflow_resolution_target``:
  embcache's stores never evict (a row stays until overwritten), so they never overflow;
  ``tls_*`` while ``enable_tls`` is false: TLS is off; ``update_filters``: there is no HPS update source;
* ``persistent_db``: ``num_threads``, ``max_get_batch_size``, ``max_set_batch_size``: RocksDB tuning;
  ``read_only``: lookups never write to the persistent store (``embcache-trt import`` and surgery do,
  on purpose); ``update_filters``: as above.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from embcache.errors import ConfigError

__all__ = ["TableConfig", "ModelConfig", "Config", "load_config", "parse_config", "store_name",
           "redis_options"]

FORMAT_VERSION = 1
#: store specs of rows in this process's memory (a HostStore; pinned: the GPU reads it in place)
MEMORY_STORES = ("memory", "memory:pinned")
_DTYPES = ("float32", "float16")


def _check_policies(t: "TableConfig", where: str) -> None:
    """The table's policy and admission names resolve through embcache's registry (user policies included).

    A name is a registered one (``embcache.policies.policy_names()``) or an import path ``module:Class``.
    """
    from embcache import policies

    for field_name, resolve in (("policy", policies.policy_class), ("admission", policies.admission_class)):
        try:
            resolve(getattr(t, field_name))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {field_name}: {exc}") from None


@dataclass(frozen=True)
class TableConfig:
    """One embedding table.

    ``store`` names where the rows live (``rocksdb:PATH``, ``redis://...``, ``redis-cluster://h:p,...``,
    ``memory``, or ``memory:pinned``: pinned host memory the GPU reads in place, so that a lookup with
    misses never waits for the host and can run inside a CUDA graph); several stores are tiers,
    fastest first.  ``capacity`` is the GPU cache size: a fraction of ``rows`` (a float <= 1) or a row count.  ``source`` is a HugeCTR sparse-model folder
    to import from (HPS's ``sparse_files``), if any.  ``keys_are_rows`` marks tables whose keys are
    row numbers, as a Gather's indices are: negative ones count from the end, others outside the
    table get the default value (and are counted: :func:`trt_plugin.tables.out_of_range`).
    ``redis`` holds RedisStore keyword arguments for the table's Redis stores (``username``,
    ``password``, ``tls``, ``tls_ca_certs``, ``tls_certfile``, ``tls_keyfile``); ``promote`` copies rows
    read from a slower tier into the faster ones (HPS's ``cache_missed_embeddings``).
    """

    name: str
    dim: int
    store: tuple[str, ...]
    rows: int | None = None
    dtype: str = "float32"
    capacity: float | int = 0.2
    policy: str = "lfu"
    admission: str = "always"
    ways: int = 32
    default_value: float = 0.0
    source: str | None = None
    keys_are_rows: bool = False  # keys are row numbers 0..rows-1 (tables cut out of a graph by surgery)
    redis: dict | None = field(default=None, hash=False)
    promote: bool = True

    def capacity_rows(self) -> int:
        """The cache's capacity in rows."""
        if isinstance(self.capacity, float):
            if self.rows is None:
                raise ConfigError(f"table {self.name!r}: capacity {self.capacity} is a fraction, so rows is needed")
            return max(1, int(self.capacity * self.rows))
        return int(self.capacity)


@dataclass(frozen=True)
class ModelConfig:
    """A model's tables and where its caches run.

    ``backend``: auto/cpu/gpu.  ``devices``: GPU ordinals (HPS's ``deployed_device_list``), one cache
    of each table per device, each serving the lookups made on its device.  ``hit_rate_threshold``:
    HPS's field, None or a hit rate in [0, 1]: the tables' admission becomes ``HitRateDeferred`` of it
    (:meth:`admission_of`).  ``graphs``: the GPU caches are ``embcache.Cache(graphs=True)``: a table whose
    lookups are stream-ordered (a ``memory:pinned`` or shared-memory store, an admission the device
    decides) replays each repeated lookup (same length, key dtype and output buffer, as an engine's are)
    from a CUDA graph of itself, the same rows, contents and stats for about half the host time per
    call; the first 16 such shapes get graphs, others run eagerly.  False turns it off.
    ``ignored``: HPS fields read and checked that change nothing here.
    """

    name: str
    tables: tuple[TableConfig, ...]
    backend: str = "auto"
    devices: tuple[int, ...] = (0,)
    hit_rate_threshold: float | None = None
    ignored: tuple[str, ...] = ()  # HPS fields read and checked that change nothing here
    graphs: bool = True

    def __post_init__(self) -> None:
        _flag(self.graphs, f"model {self.name!r}: graphs")
        if self.hit_rate_threshold is not None:
            for t in self.tables:
                if t.admission != "always":
                    raise ConfigError(f"model {self.name!r}: hit_rate_threshold {self.hit_rate_threshold} and table "
                                      f"{t.name!r}'s admission {t.admission!r} both say which misses enter; keep one")

    def admission_of(self, table: TableConfig) -> Any:
        """The admission a cache of ``table`` gets: its own, or ``HitRateDeferred(hit_rate_threshold)``."""
        if self.hit_rate_threshold is None:
            return table.admission
        from embcache.policies import HitRateDeferred

        return HitRateDeferred(self.hit_rate_threshold)


@dataclass(frozen=True)
class Config:
    """A whole config; ``base`` is the folder relative paths are resolved against."""

    models: tuple[ModelConfig, ...]
    base: Path = field(default_factory=Path.cwd)

    def table(self, name: str, model: str | None = None) -> tuple[ModelConfig, TableConfig]:
        """The model and table called ``name`` (in ``model`` if given)."""
        found = [(m, t) for m in self.models if model in (None, "", m.name) for t in m.tables if t.name == name]
        if not found:
            known = [f"{m.name}/{t.name}" for m in self.models for t in m.tables]
            raise ConfigError(f"no table {name!r}{f' in model {model!r}' if model else ''}; the config has {known}")
        if len(found) > 1:
            raise ConfigError(f"table {name!r} is in several models ({[m.name for m, _ in found]}); name the model")
        return found[0]

    def resolve(self, path: str) -> str:
        """``path`` made absolute against the config's folder (store specs keep their scheme)."""
        if path in MEMORY_STORES or path.startswith(("redis://", "rediss://", "redis-cluster://")):
            return path
        scheme = "rocksdb:" if path.startswith("rocksdb:") else ""
        bare = path[len(scheme):]
        return scheme + (bare if os.path.isabs(bare) else os.path.normpath(self.base / bare))

    def to_dict(self, base: str | os.PathLike | None = None) -> dict:
        """The native spelling (what ``save`` writes); relative paths are rewritten relative to
        ``base`` (default: this config's own folder, so they stay as they are)."""
        models = []
        defaults = {f.name: f.default for f in fields(TableConfig)}
        for m in self.models:
            tables = []
            for t in m.tables:
                d = asdict(t)
                store = [self._rebase(s, base) for s in t.store]
                d["store"] = store if len(store) > 1 else store[0]
                if t.source is not None:
                    d["source"] = self._rebase(t.source, base)
                tables.append({k: v for k, v in d.items() if k in ("name", "dim", "store") or v != defaults[k]})
            entry = {"name": m.name, "backend": m.backend, "devices": list(m.devices), "tables": tables}
            if m.hit_rate_threshold is not None:
                entry["hit_rate_threshold"] = m.hit_rate_threshold
            if not m.graphs:
                entry["graphs"] = False
            models.append(entry)
        return {"embcache_trt": FORMAT_VERSION, "models": models}

    def _rebase(self, spec: str, base: str | os.PathLike | None) -> str:
        if base is None or Path(base).resolve() == self.base:
            return spec
        resolved = self.resolve(spec)
        if resolved == spec and (spec in MEMORY_STORES or "://" in spec or os.path.isabs(spec.removeprefix("rocksdb:"))):
            return spec  # absolute paths and servers stay as written
        scheme = "rocksdb:" if resolved.startswith("rocksdb:") else ""
        return scheme + os.path.relpath(resolved[len(scheme):], Path(base).resolve())

    def save(self, path: str | os.PathLike) -> Path:
        """Write the native spelling to ``path`` atomically (a temporary file in the same folder,
        then a rename), relative paths rewritten against ``path``'s folder.  A file that holds a
        Redis password is made readable by its owner only."""
        path = Path(path)
        text = json.dumps(self.to_dict(path.resolve().parent), indent=2) + "\n"
        secret = any((t.redis or {}).get("password") for m in self.models for t in m.tables)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.resolve().parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600 if secret else 0o644)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    def with_table(self, model: str, table: TableConfig) -> Config:
        """A copy with ``table`` added to (or replacing its namesake in) ``model``, made if absent."""
        models = list(self.models)
        for i, m in enumerate(models):
            if m.name == model:
                kept = tuple(t for t in m.tables if t.name != table.name)
                models[i] = replace(m, tables=kept + (table,))
                break
        else:
            models.append(ModelConfig(model, (table,)))
        return replace(self, models=tuple(models))


def load_config(path: str | os.PathLike) -> Config:
    """Read a native or HPS config file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from None
    return parse_config(data, path.resolve().parent, str(path))


def parse_config(data: dict, base: str | os.PathLike = ".", where: str = "config") -> Config:
    """A :class:`Config` from the parsed JSON of either spelling."""
    if not isinstance(data, dict) or not isinstance(data.get("models"), list) or not data["models"]:
        raise ConfigError(f"{where}: expected an object with a non-empty 'models' list")
    hps = any(isinstance(m, dict) and "model" in m for m in data["models"])
    models = _parse_hps(data, where) if hps else _parse_native(data, where)
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: model names repeat: {names}")
    for m in models:
        tnames = [t.name for t in m.tables]
        if len(set(tnames)) != len(tnames):
            raise ConfigError(f"{where}: model {m.name!r} names a table twice: {tnames}")
    config = Config(tuple(models), Path(base).resolve())
    return replace(config, models=tuple(replace(m, tables=tuple(_rows_from_source(config, t) for t in m.tables))
                                        for m in config.models))


def _rows_from_source(config: Config, t: TableConfig) -> TableConfig:
    """An HPS table's row count, from its HugeCTR sparse file's key file (8 bytes a key), if present."""
    if t.rows is not None or t.source is None:
        return t
    keys = Path(config.resolve(t.source)) / "key"
    return replace(t, rows=keys.stat().st_size // 8) if keys.exists() and keys.stat().st_size >= 8 else t


def _unknown(d: dict, known: set[str], where: str) -> None:
    extra = sorted(set(d) - known)
    if extra:
        raise ConfigError(f"{where}: unknown field(s) {extra}; known: {sorted(known)}")


def _positive_int(value, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where}: {name} must be a positive integer, got {value!r}")
    return value


def _table(d: dict, where: str) -> TableConfig:
    known = {f for f in TableConfig.__dataclass_fields__}
    _unknown(d, known, where)
    for need in ("name", "dim", "store"):
        if need not in d:
            raise ConfigError(f"{where}: missing field {need!r}")
    store = d["store"]
    store = (store,) if isinstance(store, str) else tuple(store)
    if not store or not all(isinstance(s, str) and s for s in store):
        raise ConfigError(f"{where}: store must be a store spec or a list of them, got {d['store']!r}")
    t = TableConfig(**{**d, "store": store})
    _positive_int(t.dim, "dim", where)
    if t.rows is not None:
        _positive_int(t.rows, "rows", where)
    if t.dtype not in _DTYPES:
        raise ConfigError(f"{where}: dtype must be one of {_DTYPES}, got {t.dtype!r}")
    _check_policies(t, where)
    cap = t.capacity
    if isinstance(cap, bool) or not isinstance(cap, (int, float)) or cap <= 0 or (isinstance(cap, float) and cap > 1):
        raise ConfigError(f"{where}: capacity must be a fraction in (0, 1] or a positive row count, got {cap!r}")
    _positive_int(t.ways, "ways", where)
    if not isinstance(t.keys_are_rows, bool):
        raise ConfigError(f"{where}: keys_are_rows must be true or false, got {t.keys_are_rows!r}")
    if not isinstance(t.promote, bool):
        raise ConfigError(f"{where}: promote must be true or false, got {t.promote!r}")
    if t.redis is not None:
        if not isinstance(t.redis, dict):
            raise ConfigError(f"{where}: redis must be an object of RedisStore options, got {t.redis!r}")
        _unknown(t.redis, set(_REDIS_KINDS), f"{where}.redis")
        for k, v in t.redis.items():
            if v is not None and not isinstance(v, _REDIS_KINDS[k]):
                raise ConfigError(f"{where}.redis: {k} must be a {_REDIS_KINDS[k].__name__}, got {v!r}")
    return t


_REDIS_KINDS = {"username": str, "password": str, "tls": bool, "tls_ca_certs": str, "tls_certfile": str,
                "tls_keyfile": str}
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _escape(name: str) -> str:
    return "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
                   for c in name)


def store_name(model: str, table: str) -> str:
    """The folder and namespace name of ``model``'s ``table``: ``<model>.<table>``, each part with every
    character outside ``A-Z a-z 0-9 _ -`` written as ``%XX`` (its UTF-8 bytes), so the name is safe
    as one path component and distinct pairs never get the same name (the ``.`` between the parts
    cannot occur inside them)."""
    return f"{_escape(model)}.{_escape(table)}"


def _check_name(name, what: str, where: str) -> str:
    """A model or table name that stays inside the folder it is joined to."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: {what} must be a non-empty string, got {name!r}")
    if name in (".", "..") or any(c in name for c in "/\\\0") or os.path.isabs(name):
        raise ConfigError(f"{where}: {what} {name!r} would name a place outside persistent_db.path "
                          "(it is '.', '..', absolute, or holds '/', '\\' or NUL); rename it")
    return name


def redis_options(volatile_db: dict, where: str = "volatile_db") -> dict:
    """RedisStore keyword arguments from an HPS ``volatile_db`` of type ``redis_cluster``.

    ``user_name`` -> ``username`` (HPS's default ``"default"`` is Redis's default user, so it maps to
    none), ``password`` (``""``: none), ``enable_tls`` -> ``tls``, and with TLS on,
    ``tls_ca_certificate`` -> ``tls_ca_certs``, ``tls_client_certificate`` -> ``tls_certfile``,
    ``tls_client_key`` -> ``tls_keyfile``.  Options left at their default are left out.

    Raises
    ------
    ConfigError if a field has the wrong type, or TLS is on with ``tls_server_name_identification``.
    """
    def text(key):
        value = volatile_db.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
        return value or None

    tls = volatile_db.get("enable_tls", False)
    if not isinstance(tls, bool):
        raise ConfigError(f"{where}: enable_tls must be true or false, got {tls!r}")
    options: dict = {}
    user = text("user_name")
    if user not in (None, "default"):
        options["username"] = user
    if text("password"):
        options["password"] = text("password")
    if tls:
        options["tls"] = True
        for hps, ours in (("tls_ca_certificate", "tls_ca_certs"), ("tls_client_certificate", "tls_certfile"),
                          ("tls_client_key", "tls_keyfile")):
            if text(hps):
                options[ours] = text(hps)
        if text("tls_server_name_identification"):
            raise ConfigError(f"{where}: tls_server_name_identification is not supported: embcache checks the "
                              "server's certificate against the address's host name; remove the field")
    return options


def _devices(value, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and v >= 0 for v in value):
        raise ConfigError(f"{where}: expected a non-empty list of GPU ordinals, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: a device is listed twice: {value}")
    return tuple(value)


def _parse_native(data: dict, where: str) -> list[ModelConfig]:
    _unknown(data, {"embcache_trt", "models"}, where)
    if data.get("embcache_trt", FORMAT_VERSION) != FORMAT_VERSION:
        raise ConfigError(f"{where}: format version {data['embcache_trt']!r}; this embcache-trt reads {FORMAT_VERSION}")
    models = []
    for i, m in enumerate(data["models"]):
        w = f"{where}: models[{i}]"
        if not isinstance(m, dict):
            raise ConfigError(f"{w}: expected an object")
        _unknown(m, {"name", "tables", "backend", "devices", "hit_rate_threshold", "graphs"}, w)
        if not isinstance(m.get("name"), str) or not isinstance(m.get("tables"), list):
            raise ConfigError(f"{w}: needs a 'name' and a 'tables' list")
        if m.get("backend", "auto") not in ("auto", "cpu", "gpu"):
            raise ConfigError(f"{w}: backend must be auto, cpu or gpu, got {m['backend']!r}")
        tables = tuple(_table(t, f"{w}.tables[{j}]") for j, t in enumerate(m["tables"]))
        models.append(ModelConfig(m["name"], tables, m.get("backend", "auto"),
                                  _devices(m.get("devices", [0]), f"{w}.devices"),
                                  _threshold(m.get("hit_rate_threshold"), w),
                                  graphs=_flag(m.get("graphs", True), f"{w}.graphs")))
    return models


def _flag(value, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def _threshold(value, where: str) -> float | None:
    """``hit_rate_threshold``: absent, or a hit rate in [0, 1] (HPS's deferred insertion)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1):
        raise ConfigError(f"{where}: hit_rate_threshold must be a hit rate in [0, 1], got {value!r}")
    return None if value is None else float(value)


# HPS ps.json fields we read and check but that change nothing in embcache (HPS tuning knobs
# for its own thread pools, refresh buffers and dense model).
_HPS_MODEL_NOOP = {"dense_file", "network_file", "num_of_worker_buffer_in_pool", "num_of_refresher_buffer_in_pool",
                   "max_batch_size", "cache_refresh_percentage_per_iteration", "maxnum_des_feature_per_sample",
                   "maxnum_catfeature_query_per_table_per_sample", "label_dim", "slot_num", "i64_input_key",
                   "use_context_stream", "use_hctr_cache_implementation", "init_ec", "thread_pool_size",
                   "refresh_delay", "refresh_interval"}
_HPS_MODEL = _HPS_MODEL_NOOP | {"model", "sparse_files", "embedding_table_names", "embedding_vecsize_per_table",
                                "default_value_for_each_table", "deployed_device_list", "hit_rate_threshold",
                                "gpucacheper", "gpucache", "embedding_cache_type", "use_static_table"}
_HPS_TOP = {"supportlonglong", "models", "volatile_db", "persistent_db", "update_source", "fuse_embedding_table",
            "use_multi_worker"}
_HPS_VOLATILE = {"type", "address", "user_name", "password", "num_partitions", "num_node_connections",
                 "allocation_rate", "shared_memory_size", "shared_memory_name", "initial_cache_size",
                 "overflow_margin", "overflow_policy", "overflow_resolution_target", "max_batch_size",
                 "max_get_batch_size", "max_set_batch_size", "refresh_time_after_fetch", "cache_missed_embeddings",
                 "update_filters", "max_num_pending_requests", "enable_tls", "tls_ca_certificate",
                 "tls_client_certificate", "tls_client_key", "tls_server_name_identification"}
_HPS_PERSISTENT = {"type", "path", "num_threads", "read_only", "max_get_batch_size", "max_set_batch_size",
                   "update_filters"}
_HPS_AUTH_DEFAULTS = {"user_name": ("default", ""), "password": ("",), "enable_tls": (False,)}


def _hps_redis(data: dict, where: str) -> dict | None:
    """RedisStore options of the volatile_db (redis_cluster), or None."""
    vol = data.get("volatile_db")
    if not isinstance(vol, dict):
        return None
    if vol.get("type", "hash_map") != "redis_cluster":
        for key in sorted(set(vol) & (set(_HPS_AUTH_DEFAULTS) | {"tls_ca_certificate", "tls_client_certificate",
                                                                 "tls_client_key", "tls_server_name_identification"})):
            if key in _HPS_AUTH_DEFAULTS and vol[key] in _HPS_AUTH_DEFAULTS[key]:
                continue
            if key.startswith("tls_") and not vol.get("enable_tls"):
                continue
            raise ConfigError(f"{where}: volatile_db.{key} is set but volatile_db type is "
                              f"{vol.get('type', 'hash_map')!r}, which has no server to log in to; remove it "
                              "or use type redis_cluster")
        return None
    return redis_options(vol, f"{where}: volatile_db") or None


def _hps_promote(data: dict, where: str) -> bool:
    vol = data.get("volatile_db") or {}
    value = vol.get("cache_missed_embeddings", False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: volatile_db.cache_missed_embeddings must be true or false, got {value!r}")
    return value


def _hps_stores(data: dict, model: str, table: str, where: str) -> tuple[str, ...]:
    stores = []
    vol = data.get("volatile_db")
    if vol is not None:
        _unknown(vol, _HPS_VOLATILE, f"{where}: volatile_db")
        kind = vol.get("type", "hash_map")
        if kind in ("hash_map", "parallel_hash_map", "multi_process_hash_map"):
            stores.append("memory")
        elif kind == "redis_cluster":
            if not vol.get("address"):
                raise ConfigError(f"{where}: volatile_db of type redis_cluster needs an 'address'")
            stores.append(f"redis-cluster://{vol['address']}#{store_name(model, table)}")
        elif kind != "disabled":
            raise ConfigError(f"{where}: volatile_db type {kind!r} is not one of hash_map, parallel_hash_map, "
                              "multi_process_hash_map, redis_cluster, disabled")
    per = data.get("persistent_db")
    if per is not None:
        _unknown(per, _HPS_PERSISTENT, f"{where}: persistent_db")
        kind = per.get("type", "disabled")
        if kind == "rocks_db":
            if not per.get("path"):
                raise ConfigError(f"{where}: persistent_db of type rocks_db needs a 'path'")
            stores.append(f"rocksdb:{os.path.join(per['path'], store_name(model, table))}")
        elif kind != "disabled":
            raise ConfigError(f"{where}: persistent_db type {kind!r} is not rocks_db or disabled")
    if not stores or stores == ["memory"]:
        raise ConfigError(f"{where}: tables need a store that outlives the process: set persistent_db "
                          "(rocks_db) or a redis_cluster volatile_db")
    return tuple(stores)


def _parse_hps(data: dict, where: str) -> list[ModelConfig]:
    _unknown(data, _HPS_TOP, where)
    source = data.get("update_source")
    if source is not None and not (isinstance(source, dict) and source.get("type", "null") == "null"):
        raise ConfigError(f"{where}: update_source is not supported (embcache applies updates with "
                          "'embcache serve-updates', not HPS's Kafka source); remove it or set its type to null")
    redis = _hps_redis(data, where)
    promote = _hps_promote(data, where)
    models = []
    for i, m in enumerate(data["models"]):
        w = f"{where}: models[{i}]"
        if not isinstance(m, dict) or "name" in m or "tables" in m:
            raise ConfigError(f"{w}: mixes HPS fields ('model') with native ones ('name', 'tables'); use one spelling")
        _unknown(m, _HPS_MODEL, w)
        if not isinstance(m.get("model"), str) or not m["model"]:
            raise ConfigError(f"{w}: 'model' must name the model")
        _check_name(m["model"], "model name", w)
        names = m.get("embedding_table_names")
        dims = m.get("embedding_vecsize_per_table")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{w}: embedding_table_names must be a non-empty list of names")
        n = len(names)

        def per_table(key, default, w=w, m=m, n=n):
            value = m.get(key, default)
            if not isinstance(value, list) or len(value) != n:
                raise ConfigError(f"{w}: {key} has {len(value) if isinstance(value, list) else value!r} "
                                  f"entries but embedding_table_names has {n}")
            return value

        dims = per_table("embedding_vecsize_per_table", None)
        defaults = per_table("default_value_for_each_table", [0.0] * n)
        sparse = per_table("sparse_files", [None] * n)
        if "maxnum_catfeature_query_per_table_per_sample" in m:
            per_table("maxnum_catfeature_query_per_table_per_sample", None)
        if m.get("gpucache", True) is not True:
            raise ConfigError(f"{w}: gpucache false is not supported: embcache always caches on the GPU")
        frac = m.get("gpucacheper", 0.5)
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac <= 1:
            raise ConfigError(f"{w}: gpucacheper must be in (0, 1], got {frac!r}")
        kind = m.get("embedding_cache_type", "dynamic")
        if kind not in ("dynamic", "static"):
            raise ConfigError(f"{w}: embedding_cache_type {kind!r} is not supported (dynamic or static)")
        static = kind == "static" or m.get("use_static_table", False) is True
        if kind == "dynamic" and m.get("use_static_table") is True and "embedding_cache_type" in m:
            raise ConfigError(f"{w}: embedding_cache_type dynamic contradicts use_static_table true")
        tables = []
        for j, name in enumerate(names):
            _check_name(name, f"embedding_table_names[{j}]", w)
            tw = f"{w}.{name}"
            _positive_int(dims[j], f"embedding_vecsize_per_table[{j}]", w)
            if isinstance(defaults[j], bool) or not isinstance(defaults[j], (int, float)):
                raise ConfigError(f"{w}: default_value_for_each_table[{j}] must be a number, got {defaults[j]!r}")
            tables.append(TableConfig(name=name, dim=dims[j], store=_hps_stores(data, m["model"], name, tw),
                                      capacity=float(frac), policy="static" if static else "lru",
                                      default_value=float(defaults[j]), source=sparse[j], redis=redis,
                                      promote=promote))
        ignored = tuple(sorted(set(m) & _HPS_MODEL_NOOP))
        models.append(ModelConfig(m["model"], tuple(tables), "auto",
                                  _devices(m.get("deployed_device_list", [0]), f"{w}.deployed_device_list"),
                                  _threshold(m.get("hit_rate_threshold"), w), ignored))
    return models
