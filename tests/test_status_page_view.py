"""The status page's view model, pure: the query, the counts and budget bars, the task
table's page, the upload facts."""

from __future__ import annotations

import random

import pytest
from multidict import MultiDict

from monitor.http.status_page import AccountBudget
from monitor.http.status_page.query import PageQuery, parse_query, parse_task_key
from monitor.http.status_page.view import (
    PAGE_SIZE,
    budget_bar,
    count_statuses,
    fmt_time,
    select_tasks,
    task_href,
    upload_view,
)
from monitor.models import Status, Task
from monitor.registry import TaskFilter
from monitor.uploads import (
    UPLOAD_ERROR,
    FileKind,
    UploadFailure,
    UploadFile,
    UploadPhase,
    UploadState,
)
from tests.status_page_support import (
    APP,
    NASTY_ID,
    T0,
    make_task,
)


class TestQuery:
    def test_every_filter_is_read_and_kept_in_links(self) -> None:
        params = MultiDict(
            [
                ("status", "Idle"),
                ("region", "ap-mumbai"),
                ("account", "acme"),
                ("label", "team:a"),
                ("label", "room:x:y"),
                ("page", "3"),
            ]
        )
        query, errors = parse_query(params)
        assert errors == []
        assert query.flt == TaskFilter(
            Status.IDLE, "ap-mumbai", "acme", {"team": "a", "room": "x:y"}
        )
        assert query.page == 3
        again, _ = parse_query(MultiDict(query.params(page=3)))
        assert again == query

    def test_bad_values_are_dropped_and_named(self) -> None:
        params = MultiDict(
            [("status", "Bogus"), ("region", "mars"), ("label", "no value"), ("page", "0")]
        )
        query, errors = parse_query(params)
        assert query == PageQuery(TaskFilter(), 1)
        assert [e.split(":")[0] for e in errors] == ["status", "region", "label", "page"]

    def test_an_empty_form_filters_nothing(self) -> None:
        params = MultiDict([("status", ""), ("region", ""), ("account", ""), ("label", "")])
        assert parse_query(params) == (PageQuery(), [])

    @pytest.mark.parametrize(
        ("app", "task_id", "ok"),
        [
            ("1400000001", "abc", True),
            ("0", "abc", False),
            ("99999999999999999999", "abc", False),
            ("12a", "abc", False),
            ("1", "x" * 257, False),
            ("1", NASTY_ID, True),
        ],
    )
    def test_task_urls_are_bounded(self, app: str, task_id: str, ok: bool) -> None:
        assert (parse_task_key(app, task_id) is not None) is ok

    def test_task_links_escape_every_reserved_character(self) -> None:
        assert task_href(1, "a/../b?c#d e") == "/tasks/1/a%2F..%2Fb%3Fc%23d%20e"


