"""Redis store: the state several replicas share (SPEC section 13), same contract as SQLite.

Layout, every key under ``storage.redis.key_prefix`` (built by :class:`RedisKeys` only):

* ``tasks`` hash: task field (``"{sdk_app_id}:{task_id}"``) -> identity, status and upload
  state (JSON);
* ``health`` hash: task field -> health (JSON), apart so a health flush never rewrites a status;
* ``ended`` sorted set: task field -> ``ended_at``, for tasks in a final status only (retention);
* ``seq`` counter, ``transitions`` hash (seq -> JSON) and ``transitions:seq`` sorted set (seq by
  seq, the fleet's history newest first), ``task-transitions:{field}`` list (one task's seqs);
* ``alerts`` hash (fingerprint -> JSON), ``alerts:task`` hash (fingerprint -> task field) and
  ``task-alerts:{field}`` set (a task's fingerprints, so deleting a task deletes them);
* ``meta`` hash.

Values are JSON made in Python (exact floats, lone surrogates escaped); Lua never parses them,
it only moves them and keeps the indexes, which Python computes. Every change that touches
more than one key is one Lua script, which Redis runs atomically: a transition and its task's
new state are written together or not at all. The keys a script touches beyond ``KEYS`` are
derived from the prefix, so this layout is for a standalone Redis (or Valkey), not Redis Cluster.

Calls are serialised through one lock, so they reach Redis in the order they were made, as with
the SQLite store; arguments are encoded when the call is made (large batches in chunks that
yield to the event loop). No automatic retries: a write whose answer was lost must not be
applied twice (a transition would be recorded twice); the caller sees ``StoreError`` and the
observation is retried by the daemon.

Durability is Redis's: an acknowledged write survives a crash of the monitor, and survives a
crash of Redis as far as its persistence allows (AOF ``appendfsync everysec`` may lose the last
second or two; README, "High availability").
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from monitor.models import Task, TaskKey, Transition
from monitor.secrets import MASK
from monitor.store.base import AlertRecord, StoreError, StoreHealth
from monitor.store.codec import (
    NO_HEALTH,
    TaskDecoder,
    alert_of,
    alert_values,
    check_transition,
    decoded,
    dumps,
    health_values,
    spec_values,
    transition_of,
    transition_values,
)

__all__ = ["REDIS_SCHEMA_VERSION", "RedisKeys", "RedisStore", "redis_location"]

T = TypeVar("T")

# Version of the key layout above, kept in ``meta`` as ``schema_version``.
REDIS_SCHEMA_VERSION: Final = 1

_CHUNK: Final = 500  # records encoded or decoded between two yields to the event loop
_CONNECT_TIMEOUT: Final = 5.0
# Every call's answer is awaited this long at most. The limit is kept here, around the call,
# rather than as redis-py's socket_timeout: on Python 3.11 that one goes through
# asyncio.wait_for, which can swallow a cancellation that lands as the write completes, and
# a daemon that is stopping would then wait forever on its pollers.
COMMAND_TIMEOUT: Final = 10.0


def _text(value: str) -> bytes:
    # Task ids and fingerprints go into key names and fields as UTF-8; surrogatepass so that
    # any str round-trips.
    return value.encode("utf-8", "surrogatepass")


def _untext(value: bytes) -> str:
    return value.decode("utf-8", "surrogatepass")


def task_field(key: TaskKey) -> bytes:
    """A task's name in hashes and key names: ``{sdk_app_id}:{task_id}``."""
    return _text(f"{key.sdk_app_id}:{key.task_id}")


def task_key_of(field: bytes) -> TaskKey:
    app, task_id = _untext(field).split(":", 1)
    return TaskKey(int(app), task_id)


