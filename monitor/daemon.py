"""The daemon: wires store, scheduler, limiters, client, tracker, metrics and the HTTP server.

Data flows one way: registry -> scheduler -> limiter -> client -> tracker -> store -> metrics.
This module holds the task table (the single source of in-memory truth) and the glue; the rules
live in the modules it calls.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.alerts.engine import AlertEngine
from monitor.config import Config, ConfigError, load_config, resolve_secrets
from monitor.log import set_secrets
from monitor.metrics import BucketGauge, MonitorMetrics, StateView
from monitor.models import Outcome, Source, Status, Task, TaskKey, Transition
from monitor.ratelimit import RateLimiter, mark_sent
from monitor.ratelimit.factory import BucketKey, LimiterSettings, new_limiter
from monitor.registry import TaskFilter, TaskSpec
from monitor.scheduler import Dispatch, PollScheduler
from monitor.secrets import Credentials, Secret
from monitor.store.base import Store
from monitor.store.factory import new_store
from monitor.tracker import HealthChange, apply_callback_exit, apply_poll, apply_removal
from monitor.trtc.client import Endpoint, TrtcClient, new_session

log = structlog.get_logger("monitor.daemon")

HEALTH_FLUSH_SECONDS = 1.0
PURGE_EVERY_SECONDS = 60.0
# Time-based alert conditions (stale, idle, budget) are checked this often.
ALERT_SWEEP_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class AccountRuntime:
    name: str
    endpoint: Endpoint
    credentials: Credentials
    language: str
    rate_limit: int
    rate_window: float
    rate_guard: float


TransitionHook = Callable[[Task, Transition], None]


class Daemon:
    """One running monitor. ``start`` and ``stop`` bracket its life; ``reload`` re-reads."""

    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.clock = clock
        self.metrics = MonitorMetrics()
        self.tasks: dict[TaskKey, Task] = {}
        self.accounts: dict[str, AccountRuntime] = {}
        self.limiters: dict[str, RateLimiter] = {}
        self.api_token: str | None = None
        self.callback_key: str | None = None
        self.webhook_headers: dict[str, dict[str, Secret]] = {}
        self.ready = False
        self.transition_hooks: list[TransitionHook] = []
        self._dirty: set[TaskKey] = set()
        self._store: Store | None = None
        self._alerts: AlertEngine | None = None
        self._client: TrtcClient | None = None
        self._session: Any = None
        self._scheduler: PollScheduler[TaskKey] | None = None
        self._jobs: AsyncIOScheduler | None = None

    # ------------------------------------------------------------------ life cycle

    @property
    def store(self) -> Store:
        assert self._store is not None, "daemon not started"
        return self._store

    @property
    def alerts(self) -> AlertEngine:
        assert self._alerts is not None, "daemon not started"
        return self._alerts

    @property
    def scheduler(self) -> PollScheduler[TaskKey]:
        assert self._scheduler is not None, "daemon not started"
        return self._scheduler

    async def start(self) -> None:
        self._apply_secrets(self.config)
        self._store = new_store(self.config.storage)
        await self._store.open()
        for task in await self._store.load_tasks():
            self.tasks[task.key] = task
        # The loaded table lives as long as the daemon: keep it out of every future full
        # collection, which would otherwise walk all of it again and again.
        gc.freeze()
        self._session = new_session()
        self._client = TrtcClient(
            self._session,
            timeout=self.config.polling.timeout,
            ended_codes=self.config.polling.ended_codes,
            on_send=mark_sent,
        )
        self._alerts = AlertEngine(
            self.config.alerts,
            self._store,
            self.metrics,
            interval_of=self._interval,
            clock=self.clock,
            session=self._session,
            external_url=f"http://{self.config.server.listen}",
            webhook_headers=self.webhook_headers,
        )
        await self._alerts.start()
        self._scheduler = PollScheduler(
            self._poll,
            limiter_for=self.limiter,
            max_in_flight=self.config.polling.max_in_flight,
            jitter=self.config.polling.jitter,
            on_dispatch=self._observe_dispatch,
        )
        now = self.clock()
        for task in self.tasks.values():
            if not task.final:
                # Resume where the last life left off; a negative due_in puts the longest
                # unobserved first.
                last = task.last_success_at or task.registered_at
                self._schedule(task, due_in=last + self._interval(task) - now)
        await self._register_static(self.config)
        # Alerts whatever was stored but not yet alerted when the last life ended.
        await self._alerts.sweep(list(self.tasks.values()))
        self._scheduler.start()
        self._jobs = AsyncIOScheduler()
        self._jobs.add_job(
            self._flush_health, "interval", seconds=HEALTH_FLUSH_SECONDS, max_instances=1
        )
        self._jobs.add_job(self.purge, "interval", seconds=PURGE_EVERY_SECONDS, max_instances=1)
        self._jobs.add_job(
            self.sweep_alerts, "interval", seconds=ALERT_SWEEP_SECONDS, max_instances=1
        )
        self._jobs.start()
        self.ready = True
        log.info(
            "daemon_started",
            tasks=len(self.tasks),
            accounts=sorted(self.accounts),
            store=str(self.config.storage.path),
        )

    async def stop(self) -> None:
        self.ready = False
        if self._jobs is not None:
            self._jobs.shutdown(wait=False)
            self._jobs = None
        if self._scheduler is not None:
            await self._scheduler.stop()
        if self._alerts is not None:
            await self._alerts.stop()
        if self._store is not None:
            await self._flush_health()
            await self._store.close()
        if self._session is not None:
            await self._session.close()
        log.info("daemon_stopped")

    def _apply_secrets(self, config: Config) -> None:
        secrets = resolve_secrets(config)
        set_secrets(secrets.values())
        accounts: dict[str, AccountRuntime] = {}
        for name, acc in config.accounts.items():
            accounts[name] = AccountRuntime(
                name=name,
                endpoint=Endpoint.parse(acc.endpoint),
                credentials=secrets.accounts[name],
                language=acc.language,
                rate_limit=acc.rate_limit,
                rate_window=acc.rate_window,
                rate_guard=acc.rate_guard,
            )
        self.accounts = accounts
        self.api_token = secrets.api_token.get() if secrets.api_token else None
        self.callback_key = secrets.callback_key.get() if secrets.callback_key else None
        self.webhook_headers = secrets.webhook_headers
        # A changed rate means a new limiter; unchanged buckets keep their history.
        for key in list(self.limiters):
            account = key.split("@", 1)[0]
            runtime = accounts.get(account)
            limiter = self.limiters[key]
            if runtime is None:
                continue  # tasks of a vanished account keep their limiter until removed
            if (limiter.limit, limiter.window, limiter.guard) != (
                runtime.rate_limit,
                runtime.rate_window,
                runtime.rate_guard,
            ):
                del self.limiters[key]
                if self._scheduler is not None:
                    self._scheduler.add_bucket(key, self.limiter(key))

    async def reload(self) -> bool:
        """Re-read the config file; on any error keep the running configuration."""
        if self.config_path is None:
            return False
        try:
            config = await asyncio.to_thread(load_config, self.config_path)
            self._apply_secrets(config)
        except ConfigError as exc:
            self.metrics.config_reload_ok.set(0)
            log.error("config_reload_failed", errors=exc.errors)
            return False
        for gone in set(self.config.accounts) - set(config.accounts):
            self.alerts.forget_account(gone)
        self.config = config
        self.alerts.configure(config.alerts, self.webhook_headers)
        assert self._client is not None
        self._client.configure(
            timeout=config.polling.timeout, ended_codes=config.polling.ended_codes
        )
        self.scheduler.jitter = config.polling.jitter
        for task in self.tasks.values():
            if not task.final:
                self.scheduler.update_interval(task.key, self._interval(task))
        await self._register_static(config)
        self.metrics.config_reload_ok.set(1)
        self.metrics.config_reload_time.set(time.time())
        log.info("config_reloaded", path=str(self.config_path))
        return True

    async def _register_static(self, config: Config) -> None:
        """The file's task list; tasks already registered stay as they are."""
        for static in config.tasks:
            spec = TaskSpec(
                sdk_app_id=static.sdk_app_id,
                task_id=static.task_id,
                region=static.region,
                account=static.account,
                labels=dict(static.labels),
                interval=static.interval,
            )
            await self.register(spec, Source.API)

    def install_signal_handlers(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))

    # ------------------------------------------------------------------ registry

    def get(self, key: TaskKey) -> Task | None:
        return self.tasks.get(key)

    def find(self, flt: TaskFilter) -> list[Task]:
        return sorted((t for t in self.tasks.values() if flt.matches(t)), key=lambda t: t.key)

    async def register(self, spec: TaskSpec, source: Source = Source.API) -> tuple[Task, bool]:
        """Register a task; registering it again is a no-op answering the existing task."""
        key = TaskKey(spec.sdk_app_id, spec.task_id)
        existing = self.tasks.get(key)
        if existing is not None and existing.status is not Status.REMOVED:
            return existing, False
        now = self.clock()
        task = Task(
            sdk_app_id=spec.sdk_app_id,
            task_id=spec.task_id,
            region=spec.region,
            account=spec.account,
            labels=dict(spec.labels),
            interval=spec.interval,
            registered_at=now,
            source=source,
            status=Status.PENDING,
            status_since=now,
        )
        # In the table before the first await, so concurrent registrations of one task see it.
        self.tasks[key] = task
        try:
            await self.store.save_task(task)
        except BaseException:
            if existing is None:
                del self.tasks[key]
            else:
                self.tasks[key] = existing
            raise
        self._schedule(task, due_in=0.0)
        log.info(
            "task_registered",
            sdk_app_id=task.sdk_app_id,
            task_id=task.task_id,
            region=task.region,
            account=task.account,
            source=source.value,
        )
        return task, True

    async def remove(self, key: TaskKey) -> Task | None:
        task = self.tasks.get(key)
        if task is None:
            return None
        transition = apply_removal(task, self.clock())
        self.scheduler.remove(key)
        if transition is not None:
            await self._record(task, transition)
        return task

    async def callback_exit(
        self, key: TaskKey, leave_code: int | None, detail: dict[str, Any]
    ) -> Transition | None:
        """A 302 callback: record the exit at once, then confirm it with a poll."""
        task = self.tasks.get(key)
        if task is None:
            return None
        if leave_code is not None:
            # Kept on the task (and so persisted with the transition) for the alert rules.
            task.extra["leave_code"] = leave_code
        transition = apply_callback_exit(task, self.clock(), leave_code, detail)
        if transition is None:
            # Already Exited by a poll: the leave code must still be kept, and may turn the
            # exit into an expected one.
            await self.store.save_task(task)
            await self.alerts.evaluate_task(task)
            return None
        await self._record(task, transition)
        self.scheduler.update_interval(key, self._interval(task))
        self.scheduler.reschedule(key, due_in=0.0)
        return transition

    async def note_task_facts(self, key: TaskKey, facts: dict[str, Any]) -> bool:
        """Facts learnt from callbacks (files, VOD ids) kept on the task for the API."""
        task = self.tasks.get(key)
        if task is None:
            return False
        task.extra.update(facts)
        await self.store.save_task(task)
        return True

    async def transitions(self, key: TaskKey, limit: int | None = None) -> list[Transition]:
        return await self.store.transitions(key, limit=limit)

    async def purge(self) -> list[TaskKey]:
        """Forget ended and removed tasks older than the retention, with their series."""
        before = self.clock() - self.config.storage.retention
        leaving = [
            t.key for t in self.tasks.values() if t.ended_at is not None and t.ended_at < before
        ]
        # Resolve first, so the resolutions are on their way before the records go.
        await self.alerts.on_purged(leaving)
        purged = await self.store.purge(before)
        for key in purged:
            self.tasks.pop(key, None)
            self._dirty.discard(key)
        if purged:
            log.info("tasks_purged", count=len(purged))
        return purged

    # ------------------------------------------------------------------ polling

    def _interval(self, task: Task) -> float:
        if task.interval is not None:
            return task.interval
        return self.config.polling.interval_for(task.status, task.interval)

    def bucket_of(self, task: Task) -> str:
        """Limiter bucket: (account, access host). One host means one bucket for all regions."""
        runtime = self.accounts[task.account]
        return f"{task.account}@{runtime.endpoint.host(task.region)}"

    def limiter(self, bucket: str) -> RateLimiter:
        limiter = self.limiters.get(bucket)
        if limiter is None:
            account, host = bucket.split("@", 1)
            runtime = self.accounts[account]
            limiter = new_limiter(
                BucketKey(account, host),
                LimiterSettings(runtime.rate_limit, runtime.rate_window, runtime.rate_guard),
            )
            self.limiters[bucket] = limiter
        return limiter

    def _schedule(self, task: Task, due_in: float) -> None:
        self.scheduler.add(task.key, self.bucket_of(task), self._interval(task), due_in=due_in)

    def _observe_dispatch(self, dispatch: Dispatch[TaskKey]) -> None:
        account = dispatch.bucket.split("@", 1)[0]
        self.metrics.poll_delay.labels(account).observe(max(0.0, dispatch.delay))
        self.metrics.ratelimit_wait.labels(account).observe(dispatch.limiter_wait)

    async def _poll(self, key: TaskKey) -> None:
        task = self.tasks.get(key)
        if task is None or task.final:
            return
        runtime = self.accounts.get(task.account)
        if runtime is None:
            return
        assert self._client is not None
        result = await self._client.describe_cloud_recording(
            endpoint=runtime.endpoint,
            credentials=runtime.credentials,
            region=task.region,
            sdk_app_id=task.sdk_app_id,
            task_id=task.task_id,
            language=runtime.language,
        )
        self.metrics.api_requests.labels(
            task.account, task.region, result.outcome.value, result.code
        ).inc()
        self.metrics.api_duration.labels(task.account).observe(result.duration)
        self.alerts.on_api_outcome(task.account, result.outcome, self.clock(), result.code)
        if result.outcome is Outcome.THROTTLED:
            self.limiter(self.bucket_of(task)).on_throttled()
            # Keep its place in the queue; the limiter has already slowed down.
            self.scheduler.retry(key)
            log.warning(
                "api_throttled",
                account=task.account,
                code=result.code,
                request_id=result.request_id,
            )
            return
        if task.final or self.tasks.get(key) is not task:
            return  # removed while the request was in flight
        old_interval = self._interval(task)
        effect = apply_poll(task, result, self.clock(), self.config.polling.resource_expired_hours)
        if effect.health is HealthChange.FAILING:
            log.warning(
                "task_polls_failing",
                sdk_app_id=task.sdk_app_id,
                task_id=task.task_id,
                outcome=result.outcome.value,
                code=result.code,
                message=result.message,
                request_id=result.request_id,
            )
        elif effect.health is HealthChange.RECOVERED:
            log.info("task_polls_recovered", sdk_app_id=task.sdk_app_id, task_id=task.task_id)
        if effect.transition is not None:
            await self._record(task, effect.transition)
            if task.final:
                self.scheduler.remove(key)
            elif self._interval(task) != old_interval:
                self.scheduler.update_interval(key, self._interval(task))
        else:
            self._dirty.add(key)
            await self.alerts.evaluate_task(task)

    async def _record(self, task: Task, transition: Transition) -> Transition:
        """Persist first; only then count, log and let alerting act."""
        stored = await self.store.record_transition(task, transition)
        self._dirty.discard(task.key)
        self.metrics.transitions.labels(
            task.account, task.region, transition.from_status.value, transition.to_status.value
        ).inc()
        log.info(
            "task_transition",
            sdk_app_id=task.sdk_app_id,
            task_id=task.task_id,
            account=task.account,
            region=task.region,
            from_status=transition.from_status.value,
            to_status=transition.to_status.value,
            source=transition.source.value,
            request_id=transition.request_id,
            **{k: v for k, v in transition.detail.items() if isinstance(v, str | int | float)},
        )
        for hook in self.transition_hooks:
            hook(task, stored)
        await self.alerts.evaluate_task(task, stored)
        return stored

    def budget_by_account(self) -> dict[str, tuple[float, float]]:
        """(required, budget) requests/second per account; the budget is the configured
        capacity of its buckets, not the rate after backoff, so the alert does not flap."""
        out: dict[str, tuple[float, float]] = {}
        for name, runtime in self.accounts.items():
            buckets = [k for k in self.limiters if k.split("@", 1)[0] == name]
            capacity = runtime.rate_limit / runtime.rate_window * (1.0 - runtime.rate_guard)
            required = sum(self.scheduler.required_rate(k) for k in buckets)
            out[name] = (required, capacity * max(1, len(buckets)))
        return out

    async def sweep_alerts(self) -> None:
        for account, (required, budget) in self.budget_by_account().items():
            self.alerts.set_budget(account, required, budget)
        await self.alerts.sweep(list(self.tasks.values()))

    async def _flush_health(self) -> None:
        if not self._dirty or self._store is None:
            return
        batch = [self.tasks[k] for k in self._dirty if k in self.tasks]
        self._dirty.clear()
        await self._store.save_health(batch)

    # ------------------------------------------------------------------ metrics view

    def state_view(self) -> StateView:
        buckets = [
            BucketGauge(
                account=key.split("@", 1)[0],
                endpoint=key.split("@", 1)[1],
                limit=float(lim.limit),
                effective_rate=lim.effective_rate,
            )
            for key, lim in sorted(self.limiters.items())
        ]
        required = {name: pair[0] for name, pair in self.budget_by_account().items()}
        return StateView(
            tasks=list(self.tasks.values()),
            per_task=self.config.metrics.per_task,
            info_labels=list(self.config.metrics.labels),
            buckets=buckets,
            required_rate=required,
        )
