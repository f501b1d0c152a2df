"""The store codec: every record's fields survive both stores' encodings, the on-disk and
in-Redis values are byte for byte what earlier versions wrote, and times no date can show are
repaired on the way back (required times become 0.0, optional ones None)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.models import (
    MAX_WALL_TIME,
    Kind,
    Source,
    Status,
    Task,
    TaskKey,
    Transition,
    storage_file_summary,
)
from monitor.store.base import AlertRecord
from monitor.store.codec import (
    HEALTH_FIELDS,
    NO_HEALTH,
    STATE_FIELDS,
    TASK_FIELDS,
    TaskDecoder,
    alert_of,
    alert_values,
    check_transition,
    dumps,
    health_values,
    state_values,
    transition_of,
    transition_values,
)
from monitor.store.redis import values as redis_values
from monitor.store.sqlite import rows as sqlite_rows
from monitor.store.sqlite.schema import MIGRATIONS, statements
from monitor.uploads import NO_UPLOAD
from tests.store.helpers import alert, full_task, move


def earlier_task() -> Task:
    """``full_task()`` without the fields earlier versions did not have."""
    return dataclasses.replace(
        full_task(), recorder_key=None, answer_recorder_key=None, kind=Kind.CLOUD
    )


# --- what earlier versions wrote for full_task() and its records (captured from them) -------

REDIS_STATE = (
    b'[1400000001,"\\u4efb\\u52a1-42 \\u2713","ap-singapore'
    b'","\\u8d26\\u53f7-b",{"room":"\\u623f\\u95f4-42","cust'
    b'omer":"acme","empty":"","emoji":"\\ud83c\\udfa5"},7.'
    b'5,1700000000.125,"callback","Ended",1700000100.5,{'
    b'"leave_code":2,"files":["x.mp4"],"vod":{"FileId":"'
    b'5285890781763144364"}},1700000100.5,{"state":"fail'
    b'ed","files":[{"kind":"cos","name":"\\u6587\\u4ef6.m3'
    b'u8","begin_ms":1}],"failure":{"event_type":308,"ev'
    b'ent":"upload error","code":"InvalidParameter","mes'
    b'sage":"\\u5bc6\\u94a5 invalid","at":1700000050.25},"'
    b'failures":[{"event_type":308,"event":"upload error'
    b'","code":"InvalidParameter","message":"\\u5bc6\\u94a'
    b'5 invalid","at":1700000050.25}],"started_at":null,'
    b'"stopped_at":null,"finished_at":null,"cos_finished'
    b'_at":null,"vod_stopped_at":null,"vod_committed":fa'
    b'lse,"vod_commit_failed":false}]'
)
REDIS_HEALTH = (
    b'[2,"InternalError",1700000090.0,1700000080.0,"6b0b'
    b'1c4e-\\u8bf7\\u6c42",1,{"Status":"Exited","StorageFi'
    b'leList":[{"UserId":"\\u7528\\u6237","FileName":"a.m3'
    b'u8","TrackType":"audio_video"}],"RequestId":"6b0b1'
    b'c4e-\\u8bf7\\u6c42"},1700000100.25]'
)
SQLITE_TASK = {
    "sdk_app_id": 1400000001,
    "task_id": "任务-42 ✓",
    "region": "ap-singapore",
    "account": "账号-b",
    "labels": (
        '{"room":"\\u623f\\u95f4-42","customer":"acme","empty":"","emoji":"\\ud83c\\udfa5"}'
    ),
    "interval": 7.5,
    "registered_at": 1700000000.125,
    "source": "callback",
    "status": "Ended",
    "status_since": 1700000100.5,
    "consecutive_errors": 2,
    "last_error_code": "InternalError",
    "last_error_at": 1700000090.0,
    "last_success_at": 1700000080.0,
    "last_request_id": "6b0b1c4e-请求",
    "storage_files": 1,
    "last_response": (
        '{"Status":"Exited","RequestId":"6b0b1c4e-\\u8bf7\\u6'
        'c42","StorageFileList":[{"UserId":"\\u7528\\u6237","'
        'FileName":"a.m3u8","TrackType":"audio_video"}]}'
    ),
    "extra": '{"leave_code":2,"files":["x.mp4"],"vod":{"FileId":"5285890781763144364"}}',
    "ended_at": 1700000100.5,
    "observed_at": 1700000100.25,
    "upload": (
        '{"state":"failed","files":[{"kind":"cos","name":"\\'
        'u6587\\u4ef6.m3u8","begin_ms":1}],"failure":{"event'
        '_type":308,"event":"upload error","code":"InvalidP'
        'arameter","message":"\\u5bc6\\u94a5 invalid","at":17'
        '00000050.25},"failures":[{"event_type":308,"event"'
        ':"upload error","code":"InvalidParameter","message'
        '":"\\u5bc6\\u94a5 invalid","at":1700000050.25}],"sta'
        'rted_at":null,"stopped_at":null,"finished_at":null'
        ',"cos_finished_at":null,"vod_stopped_at":null,"vod'
        '_committed":false,"vod_commit_failed":false}'
    ),
}
REDIS_TRANSITION = (
    b'[1400000001,"\\u4efb\\u52a1-42 \\u2713","Ended","Expi'
    b'red",1700000200.5,"poll","rq",{"why":"x"}]'
)
SQLITE_TRANSITION = (
    1400000001,
    "任务-42 ✓",
    "Ended",
    "Expired",
    1700000200.5,
    "poll",
    "rq",
    '{"why":"x"}',
)
REDIS_ALERT = [
    b"fp-1",
    (
        b'["RecordingTaskExited",{"alertname":"RecordingTask'
        b'Exited","severity":"critical","room":"\\u623f\\u95f4'
        b'"},{"summary":"task exited","description":"InProgr'
        b'ess -> Exited"},"firing",1000.0,1002.0,[1400000001'
        b',"\\u4efb\\u52a1-42 \\u2713"],{"am":1001.5},["a","b"]'
        b"]"
    ),
    b"1400000001:\xe4\xbb\xbb\xe5\x8a\xa1-42 \xe2\x9c\x93",
]
SQLITE_ALERT = (
    "fp-1",
    "RecordingTaskExited",
    1400000001,
    "任务-42 ✓",
    ('{"alertname":"RecordingTaskExited","severity":"critical","room":"\\u623f\\u95f4"}'),
    '{"summary":"task exited","description":"InProgress -> Exited"}',
    "firing",
    1000.0,
    1002.0,
    '{"am":1001.5}',
    '["a","b"]',
)

# --- strategies -----------------------------------------------------------------------------

texts = st.text(max_size=12)
recorder_keys = st.none() | st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True)
times = st.floats(min_value=0.0, max_value=MAX_WALL_TIME, allow_nan=False)
optional_times = st.none() | times
# Times no date can show: before 1970, after 9999, infinite, not a number, not a time at all.
bad_times = st.one_of(
    st.floats(max_value=-1e-3, allow_nan=False),
    st.floats(min_value=MAX_WALL_TIME + 1, allow_nan=False),
    st.just(float("nan")),
    st.just("2024-01-01"),
)
json_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), texts, st.lists(texts, max_size=3)
)


@st.composite
def tasks(draw: st.DrawFn) -> Task:
    answer_status = draw(st.none() | st.sampled_from(Status))
    answer_request_id = answer_files = None
    if answer_status is not None:
        answer_request_id = draw(st.none() | texts)
        files = draw(
            st.none()
            | st.lists(st.fixed_dictionaries({"UserId": texts, "FileName": texts}), max_size=3)
        )
        answer_files = storage_file_summary(files)[1]
    return Task(
        sdk_app_id=draw(st.integers(1, 2**32)),
        task_id=draw(texts),
        region=draw(texts),
        account=draw(texts),
        labels=draw(st.dictionaries(texts, texts, max_size=3)),
        interval=draw(st.none() | st.floats(0.1, 86400.0)),
        registered_at=draw(times),
        source=draw(st.sampled_from(Source)),
        status=draw(st.sampled_from(Status)),
        status_since=draw(times),
        consecutive_errors=draw(st.integers(0, 10**6)),
        last_error_code=draw(st.none() | texts),
        last_error_at=draw(optional_times),
        last_success_at=draw(optional_times),
        last_request_id=draw(st.none() | texts),
        storage_files=draw(st.none() | st.integers(0, 1000)),
        answer_status=answer_status,
        answer_request_id=answer_request_id,
        answer_files=answer_files,
        extra=draw(st.dictionaries(texts, json_values, max_size=3)),
        upload=draw(st.sampled_from([NO_UPLOAD, full_task().upload])),
        ended_at=draw(optional_times),
        observed_at=draw(times),
        recorder_key=draw(recorder_keys),
        answer_recorder_key=draw(recorder_keys),
        kind=draw(st.sampled_from(Kind)),
    )


transitions = st.builds(
    Transition,
    sdk_app_id=st.integers(1, 2**32),
    task_id=texts,
    from_status=st.sampled_from(Status),
    to_status=st.sampled_from(Status),
    at=times,
    source=st.sampled_from(Source),
    request_id=st.none() | texts,
    detail=st.dictionaries(texts, json_values, max_size=3),
)

alerts = st.builds(
    AlertRecord,
    fingerprint=texts,
    alertname=texts,
    labels=st.dictionaries(texts, texts, max_size=3),
    annotations=st.dictionaries(texts, texts, max_size=3),
    state=st.sampled_from(["firing", "resolved"]),
    starts_at=times,
    ends_at=optional_times,
    task=st.none() | st.builds(TaskKey, st.integers(1, 2**32), texts),
    last_sent_at=st.dictionaries(texts, times, max_size=3),
    resolved_sent=st.sets(texts, max_size=3),
)


# --- the two stores' encodings, without a server --------------------------------------------


@pytest.fixture(scope="module")
def db() -> Iterator[sqlite3.Connection]:
    """A SQLite database of the current schema, in memory."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for script in MIGRATIONS:
        for statement in statements(script):
            conn.execute(statement)
    yield conn
    conn.close()


