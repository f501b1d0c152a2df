"""Delivery of the alert records to the receivers: one worker per configured receiver, what
is due to each (fresh changes, resends, retries, resolves still owed), and what each reported
having delivered.

A notification is queued only about a record the store holds (see :mod:`monitor.alerts.state`):
the engine hands fresh changes over once they are saved, and ``deliver_due`` skips records not
saved yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Final, TypedDict, Unpack

import aiohttp
import structlog
from prometheus_client import Counter

from monitor.alerts.payloads import Notice
from monitor.alerts.receivers import DeliveryContext, ReceiverConfig, ReceiverWorker
from monitor.alerts.retry import RetryPolicy
from monitor.alerts.robots.worker import RobotWorker
from monitor.alerts.state import FIRING, RESOLVED, AlertBook
from monitor.alerts.worker_factory import build_worker
from monitor.config import RobotReceiver, RobotSecrets
from monitor.secrets import Secret
from monitor.slices import Slices
from monitor.store.base import AlertRecord

__all__ = ["RESOLVED_GIVE_UP", "Deliveries", "DeliveryOptions", "WebhookHeaders"]

log = structlog.get_logger("monitor.alerts")

# A resolve that could not be delivered for this long is given up: the receiver has been
# unreachable for a day, and Alertmanager expired the alert long ago on its own.
RESOLVED_GIVE_UP: Final = 24 * 3600.0

WebhookHeaders = Mapping[str, Mapping[str, str | Secret]]


def _plain_headers(headers: WebhookHeaders | None) -> dict[str, dict[str, str]]:
    if not headers:
        return {}
    return {
        receiver: {k: v.get() if isinstance(v, Secret) else v for k, v in values.items()}
        for receiver, values in headers.items()
    }


class DeliveryOptions(TypedDict, total=False):
    """How alerts are delivered, each optional: the engine's caller passes them through to
    ``Deliveries`` (defaults there)."""

    session: aiohttp.ClientSession | None  # None: an own one, closed with the deliveries
    external_url: str
    webhook_headers: WebhookHeaders | None
    robot_secrets: Mapping[str, RobotSecrets] | None
    retry: RetryPolicy | None
    redeliver_after: float
    stop_grace: float


def _new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=20, keepalive_timeout=30),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


class Deliveries:
    """The receiver workers of one engine, fed from its :class:`AlertBook`."""

    def __init__(
        self,
        book: AlertBook,
        *,
        notifications: Counter,
        clock: Callable[[], float],
        **options: Unpack[DeliveryOptions],
    ) -> None:
        self._book = book
        self._notifications = notifications
        self._clock = clock
        self._session = options.get("session")
        self._own_session = self._session is None
        self._external_url = options.get("external_url", "")
        self._headers = _plain_headers(options.get("webhook_headers"))
        self._robots = dict(options.get("robot_secrets") or {})
        self._retry = options.get("retry")
        self._redeliver_after = options.get("redeliver_after", 60.0)
        self._stop_grace = options.get("stop_grace", 2.0)
        self.workers: dict[str, ReceiverWorker] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._running = False

    # --- life cycle ----------------------------------------------------------------------------

    def start(self, receivers: Iterable[ReceiverConfig]) -> None:
        if self._session is None:
            self._session = _new_session()
        self._running = True
        for receiver in receivers:
            self._add_worker(receiver)

    async def stop_workers(self) -> None:
        """Give queued notifications a moment to go out, then stop the workers."""
        self._running = False
        workers = list(self.workers.values())
        await asyncio.gather(*(w.stop(self._stop_grace) for w in workers))
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        self.workers.clear()

    async def close(self) -> None:
        """Close the HTTP session if it is this object's own."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def drain(self) -> None:
        """Wait until every receiver sent what it has queued and the outcome is recorded."""
        await asyncio.gather(*(w.drain() for w in list(self.workers.values())))

    def configure(
        self,
        receivers: Iterable[ReceiverConfig],
        webhook_headers: WebhookHeaders | None = None,
        robot_secrets: Mapping[str, RobotSecrets] | None = None,
        external_url: str | None = None,
    ) -> None:
        """A reloaded configuration: see ``AlertEngine.configure``."""
        if webhook_headers is not None:
            self._headers = _plain_headers(webhook_headers)
        if robot_secrets is not None:
            self._robots = dict(robot_secrets)
        if external_url is not None:
            self._external_url = external_url
            for worker in self.workers.values():
                worker.external_url = external_url
        wanted = {r.name: r for r in receivers}
        for name, worker in list(self.workers.items()):
            receiver = wanted.get(name)
            if isinstance(worker, RobotWorker) and not worker.same_robot(self._robots.get(name)):
                receiver = None
            if receiver is not None and worker.same_queue(receiver):
                worker.update(receiver, self._headers.get(name, {}))
                continue
            del self.workers[name]
            retire = asyncio.create_task(worker.stop(grace=0.0))
            self._retiring.add(retire)
            retire.add_done_callback(self._retiring.discard)
        if self._running:
            for name, receiver in wanted.items():
                if name not in self.workers:
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
            notifications=self._notifications,
            clock=self._clock,
            on_result=self._delivered,
            retry=self._retry,
            redeliver_after=self._redeliver_after,
            external_url=self._external_url,
        )
        worker = build_worker(
            receiver, context, headers=self._headers.get(receiver.name), robot=robot
        )
        self.workers[receiver.name] = worker
        worker.start()

    # --- what is due ---------------------------------------------------------------------------

    def forget(self, fp: str) -> None:
        """A record left memory: no retry of it is due any more."""
        for worker in self.workers.values():
            worker.retry_at.pop(fp, None)

    def resolve_done(self, rec: AlertRecord, now: float) -> bool:
        """Whether no receiver is still owed this resolve. A receiver that never heard the
        alert fire (and has nothing about it queued) is not told it resolved."""
        ends_at = rec.ends_at if rec.ends_at is not None else now
        if now - ends_at > RESOLVED_GIVE_UP:
            return True
        fp = rec.fingerprint
        for worker in self.workers.values():
            if worker.name in rec.resolved_sent:
                continue
            if fp in worker.pending or worker.name in rec.last_sent_at:
                return False
        return True

    async def send(self, fired: Iterable[AlertRecord], resolved: Iterable[AlertRecord]) -> None:
        """Fresh changes, just saved: a firing alert to every receiver, a resolve to those
        that heard it fire (or have it queued).

        Thousands at once are queued in slices that yield to the loop; each record's state is
        read when its turn comes, so one resolved meanwhile is not announced as firing.
        """
        book = self._book
        workers = list(self.workers.values())
        slices = Slices()
        for rec in fired:
            if slices.due():
                await slices.pause()
            if rec.state == FIRING and book.records.get(rec.fingerprint) is rec:
                notice = Notice.of(rec)
                for w in workers:
                    w.enqueue(notice)
        for rec in resolved:
            if slices.due():
                await slices.pause()
            if rec.state != RESOLVED or book.records.get(rec.fingerprint) is not rec:
                continue
            notice = Notice.of(rec)
            for w in workers:
                if w.name not in rec.resolved_sent and (
                    w.name in rec.last_sent_at or rec.fingerprint in w.pending
                ):
                    w.enqueue(notice)

    async def deliver_due(self, now: float) -> None:
        """Queue resends, retries after failures and owed resolves. Unlike fresh changes,
        this work can wait: it only fills the room queues have, and never drops.

        Every record is looked at, in slices that yield to the loop; one replaced or forgotten
        meanwhile is passed over (its successor is the next sweep's)."""
        book = self._book
        workers = list(self.workers.values())
        slices = Slices()
        for rec in list(book.records.values()):
            if slices.due():
                await slices.pause()
            fp = rec.fingerprint
            if book.records.get(fp) is not rec:
                continue  # replaced or forgotten while this walk yielded
            if fp in book.dirty:
                continue  # not in the store yet: nothing may be sent about it
            if not book.mine(rec):
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
            if self.resolve_done(rec, now):
                book.forget(rec)
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

    async def _delivered(
        self, worker: ReceiverWorker, delivered: list[Notice], failed: list[Notice]
    ) -> None:
        """A worker's report after a batch: record what reached the receiver."""
        if not delivered:
            return
        book = self._book
        now = self._clock()
        for notice in delivered:
            rec = book.records.get(notice.fingerprint)
            if rec is None or rec.starts_at != notice.starts_at:
                continue  # an older episode of the alert, or a record already forgotten
            if notice.firing:
                rec.last_sent_at[worker.name] = now
                book.mark(rec)
            elif rec.state == RESOLVED:
                rec.resolved_sent.add(worker.name)
                if self.resolve_done(rec, now):
                    book.forget(rec)
                else:
                    book.mark(rec)
        await book.persist()
