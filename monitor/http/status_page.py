"""The status page (SPEC section 10c): the fleet at a glance on ``/``, one task's life on
``/tasks/{sdk_app_id}/{task_id}``.

Server-rendered HTML from Jinja2 templates with autoescaping on, one stylesheet and one small
refresh script from the same origin, and a Content-Security-Policy that allows nothing else:
every value that comes from a task (ids, labels, error codes, file names) is data, never markup.

The page reads through ``StatusSource``, a narrow protocol, never the daemon. On the event loop
it only takes a snapshot (a list of the tasks, the budgets, the firing alerts, a few
transitions); counting, filtering, sorting and rendering run in one worker thread, so the
loop is never held for a whole page, which takes 30-100 ms of CPU at 100,000 tasks
(``bench/status_page.py``). Counts and the task table come from the same snapshot, so they
always agree with each other.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import math
import operator
import re
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import jinja2
from aiohttp import web
from multidict import MultiMapping

from monitor import __version__
from monitor.models import REGIONS, Status, Task, TaskKey, Transition
from monitor.registry import TaskFilter
from monitor.store.base import AlertRecord
from monitor.taskspec import LABEL_NAME_RE
from monitor.uploads import UploadPhase, UploadState

PAGE_SIZE: Final = 50
RECENT_TRANSITIONS: Final = 20
# A task page draws at most this many transitions; a flapping task's older history stays in
# the API (``/transitions``), the timeline shows its recent life.
TIMELINE_TRANSITIONS: Final = 500
DEFAULT_REFRESH_SECONDS: Final = 10
MAX_PAGE: Final = 10**7
MAX_TASK_ID: Final = 256
_UNSIGNED = re.compile(r"[0-9]{1,19}")
_INT64_MAX: Final = 2**63 - 1

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

_HERE = Path(__file__).resolve().parent
TEMPLATES_DIR: Final = _HERE / "templates"
STATIC_DIR: Final = _HERE / "static"
_STATIC_TYPES: Final = {
    "status.css": "text/css; charset=utf-8",
    "refresh.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

# One thread builds and renders pages: a page never runs on the event loop, and many open
# browsers refreshing at once queue up instead of multiplying threads fighting for the GIL.
_PAGE_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="status-page")


# ---------------------------------------------------------------------------------- interface


@dataclass(frozen=True, slots=True)
class AccountBudget:
    """One account's request budget, in requests per second, summed over its buckets."""

    account: str
    required: float  # what every task's interval together needs
    capacity: float  # what the limiter lets out: the limit less the guard
    limit: float  # the configured quota (rate_limit / rate_window)
    effective: float  # allowed now, after backoff from throttling

    @property
    def over(self) -> bool:
        """The same condition as ``MonitorOverBudget``: required beyond what may be sent."""
        return self.required > self.capacity


class StatusSource(Protocol):
    """Everything the status page reads; nothing else of the daemon is visible to it."""

    def tasks(self) -> Sequence[Task]:
        """A snapshot of every registered task: a new sequence, safe to iterate off the loop
        while the table changes (the tasks in it are the live records)."""
        ...

    def task(self, key: TaskKey) -> Task | None:
        """One task, or None when it is not registered."""
        ...

    def budgets(self) -> Sequence[AccountBudget]:
        """The budget of every configured account."""
        ...

    def firing_alerts(self) -> Sequence[AlertRecord]:
        """Alerts firing now, oldest first."""
        ...

    async def recent_transitions(self, limit: int) -> Sequence[Transition]:
        """The newest transitions of the whole fleet, newest first."""
        ...

    async def transitions(self, key: TaskKey, limit: int) -> Sequence[Transition]:
        """The task's newest ``limit`` transitions, newest first."""
        ...


# ---------------------------------------------------------------------------------- formatting


