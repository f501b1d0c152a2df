"""A task's stored fields, spelt once for both stores: names, order, encoding, decoding.

A task is stored in two parts: its state (identity, status, upload state; ``STATE_FIELDS``) and
its health (``HEALTH_FIELDS``), apart so that a health write never rewrites a status. SQLite
keeps the values of both in one row of columns named as the fields (dicts as JSON text, the
last answer in the compact layout of ``answer_text``), Redis each part as one JSON list (the
last answer as ``Task.last_response``). Both read back through one ``TaskDecoder``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final

from monitor.models import MAX_WALL_TIME, MIN_WALL_TIME, Kind, Status, Task, answer_fields
from monitor.store.codec.checks import checked_task, decoded_upload, note_repair
from monitor.store.codec.values import SOURCES, STATUSES, dumps, loads_dict
from monitor.uploads import NO_UPLOAD, UploadState

__all__ = [
    "HEALTH_COLUMNS",
    "HEALTH_FIELDS",
    "NO_HEALTH",
    "STATE_COLUMNS",
    "STATE_FIELDS",
    "TASK_COLUMNS",
    "TASK_FIELDS",
    "Column",
    "TaskDecoder",
    "answer_text",
    "health_values",
    "padded",
    "state_values",
]


@dataclass(frozen=True, slots=True)
class Column:
    """One stored field of a task.

    ``name`` is the ``Task`` attribute it holds and the SQLite column; ``sql`` the column's
    type as SQLite declares it (a file that lacks the column gains it so when opened, so a new
    nullable field needs no migration). The value stored is the attribute's, or what
    ``encode`` makes of it; ``TaskDecoder.task`` reads it back. ``default`` is a health
    field's value while a task's health was never written. A new field goes at the end of its
    part (records written earlier are ``padded``).
    """

    name: str
    sql: str
    encode: Callable[[Any], Any] | None = None
    default: Any = None
    attr: str = ""  # the attribute read to encode, when not ``name``


def _value(member: Any) -> Any:
    return member.value


STATE_COLUMNS: Final = (
    Column("sdk_app_id", "INTEGER NOT NULL"),
    Column("task_id", "TEXT NOT NULL"),
    Column("region", "TEXT NOT NULL"),
    Column("account", "TEXT NOT NULL"),
    Column("labels", "TEXT NOT NULL"),
    Column("interval", "REAL"),
    Column("registered_at", "REAL NOT NULL"),
    Column("source", "TEXT NOT NULL", encode=_value),
    Column("status", "TEXT NOT NULL", encode=_value),
    Column("status_since", "REAL NOT NULL"),
    Column("extra", "TEXT NOT NULL"),
    Column("ended_at", "REAL"),
    # The upload state as JSON, None when none came.
    Column("upload", "TEXT", encode=lambda u: None if u == NO_UPLOAD else u.to_json()),
    Column("recorder_key", "TEXT"),
    # None stored: a cloud recording.
    Column("kind", "TEXT", encode=lambda k: None if k is Kind.CLOUD else k.value),
)
HEALTH_COLUMNS: Final = (
    Column("consecutive_errors", "INTEGER NOT NULL", default=0),
    Column("last_error_code", "TEXT"),
    Column("last_error_at", "REAL"),
    Column("last_success_at", "REAL"),
    Column("last_request_id", "TEXT"),
    Column("storage_files", "INTEGER"),
    # What ``health_values``' ``answer`` makes of the task (read in its place: cheap).
    Column("last_response", "TEXT", attr="answer_status"),
    Column("observed_at", "REAL NOT NULL DEFAULT 0", default=0.0),
    Column("answer_recorder_key", "TEXT"),
)
# What ``TaskDecoder.task`` reads: the state's values, then the health's.
TASK_COLUMNS: Final = STATE_COLUMNS + HEALTH_COLUMNS
STATE_FIELDS: Final = tuple(c.name for c in STATE_COLUMNS)
HEALTH_FIELDS: Final = tuple(c.name for c in HEALTH_COLUMNS)
TASK_FIELDS: Final = STATE_FIELDS + HEALTH_FIELDS
# The health of a task whose health was never written.
NO_HEALTH: Final[tuple[Any, ...]] = tuple(c.default for c in HEALTH_COLUMNS)

_LO: Final = MIN_WALL_TIME
_HI: Final = MAX_WALL_TIME
_NEVER: Final = 0.0
_NO_ANSWER: Final[tuple[None, None, None]] = (None, None, None)


def _getter(columns: Sequence[Column]) -> Callable[[Task], tuple[Any, ...]]:
    return attrgetter(*(c.attr or c.name for c in columns))


def _encoders(columns: Sequence[Column]) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
    return tuple((i, c.encode) for i, c in enumerate(columns) if c.encode is not None)


_STATE_OF: Final = _getter(STATE_COLUMNS)
_STATE_ENCODERS: Final = _encoders(STATE_COLUMNS)
_HEALTH_OF: Final = _getter(HEALTH_COLUMNS)
_ANSWER_AT: Final = HEALTH_FIELDS.index("last_response")


def state_values(task: Task) -> list[Any]:
    """The task's state in ``STATE_FIELDS`` order (the upload state as JSON, None when none)."""
    values = list(_STATE_OF(task))
    for i, encode in _STATE_ENCODERS:
        values[i] = encode(values[i])
    return values


