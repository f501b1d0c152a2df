"""The SQLite ``tasks`` table follows the codec's columns: a file of any earlier schema opens,
gains what it lacks, and reads back every field it held; a column the codec declares and the
table lacks is added when the file is opened, with no migration."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from monitor.models import Kind, Task
from monitor.store import SCHEMA_VERSION, SqliteStore
from monitor.store.codec.tasks import TASK_COLUMNS, TASK_FIELDS
from monitor.store.sqlite import rows as sqlite_rows
from monitor.store.sqlite.schema import MIGRATIONS, missing_task_columns, statements
from tests.store.helpers import full_task

_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(Task) if f.default is not dataclasses.MISSING
}


def _file_at(path: Path, migrations: int, version: int) -> sqlite3.Connection:
    """A file built by the first ``migrations`` migrations, saying it has schema ``version``."""
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:migrations]:
        for statement in statements(script):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    return conn


def _columns(conn: sqlite3.Connection) -> list[str]:
    return [row[1] for row in conn.execute("PRAGMA table_info(tasks)")]


def _insert(conn: sqlite3.Connection, task: Task) -> set[str]:
    """``task`` as the codec writes it, in the columns the file has; those columns."""
    present = set(_columns(conn))
    row = {
        name: value
        for name, value in zip(TASK_FIELDS, sqlite_rows.task_row(task), strict=True)
        if name in present
    }
    conn.execute(
        f"INSERT INTO tasks ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",  # noqa: S608
        tuple(row.values()),
    )
    conn.commit()
    return set(row)


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
async def test_a_file_of_each_schema_opens_and_reads_back_every_field_it_held(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / f"v{version}.db"
    task = full_task()
    with _file_at(path, version, version) as conn:
        held = _insert(conn, task)
    async with SqliteStore(path) as store:
        (loaded,) = await store.load_tasks()
    lacking = {name for name in TASK_FIELDS if name not in held}
    # A field the file did not hold reads as a task's default.
    expected = dataclasses.replace(task, **{name: _DEFAULTS[name] for name in lacking})
    assert loaded == expected
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert set(_columns(conn)) == set(TASK_FIELDS)
        assert missing_task_columns(conn) == []


async def test_a_column_the_table_lacks_is_added_when_the_file_opens(tmp_path: Path) -> None:
    # A file of the current schema whose table lacks the last fields (as a file written before
    # a field was declared would): no migration runs, the columns are added all the same.
    path = tmp_path / "lacking.db"
    with _file_at(path, 3, SCHEMA_VERSION) as conn:
        held = _insert(conn, full_task())
        lacking = missing_task_columns(conn)
    assert [c.split()[0] for c in lacking] == ["recorder_key", "kind", "answer_recorder_key"]
    async with SqliteStore(path) as store:
        (loaded,) = await store.load_tasks()
        assert loaded.recorder_key is None
        assert loaded.kind is Kind.CLOUD
        relay = dataclasses.replace(
            loaded, recorder_key="k-1", answer_recorder_key="k-1", kind=Kind.WEB
        )
        await store.save_task(relay)
    async with SqliteStore(path) as store:
        assert await store.load_tasks() == [relay]
    with sqlite3.connect(path) as conn:
        assert missing_task_columns(conn) == []
    assert "kind" not in held


def test_the_codec_declares_each_column_as_the_migrations_made_it(tmp_path: Path) -> None:
    # A column added from the codec's declaration is the column a migration would have made.
    with _file_at(tmp_path / "migrated.db", SCHEMA_VERSION, SCHEMA_VERSION) as migrated:
        made = {row[1]: row[2:5] for row in migrated.execute("PRAGMA table_info(tasks)")}
    declared_sql = ", ".join(f"{c.name} {c.sql}" for c in TASK_COLUMNS)
    with sqlite3.connect(tmp_path / "declared.db") as declared:
        declared.execute(f"CREATE TABLE tasks ({declared_sql})")
        declared_columns = {
            row[1]: row[2:5] for row in declared.execute("PRAGMA table_info(tasks)")
        }
    assert declared_columns == made
