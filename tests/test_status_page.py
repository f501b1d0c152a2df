"""The status page (SPEC section 10c): its view building, its escaping and its HTTP answers.

The real browser tests are in ``test_status_page_browser.py``; these check what the page is
made of, with a source in memory or a real daemon, over real HTTP on loopback.
"""

from __future__ import annotations

import html
import random
import re
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import MultiDict

from monitor.config import parse_config
from monitor.daemon import Daemon
from monitor.http import status_page
from monitor.http.status_page import (
    CONTENT_SECURITY_POLICY,
    PAGE_SIZE,
    AccountBudget,
    PageQuery,
    budget_bar,
    count_statuses,
    fmt_time,
    parse_query,
    parse_task_key,
    select_tasks,
    task_href,
    timeline,
    upload_view,
)
from monitor.http.status_source import ComponentStatusSource
from monitor.models import REGIONS, Source, Status, Task, TaskKey, Transition
from monitor.registry import TaskFilter
from monitor.simulator import DEFAULT_SECRET_KEY, Life, Simulator
from monitor.store.base import AlertRecord
from monitor.uploads import (
    UPLOAD_ERROR,
    FileKind,
    UploadFailure,
    UploadFile,
    UploadPhase,
    UploadState,
)
from tests.conftest import API_TOKEN, DaemonFactory, daemon_config_text
from tests.support import wait_for_async

APP = 1400000001
T0 = 1_800_000_000.0
# What a hostile or careless registrant might put in a label or an id.
NASTY = "<script>alert('x')</script>\"quoted\" & 'single' — é漢字🎥"
NASTY_ID = "<img src=x onerror=alert(1)>\"'"


def make_task(task_id: str, status: Status = Status.IN_PROGRESS, **fields: Any) -> Task:
    fields.setdefault("region", "ap-guangzhou")
    fields.setdefault("account", "default")
    fields.setdefault("registered_at", T0)
    fields.setdefault("status_since", T0)
    return Task(sdk_app_id=fields.pop("sdk_app_id", APP), task_id=task_id, status=status, **fields)


def move(task: Task, to: Status, at: float, source: Source = Source.POLL) -> Transition:
    t = Transition(task.sdk_app_id, task.task_id, task.status, to, at, source, f"req-{at}")
    task.status = to
    task.status_since = at
    return t


@dataclass
class FakeSource:
    """A ``StatusSource`` in memory: what a test puts in is what the page must show."""

    table: dict[TaskKey, Task] = field(default_factory=dict)
    history: dict[TaskKey, list[Transition]] = field(default_factory=dict)  # oldest first
    budget_list: list[AccountBudget] = field(default_factory=list)
    alerts: list[AlertRecord] = field(default_factory=list)

    def add(self, task: Task, *transitions: Transition) -> Task:
        self.table[task.key] = task
        self.history.setdefault(task.key, []).extend(transitions)
        return task

    def tasks(self) -> Sequence[Task]:
        return list(self.table.values())

    def task(self, key: TaskKey) -> Task | None:
        return self.table.get(key)

    def budgets(self) -> Sequence[AccountBudget]:
        return list(self.budget_list)

    def firing_alerts(self) -> Sequence[AlertRecord]:
        return list(self.alerts)

    async def recent_transitions(self, limit: int) -> Sequence[Transition]:
        every = [t for ts in self.history.values() for t in ts]
        return sorted(every, key=lambda t: t.at, reverse=True)[:limit]

    async def transitions(self, key: TaskKey, limit: int) -> Sequence[Transition]:
        return list(reversed(self.history.get(key, [])))[:limit]


def nasty_source(now: float = T0 + 600) -> FakeSource:
    """Hostile ids and labels, an over-budget account beside a healthy one, a firing alert."""
    source = FakeSource()
    hostile = make_task(NASTY_ID, labels={"room": NASTY, "team": "a"}, last_error_code="<b>E</b>")
    hostile.upload = UploadState(
        state=UploadPhase.UPLOADING,
        files=(
            UploadFile(FileKind.MP4, name="<i>x</i>.mp4", user_id=NASTY),
            UploadFile(FileKind.VOD, file_id="f1", url="javascript:alert(1)"),
            UploadFile(FileKind.VOD, file_id="f2", url="https://vod.example.invalid/v.mp4"),
        ),
        started_at=T0 + 20,
    )
    hostile.status = Status.PENDING
    t1 = move(hostile, Status.IDLE, T0 + 10)
    t2 = move(hostile, Status.IN_PROGRESS, T0 + 70, Source.CALLBACK)
    t3 = move(hostile, Status.EXITED, T0 + 400, Source.API)
    source.add(hostile, t1, t2, t3)
    for i in range(7):
        source.add(make_task(f"plain-{i}", region=REGIONS[i % 2], labels={"team": "b"}))
    source.budget_list = [
        AccountBudget("default", required=3.0, capacity=19.4, limit=20.0, effective=19.4),
        AccountBudget("busy", required=40.0, capacity=19.4, limit=20.0, effective=12.0),
    ]
    source.alerts = [
        AlertRecord(
            fingerprint="f" * 16,
            alertname="RecordingTaskExited",
            labels={"severity": "critical", "room": NASTY},
            annotations={"summary": f"stopped {NASTY}"},
            state="firing",
            starts_at=now - 30,
            task=hostile.key,
        )
    ]
    return source