def through_sqlite(db: sqlite3.Connection, task: Task) -> list[Task]:
    db.execute("DELETE FROM tasks")
    db.execute(sqlite_rows.UPSERT_TASK, sqlite_rows.task_row(task))
    rows = db.execute(sqlite_rows.SELECT_TASKS)
    return TaskDecoder(sqlite_rows.STORE, texts=True).tasks(rows, sqlite_rows.row_name)


def through_redis(spec: bytes, health: bytes | None) -> Task | None:
    return redis_values.task_from(TaskDecoder("redis", texts=False), spec, health, b"1:t")


def redis_task_values(task: Task) -> tuple[bytes, bytes]:
    _, spec, health, _ = redis_values.task_args(task)
    return spec, health


SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class TestFields:
    def test_the_stored_fields_are_fields_of_a_task_each_once(self) -> None:
        names = {f.name for f in dataclasses.fields(Task) if f.compare}
        assert len(set(TASK_FIELDS)) == len(TASK_FIELDS) == len(STATE_FIELDS) + len(HEALTH_FIELDS)
        # last_response stands for the three answer_* fields.
        assert set(TASK_FIELDS) - {"last_response"} <= names
        assert names - set(TASK_FIELDS) == {"answer_status", "answer_request_id", "answer_files"}

    def test_a_task_whose_health_was_never_written_has_the_default_health(self) -> None:
        spec, _ = redis_task_values(full_task())
        task = through_redis(spec, None)
        assert task is not None
        default = Task(1, "t", "r", "a")
        for name, value in zip(HEALTH_FIELDS, NO_HEALTH, strict=True):
            if name != "last_response":
                assert getattr(task, name) == getattr(default, name) == value
        assert task.last_response is None