def fmt_time(ts: float | None) -> str:
    if ts is None or ts <= 0:
        return "—"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_age(seconds: float) -> str:
    """A short duration a person reads at a glance: 42s, 3m 12s, 5h 07m, 2d 03h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def ago(ts: float | None, now: float) -> str:
    if ts is None or ts <= 0:
        return "never"
    return f"{fmt_age(now - ts)} ago"


def fmt_rate(rate: float) -> str:
    return f"{rate:.2f}" if rate < 10 else f"{rate:.1f}"


def task_href(sdk_app_id: int, task_id: str) -> str:
    # Every character but the unreserved ones is percent-encoded: an id can never end the
    # path, start a query or climb a directory.
    return f"/tasks/{sdk_app_id}/{urllib.parse.quote(task_id, safe='')}"


def _detail_text(detail: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items())


# ---------------------------------------------------------------------------------- query


@dataclass(frozen=True, slots=True)
class PageQuery:
    """What the visitor asked for: a filter and a page of the task table."""

    flt: TaskFilter = field(default_factory=TaskFilter)
    page: int = 1

    def params(self, page: int | None = None, **changes: str | None) -> list[tuple[str, str]]:
        """This query as URL parameters, with ``changes`` applied (None drops a parameter)."""
        values: dict[str, str | None] = {
            "status": self.flt.status.value if self.flt.status else None,
            "region": self.flt.region,
            "account": self.flt.account,
        }
        values.update(changes)
        out = [(k, v) for k, v in values.items() if v]
        out.extend(("label", f"{k}:{v}") for k, v in self.flt.labels.items())
        if page is not None and page > 1:
            out.append(("page", str(page)))
        return out

    def href(self, page: int | None = None, **changes: str | None) -> str:
        query = urllib.parse.urlencode(self.params(page, **changes))
        return f"/?{query}#tasks" if query else "/#tasks"


def parse_query(params: MultiMapping[str]) -> tuple[PageQuery, list[str]]:
    """The visitor's filter; a bad value is dropped and named, never an error page."""
    errors: list[str] = []
    status: Status | None = None
    raw_status = params.get("status", "")
    if raw_status:
        try:
            status = Status(raw_status)
        except ValueError:
            errors.append(f"status: must be one of {', '.join(s.value for s in Status)}")
    region: str | None = params.get("region", "") or None
    if region is not None and region not in REGIONS:
        errors.append(f"region: must be one of {', '.join(REGIONS)}")
        region = None
    account = params.get("account", "")[:256] or None
    labels: dict[str, str] = {}
    for item in params.getall("label", []):
        if not item.strip():
            continue  # the form's empty label field
        name, sep, value = item.partition(":")
        name = name.strip()
        if not sep or not LABEL_NAME_RE.fullmatch(name) or len(value) > 256:
            errors.append("label: use name:value with a valid label name")
            continue
        labels[name] = value
    page = 1
    raw_page = params.get("page", "")
    if raw_page:
        if _UNSIGNED.fullmatch(raw_page) and 1 <= int(raw_page) <= MAX_PAGE:
            page = int(raw_page)
        else:
            errors.append(f"page: must be a whole number from 1 to {MAX_PAGE}")
    return PageQuery(TaskFilter(status, region, account, labels), page), errors


def parse_task_key(sdk_app_id: str, task_id: str) -> TaskKey | None:
    """The key named by a task page URL, or None when it cannot name any task.

    Only bounded, not held to the registration rules: a task with an odd id (from an older
    version, another replica's store) still gets its page.
    """
    if not _UNSIGNED.fullmatch(sdk_app_id) or not 0 < int(sdk_app_id) <= _INT64_MAX:
        return None
    if not 0 < len(task_id) <= MAX_TASK_ID:
        return None
    return TaskKey(int(sdk_app_id), task_id)


# ---------------------------------------------------------------------------------- overview


@dataclass(frozen=True, slots=True)
class CountRow:
    account: str
    region: str
    counts: dict[Status, int]
    total: int


@dataclass(frozen=True, slots=True)
class Counts:
    rows: list[CountRow]
    totals: dict[Status, int]
    total: int


