"""Signed TRTC recording callbacks (event groups 3 and 8), sent as TRTC sends them, or the
group-3 events wrapped as TUICallKit and TUILiveKit deliver them (:mod:`.tuikit`).

Building and signing a callback is pure; ``CallbackSender`` delivers them from a queue in the
background so that API answers never wait on a callback receiver, and retries like TRTC: once
at once, then every ``retry_interval`` until the message is ``retry_for`` old.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from monitor.simulator.tuikit import wrap

EVENT_GROUP_RECORDING = 3
RECORDER_STARTED = 301
RECORDER_STOPPED = 302
UPLOAD_STARTED = 303
FIRST_M3U8_UPLOADED = 304
HLS_UPLOAD_FINISHED = 305
EVENT_GROUP_WEB = 8
# 301-312: the recorder's start and stop, and every upload event of COS, MP4 and VOD storage.
# (A web-page recording sends every event of its own, group 8, whenever callbacks are on.)
SUPPORTED_EVENTS: frozenset[int] = frozenset(range(301, 313))
ALL_EVENTS: frozenset[int] = SUPPORTED_EVENTS
DEFAULT_EVENTS: frozenset[int] = frozenset({RECORDER_STARTED, RECORDER_STOPPED})
# How the events reach the receiver: as TRTC sends them (``Sign`` header), or wrapped by a
# TUIKit and authenticated with the Chat webhook token (``key`` is that token then).
ENVELOPES = ("trtc", "tuicallkit", "tuilivekit")


@dataclass(frozen=True, slots=True)
class CallbackSettings:
    """Where callbacks go and how they are signed; the key never shows in a repr."""

    url: str
    key: str = field(repr=False)
    events: frozenset[int] = DEFAULT_EVENTS
    timeout: float = 5.0
    retry_interval: float = 10.0
    retry_for: float = 60.0
    envelope: str = "trtc"

    def __post_init__(self) -> None:
        if self.envelope not in ENVELOPES:
            raise ValueError(f"envelope: one of {', '.join(ENVELOPES)}")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("url: must be an http(s) URL")
        if not self.key:
            raise ValueError("key: must not be empty")
        unknown = sorted(self.events - SUPPORTED_EVENTS)
        if unknown:
            raise ValueError(f"events: unsupported event type {unknown[0]}")
        for name in ("timeout", "retry_interval", "retry_for"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0")


def sign(key: str, body: bytes) -> str:
    """The ``Sign`` header: base64(HMAC-SHA256(key, raw body))."""
    digest = hmac.new(key.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def build_body(
    event_type: int,
    *,
    room_id: str | int,
    user_id: str,
    task_id: str,
    payload: Mapping[str, Any],
    event_wall: float,
    callback_wall: float,
    group: int = EVENT_GROUP_RECORDING,
) -> bytes:
    """The body of one event; group 8 (web-page recordings) carries no room and user."""
    event_ms = int(event_wall * 1000)
    info: dict[str, Any] = {
        "RoomId": room_id,
        "EventTs": event_ms // 1000,
        "EventMsTs": event_ms,
        "UserId": user_id,
        "TaskId": task_id,
        "Payload": dict(payload),
    }
    if group == EVENT_GROUP_WEB:
        info = {"EventMsTs": event_ms, "TaskId": task_id, "Payload": dict(payload)}
    return json.dumps(
        {
            "EventGroupId": group,
            "EventType": event_type,
            "CallbackTs": int(callback_wall * 1000),
            "EventInfo": info,
        }
    ).encode()


@dataclass(slots=True)
class CallbackStats:
    queued: int = 0
    delivered: int = 0
    attempts: int = 0
    failed: int = 0  # gave up after the retry period
    dropped: int = 0  # queue full

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Message:
    sdk_app_id: int
    body: bytes
    born: float  # monotonic, for the retry period


class CallbackSender:
    """Delivers callbacks in order from a bounded queue; retries run beside later messages."""

    def __init__(self, settings: CallbackSettings, queue_size: int = 10_000) -> None:
        self.settings = settings
        self.stats = CallbackStats()
        self._queue: asyncio.Queue[_Message] = asyncio.Queue(queue_size)
        self._session: aiohttp.ClientSession | None = None
        self._worker: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()

    def enqueue(self, sdk_app_id: int, body: bytes) -> None:
        """Queue a callback; never blocks and never raises."""
        try:
            self._queue.put_nowait(_Message(sdk_app_id, body, time.monotonic()))
        except asyncio.QueueFull:
            self.stats.dropped += 1
            return
        self.stats.queued += 1

    async def start(self) -> None:
        if self._worker is not None:
            return
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout)
        )
        self._worker = asyncio.create_task(self._run(), name="sim-callbacks")

    async def stop(self) -> None:
        tasks = [*self._retries, *([self._worker] if self._worker else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._worker = None
        self._retries.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def drain(self) -> None:
        """Wait until every queued message had its first attempt (for tests and shutdown)."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            msg = await self._queue.get()
            try:
                if not await self._attempt(msg):
                    retry = asyncio.create_task(self._retry(msg))
                    self._retries.add(retry)
                    retry.add_done_callback(self._retries.discard)
            finally:
                self._queue.task_done()

    async def _retry(self, msg: _Message) -> None:
        # TRTC retries once at once, then every retry_interval until the message is
        # retry_for old.
        if await self._attempt(msg):
            return
        interval = self.settings.retry_interval
        while time.monotonic() - msg.born + interval <= self.settings.retry_for:
            await asyncio.sleep(interval)
            if await self._attempt(msg):
                return
        self.stats.failed += 1

    async def _attempt(self, msg: _Message) -> bool:
        session = self._session
        if session is None:
            return False
        self.stats.attempts += 1
        url, body, headers = delivery(self.settings, msg.sdk_app_id, msg.body, time.time())
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300
        except Exception:
            # whatever the receiver does (refuses, hangs, answers garbage), the simulator goes on
            ok = False
        if ok:
            self.stats.delivered += 1
        return ok


def delivery(
    settings: CallbackSettings, sdk_app_id: int, body: bytes, now: float
) -> tuple[str, bytes, dict[str, str]]:
    """URL, body and headers of one attempt to deliver ``body`` (an event) at ``now``."""
    if settings.envelope != "trtc":
        wrapped = wrap(settings.envelope, settings.url, settings.key, sdk_app_id, body, now)
        if wrapped is not None:
            return wrapped
    headers = {
        "Content-Type": "application/json",
        "Sign": sign(settings.key, body),
        "SdkAppId": str(sdk_app_id),
    }
    return settings.url, body, headers