class TestFormatsAreUnchanged:
    def test_a_task_is_written_as_earlier_versions_wrote_it(self) -> None:
        spec, health = redis_task_values(earlier_task())
        assert spec == REDIS_STATE
        assert health == REDIS_HEALTH
        assert dict(zip(TASK_FIELDS, sqlite_rows.task_row(earlier_task()), strict=True)) == (
            SQLITE_TASK | {"recorder_key": None, "answer_recorder_key": None, "kind": None}
        )
        assert redis_values.health_value(earlier_task()) == REDIS_HEALTH

    def test_a_transition_and_an_alert_are_written_as_earlier_versions_wrote_them(self) -> None:
        task = earlier_task()
        transition = move(task, Status.EXPIRED, 1_700_000_200.5, request_id="rq", why="x")
        assert redis_values.transition_value(transition) == REDIS_TRANSITION
        assert tuple(sqlite_rows.transition_row(transition)) == SQLITE_TRANSITION
        record = alert(
            "fp-1",
            TaskKey(1400000001, "任务-42 ✓"),
            last_sent_at={"am": 1001.5},
            resolved_sent={"b", "a"},
            ends_at=1002.0,
        )
        assert redis_values.alert_args(record) == REDIS_ALERT
        assert sqlite_rows.alert_row(record) == SQLITE_ALERT

    def test_what_earlier_versions_wrote_reads_back_as_the_same_records(
        self, db: sqlite3.Connection
    ) -> None:
        assert through_redis(REDIS_STATE, REDIS_HEALTH) == earlier_task()
        db.execute("DELETE FROM tasks")
        columns = ", ".join(SQLITE_TASK)
        db.execute(
            f"INSERT INTO tasks ({columns}) VALUES ({', '.join('?' * len(SQLITE_TASK))})",  # noqa: S608
            tuple(SQLITE_TASK.values()),
        )
        rows = db.execute(sqlite_rows.SELECT_TASKS)
        decoded = TaskDecoder("sqlite", texts=True).tasks(rows, sqlite_rows.row_name)
        assert decoded == [earlier_task()]


