"""Core records shared by every part of the daemon.

Data flows one way: registry -> scheduler -> limiter -> client -> tracker -> store ->
metrics and alerts.
These types are what travels along that path; they carry no I/O.
"""

from __future__ import annotations

import enum
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from monitor.uploads import NO_UPLOAD, UploadState

REGIONS: tuple[str, ...] = (
    "ap-beijing",
    "ap-guangzhou",
    "ap-mumbai",
    "ap-shanghai",
    "ap-singapore",
)


# The span of times a record may hold: what a date can show (up to the end of year 9999, the
# last ``datetime`` knows). A stored time outside it (a corrupted row, a value written by a
# version that let such a time in) is unknown, never a crash in whatever formats it.
MIN_WALL_TIME: float = 0.0
MAX_WALL_TIME: float = 253402300799.0  # 9999-12-31T23:59:59Z


def wall_time(value: object) -> float | None:
    """``value`` as a wall-clock time (seconds since the epoch), or None when it cannot be one:
    not a number, not finite, before 1970 or after year 9999."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not MIN_WALL_TIME <= value <= MAX_WALL_TIME:  # NaN fails too
        return None
    return float(value)


class Status(enum.StrEnum):
    """Last known status of a recording task (docs/polling.md)."""

    PENDING = "Pending"
    IDLE = "Idle"
    IN_PROGRESS = "InProgress"
    EXITED = "Exited"
    ENDED = "Ended"
    EXPIRED = "Expired"
    REMOVED = "Removed"


# Statuses after which a task is no longer polled and is purged after retention.
FINAL_STATUSES: frozenset[Status] = frozenset({Status.ENDED, Status.EXPIRED, Status.REMOVED})

# Statuses DescribeCloudRecording itself reports.
API_STATUSES: frozenset[Status] = frozenset({Status.IDLE, Status.IN_PROGRESS, Status.EXITED})


class Kind(enum.StrEnum):
    """What a task records, and so how it is polled (docs/trtc-api.md)."""

    CLOUD = "cloud"  # a cloud recording: DescribeCloudRecording
    WEB = "web"  # a web-page recording: DescribeWebRecord, by TaskId


class Outcome(enum.StrEnum):
    """Classification of one API attempt (docs/trtc-api.md)."""

    OK = "ok"
    ENDED = "ended"
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    AUTH = "auth"
    INVALID = "invalid"


# Outcomes that count as a failed poll for task health; throttles are the monitor's problem.
ERROR_OUTCOMES: frozenset[Outcome] = frozenset({Outcome.TRANSIENT, Outcome.AUTH, Outcome.INVALID})


class Source(enum.StrEnum):
    """Where knowledge of a transition came from."""

    POLL = "poll"
    CALLBACK = "callback"
    API = "api"


class TaskKey(NamedTuple):
    """A task is identified by its application and its TaskId.

    A tuple, so that hashing and comparing a key (every lookup in the table, the scheduler and
    the alert state, several per poll) run in C: the frozen dataclass it was computed both in
    Python, about a third of a restart's dict work at 100,000 tasks. Ordered by application,
    then TaskId.
    """

    sdk_app_id: int
    task_id: str

    def __str__(self) -> str:
        return f"{self.sdk_app_id}/{self.task_id}"


@dataclass(slots=True)
class Task:
    """A registered task: its identity, where to poll it, its status and its health."""

    sdk_app_id: int
    task_id: str
    region: str
    account: str
    labels: dict[str, str] = field(default_factory=dict)
    interval: float | None = None  # seconds; None means "by status, else the default"
    registered_at: float = 0.0
    source: Source = Source.API
    status: Status = Status.PENDING
    status_since: float = 0.0
    # health, kept beside the status: errors never change the status
    consecutive_errors: int = 0
    last_error_code: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
    last_request_id: str | None = None
    storage_files: int | None = None
    # The last DescribeCloudRecording answer, kept as the three fields the API shows of it
    # (``last_response``) rather than whole: at 100,000 tasks the decoded answers were most of
    # the daemon's memory. The request id is usually the very string in ``last_request_id``; the
    # file list is JSON text because only the single-task API ever decodes it.
    answer_status: Status | None = None
    answer_request_id: str | None = None
    answer_files: str | None = None
    # facts learnt from callbacks (files, VOD ids, leave code)
    extra: dict[str, Any] = field(default_factory=dict)
    # where its files went (upload callbacks 301-312); immutable, replaced on every change
    upload: UploadState = NO_UPLOAD
    ended_at: float | None = None  # when it entered a final status; drives retention
    # When the newest recorded observation of the status was made, by the wall clock, for
    # people: a poll's send time or a callback's event time. Never used to order observations.
    observed_at: float = 0.0
    # The RecorderKey of one recording of a relay recording task (started through
    # StartPublishCdnStream with McuRecordParams.RecordKey): sent with every poll when set.
    recorder_key: str | None = None
    # The RecorderKey the last DescribeCloudRecording answer returned (None when it had none).
    answer_recorder_key: str | None = None
    kind: Kind = Kind.CLOUD
    # This process's monotonic clock (``time.monotonic``), in memory only: never stored, never
    # compared, so a step of the wall clock can neither reorder observations nor age a task.
    # The newest recorded observation of the status (a poll's send time, a callback's arrival,
    # or the moment a record another replica changed was taken from the store): an answer to a
    # poll sent before it is older news. A record read at start-up is older than any poll.
    seen_mono: float = field(default=-math.inf, repr=False, compare=False)
    # The last successful poll (else the registration) and the start of the status: what the
    # stale and idle alerts measure from. None in a record read from the store until this
    # process first polls it (``with_monotonic_stamps``); until then, ages are taken from the
    # wall-clock stamps.
    polled_mono: float | None = field(default=None, repr=False, compare=False)
    since_mono: float | None = field(default=None, repr=False, compare=False)
    # ``upload.stopped_at`` (what the upload deadline counts from), converted when it was set.
    stopped_mono: float | None = field(default=None, repr=False, compare=False)
    # The key, made once per record: the table, the scheduler and every lookup share it.
    # An argument only so that ``dataclasses.replace`` hands it on to the new record.
    _key: TaskKey | None = field(default=None, repr=False, compare=False)

    def copy(self) -> Task:
        """A new record with the same values (what ``dataclasses.replace(task)`` makes, about
        twenty times faster: the tracker copies a record on every poll it applies)."""
        new: Task = object.__new__(Task)
        new.sdk_app_id = self.sdk_app_id
        new.task_id = self.task_id
        new.region = self.region
        new.account = self.account
        new.labels = self.labels
        new.interval = self.interval
        new.registered_at = self.registered_at
        new.source = self.source
        new.status = self.status
        new.status_since = self.status_since
        new.consecutive_errors = self.consecutive_errors
        new.last_error_code = self.last_error_code
        new.last_error_at = self.last_error_at
        new.last_success_at = self.last_success_at
        new.last_request_id = self.last_request_id
        new.storage_files = self.storage_files
        new.answer_status = self.answer_status
        new.answer_request_id = self.answer_request_id
        new.answer_files = self.answer_files
        new.extra = self.extra
        new.upload = self.upload
        new.ended_at = self.ended_at
        new.observed_at = self.observed_at
        new.recorder_key = self.recorder_key
        new.answer_recorder_key = self.answer_recorder_key
        new.kind = self.kind
        new.seen_mono = self.seen_mono
        new.polled_mono = self.polled_mono
        new.since_mono = self.since_mono
        new.stopped_mono = self.stopped_mono
        new._key = self._key
        return new

    @property
    def key(self) -> TaskKey:
        key = self._key
        if key is None or key.sdk_app_id != self.sdk_app_id or key.task_id != self.task_id:
            key = self._key = TaskKey(self.sdk_app_id, self.task_id)
        return key

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def last_response(self) -> dict[str, Any] | None:
        """The last DescribeCloudRecording answer as the API shows it; None before the first."""
        if self.answer_status is None:
            return None
        return {
            "Status": self.answer_status.value,
            "StorageFileList": None if self.answer_files is None else json.loads(self.answer_files),
            "RequestId": self.answer_request_id,
        }


def with_monotonic_stamps(task: Task, wall_now: float, mono_now: float) -> Task:
    """Give a record read from the store the monotonic stamps it cannot carry (in place: call
    it before the record is shared), converted once from its wall-clock ones as of now.

    A stamp in the future of this host's clock (another replica's clock ahead) counts as now.
    """
    last = task.last_success_at
    if last is None:
        last = task.registered_at
    task.polled_mono = mono_now - max(0.0, wall_now - last)
    task.since_mono = mono_now - max(0.0, wall_now - task.status_since)
    task.stopped_mono = mono_stamp(task.upload.stopped_at, wall_now, mono_now)
    return task


def mono_stamp(at: float | None, wall_now: float, mono_now: float) -> float | None:
    """A wall-clock time (ours or TRTC's) on the monotonic clock, as of now; never later."""
    return None if at is None else mono_now - max(0.0, wall_now - at)


def monotonic_beside(clock: Callable[[], float]) -> Callable[[], float]:
    """The monotonic clock to go with a wall clock: ``time.monotonic`` beside ``time.time``;
    a manual clock (a test's) is its own monotonic clock."""
    return time.monotonic if clock is time.time else clock


# The documented fields of a StorageFile (TRTC.md): what the summary of an answer keeps.
STORAGE_FILE_FIELDS: tuple[str, ...] = ("UserId", "FileName", "TrackType", "BeginTimeStamp")

_compact = json.JSONEncoder(separators=(",", ":")).encode


def storage_file_summary(files: object) -> tuple[int | None, str | None]:
    """An answer's ``StorageFileList`` as (entry count, JSON text of the entries' documented
    fields); (None, None) when the answer had no list."""
    if not isinstance(files, list):
        return None, None
    kept = [
        {name: entry[name] for name in STORAGE_FILE_FIELDS if name in entry}
        for entry in files
        if isinstance(entry, dict)
    ]
    return len(kept), _compact(kept)


def answer_fields(response: object) -> tuple[Status | None, str | None, str | None]:
    """What a task keeps of a DescribeCloudRecording answer (or of ``Task.last_response``, as
    a store holds it): its status, RequestId and StorageFileList summary; all None when it has
    no status."""
    if not isinstance(response, dict):
        return None, None, None
    raw = response.get("Status")
    try:
        status = Status(raw) if isinstance(raw, str) else None
    except ValueError:
        status = None
    if status is None:
        return None, None, None
    request_id = response.get("RequestId")
    _, files = storage_file_summary(response.get("StorageFileList"))
    return status, request_id if isinstance(request_id, str) else None, files


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of status, as written to the store before anything acts on it."""

    sdk_app_id: int
    task_id: str
    from_status: Status
    to_status: Status
    at: float
    source: Source
    request_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    seq: int | None = None  # assigned by the store

    @property
    def key(self) -> TaskKey:
        return TaskKey(self.sdk_app_id, self.task_id)