def count_statuses(tasks: Iterable[Task]) -> Counts:
    """Tasks by (account, region, status), every status present, rows in name order."""
    counter: Counter[tuple[str, str, Status]] = Counter(
        (t.account, t.region, t.status) for t in tasks
    )
    cells: dict[tuple[str, str], dict[Status, int]] = {}
    for (account, region, status), n in counter.items():
        cells.setdefault((account, region), dict.fromkeys(Status, 0))[status] = n
    rows = [
        CountRow(account, region, counts, sum(counts.values()))
        for (account, region), counts in sorted(cells.items())
    ]
    totals = dict.fromkeys(Status, 0)
    for (_, _, status), n in counter.items():
        totals[status] += n
    return Counts(rows, totals, sum(totals.values()))


@dataclass(frozen=True, slots=True)
class BudgetBar:
    """Positions along one bar in percent of its length (the larger of limit and required)."""

    budget: AccountBudget
    required_pct: float
    capacity_pct: float
    effective_pct: float
    use_pct: float  # required against capacity, the figure the colour follows

    @property
    def over(self) -> bool:
        return self.budget.over


def budget_bar(budget: AccountBudget) -> BudgetBar:
    scale = max(budget.limit, budget.required, budget.capacity, 1e-9)

    def pct(value: float) -> float:
        return round(min(100.0, max(0.0, value / scale * 100.0)), 2)

    use = budget.required / budget.capacity * 100.0 if budget.capacity > 0 else math.inf
    return BudgetBar(
        budget,
        required_pct=pct(budget.required),
        capacity_pct=pct(budget.capacity),
        effective_pct=pct(budget.effective),
        use_pct=use,
    )


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: list[Task]
    total: int
    page: int
    pages: int

    @property
    def first_index(self) -> int:
        return (self.page - 1) * PAGE_SIZE + 1 if self.tasks else 0

    @property
    def last_index(self) -> int:
        return (self.page - 1) * PAGE_SIZE + len(self.tasks)


# The API's order. attrgetter builds the key tuples in C: a third faster than a lambda.
_KEY: Final = operator.attrgetter("sdk_app_id", "task_id")


