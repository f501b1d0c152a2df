"""The upload state machine (docs/callbacks.md), tested as pure functions."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.uploads import (
    NO_UPLOAD,
    Change,
    FileKind,
    UploadEvent,
    UploadFile,
    UploadPhase,
    UploadState,
    apply_upload_event,
    classify,
    merge_files,
    note_stopped,
    upload_overdue,
)

T0 = 1_700_000_000.0
NONE, UPLOADING, DONE, FAILED = (
    UploadPhase.NONE,
    UploadPhase.UPLOADING,
    UploadPhase.DONE,
    UploadPhase.FAILED,
)


def ev(
    event_type: int,
    status: int | None = 0,
    at: float | None = None,
    *,
    code: str = "",
    message: str = "",
    files: tuple[UploadFile, ...] = (),
) -> UploadEvent:
    return UploadEvent(event_type, status, code, message, files, at)


def run(events: Iterable[UploadEvent], state: UploadState = NO_UPLOAD) -> UploadState:
    for i, event in enumerate(events):
        state = apply_upload_event(state, event, received_at=T0 + 1000 + i).state
    return state


COS_SLICE = UploadFile(FileKind.COS, "1400000001_r1_main.m3u8", "u1", "audio_video", begin_ms=1)
MP4_FILE = UploadFile(FileKind.MP4, "1400000001_r1_main.mp4", "u1", "audio_video", end_ms=9)
VOD_FILE = UploadFile(
    FileKind.VOD, file_id="5285890781234", url="https://vod.example/5285890781234.mp4"
)

# The whole successful sequences the simulator sends, in time order.
COS_SEQUENCE = (
    ev(301, 0, T0),
    ev(303, 0, T0 + 1),
    ev(307, None, T0 + 2, files=(COS_SLICE,)),
    ev(304, 0, T0 + 3),
    ev(302, None, T0 + 60),
    ev(305, 0, T0 + 62),
)
MP4_SEQUENCE = (*COS_SEQUENCE, ev(310, 0, T0 + 70, files=(MP4_FILE,)))
VOD_SEQUENCE = (
    ev(301, 0, T0),
    ev(302, None, T0 + 60),
    ev(311, 0, T0 + 65, files=(VOD_FILE,)),
    ev(312, 0, T0 + 66),
)

# Every failure docs/callbacks.md lists, as (event type, status).
FAILURES = (
    (301, 1),
    (303, 1),
    (305, 1),
    (308, None),
    (309, None),
    (310, 1),
    (310, 2),
    (311, 1),
    (311, 2),
    (312, 1),
)
STARTS = ((303, 0), (304, 0), (307, None), (311, 0))
NEUTRAL = ((301, 0), (302, None), (306, 0))


class TestEveryEventAndStatus:
    @pytest.mark.parametrize(("event_type", "status"), FAILURES)
    def test_each_failure_of_the_spec_enters_failed_from_any_state(
        self, event_type: int, status: int | None
    ) -> None:
        for prior in ((), (ev(303, 0, T0),), COS_SEQUENCE[:4]):
            state = run(prior)
            result = apply_upload_event(state, ev(event_type, status, T0 + 100), T0 + 200)
            assert result.state.state is FAILED
            assert result.change is Change.FAILED
            assert result.state.failure is not None
            assert result.state.failure.event_type == event_type

    @pytest.mark.parametrize(("event_type", "status"), STARTS)
    def test_each_start_moves_none_to_uploading(self, event_type: int, status: int | None) -> None:
        result = apply_upload_event(NO_UPLOAD, ev(event_type, status, T0), T0)
        assert result.state.state is UPLOADING
        assert result.change is Change.STARTED
        assert result.state.started_at == T0

    @pytest.mark.parametrize(("event_type", "status"), NEUTRAL)
    def test_start_stop_and_migration_leave_the_state_alone(
        self, event_type: int, status: int | None
    ) -> None:
        for prior in ((), (ev(303, 0, T0),), COS_SEQUENCE):
            state = run(prior)
            result = apply_upload_event(state, ev(event_type, status, T0 + 100), T0 + 200)
            assert result.state.state is state.state
            assert result.change is None

    @pytest.mark.parametrize("event_type", range(301, 313))
    @pytest.mark.parametrize("status", [None, 0, 1, 2, 3])
    def test_the_classification_matches_the_spec_for_every_event_and_status(
        self, event_type: int, status: int | None
    ) -> None:
        ok = status in (None, 0)
        expected = {
            301: None if ok else "failure",
            302: "stopped",
            303: "started" if ok else "failure",
            304: "started",
            305: "failure" if status == 1 else "finish",
            306: None,
            307: "started",
            308: "failure",
            309: "failure",
            310: "finish" if ok else "failure",
            311: "started" if ok else "failure",
            312: "vod_finish" if ok else "failure",
        }[event_type]
        assert classify(ev(event_type, status)) == expected

    def test_a_308_names_the_storage_code_and_message(self) -> None:
        failing = ev(308, None, T0, code="InvalidParameter", message="AccessKey invalid")
        failure = apply_upload_event(NO_UPLOAD, failing, T0).state.failure
        assert failure is not None
        assert (failure.event_type, failure.code, failure.message) == (
            308,
            "InvalidParameter",
            "AccessKey invalid",
        )
        assert "code InvalidParameter" in failure.describe()
        assert "AccessKey invalid" in failure.describe()

    def test_a_311_failure_carries_its_errmsg_and_status(self) -> None:
        failing = ev(311, 2, T0, message="vod upload timeout")
        failure = apply_upload_event(NO_UPLOAD, failing, T0).state.failure
        assert failure is not None
        assert failure.code == "Status 2"
        assert "vod upload timeout" in failure.message
        assert "VOD upload failed" in failure.message

    def test_failures_without_a_message_say_what_the_status_means(self) -> None:
        failure = apply_upload_event(NO_UPLOAD, ev(305, 1, T0), T0).state.failure
        assert failure is not None
        assert failure.code == "Status 1"
        assert "stranded" in failure.message


class TestWholeSequences:
    def test_a_cos_recording_ends_done_with_its_slice_listed(self) -> None:
        state = run(COS_SEQUENCE)
        assert state.state is DONE
        assert state.files == (COS_SLICE,)
        assert (state.started_at, state.stopped_at, state.finished_at) == (T0 + 1, T0 + 60, T0 + 62)
        assert state.failure is None

    def test_a_cos_recording_with_mp4_lists_both_files(self) -> None:
        state = run(MP4_SEQUENCE)
        assert state.state is DONE
        assert set(state.files) == {COS_SLICE, MP4_FILE}
        assert state.finished_at == T0 + 70

    def test_a_vod_recording_ends_done_with_its_file_id_and_url(self) -> None:
        state = run(VOD_SEQUENCE)
        assert state.state is DONE
        assert state.files == (VOD_FILE,)
        assert state.files[0].file_id == "5285890781234"
        assert state.files[0].url.endswith(".mp4")

    def test_each_step_reports_what_it_entered(self) -> None:
        changes = []
        state = NO_UPLOAD
        for event in VOD_SEQUENCE:
            result = apply_upload_event(state, event, T0)
            changes.append(result.change)
            state = result.state
        assert changes == [None, None, Change.STARTED, Change.DONE]

    def test_a_312_without_a_successful_311_is_not_done(self) -> None:
        state = run((ev(301, 0, T0), ev(302, None, T0 + 1), ev(312, 0, T0 + 2)))
        assert state.state is NONE
        assert run((ev(311, 0, T0 + 1),), state).state is DONE

    def test_a_312_after_a_failed_311_stays_failed(self) -> None:
        state = run((ev(311, 0, T0), ev(311, 2, T0 + 1, message="x"), ev(312, 0, T0 + 2)))
        assert state.state is FAILED

    def test_a_later_305_with_status_2_recovers_a_failure(self) -> None:
        failed = run((ev(303, 0, T0), ev(305, 1, T0 + 10)))
        result = apply_upload_event(failed, ev(305, 2, T0 + 600), T0 + 600)
        assert result.state.state is DONE
        assert result.change is Change.RECOVERED
        # The failure stays on record for the API, though it no longer holds.
        assert result.state.failure is not None
        assert result.state.failure.event_type == 305

    @pytest.mark.parametrize(("event_type", "status"), FAILURES)
    def test_a_later_recovery_resolves_every_failure(
        self, event_type: int, status: int | None
    ) -> None:
        failed = run((ev(303, 0, T0), ev(event_type, status, T0 + 10)))
        assert failed.state is FAILED
        assert run((ev(305, 2, T0 + 20),), failed).state is DONE

    def test_a_failure_after_the_hls_upload_finished_fails_the_upload(self) -> None:
        # HLS reached COS, then the MP4 step failed: the MP4 files are missing.
        state = run((*COS_SEQUENCE, ev(310, 2, T0 + 70)))
        assert state.state is FAILED
        assert state.failure is not None
        assert state.failure.event_type == 310

    def test_the_first_failure_since_the_last_finish_is_the_one_named(self) -> None:
        # A storage error, then the files stranded because of it: the cause is named.
        state = run(
            (
                ev(308, None, T0 + 9, code="B", message="second"),
                ev(308, None, T0 + 5, code="A", message="first"),
                ev(305, 1, T0 + 12),
            )
        )
        assert state.failure is not None
        assert state.failure.code == "A"
        assert [f.event_type for f in state.failures] == [308, 308, 305]
        # After a recovery a new failure starts a new episode, and it is the one named.
        state = run((ev(305, 2, T0 + 20), ev(310, 2, T0 + 30)), state)
        assert state.state is FAILED
        assert state.failure is not None
        assert state.failure.event_type == 310

    def test_failures_kept_are_bounded_to_the_newest(self) -> None:
        state = run(ev(308, None, T0 + i, code=f"C{i}") for i in range(50))
        assert len(state.failures) == 20
        assert state.failures[-1].code == "C49"

    def test_the_received_time_stands_in_for_a_missing_event_time(self) -> None:
        result = apply_upload_event(NO_UPLOAD, ev(303, 0, None), received_at=T0 + 5)
        assert result.state.started_at == T0 + 5


class TestRepeatsAndReordering:
    @pytest.mark.parametrize(
        "sequence", [COS_SEQUENCE, MP4_SEQUENCE, VOD_SEQUENCE], ids=["cos", "mp4", "vod"]
    )
    def test_any_order_of_a_whole_sequence_gives_the_same_state(
        self, sequence: tuple[UploadEvent, ...]
    ) -> None:
        expected = run(sequence)
        for order in itertools.islice(itertools.permutations(sequence), 200):
            assert run(order) == expected

    def test_a_repeated_event_changes_nothing_the_second_time(self) -> None:
        state = NO_UPLOAD
        for event in (*MP4_SEQUENCE, ev(308, None, T0 + 80, code="X"), ev(305, 2, T0 + 90)):
            once = apply_upload_event(state, event, T0 + 1000)
            twice = apply_upload_event(once.state, event, T0 + 2000)
            assert twice.state == once.state
            assert twice.change is None
            assert twice.changed is False
            state = once.state

    def test_a_late_start_never_undoes_an_outcome(self) -> None:
        done = run(COS_SEQUENCE)
        for event_type, status in STARTS:
            result = apply_upload_event(done, ev(event_type, status, T0 + 1), T0 + 500)
            assert result.state.state is DONE
            assert result.change is None

    def test_a_failure_older_than_the_finish_arriving_late_does_not_fail_it(self) -> None:
        done = run(COS_SEQUENCE)
        result = apply_upload_event(done, ev(308, None, T0 + 30, code="Slow"), T0 + 500)
        assert result.state.state is DONE
        assert result.change is None

    def test_a_recovery_arriving_before_its_failure_still_wins(self) -> None:
        state = run((ev(303, 0, T0), ev(305, 2, T0 + 600), ev(305, 1, T0 + 10)))
        assert state.state is DONE


events_strategy = st.lists(
    st.builds(
        UploadEvent,
        event_type=st.integers(301, 312),
        status=st.one_of(st.none(), st.integers(0, 3)),
        code=st.sampled_from(["", "InvalidParameter", "InternalError"]),
        message=st.sampled_from(["", "AccessKey invalid"]),
        files=st.lists(st.sampled_from([COS_SLICE, MP4_FILE, VOD_FILE]), max_size=2).map(tuple),
        at=st.one_of(st.none(), st.integers(0, 20).map(lambda s: T0 + s)),
    ),
    max_size=12,
)


class TestProperties:
    @settings(max_examples=300, deadline=None)
    @given(events=events_strategy, seed=st.randoms(use_true_random=False))
    def test_order_and_repetition_never_matter(
        self, events: list[UploadEvent], seed: random.Random
    ) -> None:
        # Received times vary with the order, so only events with their own time are shuffled.
        timed = [e for e in events if e.at is not None]
        expected = run(timed)
        shuffled = list(timed)
        seed.shuffle(shuffled)
        assert run(shuffled + shuffled[: len(shuffled) // 2]) == expected

    @settings(max_examples=300, deadline=None)
    @given(events=events_strategy)
    def test_the_change_reported_matches_the_states(self, events: list[UploadEvent]) -> None:
        state = NO_UPLOAD
        for i, event in enumerate(events):
            result = apply_upload_event(state, event, T0 + i)
            if result.change is Change.FAILED:
                assert result.state.state is FAILED
                assert state.state is not FAILED
            elif result.change is Change.RECOVERED:
                assert (state.state, result.state.state) == (FAILED, DONE)
            elif result.change is Change.DONE:
                assert state.state is not FAILED
                assert result.state.state is DONE
            elif result.change is None:
                assert result.state.state is state.state or result.state.state is UPLOADING
            assert result.changed == (result.state != state)
            state = result.state

    @settings(max_examples=200, deadline=None)
    @given(events=events_strategy)
    def test_the_state_survives_its_json_form(self, events: list[UploadEvent]) -> None:
        state = run(events)
        assert UploadState.from_json(state.to_json()) == state

    @settings(max_examples=100, deadline=None)
    @given(events=events_strategy)
    def test_the_input_record_is_never_changed(self, events: list[UploadEvent]) -> None:
        state = run(events[:6])
        before = state.to_json()
        for event in events[6:]:
            apply_upload_event(state, event, T0)
        assert state.to_json() == before


class TestOverdue:
    DEADLINE = 1800.0

    def stopped_uploading(self) -> UploadState:
        return run((ev(303, 0, T0), ev(304, 0, T0 + 1), ev(302, None, T0 + 100)))

    def test_a_stopped_upload_becomes_overdue_after_the_deadline_not_before(self) -> None:
        state = self.stopped_uploading()
        assert not upload_overdue(state, T0 + 100 + self.DEADLINE, self.DEADLINE)
        assert upload_overdue(state, T0 + 100 + self.DEADLINE + 1, self.DEADLINE)

    def test_a_finish_ends_the_overdue_condition(self) -> None:
        state = run((ev(305, 0, T0 + 5000),), self.stopped_uploading())
        assert not upload_overdue(state, T0 + 10_000, self.DEADLINE)

    def test_a_running_recording_is_never_overdue(self) -> None:
        state = run((ev(303, 0, T0),))
        assert not upload_overdue(state, T0 + 10 * self.DEADLINE, self.DEADLINE)

    def test_a_stop_without_any_upload_is_not_overdue(self) -> None:
        state = run((ev(301, 0, T0), ev(302, None, T0 + 1)))
        assert state.state is NONE
        assert not upload_overdue(state, T0 + 10 * self.DEADLINE, self.DEADLINE)

    def test_a_failed_upload_is_failed_not_overdue(self) -> None:
        state = run((ev(308, None, T0 + 200, code="X"),), self.stopped_uploading())
        assert not upload_overdue(state, T0 + 10 * self.DEADLINE, self.DEADLINE)

    def test_a_stop_given_from_elsewhere_starts_the_clock_when_the_events_had_none(self) -> None:
        state = run((ev(303, 0, T0),))
        assert not upload_overdue(state, T0 + 10 * self.DEADLINE, self.DEADLINE)
        assert upload_overdue(state, T0 + 501 + self.DEADLINE, self.DEADLINE, stopped_at=T0 + 500)
        assert not upload_overdue(
            state, T0 + 500 + self.DEADLINE, self.DEADLINE, stopped_at=T0 + 500
        )

    def test_a_poll_noticing_the_stop_starts_the_clock_and_the_earliest_stop_counts(
        self,
    ) -> None:
        state = note_stopped(run((ev(303, 0, T0),)), T0 + 50)
        assert state.stopped_at == T0 + 50
        assert note_stopped(state, T0 + 80) is state
        assert note_stopped(state, T0 + 20).stopped_at == T0 + 20


class TestFiles:
    def test_files_merge_by_identity_in_a_fixed_order(self) -> None:
        merged = merge_files([MP4_FILE, COS_SLICE], [COS_SLICE, VOD_FILE])
        assert merged == tuple(sorted({COS_SLICE, MP4_FILE, VOD_FILE}))
        assert merge_files(merged, merged) == merged

    def test_files_are_bounded(self) -> None:
        many = [UploadFile(FileKind.COS, f"f{i:04}.m3u8") for i in range(500)]
        assert len(merge_files([], many)) == 100

    def test_a_file_survives_its_json_form(self) -> None:
        for f in (COS_SLICE, MP4_FILE, VOD_FILE):
            assert UploadFile.from_json(f.to_json()) == f
