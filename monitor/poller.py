"""Polling: the poll step, and keeping the scheduler in step with the task table.

One poll, top to bottom: read the task, call ``DescribeCloudRecording`` through the client
(the scheduler has already waited for the budget), announce the answer (metrics and the
monitor's own alerts count it, the budget backs off on a throttled one), hand it to the
tracker, and return to the scheduler what to do next with the task (a throttled answer: retry
it in its place). The poll step never calls the scheduler, the limiter or the metrics; they act
on the outcome.

Other changes reach the scheduler as events: a registration is polled at once, a removal or
an end stops polling, and an exit learnt from a callback is confirmed by a poll right away.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

import structlog

from monitor.budget import Budget, action_of
from monitor.config import PollingConfig
from monitor.credentials import credentials_for_call
from monitor.events import (
    ApiAnswered,
    EventBus,
    TasksRegistered,
    TaskUpdated,
    TransitionRecorded,
)
from monitor.models import Kind, Outcome, Source, Status, Task, TaskKey
from monitor.ratelimit.factory import BucketKey
from monitor.registry import TaskRegistry
from monitor.scheduler import Dispatch, PollAction, PollOutcome, PollScheduler
from monitor.store.base import StoreError
from monitor.tracker import Tracker
from monitor.trtc.client import CallResult, TrtcClient
from monitor.trtc.web import describe_web_record, web_answer

__all__ = ["ACCOUNT_GONE", "IntervalPolicy", "Poller"]

log = structlog.get_logger("monitor.poller")

# The code a task's polls report while its account is missing from the configuration: a task
# error (it alerts after ``alerts.error.consecutive`` polls), not silence.
ACCOUNT_GONE = "MonitorAccountNotConfigured"

NEXT = PollOutcome()
RETRY = PollOutcome(PollAction.RETRY)
STOP = PollOutcome(PollAction.STOP)


class IntervalPolicy:
    """Seconds between polls of a task: its own interval, else by status, else the default.

    One object shared by everyone who asks (the poller, the alert engine, the cluster), put
    in step with a reloaded configuration by :meth:`configure`.
    """

    __slots__ = ("polling",)

    def __init__(self, polling: PollingConfig) -> None:
        self.polling = polling

    def configure(self, polling: PollingConfig) -> None:
        self.polling = polling

    def of(self, task: Task) -> float:
        return self.polling.interval_for(task.status, task.interval)

    def resource_expired_hours(self) -> float:
        """How long a task may answer "resource expired" before it counts as gone."""
        return self.polling.resource_expired_hours


class Poller:
    """Owns the scheduler: polls tasks, and follows the table's changes."""

    def __init__(
        self,
        *,
        registry: TaskRegistry,
        tracker: Tracker,
        budget: Budget,
        client: TrtcClient,
        bus: EventBus,
        intervals: IntervalPolicy,
        max_in_flight: int,
        jitter: float,
        clock: Callable[[], float] = time.time,
        owns: Callable[[TaskKey], bool] = lambda key: True,
        on_dispatch: Callable[[Dispatch[TaskKey]], None] | None = None,
    ) -> None:
        self._registry = registry
        # With several replicas, the tasks this one polls (docs/high-availability.md); all of them
        # alone.
        self.owns = owns
        self._tracker = tracker
        self._budget = budget
        self._client = client
        self._bus = bus
        self.intervals = intervals
        self._clock = clock
        self.scheduler: PollScheduler[TaskKey] = PollScheduler(
            self.poll,
            limiter_for=budget.limiter,
            max_in_flight=max_in_flight,
            jitter=jitter,
            on_dispatch=on_dispatch,
        )
        bus.subscribe(TasksRegistered, self._on_registered)
        bus.subscribe(TransitionRecorded, self._on_transition)
        bus.subscribe(TaskUpdated, self._on_updated)

    # -- life cycle -------------------------------------------------------------------------

    def resume(self, tasks: Iterable[Task]) -> None:
        """Schedule loaded tasks where their last life left off: the longest unobserved first."""
        # One pass, each heap built once; the items are made as the scheduler takes them, so
        # no list of 100,000 of them is held meanwhile (the memory it took stayed with the
        # process: it was freed among the scheduler's entries, made at the same time).
        self.scheduler.add_many(self._resumed(tasks, self._clock()))

    def _resumed(
        self, tasks: Iterable[Task], now: float
    ) -> Iterator[tuple[TaskKey, BucketKey, float, float]]:
        # Bucket and interval depend on these fields only: worked out once per combination,
        # and one bucket object shared by its tasks (at 100,000 tasks, a restart's largest cost).
        known: dict[tuple[str, str, Status, float | None], tuple[BucketKey, float]] = {}
        owns = self.owns
        for task in tasks:
            key = task.key
            if not task.final and owns(key):
                kind = (task.account, task.region, task.status, task.interval)
                found = known.get(kind)
                if found is None:
                    found = known[kind] = (self._budget.bucket_of(task), self.intervals.of(task))
                bucket, interval = found
                last = task.last_success_at or task.registered_at
                # Within one interval even if the wall clock was set back since ``last``.
                yield key, bucket, interval, min(interval, last + interval - now)

    def start(self) -> None:
        self.scheduler.start()

    async def stop(self) -> None:
        await self.scheduler.stop()

    def configure(self, polling: PollingConfig, replaced: Iterable[BucketKey]) -> None:
        """A reloaded configuration: intervals, jitter and limiters of changed buckets."""
        self.intervals.configure(polling)
        self.scheduler.jitter = polling.jitter
        for bucket in replaced:
            self.scheduler.add_bucket(bucket, self._budget.limiter(bucket))
        for task in self._registry:
            if not task.final:
                self.scheduler.update_interval(task.key, self.intervals.of(task))

    def follow(self, task: Task, due_in: float) -> None:
        """Start polling a task this replica has just come to own (or learnt of); within one
        interval at the latest, whatever ``due_in`` a wall-clock step made of its last poll."""
        due_in = min(due_in, self.intervals.of(task))
        if task.final:
            self.scheduler.remove(task.key)
        elif task.key in self.scheduler:
            self.scheduler.update_interval(task.key, self.intervals.of(task))
            self.scheduler.reschedule(task.key, due_in=max(0.0, due_in))
        else:
            self._add(task, due_in=due_in)

    def take_over(self, tasks: Iterable[tuple[Task, float]]) -> int:
        """Tasks taken over from a replica that died, most overdue first, each with the seconds
        until it is due by its own rhythm: over budget they go ahead of the waiting backlog
        (:meth:`PollScheduler.take_over`). Returns how many are polled from now on."""
        items: list[tuple[TaskKey, BucketKey, float, float]] = []
        for task, due_in in tasks:
            if task.final:
                self.scheduler.remove(task.key)
                continue
            interval = self.intervals.of(task)
            items.append((task.key, self._budget.bucket_of(task), interval, min(due_in, interval)))
        return self.scheduler.take_over(items)

    def unfollow(self, keys: Iterable[TaskKey]) -> None:
        """Stop polling tasks another replica owns now (an in-flight poll still finishes)."""
        for key in keys:
            self.scheduler.remove(key)

    def fleet_required_rate(self) -> Callable[[BucketKey], float]:
        """Requests per second every live task in the table needs, by bucket: with several
        replicas, what the whole fleet asks of the shared budget, not this replica's share."""
        rates: dict[BucketKey, float] = {}
        for task in self._registry:
            if not task.final:
                bucket = self._budget.bucket_of(task)
                rates[bucket] = rates.get(bucket, 0.0) + 1.0 / self.intervals.of(task)
        return lambda bucket: rates.get(bucket, 0.0)

    def required_rate(self, bucket: BucketKey) -> float:
        return self.scheduler.required_rate(bucket) if bucket in self.scheduler.buckets else 0.0

    # -- the poll step ----------------------------------------------------------------------

    async def poll(self, key: TaskKey) -> PollOutcome:
        task = self._registry.get(key)
        if task is None or task.final or not self.owns(key):
            return STOP
        account = self._budget.accounts.get(task.account)
        # The wall clock stamps the observation for people; the tracker's monotonic clock
        # decides whether its answer is still news when it comes back.
        sent_at, sent_tick = self._clock(), self._tracker.tick()
        if account is None:
            result = CallResult(
                Outcome.INVALID,
                ACCOUNT_GONE,
                f'account "{task.account}" is no longer in the configuration',
            )
        else:
            # Never waits for a refresh unless the credentials have expired; without any, an
            # `auth` answer that sent nothing (counted and alerted on like a refused call).
            credentials = await credentials_for_call(account.credentials)
            if isinstance(credentials, CallResult):
                result = credentials
            else:
                sent_at, sent_tick = self._clock(), self._tracker.tick()  # after any wait
                if task.kind is Kind.WEB:
                    result = web_answer(
                        await describe_web_record(
                            self._client,
                            endpoint=account.endpoint,
                            credentials=credentials,
                            region=task.region,
                            task_id=task.task_id,
                            language=account.language,
                        )
                    )
                else:
                    result = await self._client.describe_cloud_recording(
                        endpoint=account.endpoint,
                        credentials=credentials,
                        region=task.region,
                        sdk_app_id=task.sdk_app_id,
                        task_id=task.task_id,
                        recorder_key=task.recorder_key,
                        language=account.language,
                    )
            await self._bus.publish(
                ApiAnswered(task.account, task.region, result, self._clock(), action_of(task))
            )
        if result.outcome is Outcome.THROTTLED:
            log.warning(
                "api_throttled",
                account=task.account,
                code=result.code,
                request_id=result.request_id,
            )
            return RETRY  # keep its place in the queue; the budget has already slowed down
        try:
            applied = await self._tracker.observe_poll(key, result, sent_at, sent_tick)
        except StoreError as exc:
            # Nothing was applied: the next poll, at the usual time, observes it again.
            log.error(
                "poll_not_recorded", sdk_app_id=key.sdk_app_id, task_id=key.task_id, error=str(exc)
            )
            return NEXT
        new = applied.task
        if new is None or new.final:
            return STOP
        interval = self.intervals.of(new)
        return NEXT if interval == self.intervals.of(task) else PollOutcome(interval=interval)

    # -- following the table ----------------------------------------------------------------

    def _add(self, task: Task, due_in: float) -> None:
        self.scheduler.add(
            task.key, self._budget.bucket_of(task), self.intervals.of(task), due_in=due_in
        )

    def _on_registered(self, event: TasksRegistered) -> None:
        # A batch at once (a bulk registration's thousand tasks): one pass into the scheduler,
        # each due now, in the batch's order.
        owns, bucket_of, interval_of = self.owns, self._budget.bucket_of, self.intervals.of
        self.scheduler.add_many(
            (task.key, bucket_of(task), interval_of(task), 0.0)
            for task in event.tasks
            if owns(task.key)
        )

    def _on_updated(self, event: TaskUpdated) -> None:
        # A new interval applies at once: the next poll is due one new interval after the last.
        task = event.task
        if "interval" in event.changed and not task.final:
            self.scheduler.update_interval(task.key, self.intervals.of(task))

    def _on_transition(self, event: TransitionRecorded) -> None:
        task, transition = event.task, event.transition
        if transition.source is Source.POLL:
            return  # the poll's own outcome tells the scheduler
        if task.final:
            self.scheduler.remove(task.key)
            return
        self.scheduler.update_interval(task.key, self.intervals.of(task))
        if transition.source is Source.CALLBACK:
            self.scheduler.reschedule(task.key, due_in=0.0)  # confirm it by polling
