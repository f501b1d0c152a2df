"""Delivery of alert notifications: one worker per configured receiver.

Each worker owns a bounded queue and drains it in batches; enqueueing never waits, so alerting
never slows polling down. A failed request is retried with exponential backoff a few times,
then the batch is reported back as failed and the engine tries again later.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Final
from urllib.parse import urlsplit

import aiohttp
import structlog
from prometheus_client import Counter

from monitor import __version__
from monitor.alerts.payloads import Notice, alertmanager_alerts, webhook_payloads
from monitor.alerts.retry import RetryPolicy
from monitor.config import AlertmanagerReceiver, RobotReceiver, WebhookReceiver

log = structlog.get_logger("monitor.alerts")

SUCCESS: Final = "success"
FAILURE: Final = "failure"
DROPPED: Final = "dropped"

# A firing alert sent to Alertmanager ends this many resend periods later unless re-sent, so
# a couple of lost resends do not resolve it, while a dead monitor's alerts still expire.
HOLD_RESENDS: Final = 4
# Alerts per request: enough to catch up after an outage quickly, small enough for one body.
MAX_BATCH: Final = 64
USER_AGENT: Final = f"trtc-recording-monitor/{__version__}"

ReceiverConfig = AlertmanagerReceiver | WebhookReceiver | RobotReceiver


def origin(url: str) -> str:
    """scheme://host[:port] only: webhook paths often carry tokens, so logs never show them."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