class TestRoundTrips:
    @SETTINGS
    @given(task=tasks())
    def test_every_field_of_a_task_survives_sqlite(
        self, db: sqlite3.Connection, task: Task
    ) -> None:
        assert through_sqlite(db, task) == [task]

    @SETTINGS
    @given(task=tasks())
    def test_every_field_of_a_task_survives_redis(self, task: Task) -> None:
        assert through_redis(*redis_task_values(task)) == task

    @SETTINGS
    @given(task=tasks())
    def test_the_health_row_updates_only_the_health(
        self, db: sqlite3.Connection, task: Task
    ) -> None:
        stored = full_task()
        stored.sdk_app_id, stored.task_id = task.sdk_app_id, task.task_id
        through_sqlite(db, stored)
        db.execute(sqlite_rows.UPDATE_HEALTH, sqlite_rows.health_row(task))
        (found,) = TaskDecoder("sqlite", texts=True).tasks(
            db.execute(sqlite_rows.SELECT_TASKS), sqlite_rows.row_name
        )
        for name in HEALTH_FIELDS:
            if name != "last_response":
                assert getattr(found, name) == getattr(task, name)
        assert found.last_response == task.last_response
        for name in STATE_FIELDS:
            assert getattr(found, name) == getattr(stored, name)

    @SETTINGS
    @given(transition=transitions, seq=st.integers(1, 2**40))
    def test_every_field_of_a_transition_survives_both_encodings(
        self, transition: Transition, seq: int
    ) -> None:
        value = redis_values.transition_value(transition)
        (from_redis,) = redis_values.transitions_from([str(seq).encode(), value])
        from_sqlite = sqlite_rows.transition_from_row(
            (seq, *sqlite_rows.transition_row(transition))
        )
        for found in (from_redis, from_sqlite):
            assert found is not None
            assert found.seq == seq
            assert transition_values(found) == transition_values(transition)

    @SETTINGS
    @given(record=alerts)
    def test_every_field_of_an_alert_record_survives_both_encodings(
        self, record: AlertRecord
    ) -> None:
        fingerprint, value, _ = redis_values.alert_args(record)
        assert redis_values.alert_from(fingerprint, value) == record
        assert sqlite_rows.alert_from_row(sqlite_rows.alert_row(record)) == record
        assert alert_of(record.fingerprint, alert_values(record), "test") == record


def _task_values(task: Task) -> list[Any]:
    """The values a Redis store decodes for ``task`` (its JSON, parsed)."""
    spec, health = redis_task_values(task)
    values: list[Any] = json.loads(spec) + json.loads(health)
    return values