class RedisKeys:
    """Every key name of one deployment, under its prefix (the one place that spells them)."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = _text(prefix)

    def _k(self, name: str) -> bytes:
        return self.prefix + name.encode()

    @property
    def tasks(self) -> bytes:
        return self._k("tasks")

    @property
    def health(self) -> bytes:
        return self._k("health")

    @property
    def ended(self) -> bytes:
        return self._k("ended")

    @property
    def seq(self) -> bytes:
        return self._k("seq")

    @property
    def transitions(self) -> bytes:
        return self._k("transitions")

    @property
    def transition_seqs(self) -> bytes:
        return self._k("transitions:seq")

    def task_transitions(self, key: TaskKey) -> bytes:
        # Spelt again in _LUA_DROP_TASK ("task-transitions:"), which derives it from the prefix.
        return self._k("task-transitions:") + task_field(key)

    @property
    def alerts(self) -> bytes:
        return self._k("alerts")

    @property
    def alert_tasks(self) -> bytes:
        return self._k("alerts:task")

    def task_alerts(self, key: TaskKey) -> bytes:
        # Spelt again in _LUA_DROP_TASK and _LUA_SAVE_ALERTS ("task-alerts:").
        return self._k("task-alerts:") + task_field(key)

    @property
    def meta(self) -> bytes:
        return self._k("meta")

    @property
    def members(self) -> bytes:
        """Live replicas: a sorted set of replica ids by their last heartbeat (Redis's clock)."""
        return self._k("members")

    @property
    def changes(self) -> bytes:
        """The pub/sub channel of the change feed between replicas."""
        return self._k("changes")

    def limiter(self, bucket: str) -> bytes:
        """The shared limiter state of one (account, access host) budget."""
        return self._k("ratelimit:") + _text(bucket)

    def limiter_sends(self, bucket: str) -> bytes:
        return self._k("ratelimit:") + _text(bucket) + b":sends"


# --- scripts -----------------------------------------------------------------------------------

# Writes one task: identity/status, health, and its place in the retention index.
# ARGV: prefix, then (field, spec, health, ended_at or "") per task. KEYS: tasks, health, ended.
_LUA_SAVE_TASKS: Final = """
for i = 2, #ARGV, 4 do
    local field = ARGV[i]
    redis.call('HSET', KEYS[1], field, ARGV[i + 1])
    redis.call('HSET', KEYS[2], field, ARGV[i + 2])
    if ARGV[i + 3] == '' then
        redis.call('ZREM', KEYS[3], field)
    else
        redis.call('ZADD', KEYS[3], ARGV[i + 3], field)
    end
end
return #ARGV
"""

# ARGV: (field, health) pairs. KEYS: tasks, health. Unknown tasks are skipped, never created.
_LUA_SAVE_HEALTH: Final = """
for i = 1, #ARGV, 2 do
    if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
        redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    end
end
return 0
"""

# The task's new state and its transition, in one step; returns the new seq.
# KEYS: tasks, health, ended, seq, transitions, transitions:seq, task-transitions:{field}.
# ARGV: field, spec, health, ended_at or "", transition.
_LUA_RECORD_TRANSITION: Final = """
-- Redis does not roll a script back: refuse before the first write whatever a later command
-- would fail on (a key of the wrong type), so the step is all or nothing.
local expected = {'hash', 'hash', 'zset', 'string', 'hash', 'zset', 'list'}
for i, kind in ipairs(expected) do
    local actual = redis.call('TYPE', KEYS[i])['ok']
    if actual ~= 'none' and actual ~= kind then
        return redis.error_reply('key ' .. KEYS[i] .. ' holds a ' .. actual .. ', not a ' .. kind)
    end
end
local seq_value = redis.call('GET', KEYS[4])
if seq_value and not tonumber(seq_value) then
    return redis.error_reply('key ' .. KEYS[4] .. ' does not hold a sequence number')
end
local field = ARGV[1]
local seq = redis.call('INCR', KEYS[4])
-- Never hand a seq out twice, even if the counter was lost while the history was not.
local top = redis.call('ZREVRANGE', KEYS[6], 0, 0)[1]
if top and seq <= tonumber(top) then
    seq = tonumber(top) + 1
    redis.call('SET', KEYS[4], seq)
end
redis.call('HSET', KEYS[1], field, ARGV[2])
redis.call('HSET', KEYS[2], field, ARGV[3])
if ARGV[4] == '' then
    redis.call('ZREM', KEYS[3], field)
else
    redis.call('ZADD', KEYS[3], ARGV[4], field)
end
redis.call('HSET', KEYS[5], seq, ARGV[5])
redis.call('ZADD', KEYS[6], seq, seq)
redis.call('RPUSH', KEYS[7], seq)
return seq
"""

# Shared by delete and purge: a task, its transitions and its alert records.
# KEYS: tasks, health, ended, transitions, transitions:seq, alerts, alerts:task.
_LUA_DROP_TASK: Final = """
local function drop(prefix, field)
    local tkey = prefix .. 'task-transitions:' .. field
    for _, seq in ipairs(redis.call('LRANGE', tkey, 0, -1)) do
        redis.call('HDEL', KEYS[4], seq)
        redis.call('ZREM', KEYS[5], seq)
    end
    redis.call('DEL', tkey)
    local akey = prefix .. 'task-alerts:' .. field
    for _, fp in ipairs(redis.call('SMEMBERS', akey)) do
        redis.call('HDEL', KEYS[6], fp)
        redis.call('HDEL', KEYS[7], fp)
    end
    redis.call('DEL', akey)
    redis.call('HDEL', KEYS[1], field)
    redis.call('HDEL', KEYS[2], field)
    redis.call('ZREM', KEYS[3], field)
end
"""

# ARGV: prefix, field.
_LUA_DELETE_TASK: Final = (
    _LUA_DROP_TASK
    + """
drop(ARGV[1], ARGV[2])
return 0
"""
)

# ARGV: prefix, exclusive cutoff, at most this many tasks. The ended index holds final tasks
# only, by ended_at.
_LUA_PURGE: Final = (
    _LUA_DROP_TASK
    + """
local fields = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[3])
for _, field in ipairs(fields) do
    drop(ARGV[1], field)
end
return fields
"""
)

# One task's transitions by seq. KEYS: task-transitions:{field}, transitions.
# ARGV: limit (-1: all), newest first (1/0). Returns seq, value, seq, value...
_LUA_TASK_TRANSITIONS: Final = """
local limit = tonumber(ARGV[1])
local seqs
if limit == 0 then
    return {}
elseif ARGV[2] == '1' then
    seqs = redis.call('LRANGE', KEYS[1], limit < 0 and 0 or -limit, -1)
    local n = #seqs
    for i = 1, math.floor(n / 2) do
        seqs[i], seqs[n - i + 1] = seqs[n - i + 1], seqs[i]
    end
else
    seqs = redis.call('LRANGE', KEYS[1], 0, limit < 0 and -1 or limit - 1)
end
local out = {}
for _, seq in ipairs(seqs) do
    out[#out + 1] = seq
    out[#out + 1] = redis.call('HGET', KEYS[2], seq)
end
return out
"""

# The fleet's newest transitions. KEYS: transitions:seq, transitions. ARGV: limit (> 0).
_LUA_RECENT_TRANSITIONS: Final = """
local out = {}
for _, seq in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)) do
    out[#out + 1] = seq
    out[#out + 1] = redis.call('HGET', KEYS[2], seq)
end
return out
"""

# ARGV: prefix, then (fingerprint, record, task field or "") per record.
# KEYS: alerts, alerts:task.
_LUA_SAVE_ALERTS: Final = """
local prefix = ARGV[1]
for i = 2, #ARGV, 3 do
    local fp, task = ARGV[i], ARGV[i + 2]
    local old = redis.call('HGET', KEYS[2], fp)
    if old and old ~= task then
        redis.call('SREM', prefix .. 'task-alerts:' .. old, fp)
    end
    redis.call('HSET', KEYS[1], fp, ARGV[i + 1])
    if task == '' then
        redis.call('HDEL', KEYS[2], fp)
    else
        redis.call('HSET', KEYS[2], fp, task)
        redis.call('SADD', prefix .. 'task-alerts:' .. task, fp)
    end
end
return 0
"""

# ARGV: prefix, fingerprint. KEYS: alerts, alerts:task.
_LUA_DELETE_ALERT: Final = """
local old = redis.call('HGET', KEYS[2], ARGV[2])
if old then
    redis.call('SREM', ARGV[1] .. 'task-alerts:' .. old, ARGV[2])
end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
return 0
"""


# Reads and small writes are scripts too: one way to talk to Redis, typed alike in every
# supported redis-py version.
# KEYS: tasks, health. Both hashes in one atomic read: a consistent snapshot.
_LUA_LOAD_TASKS: Final = """
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
"""

# KEYS: tasks, health. ARGV: task field. Returns {spec or false, health or false}.
_LUA_LOAD_TASK: Final = """
return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('HGET', KEYS[2], ARGV[1])}
"""

# KEYS: any hash. Returns it flat (field, value, field, value...).
_LUA_HGETALL: Final = """
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: meta. ARGV: field.
_LUA_META_GET: Final = """
return redis.call('HGET', KEYS[1], ARGV[1])
"""

# KEYS: meta. ARGV: field, value.
_LUA_META_SET: Final = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 0
"""

# KEYS: meta. ARGV: this layout's version. Records it on first use; returns what is recorded.
_LUA_SCHEMA: Final = """
redis.call('HSETNX', KEYS[1], 'schema_version', ARGV[1])
return redis.call('HGET', KEYS[1], 'schema_version')
"""

_SCRIPTS: Final = {
    "save_tasks": _LUA_SAVE_TASKS,
    "save_health": _LUA_SAVE_HEALTH,
    "record_transition": _LUA_RECORD_TRANSITION,
    "delete_task": _LUA_DELETE_TASK,
    "purge": _LUA_PURGE,
    "task_transitions": _LUA_TASK_TRANSITIONS,
    "recent_transitions": _LUA_RECENT_TRANSITIONS,
    "save_alerts": _LUA_SAVE_ALERTS,
    "delete_alert": _LUA_DELETE_ALERT,
    "load_tasks": _LUA_LOAD_TASKS,
    "load_task": _LUA_LOAD_TASK,
    "hgetall": _LUA_HGETALL,
    "meta_get": _LUA_META_GET,
    "meta_set": _LUA_META_SET,
}


def _pairs(flat: list[Any]) -> dict[bytes, bytes]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


# --- records <-> values: the codec's values as JSON lists ------------------------------------

_STORE: Final = "redis"


def _ended_value(task: Task) -> bytes:
    # Only a task in a final status can be purged: a task registered again after it ended is
    # live, whatever stale ended_at it still carries.
    if not task.final or task.ended_at is None:
        return b""
    return _score(task.ended_at)


def _score(value: float) -> bytes:
    if math.isinf(value):
        return b"+inf" if value > 0 else b"-inf"
    return repr(float(value)).encode()


def _stored_answer(task: Task) -> object:
    return task.last_response


def _health_value(task: Task) -> bytes:
    return dumps(health_values(task, _stored_answer)).encode()


def _task_args(task: Task) -> list[bytes]:
    spec = dumps(spec_values(task)).encode()
    return [task_field(task.key), spec, _health_value(task), _ended_value(task)]


_NO_HEALTH_VALUE: Final = dumps(list(NO_HEALTH)).encode()


def _task_from(
    decoder: TaskDecoder, spec: bytes, health: bytes | None, field: bytes
) -> Task | None:
    """The stored task, its unreadable times unknown; None (logged once) if it is unreadable."""

    def decode() -> Task:
        # One parse for both halves: at 100,000 tasks the per-call cost of json.loads shows.
        both = json.loads(b"[%s,%s]" % (spec, _NO_HEALTH_VALUE if health is None else health))
        return decoder.task(both[0] + both[1])

    return decoded(decode, _STORE, _untext(field))


def _transition_value(t: Transition) -> bytes:
    return dumps(transition_values(t)).encode()


def _transition_from(seq: bytes | int, value: bytes) -> Transition | None:
    return decoded(
        lambda: transition_of(int(seq), json.loads(value), _STORE),
        _STORE,
        f"transition #{seq!r}",
    )


def _transitions_from(flat: list[Any]) -> list[Transition]:
    found = (
        _transition_from(flat[i], flat[i + 1])
        for i in range(0, len(flat), 2)
        if flat[i + 1] is not None
    )
    return [t for t in found if t is not None]


def _alert_args(r: AlertRecord) -> list[bytes]:
    value = dumps(alert_values(r)).encode()
    return [_text(r.fingerprint), value, b"" if r.task is None else task_field(r.task)]


def _alert_from(fingerprint: bytes, value: bytes) -> AlertRecord | None:
    return decoded(
        lambda: alert_of(_untext(fingerprint), json.loads(value), _STORE),
        _STORE,
        f"alert {_untext(fingerprint)}",
    )


def _awaitable(value: Awaitable[T] | T) -> Awaitable[T]:
    """A command's result on the asyncio client (redis-py types both clients at once)."""
    assert inspect.isawaitable(value)
    return value


async def _chunked(items: Sequence[T], convert: Callable[[T], list[bytes]]) -> list[bytes]:
    """Flatten converted items on the event loop, yielding between chunks."""
    out: list[bytes] = []
    for start in range(0, len(items), _CHUNK):
        if start:
            await asyncio.sleep(0)
        for item in items[start : start + _CHUNK]:
            out.extend(convert(item))
    return out


def redis_location(url: str) -> str:
    """Where a Redis URL points, for messages: host, port and database, never credentials."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return f"unix:{parts.path}"
        host = parts.hostname or "localhost"
        port = parts.port or 6379
    except ValueError:
        return "an unparsable URL"
    database = parts.path.lstrip("/") or "0"
    return f"{host}:{port}/{database}"


# --- the store ---------------------------------------------------------------------------------


class RedisStore:
    """The shared store (SPEC section 13). See the module docstring for the layout."""

    def __init__(self, url: str, key_prefix: str = "trtc-monitor:") -> None:
        self._url = url
        self.keys = RedisKeys(key_prefix)
        self.key_prefix = key_prefix
        self.name = f"redis store {redis_location(url)} (key prefix {key_prefix!r})"
        self._client: aredis.Redis | None = None
        self._order: asyncio.Lock | None = None
        self._scripts: dict[str, Any] = {}
        self.purge_batch = 500  # tasks per purge script

    def __repr__(self) -> str:
        state = "open" if self._client is not None else "closed"
        return f"RedisStore({self.name!r}, {state})"

    async def __aenter__(self) -> RedisStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def client(self) -> aredis.Redis:
        """The open connection pool, for parts that share Redis with the store (the limiter)."""
        if self._client is None:
            raise StoreError(f"{self.name} is closed")
        return self._client

    # --- life cycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._client is not None:
            raise StoreError(f"{self.name} is already open")
        try:
            client = aredis.Redis.from_url(
                self._url,
                decode_responses=False,
                socket_connect_timeout=_CONNECT_TIMEOUT,
                socket_keepalive=True,
                retry=Retry(NoBackoff(), 0),
                client_name="trtc-monitor",
            )
        except ValueError:
            raise StoreError(
                f"{self.name}: storage.redis.url is not a Redis URL "
                "(redis://[:password@]host:6379/0, rediss:// or unix://)"
            ) from None
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                await _awaitable(client.ping())
                await self._check_schema(client)
        except RedisError as exc:
            await client.aclose()
            raise self._error("cannot open", exc) from None
        except TimeoutError:
            await client.aclose()
            raise StoreError(
                f"{self.name}: cannot open: no answer within {COMMAND_TIMEOUT:g} s"
            ) from None
        except BaseException:
            await client.aclose()
            raise
        self._scripts = {name: client.register_script(lua) for name, lua in _SCRIPTS.items()}
        self._client = client
        self._order = asyncio.Lock()

    async def _check_schema(self, client: aredis.Redis) -> None:
        check = client.register_script(_LUA_SCHEMA)
        raw = await check(keys=[self.keys.meta], args=[str(REDIS_SCHEMA_VERSION)])
        try:
            version = int(raw or b"0")
        except ValueError:
            version = -1
        if version != REDIS_SCHEMA_VERSION:
            raise StoreError(
                f"{self.name} holds layout version {raw!r}, not the {REDIS_SCHEMA_VERSION} this "
                "version of the monitor understands; run a matching monitor or choose another "
                "storage.redis.key_prefix"
            )

    async def close(self) -> None:
        if self._client is None or self._order is None:
            return
        async with self._order:
            # Everything called before close has been answered once the lock is ours.
            client, self._client = self._client, None
            self._order = None
            await client.aclose()

    async def ping(self) -> bool:
        """Whether Redis answers now (readiness, ``trtc_monitor_store_up``); never raises."""
        client = self._client
        if client is None:
            return False
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                return bool(await _awaitable(client.ping()))
        except (RedisError, TimeoutError):
            return False

    async def probe(self) -> StoreHealth:
        """The store's health for the Store interface: up while Redis answers a ping."""
        if await self.ping():
            return StoreHealth(True)
        return StoreHealth(False, f"{self.name} does not answer")

    # --- plumbing ------------------------------------------------------------------------------

    def _error(self, what: str, exc: BaseException) -> StoreError:
        detail = str(exc) or type(exc).__name__
        # redis-py names host and port only; scrub the URL and its password anyway.
        try:
            password = urlsplit(self._url).password
        except ValueError:
            password = None
        for secret in (self._url, password):
            if secret:
                detail = detail.replace(secret, MASK)
        return StoreError(f"{self.name}: {what}: {detail}")

    def _lock(self) -> asyncio.Lock:
        if self._order is None:
            raise StoreError(f"{self.name} is closed")
        return self._order

    async def _script(self, name: str, keys: list[bytes], args: list[bytes]) -> Any:
        # Called with the lock held, so the store is open.
        what = f"{name.replace('_', ' ')} failed"
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                return await self._scripts[name](keys=keys, args=args)
        except RedisError as exc:
            raise self._error(what, exc) from None
        except TimeoutError:
            raise StoreError(
                f"{self.name}: {what}: no answer within {COMMAND_TIMEOUT:g} s"
            ) from None

    async def _run(self, name: str, keys: list[bytes], args: list[bytes]) -> Any:
        async with self._lock():
            return await self._script(name, keys, args)

    # --- tasks ---------------------------------------------------------------------------------

    async def load_tasks(self) -> list[Task]:
        flat_specs, flat_healths = await self._run(
            "load_tasks", [self.keys.tasks, self.keys.health], []
        )
        specs, healths = _pairs(flat_specs), _pairs(flat_healths)
        tasks: list[Task] = []
        decoder = TaskDecoder(_STORE, texts=False)
        for i, (field, spec) in enumerate(specs.items()):
            if i and i % _CHUNK == 0:
                await asyncio.sleep(0)
            task = _task_from(decoder, spec, healths.get(field), field)
            if task is not None:
                tasks.append(task)
        tasks.sort(key=lambda t: (t.sdk_app_id, t.task_id))
        return tasks

    async def load_task(self, key: TaskKey) -> Task | None:
        spec, health = await self._run(
            "load_task", [self.keys.tasks, self.keys.health], [task_field(key)]
        )
        # Lua's false comes back as None.
        if not spec:
            return None
        return _task_from(TaskDecoder(_STORE, texts=False), spec, health or None, task_field(key))

    async def save_task(self, task: Task) -> None:
        await self.save_tasks([task])

    async def save_tasks(self, tasks: Sequence[Task]) -> None:
        async with self._lock():
            if not tasks:
                return
            args = [self.keys.prefix, *await _chunked(tasks, _task_args)]
            k = self.keys
            await self._script("save_tasks", [k.tasks, k.health, k.ended], args)

    async def save_health(self, tasks: Sequence[Task]) -> None:
        async with self._lock():
            if not tasks:
                return
            args = await _chunked(tasks, lambda t: [task_field(t.key), _health_value(t)])
            await self._script("save_health", [self.keys.tasks, self.keys.health], args)

    def _drop_keys(self) -> list[bytes]:
        k = self.keys
        return [k.tasks, k.health, k.ended, k.transitions, k.transition_seqs, k.alerts]

    async def delete_task(self, key: TaskKey) -> None:
        args = [self.keys.prefix, task_field(key)]
        await self._run("delete_task", [*self._drop_keys(), self.keys.alert_tasks], args)

    async def purge(self, before: float) -> list[TaskKey]:
        # In batches: Redis runs one script at a time, and a purge of a whole day's ended
        # tasks in one would stall every replica's limiter and heartbeat meanwhile. Each task
        # goes with its history and alerts atomically.
        keys = [*self._drop_keys(), self.keys.alert_tasks]
        args = [self.keys.prefix, _score(before), str(self.purge_batch).encode()]
        purged: list[TaskKey] = []
        async with self._lock():
            while True:
                fields = await self._script("purge", keys, args)
                purged.extend(task_key_of(field) for field in fields)
                if len(fields) < self.purge_batch:
                    return sorted(purged)

    # --- transitions ---------------------------------------------------------------------------

    async def record_transition(self, task: Task, transition: Transition) -> Transition:
        check_transition(task, transition)
        k = self.keys
        keys = [
            k.tasks,
            k.health,
            k.ended,
            k.seq,
            k.transitions,
            k.transition_seqs,
            k.task_transitions(task.key),
        ]
        field, spec, health, ended = _task_args(task)
        args = [field, spec, health, ended, _transition_value(transition)]
        seq = await self._run("record_transition", keys, args)
        return dataclasses.replace(transition, seq=int(seq))

    async def transitions(
        self, key: TaskKey, limit: int | None = None, newest_first: bool = True
    ) -> list[Transition]:
        wanted = -1 if limit is None else max(limit, 0)
        keys = [self.keys.task_transitions(key), self.keys.transitions]
        args = [str(wanted).encode(), b"1" if newest_first else b"0"]
        return _transitions_from(await self._run("task_transitions", keys, args))

    async def recent_transitions(self, limit: int) -> list[Transition]:
        if limit <= 0:
            async with self._lock():  # still refuses a closed store
                return []
        keys = [self.keys.transition_seqs, self.keys.transitions]
        flat = await self._run("recent_transitions", keys, [str(limit).encode()])
        return _transitions_from(flat)

    # --- alerts --------------------------------------------------------------------------------

    async def save_alert(self, record: AlertRecord) -> None:
        await self.save_alerts([record])

    async def save_alerts(self, records: Sequence[AlertRecord]) -> None:
        async with self._lock():
            if not records:
                return
            args = [self.keys.prefix, *await _chunked(records, _alert_args)]
            await self._script("save_alerts", [self.keys.alerts, self.keys.alert_tasks], args)

    async def load_alerts(self) -> list[AlertRecord]:
        flat = await self._run("hgetall", [self.keys.alerts], [])
        found = (_alert_from(fp, value) for fp, value in _pairs(flat).items())
        records = [r for r in found if r is not None]
        records.sort(key=lambda r: r.fingerprint)
        return records

    async def delete_alert(self, fingerprint: str) -> None:
        keys = [self.keys.alerts, self.keys.alert_tasks]
        await self._run("delete_alert", keys, [self.keys.prefix, _text(fingerprint)])

    # --- meta ----------------------------------------------------------------------------------

    async def meta_get(self, key: str) -> str | None:
        value = await self._run("meta_get", [self.keys.meta], [_text(key)])
        return None if value is None else _untext(value)

    async def meta_set(self, key: str, value: str) -> None:
        await self._run("meta_set", [self.keys.meta], [_text(key), _text(value)])