class TestOverview:
    def test_counts_by_account_region_and_status(self) -> None:
        tasks = [
            make_task("a", Status.IDLE),
            make_task("b", Status.IDLE),
            make_task("c", Status.ENDED, region="ap-mumbai"),
            make_task("d", Status.IDLE, account="other"),
        ]
        counts = count_statuses(tasks)
        assert [(r.account, r.region) for r in counts.rows] == [
            ("default", "ap-guangzhou"),
            ("default", "ap-mumbai"),
            ("other", "ap-guangzhou"),
        ]
        assert counts.rows[0].counts[Status.IDLE] == 2
        assert counts.rows[0].counts[Status.ENDED] == 0
        assert counts.rows[1].counts[Status.ENDED] == 1
        assert counts.totals[Status.IDLE] == 3
        assert counts.total == 4

    @pytest.mark.parametrize("n", [0, 1, PAGE_SIZE, PAGE_SIZE + 1, 1000])
    def test_pages_cover_the_matches_once_in_key_order(self, n: int) -> None:
        tasks = [make_task(f"t{i:05d}", sdk_app_id=APP + i % 3) for i in range(n)]
        tasks.reverse()
        seen: list[Task] = []
        page = 1
        while True:
            chosen = select_tasks(tasks, PageQuery(page=page))
            assert chosen.total == n
            seen.extend(chosen.tasks)
            if page >= chosen.pages:
                break
            page += 1
        assert seen == sorted(tasks, key=lambda t: (t.sdk_app_id, t.task_id))

    def test_a_middle_page_of_a_large_table_is_its_slice_of_the_sorted_whole(self) -> None:
        tasks = [make_task(f"t{i:06d}", sdk_app_id=APP + i % 7) for i in range(20_000)]
        random.Random(1).shuffle(tasks)
        whole = sorted(tasks, key=lambda t: (t.sdk_app_id, t.task_id))
        for page in (150, 200, 251):
            chosen = select_tasks(tasks, PageQuery(page=page))
            start = (page - 1) * PAGE_SIZE
            assert chosen.tasks == whole[start : start + PAGE_SIZE], page

    def test_a_page_past_the_end_shows_the_last(self) -> None:
        tasks = [make_task(f"t{i}") for i in range(PAGE_SIZE + 3)]
        chosen = select_tasks(tasks, PageQuery(page=99))
        assert (chosen.page, chosen.pages, len(chosen.tasks)) == (2, 2, 3)

    def test_filters_apply_before_paging(self) -> None:
        tasks = [make_task(f"t{i}", labels={"team": "ab"[i % 2]}) for i in range(10)]
        chosen = select_tasks(tasks, PageQuery(TaskFilter(labels={"team": "b"})))
        assert [t.task_id for t in chosen.tasks] == ["t1", "t3", "t5", "t7", "t9"]

    def test_the_bar_turns_over_when_required_exceeds_what_may_be_sent(self) -> None:
        within = budget_bar(AccountBudget("a", 10.0, 19.4, 20.0, 19.4))
        assert not within.over
        assert within.required_pct == 50.0
        assert within.capacity_pct == 97.0
        over = budget_bar(AccountBudget("a", 40.0, 19.4, 20.0, 10.0))
        assert over.over
        assert over.required_pct == 100.0
        assert over.effective_pct == 25.0


class TestUpload:
    def test_state_files_and_failure_are_shown_and_only_web_links_are_links(self) -> None:
        task = make_task("t")
        task.upload = UploadState(
            state=UploadPhase.FAILED,
            files=(
                UploadFile(FileKind.MP4, name="a.mp4", user_id="u1"),
                UploadFile(FileKind.VOD, file_id="f1", url="https://vod.example.invalid/a.mp4"),
                UploadFile(FileKind.VOD, file_id="f2", url="javascript:alert(1)"),
            ),
            failures=(UploadFailure(T0 + 5, UPLOAD_ERROR, "InternalError", "disk full"),),
            started_at=T0,
        )
        view = upload_view(task)
        assert view.state == "failed"
        assert [(f.name, f.url) for f in view.files] == [
            ("mp4 a.mp4", None),
            ("vod f1", "https://vod.example.invalid/a.mp4"),
            ("vod f2", None),
        ]
        assert view.files[0].facts == "user_id=u1"
        assert ("started", fmt_time(T0)) in view.facts
        assert (
            "failure",
            f"upload error at {fmt_time(T0 + 5)}: InternalError disk full",
        ) in view.facts

    def test_tasks_stored_before_uploads_were_followed_show_the_callbacks_files(self) -> None:
        task = make_task("t")
        task.extra = {
            "mp4_files": [{"FileName": "a.mp4", "UserId": "u1"}],
            "vod_files": [{"FileId": "f1", "VideoUrl": "https://vod.example.invalid/a.mp4"}],
        }
        view = upload_view(task)
        assert [(f.name, f.url) for f in view.files] == [
            ("mp4 a.mp4", None),
            ("vod f1", "https://vod.example.invalid/a.mp4"),
        ]
        assert view.files[0].facts == "UserId=u1"
        assert view.state == "none"

    def test_nothing_known_is_empty(self) -> None:
        assert not upload_view(make_task("t"))
