"""The status page: the fleet at a glance on ``/``, one task's life on
``/tasks/{sdk_app_id}/{task_id}``.

Server-rendered HTML from Jinja2 templates with autoescaping on, one stylesheet and one small
refresh script from the same origin, and a Content-Security-Policy that allows nothing else:
every value that comes from a task (ids, labels, error codes, file names) is data, never markup.

What a page shows is computed by pure functions (:mod:`.query`, :mod:`.view`,
:mod:`.timeline`), turned into HTML by :mod:`.rendering`, and served by :mod:`.handlers`,
which read through :class:`StatusSource` (:mod:`.source`), a narrow protocol, never the daemon.
"""

from __future__ import annotations

from monitor.http.status_page.handlers import add_routes
from monitor.http.status_page.source import AccountBudget, StatusSource

__all__ = ["AccountBudget", "StatusSource", "add_routes"]
