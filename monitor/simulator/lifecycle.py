"""Simulated recording task lives: Idle -> InProgress -> Exited -> gone.

A task's whole timeline is planned when it is created (and re-planned when it is stopped), so
its phase at any instant is a few comparisons: nothing runs per task while time passes.
Everything here is pure; the clock readings come from the caller.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import Any

from monitor.models import Status

# Re-exported: the lives and upload plans were defined here before they had modules of their own.
from monitor.simulator.lives import INF as INF
from monitor.simulator.lives import LEAVE_API as LEAVE_API
from monitor.simulator.lives import LEAVE_IDLE_TIMEOUT as LEAVE_IDLE_TIMEOUT
from monitor.simulator.lives import LEAVE_KICKED_BY_SERVER as LEAVE_KICKED_BY_SERVER
from monitor.simulator.lives import Life as Life
from monitor.simulator.lives import LifeRange as LifeRange
from monitor.simulator.lives import PlannedEvent as PlannedEvent
from monitor.simulator.lives import Range as Range
from monitor.simulator.upload_plan import UploadFault as UploadFault
from monitor.simulator.upload_plan import UploadPlan as UploadPlan
from monitor.simulator.upload_plan import check_upload as check_upload
from monitor.simulator.web_life import web_timeline


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


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A task to add: what the scenario, the control surface or the API asked for.

    What it leaves None the task table chooses: a new TaskId, a life drawn from its
    ``random_life``, a room and a recorder user named after the task.
    """

    sdk_app_id: int
    task_id: str | None = None
    life: Life | None = None  # None: drawn from the table's random_life
    room_id: str | int | None = None
    user_id: str | None = None
    max_idle_time: float | None = None
    expire_after: float | None = None
    vod: bool = False
    upload: UploadPlan = field(default_factory=UploadPlan)
    kind: str = "cloud"  # "web": a web-page recording (StartWebRecord)
    record_id: str | None = None  # a web recording's RecordId
    recorder_key: str | None = None  # a relay recording's RecorderKey


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
    upload: UploadPlan = field(default_factory=UploadPlan)
    modifications: int = 0
    kind: str = "cloud"  # "cloud" (CreateCloudRecording) or "web" (StartWebRecord)
    record_id: str | None = None  # StartWebRecord's RecordId
    recorder_key: str | None = None  # a relay recording's RecorderKey
    # keys of the callback events already sent, so that re-checks never send one twice
    sent: set[str] = field(default_factory=set)

    @classmethod
    def create(
        cls,
        spec: TaskSpec,
        created: float,
        created_wall: float,
        *,
        task_id: str,
        life: Life,
        room_id: str | int,
        user_id: str,
    ) -> SimTask:
        """The task ``spec`` asks for, created now; ``task_id``, ``life``, ``room_id`` and
        ``user_id`` are the spec's own or what the table chose where it left them open."""
        check_upload(spec.upload, spec.vod)
        p = plan(life, created, spec.max_idle_time)
        return cls(
            sdk_app_id=spec.sdk_app_id,
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
            expires_at=INF if spec.expire_after is None else created + spec.expire_after,
            vod=spec.vod,
            upload=spec.upload,
            kind=spec.kind,
            record_id=spec.record_id,
            recorder_key=spec.recorder_key,
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

    def timeline(self) -> list[PlannedEvent]:
        """Every callback of this recording as now planned, in time order (INF: not yet).

        COS: 301, 303, 307, 304 when recording starts, 302 when it stops, 305 (and 310 with
        MP4) when the upload ends. VOD: 301, 302, then 311 (the commit, with the FileId and
        VideoUrl) and 312 when the upload ends. A recording that never started uploads nothing.
        """
        if self.kind == "web":
            return web_timeline(self)
        up = self.upload
        fault = up.fault
        start, stop, end = self.in_progress_at, self.exited_at, self.gone_at
        failed_to_start = fault is UploadFault.START_FAILED
        if failed_to_start:
            start = INF  # the recorder failed: nothing is recorded, nothing uploads
        out = [PlannedEvent("301", 301, self.created, {"Status": 1 if failed_to_start else 0})]
        if start < INF and not self.vod:
            if fault is UploadFault.UPLOAD_START_FAILED:
                out.append(PlannedEvent("303", 303, start, {"Status": 1}))
            else:
                out.append(PlannedEvent("303", 303, start, {"Status": 0}))
                out.append(PlannedEvent("307", 307, start, self._slice(start)))
                out.append(PlannedEvent("304", 304, start, {"Status": 0}))
        if start < INF and fault is UploadFault.IMAGE_ERROR:
            url = "https://images.example.com/watermark.png"
            out.append(PlannedEvent("309", 309, start, {"Url": url}))
        out.append(PlannedEvent("302", 302, stop, {"LeaveCode": self.leave_code}))
        if start == INF:
            return out
        if fault is UploadFault.UPLOAD_ERROR:
            error = {"Code": up.error_code, "Message": up.error_message}
            out.append(PlannedEvent("308", 308, stop, error))
        stranded = fault in (
            UploadFault.STRANDED,
            UploadFault.UPLOAD_ERROR,
            UploadFault.UPLOAD_START_FAILED,
        )
        if self.vod:
            if fault is UploadFault.VOD_COMMIT_ERROR or stranded:
                errmsg = (
                    "file left on the recording server"
                    if fault is UploadFault.STRANDED
                    else up.error_message
                )
                commit: dict[str, Any] = {
                    "Status": 1 if stranded else 2,
                    "Errmsg": errmsg,
                    "TencentVod": {},
                }
                out.append(PlannedEvent("311", 311, end, commit))
                if up.finish:
                    out.append(PlannedEvent("312", 312, end, {"Status": 1}))
            else:
                out.append(PlannedEvent("311", 311, end, {"Status": 0, **self._vod()}))
                if up.finish:
                    out.append(PlannedEvent("312", 312, end, {"Status": 0}))
        elif up.finish:
            out.append(PlannedEvent("305", 305, end, {"Status": 1 if stranded else 0}))
            if up.mp4 or fault is UploadFault.MP4_ERROR:
                status = 2 if fault is UploadFault.MP4_ERROR else 1 if stranded else 0
                out.append(PlannedEvent("310", 310, end, {"Status": status, **self._mp4(end)}))
        if up.recover_after is not None and fault is not UploadFault.NONE:
            # At least a millisecond later: EventMsTs must tell the recovery after the failure.
            later = end + max(up.recover_after, 0.001)
            out.append(PlannedEvent("305-recovered", 305, later, {"Status": 2}))
        return sorted(out, key=lambda e: e.at)  # stable: same-time events keep their order

    def events(self, enabled: frozenset[int]) -> list[PlannedEvent]:
        """Callback events this timeline produces, enabled (a web task's always are), due
        some time, not yet sent."""
        web = self.kind == "web"
        return [
            e
            for e in self.timeline()
            if (web or e.event_type in enabled) and e.key not in self.sent and e.at < INF
        ]

    def _base_name(self) -> str:
        return f"{self.sdk_app_id}_{self.room_id}_{self.task_id[:12]}"

    def _slice(self, at: float) -> dict[str, Any]:
        return {
            "FileName": f"{self._base_name()}.m3u8",
            "UserId": "",
            "TrackType": "audio_video",
            "BeginTimeStamp": int(self.wall(at) * 1000),
        }

    def _mp4(self, end: float) -> dict[str, Any]:
        return {
            "FileList": [
                {
                    "FileName": f"{self._base_name()}.mp4",
                    "UserId": "",
                    "TrackType": "audio_video",
                    "MediaId": "main",
                    "StartTimeStamp": int(self.wall(self.in_progress_at) * 1000),
                    "EndTimeStamp": int(self.wall(min(self.exited_at, end)) * 1000),
                }
            ]
        }

    def _vod(self) -> dict[str, Any]:
        # VOD FileIds are long decimal numbers; derived from the task so repeats agree.
        digest = hashlib.sha256(f"{self.sdk_app_id}/{self.task_id}".encode()).digest()
        file_id = str(5285890780000000000 + int.from_bytes(digest[:4], "big"))
        return {
            "TencentVod": {
                "UserId": "",
                "TrackType": "audio_video",
                "MediaId": "main",
                "FileId": file_id,
                "VideoUrl": f"https://vod.example.com/{file_id}/{self._base_name()}.mp4",
            }
        }

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
            "storage": "vod" if self.vod else "cos",
            "kind": self.kind,
            "record_id": self.record_id,
            "recorder_key": self.recorder_key,
            "upload": {
                "mp4": self.upload.mp4,
                "fault": self.upload.fault.value,
                "finish": self.upload.finish,
                "recover_after": self.upload.recover_after,
            },
            "callbacks_sent": sorted(self.sent),
        }
