"""What the HTTP layer needs from the rest of the daemon: narrow interfaces, no daemon.

Handlers reach everything through :class:`HttpContext`, whose members are typed by these
protocols; the daemon composes one from its parts. A test can serve the API over stand-ins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from monitor.callbacks.effects import CallbackSettings, CallbackTarget
from monitor.metrics import Rendered
from monitor.models import Source, Task, TaskKey, Transition
from monitor.registry import TaskFilter
from monitor.store.base import AlertRecord, Store
from monitor.taskspec import TaskSpec, TaskUpdate
from monitor.trtc.sites import Site

__all__ = [
    "AlertReader",
    "Control",
    "HttpContext",
    "MetricsExporter",
    "ReloadResult",
    "TaskReader",
    "TaskWriter",
]


class TaskReader(Protocol):
    def get(self, key: TaskKey) -> Task | None: ...

    def find(self, flt: TaskFilter) -> list[Task]: ...


class TaskWriter(Protocol):
    """Registration, changes and removal, stored before they are applied (503 when the store
    fails)."""

    async def register(self, spec: TaskSpec, source: Source) -> tuple[Task, bool]: ...

    async def register_many(
        self, specs: list[TaskSpec], source: Source
    ) -> list[tuple[Task, bool]]: ...

    async def remove(self, key: TaskKey) -> Task | None: ...

    async def update_task(self, key: TaskKey, update: TaskUpdate) -> Task | None:
        """Labels and/or interval (those ``update`` sets) changed; None for an unknown task, the
        record unchanged for a removed one."""
        ...

    async def transitions(self, key: TaskKey, limit: int | None = None) -> list[Transition]: ...


class AlertReader(Protocol):
    def firing(self) -> list[AlertRecord]: ...


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    errors: tuple[str, ...] = ()
    # Keys whose new value was not applied because it takes a restart.
    restart_required: tuple[str, ...] = ()


class CallbackSettingsWithAge(CallbackSettings, Protocol):
    @property
    def max_age(self) -> float: ...

    @property
    def max_skew(self) -> float: ...


class Control(Protocol):
    @property
    def ready(self) -> bool: ...

    async def reload(self) -> ReloadResult: ...

    def account_names(self) -> Mapping[str, Site]:
        """The configured accounts, each with its site (what regions its tasks may use)."""
        ...

    def api_token(self) -> str | None: ...

    def callback_key(self) -> str | None: ...

    def tuikit_token(self) -> str | None:
        """``callbacks.tuikit_token``: what TUIKit envelopes are authenticated with."""
        ...

    def callback_app_keys(self) -> Mapping[int, str] | None:
        """With ``callbacks.apps``: each application's key (no other is taken); else None."""
        ...

    def callback_settings(self) -> CallbackSettingsWithAge: ...


class MetricsExporter(Protocol):
    async def render(self, accept: str | None) -> Rendered:
        """One scrape of a snapshot taken now, without holding the loop for long."""
        ...

    def count_callback(self, event_type: str, outcome: str) -> None: ...


@dataclass(frozen=True, slots=True)
class HttpContext:
    tasks: TaskReader
    writer: TaskWriter
    alerts: AlertReader
    control: Control
    metrics: MetricsExporter
    callbacks: CallbackTarget
    clock: Callable[[], float]
    max_body_bytes: int
    # The store every replica shares, when there are several (Redis): what the callback
    # endpoint has seen is kept there. None: each process remembers its own.
    shared_store: Store | None = None
