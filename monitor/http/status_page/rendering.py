"""The status page's HTML: the Jinja environment and the three pages rendered from view models.

Autoescaping is on for every template, whatever its name: a value from a task (ids, labels,
error codes, file names) is data, never markup. Rendering runs in the page thread, never on
the event loop (see :mod:`~monitor.http.status_page.handlers`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jinja2

from monitor import __version__
from monitor.http.status_page.query import PageQuery
from monitor.http.status_page.source import AccountBudget
from monitor.http.status_page.timeline import timeline
from monitor.http.status_page.view import (
    UploadView,
    ago,
    alert_subject,
    budget_bar,
    count_statuses,
    detail_text,
    fmt_age,
    fmt_rate,
    fmt_time,
    select_tasks,
    task_href,
)
from monitor.models import REGIONS, Status, Task, Transition
from monitor.store.base import AlertRecord

# A task page draws at most this many transitions; a flapping task's older history stays in
# the API (``/transitions``), the timeline shows its recent life.
TIMELINE_TRANSITIONS: Final = 500
# The templates stay beside the package, in monitor/http/templates/.
TEMPLATES_DIR: Final = Path(__file__).resolve().parent.parent / "templates"


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
        detail_text=detail_text,
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
