"""The status page's aiohttp handlers: ``/``, ``/tasks/{sdk_app_id}/{task_id}`` and ``/static/``.

On the event loop a handler only takes a snapshot from the ``StatusSource`` (a list of the
tasks, the budgets, the firing alerts, a few transitions); counting, filtering, sorting and
rendering run in one worker thread, so the loop is never held for a whole page, which takes
30-100 ms of CPU at 100,000 tasks (``bench/status_page.py``). Counts and the task table come
from the same snapshot, so they always agree with each other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jinja2
from aiohttp import web

from monitor.http.status_page.query import parse_query, parse_task_key
from monitor.http.status_page.rendering import (
    TIMELINE_TRANSITIONS,
    Overview,
    new_environment,
    render_missing,
    render_overview,
    render_task,
)
from monitor.http.status_page.source import StatusSource
from monitor.http.status_page.view import upload_view

RECENT_TRANSITIONS: Final = 20
DEFAULT_REFRESH_SECONDS: Final = 10

# No inline script or style, no other origin: the page must work with no internet, and a
# task's label can never become markup or code even if escaping were missed somewhere.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static"
_STATIC_TYPES: Final = {
    "status.css": "text/css; charset=utf-8",
    "refresh.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

# One thread builds and renders pages: a page never runs on the event loop, and many open
# browsers refreshing at once queue up instead of multiplying threads fighting for the GIL.
_PAGE_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="status-page")


@dataclass(frozen=True, slots=True)
class _Settings:
    source: StatusSource
    env: jinja2.Environment
    refresh: int
    clock: Callable[[], float]
    static: dict[str, bytes]


SETTINGS: web.AppKey[_Settings] = web.AppKey("status_page", _Settings)


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=body, status=status, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
    )


async def overview(request: web.Request) -> web.Response:
    s = request.app[SETTINGS]
    query, errors = parse_query(request.query)
    recent = await s.source.recent_transitions(RECENT_TRANSITIONS)
    view = Overview(
        tasks=s.source.tasks(),
        budgets=s.source.budgets(),
        alerts=s.source.firing_alerts(),
        recent=recent,
        query=query,
        errors=errors,
        now=s.clock(),
        refresh=s.refresh,
    )
    body = await asyncio.get_running_loop().run_in_executor(
        _PAGE_POOL, render_overview, s.env, view
    )
    return _html(body, 400 if errors else 200)


async def task_page(request: web.Request) -> web.Response:
    s = request.app[SETTINGS]
    key = parse_task_key(request.match_info["sdk_app_id"], request.match_info["task_id"])
    task = s.source.task(key) if key is not None else None
    if key is None or task is None:
        body = render_missing(s.env, "No such task is registered.", s.clock(), s.refresh)
        return _html(body, 404 if key is not None else 400)
    newest_first = await s.source.transitions(key, TIMELINE_TRANSITIONS)
    # On the loop: callbacks change a task's files while the page thread would read them.
    upload = upload_view(task)
    body = await asyncio.get_running_loop().run_in_executor(
        _PAGE_POOL, render_task, s.env, task, newest_first, upload, s.clock(), s.refresh
    )
    return _html(body)


async def static_file(request: web.Request) -> web.Response:
    s = request.app[SETTINGS]
    name = request.match_info["name"]
    body = s.static.get(name)
    if body is None:
        return web.Response(status=404, text="not found\n")
    return web.Response(
        body=body,
        headers={
            "Content-Type": _STATIC_TYPES[name],
            "Cache-Control": "public, max-age=300",
            "X-Content-Type-Options": "nosniff",
        },
    )


def add_routes(
    app: web.Application,
    source: StatusSource,
    *,
    refresh_seconds: int = DEFAULT_REFRESH_SECONDS,
    clock: Callable[[], float] = time.time,
) -> None:
    """Serve the status page from ``source``: ``/``, the task pages and ``/static/``."""
    static = {name: (STATIC_DIR / name).read_bytes() for name in _STATIC_TYPES}
    app[SETTINGS] = _Settings(source, new_environment(), refresh_seconds, clock, static)
    app.router.add_get("/", overview)
    app.router.add_get("/tasks/{sdk_app_id}/{task_id}", task_page)
    app.router.add_get("/static/{name}", static_file)
