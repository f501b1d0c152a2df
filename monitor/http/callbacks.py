"""The callback endpoint: runs the steps of :mod:`monitor.callbacks` in their order.

Read with a size limit, verify the ``Sign`` header over the raw bytes, parse, refuse a message
older than ``callbacks.max_age`` (a replay: the signature covers no time), drop a repeat,
act. Each step's outcome is counted in ``trtc_monitor_callbacks_total``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import structlog
from aiohttp import web

from monitor.callbacks.dedupe import DeliveryCache
from monitor.callbacks.effects import apply_callback, log_event
from monitor.callbacks.parse import (
    RECORDER_STARTED,
    RECORDER_STOPPED,
    CallbackInvalid,
    CallbackOutcome,
    Kind,
    parse_callback,
)
from monitor.callbacks.signature import verify_signature
from monitor.http.errors import ApiError
from monitor.http.ports import HttpContext

log = structlog.get_logger("monitor.callbacks")

MAX_BODY_BYTES = 64 * 1024
UNAUTHORIZED_LOG_EVERY = 60.0


class TooLarge(Exception):
    pass


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The raw body, refusing (without reading it all) one larger than ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise TooLarge
    return bytes(body)


def too_old(callback_ts_ms: int | None, now: float, max_age: float) -> bool:
    """Whether a message sent at ``callback_ts_ms`` is older than ``max_age`` at ``now``.

    A message without ``CallbackTs`` cannot show its age; TRTC always sends one, so a body
    without it is not TRTC's and is refused like an old one.
    """
    if callback_ts_ms is None:
        return True
    return now - callback_ts_ms / 1000.0 > max_age


@dataclass(slots=True)
class CallbackReceiver:
    """State of the endpoint: the delivery cache and the once-only warnings."""

    context: HttpContext
    deliveries: DeliveryCache = field(default_factory=DeliveryCache)
    max_body: int = MAX_BODY_BYTES
    warned_no_key: bool = False
    last_unauthorized_log: float = -math.inf
    unauthorized_since_log: int = 0

    def _count(self, label: str, outcome: CallbackOutcome) -> None:
        self.context.metrics.count_callback(label, outcome.value)

    async def handle(self, request: web.Request) -> web.Response:
        control = self.context.control
        try:
            raw = await read_limited(request, self.max_body)
        except TooLarge:
            self._count("none", CallbackOutcome.INVALID)
            raise ApiError(413, f"callback body is larger than {self.max_body} bytes") from None

        key = control.callback_key()
        if not key:
            self._refuse_without_key()
            raise ApiError(401, "callbacks are refused: the monitor has no callback key")
        if not verify_signature(key, raw, request.headers.get("Sign")):
            self._refuse("missing Sign header" if "Sign" not in request.headers else "wrong Sign")
            self._count("none", CallbackOutcome.UNAUTHORIZED)
            raise ApiError(401, "missing or wrong Sign header")

        try:
            event = parse_callback(raw, request.headers.get("SdkAppId"))
        except CallbackInvalid as exc:
            self._count(exc.label, CallbackOutcome.INVALID)
            log.info("recording_callback_invalid", error=exc.message, event_type=exc.label)
            raise ApiError(400, exc.message) from None

        if event.kind is Kind.IGNORED:
            self._count(event.label, CallbackOutcome.IGNORED)
            log.debug("recording_callback_ignored", group=event.group, event_type=event.label)
            return _ok()
        settings = control.callback_settings()
        now = self.context.clock()
        if too_old(event.callback_ts, now, settings.max_age):
            self._count(event.label, CallbackOutcome.STALE)
            log.warning(
                "recording_callback_stale",
                event_type=event.label,
                callback_ts=event.callback_ts,
                max_age=settings.max_age,
            )
            raise ApiError(
                403,
                "callback refused: its CallbackTs is missing or older than callbacks.max_age",
                "stale_callback",
            )
        if not self.deliveries.claim(event.delivery):
            self._count(event.label, CallbackOutcome.DUPLICATE)
            log.debug(
                "recording_callback_duplicate",
                event_type=event.label,
                sdk_app_id=event.sdk_app_id,
                task_id=event.task_id or None,
            )
            return _ok()
        if event.kind is Kind.UNKNOWN:
            self._count(event.label, CallbackOutcome.UNKNOWN)
            log.info(
                "recording_callback_unknown",
                event_type=event.event_type,
                sdk_app_id=event.sdk_app_id,
            )
            return _ok()
        try:
            effect = await apply_callback(self.context.callbacks, settings, event, now)
        except BaseException:
            self.deliveries.release(event.delivery)  # let TRTC's retry apply it
            raise
        outcome = CallbackOutcome.ACCEPTED
        if effect == "not_registered" and event.event_type not in (
            RECORDER_STARTED,
            RECORDER_STOPPED,
        ):
            # An upload event of a task nobody registered (auto_register off): counted apart.
            outcome = CallbackOutcome.UNREGISTERED
        self._count(event.label, outcome)
        log_event(event, effect)
        return _ok()

    def _refuse_without_key(self) -> None:
        self._count("none", CallbackOutcome.UNAUTHORIZED)
        if not self.warned_no_key:
            self.warned_no_key = True
            log.warning(
                "callback_key_missing",
                message="callbacks are refused until callbacks.key_env or callbacks.key_file "
                "names a key that is set",
            )

    def _refuse(self, reason: str) -> None:
        # Unsigned senders can be anyone: one line a minute, with how many were refused.
        self.unauthorized_since_log += 1
        now = time.monotonic()
        if now - self.last_unauthorized_log >= UNAUTHORIZED_LOG_EVERY:
            log.warning(
                "recording_callback_unauthorized",
                reason=reason,
                refused=self.unauthorized_since_log,
            )
            self.last_unauthorized_log = now
            self.unauthorized_since_log = 0


def _ok() -> web.Response:
    return web.json_response({"status": "ok"})


RECEIVER: web.AppKey[CallbackReceiver] = web.AppKey("callback_receiver", CallbackReceiver)


def add_routes(app: web.Application, path: str, context: HttpContext) -> None:
    """Mount the callback endpoint at ``path``."""
    receiver = CallbackReceiver(context)
    app[RECEIVER] = receiver
    app.router.add_post(path, receiver.handle)
