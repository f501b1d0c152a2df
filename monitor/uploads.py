"""Where a recording's files went: the upload state of a task (docs/callbacks.md).

The recording callbacks (301-312) are the only sign that a recording reached storage:
``StorageFileList`` stays empty while files go to VOD. TRTC retries deliveries for a minute and
nothing orders them, so a 305 "all uploaded" may arrive before the 304 that preceded it, and a
308 upload error may arrive twice. The state is therefore not a sequence of steps but a
function of *facts* gathered from the events, each fact merged commutatively and idempotently
(earliest start and stop, latest finish, a set of failures and a set of files). Applying the
same events in any order, any number of times, gives the same state; that is what the tests
check over every event type and status.

The derived state:

* ``failed`` when the latest failure is not older than the latest finish (a storage error
  after the HLS upload finished, e.g. the MP4 step, is still a failure);
* ``done`` when a finish (305 with 0 or 2, 310 with 0, 312 with 0 after a successful 311 and
  no failed one) is newer than every failure;
* ``uploading`` once an upload started (303 with 0, 304, 307, 311 with 0);
* ``none`` otherwise.

Pure: no clock, no I/O. Times are seconds (event times in milliseconds precision when TRTC
sent them, else when the callback was received).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

RECORDER_STARTED: Final = 301
RECORDER_STOPPED: Final = 302
UPLOAD_STARTED: Final = 303
FIRST_M3U8: Final = 304
HLS_STOPPED: Final = 305
TASK_MIGRATED: Final = 306
FIRST_SLICE: Final = 307
UPLOAD_ERROR: Final = 308
IMAGE_DOWNLOAD_FAILED: Final = 309
MP4_STOPPED: Final = 310
VOD_COMMIT: Final = 311
VOD_STOPPED: Final = 312

# Files kept per task: enough for any real recording (one per user and track), bounded
# against a sender that floods.
MAX_FILES: Final = 100
MAX_FAILURES: Final = 20
MAX_TEXT: Final = 512

# What a failing status of each event means, for the alert's message when TRTC sent none.
FAILURE_MEANINGS: Final[Mapping[tuple[int, int | None], str]] = {
    (RECORDER_STARTED, 1): "the recorder failed to start",
    (UPLOAD_STARTED, 1): "the upload to cloud storage could not start",
    (HLS_STOPPED, 1): "files are stranded on the recording server or backup storage",
    (IMAGE_DOWNLOAD_FAILED, None): "an image (watermark or placeholder) could not be downloaded",
    (MP4_STOPPED, 1): "MP4 files are stranded on the recording server or backup storage",
    (MP4_STOPPED, 2): "the MP4 task stopped on an error (often: HLS files not downloadable)",
    (VOD_COMMIT, 1): "the file is still on the recording server or backup storage",
    (VOD_COMMIT, 2): "the VOD upload failed",
    (VOD_STOPPED, 1): "the VOD task ended on an error",
}
EVENT_NAMES: Final[Mapping[int, str]] = {
    RECORDER_STARTED: "recorder started",
    RECORDER_STOPPED: "recorder stopped",
    UPLOAD_STARTED: "upload started",
    FIRST_M3U8: "first m3u8 uploaded",
    HLS_STOPPED: "HLS upload stopped",
    TASK_MIGRATED: "task migrated",
    FIRST_SLICE: "first slice uploaded",
    UPLOAD_ERROR: "upload error",
    IMAGE_DOWNLOAD_FAILED: "image download failed",
    MP4_STOPPED: "MP4 stopped",
    VOD_COMMIT: "VOD commit",
    VOD_STOPPED: "VOD stopped",
}


class UploadPhase(enum.StrEnum):
    """The ``state`` label of ``trtc_recording_task_upload_state``."""

    NONE = "none"
    UPLOADING = "uploading"
    DONE = "done"
    FAILED = "failed"


UPLOAD_PHASES: Final = tuple(UploadPhase)


class Change(enum.StrEnum):
    """What one event did to the state, as the ``outcome`` of ``trtc_recording_uploads_total``
    (``started`` is not counted there)."""

    STARTED = "started"  # none -> uploading
    FAILED = "failed"  # entered failed
    DONE = "done"  # entered done, not from failed
    RECOVERED = "recovered"  # failed -> done


class FileKind(enum.StrEnum):
    COS = "cos"  # an HLS slice/playlist in COS (307)
    MP4 = "mp4"  # an MP4 file made from the HLS files (310)
    VOD = "vod"  # a media file committed to VOD (311)


@dataclass(frozen=True, slots=True, order=True)
class UploadFile:
    """One file a callback reported. Empty strings and zeros stand for "not sent", so that
    files order totally (the merge of reports must not depend on their order)."""

    kind: FileKind
    name: str = ""
    user_id: str = ""
    track_type: str = ""
    file_id: str = ""  # VOD FileId
    url: str = ""  # VOD VideoUrl
    media_id: str = ""
    begin_ms: int = 0  # BeginTimeStamp (307) or StartTimeStamp (310)
    end_ms: int = 0

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        return (self.kind, self.name, self.file_id, self.user_id, self.track_type)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind.value}
        for name in ("name", "user_id", "track_type", "file_id", "url", "media_id"):
            value = getattr(self, name)
            if value:
                data[name] = value
        for name in ("begin_ms", "end_ms"):
            value = getattr(self, name)
            if value:
                data[name] = value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UploadFile:
        return cls(
            kind=FileKind(data["kind"]),
            **{
                k: str(data.get(k) or "")
                for k in ("name", "user_id", "track_type", "file_id", "url", "media_id")
            },
            begin_ms=int(data.get("begin_ms") or 0),
            end_ms=int(data.get("end_ms") or 0),
        )


@dataclass(frozen=True, slots=True, order=True)
class UploadFailure:
    """The failure an alert names: which event, the storage's code and message, when."""

    at: float
    event_type: int
    code: str = ""
    message: str = ""

    @property
    def event_name(self) -> str:
        return EVENT_NAMES.get(self.event_type, str(self.event_type))

    def describe(self) -> str:
        parts = [f"event {self.event_type} ({self.event_name})"]
        if self.code:
            parts.append(f"code {self.code}")
        if self.message:
            parts.append(f"message {self.message!r}")
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "event": self.event_name,
            "code": self.code,
            "message": self.message,
            "at": self.at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UploadFailure:
        return cls(
            at=float(data["at"]),
            event_type=int(data["event_type"]),
            code=str(data.get("code") or ""),
            message=str(data.get("message") or ""),
        )


