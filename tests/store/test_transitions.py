"""The store contract for transitions and retention (both backends)."""

from __future__ import annotations

import sqlite3

import pytest

from monitor.models import Source, Status, Task, TaskKey
from monitor.store import Store, StoreError
from tests.store.helpers import (
    APP,
    KEY_PREFIX,
    Backend,
    RedisSync,
    alert,
    make_task,
    move,
    reopened,
)


class TestTransitions:
    async def test_recording_assigns_increasing_seq_and_keeps_task_and_history_together(
        self, store: Store, backend: Backend
    ) -> None:
        task = make_task()
        await store.save_task(task)
        first = await store.record_transition(
            task, move(task, Status.IDLE, 1001.0, request_id="r1")
        )
        second = await store.record_transition(
            task, move(task, Status.EXITED, 1002.0, Source.CALLBACK, leave_code=2)
        )
        assert first.seq is not None
        assert second.seq is not None
        assert second.seq > first.seq
        await store.close()

        again = await reopened(backend)
        try:
            (loaded,) = await again.load_tasks()
            history = await again.transitions(task.key, newest_first=False)
        finally:
            await again.close()
        assert (loaded.status, loaded.status_since) == (Status.EXITED, 1002.0)
        assert history == [first, second]
        assert history[1].detail == {"leave_code": 2}
        assert history[1].source is Source.CALLBACK
        assert history[0].request_id == "r1"

    async def test_recording_registers_a_task_the_store_did_not_know(self, store: Store) -> None:
        task = make_task()
        recorded = await store.record_transition(task, move(task, Status.IN_PROGRESS, 1001.0))
        assert await store.load_tasks() == [task]
        assert await store.transitions(task.key) == [recorded]

    async def test_a_failed_write_leaves_neither_the_transition_nor_the_new_state(
        self, store: Store, backend: Backend, redis_sync: RedisSync
    ) -> None:
        task = make_task(status=Status.IN_PROGRESS)
        await store.save_task(task)
        if backend.name == "sqlite":
            # A trigger makes the transition insert fail after the task row was already
            # updated within the same transaction.
            side = sqlite3.connect(backend.location)
            side.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON transitions WHEN NEW.request_id = 'boom' "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
            side.commit()
            side.close()
            refusal = "refused"
        else:
            # A key of the wrong type where the task's history goes: the last write of the
            # step would fail, after the task's state was written, were the step not atomic.
            history = f"{KEY_PREFIX}task-transitions:{task.sdk_app_id}:{task.task_id}"
            redis_sync(backend).set(history, "not a list")
            refusal = "holds a string"

        with pytest.raises(StoreError, match=refusal):
            await store.record_transition(
                task, move(task, Status.EXITED, 1005.0, request_id="boom")
            )
        if backend.name == "redis":
            redis_sync(backend).delete(history)

        (loaded,) = await store.load_tasks()
        assert (loaded.status, loaded.status_since) == (Status.IN_PROGRESS, 1000.0)
        assert await store.transitions(task.key) == []
        # The store is still usable after the failure.
        recorded = await store.record_transition(task, move(task, Status.ENDED, 1006.0))
        assert await store.transitions(task.key) == [recorded]

    async def test_history_is_ordered_by_seq_either_way_and_limited(self, store: Store) -> None:
        task, other = make_task("t-1"), make_task("t-2")
        recorded = []
        for i, to in enumerate([Status.IDLE, Status.IN_PROGRESS, Status.EXITED, Status.ENDED]):
            recorded.append(await store.record_transition(task, move(task, to, 1001.0 + i)))
            await store.record_transition(
                other, move(other, Status.IDLE if i % 2 == 0 else Status.IN_PROGRESS, 1001.0 + i)
            )

        assert await store.transitions(task.key) == recorded[::-1]
        assert await store.transitions(task.key, newest_first=False) == recorded
        assert await store.transitions(task.key, limit=2) == recorded[:1:-1]
        assert await store.transitions(task.key, limit=2, newest_first=False) == recorded[:2]
        assert await store.transitions(task.key, limit=0) == []
        assert await store.transitions(TaskKey(APP, "unknown")) == []

    async def test_recent_transitions_span_the_fleet_newest_first(self, store: Store) -> None:
        seqs = []
        for i in range(5):
            task = make_task(f"t-{i}")
            seqs.append((await store.record_transition(task, move(task, Status.IDLE, 1.0))).seq)
        recent = await store.recent_transitions(3)
        assert [t.seq for t in recent] == seqs[:1:-1]
        assert [t.task_id for t in recent] == ["t-4", "t-3", "t-2"]

    async def test_a_seq_is_never_handed_out_twice_even_after_deletions(self, store: Store) -> None:
        task = make_task("first")
        old = await store.record_transition(task, move(task, Status.IDLE, 1.0))
        await store.delete_task(task.key)
        task = make_task("second")
        new = await store.record_transition(task, move(task, Status.IDLE, 2.0))
        assert old.seq is not None
        assert new.seq is not None
        assert new.seq > old.seq

    async def test_a_transition_that_does_not_match_its_task_is_refused(self, store: Store) -> None:
        task = make_task()
        transition = move(task, Status.IDLE, 1.0)
        with pytest.raises(ValueError, match="status"):
            await store.record_transition(make_task(status=Status.IN_PROGRESS), transition)
        with pytest.raises(ValueError, match="t-other"):
            await store.record_transition(make_task("t-other", Status.IDLE), transition)
        recorded = await store.record_transition(task, transition)
        with pytest.raises(ValueError, match="already recorded"):
            await store.record_transition(task, recorded)
        assert await store.transitions(task.key) == [recorded]


class TestPurge:
    async def test_purge_removes_only_final_tasks_that_ended_before_the_cutoff(
        self, store: Store
    ) -> None:
        cutoff = 5000.0
        doomed: list[Task] = []
        for task_id, to in [("ended", Status.ENDED), ("expired", Status.EXPIRED)]:
            task = make_task(task_id, Status.IN_PROGRESS)
            await store.record_transition(task, move(task, to, 4000.0))
            doomed.append(task)
        removed = make_task("removed", Status.IDLE)
        await store.record_transition(removed, move(removed, Status.REMOVED, 4999.9, Source.API))
        doomed.append(removed)

        recent = make_task("ended-recently", Status.IN_PROGRESS)
        await store.record_transition(recent, move(recent, Status.ENDED, 5000.0))
        running = make_task("running", Status.IN_PROGRESS)
        exited = make_task("exited-long-ago", Status.IN_PROGRESS)
        await store.record_transition(exited, move(exited, Status.EXITED, 10.0))
        # Ended long ago, then registered again: live, whatever ended_at still says.
        again = make_task("registered-again", Status.IDLE, ended_at=10.0)
        await store.save_tasks([running, again])
        kept = [recent, running, exited, again]

        await store.save_alerts(
            [alert(f"a-{t.task_id}", t.key) for t in doomed + kept] + [alert("a-monitor")]
        )

        purged = await store.purge(cutoff)

        assert purged == sorted(t.key for t in doomed)
        assert sorted(t.key for t in await store.load_tasks()) == sorted(t.key for t in kept)
        for task in doomed:
            assert await store.transitions(task.key) == []
        assert len(await store.transitions(recent.key)) == 1
        assert len(await store.transitions(exited.key)) == 1
        assert sorted(a.fingerprint for a in await store.load_alerts()) == sorted(
            [f"a-{t.task_id}" for t in kept] + ["a-monitor"]
        )
        assert await store.purge(cutoff) == []
