"""``trtc-monitor store copy``: every task, transition and alert record from one store to
another (README.md, "Commands"), e.g. when a single SQLite replica moves to Redis for HA, or back.

Stores are named by URL (:func:`monitor.store.factory.store_from_url`): ``sqlite:PATH`` or a
Redis URL with an optional ``key_prefix=...`` in its query.

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

from monitor.models import Transition
from monitor.store.base import Store, StoreError

__all__ = ["CopyCounts", "check_source", "copy_store"]


@dataclass(frozen=True, slots=True)
class CopyCounts:
    tasks: int
    transitions: int
    alerts: int


def check_source(store: Store) -> None:
    """Raise StoreError when the source names no existing store, before anything is opened:
    opening an SQLite store creates its file and lock, and a mistyped source path would
    otherwise become an empty store that copies nothing. (A Redis source is checked by
    opening it: one that does not answer fails there.)"""
    path = getattr(store, "path", None)  # a store kept in one file (SQLite)
    if isinstance(path, Path):
        if not path.exists():
            raise StoreError(f"{path}: no such file")
        if not path.is_file():
            raise StoreError(f"{path} is not a file")


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
