"""TRTC recording callbacks (SPEC section 8): a fast path beside polling, never instead of it.

The order of work is fixed by what may be trusted when:

1. the raw body is read with a size limit (TRTC's bodies are a few hundred bytes);
2. its ``Sign`` header is checked against the key over those exact bytes, before any parsing,
   so that nothing an unsigned sender writes is ever interpreted;
3. the body is parsed tolerantly (TRTC sends ``RoomId`` and ``EventTs`` in more than one
   shape) but strictly enough that every field acted upon has a known type;
4. a repeat of a delivery already applied is acknowledged and changes nothing;
5. the event acts on the daemon: 301 registers, 302 records an exit at once (the daemon then
   schedules a confirming poll), 310/311/312 leave facts on the task, the rest are logged.

Everything before step 5 is pure and tested directly; the handler only wires it to the daemon.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from monitor.daemon import Daemon
from monitor.http.api import DAEMON
from monitor.http.errors import ApiError
from monitor.models import Source, TaskKey
from monitor.registry import (
    MAX_LABEL_VALUE,
    MAX_SDK_APP_ID,
    TaskSpec,
    ValidationError,
    validate_sdk_app_id,
    validate_task_id,
)

log = structlog.get_logger("monitor.callbacks")

MAX_BODY_BYTES = 64 * 1024
EVENT_GROUP_RECORDING = 3

RECORDER_STARTED = 301
RECORDER_STOPPED = 302
MP4_FINISHED = 310
VOD_COMMITTED = 311
VOD_FINISHED = 312

# Names for the log; the metric label is the number, so its cardinality stays at 12 + 2.
EVENT_NAMES: Mapping[int, str] = {
    301: "recorder_started",
    302: "recorder_stopped",
    303: "upload_started",
    304: "first_m3u8_uploaded",
    305: "hls_upload_finished",
    306: "task_migrated",
    307: "first_slice",
    308: "upload_error",
    309: "image_download_error",
    310: "mp4_finished",
    311: "vod_committed",
    312: "vod_finished",
}
_WARNING_EVENTS = frozenset({308, 309})

# TRTC stops retrying once a message is a minute old; five minutes leaves room for a sender
# that is late or whose clock is off, at a bounded cost (about 150 bytes per entry).
DEDUPE_TTL_SECONDS = 300.0
DEDUPE_MAX_ENTRIES = 50_000
# Lists of files kept on one task: enough for any real recording, bounded against floods.
MAX_FILES = 100
MAX_TEXT = 1024
UNAUTHORIZED_LOG_EVERY = 60.0

_INT64_MAX = 2**63 - 1
_MAX_EVENT_TS = 1e11  # seconds: year 5138, far past any real clock, short of overflow
_INT_TEXT = re.compile(r"\s*[+-]?\d{1,19}\s*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class CallbackOutcome(enum.StrEnum):
    """The ``outcome`` label of ``trtc_monitor_callbacks_total``."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    UNAUTHORIZED = "unauthorized"
    INVALID = "invalid"
    IGNORED = "ignored"
    UNKNOWN = "unknown"


def event_label(event_type: int | None) -> str:
    """The ``event_type`` label: the number for known recording events, else a fixed word."""
    if event_type is None:
        return "none"
    return str(event_type) if event_type in EVENT_NAMES else "other"


# ------------------------------------------------------------------------------ signature


def sign_body(key: str, body: bytes) -> str:
    """``Sign`` as TRTC computes it: standard base64 (padded) of HMAC-SHA256(key, body)."""
    digest = hmac.new(key.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(key: str | None, body: bytes, given: str | None) -> bool:
    """Whether ``given`` signs ``body`` with ``key``; False without a key or a header."""
    if not key or given is None:
        return False
    # "replace" keeps a hostile non-ASCII header from raising; a real signature is pure ASCII.
    return hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), sign_body(key, body).encode("ascii")
    )


# ------------------------------------------------------------------------------ parsing