@dataclass(frozen=True, slots=True)
class UploadEvent:
    """The upload-relevant fields of one recording callback (301-312).

    ``at`` is the event's own time (``EventMsTs``/``EventTs``) when TRTC sent it; the state
    machine falls back to the time the callback was received.
    """

    event_type: int
    status: int | None = None
    code: str = ""  # 308: the storage's Code
    message: str = ""  # 308: Message; 311: Errmsg; 309: the image URL (without its query)
    files: tuple[UploadFile, ...] = ()
    at: float | None = None


@dataclass(frozen=True, slots=True)
class UploadState:
    """A task's upload facts and the state derived from them (see the module docstring).

    ``vod_committed``/``vod_commit_failed`` remember 311 outcomes and ``vod_stopped_at`` a
    312 with 0, because a 312 means "finished" only together with a successful 311, which may
    arrive after it.
    """

    state: UploadPhase = UploadPhase.NONE
    files: tuple[UploadFile, ...] = ()
    failures: tuple[UploadFailure, ...] = ()  # oldest first, the newest MAX_FAILURES
    started_at: float | None = None
    stopped_at: float | None = None
    finished_at: float | None = None  # the latest finish that counts (see ``finish_at``)
    cos_finished_at: float | None = None  # COS: 305 with 0 or 2 (HLS), 310 with 0 (MP4)
    vod_stopped_at: float | None = None
    vod_committed: bool = False
    vod_commit_failed: bool = False

    @property
    def failure(self) -> UploadFailure | None:
        """The failure to name: the first one since the latest finish (the cause, where later
        ones are often its consequences, e.g. a 308 then a 305 "stranded"), else the latest."""
        finished = self.finished_at
        for failure in self.failures:
            if finished is None or failure.at >= finished:
                return failure
        return self.failures[-1] if self.failures else None

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "files": [f.to_json() for f in self.files],
            "failure": None if self.failure is None else self.failure.to_json(),
            "failures": [f.to_json() for f in self.failures],
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "finished_at": self.finished_at,
            "cos_finished_at": self.cos_finished_at,
            "vod_stopped_at": self.vod_stopped_at,
            "vod_committed": self.vod_committed,
            "vod_commit_failed": self.vod_commit_failed,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> UploadState:
        """The state stored by ``to_json``; the derived ``state`` is recomputed."""
        if not data:
            return NO_UPLOAD

        def opt(name: str) -> float | None:
            value = data.get(name)
            return None if value is None else float(value)

        return _derive(
            cls(
                files=tuple(UploadFile.from_json(f) for f in data.get("files") or ()),
                failures=tuple(UploadFailure.from_json(f) for f in data.get("failures") or ()),
                started_at=opt("started_at"),
                stopped_at=opt("stopped_at"),
                cos_finished_at=opt("cos_finished_at"),
                vod_stopped_at=opt("vod_stopped_at"),
                vod_committed=bool(data.get("vod_committed")),
                vod_commit_failed=bool(data.get("vod_commit_failed")),
            )
        )


