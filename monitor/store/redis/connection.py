"""The one place that owns a deployment's Redis: the connection and the layout of its keys.

The store, the shared rate limiter, the cluster and the callback deliveries all use one
:class:`RedisConnection` (the store's, ``RedisStore.connection``): one connection pool, one
key prefix (``storage.redis.key_prefix``). Every key name is built by :class:`RedisKeys`
only. The key families, each under the prefix:

Store (see ``monitor.store.redis.store``):

* ``tasks`` hash: task field (``"{sdk_app_id}:{task_id}"``) -> identity, status and upload
  state (JSON);
* ``health`` hash: task field -> health (JSON), apart so a health flush never rewrites a status;
* ``ended`` sorted set: task field -> ``ended_at``, for tasks in a final status only (retention);
* ``seq`` counter, ``transitions`` hash (seq -> JSON) and ``transitions:seq`` sorted set (seq by
  seq, the fleet's history newest first), ``task-transitions:{field}`` list (one task's seqs);
* ``alerts`` hash (fingerprint -> JSON), ``alerts:task`` hash (fingerprint -> task field) and
  ``task-alerts:{field}`` set (a task's fingerprints, so deleting a task deletes them);
* ``meta`` hash (``schema_version`` and the daemon's small values).

Shared limiter (``monitor.ratelimit.redis``):

* ``ratelimit:{bucket}`` and ``ratelimit:{bucket}:sends``: one (account, access host) budget.

Cluster (``monitor.cluster``):

* ``members`` sorted set: live replicas by their last heartbeat (Redis's clock);
* ``changes`` pub/sub channel: the change feed between replicas.

Callbacks (``monitor.callbacks.shared``):

* ``callback-delivery:{hex}`` string: the application a delivery was first taken for,
  expiring with the duplicate window.

Some Lua scripts derive ``task-transitions:`` and ``task-alerts:`` from the prefix themselves,
so this layout is for a standalone Redis (or Valkey), not Redis Cluster.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from typing import Final, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from monitor.models import TaskKey
from monitor.secrets import MASK
from monitor.store.base import StoreError

__all__ = [
    "COMMAND_TIMEOUT",
    "RedisConnection",
    "RedisKeys",
    "awaitable",
    "redis_location",
    "task_field",
    "task_key_of",
    "text",
    "untext",
]

T = TypeVar("T")

CONNECT_TIMEOUT: Final = 5.0
# Every call's answer is awaited this long at most. The limit is kept here, around the call,
# rather than as redis-py's socket_timeout: on Python 3.11 that one goes through
# asyncio.wait_for, which can swallow a cancellation that lands as the write completes, and
# a daemon that is stopping would then wait forever on its pollers.
COMMAND_TIMEOUT: Final = 10.0


def text(value: str) -> bytes:
    # Task ids and fingerprints go into key names and fields as UTF-8; surrogatepass so that
    # any str round-trips.
    return value.encode("utf-8", "surrogatepass")


def untext(value: bytes) -> str:
    return value.decode("utf-8", "surrogatepass")


def task_field(key: TaskKey) -> bytes:
    """A task's name in hashes and key names: ``{sdk_app_id}:{task_id}``."""
    return text(f"{key.sdk_app_id}:{key.task_id}")


def task_key_of(field: bytes) -> TaskKey:
    app, task_id = untext(field).split(":", 1)
    return TaskKey(int(app), task_id)


class RedisKeys:
    """Every key name of one deployment, under its prefix (the one place that spells them).

    The fixed names are built once here, not on each use: the store reads them on every call.
    """

    __slots__ = (
        "alert_tasks",
        "alerts",
        "changes",
        "ended",
        "health",
        "members",
        "meta",
        "prefix",
        "seq",
        "tasks",
        "transition_seqs",
        "transitions",
    )

    def __init__(self, prefix: str) -> None:
        self.prefix = text(prefix)
        self.tasks = self._k("tasks")
        self.health = self._k("health")
        self.ended = self._k("ended")
        self.seq = self._k("seq")
        self.transitions = self._k("transitions")
        self.transition_seqs = self._k("transitions:seq")
        self.alerts = self._k("alerts")
        self.alert_tasks = self._k("alerts:task")
        self.meta = self._k("meta")
        # Live replicas: a sorted set of replica ids by their last heartbeat (Redis's clock).
        self.members = self._k("members")
        # The pub/sub channel of the change feed between replicas.
        self.changes = self._k("changes")

    def _k(self, name: str) -> bytes:
        return self.prefix + name.encode()

    def task_transitions(self, key: TaskKey) -> bytes:
        # Spelt again in scripts._LUA_DROP_TASK ("task-transitions:"), from the prefix.
        return self._k("task-transitions:") + task_field(key)

    def task_alerts(self, key: TaskKey) -> bytes:
        # Spelt again in scripts._LUA_DROP_TASK and _LUA_SAVE_ALERTS ("task-alerts:").
        return self._k("task-alerts:") + task_field(key)

    def limiter(self, bucket: str) -> bytes:
        """The shared limiter state of one (account, access host) budget."""
        return self._k("ratelimit:") + text(bucket)

    def limiter_sends(self, bucket: str) -> bytes:
        return self._k("ratelimit:") + text(bucket) + b":sends"

    def takeover_claims(self, account: str) -> bytes:
        """The survivors' claims on one account's share of a dead replica's tasks."""
        return self._k("takeover:") + account.encode("utf-8", "surrogatepass")

    def callback_delivery(self, key: bytes) -> bytes:
        """One callback delivery claimed by a replica (``key`` is the delivery's hash)."""
        return self._k("callback-delivery:") + key.hex().encode()


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


def awaitable(value: Awaitable[T] | T) -> Awaitable[T]:
    """A command's result on the asyncio client (redis-py types both clients at once)."""
    assert inspect.isawaitable(value)
    return value


class RedisConnection:
    """One Redis server under one key prefix: the client every part shares, and its keys.

    ``name`` says which, for messages (never the password). The client exists between
    ``connect`` and ``disconnect``; ``client`` raises StoreError outside that.
    """

    __slots__ = ("_client", "_url", "key_prefix", "keys", "name")

    def __init__(self, url: str, key_prefix: str, name: str) -> None:
        self._url = url
        self.key_prefix = key_prefix
        self.keys = RedisKeys(key_prefix)
        self.name = name
        self._client: aredis.Redis | None = None

    @property
    def is_open(self) -> bool:
        return self._client is not None

    @property
    def client(self) -> aredis.Redis:
        """The open connection pool."""
        if self._client is None:
            raise StoreError(f"{self.name} is closed")
        return self._client

    def new_client(self) -> aredis.Redis:
        """A client for the URL, not yet used; StoreError if the URL is not a Redis URL."""
        try:
            return aredis.Redis.from_url(
                self._url,
                decode_responses=False,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_keepalive=True,
                retry=Retry(NoBackoff(), 0),
                client_name="trtc-monitor",
            )
        except ValueError:
            raise StoreError(
                f"{self.name}: storage.redis.url is not a Redis URL "
                "(redis://[:password@]host:6379/0, rediss:// or unix://)"
            ) from None

    def attach(self, client: aredis.Redis) -> None:
        """Share ``client`` (checked by its owner) from now on."""
        self._client = client

    async def disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def ping(self) -> bool:
        """Whether Redis answers now; never raises."""
        client = self._client
        if client is None:
            return False
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                return bool(await awaitable(client.ping()))
        except (RedisError, TimeoutError):
            return False

    def error(self, what: str, exc: BaseException) -> StoreError:
        """``exc`` as a StoreError naming the server, the URL and its password scrubbed."""
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
