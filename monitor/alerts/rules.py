"""The desired alerts: for a task or an account, which alerts should be firing, with their
identity (name, fingerprint), labels and annotations. Pure: no I/O, no clock, no configuration
(the settings come in as :class:`~monitor.alerts.conditions.Thresholds`).

The conditions live in :mod:`monitor.alerts.conditions`, the task alerts' names, severities and
texts in :mod:`monitor.alerts.task_rules`, the account alerts' texts in
:mod:`monitor.alerts.texts`; this module puts them together into what the engine fires.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from monitor.alerts.conditions import (
    AccountHealth,
    TaskKind,
    Thresholds,
    auth_firing,
    credentials_expiring_firing,
    no_credentials_firing,
    over_budget_firing,
    throttled_firing,
)
from monitor.alerts.kinds import (
    MONITOR_AUTH_FAILURE,
    MONITOR_CREDENTIALS_EXPIRING,
    MONITOR_NO_CREDENTIALS,
    MONITOR_OVER_BUDGET,
    MONITOR_SEVERITY,
    MONITOR_THROTTLED,
)
from monitor.alerts.task_rules import RULE_OF, Seen, severity_of
from monitor.alerts.texts import (
    auth_annotations,
    credentials_expiring_annotations,
    no_credentials_annotations,
    over_budget_annotations,
    throttled_annotations,
)
from monitor.models import Task, TaskKey, Transition
from monitor.taskspec import LABEL_NAME_RE

__all__ = [
    "AccountVerdict",
    "Desired",
    "account_alerts",
    "account_fingerprint",
    "account_labels",
    "desired_task_alerts",
    "fingerprint",
    "task_fingerprint",
    "task_labels",
]


@dataclass(frozen=True, slots=True)
class Desired:
    """One alert that should be firing."""

    alertname: str
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass(frozen=True, slots=True)
class AccountVerdict:
    """One monitor-level alert of an account: ``desired`` when it should fire, None when it
    should not. (An alert about which nothing was seen yet has no verdict at all.)"""

    alertname: str
    fingerprint: str
    desired: Desired | None


# --- identity ----------------------------------------------------------------------------------


def fingerprint(alertname: str, *identity: str) -> str:
    """16 hex digits, like Alertmanager's. Built from the alert's identity only, not from all
    labels, so an alert keeps its identity when its severity or description changes."""
    text = "\x1f".join((alertname, *identity))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def task_fingerprint(alertname: str, key: TaskKey) -> str:
    return fingerprint(alertname, str(key.sdk_app_id), key.task_id)


def account_fingerprint(alertname: str, account: str) -> str:
    return fingerprint(alertname, account)


def task_labels(alertname: str, severity: str, task: Task) -> dict[str, str]:
    """The task's user labels, then the monitor's own (which always win)."""
    labels = {
        k: v
        for k, v in task.labels.items()
        # Prometheus semantics: an empty value is no label; "__" names are reserved there.
        if v and LABEL_NAME_RE.fullmatch(k) and not k.startswith("__")
    }
    labels.update(
        alertname=alertname,
        severity=severity,
        account=task.account,
        region=task.region,
        sdk_app_id=str(task.sdk_app_id),
        task_id=task.task_id,
    )
    return labels


def account_labels(alertname: str, account: str, severity: str | None = None) -> dict[str, str]:
    return {
        "alertname": alertname,
        "severity": severity or MONITOR_SEVERITY[alertname],
        "account": account,
    }


# --- task alerts -------------------------------------------------------------------------------


def desired_task_alerts(
    kinds: TaskKind,
    task: Task,
    now: float,
    th: Thresholds,
    interval_of: Callable[[Task], float],
    transition: Transition | None = None,
) -> list[Desired]:
    """Every alert ``kinds`` (from ``conditions.task_alerts``, or a single kind) asks for
    about ``task``, in one call. ``STALE_NEW`` is not an alert of its own: it adds nothing
    beside ``STALE``. ``transition``, when known, is the one that brought the task to its
    status (the exit and not-found alerts describe it)."""

    seen = Seen(task, now, th, interval_of, transition)
    desired: list[Desired] = []
    for kind in kinds:
        rule = RULE_OF.get(kind)
        if rule is None:  # STALE_NEW
            continue
        name = rule.alertname
        desired.append(
            Desired(
                name,
                task_fingerprint(name, task.key),
                task_labels(name, severity_of(rule, th), task),
                rule.says(seen),
            )
        )
    return desired


# --- account alerts ----------------------------------------------------------------------------


def account_alerts(
    account: str, health: AccountHealth, now: float, th: Thresholds
) -> list[AccountVerdict]:
    """The monitor's own alerts about one account, in one call: for each alert about which
    something was seen, whether it should fire and, if so, what it says."""
    expiring = credentials_expiring_firing(health, now, th.credentials_before)
    if not th.credentials_enabled and expiring is not None:
        expiring = False
    verdicts: list[AccountVerdict] = []
    for name, holds in (
        (MONITOR_AUTH_FAILURE, auth_firing(health)),
        (MONITOR_NO_CREDENTIALS, no_credentials_firing(health)),
        (MONITOR_THROTTLED, throttled_firing(health, now)),
        (MONITOR_OVER_BUDGET, over_budget_firing(health)),
        (MONITOR_CREDENTIALS_EXPIRING, expiring),
    ):
        if holds is None:  # nothing seen since start: the engine keeps what it remembered
            continue
        fp = account_fingerprint(name, account)
        desired = None
        if holds:
            severity = None
            if name == MONITOR_AUTH_FAILURE:
                annotations = auth_annotations(account, health)
            elif name == MONITOR_NO_CREDENTIALS:
                annotations = no_credentials_annotations(account, health)
            elif name == MONITOR_THROTTLED:
                annotations = throttled_annotations(account, health)
            elif name == MONITOR_CREDENTIALS_EXPIRING:
                annotations = credentials_expiring_annotations(
                    account, health, now, th.credentials_before
                )
                severity = th.credentials_severity
            else:
                annotations = over_budget_annotations(account, health)
            desired = Desired(name, fp, account_labels(name, account, severity), annotations)
        verdicts.append(AccountVerdict(name, fp, desired))
    return verdicts
