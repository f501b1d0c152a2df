"""Every time a callback carries must be a time this monitor can believe.

The signature covers the body, not its age, and a signed body may carry any number where a
time goes: ``"EventMsTs": 9223372036854775807`` is year 292,278,994 and
``"CallbackTs": 9999999999999`` year 2286. Such a callback would never go stale, and its times
would end up in the task table, the API and the page. So at the door, before anything acts:

* the times of the message and of its event (``CallbackTs``, ``EventTs``, ``EventMsTs``) lie
  within ``callbacks.max_age`` in the past (older: a replay, refused as ``stale``) and
  ``callbacks.max_skew`` in the future (later: not a time TRTC sends, refused as ``invalid``);
* the times of the files an event reports (``BeginTimeStamp``, ``StartTimeStamp``,
  ``EndTimeStamp``) may be long past (a recording runs for hours before its MP4 is done) but
  never after now plus the skew.

Pure: the handler passes the clock's reading.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from monitor.callbacks.parse import Callback
from monitor.uploads import FileKind

__all__ = ["TimeProblem", "Verdict", "callback_times", "check_times", "file_times"]


class Verdict(enum.Enum):
    FUTURE = "future"  # 400, outcome invalid
    STALE = "stale"  # 403, outcome stale


@dataclass(frozen=True, slots=True)
class TimeProblem:
    verdict: Verdict
    field: str
    value: float | None  # seconds since the epoch, as the body says; None when missing
    message: str


def callback_times(event: Callback) -> list[tuple[str, float]]:
    """(field, seconds) of the message's and the event's own times, where present."""
    out: list[tuple[str, float]] = []
    if event.callback_ts is not None:
        out.append(("CallbackTs", event.callback_ts / 1000.0))
    if event.event_ts is not None:
        out.append(("EventInfo.EventTs", float(event.event_ts)))
    if event.event_ms_ts is not None:
        out.append(("EventInfo.EventMsTs", event.event_ms_ts / 1000.0))
    return out


def file_times(event: Callback) -> list[tuple[str, float]]:
    """(field, seconds) of the times of the files the event reports (milliseconds in the body):
    a 307's ``BeginTimeStamp``, a 310's ``StartTimeStamp`` and ``EndTimeStamp``."""
    out: list[tuple[str, float]] = []
    if event.upload is not None:
        for f in event.upload.files:
            begin = "BeginTimeStamp" if f.kind is FileKind.COS else "StartTimeStamp"
            for name, ms in ((begin, f.begin_ms), ("EndTimeStamp", f.end_ms)):
                if ms:
                    out.append((f"EventInfo.Payload.{name}", ms / 1000.0))
    return out


def check_times(event: Callback, now: float, max_age: float, max_skew: float) -> TimeProblem | None:
    """Why the callback's times refuse it at ``now``, or None when they are all believable."""
    if event.callback_ts is None:
        # TRTC always sends one: a body without it cannot show its age.
        return TimeProblem(Verdict.STALE, "CallbackTs", None, "CallbackTs is missing")
    own = callback_times(event)
    latest = now + max_skew
    for name, at in (*own, *file_times(event)):
        if at > latest:
            return TimeProblem(
                Verdict.FUTURE,
                name,
                at,
                f"{name} lies more than callbacks.max_skew ({max_skew:g} s) in the future",
            )
    earliest = now - max_age
    for name, at in own:
        if at < earliest:
            return TimeProblem(
                Verdict.STALE,
                name,
                at,
                f"{name} is older than callbacks.max_age ({max_age:g} s)",
            )
    return None
