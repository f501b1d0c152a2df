"""Wire shapes of alert notifications: Alertmanager API v2 and the Alertmanager webhook (v4).

Pure: the receivers turn these dicts into HTTP requests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

from monitor.models import TaskKey
from monitor.store.base import AlertRecord

# What Alertmanager itself writes as endsAt of an alert that has no end yet.
ZERO_TIME: Final = "0001-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class Notice:
    """One alert as it was when a notification about it was queued.

    A snapshot, because the record may change (resolve, fire again) while the notice waits.
    ``starts_at`` tells one firing episode of an alert from the next.
    """

    fingerprint: str
    alertname: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    firing: bool
    starts_at: float
    ends_at: float | None = None
    task: TaskKey | None = None

    @classmethod
    def of(cls, record: AlertRecord) -> Notice:
        return cls(
            fingerprint=record.fingerprint,
            alertname=record.alertname,
            labels=record.labels,
            annotations=record.annotations,
            firing=record.state == "firing",
            starts_at=record.starts_at,
            ends_at=record.ends_at,
            task=record.task,
        )


def rfc3339(t: float) -> str:
    """UTC with milliseconds, as Alertmanager writes times."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def generator_url(external_url: str, notice: Notice) -> str:
    """Where a person can look the alert's subject up in this monitor's API ("" if unknown)."""
    if not external_url:
        return ""
    base = external_url.rstrip("/")
    if notice.task is None:
        return f"{base}/api/v1/alerts"
    return f"{base}/api/v1/tasks/{notice.task.sdk_app_id}/{quote(notice.task.task_id, safe='')}"


def alertmanager_alerts(
    notices: Sequence[Notice], now: float, hold: float, external_url: str = ""
) -> list[dict[str, Any]]:
    """The body of ``POST /api/v2/alerts``.

    A firing alert ends ``hold`` seconds from now unless re-sent, so Alertmanager keeps it
    while the monitor keeps re-sending and lets it expire if the monitor dies. A resolved one
    ends when it was resolved.
    """
    body: list[dict[str, Any]] = []
    for n in notices:
        ends = now + hold if n.firing else (n.ends_at if n.ends_at is not None else now)
        item: dict[str, Any] = {
            "labels": dict(n.labels),
            "annotations": dict(n.annotations),
            "startsAt": rfc3339(n.starts_at),
            "endsAt": rfc3339(max(ends, n.starts_at)),
        }
        url = generator_url(external_url, n)
        if url:  # Alertmanager validates it as a URI: better absent than empty
            item["generatorURL"] = url
        body.append(item)
    return body


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    first, *rest = maps
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}


def _group_key(alertname: str) -> str:
    value = alertname.replace("\\", "\\\\").replace('"', '\\"')
    return f'{{}}:{{alertname="{value}"}}'


def webhook_payloads(
    notices: Sequence[Notice], receiver: str, external_url: str = ""
) -> list[tuple[list[Notice], dict[str, Any]]]:
    """Alertmanager webhook payloads (version 4), one per alert name, as Alertmanager would
    group them with ``group_by: [alertname]``; each with the notices it carries."""
    groups: dict[str, list[Notice]] = {}
    for n in notices:
        groups.setdefault(n.alertname, []).append(n)
    out: list[tuple[list[Notice], dict[str, Any]]] = []
    for alertname, members in groups.items():
        alerts = [
            {
                "status": "firing" if n.firing else "resolved",
                "labels": dict(n.labels),
                "annotations": dict(n.annotations),
                "startsAt": rfc3339(n.starts_at),
                "endsAt": ZERO_TIME
                if n.firing
                else rfc3339(n.ends_at if n.ends_at is not None else n.starts_at),
                "generatorURL": generator_url(external_url, n),
                "fingerprint": n.fingerprint,
            }
            for n in members
        ]
        payload = {
            "version": "4",
            "groupKey": _group_key(alertname),
            "truncatedAlerts": 0,
            "status": "firing" if any(n.firing for n in members) else "resolved",
            "receiver": receiver,
            "groupLabels": {"alertname": alertname},
            "commonLabels": _common([n.labels for n in members]),
            "commonAnnotations": _common([n.annotations for n in members]),
            "externalURL": external_url,
            "alerts": alerts,
        }
        out.append((members, payload))
    return out