NO_UPLOAD: Final = UploadState()


@dataclass(frozen=True, slots=True)
class UploadChange:
    """The result of one event: the new state, and the outcome it entered (if any)."""

    state: UploadState
    change: Change | None
    changed: bool  # any fact changed (worth persisting)


# ------------------------------------------------------------------------------ the rules


def classify(event: UploadEvent) -> str | None:
    """``started``, ``failure``, ``finish``, ``vod_finish``, ``stopped`` or None (no effect)."""
    kind, status = event.event_type, event.status
    ok = status in (None, 0)
    if kind == RECORDER_STARTED:
        return None if ok else "failure"
    if kind == RECORDER_STOPPED:
        return "stopped"
    if kind == UPLOAD_STARTED:
        return "started" if ok else "failure"
    if kind in (FIRST_M3U8, FIRST_SLICE):
        return "started"
    if kind == HLS_STOPPED:
        return "failure" if status == 1 else "finish"  # 0 all uploaded, 2 recovered later
    if kind in (UPLOAD_ERROR, IMAGE_DOWNLOAD_FAILED):
        return "failure"
    if kind == MP4_STOPPED:
        return "finish" if ok else "failure"
    if kind == VOD_COMMIT:
        return "started" if ok else "failure"
    if kind == VOD_STOPPED:
        return "vod_finish" if ok else "failure"
    return None  # 306 (task migrated) and anything unknown


def failure_of(event: UploadEvent, at: float) -> UploadFailure:
    """The failure a failing event reports, with a code and message always filled in."""
    status = event.status
    code = event.code or ("" if status is None else f"Status {status}")
    meaning = FAILURE_MEANINGS.get((event.event_type, status)) or FAILURE_MEANINGS.get(
        (event.event_type, None), ""
    )
    if event.message and meaning and event.event_type != UPLOAD_ERROR:
        message = f"{meaning}: {event.message}"
    else:
        message = event.message or meaning or "failed"
    return UploadFailure(at=at, event_type=event.event_type, code=code, message=message)