@pytest.fixture
async def page_server(
    unused_tcp_port: int,
) -> AsyncIterator[tuple[str, FakeSource, aiohttp.ClientSession]]:
    source = nasty_source()
    app = web.Application()
    status_page.add_routes(app, source, refresh_seconds=1, clock=lambda: T0 + 600)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", unused_tcp_port)
    await site.start()
    async with aiohttp.ClientSession() as session:
        yield f"http://127.0.0.1:{unused_tcp_port}", source, session
    await runner.cleanup()


# ---------------------------------------------------------------------------------- pure parts


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


class TestTimeline:
    def test_one_band_per_status_in_order_with_a_mark_per_transition(self) -> None:
        task = make_task("t", Status.PENDING)
        history = [
            move(task, Status.IDLE, T0 + 10),
            move(task, Status.IN_PROGRESS, T0 + 20, Source.CALLBACK),
            move(task, Status.EXITED, T0 + 70),
        ]
        line = timeline(task, history, now=T0 + 100)
        assert [b.status for b in line.bands] == [
            Status.PENDING,
            Status.IDLE,
            Status.IN_PROGRESS,
            Status.EXITED,
        ]
        assert [(b.start, b.end) for b in line.bands] == [
            (T0, T0 + 10),
            (T0 + 10, T0 + 20),
            (T0 + 20, T0 + 70),
            (T0 + 70, T0 + 100),
        ]
        # Widths are proportional to time: the InProgress band is five times the Idle one.
        assert line.bands[2].width == pytest.approx(5 * line.bands[1].width, rel=1e-3)
        assert [m.transition.source for m in line.marks] == [
            Source.POLL,
            Source.CALLBACK,
            Source.POLL,
        ]
        assert [m.x for m in line.marks] == [b.x for b in line.bands[1:]]
        assert line.ticks, "a time axis"
        right = line.bands[-1].x + line.bands[-1].width
        assert all(line.bands[0].x <= t.x <= right for t in line.ticks)

    def test_a_task_never_changed_is_one_band(self) -> None:
        line = timeline(make_task("t", Status.PENDING), [], now=T0 + 5)
        assert [(b.status, b.start, b.end) for b in line.bands] == [(Status.PENDING, T0, T0 + 5)]

    def test_a_truncated_history_starts_at_its_first_kept_transition(self) -> None:
        task = make_task("t", Status.IDLE)
        history = [move(task, Status.IN_PROGRESS, T0 + 50), move(task, Status.EXITED, T0 + 60)]
        line = timeline(task, history, now=T0 + 61, truncated=True)
        assert [b.status for b in line.bands] == [Status.IN_PROGRESS, Status.EXITED]

    def test_a_status_held_for_a_moment_still_shows(self) -> None:
        task = make_task("t", Status.PENDING)
        history = [move(task, Status.IDLE, T0 + 1), move(task, Status.ENDED, T0 + 1.0001)]
        line = timeline(task, history, now=T0 + 86400)
        assert all(b.width >= 1.0 for b in line.bands)


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


# ---------------------------------------------------------------------------------- over HTTP


def _text_of(page: str) -> str:
    """The page's visible text, markup removed and entities decoded."""
    return html.unescape(re.sub(r"<[^>]*>", " ", page))


