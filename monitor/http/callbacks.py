"""The callback endpoint: runs the steps of :mod:`monitor.callbacks` in their order.

Read with a size limit, verify the ``Sign`` header over the raw bytes with the key of the
application it is for, parse, refuse a message whose times lie beyond ``callbacks.max_age`` in
the past (a replay: the signature covers no time) or ``callbacks.max_skew`` in the future, drop a
repeat (and refuse a body seen before under another ``SdkAppId``), act. Each step's outcome
is counted in ``trtc_monitor_callbacks_total``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import NoReturn

import structlog
from aiohttp import web

from monitor.callbacks.dedupe import Claim, Deliveries, LocalDeliveries, dedupe_window
from monitor.callbacks.effects import apply_callback, log_event
from monitor.callbacks.parse import (
    RECORDER_STARTED,
    RECORDER_STOPPED,
    Callback,
    CallbackInvalid,
    CallbackOutcome,
    Kind,
)
from monitor.callbacks.shared import deliveries_for
from monitor.callbacks.signature import verify_signature
from monitor.callbacks.timing import TimeProblem, Verdict, check_times
from monitor.callbacks.tuikit import check_chat_auth, parse_tuikit
from monitor.callbacks.web import WEB_STARTED, WEB_STOPPED, parse_any_callback
from monitor.http.errors import ApiError
from monitor.http.ports import HttpContext
from monitor.http.throttled_log import ThrottledWarning
from monitor.taskspec import MAX_SDK_APP_ID
from monitor.trtc.sites import site_info

log = structlog.get_logger("monitor.callbacks")

MAX_BODY_BYTES = 64 * 1024


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


def _header_app(header: str) -> int | None:
    text = header.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        return None
    app = int(text)
    return app if 0 < app <= MAX_SDK_APP_ID else None


@dataclass(slots=True)
class CallbackReceiver:
    """State of the endpoint: the deliveries seen and the once-only warnings."""

    context: HttpContext
    deliveries: Deliveries = field(default_factory=LocalDeliveries)
    max_body: int = MAX_BODY_BYTES
    warned_no_key: bool = False
    # Unsigned senders can be anyone, and whoever holds one captured body can send it under
    # any number of headers: one line a minute for each, with how many were refused.
    unauthorized: ThrottledWarning = field(
        default_factory=lambda: ThrottledWarning(log, "recording_callback_unauthorized")
    )
    mismatches: ThrottledWarning = field(
        default_factory=lambda: ThrottledWarning(log, "recording_callback_mismatch")
    )

    def _count(self, label: str, outcome: CallbackOutcome) -> None:
        self.context.metrics.count_callback(label, outcome.value)

    async def handle(self, request: web.Request) -> web.Response:
        control = self.context.control
        try:
            raw = await read_limited(request, self.max_body)
        except TooLarge:
            self._count("none", CallbackOutcome.INVALID)
            raise ApiError(413, f"callback body is larger than {self.max_body} bytes") from None

        try:
            if "CallbackCommand" in request.query:
                event = self._tuikit_event(request, raw)
            else:
                header = request.headers.get("SdkAppId")
                signed_for = self._verify(raw, header, request.headers.get("Sign"))
                # Without the header, the application whose key signed the body stands for it
                # (the body's own SdkAppId, if any, must agree). Group 8 (web-page
                # recordings) too: same envelope, same Sign.
                event = parse_any_callback(raw, header if header is not None else signed_for)
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
        problem = check_times(event, now, settings.max_age, settings.max_skew)
        if problem is not None:
            self._refuse_time(event, problem, settings.max_age, settings.max_skew)
        digest = hashlib.sha256(raw).digest()
        window = dedupe_window(settings.max_age, settings.max_skew)
        claimed: tuple[bytes, ...] = ()
        claim = await self.deliveries.claim(digest, event.sdk_app_id, window)
        if claim is Claim.NEW:
            # The same event sent again later (another CallbackTs, re-serialised) is the same.
            try:
                again = await self.deliveries.claim(event.delivery, event.sdk_app_id, window)
            except BaseException:
                await self.deliveries.release(digest)  # let TRTC's retry be taken
                raise
            if again is Claim.NEW:
                claimed = (digest, event.delivery)
            else:
                claim = Claim.DUPLICATE
        if claim is Claim.MISMATCH:
            self._count(event.label, CallbackOutcome.MISMATCH)
            self.mismatches.refused(
                event_type=event.label, sdk_app_id=event.sdk_app_id, task_id=event.task_id or None
            )
            raise ApiError(
                403,
                "callback refused: this body was delivered before for another SdkAppId",
                "callback_mismatch",
            )
        if claim is Claim.DUPLICATE:
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
        if event.kind is Kind.WEB and self.context.callbacks.get(event.key) is None:
            site = control.account_names().get(settings.account)
            if site is not None and not site_info(site).serves(settings.region, web=True):
                self._count(event.label, CallbackOutcome.REFUSED)
                log.warning(
                    "web_callback_not_registered",
                    event_type=event.label,
                    sdk_app_id=event.sdk_app_id,
                    task_id=event.task_id,
                    reason=f"{settings.region} is not served for web-page recording by the "
                    f"{site} site of account {settings.account} (its regions: "
                    f"{', '.join(site_info(site).web_regions)})",
                )
                return _ok()
        try:
            effect = await apply_callback(self.context.callbacks, settings, event, now)
        except BaseException:
            for key in claimed:  # let TRTC's retry apply it
                await self.deliveries.release(key)
            raise
        outcome = CallbackOutcome.ACCEPTED
        if effect == "not_registered" and event.event_type not in (
            RECORDER_STARTED,
            RECORDER_STOPPED,
            WEB_STARTED,
            WEB_STOPPED,
        ):
            # An upload event of a task nobody registered (auto_register off): counted apart.
            outcome = CallbackOutcome.UNREGISTERED
        self._count(event.label, outcome)
        log_event(event, effect)
        return _ok()

    def _tuikit_event(self, request: web.Request, raw: bytes) -> Callback:
        """A TUIKit envelope (``CallbackCommand`` in the query string), authenticated the Chat
        way with ``callbacks.tuikit_token``, its ``RequestTime`` within the bounds of the
        event's own times, unwrapped into the group-3 event it carries."""
        control = self.context.control
        query = request.query
        auth = check_chat_auth(control.tuikit_token(), query, raw)
        if not auth.ok or auth.request_time is None:
            self._count("none", CallbackOutcome.UNAUTHORIZED)
            self._refuse(auth.reason)
            raise ApiError(401, "TUIKit envelope refused: missing or wrong Sign")
        settings = control.callback_settings()
        age = self.context.clock() - auth.request_time
        if age > settings.max_age:
            self._count("none", CallbackOutcome.STALE)
            log.warning("tuikit_callback_stale", request_time=auth.request_time)
            raise ApiError(
                403,
                "callback refused: RequestTime is older than callbacks.max_age",
                "stale_callback",
            )
        if -age > settings.max_skew:
            self._count("none", CallbackOutcome.INVALID)
            log.warning("tuikit_callback_future", request_time=auth.request_time)
            raise ApiError(400, "callback refused: RequestTime is beyond callbacks.max_skew")
        apps = control.callback_app_keys()
        app = _header_app(query.get("SdkAppid", ""))
        if apps is not None and (app is None or app not in apps):
            self._refuse_application("SdkAppid")
        return parse_tuikit(query, raw)

    def _verify(self, raw: bytes, header: str | None, sign: str | None) -> str | None:
        """Check ``Sign`` with the key of the application the callback is for; returns that
        application (as text) when it was found by its key, for a body sent without header.

        One application: the single key. With ``callbacks.apps``: the header's application
        must be one of them (else 403) and its key must sign the body; without a header, the
        key of one of them must."""
        control = self.context.control
        apps = control.callback_app_keys()
        if apps is None:
            key = control.callback_key()
            if not key:
                self._refuse_without_key()
                raise ApiError(401, "callbacks are refused: the monitor has no callback key")
            if not verify_signature(key, raw, sign):
                self._refuse_sign(sign)
            return None
        if header is not None:
            app = _header_app(header)
            if app is None or app not in apps:
                self._refuse_application("SdkAppId")
            if not verify_signature(apps[app], raw, sign):
                self._refuse_sign(sign)
            return None
        # Every key is tried (a handful): the body must not be read before it is verified.
        found = [app for app, key in sorted(apps.items()) if verify_signature(key, raw, sign)]
        if not found:
            self._refuse_sign(sign)
        return str(found[0])

    def _refuse_sign(self, sign: str | None) -> NoReturn:
        self._refuse("missing Sign header" if sign is None else "wrong Sign")
        self._count("none", CallbackOutcome.UNAUTHORIZED)
        raise ApiError(401, "missing or wrong Sign header")

    def _refuse_time(
        self, event: Callback, problem: TimeProblem, max_age: float, max_skew: float
    ) -> NoReturn:
        future = problem.verdict is Verdict.FUTURE
        outcome = CallbackOutcome.INVALID if future else CallbackOutcome.STALE
        self._count(event.label, outcome)
        log.warning(
            "recording_callback_future" if future else "recording_callback_stale",
            event_type=event.label,
            sdk_app_id=event.sdk_app_id or None,
            task_id=event.task_id or None,
            field=problem.field,
            value=problem.value,
            max_age=max_age,
            max_skew=max_skew,
        )
        if future:
            raise ApiError(400, f"callback refused: {problem.message}")
        raise ApiError(403, f"callback refused: {problem.message}", "stale_callback")

    def _refuse_without_key(self) -> None:
        self._count("none", CallbackOutcome.UNAUTHORIZED)
        if not self.warned_no_key:
            self.warned_no_key = True
            log.warning(
                "callback_key_missing",
                message="callbacks are refused until callbacks.key_env or callbacks.key_file "
                "names a key that is set",
            )

    def _refuse_application(self, field_name: str) -> NoReturn:
        """Refuse a callback for an application not in ``callbacks.apps`` (named by
        ``field_name``, as the callback's kind spells it)."""
        self._count("none", CallbackOutcome.UNAUTHORIZED)
        self._refuse(f"{field_name} not configured in callbacks.apps")
        raise ApiError(
            403,
            "callbacks are taken only for the applications in callbacks.apps",
            "unknown_application",
        )

    def _refuse(self, reason: str) -> None:
        self.unauthorized.refused(reason=reason)


def _ok() -> web.Response:
    return web.json_response({"status": "ok"})


RECEIVER: web.AppKey[CallbackReceiver] = web.AppKey("callback_receiver", CallbackReceiver)


def add_routes(app: web.Application, path: str, context: HttpContext) -> None:
    """Mount the callback endpoint at ``path``."""
    receiver = CallbackReceiver(context)
    shared = deliveries_for(context.shared_store)
    if shared is not None:
        receiver.deliveries = shared
    app[RECEIVER] = receiver
    app.router.add_post(path, receiver.handle)