def _min(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


def _max(a: float | None, b: float) -> float:
    return b if a is None else max(a, b)


def merge_files(old: Iterable[UploadFile], new: Iterable[UploadFile]) -> tuple[UploadFile, ...]:
    """The union of two file lists, one entry per file identity, bounded, in a fixed order."""
    by_identity: dict[tuple[str, str, str, str, str], UploadFile] = {}
    for entry in (*old, *new):
        known = by_identity.get(entry.identity)
        # Two reports of one file differing elsewhere: keep the larger, whatever came first.
        by_identity[entry.identity] = entry if known is None else max(known, entry)
    return tuple(sorted(by_identity.values())[:MAX_FILES])


def finish_at(state: UploadState) -> float | None:
    """The latest event that says the files are in storage, or None."""
    vod = state.vod_stopped_at
    if vod is not None and not (state.vod_committed and not state.vod_commit_failed):
        vod = None
    times = [t for t in (state.cos_finished_at, vod) if t is not None]
    return max(times) if times else None


def _derive(state: UploadState) -> UploadState:
    finished = finish_at(state)
    latest = state.failures[-1] if state.failures else None
    if latest is not None and (finished is None or latest.at >= finished):
        phase = UploadPhase.FAILED
    elif finished is not None:
        phase = UploadPhase.DONE
    elif state.started_at is not None:
        phase = UploadPhase.UPLOADING
    else:
        phase = UploadPhase.NONE
    if phase is state.state and finished == state.finished_at:
        return state
    return replace(state, state=phase, finished_at=finished)


def apply_upload_event(state: UploadState, event: UploadEvent, received_at: float) -> UploadChange:
    """The state after ``event``; ``state`` is not changed (records are immutable).

    Every fact merges so that order and repetition do not matter: the earliest start and stop,
    the latest finish, the union of failures (the newest kept) and of files.
    """
    at = event.at if event.at is not None else received_at
    kind = classify(event)
    new = state
    if event.files:
        files = merge_files(state.files, event.files)
        if files != state.files:
            new = replace(new, files=files)
    if kind == "started":
        new = replace(new, started_at=_min(new.started_at, at))
    elif kind == "stopped":
        new = replace(new, stopped_at=_min(new.stopped_at, at))
    elif kind == "failure":
        failure = failure_of(event, at)
        if failure not in new.failures:
            failures = tuple(sorted((*new.failures, failure))[-MAX_FAILURES:])
            if failures != new.failures:
                new = replace(new, failures=failures)
    elif kind == "finish":
        new = replace(new, cos_finished_at=_max(new.cos_finished_at, at))
    elif kind == "vod_finish":
        new = replace(new, vod_stopped_at=_max(new.vod_stopped_at, at))
    if event.event_type == VOD_COMMIT:
        if kind == "started" and not new.vod_committed:
            new = replace(new, vod_committed=True)
        elif kind == "failure" and not new.vod_commit_failed:
            new = replace(new, vod_commit_failed=True)
    new = _derive(new)
    return UploadChange(new, change_between(state.state, new.state), new != state)


def note_stopped(state: UploadState, at: float) -> UploadState:
    """The task stopped (a 302, or a poll that found it Exited, Ended or Expired) at ``at``."""
    if state.stopped_at is not None and state.stopped_at <= at:
        return state
    return replace(state, stopped_at=at)


def change_between(old: UploadPhase, new: UploadPhase) -> Change | None:
    if old is new:
        return None
    if new is UploadPhase.FAILED:
        return Change.FAILED
    if new is UploadPhase.DONE:
        return Change.RECOVERED if old is UploadPhase.FAILED else Change.DONE
    if new is UploadPhase.UPLOADING and old is UploadPhase.NONE:
        return Change.STARTED
    return None


def upload_overdue(
    state: UploadState, now: float, deadline: float, stopped_at: float | None = None
) -> bool:
    """The task stopped (at ``stopped_at``, by default the stop the events reported), its
    upload had started, and nothing finished (or failed) within ``deadline`` seconds."""
    stopped = state.stopped_at if stopped_at is None else stopped_at
    return state.state is UploadPhase.UPLOADING and stopped is not None and now - stopped > deadline
