"""Reconciling: the desired alerts (``rules``) against the records (``state``), decided in
memory and synchronously, so concurrent evaluations never see half a decision. What was
decided (``Changes``) is then saved and sent by the engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from monitor.alerts.conditions import (
    EXITED,
    FAILED_UPLOAD,
    OVERDUE_UPLOAD,
    STALE,
    STALE_NEW,
    Thresholds,
)
from monitor.alerts.health import Accounts
from monitor.alerts.kinds import TaskKind
from monitor.alerts.observer import AlertObserver
from monitor.alerts.rules import Desired, account_alerts, desired_task_alerts
from monitor.alerts.state import FIRING, AlertBook
from monitor.alerts.task_rules import TASK_RULES, exit_annotations, upload_failed_annotations
from monitor.models import Task, TaskKey, Transition
from monitor.store.base import AlertRecord

__all__ = ["Changes", "Reconciler"]

log = structlog.get_logger("monitor.alerts")


@dataclass(slots=True)
class Changes:
    """What one evaluation decided; acted upon once the decision is complete."""

    fired: list[AlertRecord] = field(default_factory=list)
    resolved: list[AlertRecord] = field(default_factory=list)
    # New exit alerts decided without their transition (a sweep): looked up in the store.
    lookups: list[tuple[AlertRecord, Task]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.fired or self.resolved)


class Reconciler:
    """Decides the changes of the records in ``book``: fires what should fire and does not,
    resolves what fires and should not. ``th`` is replaced on a reload."""

    def __init__(
        self,
        book: AlertBook,
        observer: AlertObserver,
        interval_of: Callable[[Task], float],
        th: Thresholds,
    ) -> None:
        self.book = book
        self.observer = observer
        self.interval_of = interval_of
        self.th = th
        # While a sweep runs: alerts fired meanwhile count as confirmed by it.
        self.sweep_confirmed: set[str] | None = None

    def task(
        self,
        task: Task,
        kinds: TaskKind,
        existing: dict[str, AlertRecord] | None,
        now: float,
        transition: Transition | None,
        changes: Changes,
        confirmed: set[str] | None,
    ) -> None:
        for rule in TASK_RULES:
            kind, name = rule.kind, rule.alertname
            rec = existing.get(name) if existing is not None else None
            firing = rec is not None and rec.state == FIRING
            if kind in kinds:
                if rec is not None and firing:
                    if confirmed is not None:
                        confirmed.add(rec.fingerprint)
                    if kind is EXITED and transition is not None:
                        self.refresh_exit(rec, task, transition)
                    elif kind is FAILED_UPLOAD:
                        self.refresh(rec, upload_failed_annotations(task))
                    continue
                if kind is STALE and STALE_NEW not in kinds:
                    continue
                (desired,) = desired_task_alerts(
                    kind, task, now, self.th, self.interval_of, transition
                )
                new = self.fire(desired, now, task.key, changes)
                if confirmed is not None:
                    confirmed.add(new.fingerprint)
                if kind is OVERDUE_UPLOAD:
                    # Counted as it fires, so once per episode (a restart finds the record and
                    # does not fire again).
                    self.observer.upload_overdue(task.account, task.region)
                if rule.tells_transition and transition is None:
                    changes.lookups.append((new, task))
            elif rec is not None and firing:
                self.resolve(rec, now, changes)

    def refresh(self, rec: AlertRecord, annotations: dict[str, str]) -> None:
        # Later failures of the same upload episode are added to what the alert says; it is
        # sent with its next resend.
        if annotations != rec.annotations:
            rec.annotations = annotations  # replaced, never mutated: queued notices share it
            self.book.mark(rec)

    def refresh_exit(self, rec: AlertRecord, task: Task, transition: Transition) -> None:
        # Exited -> Ended stays one alert; its description follows the newest transition.
        if transition.to_status is task.status:
            self.refresh(rec, exit_annotations(task, transition, self.th.expected_leave_codes))

    def accounts(self, accounts: Accounts, now: float, changes: Changes) -> None:
        """The monitor's own alerts, from what was seen of each account (the leader's only)."""
        if not self.book.leads():
            return  # another replica sends the monitor's own alerts
        forgotten = accounts.take_forgotten()
        if forgotten:
            for rec in self.book.records.values():
                if (
                    rec.task is None
                    and rec.state == FIRING
                    and rec.labels.get("account") in forgotten
                ):
                    self.resolve(rec, now, changes)
        records = self.book.records
        for account, health in accounts.items():
            for verdict in account_alerts(account, health, now, self.th):
                known = records.get(verdict.fingerprint)
                firing = known is not None and known.state == FIRING
                if verdict.desired is not None and not firing:
                    self.fire(verdict.desired, now, None, changes)
                elif verdict.desired is None and known is not None and firing:
                    self.resolve(known, now, changes)

    def fire(
        self, desired: Desired, now: float, task: TaskKey | None, changes: Changes
    ) -> AlertRecord:
        name, fp, labels = desired.alertname, desired.fingerprint, desired.labels
        rec = self.book.fire(name, fp, labels, desired.annotations, now, task)
        changes.fired.append(rec)
        if self.sweep_confirmed is not None:
            self.sweep_confirmed.add(fp)
        log.warning(
            "alert_firing",
            alertname=name,
            fingerprint=fp,
            severity=labels.get("severity"),
            labels=labels,
            summary=desired.annotations.get("summary"),
        )
        return rec

    def resolve(self, rec: AlertRecord, now: float, changes: Changes) -> None:
        self.book.resolve(rec, now)
        changes.resolved.append(rec)
        log.info(
            "alert_resolved",
            alertname=rec.alertname,
            fingerprint=rec.fingerprint,
            labels=rec.labels,
            firing_for=round(now - rec.starts_at, 3),
        )