REQUIRED_TIMES = ("registered_at", "status_since")
OPTIONAL_TIMES = ("last_error_at", "last_success_at", "ended_at")


class TestTimesNoDateCanShow:
    @SETTINGS
    @given(name=st.sampled_from(REQUIRED_TIMES + OPTIONAL_TIMES), bad=bad_times)
    def test_a_task_time_out_of_range_becomes_unknown_in_both_encodings(
        self, name: str, bad: object
    ) -> None:
        task = full_task()
        expected = full_task()
        setattr(expected, name, 0.0 if name in REQUIRED_TIMES else None)
        values = _task_values(task)
        values[TASK_FIELDS.index(name)] = bad
        assert TaskDecoder("redis", texts=False).task(values) == expected
        row = list(sqlite_rows.task_row(task))
        row[TASK_FIELDS.index(name)] = bad
        assert TaskDecoder("sqlite", texts=True).task(row) == expected

    @SETTINGS
    @given(name=st.sampled_from(["started_at", "stopped_at", "finished_at"]), bad=bad_times)
    def test_an_upload_time_out_of_range_becomes_unknown(self, name: str, bad: object) -> None:
        task = full_task()
        values = _task_values(task)
        upload = values[TASK_FIELDS.index("upload")]
        upload[name] = bad
        upload["failures"][0]["at"] = bad
        found = TaskDecoder("redis", texts=False).task(values)
        assert getattr(found.upload, name) is None
        assert found.upload.failures[0].at == 0.0
        assert found.upload.files == task.upload.files

    @SETTINGS
    @given(bad=bad_times)
    def test_a_transition_time_out_of_range_becomes_unknown(self, bad: object) -> None:
        transition = move(full_task(), Status.EXPIRED, 1_700_000_200.5)
        values = transition_values(transition)
        values[4] = bad
        found = transition_of(7, values, "test")
        assert found.at == 0.0
        assert found.to_status is Status.EXPIRED

    @SETTINGS
    @given(bad=bad_times)
    def test_alert_times_out_of_range_become_unknown(self, bad: object) -> None:
        record = alert("fp", last_sent_at={"ok": 1001.0, "bad": 0.0}, ends_at=1002.0)
        values = alert_values(record)
        values[4] = values[5] = bad  # starts_at, ends_at
        values[7] = {"ok": 1001.0, "bad": bad}
        found = alert_of("fp", values, "test")
        assert (found.starts_at, found.ends_at) == (0.0, None)
        assert found.last_sent_at == {"ok": 1001.0}
        assert found.labels == record.labels


class TestRecordTransitionChecks:
    def test_a_transition_of_another_task_is_refused(self) -> None:
        task, other = full_task(), full_task()
        other.task_id = "other"
        with pytest.raises(ValueError, match="recorded with task"):
            check_transition(other, move(task, Status.EXPIRED, 1.0))

    def test_a_task_that_does_not_carry_the_new_status_is_refused(self) -> None:
        task = full_task()
        transition = move(task, Status.EXPIRED, 1.0)
        task.status = Status.ENDED
        with pytest.raises(ValueError, match="set the new status"):
            check_transition(task, transition)

    def test_a_transition_already_recorded_is_refused(self) -> None:
        task = full_task()
        transition = move(task, Status.EXPIRED, 1.0)
        with pytest.raises(ValueError, match="already recorded"):
            check_transition(task, Transition(**{**_fields(transition), "seq": 3}))
        check_transition(task, transition)  # the same, not yet recorded: accepted


def _fields(transition: Transition) -> dict[str, Any]:
    return {name: getattr(transition, name) for name in Transition.__dataclass_fields__}


def test_values_are_compact_ascii_json() -> None:
    assert dumps({"a": "\ud800é"}) == '{"a":"\\ud800\\u00e9"}'
    assert state_values(full_task())[STATE_FIELDS.index("upload")] == full_task().upload.to_json()
    assert health_values(full_task(), lambda t: "x")[HEALTH_FIELDS.index("last_response")] == "x"