class CallbackInvalid(ValueError):
    """A signed body that is not a recording callback we can read; becomes a 400."""

    def __init__(self, message: str, event_type: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.label = event_label(event_type)


class Kind(enum.Enum):
    IGNORED = "ignored"  # another event group: not ours to read
    UNKNOWN = "unknown"  # event group 3, but a type this monitor does not know
    RECORDING = "recording"


@dataclass(frozen=True, slots=True)
class Callback:
    """One parsed callback. For ``RECORDING`` the identity fields are always set."""

    kind: Kind
    group: int
    event_type: int
    # Identity of the delivery for duplicate suppression; empty for ignored groups.
    delivery: bytes = b""
    sdk_app_id: int = 0
    task_id: str = ""
    room_id: str | None = None
    user_id: str | None = None
    event_ts: int | float | None = None  # seconds
    event_ms_ts: int | None = None
    status: int | None = None  # Payload.Status (301, 310, 311, 312)
    leave_code: int | None = None  # Payload.LeaveCode (302)
    file_name: str | None = None  # Payload.FileName (307)
    files: tuple[dict[str, Any], ...] = ()  # Payload.FileMessage (310)
    vod: dict[str, Any] | None = None  # Payload.TencentVod (311)

    @property
    def key(self) -> TaskKey:
        return TaskKey(self.sdk_app_id, self.task_id)

    @property
    def name(self) -> str:
        return EVENT_NAMES.get(self.event_type, "unknown")

    @property
    def label(self) -> str:
        return event_label(self.event_type)


def clean_text(value: str, limit: int = MAX_TEXT) -> str:
    """Text safe to store, log and expose: valid UTF-8, no control characters, bounded."""
    text = value.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("?", text)[:limit]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _int(value: object, where: str, *, lo: int = -_INT64_MAX, hi: int = _INT64_MAX) -> int:
    """An integer, also when sent as a decimal string or an integral float."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: must be an integer")
    if value is None:
        raise ValueError(f"{where}: is required")
    if isinstance(value, int):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and _INT_TEXT.fullmatch(value)
    ):
        number = int(value)
    else:
        raise ValueError(f"{where}: must be an integer")
    if not lo <= number <= hi:
        raise ValueError(f"{where}: is out of range")
    return number


def _opt_int(data: Mapping[str, Any], name: str, where: str, **bounds: int) -> int | None:
    value = data.get(name)
    return None if value is None else _int(value, f"{where}.{name}", **bounds)


def _seconds(value: object, where: str) -> int | float:
    """``EventTs``: seconds, seen both as a number and as a quoted number."""
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and len(value) <= 32:
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or not 0 <= number <= _MAX_EVENT_TS:
        raise ValueError(f"{where}: must be a Unix time in seconds")
    return int(number) if float(number).is_integer() else float(number)


def _opt_text(
    data: Mapping[str, Any], name: str, where: str, *, numbers: bool = False
) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        kind = "a string or a number" if numbers else "a string"
        raise ValueError(f"{where}.{name}: must be {kind}")
    return clean_text(value)


def _object(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where}: must be an object")
    return value


def _file(entry: object, where: str) -> dict[str, Any]:
    """One MP4 file of a 310, reduced to the fields worth showing."""
    data = _object(entry, where)
    out: dict[str, Any] = {}
    for name in ("FileName", "UserId", "TrackType", "MediaId"):
        text = _opt_text(data, name, where)
        if text is not None:
            out[name] = text
    for name in ("StartTimeStamp", "EndTimeStamp"):
        number = _opt_int(data, name, where, lo=0)
        if number is not None:
            out[name] = number
    return out


def _vod(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The VOD commit of a 311: ``TencentVod`` {FileId, VideoUrl, ...}."""
    vod = _object(data.get("TencentVod"), f"{where}.TencentVod")
    out: dict[str, Any] = {}
    for name in ("FileId", "VideoUrl", "UserId", "TrackType", "MediaId"):
        text = _opt_text(vod, name, f"{where}.TencentVod", numbers=name == "FileId")
        if text is not None:
            out[name] = text
    return out


def _sdk_app_id(header: str | None, body: object) -> int:
    """From the ``SdkAppId`` header and/or the body; both, when present, must agree."""
    found: list[int] = []
    for where, value in (("SdkAppId header", header), ("SdkAppId", body)):
        if value is None:
            continue
        try:
            found.append(validate_sdk_app_id(_int(value, where, lo=1, hi=MAX_SDK_APP_ID)))
        except (ValueError, ValidationError):
            raise ValueError(f"{where}: must be a positive integer") from None
    if not found:
        raise ValueError("SdkAppId: missing (send the SdkAppId header)")
    if len(set(found)) > 1:
        raise ValueError("SdkAppId: the header and the body disagree")
    return found[0]


def delivery_key(sdk_app_id: int, body: Mapping[str, Any]) -> bytes:
    """What makes two deliveries the same message.

    The canonical content without ``CallbackTs``: a retry may be sent at another time (and
    re-serialised) yet is the same event, while two different events always differ somewhere
    in ``EventInfo`` (time, task, payload). Keyed by the app too, since the header is not signed.
    """
    content = {k: v for k, v in body.items() if k != "CallbackTs"}
    canonical = json.dumps(
        [sdk_app_id, content], sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return hashlib.sha256(canonical.encode("ascii")).digest()


def parse_callback(raw: bytes, sdk_app_id_header: str | None = None) -> Callback:
    """Read a (verified) body; raise ``CallbackInvalid`` with a message naming the field."""
    event_type: int | None = None
    try:
        try:
            body = json.loads(raw, parse_constant=_reject_constant)
        except RecursionError:
            raise ValueError("body is nested too deeply") from None
        except ValueError:
            raise ValueError("body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        group = _int(body.get("EventGroupId"), "EventGroupId")
        event_type = _int(body.get("EventType"), "EventType")
        if group != EVENT_GROUP_RECORDING:
            return Callback(Kind.IGNORED, group, event_type)
        sdk_app_id = _sdk_app_id(sdk_app_id_header, body.get("SdkAppId"))
        try:
            delivery = delivery_key(sdk_app_id, body)
        except RecursionError:
            raise ValueError("body is nested too deeply") from None
        if event_type not in EVENT_NAMES:
            return Callback(Kind.UNKNOWN, group, event_type, delivery, sdk_app_id)
        return _recording(body, event_type, sdk_app_id, delivery)
    except ValueError as exc:
        raise CallbackInvalid(str(exc), event_type) from None


def _recording(
    body: Mapping[str, Any], event_type: int, sdk_app_id: int, delivery: bytes
) -> Callback:
    info = _object(body.get("EventInfo"), "EventInfo")
    try:
        task_id = validate_task_id(info.get("TaskId"))
    except ValidationError:
        raise ValueError(
            "EventInfo.TaskId: must be 1 to 256 characters of letters, digits and ._~+=:-"
        ) from None
    raw_ts = info.get("EventTs")
    event_ts = None if raw_ts is None else _seconds(raw_ts, "EventInfo.EventTs")
    payload = _object(info.get("Payload"), "EventInfo.Payload")
    where = "EventInfo.Payload"
    status = _opt_int(payload, "Status", where)
    leave_code = None
    file_name = None
    files: tuple[dict[str, Any], ...] = ()
    vod = None
    if event_type == RECORDER_STOPPED:
        leave_code = _opt_int(payload, "LeaveCode", where)
    elif event_type == 307:
        file_name = _opt_text(payload, "FileName", where)
    elif event_type == MP4_FINISHED:
        entries = payload.get("FileMessage")
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise ValueError(f"{where}.FileMessage: must be a list of objects")
        files = tuple(
            _file(entry, f"{where}.FileMessage[{i}]") for i, entry in enumerate(entries[:MAX_FILES])
        )
    elif event_type == VOD_COMMITTED:
        vod = _vod(payload, where)
    return Callback(
        kind=Kind.RECORDING,
        group=EVENT_GROUP_RECORDING,
        event_type=event_type,
        delivery=delivery,
        sdk_app_id=sdk_app_id,
        task_id=task_id,
        room_id=_opt_text(info, "RoomId", "EventInfo", numbers=True),
        user_id=_opt_text(info, "UserId", "EventInfo", numbers=True),
        event_ts=event_ts,
        event_ms_ts=_opt_int(info, "EventMsTs", "EventInfo", lo=0),
        status=status,
        leave_code=leave_code,
        file_name=file_name,
        files=files,
        vod=vod,
    )


# ------------------------------------------------------------------------------ effects (pure)


def task_labels(event: Callback) -> dict[str, str]:
    """Labels of a task registered from a callback: its room and its recording user."""
    labels: dict[str, str] = {}
    for name, value in (("room", event.room_id), ("user", event.user_id)):
        if value:
            labels[name] = value[:MAX_LABEL_VALUE]
    return labels


def exit_detail(event: Callback) -> dict[str, Any]:
    """The detail of the Exited transition a 302 records (the tracker adds ``leave_code``)."""
    detail: dict[str, Any] = {"leave_code": event.leave_code}
    if event.event_ts is not None:
        detail["event_ts"] = event.event_ts
    elif event.event_ms_ts is not None:
        detail["event_ts"] = event.event_ms_ts // 1000
    return {k: v for k, v in detail.items() if v is not None}


def _merge(old: object, new: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """``old`` with ``new`` entries added or replaced by ``key``; bounded, oldest dropped."""
    merged: dict[Any, dict[str, Any]] = {}
    if isinstance(old, list):
        for entry in old:
            if isinstance(entry, dict) and isinstance(entry.get(key), str | None):
                merged[entry.get(key)] = entry
    for entry in new:
        merged.pop(entry.get(key), None)  # re-inserted last: the newest are kept
        merged[entry.get(key)] = entry
    return list(merged.values())[-MAX_FILES:]


def task_facts(event: Callback, extra: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a 310/311/312 adds to the task's ``extra`` (merged with what is already there)."""
    if event.event_type == MP4_FINISHED:
        facts: dict[str, Any] = {
            "mp4_files": _merge(extra.get("mp4_files"), list(event.files), "FileName")
        }
        if event.status is not None:
            facts["mp4_status"] = event.status
        return facts
    if event.event_type == VOD_COMMITTED:
        vod = event.vod or {}
        facts = {}
        if "FileId" in vod:
            facts["vod_file_id"] = vod["FileId"]
        if "VideoUrl" in vod:
            facts["vod_video_url"] = vod["VideoUrl"]
        if vod:
            facts["vod_files"] = _merge(extra.get("vod_files"), [vod], "FileId")
        if event.status is not None:
            facts["vod_commit_status"] = event.status
        return facts or None
    if event.event_type == VOD_FINISHED:
        facts = {"vod_finished": True}
        if event.status is not None:
            facts["vod_status"] = event.status
        return facts
    return None


class DeliveryCache:
    """Deliveries seen recently: bounded in number and in age, oldest forgotten first.

    A delivery is claimed before it acts and released if acting fails, so that a retry sent
    while the first attempt is still working is not applied twice, and one after a failure is.
    """

    def __init__(
        self,
        ttl: float = DEDUPE_TTL_SECONDS,
        max_entries: int = DEDUPE_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def claim(self, key: bytes) -> bool:
        """True the first time ``key`` is seen within ``ttl``; it is remembered from now on."""
        now = self._clock()
        # Insertion order is time order (monotonic clock), so expiry pops from the front.
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at < self.ttl:
                break
            del self._seen[oldest]
        if key in self._seen:
            return False
        self._seen[key] = now
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
        return True

    def release(self, key: bytes) -> None:
        self._seen.pop(key, None)


# ------------------------------------------------------------------------------ the endpoint


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


@dataclass(slots=True)
class CallbackReceiver:
    """State of the endpoint: the delivery cache and the once-only warnings."""

    deliveries: DeliveryCache = field(default_factory=DeliveryCache)
    max_body: int = MAX_BODY_BYTES
    warned_no_key: bool = False
    last_unauthorized_log: float = -math.inf
    unauthorized_since_log: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        daemon = request.app[DAEMON]
        try:
            raw = await read_limited(request, self.max_body)
        except TooLarge:
            _count(daemon, "none", CallbackOutcome.INVALID)
            raise ApiError(413, f"callback body is larger than {self.max_body} bytes") from None

        key = daemon.callback_key
        if not key:
            self._refuse_without_key(daemon)
            raise ApiError(401, "callbacks are refused: the monitor has no callback key")
        if not verify_signature(key, raw, request.headers.get("Sign")):
            self._refuse("missing Sign header" if "Sign" not in request.headers else "wrong Sign")
            _count(daemon, "none", CallbackOutcome.UNAUTHORIZED)
            raise ApiError(401, "missing or wrong Sign header")

        try:
            event = parse_callback(raw, request.headers.get("SdkAppId"))
        except CallbackInvalid as exc:
            _count(daemon, exc.label, CallbackOutcome.INVALID)
            log.info("recording_callback_invalid", error=exc.message, event_type=exc.label)
            raise ApiError(400, exc.message) from None

        if event.kind is Kind.IGNORED:
            _count(daemon, event.label, CallbackOutcome.IGNORED)
            log.debug("recording_callback_ignored", group=event.group, event_type=event.label)
            return _ok()
        if not self.deliveries.claim(event.delivery):
            _count(daemon, event.label, CallbackOutcome.DUPLICATE)
            log.debug(
                "recording_callback_duplicate",
                event_type=event.label,
                sdk_app_id=event.sdk_app_id,
                task_id=event.task_id or None,
            )
            return _ok()
        if event.kind is Kind.UNKNOWN:
            _count(daemon, event.label, CallbackOutcome.UNKNOWN)
            log.info(
                "recording_callback_unknown",
                event_type=event.event_type,
                sdk_app_id=event.sdk_app_id,
            )
            return _ok()
        try:
            effect = await apply_callback(daemon, event)
        except BaseException:
            self.deliveries.release(event.delivery)  # let TRTC's retry apply it
            raise
        _count(daemon, event.label, CallbackOutcome.ACCEPTED)
        _log_event(event, effect)
        return _ok()

    def _refuse_without_key(self, daemon: Daemon) -> None:
        _count(daemon, "none", CallbackOutcome.UNAUTHORIZED)
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


async def apply_callback(daemon: Daemon, event: Callback) -> str:
    """Act on one verified, new recording event; returns what happened, for the log."""
    settings = daemon.config.callbacks
    key = event.key
    if event.event_type == RECORDER_STARTED:
        if event.status not in (None, 0):
            return "start_failed"
        if daemon.get(key) is not None:
            # Known, including removed: a user's removal outranks a late or repeated 301.
            return "already_registered"
        if not settings.auto_register:
            return "not_registered"
        await _register(daemon, event)
        return "registered"
    if event.event_type == RECORDER_STOPPED:
        registered = False
        if daemon.get(key) is None and settings.auto_register:
            # The 301 was missed (monitor down, lost delivery): register now so the exit is
            # recorded and alerted on rather than dropped. Known tasks, removed ones included,
            # are never re-registered here.
            await _register(daemon, event)
            registered = True
        if daemon.get(key) is None:
            return "not_registered"
        transition = await daemon.callback_exit(key, event.leave_code, exit_detail(event))
        if transition is None:
            return "exit_already_known"
        return "registered_and_exit_recorded" if registered else "exit_recorded"
    task = daemon.get(key)
    facts = task_facts(event, task.extra if task is not None else {})
    if facts is None:
        return "logged"
    if not await daemon.note_task_facts(key, facts):
        return "not_registered"
    return "facts_noted"


async def _register(daemon: Daemon, event: Callback) -> None:
    settings = daemon.config.callbacks
    spec = TaskSpec(
        sdk_app_id=event.sdk_app_id,
        task_id=event.task_id,
        region=settings.region,
        account=settings.account,
        labels=task_labels(event),
    )
    await daemon.register(spec, source=Source.CALLBACK)


def _count(daemon: Daemon, label: str, outcome: CallbackOutcome) -> None:
    daemon.metrics.callbacks.labels(label, outcome.value).inc()


def _ok() -> web.Response:
    return web.json_response({"status": "ok"})


def _log_event(event: Callback, effect: str) -> None:
    fields: dict[str, Any] = {
        "event_type": event.event_type,
        "callback": event.name,
        "effect": effect,
        "sdk_app_id": event.sdk_app_id,
        "task_id": event.task_id,
        "room_id": event.room_id,
        "user_id": event.user_id,
        "event_ts": event.event_ts,
        "status": event.status,
        "leave_code": event.leave_code,
        "file_name": event.file_name,
        "files": len(event.files) if event.event_type == MP4_FINISHED else None,
        "vod_file_id": (event.vod or {}).get("FileId"),
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    failed = effect == "start_failed" or event.event_type in _WARNING_EVENTS
    if failed:
        log.warning("recording_callback", **fields)
    else:
        log.info("recording_callback", **fields)


RECEIVER: web.AppKey[CallbackReceiver] = web.AppKey("callback_receiver", CallbackReceiver)


def add_routes(app: web.Application, path: str) -> None:
    """Mount the callback endpoint at ``path``."""
    receiver = CallbackReceiver()
    app[RECEIVER] = receiver
    app.router.add_post(path, receiver.handle)