def health_values(task: Task, answer: Callable[[Task], object]) -> list[Any]:
    """The task's health in ``HEALTH_FIELDS`` order; ``answer`` stores its last answer."""
    values = list(_HEALTH_OF(task))
    values[_ANSWER_AT] = answer(task)
    return values


# --- the last answer as text ------------------------------------------------------------------

_OWN_PREFIX: Final = '{"Status":"'
_OWN_REQUEST: Final = '","RequestId":'
_OWN_FILES: Final = ',"StorageFileList":'


def answer_text(task: Task) -> str | None:
    """The kept fields of the last answer as compact JSON text (SQLite's ``last_response``).

    RequestId comes before StorageFileList, unlike in Tencent's answers (which earlier versions
    stored whole): ``answer_of_text`` reads this layout without a JSON parser.
    """
    if task.answer_status is None:
        return None
    return (
        f'{{"Status":"{task.answer_status.value}",'
        f'"RequestId":{dumps(task.answer_request_id)},'
        f'"StorageFileList":{task.answer_files or "null"}}}'
    )


def answer_of_text(text: str) -> tuple[Status | None, str | None, str | None]:
    """Status, RequestId and the StorageFileList summary of a stored answer's text.

    The layout ``answer_text`` writes is read by slicing (a JSON parse per task was a good
    part of a restart at 100,000 tasks); anything else (the whole answers earlier versions
    stored) is parsed and cut down to what is kept now.
    """
    head, found, files = text.partition(_OWN_FILES)
    status_text, found_request, request = head[len(_OWN_PREFIX) :].partition(_OWN_REQUEST)
    status = STATUSES.get(status_text)
    if (
        not found
        or not found_request
        or status is None
        or not text.startswith(_OWN_PREFIX)
        or files[-1:] != "}"
    ):
        return answer_fields(json.loads(text))
    if request == "null":
        request_id = None
    elif len(request) >= 2 and request[0] == request[-1] == '"' and "\\" not in request:
        request_id = request[1:-1]
    else:  # escapes: leave them to the parser
        return answer_fields(json.loads(text))
    files = files[:-1]
    return status, request_id, None if files == "null" else files


def _text_or_none(value: object) -> str | None:
    return value if type(value) is str and value else None


def padded(values: Sequence[Any], fields: Sequence[str]) -> list[Any]:
    """A stored part of a task, filled up with None for the fields a record written by an
    earlier version lacks (those fields default to None)."""
    out = list(values)
    if len(out) < len(fields):
        out.extend([None] * (len(fields) - len(out)))
    return out


# --- values -> tasks --------------------------------------------------------------------------


