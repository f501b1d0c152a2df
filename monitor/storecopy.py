"""``trtc-monitor store copy``: every task, transition and alert record from one store to
another (SPEC section 3), e.g. when a single SQLite replica moves to Redis for HA, or back.

Stores are named by URL: ``sqlite:PATH`` or a Redis URL (``redis://``, ``rediss://``,
``unix://``); a Redis URL may carry ``key_prefix=...`` in its query (default
``trtc-monitor:``), which is the monitor's and is not passed on to Redis.

Transitions are written in their original order (by ``seq``) through ``record_transition``, so
each task's history and the fleet's newest-first history read back the same; the target hands
out its own sequence numbers. Then every task is written with its current state and health, and
every alert record as it is. With ``--force`` a non-empty target keeps what the source does not
have; each copied task replaces the target's task of the same key together with its history.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from monitor.models import Transition
from monitor.store.base import Store, StoreError
from monitor.store.redis import RedisStore, redis_location
from monitor.store.sqlite import SqliteStore

__all__ = ["CopyCounts", "StoreUrlError", "copy_store", "describe_store_url", "open_store_url"]

DEFAULT_KEY_PREFIX = "trtc-monitor:"
_REDIS_SCHEMES = ("redis", "rediss", "unix")


class StoreUrlError(ValueError):
    """A store URL this tool cannot use; the message never repeats a password."""


@dataclass(frozen=True, slots=True)
class CopyCounts:
    tasks: int
    transitions: int
    alerts: int


def _split_prefix(url: str) -> tuple[str, str]:
    """The Redis URL without our ``key_prefix`` query parameter, and the prefix."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for name, value in query if name == "key_prefix"]
    rest = [(name, value) for name, value in query if name != "key_prefix"]
    prefix = prefixes[-1] if prefixes else DEFAULT_KEY_PREFIX
    return urlunsplit(parts._replace(query=urlencode(rest))), prefix


def open_store_url(url: str) -> Store:
    """The (closed) store a URL names."""
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:").removeprefix("//")
        if not path:
            raise StoreUrlError("sqlite: URL without a path (use sqlite:PATH)")
        return SqliteStore(Path(path))
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme in _REDIS_SCHEMES:
        redis_url, prefix = _split_prefix(url)
        if not prefix:
            raise StoreUrlError("key_prefix may not be empty")
        return RedisStore(redis_url, prefix)
    raise StoreUrlError(
        "a store URL is sqlite:PATH or redis://[:password@]host:port/db"
        "[?key_prefix=...] (rediss:// and unix:// too)"
    )


def describe_store_url(url: str) -> str:
    """How to name a store URL in output: never its password."""
    if url.startswith("sqlite:"):
        return url
    redis_url, prefix = _split_prefix(url)
    return f"redis {redis_location(redis_url)} (key prefix {prefix!r})"


async def _is_empty(store: Store) -> bool:
    return (
        not await store.load_tasks()
        and not await store.load_alerts()
        and not await store.recent_transitions(1)
    )


async def copy_store(source: Store, target: Store, *, force: bool = False) -> CopyCounts:
    """Copy everything from ``source`` to ``target`` (both open).

    Raises StoreError when the target is not empty and ``force`` is false.
    """
    if not force and not await _is_empty(target):
        raise StoreError("the target store is not empty; use --force to copy into it anyway")
    tasks = await source.load_tasks()
    alerts = await source.load_alerts()
    history: list[Transition] = []
    for task in tasks:
        history.extend(await source.transitions(task.key, newest_first=False))
    history.sort(key=lambda t: t.seq or 0)

    if force:
        for task in tasks:
            await target.delete_task(task.key)
    by_key = {task.key: task for task in tasks}
    for transition in history:
        # The task as that transition left it; its final state is written below.
        state = dataclasses.replace(by_key[transition.key], status=transition.to_status)
        await target.record_transition(state, dataclasses.replace(transition, seq=None))
    await target.save_tasks(tasks)
    await target.save_alerts(alerts)
    return CopyCounts(tasks=len(tasks), transitions=len(history), alerts=len(alerts))