# (worker, delivered, failed): called after every batch, so the engine can record deliveries.
ResultHandler = Callable[["ReceiverWorker", list[Notice], list[Notice]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """What every receiver worker shares, whatever its kind: the HTTP session, the counter of
    notification outcomes (``trtc_monitor_notifications_total``), the clock, where batch
    outcomes are reported, the retry policy, how long a failed or dropped alert waits before it
    is due again, and the monitor's external URL (a worker keeps its own copy, which a reload
    updates)."""

    session: aiohttp.ClientSession
    notifications: Counter
    clock: Callable[[], float]
    on_result: ResultHandler
    retry: RetryPolicy | None = None
    redeliver_after: float = 60.0
    external_url: str = ""


class ReceiverWorker:
    """A bounded queue of notices for one receiver and the task that sends them.

    ``pending`` counts the notices per fingerprint that are queued or being sent, and
    ``retry_at`` says when an alert whose delivery failed or was dropped may be tried again:
    both let the engine decide what is due without queueing an alert twice.
    """

    kind: ClassVar[str] = ""

    def __init__(
        self,
        name: str,
        destinations: Sequence[str],
        *,
        queue_size: int,
        resend: float | None,
        timeout: float,
        context: DeliveryContext,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.destinations = tuple(destinations)
        self.queue_size = queue_size
        self.resend = resend
        self.timeout = timeout
        self.retry = context.retry or RetryPolicy()
        self.redeliver_after = context.redeliver_after
        self.external_url = context.external_url
        self.pending: dict[str, int] = {}
        self.retry_at: dict[str, float] = {}
        self._headers: dict[str, str] = dict(headers or {})
        self._session = context.session
        self._clock = context.clock
        self._on_result = context.on_result
        self._queue: asyncio.Queue[Notice] = asyncio.Queue(queue_size)
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._overflowing = False
        self._task: asyncio.Task[None] | None = None
        self._count = {
            outcome: context.notifications.labels(name, outcome)
            for outcome in (SUCCESS, FAILURE, DROPPED)
        }

    def __repr__(self) -> str:  # never the headers: they carry secrets
        return f"{type(self).__name__}({self.name!r})"

    def same_queue(self, config: ReceiverConfig) -> bool:
        """Whether ``config`` can be applied to this worker without a new queue."""
        return (
            config.type == self.kind
            and config.queue_size == self.queue_size
            and destinations(config) == self.destinations
        )

    def update(self, config: ReceiverConfig, headers: Mapping[str, str] | None = None) -> None:
        self.resend = config.resend
        self.timeout = config.timeout
        if headers is not None:
            self._headers = dict(headers)

    # --- queue -----------------------------------------------------------------------------

    def has_room(self) -> bool:
        return not self._closing and not self._queue.full()

    def enqueue(self, notice: Notice) -> bool:
        """Queue without waiting. A full queue drops its oldest notice (the newer state matters
        more; the engine tries the dropped alert again later). False once stopping."""
        if self._closing:
            return False
        queue = self._queue
        if queue.full():
            dropped = queue.get_nowait()
            self._release(dropped, ok=False, now=self._clock())
            self._count[DROPPED].inc()
            if not self._overflowing:
                self._overflowing = True
                log.warning(
                    "notification_queue_full",
                    receiver=self.name,
                    queue_size=self.queue_size,
                    hint="the receiver is slow or down; oldest notifications are dropped",
                )
        queue.put_nowait(notice)
        self.pending[notice.fingerprint] = self.pending.get(notice.fingerprint, 0) + 1
        self._idle.clear()
        return True

    def queued(self) -> int:
        return self._queue.qsize()

    async def drain(self) -> None:
        """Wait until everything queued so far was sent (or failed) and accounted for."""
        await self._idle.wait()

    def _release(self, notice: Notice, *, ok: bool, now: float) -> None:
        fp = notice.fingerprint
        left = self.pending.get(fp, 0) - 1
        if left > 0:
            self.pending[fp] = left
        else:
            self.pending.pop(fp, None)
        if ok:
            self.retry_at.pop(fp, None)
        else:
            self.retry_at[fp] = now + self.redeliver_after

    # --- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"alerts-receiver-{self.name}")

    async def stop(self, grace: float = 2.0) -> None:
        """Stop taking notices; give what is queued ``grace`` seconds to go out (retries are
        cut short), then stop."""
        self._closing = True
        task, self._task = self._task, None
        if task is None:
            return
        if not self._idle.is_set():
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                log.warning("notifications_abandoned", receiver=self.name, queued=self.queued())
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _collect(self) -> list[Notice]:
        """The next batch: what is queued, once there is something."""
        queue = self._queue
        batch = [await queue.get()]
        while len(batch) < MAX_BATCH and not queue.empty():
            batch.append(queue.get_nowait())
        return batch

    async def _run(self) -> None:
        queue = self._queue
        while True:
            batch = await self._collect()
            try:
                delivered = await self._send(batch)
            except Exception as exc:  # a worker must outlive any single bad batch
                log.error("notification_error", receiver=self.name, error=repr(exc))
                delivered = []
            sent = {id(n) for n in delivered}
            failed = [n for n in batch if id(n) not in sent]
            now = self._clock()
            for n in batch:
                self._release(n, ok=id(n) in sent, now=now)
            try:
                await self._on_result(self, delivered, failed)
            except Exception as exc:
                log.error("notification_bookkeeping_failed", receiver=self.name, error=repr(exc))
            if queue.empty():
                self._overflowing = False
                self._idle.set()

    # --- delivery --------------------------------------------------------------------------

    async def _send(self, batch: list[Notice]) -> list[Notice]:
        """Deliver what it can; return the notices delivered."""
        raise NotImplementedError

    def _request_headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "User-Agent": USER_AGENT, **self._headers}

    async def _post(self, url: str, body: bytes) -> bool:
        """POST with retries; True once a 2xx answer came back."""
        headers = self._request_headers()
        status: int | None = None
        error: str | None = None
        attempt = 0
        while True:
            attempt += 1
            status, error = None, None
            try:
                async with self._session.post(
                    url,
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                    allow_redirects=False,
                ) as answer:
                    await answer.read()
                    status = answer.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = type(exc).__name__
            if status is not None and 200 <= status < 300:
                self._count[SUCCESS].inc()
                return True
            self._count[FAILURE].inc()
            # Other client errors will not change by asking again.
            permanent = status is not None and 400 <= status < 500 and status not in (408, 429)
            if permanent or attempt >= self.retry.attempts or self._closing:
                break
            await asyncio.sleep(self.retry.delay(attempt))
        log.warning(
            "notification_failed",
            receiver=self.name,
            type=self.kind,
            target=origin(url),
            status=status,
            error=error,
            attempts=attempt,
        )
        return False


class AlertmanagerWorker(ReceiverWorker):
    """``POST /api/v2/alerts`` to every listed Alertmanager (they deduplicate among
    themselves); delivered when at least one accepted."""

    kind: ClassVar[str] = "alertmanager"

    def hold(self) -> float:
        return HOLD_RESENDS * (self.resend or 60.0)

    async def _send(self, batch: list[Notice]) -> list[Notice]:
        alerts = alertmanager_alerts(batch, self._clock(), self.hold(), self.external_url)
        body = json.dumps(alerts).encode()
        results = await asyncio.gather(
            *(self._post(url.rstrip("/") + "/api/v2/alerts", body) for url in self.destinations)
        )
        return list(batch) if any(results) else []


class WebhookWorker(ReceiverWorker):
    """The Alertmanager webhook payload (version 4), one request per alert name."""

    kind: ClassVar[str] = "webhook"

    async def _send(self, batch: list[Notice]) -> list[Notice]:
        delivered: list[Notice] = []
        for members, payload in webhook_payloads(batch, self.name, self.external_url):
            if await self._post(self.destinations[0], json.dumps(payload).encode()):
                delivered.extend(members)
        return delivered


def destinations(config: ReceiverConfig) -> tuple[str, ...]:
    """The URLs a receiver's requests go to (none for a robot: its URL is a secret)."""
    if isinstance(config, AlertmanagerReceiver):
        return tuple(config.urls)
    if isinstance(config, RobotReceiver):
        return ()  # a robot's URL is a secret, handed over separately
    return (config.url,)