def select_tasks(tasks: Iterable[Task], query: PageQuery, size: int = PAGE_SIZE) -> TaskPage:
    """The matching tasks in key order (the API's order), one page of them; a page past the
    end shows the last one."""
    flt = query.flt
    if flt.status is None and flt.region is None and flt.account is None and not flt.labels:
        matched = list(tasks)
    else:
        matched = [t for t in tasks if flt.matches(t)]
    n = len(matched)
    pages = max(1, -(-n // size))
    page = min(query.page, pages)
    start = (page - 1) * size
    # The first and the last pages of a large table, the ones people open, are a partial
    # selection instead of a sort of everything.
    if start + size <= n // 8:
        chosen = heapq.nsmallest(start + size, matched, key=_KEY)[start:]
    elif n - start <= n // 8:
        chosen = heapq.nlargest(n - start, matched, key=_KEY)[::-1][:size]
    else:
        chosen = _sorted_slice(matched, start, size)
    return TaskPage(chosen, n, page, pages)


# A sort is one C call that keeps the GIL throughout (~100 ms for 100,000 tasks), stalling the
# event loop's thread; runs of this size sort in a few milliseconds each, and merging them is
# Python code that lets the loop in.
_SORT_RUN: Final = 8192


def _sorted_slice(tasks: list[Task], start: int, size: int) -> list[Task]:
    runs = [sorted(tasks[i : i + _SORT_RUN], key=_KEY) for i in range(0, len(tasks), _SORT_RUN)]
    return list(itertools.islice(heapq.merge(*runs, key=_KEY), start, start + size))


def alert_subject(record: AlertRecord) -> tuple[str, str | None]:
    """What an alert is about, and the page to open for it."""
    if record.task is not None:
        return str(record.task), task_href(record.task.sdk_app_id, record.task.task_id)
    account = record.labels.get("account")
    return (f"account {account}" if account else "monitor"), None


# ---------------------------------------------------------------------------------- timeline

TIMELINE_WIDTH: Final = 960.0
TIMELINE_LEFT: Final = 8.0
TIMELINE_RIGHT: Final = 8.0
BAND_TOP: Final = 8.0
BAND_HEIGHT: Final = 40.0
AXIS_Y: Final = BAND_TOP + BAND_HEIGHT + 22.0
TIMELINE_HEIGHT: Final = AXIS_Y + 22.0
# Candidate tick steps in seconds: a person reads round times.
_TICK_STEPS: Final = (
    1, 2, 5, 10, 15, 30,
    60, 120, 300, 600, 900, 1800,
    3600, 7200, 10800, 21600, 43200,
    86400, 172800, 604800, 2592000,
)  # fmt: skip
MAX_TICKS: Final = 8


@dataclass(frozen=True, slots=True)
class Band:
    status: Status
    start: float
    end: float
    x: float
    width: float


@dataclass(frozen=True, slots=True)
class Mark:
    transition: Transition
    x: float


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Timeline:
    bands: list[Band]
    marks: list[Mark]
    ticks: list[Tick]
    start: float
    end: float
    truncated: bool
    width: float = TIMELINE_WIDTH
    height: float = TIMELINE_HEIGHT
    band_top: float = BAND_TOP
    band_height: float = BAND_HEIGHT
    axis_y: float = AXIS_Y


def _ticks(start: float, end: float, x_of: Callable[[float], float]) -> list[Tick]:
    span = end - start
    step = next((s for s in _TICK_STEPS if span / s <= MAX_TICKS), _TICK_STEPS[-1])
    if span > 2 * 86400:
        fmt = "%m-%d %H:%M"
    elif step >= 60:
        fmt = "%H:%M"
    else:
        fmt = "%H:%M:%S"
    ticks = []
    t = math.ceil(start / step) * step
    while t <= end:
        label = dt.datetime.fromtimestamp(t, dt.UTC).strftime(fmt)
        ticks.append(Tick(round(x_of(t), 2), label))
        t += step
    return ticks


def timeline(
    task: Task, history: Sequence[Transition], now: float, truncated: bool = False
) -> Timeline:
    """The task's life as bands, one per status it was in, oldest first.

    ``history`` is oldest first. The first band is the status before the first transition,
    from registration (when the whole history is there); each transition starts a band that
    lasts until the next one, the last until ``now``.
    """
    spans: list[tuple[Status, float]] = []  # (status, began at)
    if history and not truncated:
        first_at = history[0].at
        began = min(task.registered_at, first_at) if task.registered_at > 0 else first_at
        spans.append((history[0].from_status, began))
    elif not history:
        began = task.registered_at if task.registered_at > 0 else task.status_since
        spans.append((task.status, min(began, task.status_since or began)))
    spans.extend((t.to_status, t.at) for t in history)
    start = spans[0][1]
    end = max(now, spans[-1][1])
    span = max(end - start, 1.0)
    plot = TIMELINE_WIDTH - TIMELINE_LEFT - TIMELINE_RIGHT

    def x_of(ts: float) -> float:
        return TIMELINE_LEFT + (ts - start) / span * plot

    bands: list[Band] = []
    for i, (status, began) in enumerate(spans):
        ended = spans[i + 1][1] if i + 1 < len(spans) else end
        x = x_of(began)
        # At least a sliver, so a status held for a moment still shows.
        width = max(x_of(ended) - x, 1.0)
        bands.append(Band(status, began, ended, round(x, 2), round(width, 2)))
    marks = [Mark(t, round(x_of(t.at), 2)) for t in history]
    return Timeline(bands, marks, _ticks(start, end, x_of), start, end, truncated)


# ---------------------------------------------------------------------------------- task facts


@dataclass(frozen=True, slots=True)
class FileEntry:
    name: str
    facts: str
    url: str | None = None


@dataclass(frozen=True, slots=True)
class UploadView:
    state: str | None
    files: list[FileEntry]
    facts: list[tuple[str, str]]

    def __bool__(self) -> bool:
        return bool(self.state or self.files or self.facts)


def _safe_url(value: object) -> str | None:
    """A link only for http(s): a stored URL must never become ``javascript:``."""
    if isinstance(value, str) and urllib.parse.urlsplit(value).scheme in ("http", "https"):
        return value
    return None


def _files(entries: object, name_key: str, kind: str) -> list[FileEntry]:
    out: list[FileEntry] = []
    if not isinstance(entries, list):
        return out
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        name = str(entry.get(name_key) or "?")
        facts = ", ".join(
            f"{k}={v}"
            for k, v in entry.items()
            if k != name_key and isinstance(v, str | int | float | bool)
        )
        out.append(FileEntry(f"{kind} {name}", facts, _safe_url(entry.get("VideoUrl"))))
    return out


def _upload_files(upload: UploadState) -> list[FileEntry]:
    out: list[FileEntry] = []
    for f in upload.files:
        facts = ", ".join(
            f"{k}={v}"
            for k, v in f.to_json().items()
            if k not in ("kind", "name", "url") and not (k == "file_id" and not f.name)
        )
        out.append(
            FileEntry(f"{f.kind.value} {f.name or f.file_id or '?'}", facts, _safe_url(f.url))
        )
    return out


def upload_view(task: Task) -> UploadView:
    """The task's upload as the callbacks told it: its state, the files, the failure named."""
    upload = task.upload
    files = _upload_files(upload)
    if not files:
        # Tasks stored before uploads were followed have only the callbacks' raw facts.
        files = _files(task.extra.get("mp4_files"), "FileName", "mp4") + _files(
            task.extra.get("vod_files"), "FileId", "vod"
        )
    facts: list[tuple[str, str]] = []
    for label, at in (
        ("started", upload.started_at),
        ("recording stopped", upload.stopped_at),
        ("finished", upload.finished_at),
    ):
        if at is not None:
            facts.append((label, fmt_time(at)))
    failure = upload.failure
    if failure is not None:
        what = " ".join(x for x in (failure.code, failure.message) if x)
        facts.append(("failure", f"{failure.event_name} at {fmt_time(failure.at)}: {what}"))
    known = upload.state is not UploadPhase.NONE or files or facts
    return UploadView(upload.state.value if known else None, files, facts)


# ---------------------------------------------------------------------------------- rendering


def new_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,  # every file, whatever its name: all of them are HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        fmt_time=fmt_time,
        fmt_age=fmt_age,
        fmt_rate=fmt_rate,
        ago=ago,
        task_href=task_href,
        detail_text=_detail_text,
        statuses=list(Status),
        regions=REGIONS,
        version=__version__,
        inf=math.inf,
    )
    return env


@dataclass(frozen=True, slots=True)
class Overview:
    """What ``/`` shows; taken on the event loop, rendered in the page thread."""

    tasks: Sequence[Task]
    budgets: Sequence[AccountBudget]
    alerts: Sequence[AlertRecord]
    recent: Sequence[Transition]
    query: PageQuery
    errors: list[str]
    now: float
    refresh: int


def render_overview(env: jinja2.Environment, view: Overview) -> str:
    counts = count_statuses(view.tasks)
    table = select_tasks(view.tasks, view.query)
    accounts = sorted({r.account for r in counts.rows} | {b.account for b in view.budgets})
    return env.get_template("index.html").render(
        counts=counts,
        bars=[budget_bar(b) for b in sorted(view.budgets, key=lambda b: b.account)],
        alerts=[(r, *alert_subject(r)) for r in view.alerts],
        recent=view.recent,
        table=table,
        query=view.query,
        accounts=accounts,
        errors=view.errors,
        now=view.now,
        refresh=view.refresh,
    )


def render_task(
    env: jinja2.Environment,
    task: Task,
    newest_first: Sequence[Transition],
    upload: UploadView,
    now: float,
    refresh: int,
) -> str:
    history = list(reversed(newest_first))
    truncated = len(newest_first) >= TIMELINE_TRANSITIONS
    return env.get_template("task.html").render(
        task=task,
        line=timeline(task, history, now, truncated),
        history=newest_first,
        upload=upload,
        now=now,
        refresh=refresh,
    )


def render_missing(env: jinja2.Environment, what: str, now: float, refresh: int) -> str:
    return env.get_template("missing.html").render(what=what, now=now, refresh=refresh)


# ---------------------------------------------------------------------------------- handlers


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