class TaskDecoder:
    """Stored values (``TASK_FIELDS`` order) to tasks, for one load of one store.

    With ``texts`` (SQLite), labels, ``extra``, the upload state and the last answer come as
    JSON text, and what many tasks hold equal is shared: SQLite hands out a new object for every
    value of every row, and at 100,000 tasks the copies of the same account, region,
    application id and label set were a large part of the table. Label and ``extra`` dicts are
    shared between tasks that hold equal ones (keyed by their stored text, which also skips
    decoding it again): records are never changed in place, only replaced, so sharing them is
    safe. Without ``texts`` (Redis) the values come decoded already.

    Every time a date can show is checked (inline, the common case, for load speed), else
    repaired by ``checked_task``: a stored time out of range never reaches a reader.
    """

    __slots__ = ("_dicts", "_ints", "_store", "_strings", "_texts", "_times")

    def __init__(self, store: str, *, texts: bool) -> None:
        self._store = store
        self._texts = texts
        self._dicts: dict[str, dict[str, Any]] = {"{}": {}}
        self._ints: dict[int, int] = {}
        self._strings: dict[str, str] = {}
        # Registration times: a file's or a bulk request's tasks share one.
        self._times: dict[float, float] = {}

    def _dict(self, text: str) -> dict[str, Any]:
        found = self._dicts.get(text)
        if found is None:
            shared = self._strings.setdefault
            found = self._dicts[text] = {
                shared(k, k): shared(v, v) if type(v) is str else v
                for k, v in loads_dict(text).items()
            }
        return found

    def _upload(self, text: str, record: str) -> UploadState:
        try:
            data: object = json.loads(text)
        except ValueError:
            data = text
        return decoded_upload(data, self._store, record)

    def task(self, values: Sequence[Any]) -> Task:
        """The task the values hold, its unreadable times unknown; raises if unreadable."""
        (
            sdk_app_id,
            task_id,
            region,
            account,
            labels,
            interval,
            registered_at,
            source,
            status,
            status_since,
            extra,
            ended_at,
            upload,
            recorder_key,
            kind,
            consecutive_errors,
            last_error_code,
            last_error_at,
            last_success_at,
            last_request_id,
            storage_files,
            last_response,
            observed_at,
            answer_recorder_key,
        ) = values
        if type(sdk_app_id) is not int or type(task_id) is not str:
            raise TypeError("task identity")
        if self._texts:
            strings = self._strings
            sdk_app_id = self._ints.setdefault(sdk_app_id, sdk_app_id)
            region = strings.setdefault(region, region)
            account = strings.setdefault(account, account)
            if last_error_code is not None:
                last_error_code = strings.setdefault(last_error_code, last_error_code)
            registered_at = self._times.setdefault(registered_at, registered_at)
            dicts = self._dicts
            label_dict = dicts.get(labels)
            if label_dict is None:
                label_dict = self._dict(labels)
            extra_dict = dicts.get(extra)
            if extra_dict is None:
                extra_dict = self._dict(extra)
            answer = _NO_ANSWER if last_response is None else answer_of_text(last_response)
            state = NO_UPLOAD if upload is None else self._upload(upload, f"{sdk_app_id}/{task_id}")
            observed_at = observed_at or _NEVER
        else:
            label_dict, extra_dict = labels, extra
            answer = answer_fields(last_response)
            state = decoded_upload(upload, self._store, f"{sdk_app_id}/{task_id}")
        answer_status, answer_request_id, answer_files = answer
        if answer_request_id == last_request_id:
            answer_request_id = last_request_id
        task = Task(
            sdk_app_id,
            task_id,
            region,
            account,
            label_dict,
            interval,
            registered_at,
            SOURCES[source],
            STATUSES[status],
            status_since,
            consecutive_errors,
            last_error_code,
            last_error_at,
            last_success_at,
            last_request_id,
            storage_files,
            answer_status,
            answer_request_id,
            answer_files,
            extra_dict,
            state,
            ended_at,
            observed_at,
            _text_or_none(recorder_key),
            _text_or_none(answer_recorder_key),
            Kind.CLOUD if kind is None else Kind(kind),
        )
        try:
            readable = (
                upload is None
                and _LO <= registered_at <= _HI
                and _LO <= status_since <= _HI
                and (last_error_at is None or _LO <= last_error_at <= _HI)
                and (last_success_at is None or _LO <= last_success_at <= _HI)
                and (ended_at is None or _LO <= ended_at <= _HI)
            )
        except TypeError:
            readable = False
        return task if readable else checked_task(task, self._store)

    def tasks(self, rows: Iterable[Sequence[Any]], record: Callable[[Any], str]) -> list[Task]:
        """The readable tasks of ``rows``; an unreadable one is left out (logged once, named
        by ``record(row)``), never a crash."""
        out: list[Task] = []
        append, task = out.append, self.task
        for row in rows:
            try:
                append(task(row))
            except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
                note_repair(self._store, record(row), "record", type(exc).__name__)
        return out
