"""The Redis store's values: the codec's fields of each record as one JSON list.

A task is two values (its spec in ``tasks``, its health in ``health``; the last answer as
``Task.last_response`` shows it) plus its retention score in ``ended``; a transition and an
alert record are one value each.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

from monitor.models import Task, Transition
from monitor.store.base import AlertRecord
from monitor.store.codec import (
    HEALTH_FIELDS,
    NO_HEALTH,
    STATE_FIELDS,
    TaskDecoder,
    alert_of,
    alert_values,
    decoded,
    dumps,
    health_values,
    padded,
    state_values,
    transition_of,
    transition_values,
)
from monitor.store.redis.connection import task_field, text, untext

T = TypeVar("T")

STORE: Final = "redis"
CHUNK: Final = 500  # records encoded or decoded between two yields to the event loop


def pairs(flat: list[Any]) -> dict[bytes, bytes]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def ended_value(task: Task) -> bytes:
    # Only a task in a final status can be purged: a task registered again after it ended is
    # live, whatever stale ended_at it still carries.
    if not task.final or task.ended_at is None:
        return b""
    return score(task.ended_at)


def score(value: float) -> bytes:
    if math.isinf(value):
        return b"+inf" if value > 0 else b"-inf"
    return repr(float(value)).encode()


def stored_answer(task: Task) -> object:
    return task.last_response


# Fields added after the first Redis format are left out while unset (None), so a task that
# does not use them is written exactly as earlier versions wrote it; ``padded`` reads them back.
_STATE_BASE: Final = STATE_FIELDS.index("recorder_key")
_HEALTH_BASE: Final = HEALTH_FIELDS.index("answer_recorder_key")


def _trimmed(values: list[Any], base: int) -> list[Any]:
    while len(values) > base and values[-1] is None:
        values.pop()
    return values


def health_value(task: Task) -> bytes:
    return dumps(_trimmed(health_values(task, stored_answer), _HEALTH_BASE)).encode()


def health_args(task: Task) -> list[bytes]:
    return [task_field(task.key), health_value(task)]


def task_args(task: Task) -> list[bytes]:
    spec = dumps(_trimmed(state_values(task), _STATE_BASE)).encode()
    return [task_field(task.key), spec, health_value(task), ended_value(task)]


NO_HEALTH_VALUE: Final = dumps(list(NO_HEALTH)).encode()


def task_from(decoder: TaskDecoder, spec: bytes, health: bytes | None, field: bytes) -> Task | None:
    """The stored task, its unreadable times unknown; None (logged once) if it is unreadable."""

    def decode() -> Task:
        # One parse for both halves: at 100,000 tasks the per-call cost of json.loads shows.
        both = json.loads(b"[%s,%s]" % (spec, NO_HEALTH_VALUE if health is None else health))
        return decoder.task(padded(both[0], STATE_FIELDS) + padded(both[1], HEALTH_FIELDS))

    return decoded(decode, STORE, untext(field))


def transition_value(t: Transition) -> bytes:
    return dumps(transition_values(t)).encode()


def transition_from(seq: bytes | int, value: bytes) -> Transition | None:
    return decoded(
        lambda: transition_of(int(seq), json.loads(value), STORE),
        STORE,
        f"transition #{seq!r}",
    )


def transitions_from(flat: list[Any]) -> list[Transition]:
    found = (
        transition_from(flat[i], flat[i + 1])
        for i in range(0, len(flat), 2)
        if flat[i + 1] is not None
    )
    return [t for t in found if t is not None]


def alert_args(r: AlertRecord) -> list[bytes]:
    value = dumps(alert_values(r)).encode()
    return [text(r.fingerprint), value, b"" if r.task is None else task_field(r.task)]


def alert_from(fingerprint: bytes, value: bytes) -> AlertRecord | None:
    return decoded(
        lambda: alert_of(untext(fingerprint), json.loads(value), STORE),
        STORE,
        f"alert {untext(fingerprint)}",
    )


async def chunked(items: Sequence[T], convert: Callable[[T], list[bytes]]) -> list[bytes]:
    """Flatten converted items on the event loop, yielding between chunks."""
    out: list[bytes] = []
    for start in range(0, len(items), CHUNK):
        if start:
            await asyncio.sleep(0)
        for item in items[start : start + CHUNK]:
            out.extend(convert(item))
    return out
