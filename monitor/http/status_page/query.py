"""What a visitor asks the status page for: the filter and page of ``/``, the key of a task page.

Parsed from the URL, pure: a bad value is dropped and named on the page, never an error page.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Final

from multidict import MultiMapping

from monitor.models import REGIONS, Status, TaskKey
from monitor.registry import TaskFilter
from monitor.taskspec import LABEL_NAME_RE

MAX_PAGE: Final = 10**7
MAX_TASK_ID: Final = 256
_UNSIGNED = re.compile(r"[0-9]{1,19}")
_INT64_MAX: Final = 2**63 - 1


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
