"""The change feed between replicas: Redis pub/sub on one channel per deployment.

A replica that registers or removes a task, or accepts a callback, for a task another replica
owns publishes a :class:`Change` after the change is in the store (order of effects,
docs/polling.md); the owner reads the store for the task and acts (polls a new task at once, applies
the callback's effect). Pub/sub delivers within milliseconds but keeps nothing for a replica
that is not listening: a replica that reconnects after an outage reloads what it owns from the
store instead, so a lost message costs at most one interval of delay, never a lost change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import redis.asyncio as aredis
from redis.exceptions import RedisError

from monitor.log import get_logger
from monitor.models import TaskKey

__all__ = ["Change", "ChangeFeed", "ChangeKind", "decode_change", "encode_change"]

log = get_logger(__name__)

ChangeKind = Literal["registered", "removed", "callback", "transition", "resync"]
_KINDS: Final[frozenset[str]] = frozenset(
    {"registered", "removed", "callback", "transition", "resync"}
)
_RETRY: Final = 1.0


@dataclass(frozen=True, slots=True)
class Change:
    """Something the owner of ``task`` (or every replica, for ``resync``) should know."""

    kind: ChangeKind
    origin: str  # the replica id that published it
    task: TaskKey | None = None


def encode_change(change: Change) -> bytes:
    task = None if change.task is None else [change.task.sdk_app_id, change.task.task_id]
    return json.dumps([change.kind, change.origin, task], separators=(",", ":")).encode()


def decode_change(data: bytes | str) -> Change | None:
    """The change in a message, or None for a message this version does not understand."""
    try:
        kind, origin, task = json.loads(data)
        if kind not in _KINDS or not isinstance(origin, str):
            return None
        key = None
        if task is not None:
            app, task_id = task
            if not isinstance(app, int) or not isinstance(task_id, str):
                return None
            key = TaskKey(app, task_id)
    except (ValueError, TypeError):
        return None
    return Change(kind, origin, key)


class ChangeFeed:
    """Publish changes; deliver every other replica's changes to ``handler``.

    ``on_reconnect`` is awaited after the subscription is (re)established following a
    failure: messages may have been missed meanwhile, so the replica resynchronises from the
    store.
    """

    def __init__(
        self,
        client: aredis.Redis,
        channel: bytes,
        replica_id: str,
        handler: Callable[[Change], Awaitable[None]],
        *,
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
        retry: float = _RETRY,
    ) -> None:
        self._client = client
        self._channel = channel
        self.replica_id = replica_id
        self._handler = handler
        self._on_reconnect = on_reconnect
        self._retry = retry
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def publish(self, kind: ChangeKind, task: TaskKey | None = None) -> int:
        """Announce a change; returns how many replicas were listening."""
        receivers: int = await self._client.publish(
            self._channel, encode_change(Change(kind, self.replica_id, task))
        )
        return receivers

    async def start(self) -> None:
        """Subscribe (waits until the subscription is in place) and start delivering."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        waiting = asyncio.ensure_future(self._subscribed.wait())
        done, _ = await asyncio.wait({waiting, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            waiting.cancel()
            self._task.result()  # raises what ended it

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        failed = False
        while True:
            pubsub: Any = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._subscribed.set()
                if failed:
                    failed = False
                    log.info("cluster_feed_resubscribed", replica=self.replica_id)
                    if self._on_reconnect is not None:
                        await self._on_reconnect()
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    await self._deliver(message.get("data"))
            except RedisError as exc:
                if not failed:
                    log.warning(
                        "cluster_feed_lost", replica=self.replica_id, error=type(exc).__name__
                    )
                failed = True
                await asyncio.sleep(self._retry)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    async def _deliver(self, data: Any) -> None:
        if not isinstance(data, bytes | str):
            return
        change = decode_change(data)
        if change is None:
            log.warning("cluster_feed_unknown_message", replica=self.replica_id)
            return
        if change.origin == self.replica_id:
            return  # our own; already applied here
        try:
            await self._handler(change)
        except Exception:
            # One bad change must not end the feed.
            log.exception("cluster_feed_handler_failed", kind=change.kind)