class TestServed:
    async def test_every_page_carries_the_policy_and_no_value_becomes_markup(
        self, page_server: tuple[str, FakeSource, aiohttp.ClientSession]
    ) -> None:
        url, source, session = page_server
        hostile = source.task(TaskKey(APP, NASTY_ID))
        assert hostile is not None
        for path in ("/", "/?label=team:a", task_href(APP, NASTY_ID)):
            async with session.get(url + path) as answer:
                assert answer.status == 200, path
                assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
                assert answer.headers["X-Content-Type-Options"] == "nosniff"
                body = await answer.text()
            # The only script is the page's own file; no value from a task opened a tag.
            assert re.findall(r"<script[^>]*>", body) == [
                '<script src="/static/refresh.js" defer>'
            ], path
            for tag in ("<img", "<i>", "<b>"):
                assert tag not in body, path
            assert 'href="javascript:' not in body
            text = _text_of(body)
            assert NASTY in text or path == "/?label=team:a"
            assert NASTY_ID in text
        async with session.get(url + task_href(APP, NASTY_ID)) as answer:
            text = _text_of(await answer.text())
        assert "<b>E</b>" in text  # the error code, as text
        assert "<i>x</i>.mp4" in text

    async def test_unknown_and_malformed_task_pages_answer_html_errors(
        self, page_server: tuple[str, FakeSource, aiohttp.ClientSession]
    ) -> None:
        url, _, session = page_server
        for path, status in (
            ("/tasks/1/nope", 404),
            ("/tasks/x/nope", 400),
            ("/tasks/1/" + "a" * 300, 400),
        ):
            async with session.get(url + path) as answer:
                assert answer.status == status, path
                assert answer.content_type == "text/html"
                assert "Content-Security-Policy" in answer.headers
                assert "No such task" in await answer.text()

    async def test_bad_filters_answer_400_with_the_page_and_what_was_ignored(
        self, page_server: tuple[str, FakeSource, aiohttp.ClientSession]
    ) -> None:
        url, _, session = page_server
        async with session.get(url + "/?status=<script>&page=-1") as answer:
            assert answer.status == 400
            body = await answer.text()
        assert "Ignored: status" in body
        assert "Ignored: page" in body
        assert "<script>&" not in body

    async def test_static_files_are_served_and_nothing_else(
        self, page_server: tuple[str, FakeSource, aiohttp.ClientSession]
    ) -> None:
        url, _, session = page_server
        for name, ctype in (
            ("status.css", "text/css"),
            ("refresh.js", "text/javascript"),
            ("favicon.svg", "image/svg+xml"),
        ):
            async with session.get(f"{url}/static/{name}") as answer:
                assert answer.status == 200
                assert answer.content_type == ctype
                assert len(await answer.read()) > 50
        for name in ("../status_page.py", "%2e%2e%2fstatus_page.py", "nope.css"):
            async with session.get(f"{url}/static/{name}") as answer:
                assert answer.status == 404, name


class TestOnTheDaemon:
    async def test_counts_match_the_api_and_no_secret_is_in_any_page(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        ids = []
        for i in range(6):
            life = Life(idle=0.2, hang_idle=True) if i % 2 else Life(idle=0.2)
            task_id = simulator.add_task(APP, life=life)
            ids.append(task_id)
            region = REGIONS[i % 3]
            answer = await running.register(APP, task_id, region, labels={"room": NASTY})
            assert answer.status == 201

        async def api_counts() -> dict[str, int] | None:
            async with running.session.get(f"{running.url}/api/v1/tasks") as answer:
                tasks = (await answer.json())["tasks"]
            statuses = [t["status"] for t in tasks]
            if statuses.count("Idle") != 3 or statuses.count("InProgress") != 3:
                return None
            return {s: statuses.count(s) for s in set(statuses)}

        expected = await wait_for_async(api_counts, what="every task observed")
        async with running.session.get(running.url + "/") as answer:
            assert answer.status == 200
            index = await answer.text()
        for status in Status:
            cell = re.search(
                rf'<td class="count total[^"]*" data-status="{status.value}">(\d+)</td>', index
            )
            assert cell is not None, status
            assert int(cell.group(1)) == expected.get(status.value, 0), status
        pages = [index]
        for path in [task_href(APP, t) for t in ids] + ["/static/status.css", "/tasks/1/x"]:
            async with running.session.get(running.url + path) as answer:
                assert answer.status in (200, 404)
                pages.append(await answer.text())
        whole = "\n".join(pages)
        assert ids[0] in whole
        for secret in (API_TOKEN, DEFAULT_SECRET_KEY):
            assert secret not in whole

    async def test_a_daemon_not_started_yet_serves_an_empty_page(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unused_tcp_port: int
    ) -> None:
        monkeypatch.setenv("TEST_API_TOKEN", API_TOKEN)
        config = parse_config(daemon_config_text("http://127.0.0.1:9", tmp_path / "m.db"))
        app = web.Application()
        status_page.add_routes(app, ComponentStatusSource(Daemon(config)))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
        try:
            async with aiohttp.ClientSession() as session:
                base = f"http://127.0.0.1:{unused_tcp_port}"
                async with session.get(base + "/") as answer:
                    assert answer.status == 200
                    assert "no tasks registered" in await answer.text()
                async with session.get(base + "/tasks/1/x") as answer:
                    assert answer.status == 404
        finally:
            await runner.cleanup()

    async def test_the_form_keeps_every_label_filter_one_per_field(
        self, page_server: tuple[str, FakeSource, aiohttp.ClientSession]
    ) -> None:
        url, _, session = page_server
        query = urllib.parse.urlencode([("label", "team:a"), ("label", f"room:{NASTY}")])
        async with session.get(f"{url}/?{query}") as answer:
            assert answer.status == 200
            body = await answer.text()
        fields = re.findall(r'<input type="(?:text|hidden)" name="label"[^>]*value="([^"]*)"', body)
        assert [html.unescape(f) for f in fields] == ["team:a", f"room:{NASTY}"]
