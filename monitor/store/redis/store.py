"""Redis store: the state several replicas share, same contract as SQLite.

The keys it uses are listed, and built, in ``connection``; its scripts are in ``scripts``, its
values in ``values``.

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
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import redis.asyncio as aredis
from redis.exceptions import RedisError

from monitor.models import Task, TaskKey, Transition
from monitor.store.base import AlertRecord, OpenedByWith, StoreError, StoreHealth
from monitor.store.codec import TaskDecoder, check_transition
from monitor.store.redis.connection import (
    COMMAND_TIMEOUT,
    RedisConnection,
    RedisKeys,
    awaitable,
    redis_location,
    task_field,
    task_key_of,
    text,
    untext,
)
from monitor.store.redis.scripts import LUA_SCHEMA, SCRIPTS
from monitor.store.redis.values import (
    CHUNK,
    STORE,
    alert_args,
    alert_from,
    chunked,
    health_args,
    pairs,
    score,
    task_args,
    task_from,
    transition_value,
    transitions_from,
)

__all__ = ["REDIS_SCHEMA_VERSION", "RedisStore"]

T = TypeVar("T")

# Version of the key layout (``connection``), kept in ``meta`` as ``schema_version``.
REDIS_SCHEMA_VERSION: Final = 1


# --- the store ---------------------------------------------------------------------------------


class RedisStore(OpenedByWith):
    """The shared store. Its keys are listed in ``monitor.store.redis.connection``."""

    def __init__(self, url: str, key_prefix: str = "trtc-monitor:") -> None:
        self.name = f"redis store {redis_location(url)} (key prefix {key_prefix!r})"
        # The connection and key layout the limiter, the cluster and the callback deliveries
        # share with the store.
        self.connection = RedisConnection(url, key_prefix, self.name)
        self.keys: RedisKeys = self.connection.keys
        self.key_prefix = key_prefix
        self._order: asyncio.Lock | None = None
        self._scripts: dict[str, Any] = {}
        self.purge_batch = 500  # tasks per purge script

    def __repr__(self) -> str:
        state = "open" if self.connection.is_open else "closed"
        return f"RedisStore({self.name!r}, {state})"

    # --- life cycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        if self.connection.is_open:
            raise StoreError(f"{self.name} is already open")
        client = self.connection.new_client()
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                await awaitable(client.ping())
                await self._check_schema(client)
        except RedisError as exc:
            await client.aclose()
            raise self.connection.error("cannot open", exc) from None
        except TimeoutError:
            await client.aclose()
            raise StoreError(
                f"{self.name}: cannot open: no answer within {COMMAND_TIMEOUT:g} s"
            ) from None
        except BaseException:
            await client.aclose()
            raise
        self._scripts = {name: client.register_script(lua) for name, lua in SCRIPTS.items()}
        self.connection.attach(client)
        self._order = asyncio.Lock()

    async def _check_schema(self, client: aredis.Redis) -> None:
        check = client.register_script(LUA_SCHEMA)
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
        if not self.connection.is_open or self._order is None:
            return
        async with self._order:
            # Everything called before close has been answered once the lock is ours.
            self._order = None
            await self.connection.disconnect()

    async def ping(self) -> bool:
        """Whether Redis answers now (readiness, ``trtc_monitor_store_up``); never raises."""
        return await self.connection.ping()

    async def probe(self) -> StoreHealth:
        """The store's health for the Store interface: up while Redis answers a ping."""
        if await self.ping():
            return StoreHealth(True)
        return StoreHealth(False, f"{self.name} does not answer")

    # --- plumbing ------------------------------------------------------------------------------

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
            raise self.connection.error(what, exc) from None
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
        specs, healths = pairs(flat_specs), pairs(flat_healths)
        tasks: list[Task] = []
        decoder = TaskDecoder(STORE, texts=False)
        for i, (field, spec) in enumerate(specs.items()):
            if i and i % CHUNK == 0:
                await asyncio.sleep(0)
            task = task_from(decoder, spec, healths.get(field), field)
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
        return task_from(TaskDecoder(STORE, texts=False), spec, health or None, task_field(key))

    async def save_task(self, task: Task) -> None:
        await self.save_tasks([task])

    async def save_tasks(self, tasks: Sequence[Task]) -> None:
        k = self.keys
        await self._save("save_tasks", [k.tasks, k.health, k.ended], [k.prefix], tasks, task_args)

    async def save_health(self, tasks: Sequence[Task]) -> None:
        keys = [self.keys.tasks, self.keys.health]
        await self._save("save_health", keys, [], tasks, health_args)

    async def _save(
        self,
        script: str,
        keys: list[bytes],
        head: list[bytes],
        items: Sequence[T],
        convert: Callable[[T], list[bytes]],
    ) -> None:
        """One script writing many records: their values encoded while the call waits its turn
        (in chunks), nothing sent for none."""
        async with self._lock():
            if not items:
                return
            await self._script(script, keys, [*head, *await chunked(items, convert)])

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
        args = [self.keys.prefix, score(before), str(self.purge_batch).encode()]
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
        field, spec, health, ended = task_args(task)
        args = [field, spec, health, ended, transition_value(transition)]
        seq = await self._run("record_transition", keys, args)
        return dataclasses.replace(transition, seq=int(seq))

    async def transitions(
        self, key: TaskKey, limit: int | None = None, newest_first: bool = True
    ) -> list[Transition]:
        wanted = -1 if limit is None else max(limit, 0)
        keys = [self.keys.task_transitions(key), self.keys.transitions]
        args = [str(wanted).encode(), b"1" if newest_first else b"0"]
        return transitions_from(await self._run("task_transitions", keys, args))

    async def recent_transitions(self, limit: int) -> list[Transition]:
        if limit <= 0:
            async with self._lock():  # still refuses a closed store
                return []
        keys = [self.keys.transition_seqs, self.keys.transitions]
        flat = await self._run("recent_transitions", keys, [str(limit).encode()])
        return transitions_from(flat)

    # --- alerts --------------------------------------------------------------------------------

    async def save_alert(self, record: AlertRecord) -> None:
        await self.save_alerts([record])

    async def save_alerts(self, records: Sequence[AlertRecord]) -> None:
        keys = [self.keys.alerts, self.keys.alert_tasks]
        await self._save("save_alerts", keys, [self.keys.prefix], records, alert_args)

    async def load_alerts(self) -> list[AlertRecord]:
        flat = await self._run("hgetall", [self.keys.alerts], [])
        found = (alert_from(fp, value) for fp, value in pairs(flat).items())
        records = [r for r in found if r is not None]
        records.sort(key=lambda r: r.fingerprint)
        return records

    async def delete_alert(self, fingerprint: str) -> None:
        keys = [self.keys.alerts, self.keys.alert_tasks]
        await self._run("delete_alert", keys, [self.keys.prefix, text(fingerprint)])

    # --- meta ----------------------------------------------------------------------------------

    async def meta_get(self, key: str) -> str | None:
        value = await self._run("meta_get", [self.keys.meta], [text(key)])
        return None if value is None else untext(value)

    async def meta_set(self, key: str, value: str) -> None:
        await self._run("meta_set", [self.keys.meta], [text(key), text(value)])
