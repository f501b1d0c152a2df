"""The status page over real HTTP on loopback: its escaping, headers and answers.

These serve a source in memory or a real daemon. The pure view model is tested in
``test_status_page_view.py`` and ``test_status_page_timeline.py``, the page in a real browser
in ``test_status_page_browser.py``.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from monitor.config import parse_config
from monitor.daemon import Daemon
from monitor.http import status_page
from monitor.http.status_page.handlers import CONTENT_SECURITY_POLICY
from monitor.http.status_page.view import (
    task_href,
)
from monitor.http.status_source import ComponentStatusSource
from monitor.models import REGIONS, Status, TaskKey
from monitor.simulator import DEFAULT_SECRET_KEY, Life, Simulator
from tests.conftest import API_TOKEN, DaemonFactory, daemon_config_text
from tests.status_page_support import (
    APP,
    NASTY,
    NASTY_ID,
    T0,
    FakeSource,
    nasty_source,
)
from tests.support import wait_for_async


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
        for name in ("../server.py", "%2e%2e%2fserver.py", "nope.css"):
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
