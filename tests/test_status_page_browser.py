"""The status page in a real headless Chromium (Debian's ``chromium``), driven by Playwright.

Playwright only drives the browser the machine has (``executable_path``); it never downloads
one. Every page visited must load without a console error, a failed request or an error
answer; screenshots are kept under ``tests/artifacts/``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from playwright.async_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Response,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError

from monitor.http import status_page
from monitor.http.status_page.view import PAGE_SIZE, task_href
from monitor.models import REGIONS, Status, TaskKey
from monitor.simulator import Life, Simulator
from tests.conftest import DaemonFactory, RunningDaemon
from tests.status_page_support import (
    APP,
    NASTY,
    NASTY_ID,
    T0,
    FakeSource,
    make_task,
    nasty_source,
)
from tests.support import free_port, require_binary, wait_for_async

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
# Without the background-networking flags Chromium as root keeps trying to reach out; with a
# fresh profile per test nothing is shared between runs.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
RED = "rgb(201, 42, 42)"
GREEN = "rgb(46, 158, 91)"


@dataclass
class Watch:
    """Everything that went wrong while pages loaded: must stay empty."""

    problems: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    _pending: list[asyncio.Future[None]] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)
        page.on("dialog", self._dialog)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"console {message.type}: {message.text}")

    def _failed(self, request: Request) -> None:
        self.problems.append(f"request failed: {request.url} {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        self._pending.append(asyncio.ensure_future(dialog.dismiss()))


@asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[BrowserContext]:
    binary = require_binary("chromium")
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=binary,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,  # type: ignore[arg-type]
        )
        try:
            yield context
        finally:
            await context.close()


async def open_page(context: BrowserContext, watch: Watch) -> Page:
    page = await context.new_page()
    watch.attach(page)
    return page


@asynccontextmanager
async def serve(source: FakeSource, refresh: int) -> AsyncIterator[str]:
    """The status page alone over ``source``, on a free loopback port."""
    app = web.Application()
    status_page.add_routes(app, source, refresh_seconds=refresh)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


async def api(running: RunningDaemon, path: str) -> Any:
    async with running.session.get(running.url + path) as answer:
        assert answer.status == 200, path
        return await answer.json()


async def cell_counts(page: Page) -> dict[tuple[str, str, str], int]:
    cells = await page.eval_on_selector_all(
        "#counts td.count[data-account]",
        "cells => cells.map(c => [c.dataset.account, c.dataset.region, c.dataset.status,"
        " c.textContent.trim()])",
    )
    return {(a, r, s): int(n) for a, r, s, n in cells}


async def row_ids(page: Page) -> list[str]:
    ids: list[str] = await page.eval_on_selector_all(
        "table.tasks tr.task a.task-link", "links => links.map(a => a.textContent)"
    )
    return ids


# ---------------------------------------------------------------------------------- a fleet

# (count, life or None for a task the simulator never had) -> the status it settles in
STEADY = Life(idle=0.2, in_progress=None)
HANG = Life(idle=0.2, hang_idle=True)
SHORT = Life(idle=0.2, in_progress=0.3, exited=0.3)
FLEET: list[tuple[int, Life | None, Status]] = [
    (30, STEADY, Status.IN_PROGRESS),
    (14, HANG, Status.IDLE),
    (12, SHORT, Status.ENDED),
    (6, None, Status.ENDED),
]
REMOVED = 6  # of the steady ones, deregistered


async def settled_fleet(simulator: Simulator, running: RunningDaemon) -> dict[str, int]:
    """Register the fleet and wait until every task is in the status its life ends in."""
    expected: dict[str, int] = {}
    n = 0
    steady: list[str] = []
    for count, life, settles in FLEET:
        for _ in range(count):
            task_id = simulator.add_task(APP, life=life) if life is not None else f"never-{n:03d}"
            labels = {"team": "ab"[n % 2]}
            if n % 10 == 0:
                labels["room"] = NASTY
            answer = await running.register(APP, task_id, REGIONS[n % 4], labels=labels)
            assert answer.status == 201
            if life is STEADY:
                steady.append(task_id)
            expected[settles.value] = expected.get(settles.value, 0) + 1
            n += 1
    for task_id in steady[:REMOVED]:
        async with running.session.delete(
            f"{running.url}/api/v1/tasks/{APP}/{task_id}", headers=running.auth()
        ) as answer:
            assert answer.status == 200
    expected[Status.IN_PROGRESS.value] -= REMOVED
    expected[Status.REMOVED.value] = REMOVED

    async def settled() -> bool:
        tasks = (await api(running, "/api/v1/tasks?limit=1000"))["tasks"]
        got: dict[str, int] = {}
        for t in tasks:
            got[t["status"]] = got.get(t["status"], 0) + 1
        return got == expected

    await wait_for_async(settled, timeout=60, what=f"the fleet to settle at {expected}")
    return expected


class TestInChromium:
    async def test_overview_counts_filters_pages_and_task_timelines(
        self, simulator: Simulator, make_daemon: DaemonFactory, tmp_path: Path
    ) -> None:
        running = await make_daemon(simulator.url)
        expected = await settled_fleet(simulator, running)
        total = sum(expected.values())
        watch = Watch()
        async with chromium(tmp_path / "profile") as context:
            page = await open_page(context, watch)
            answer = await page.goto(running.url + "/")
            assert answer is not None
            assert answer.status == 200
            assert "default-src 'none'" in answer.headers["content-security-policy"]
            # The stylesheet applied: a count cell wears its status colour.
            cell = page.locator('#counts td.count.has[data-status="InProgress"]').first
            colour = await cell.evaluate("c => getComputedStyle(c).backgroundColor")
            assert colour == GREEN
            await page.screenshot(path=str(artifact("status-page.png")))

            # Counts: each cell equals what the API answers for that filter.
            cells = await cell_counts(page)
            assert sum(cells.values()) == total
            for (account, region, status), n in cells.items():
                listed = await api(
                    running,
                    f"/api/v1/tasks?account={account}&region={region}&status={status}&limit=1",
                )
                assert listed["total"] == n, (account, region, status)
            for status in Status:
                shown = await page.text_content(f'#counts tfoot td[data-status="{status.value}"]')
                assert shown is not None
                assert int(shown) == expected.get(status.value, 0), status

            # Labels holding markup, quotes and unicode are text, and nothing ran.
            rooms = await page.eval_on_selector_all(
                "table.tasks .label .lv", "vs => vs.map(v => v.textContent)"
            )
            assert NASTY in rooms
            assert await page.evaluate("document.scripts.length") == 1

            # Paging: pages follow the API's order and cover every task once.
            seen: list[str] = []
            for offset in range(0, total, PAGE_SIZE):
                listed = await api(running, f"/api/v1/tasks?limit={PAGE_SIZE}&offset={offset}")
                assert await row_ids(page) == [t["task_id"] for t in listed["tasks"]]
                seen.extend(await row_ids(page))
                if offset + PAGE_SIZE < total:
                    await page.click("nav.pager a[rel=next]")
                    await page.wait_for_load_state()
            assert len(set(seen)) == total
            assert await page.locator("nav.pager a[rel=next]").count() == 0

            # Filtering through the form: status and label, then region through a count cell.
            await page.goto(running.url + "/")
            await page.select_option("form.filter select[name=status]", "Idle")
            await page.fill("form.filter input[name=label]", "team:b")
            await page.click("form.filter button[type=submit]")
            await page.wait_for_load_state()
            assert "status=Idle" in page.url
            listed = await api(running, "/api/v1/tasks?status=Idle&label=team:b&limit=1000")
            assert await row_ids(page) == [t["task_id"] for t in listed["tasks"]]
            assert listed["total"] > 0
            statuses = await page.eval_on_selector_all(
                "table.tasks tr.task", "rows => rows.map(r => r.dataset.status)"
            )
            assert set(statuses) == {"Idle"}
            await page.click(f'#counts td[data-region="{REGIONS[1]}"][data-status="Ended"] a')
            await page.wait_for_load_state()
            listed = await api(running, f"/api/v1/tasks?status=Ended&region={REGIONS[1]}")
            assert await row_ids(page) == [t["task_id"] for t in listed["tasks"]]

            # A task page: one band per recorded status, a mark per transition, by source.
            ended = listed["tasks"][0]["task_id"]
            await page.click(f'table.tasks a.task-link:text-is("{ended}")')
            await page.wait_for_load_state()
            history = (await api(running, f"/api/v1/tasks/{APP}/{ended}/transitions"))[
                "transitions"
            ]
            history.sort(key=lambda t: t["seq"])
            assert history, "an ended task has transitions"
            bands = await page.eval_on_selector_all(
                "svg.timeline rect.band",
                "rs => rs.map(r => [r.dataset.status, r.getBoundingClientRect().width,"
                " getComputedStyle(r).fill])",
            )
            assert [b[0] for b in bands] == [history[0]["from"]] + [t["to"] for t in history]
            assert all(width > 0 for _, width, _ in bands)
            assert all(fill.startswith("rgb(") for _, _, fill in bands)
            assert len({fill for _, _, fill in bands}) == len({b[0] for b in bands})
            sources = await page.eval_on_selector_all(
                "svg.timeline g.mark", "ms => ms.map(m => m.dataset.source)"
            )
            assert sources == [t["source"] for t in history]
            rows = await page.locator("#transitions tr.transition").count()
            assert rows == len(history)
            assert await page.locator("svg.timeline .axis text").count() >= 2
            await page.screenshot(path=str(artifact("status-page-task.png")), full_page=True)

        assert watch.problems == []
        assert watch.dialogs == []

    async def test_hostile_ids_render_as_text_and_an_over_budget_bar_is_red(
        self, tmp_path: Path
    ) -> None:
        source = nasty_source(now=time.time())
        watch = Watch()
        async with serve(source, refresh=3600) as url, chromium(tmp_path / "profile") as context:
            page = await open_page(context, watch)
            await page.goto(url + "/")
            over = page.locator('#budget .budget[data-account="busy"] .bar-fill')
            fine = page.locator('#budget .budget[data-account="default"] .bar-fill')
            assert await over.evaluate("r => getComputedStyle(r).fill") == RED
            assert await fine.evaluate("r => getComputedStyle(r).fill") == GREEN
            assert await page.locator("#alerts tr.alert").count() == 1
            assert NASTY_ID in await row_ids(page)
            assert await page.evaluate("document.scripts.length") == 1

            # The hostile task's own page, reached through its escaped link.
            await page.click("table.tasks a.task-link >> nth=0")
            await page.wait_for_load_state()
            assert await page.text_content("#task-id") == NASTY_ID
            assert page.url.endswith(task_href(APP, NASTY_ID))
            bands = await page.locator("svg.timeline rect.band").count()
            assert bands == len(source.history[TaskKey(APP, NASTY_ID)]) + 1
            files = await page.eval_on_selector_all(
                "#upload li.file", "ls => ls.map(l => l.textContent)"
            )
            assert any("<i>x</i>.mp4" in f for f in files)
            links = await page.eval_on_selector_all("#upload a", "as => as.map(a => a.href)")
            assert links == ["https://vod.example.invalid/v.mp4"]
            assert await page.evaluate("document.scripts.length") == 1
        assert watch.problems == []
        assert watch.dialogs == []

    async def test_the_page_refreshes_by_itself(self, tmp_path: Path) -> None:
        source = nasty_source(now=time.time())
        watch = Watch()
        async with serve(source, refresh=1) as url, chromium(tmp_path / "profile") as context:
            page = await open_page(context, watch)
            await page.goto(url + "/")
            assert await page.text_content("#table-total") == "8 matching"
            source.add(make_task("arrived-later", registered_at=T0))

            async def refreshed() -> bool:
                # Only read: nothing but the page's own script may reload it.
                try:
                    return await page.text_content("#table-total") == "9 matching"
                except PlaywrightError:
                    return False  # read while it was reloading

            await wait_for_async(refreshed, timeout=15, what="the page to refresh itself")
        assert watch.problems == []


class TestDemo:
    async def test_the_demo_prints_the_page_first_and_its_page_is_photographed(
        self, tmp_path: Path
    ) -> None:
        """Runs ``trtc-monitor demo`` and keeps a screenshot of its page: the README's."""
        require_binary("chromium")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "demo", "--duration", "90s", "--port", "0"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            assert proc.stdout is not None
            lines: list[str] = []
            for _ in range(3):
                line = await asyncio.to_thread(proc.stdout.readline)
                lines.append(line.decode())
                if "http://" in lines[-1]:
                    break
            match = re.fullmatch(r"\s*status page\s+(http://127\.0\.0\.1:\d+)/\s*", lines[-1])
            assert match, f"the first URL printed is the status page: {lines}"
            url = match.group(1)
            watch = Watch()
            async with chromium(tmp_path / "profile") as context:
                page = await open_page(context, watch)

                async def lived() -> bool:
                    # Long enough for the stories to have shown exits, hangs and errors.
                    await page.goto(url + "/")
                    firing = await page.locator("#alerts tr.alert").count()
                    ended = await page.locator('#counts tfoot td.has[data-status="Ended"]').count()
                    return firing >= 2 and ended >= 1

                await wait_for_async(lived, timeout=60, interval=2, what="the demo's stories")
                await page.screenshot(path=str(artifact("status-page-demo.png")))
                await page.click("table.tasks a.task-link >> nth=0")
                await page.wait_for_load_state()
                assert await page.locator("svg.timeline rect.band").count() >= 1
                await page.screenshot(path=str(artifact("status-page-demo-task.png")))
            assert watch.problems == []
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    await asyncio.to_thread(proc.wait, 15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
