"""The alert engine: decides which alerts fire, remembers them durably, hands them to receivers.

Level-based: the alerts that should be firing are a pure function of the state (``rules``);
the engine compares that with its records and acts on the difference only. A restart loads the
records and compares again, so an exit stored just before a crash is alerted exactly once, and
an alert already delivered is not delivered again before its resend is due.

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
from dataclasses import dataclass, field
from typing import Final

import aiohttp
import structlog

from monitor.alerts.payloads import Notice
from monitor.alerts.receivers import DeliveryContext, ReceiverConfig, ReceiverWorker
from monitor.alerts.retry import RetryPolicy
from monitor.alerts.robots.worker import RobotWorker
from monitor.alerts.rules import (
    ALERT_NAMES,
    EXITED,
    FAILED_UPLOAD,
    IDLE,
    MONITOR_AUTH_FAILURE,
    MONITOR_CREDENTIALS_EXPIRING,
    MONITOR_NO_CREDENTIALS,
    MONITOR_OVER_BUDGET,
    MONITOR_THROTTLED,
    NOT_FOUND,
    NOT_FOUND_SEVERITY,
    OVERDUE_UPLOAD,
    STALE,
    STALE_NEW,
    TASK_BITS,
    TASK_ERROR,
    TASK_EXITED,
    TASK_IDLE,
    TASK_NOT_FOUND,
    TASK_STALE,
    UPLOAD_FAILED,
    UPLOAD_OVERDUE,
    AccountHealth,
    Thresholds,
    account_fingerprint,
    account_labels,
    auth_annotations,
    auth_firing,
    credentials_expiring_annotations,
    credentials_expiring_firing,
    error_annotations,
    exit_annotations,
    idle_annotations,
    no_credentials_annotations,
    no_credentials_firing,
    not_found_annotations,
    observe_credentials,
    observe_outcome,
    over_budget_annotations,
    over_budget_firing,
    stale_annotations,
    stale_threshold,
    task_alerts,
    task_fingerprint,
    task_labels,
    throttled_annotations,
    throttled_firing,
    upload_failed_annotations,
    upload_overdue_annotations,
)
from monitor.alerts.worker_factory import build_worker
from monitor.config import AlertsConfig, RobotReceiver, RobotSecrets
from monitor.events import (
    ApiAnswered,
    EventBus,
    TaskObserved,
    TasksPurged,
    TaskUpdated,
    TransitionRecorded,
    UploadChanged,
)
from monitor.metrics import MonitorMetrics
from monitor.models import Outcome, Task, TaskKey, Transition, monotonic_beside
from monitor.secrets import Secret
from monitor.store.base import AlertRecord, Store, StoreError

log = structlog.get_logger("monitor.alerts")

FIRING: Final = "firing"
RESOLVED: Final = "resolved"
# A resolve that could not be delivered for this long is given up: the receiver has been
# unreachable for a day, and Alertmanager expired the alert long ago on its own.
RESOLVED_GIVE_UP: Final = 24 * 3600.0
# Deletions per store round trip: records are saved in their final state first, so a deletion
# left for later is harmless, and a mass resolve never holds up the next alert.
DELETE_CHUNK: Final = 200
# Tasks evaluated between two yields to the event loop: a few milliseconds of work.
SWEEP_CHUNK: Final = 1000

WebhookHeaders = Mapping[str, Mapping[str, str | Secret]]


@dataclass(slots=True)
class _Changes:
    """What one evaluation decided; acted upon once the decision is complete."""

    fired: list[AlertRecord] = field(default_factory=list)
    resolved: list[AlertRecord] = field(default_factory=list)
    # New exit alerts decided without their transition (a sweep): looked up in the store.
    lookups: list[tuple[AlertRecord, Task]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.fired or self.resolved)


def _plain_headers(headers: WebhookHeaders | None) -> dict[str, dict[str, str]]:
    if not headers:
        return {}
    return {
        receiver: {k: v.get() if isinstance(v, Secret) else v for k, v in values.items()}
        for receiver, values in headers.items()
    }


def _new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=20, keepalive_timeout=30),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


class AlertEngine:
    """Alert state of the daemon (SPEC section 7). See the module docstring."""

    def __init__(
        self,
        config: AlertsConfig,
        store: Store,
        metrics: MonitorMetrics,
        *,
        interval_of: Callable[[Task], float],
        clock: Callable[[], float] = time.time,
        mono: Callable[[], float] | None = None,
        session: aiohttp.ClientSession | None = None,
        external_url: str = "",
        webhook_headers: WebhookHeaders | None = None,
        robot_secrets: Mapping[str, RobotSecrets] | None = None,
        retry: RetryPolicy | None = None,
        redeliver_after: float = 60.0,
        stop_grace: float = 2.0,
        owns: Callable[[TaskKey], bool] = lambda key: True,
        leads: Callable[[], bool] = lambda: True,
    ) -> None:
        # With several replicas (SPEC section 13) a task's alerts are this replica's only
        # while it owns the task and holds its alert records (see ``adopt``), and the
        # monitor-level alerts only while it leads.
        self._owns = owns
        self._leads = leads
        self._store = store
        self._metrics = metrics
        self._interval_of = interval_of
        self._clock = clock
        # Staleness, idleness and upload deadlines are measured on it (a wall-clock step must
        # not fake or hide them); by default ``time.monotonic`` beside the real wall clock.
        self._mono = monotonic_beside(clock) if mono is None else mono
        self._session = session
        self._own_session = session is None
        self._external_url = external_url
        self._headers = _plain_headers(webhook_headers)
        self._robots = dict(robot_secrets or {})
        self._retry = retry
        self._redeliver_after = redeliver_after
        self._stop_grace = stop_grace
        self._records: dict[str, AlertRecord] = {}
        self._by_task: dict[TaskKey, dict[str, AlertRecord]] = {}
        # Tasks whose evaluation failed in a sweep, logged once each.
        self._sweep_failed_logged: set[TaskKey] = set()
        self._accounts: dict[str, AccountHealth] = {}
        self._forgotten_accounts: set[str] = set()
        self._workers: dict[str, ReceiverWorker] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._firing: dict[str, int] = dict.fromkeys(ALERT_NAMES, 0)
        self._gauge_dirty = True
        self._dirty: dict[str, AlertRecord] = {}
        self._gone: set[str] = set()
        self._persist_lock = asyncio.Lock()
        self._sweep_lock = asyncio.Lock()
        # While a sweep yields between chunks: alerts fired meanwhile count as confirmed, and
        # tasks purged meanwhile are skipped (the sweep's snapshot still holds them).
        self._sweep_confirmed: set[str] | None = None
        self._sweep_purged: set[TaskKey] = set()
        self._started_at = 0.0
        self._started_mono = -math.inf
        self._running = False
        self._apply(config)
        self._update_gauge()

    def __repr__(self) -> str:
        return f"AlertEngine(records={len(self._records)}, receivers={sorted(self._workers)})"

    def _apply(self, config: AlertsConfig) -> None:
        self._config = config
        self._th = Thresholds.of(config)
        self._severity = {
            TASK_EXITED: config.exit.severity,
            TASK_NOT_FOUND: NOT_FOUND_SEVERITY,
            TASK_ERROR: config.error.severity,
            TASK_STALE: config.stale.severity,
            TASK_IDLE: config.idle.severity,
            UPLOAD_FAILED: config.upload.severity,
            UPLOAD_OVERDUE: config.upload.severity,
        }

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Load the records and start one worker per receiver; deliver what is owed."""
        records = [r for r in await self._store.load_alerts() if self._mine(r)]
        now = self._clock()
        for rec in records:
            self._index(rec)
            if rec.state == FIRING:
                self._firing[rec.alertname] = self._firing.get(rec.alertname, 0) + 1
                account = rec.labels.get("account")
                if rec.alertname == MONITOR_THROTTLED and rec.task is None and account:
                    # When the last throttle was seen died with the process: count from now.
                    self._health(account).last_throttled_at = now
        self._gauge_dirty = True
        self._started_at = now
        self._started_mono = self._mono()
        if self._session is None:
            self._session = _new_session()
        self._running = True
        for receiver in self._config.receivers:
            self._add_worker(receiver)
        self._deliver_due(now)
        await self._persist()
        self._update_gauge()
        log.info(
            "alerts_started",
            records=len(records),
            firing=sum(1 for r in records if r.state == FIRING),
            receivers=sorted(self._workers),
        )

    async def stop(self) -> None:
        """Give queued notifications a moment to go out, stop the workers, save the state."""
        self._running = False
        workers = list(self._workers.values())
        await asyncio.gather(*(w.stop(self._stop_grace) for w in workers))
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        self._workers.clear()
        await self._persist()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def drain(self) -> None:
        """Wait until every receiver sent what it has queued and the outcome is recorded."""
        await asyncio.gather(*(w.drain() for w in list(self._workers.values())))

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
        if webhook_headers is not None:
            self._headers = _plain_headers(webhook_headers)
        if robot_secrets is not None:
            self._robots = dict(robot_secrets)
        if external_url is not None:
            self._external_url = external_url
            for worker in self._workers.values():
                worker.external_url = external_url
        wanted = {r.name: r for r in config.receivers}
        for name, worker in list(self._workers.items()):
            receiver = wanted.get(name)
            if isinstance(worker, RobotWorker) and not worker.same_robot(self._robots.get(name)):
                receiver = None
            if receiver is not None and worker.same_queue(receiver):
                worker.update(receiver, self._headers.get(name, {}))
                continue
            del self._workers[name]
            retire = asyncio.create_task(worker.stop(grace=0.0))
            self._retiring.add(retire)
            retire.add_done_callback(self._retiring.discard)
        if self._running:
            for name, receiver in wanted.items():
                if name not in self._workers:
                    self._add_worker(receiver)

    def _add_worker(self, receiver: ReceiverConfig) -> None:
        assert self._session is not None
        robot = self._robots.get(receiver.name)
        if isinstance(receiver, RobotReceiver) and robot is None:
            log.error(
                "receiver_not_started",
                receiver=receiver.name,
                hint="its URL was not resolved (pass ResolvedSecrets.robots to the engine)",
            )
            return
        context = DeliveryContext(
            session=self._session,
            notifications=self._metrics.notifications,
            clock=self._clock,
            on_result=self._delivered,
            retry=self._retry,
            redeliver_after=self._redeliver_after,
            external_url=self._external_url,
        )
        worker = build_worker(
            receiver, context, headers=self._headers.get(receiver.name), robot=robot
        )
        self._workers[receiver.name] = worker
        worker.start()

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

    async def evaluate_task(self, task: Task, transition: Transition | None = None) -> None:
        """Bring the task's alerts up to date: after each poll of it and after each of its
        transitions (pass the stored transition: the exit alert describes it)."""
        key = task.key
        if not self._owns(key):
            return  # its owner alerts on it
        now = self._clock()
        existing = self._by_task.get(key)
        bits = task_alerts(
            task,
            now,
            self._th,
            self._interval_of,
            self._started_at,
            self._mono(),
            self._started_mono,
        )
        if not bits and not existing:
            return
        changes = _Changes()
        self._reconcile_task(task, bits, existing, now, transition, changes, None)
        if changes or self._dirty:
            await self._commit(changes, now)

    async def sweep(self, tasks: Iterable[Task]) -> None:
        """Periodic (every few seconds): every condition of every task (``tasks`` must be all
        of them: alerts of tasks not given resolve), the monitor's own alerts, and the
        deliveries due (resends, retries, resolves still owed).

        The tasks are scanned in chunks that yield to the event loop between them, so 100,000
        tasks never stall polling; what happens to alerts meanwhile is taken into account.
        """
        async with self._sweep_lock:
            snapshot = list(tasks)  # the caller's table may change while we yield
            now = self._clock()
            th, interval_of, floor = self._th, self._interval_of, self._started_at
            mono, mono_floor = self._mono(), self._started_mono
            owns = self._owns
            by_task = self._by_task
            changes = _Changes()
            confirmed: set[str] = set()
            self._sweep_confirmed = confirmed
            self._sweep_purged = set()
            try:
                for start in range(0, len(snapshot), SWEEP_CHUNK):
                    if start:
                        await asyncio.sleep(0)
                    purged = self._sweep_purged
                    for task in snapshot[start : start + SWEEP_CHUNK]:
                        try:
                            bits = task_alerts(task, now, th, interval_of, floor, mono, mono_floor)
                            if bits:
                                key = task.key
                                if (purged and key in purged) or not owns(key):
                                    continue
                                self._reconcile_task(
                                    task, bits, by_task.get(key), now, None, changes, confirmed
                                )
                        except Exception:
                            # One task the rules cannot read never stops the sweep for the
                            # others; its alerts stay as they were.
                            self._sweep_task_failed(task, confirmed)
            finally:
                self._sweep_confirmed = None
                self._sweep_purged = set()
            for rec in self._records.values():
                if (
                    rec.task is not None
                    and rec.state == FIRING
                    and rec.fingerprint not in confirmed
                    and owns(rec.task)
                ):
                    self._resolve(rec, now, changes)
            self._sweep_accounts(now, changes)
            await self._commit(changes, now)
            self._deliver_due(now)
            await self._persist()
            self._update_gauge()

    def _sweep_task_failed(self, task: Task, confirmed: set[str]) -> None:
        key = task.key
        confirmed.update((self._by_task.get(key) or {}).keys())
        if key not in self._sweep_failed_logged:
            self._sweep_failed_logged.add(key)
            log.exception("alert_sweep_task_failed", task=str(key))

    async def sweep_accounts(self) -> None:
        """The monitor's own alerts only, at once (e.g. right after a credentials refresh
        failed, when the sweep's few seconds may be most of what is left)."""
        async with self._sweep_lock:
            now = self._clock()
            changes = _Changes()
            self._sweep_accounts(now, changes)
            if changes:
                await self._commit(changes, now)

    def on_api_outcome(
        self,
        account: str,
        outcome: Outcome,
        now: float,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        """Every DescribeCloudRecording attempt's outcome (cheap: acted upon by ``sweep``)."""
        observe_outcome(self._health(account), outcome, now, code, message)

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
            self._health(account),
            failing=failing,
            expires_at=expires_at,
            source=source,
            error=error,
        )

    def set_budget(self, account: str, required: float, budget: float) -> None:
        """Requests per second the account's tasks need, and what its limiter may send."""
        health = self._health(account)
        health.required_rate = required
        health.budget_rate = budget

    def forget_account(self, account: str) -> None:
        """The account left the configuration: its alerts resolve at the next sweep."""
        self._accounts.pop(account, None)
        self._forgotten_accounts.add(account)

    async def on_purged(self, keys: Iterable[TaskKey]) -> None:
        """Tasks purged from the store (with their alert records): resolve what was firing."""
        now = self._clock()
        changes = _Changes()
        for key in keys:
            if self._sweep_confirmed is not None:
                self._sweep_purged.add(key)
            records = self._by_task.get(key)
            if not records:
                continue
            for rec in list(records.values()):
                if rec.state == FIRING:
                    self._resolve(rec, now, changes)
                else:
                    # The purge deleted it, but its resolve is still owed: keep it durable.
                    self._dirty[rec.fingerprint] = rec
        await self._commit(changes, now)

    # ------------------------------------------------------------------ handover

    def _mine(self, rec: AlertRecord) -> bool:
        return self._owns(rec.task) if rec.task is not None else self._leads()

    async def adopt(self, keys: Iterable[TaskKey], monitor: bool = False) -> int:
        """Take over the alert records of tasks (and, with ``monitor``, the monitor-level
        ones) as the store holds them now: another replica sent and saved them, so what it
        delivered is not delivered again and a resolve it owed is still owed. Answers how many
        records were taken. Raises StoreError (nothing taken) when the store fails."""
        wanted = set(keys)
        if not wanted and not monitor:
            return 0
        loaded = await self._store.load_alerts()
        taken = 0
        for rec in loaded:
            if (rec.task is None and not monitor) or (
                rec.task is not None and rec.task not in wanted
            ):
                continue
            if rec.fingerprint in self._dirty:
                continue  # changed here since: this replica's version is the newer one
            self._drop(rec.fingerprint)
            self._index(rec)
            if rec.state == FIRING:
                self._firing[rec.alertname] = self._firing.get(rec.alertname, 0) + 1
            taken += 1
        self._gauge_dirty = True
        self._update_gauge()
        return taken

    async def release(self, keys: Iterable[TaskKey], monitor: bool = False) -> None:
        """Hand over the alert records of tasks another replica owns now (and, with
        ``monitor``, the monitor-level ones): saved first, then dropped from memory only."""
        await self._persist()
        gone = set(keys)
        for rec in list(self._records.values()):
            ours = (rec.task is None and monitor) or (rec.task is not None and rec.task in gone)
            if ours and rec.fingerprint not in self._dirty:
                self._drop(rec.fingerprint)
        self._gauge_dirty = True
        self._update_gauge()

    def _drop(self, fp: str) -> None:
        """Forget a record in memory only (the store keeps it)."""
        rec = self._records.pop(fp, None)
        if rec is None:
            return
        if rec.state == FIRING:
            self._firing[rec.alertname] = max(0, self._firing.get(rec.alertname, 0) - 1)
        if rec.task is not None:
            records = self._by_task.get(rec.task)
            if records is not None and records.get(rec.alertname) is rec:
                del records[rec.alertname]
                if not records:
                    del self._by_task[rec.task]
        for worker in self._workers.values():
            worker.retry_at.pop(fp, None)

    # ------------------------------------------------------------------ outputs

    def firing(self) -> list[AlertRecord]:
        """Copies of the firing alerts, oldest first (``GET /api/v1/alerts``)."""
        return [
            AlertRecord(
                fingerprint=r.fingerprint,
                alertname=r.alertname,
                labels=dict(r.labels),
                annotations=dict(r.annotations),
                state=r.state,
                starts_at=r.starts_at,
                ends_at=r.ends_at,
                task=r.task,
                last_sent_at=dict(r.last_sent_at),
                resolved_sent=set(r.resolved_sent),
            )
            for r in sorted(
                (r for r in self._records.values() if r.state == FIRING),
                key=lambda r: (r.starts_at, r.alertname, r.fingerprint),
            )
        ]

    def firing_counts(self) -> dict[str, int]:
        """Firing alerts by name, every known name present."""
        return dict(self._firing)

    @property
    def receivers(self) -> dict[str, ReceiverWorker]:
        return dict(self._workers)

    # ------------------------------------------------------------------ decisions (sync)

    def _health(self, account: str) -> AccountHealth:
        health = self._accounts.get(account)
        if health is None:
            health = self._accounts[account] = AccountHealth()
            self._forgotten_accounts.discard(account)
        return health

    def _reconcile_task(
        self,
        task: Task,
        bits: int,
        existing: dict[str, AlertRecord] | None,
        now: float,
        transition: Transition | None,
        changes: _Changes,
        confirmed: set[str] | None,
    ) -> None:
        for bit, name in TASK_BITS:
            rec = existing.get(name) if existing is not None else None
            firing = rec is not None and rec.state == FIRING
            if bits & bit:
                if rec is not None and firing:
                    if confirmed is not None:
                        confirmed.add(rec.fingerprint)
                    if bit == EXITED and transition is not None:
                        self._refresh_exit(rec, task, transition)
                    elif bit == FAILED_UPLOAD:
                        self._refresh(rec, upload_failed_annotations(task))
                    continue
                if bit == STALE and not bits & STALE_NEW:
                    continue
                new = self._fire(
                    name,
                    task_fingerprint(name, task.key),
                    task_labels(name, self._severity[name], task),
                    self._task_annotations(bit, task, now, transition),
                    now,
                    task.key,
                    changes,
                )
                if confirmed is not None:
                    confirmed.add(new.fingerprint)
                if bit == OVERDUE_UPLOAD:
                    # trtc_recording_uploads_total{outcome="overdue"}: counted as it fires, so
                    # once per episode (a restart finds the record and does not fire again).
                    self._metrics.uploads.labels(task.account, task.region, "overdue").inc()
                if bit in (EXITED, NOT_FOUND) and transition is None:
                    changes.lookups.append((new, task))
            elif rec is not None and firing:
                self._resolve(rec, now, changes)

    def _task_annotations(
        self, bit: int, task: Task, now: float, transition: Transition | None
    ) -> dict[str, str]:
        th = self._th
        if bit == EXITED:
            return exit_annotations(task, transition, th.expected_leave_codes)
        if bit == NOT_FOUND:
            return not_found_annotations(task, transition)
        if bit == STALE:
            threshold = stale_threshold(task, th.stale_after, self._interval_of)
            return stale_annotations(task, now, threshold)
        if bit == IDLE:
            return idle_annotations(task, now, th.idle_after)
        if bit == FAILED_UPLOAD:
            return upload_failed_annotations(task)
        if bit == OVERDUE_UPLOAD:
            return upload_overdue_annotations(task, now, th.upload_deadline)
        return error_annotations(task, th.consecutive)

    def _refresh(self, rec: AlertRecord, annotations: dict[str, str]) -> None:
        # Later failures of the same upload episode are added to what the alert says; it is
        # sent with its next resend.
        if annotations != rec.annotations:
            rec.annotations = annotations  # replaced, never mutated: queued notices share it
            self._dirty[rec.fingerprint] = rec

    def _refresh_exit(self, rec: AlertRecord, task: Task, transition: Transition) -> None:
        # Exited -> Ended stays one alert; its description follows the newest transition.
        if transition.to_status is not task.status:
            return
        annotations = exit_annotations(task, transition, self._th.expected_leave_codes)
        if annotations != rec.annotations:
            rec.annotations = annotations  # replaced, never mutated: queued notices share it
            self._dirty[rec.fingerprint] = rec

    def _sweep_accounts(self, now: float, changes: _Changes) -> None:
        if not self._leads():
            return  # another replica sends the monitor's own alerts
        if self._forgotten_accounts:
            for rec in self._records.values():
                if (
                    rec.task is None
                    and rec.state == FIRING
                    and rec.labels.get("account") in self._forgotten_accounts
                ):
                    self._resolve(rec, now, changes)
            self._forgotten_accounts.clear()
        creds = self._config.credentials
        for account, health in self._accounts.items():
            expiring = credentials_expiring_firing(health, now, creds.before)
            if not creds.enabled and expiring is not None:
                expiring = False
            for name, holds in (
                (MONITOR_AUTH_FAILURE, auth_firing(health)),
                (MONITOR_NO_CREDENTIALS, no_credentials_firing(health)),
                (MONITOR_THROTTLED, throttled_firing(health, now)),
                (MONITOR_OVER_BUDGET, over_budget_firing(health)),
                (MONITOR_CREDENTIALS_EXPIRING, expiring),
            ):
                if holds is None:  # nothing seen since start: keep what was remembered
                    continue
                fp = account_fingerprint(name, account)
                known = self._records.get(fp)
                firing = known is not None and known.state == FIRING
                if holds and not firing:
                    severity = None
                    if name == MONITOR_AUTH_FAILURE:
                        annotations = auth_annotations(account, health)
                    elif name == MONITOR_NO_CREDENTIALS:
                        annotations = no_credentials_annotations(account, health)
                    elif name == MONITOR_THROTTLED:
                        annotations = throttled_annotations(account, health)
                    elif name == MONITOR_CREDENTIALS_EXPIRING:
                        annotations = credentials_expiring_annotations(
                            account, health, now, creds.before
                        )
                        severity = creds.severity
                    else:
                        annotations = over_budget_annotations(account, health)
                    self._fire(
                        name,
                        fp,
                        account_labels(name, account, severity),
                        annotations,
                        now,
                        None,
                        changes,
                    )
                elif not holds and known is not None and firing:
                    self._resolve(known, now, changes)

    def _fire(
        self,
        name: str,
        fp: str,
        labels: dict[str, str],
        annotations: dict[str, str],
        now: float,
        task: TaskKey | None,
        changes: _Changes,
    ) -> AlertRecord:
        rec = self._records.get(fp)
        if rec is None:
            rec = AlertRecord(fp, name, labels, annotations, FIRING, now, task=task)
            self._index(rec)
            self._gone.discard(fp)
        else:
            # Resolved, its resolve perhaps still owed: a new episode of the same alert.
            rec.labels, rec.annotations = labels, annotations
            rec.state, rec.starts_at, rec.ends_at = FIRING, now, None
            rec.last_sent_at, rec.resolved_sent = {}, set()
        self._firing[name] = self._firing.get(name, 0) + 1
        self._gauge_dirty = True
        self._dirty[fp] = rec
        changes.fired.append(rec)
        if self._sweep_confirmed is not None:
            self._sweep_confirmed.add(fp)
        log.warning(
            "alert_firing",
            alertname=name,
            fingerprint=fp,
            severity=labels.get("severity"),
            labels=labels,
            summary=annotations.get("summary"),
        )
        return rec

    def _resolve(self, rec: AlertRecord, now: float, changes: _Changes) -> None:
        rec.state, rec.ends_at, rec.resolved_sent = RESOLVED, now, set()
        self._firing[rec.alertname] = max(0, self._firing.get(rec.alertname, 0) - 1)
        self._gauge_dirty = True
        self._dirty[rec.fingerprint] = rec
        changes.resolved.append(rec)
        log.info(
            "alert_resolved",
            alertname=rec.alertname,
            fingerprint=rec.fingerprint,
            labels=rec.labels,
            firing_for=round(now - rec.starts_at, 3),
        )

    def _resolve_done(self, rec: AlertRecord, now: float) -> bool:
        """Whether no receiver is still owed this resolve. A receiver that never heard the
        alert fire (and has nothing about it queued) is not told it resolved."""
        ends_at = rec.ends_at if rec.ends_at is not None else now
        if now - ends_at > RESOLVED_GIVE_UP:
            return True
        fp = rec.fingerprint
        for worker in self._workers.values():
            if worker.name in rec.resolved_sent:
                continue
            if fp in worker.pending or worker.name in rec.last_sent_at:
                return False
        return True

    def _index(self, rec: AlertRecord) -> None:
        self._records[rec.fingerprint] = rec
        if rec.task is not None:
            self._by_task.setdefault(rec.task, {})[rec.alertname] = rec

    def _forget(self, rec: AlertRecord) -> None:
        """Drop a fully delivered resolved record: saved in its final state, then deleted."""
        fp = rec.fingerprint
        if self._records.get(fp) is rec:
            del self._records[fp]
        if rec.task is not None:
            records = self._by_task.get(rec.task)
            if records is not None and records.get(rec.alertname) is rec:
                del records[rec.alertname]
                if not records:
                    del self._by_task[rec.task]
        for worker in self._workers.values():
            worker.retry_at.pop(fp, None)
        self._dirty[fp] = rec
        self._gone.add(fp)

    def _deliver_due(self, now: float) -> None:
        """Queue resends, retries after failures and owed resolves. Unlike fresh changes,
        this work can wait: it only fills the room queues have, and never drops."""
        workers = list(self._workers.values())
        for rec in list(self._records.values()):
            fp = rec.fingerprint
            if fp in self._dirty:
                continue  # not in the store yet: nothing may be sent about it
            if not self._mine(rec):
                continue  # being handed over: its new holder sends what is owed
            if rec.state == FIRING:
                notice: Notice | None = None
                for w in workers:
                    if fp in w.pending:
                        continue
                    retry_at = w.retry_at.get(fp)
                    if retry_at is not None and now < retry_at:
                        continue
                    last = rec.last_sent_at.get(w.name)
                    if last is not None and (w.resend is None or now - last < w.resend):
                        continue
                    if w.has_room():
                        notice = notice or Notice.of(rec)
                        w.enqueue(notice)
                continue
            if self._resolve_done(rec, now):
                self._forget(rec)
                continue
            notice = None
            for w in workers:
                if w.name in rec.resolved_sent or fp in w.pending:
                    continue
                if w.name not in rec.last_sent_at:
                    continue
                retry_at = w.retry_at.get(fp)
                if retry_at is not None and now < retry_at:
                    continue
                if w.has_room():
                    notice = notice or Notice.of(rec)
                    w.enqueue(notice)

    # ------------------------------------------------------------------ effects (async)

    async def _commit(self, changes: _Changes, now: float) -> None:
        for rec, task in changes.lookups:
            assert rec.task is not None
            try:
                latest = await self._store.transitions(rec.task, limit=1)
            except StoreError as exc:
                log.warning("alert_transition_lookup_failed", error=str(exc))
                continue
            if latest and rec.state == FIRING and latest[0].to_status is task.status:
                rec.annotations = (
                    not_found_annotations(task, latest[0])
                    if rec.alertname == TASK_NOT_FOUND
                    else exit_annotations(task, latest[0], self._th.expected_leave_codes)
                )
                self._dirty[rec.fingerprint] = rec
        for rec in changes.resolved:
            if rec.state == RESOLVED and self._resolve_done(rec, now):
                self._forget(rec)
        if not await self._persist():
            # Not durable, so not sent: the sweep queues these once a save succeeds.
            self._update_gauge()
            return
        workers = list(self._workers.values())
        for rec in changes.fired:
            if rec.state == FIRING and self._records.get(rec.fingerprint) is rec:
                notice = Notice.of(rec)
                for w in workers:
                    w.enqueue(notice)
        for rec in changes.resolved:
            if rec.state != RESOLVED or self._records.get(rec.fingerprint) is not rec:
                continue
            notice = Notice.of(rec)
            for w in workers:
                if w.name not in rec.resolved_sent and (
                    w.name in rec.last_sent_at or rec.fingerprint in w.pending
                ):
                    w.enqueue(notice)
        self._update_gauge()

    async def _persist(self) -> bool:
        """Save what changed; False (and everything kept for the next try) when that fails."""
        async with self._persist_lock:
            if not self._dirty and not self._gone:
                return True
            dirty = list(self._dirty.values())
            self._dirty = {}
            gone: list[str] = []
            while self._gone and len(gone) < DELETE_CHUNK:
                gone.append(self._gone.pop())
            try:
                if dirty:
                    await self._store.save_alerts(dirty)
                for fp in gone:
                    await self._store.delete_alert(fp)
            except StoreError as exc:
                log.error("alert_state_not_saved", error=str(exc), records=len(dirty))
                for rec in dirty:
                    if self._records.get(rec.fingerprint) is rec:
                        self._dirty.setdefault(rec.fingerprint, rec)
                self._gone.update(fp for fp in gone if fp not in self._records)
                return False
            return True

    async def _delivered(
        self, worker: ReceiverWorker, delivered: list[Notice], failed: list[Notice]
    ) -> None:
        """A worker's report after a batch: record what reached the receiver."""
        if not delivered:
            return
        now = self._clock()
        for notice in delivered:
            rec = self._records.get(notice.fingerprint)
            if rec is None or rec.starts_at != notice.starts_at:
                continue  # an older episode of the alert, or a record already forgotten
            if notice.firing:
                rec.last_sent_at[worker.name] = now
                self._dirty[rec.fingerprint] = rec
            elif rec.state == RESOLVED:
                rec.resolved_sent.add(worker.name)
                if self._resolve_done(rec, now):
                    self._forget(rec)
                else:
                    self._dirty[rec.fingerprint] = rec
        await self._persist()

    def _update_gauge(self) -> None:
        if not self._gauge_dirty:
            return
        self._gauge_dirty = False
        gauge = self._metrics.alerts_firing
        for name, count in self._firing.items():
            gauge.labels(name).set(count)
