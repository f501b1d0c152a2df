"""Simulated recording task lives: Idle -> InProgress -> Exited -> gone.

A task's whole timeline is planned when it is created (and re-planned when it is stopped), so
its phase at any instant is a few comparisons: nothing runs per task while time passes.
Everything here is pure; the clock readings come from the caller.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, field
from typing import Any

from monitor.models import Status

INF = math.inf

# LeaveCode of a 302 callback: 0 = stopped through DeleteCloudRecording, 99 = nobody published
# for MaxIdleTime, 3 = recorder kicked by the server (the default for other ends).
LEAVE_API = 0
LEAVE_KICKED_BY_SERVER = 3
LEAVE_IDLE_TIMEOUT = 99


class Phase(enum.IntEnum):
    IDLE = 0
    IN_PROGRESS = 1
    EXITED = 2
    GONE = 3


_PHASE_STATUS: dict[Phase, Status] = {
    Phase.IDLE: Status.IDLE,
    Phase.IN_PROGRESS: Status.IN_PROGRESS,
    Phase.EXITED: Status.EXITED,
}


def _check_duration(name: str, value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class Life:
    """How one task lives, in seconds of the simulator's clock.

    ``in_progress=None`` records until stopped. ``hang_idle`` keeps the task Idle forever,
    whatever its MaxIdleTime says (the hang the monitor must notice).
    """

    idle: float = 1.0
    in_progress: float | None = None
    exited: float = 2.0
    leave_code: int = LEAVE_KICKED_BY_SERVER
    hang_idle: bool = False

    def __post_init__(self) -> None:
        _check_duration("idle", self.idle)
        if self.in_progress is not None:
            _check_duration("in_progress", self.in_progress)
        _check_duration("exited", self.exited)


Range = tuple[float, float]


def _draw(rng: random.Random, bounds: Range) -> float:
    lo, hi = bounds
    return lo if lo == hi else rng.uniform(lo, hi)


@dataclass(frozen=True, slots=True)
class LifeRange:
    """Bounds from which random lives are drawn (for created tasks and unspecified lives)."""

    idle: Range = (0.5, 2.0)
    in_progress: Range | None = None
    exited: Range = (1.0, 3.0)
    leave_codes: tuple[int, ...] = (LEAVE_KICKED_BY_SERVER,)
    hang_idle: float = 0.0  # probability of an idle hang

    def __post_init__(self) -> None:
        ranges: list[tuple[str, Range | None]] = [
            ("idle", self.idle),
            ("in_progress", self.in_progress),
            ("exited", self.exited),
        ]
        for name, bounds in ranges:
            if bounds is None:
                continue
            _check_duration(name, bounds[0])
            _check_duration(name, bounds[1])
            if bounds[0] > bounds[1]:
                raise ValueError(f"{name}: lower bound {bounds[0]} exceeds upper {bounds[1]}")
        if not self.leave_codes:
            raise ValueError("leave_codes must not be empty")
        if not 0.0 <= self.hang_idle <= 1.0:
            raise ValueError("hang_idle must be a probability between 0 and 1")

    def draw(self, rng: random.Random) -> Life:
        return Life(
            idle=_draw(rng, self.idle),
            in_progress=None if self.in_progress is None else _draw(rng, self.in_progress),
            exited=_draw(rng, self.exited),
            leave_code=rng.choice(self.leave_codes),
            hang_idle=self.hang_idle > 0 and rng.random() < self.hang_idle,
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """Monotonic instants at which a task enters each phase (INF = never)."""

    in_progress_at: float
    exited_at: float
    gone_at: float
    leave_code: int


def plan(life: Life, created: float, max_idle_time: float | None = None) -> Plan:
    """The timeline a life gives a task created at ``created``.

    A task nobody publishes into for ``max_idle_time`` stops by itself with LeaveCode 99, as
    TRTC does; an idle hang ignores that (it is the failure being simulated).
    """
    if life.hang_idle:
        return Plan(INF, INF, INF, life.leave_code)
    if max_idle_time is not None and life.idle >= max_idle_time:
        exited_at = created + max_idle_time
        return Plan(INF, exited_at, exited_at + life.exited, LEAVE_IDLE_TIMEOUT)
    in_progress_at = created + life.idle
    exited_at = INF if life.in_progress is None else in_progress_at + life.in_progress
    return Plan(in_progress_at, exited_at, exited_at + life.exited, life.leave_code)


@dataclass(slots=True)
class SimTask:
    """One simulated recording task and its (re)planned timeline."""

    sdk_app_id: int
    task_id: str
    room_id: str | int
    user_id: str
    life: Life
    created: float  # monotonic
    created_wall: float
    in_progress_at: float
    exited_at: float
    gone_at: float
    leave_code: int
    expires_at: float = INF  # ResourceExpiredHour: the API stops seeing the task then
    vod: bool = False
    modifications: int = 0
    # callback event types already sent, so that re-checks never send one twice
    sent: set[int] = field(default_factory=set)

    @classmethod
    def create(
        cls,
        sdk_app_id: int,
        task_id: str,
        life: Life,
        created: float,
        created_wall: float,
        *,
        room_id: str | int,
        user_id: str,
        max_idle_time: float | None = None,
        expire_after: float | None = None,
        vod: bool = False,
    ) -> SimTask:
        p = plan(life, created, max_idle_time)
        return cls(
            sdk_app_id=sdk_app_id,
            task_id=task_id,
            room_id=room_id,
            user_id=user_id,
            life=life,
            created=created,
            created_wall=created_wall,
            in_progress_at=p.in_progress_at,
            exited_at=p.exited_at,
            gone_at=p.gone_at,
            leave_code=p.leave_code,
            expires_at=INF if expire_after is None else created + expire_after,
            vod=vod,
        )

    def phase(self, now: float) -> Phase:
        if now >= self.gone_at:
            return Phase.GONE
        if now >= self.exited_at:
            return Phase.EXITED
        if now >= self.in_progress_at:
            return Phase.IN_PROGRESS
        return Phase.IDLE

    def visible(self, now: float) -> bool:
        """Whether the API can still see the task (not gone, not past its expiry)."""
        return now < self.gone_at and now < self.expires_at

    def api_status(self, now: float) -> Status | None:
        """What DescribeCloudRecording reports, or None when it answers an ended code."""
        if not self.visible(now):
            return None
        return _PHASE_STATUS[self.phase(now)]

    def stop(self, now: float, leave_code: int) -> bool:
        """Enter Exited now (the recorder left); False when it already had."""
        if now >= self.exited_at:
            return False
        self.exited_at = now
        self.gone_at = now + self.life.exited
        if self.in_progress_at > now:
            self.in_progress_at = INF
        self.leave_code = leave_code
        return True

    def finish(self, now: float, leave_code: int = LEAVE_KICKED_BY_SERVER) -> bool:
        """Vanish now, passing through Exited for no time; False when already gone."""
        if now >= self.gone_at:
            return False
        if now < self.exited_at:
            self.stop(now, leave_code)
        self.gone_at = now
        return True

    def wall(self, mono: float) -> float:
        """Wall-clock time of a monotonic instant of this task's timeline."""
        return self.created_wall + (mono - self.created)

    def storage_files(self, now: float) -> list[dict[str, Any]] | None:
        """StorageFileList: null before recording starts, empty for VOD, else the mixed file."""
        if self.in_progress_at > now:
            return None
        if self.vod:
            return []
        return [
            {
                "UserId": "",
                "FileName": f"{self.sdk_app_id}_{self.room_id}_{self.task_id[:12]}.m3u8",
                "TrackType": "audio_video",
                "BeginTimeStamp": int(self.wall(self.in_progress_at) * 1000),
            }
        ]

    def events(self, enabled: frozenset[int]) -> list[tuple[int, float]]:
        """Callback events (type, monotonic time) this timeline produces, not yet sent."""
        out: list[tuple[int, float]] = []
        for event, at in (
            (301, self.created),
            (303, self.in_progress_at),
            (304, self.in_progress_at),
            (302, self.exited_at),
            (305, self.gone_at),
        ):
            if event in enabled and event not in self.sent and at < INF:
                out.append((event, at))
        return out

    def info(self, now: float) -> dict[str, Any]:
        """A JSON-ready description for the control surface."""

        def rel(t: float) -> float | None:
            return None if t == INF else round(t - self.created, 6)

        return {
            "sdk_app_id": self.sdk_app_id,
            "task_id": self.task_id,
            "room_id": self.room_id,
            "user_id": self.user_id,
            "phase": self.phase(now).name,
            "status": self.api_status(now),
            "expired": now >= self.expires_at,
            "age": round(now - self.created, 6),
            "in_progress_after": rel(self.in_progress_at),
            "exited_after": rel(self.exited_at),
            "gone_after": rel(self.gone_at),
            "leave_code": self.leave_code,
            "hang_idle": self.life.hang_idle,
            "modifications": self.modifications,
        }
