"""The alert engine: reconciles the alerts that should be firing with those that are.

Level-based: the alerts that should be firing are a pure function of the state (``rules``,
``conditions``); the engine compares that with its records (``state``) and acts on the
difference only, after every stored change of a task (events) and on the periodic sweep. A
restart loads the records and compares again, so an exit stored just before a crash is alerted
exactly once, and an alert already delivered is not delivered again before its resend is due
(``delivery``).

Order of effects for every change: the decision in memory first (synchronously, so concurrent
evaluations never see half a decision), then the store, then the receivers' queues. A
notification is queued only about a record the store holds: when saving fails, nothing is
sent, and the periodic sweep sends it once a later save succeeds.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Unpack

import structlog

from monitor.alerts.conditions import STALE, observe_credentials, observe_outcome, task_alerts
from monitor.alerts.delivery import Deliveries, DeliveryOptions, WebhookHeaders
from monitor.alerts.health import Accounts
from monitor.alerts.kinds import (
    MONITOR_THROTTLED,
    NO_TASK_ALERT,
)
from monitor.alerts.observer import AlertInstruments, InstrumentObserver
from monitor.alerts.receivers import ReceiverWorker
from monitor.alerts.reconcile import Changes, Reconciler
from monitor.alerts.settings import thresholds_of
from monitor.alerts.state import FIRING, RESOLVED, AlertBook
from monitor.alerts.task_rules import RULE_NAMED, Seen
from monitor.config import AlertsConfig, RobotSecrets
from monitor.events import (
    ApiAnswered,
    EventBus,
    TaskObserved,
    TasksPurged,
    TaskUpdated,
    TransitionRecorded,
    UploadChanged,
)
from monitor.models import Outcome, Task, TaskKey, Transition, monotonic_beside
from monitor.slices import Slices
from monitor.store.base import AlertRecord, Store, StoreError

__all__ = ["SWEEP_CHUNK", "AlertEngine", "WebhookHeaders"]

log = structlog.get_logger("monitor.alerts")

# Tasks evaluated between two yields to the event loop: a few milliseconds of work.
SWEEP_CHUNK: Final = 1000


class AlertEngine:
    """Alert state of the daemon. See the module docstring."""

    def __init__(
        self,
        config: AlertsConfig,
        store: Store,
        metrics: AlertInstruments,
        *,
        interval_of: Callable[[Task], float],
        clock: Callable[[], float] = time.time,
        mono: Callable[[], float] | None = None,
        owns: Callable[[TaskKey], bool] = lambda key: True,
        leads: Callable[[], bool] = lambda: True,
        **delivery: Unpack[DeliveryOptions],
    ) -> None:
        # With several replicas a task's alerts are this replica's only while it owns the
        # task and holds its alert records (see ``adopt``), and the monitor-level alerts only
        # while it leads.
        self._owns = owns
        self._leads = leads
        self._interval_of = interval_of
        self._clock = clock
        # Staleness, idleness and upload deadlines are measured on it (a wall-clock step must
        # not fake or hide them); by default ``time.monotonic`` beside the real wall clock.
        self._mono = monotonic_beside(clock) if mono is None else mono
        self._observer = InstrumentObserver(metrics)
        self._accounts = Accounts()
        self._book = AlertBook(store, owns=owns, leads=leads)
        self._delivery = Deliveries(
            self._book,
            notifications=metrics.notifications,
            clock=clock,
            **delivery,
        )
        self._book.on_dropped = self._delivery.forget
        # Tasks whose evaluation failed in a sweep, logged once each.
        self._sweep_failed_logged: set[TaskKey] = set()
        self._sweep_lock = asyncio.Lock()
        # While a sweep yields between chunks: tasks purged meanwhile are skipped (the sweep's
        # snapshot still holds them); alerts fired meanwhile count as confirmed (``Reconciler``).
        self._sweep_purged: set[TaskKey] = set()
        self._started_at = 0.0
        self._started_mono = -math.inf
        self._decide = Reconciler(self._book, self._observer, interval_of, thresholds_of(config))
        self._apply(config)
        self._report()

    def __repr__(self) -> str:
        return f"AlertEngine(records={len(self._book)}, receivers={sorted(self._delivery.workers)})"

    def _apply(self, config: AlertsConfig) -> None:
        self._config = config
        self._decide.th = thresholds_of(config)

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Load the records and start one worker per receiver; deliver what is owed."""
        records = await self._book.load()
        now = self._clock()
        for rec in records:
            account = rec.labels.get("account")
            if (
                rec.state == FIRING
                and rec.alertname == MONITOR_THROTTLED
                and rec.task is None
                and account
            ):
                # When the last throttle was seen died with the process: count from now.
                self._accounts[account].last_throttled_at = now
        self._started_at = now
        self._started_mono = self._mono()
        self._delivery.start(self._config.receivers)
        await self._delivery.deliver_due(now)
        await self._book.persist()
        self._report()
        log.info(
            "alerts_started",
            records=len(records),
            firing=sum(1 for r in records if r.state == FIRING),
            receivers=sorted(self._delivery.workers),
        )

    async def stop(self) -> None:
        """Give queued notifications a moment to go out, stop the workers, save the state."""
        await self._delivery.stop_workers()
        await self._book.persist()
        await self._delivery.close()

    async def drain(self) -> None:
        """Wait until every receiver sent what it has queued and the outcome is recorded."""
        await self._delivery.drain()

    def configure(
        self,
        config: AlertsConfig,
        webhook_headers: WebhookHeaders | None = None,
        robot_secrets: Mapping[str, RobotSecrets] | None = None,
        external_url: str | None = None,
    ) -> None:
        """Apply a reloaded configuration. ``webhook_headers``, ``robot_secrets`` or
        ``external_url`` None keeps the current ones (a robot whose URL or secret changed gets
        a new worker).

        Rule changes act at the next evaluation (a disabled alert resolves); a receiver whose
        destination or queue size changed gets a new worker, the others keep their queue.
        """
        self._apply(config)
        self._delivery.configure(config.receivers, webhook_headers, robot_secrets, external_url)

    # ------------------------------------------------------------------ inputs

    def subscribe(self, bus: EventBus) -> None:
        """Follow the task table: evaluate after every stored change, resolve on purges."""

        async def transition(event: TransitionRecorded) -> None:
            await self.evaluate_task(event.task, event.transition)

        async def observed(event: TaskObserved) -> None:
            await self.evaluate_task(event.task)

        async def uploaded(event: UploadChanged) -> None:
            await self.evaluate_task(event.task)

        async def updated(event: TaskUpdated) -> None:
            await self.evaluate_task(event.task)  # new labels, a new staleness threshold

        async def purged(event: TasksPurged) -> None:
            await self.on_purged(event.keys)

        def answered(event: ApiAnswered) -> None:
            result = event.result
            self.on_api_outcome(
                event.account, result.outcome, event.at, result.code, result.message
            )

        bus.subscribe(TransitionRecorded, transition)
        bus.subscribe(TaskObserved, observed)
        bus.subscribe(UploadChanged, uploaded)
        bus.subscribe(TaskUpdated, updated)
        bus.subscribe(TasksPurged, purged)
        bus.subscribe(ApiAnswered, answered)

    def on_api_outcome(
        self,
        account: str,
        outcome: Outcome,
        now: float,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        """Every DescribeCloudRecording attempt's outcome (cheap: acted upon by ``sweep``)."""
        observe_outcome(self._accounts[account], outcome, now, code, message)

    def on_credentials(
        self,
        account: str,
        *,
        failing: bool,
        expires_at: float | None,
        source: str,
        error: str | None = None,
    ) -> None:
        """After each refresh attempt of an account's credentials (acted upon by ``sweep``)."""
        observe_credentials(
            self._accounts[account],
            failing=failing,
            expires_at=expires_at,
            source=source,
            error=error,
        )

    def set_budget(self, account: str, required: float, budget: float) -> None:
        """Requests per second the account's tasks need, and what its limiter may send."""
        health = self._accounts[account]
        health.required_rate, health.budget_rate = required, budget

    def forget_account(self, account: str) -> None:
        """The account left the configuration: its alerts resolve at the next sweep."""
        self._accounts.forget(account)

    # ------------------------------------------------------------------ reconciling

    async def evaluate_task(self, task: Task, transition: Transition | None = None) -> None:
        """Bring the task's alerts up to date: after each poll of it and after each of its
        transitions (pass the stored transition: the exit alert describes it)."""
        key = task.key
        if not self._owns(key):
            return  # its owner alerts on it
        now = self._clock()
        existing = self._book.by_task.get(key)
        kinds = task_alerts(
            task,
            now,
            self._decide.th,
            self._interval_of,
            self._started_at,
            self._mono(),
            self._started_mono,
        )
        if kinds is NO_TASK_ALERT and not existing:
            return
        changes = Changes()
        self._decide.task(task, kinds, existing, now, transition, changes, None)
        if changes or self._book.dirty:
            await self._commit(changes, now)

    async def sweep(self, tasks: Iterable[Task]) -> None:
        """Periodic (every few seconds): every condition of every task (``tasks`` must be all
        of them: alerts of tasks not given resolve), the monitor's own alerts, and the
        deliveries due (resends, retries, resolves still owed).

        The tasks are scanned in slices of a few milliseconds (at most ``SWEEP_CHUNK`` tasks)
        that yield to the event loop between them, so 100,000 tasks never stall polling or a
        probe; what happens to alerts meanwhile is taken into account.
        """
        async with self._sweep_lock:
            snapshot = list(tasks)  # the caller's table may change while we yield
            now = self._clock()
            th, interval_of, floor = self._decide.th, self._interval_of, self._started_at
            mono, mono_floor = self._mono(), self._started_mono
            owns = self._owns
            by_task = self._book.by_task
            changes = Changes()
            confirmed: set[str] = set()
            self._decide.sweep_confirmed = confirmed
            self._sweep_purged = set()
            slices = Slices(most=SWEEP_CHUNK)
            purged = self._sweep_purged  # on_purged adds to it while the sweep yields
            try:
                for task in snapshot:
                    if slices.due():
                        await slices.pause()
                    try:
                        kinds = task_alerts(task, now, th, interval_of, floor, mono, mono_floor)
                        if kinds is not NO_TASK_ALERT:  # the common case, cheaply
                            key = task.key
                            if (purged and key in purged) or not owns(key):
                                continue
                            existing = by_task.get(key)
                            if kinds is STALE and not existing:
                                # Stale since before this life, nothing firing: nothing to
                                # do (a restart after a pause finds most tasks so).
                                continue
                            self._decide.task(task, kinds, existing, now, None, changes, confirmed)
                    except Exception:
                        # One task the rules cannot read never stops the sweep for the
                        # others; its alerts stay as they were.
                        self._sweep_task_failed(task, confirmed)
            finally:
                self._decide.sweep_confirmed = None
                self._sweep_purged = set()
            for rec in self._book.records.values():
                if (
                    rec.task is not None
                    and rec.state == FIRING
                    and rec.fingerprint not in confirmed
                    and owns(rec.task)
                ):
                    self._decide.resolve(rec, now, changes)
            self._decide.accounts(self._accounts, now, changes)
            await self._commit(changes, now)
            await self._delivery.deliver_due(now)
            await self._book.persist()
            self._report()

    def _sweep_task_failed(self, task: Task, confirmed: set[str]) -> None:
        key = task.key
        confirmed.update((self._book.by_task.get(key) or {}).keys())
        if key not in self._sweep_failed_logged:
            self._sweep_failed_logged.add(key)
            log.exception("alert_sweep_task_failed", task=str(key))

    async def sweep_accounts(self) -> None:
        """The monitor's own alerts only, at once (e.g. right after a credentials refresh
        failed, when the sweep's few seconds may be most of what is left)."""
        async with self._sweep_lock:
            now = self._clock()
            changes = Changes()
            self._decide.accounts(self._accounts, now, changes)
            if changes:
                await self._commit(changes, now)

    async def on_purged(self, keys: Iterable[TaskKey]) -> None:
        """Tasks purged from the store (with their alert records): resolve what was firing."""
        now = self._clock()
        changes = Changes()
        for key in keys:
            if self._decide.sweep_confirmed is not None:
                self._sweep_purged.add(key)
            records = self._book.by_task.get(key)
            if not records:
                continue
            for rec in list(records.values()):
                if rec.state == FIRING:
                    self._decide.resolve(rec, now, changes)
                else:
                    # The purge deleted it, but its resolve is still owed: keep it durable.
                    self._book.mark(rec)
        await self._commit(changes, now)

    # ------------------------------------------------------------------ effects (async)

    async def _commit(self, changes: Changes, now: float) -> None:
        book = self._book
        for rec, task in changes.lookups:
            assert rec.task is not None
            try:
                latest = await book.store.transitions(rec.task, limit=1)
            except StoreError as exc:
                log.warning("alert_transition_lookup_failed", error=str(exc))
                continue
            if latest and rec.state == FIRING and latest[0].to_status is task.status:
                seen = Seen(task, now, self._decide.th, self._interval_of, latest[0])
                rec.annotations = RULE_NAMED[rec.alertname].says(seen)
                book.mark(rec)
        for rec in changes.resolved:
            if rec.state == RESOLVED and self._delivery.resolve_done(rec, now):
                book.forget(rec)
        if not await book.persist():
            # Not durable, so not sent: the sweep queues these once a save succeeds.
            self._report()
            return
        await self._delivery.send(changes.fired, changes.resolved)
        self._report()

    def _report(self) -> None:
        """Tell the observer the firing counts, if they changed since it last heard."""
        book = self._book
        if book.counts_changed:
            book.counts_changed = False
            self._observer.alerts_firing(book.counts)

    # ------------------------------------------------------------------ handover

    async def adopt(self, keys: Iterable[TaskKey], monitor: bool = False) -> int:
        """Take over the alert records of tasks (and, with ``monitor``, the monitor-level
        ones) as the store holds them now: another replica sent and saved them, so what it
        delivered is not delivered again and a resolve it owed is still owed. Answers how many
        records were taken. Raises StoreError (nothing taken) when the store fails."""
        taken = await self._book.adopt(keys, monitor)
        self._report()
        return taken

    async def release(self, keys: Iterable[TaskKey], monitor: bool = False) -> None:
        """Hand over the alert records of tasks another replica owns now (and, with
        ``monitor``, the monitor-level ones): saved first, then dropped from memory only."""
        await self._book.release(keys, monitor)
        self._report()

    # ------------------------------------------------------------------ outputs

    def firing(self) -> list[AlertRecord]:
        """Copies of the firing alerts, oldest first (``GET /api/v1/alerts``)."""
        return self._book.firing()

    def firing_counts(self) -> dict[str, int]:
        """Firing alerts by name, every known name present."""
        return dict(self._book.counts)

    @property
    def receivers(self) -> dict[str, ReceiverWorker]:
        return dict(self._delivery.workers)
