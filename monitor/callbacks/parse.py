"""Reading a verified TRTC recording callback (event group 3).

Tolerant where TRTC itself varies (``RoomId`` and ``EventTs`` come as numbers or as quoted
numbers), strict everywhere a field is acted upon: every value that reaches the task table, the
log or the API has a known type and a bounded, printable form. Pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from monitor.models import TaskKey
from monitor.taskspec import (
    MAX_SDK_APP_ID,
    ValidationError,
    validate_sdk_app_id,
    validate_task_id,
)
from monitor.uploads import FileKind, UploadEvent, UploadFile

EVENT_GROUP_RECORDING = 3
EVENT_GROUP_WEB = 8

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

# Lists of files kept on one task: enough for any real recording, bounded against floods.
MAX_FILES = 100
MAX_TEXT = 1024

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
    STALE = "stale"
    MISMATCH = "mismatch"  # a body seen before, now under another SdkAppId header
    UNREGISTERED = "unregistered"  # an upload event of a task not registered (auto_register off)
    # A web-page recording event of an unknown task that auto-registration would put in a
    # region the callbacks' account's site does not serve web-page recording in.
    REFUSED = "refused"


# The web-page recording events of group 8 (monitor/callbacks/web.py reads them); 311 and 312
# are shared with group 3.
WEB_EVENT_TYPES: frozenset[int] = frozenset({801, 802, 803, 804})


def event_label(event_type: int | None) -> str:
    """The ``event_type`` label: the number for known recording events, else a fixed word."""
    if event_type is None:
        return "none"
    return str(event_type) if event_type in EVENT_NAMES else "other"


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
    WEB = "web"  # event group 8, a web-page recording (parsed only when asked for)


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
    callback_ts: int | None = None  # CallbackTs, milliseconds: when TRTC sent this message
    upload: UploadEvent | None = None  # what the event says about the upload (301-312)
    event_message: str | None = None  # Payload.EventMessage (group 8)

    @property
    def key(self) -> TaskKey:
        return TaskKey(self.sdk_app_id, self.task_id)

    @property
    def name(self) -> str:
        return EVENT_NAMES.get(self.event_type, "unknown")

    @property
    def label(self) -> str:
        if self.kind is Kind.WEB and self.event_type in WEB_EVENT_TYPES:
            return str(self.event_type)
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


def _sender(sdk_app_id_header: str | None, body: Mapping[str, Any]) -> tuple[int, bytes]:
    """The application a body comes from, and the key of its delivery."""
    sdk_app_id = _sdk_app_id(sdk_app_id_header, body.get("SdkAppId"))
    try:
        return sdk_app_id, delivery_key(sdk_app_id, body)
    except RecursionError:
        raise ValueError("body is nested too deeply") from None


def _task_id(info: Mapping[str, Any]) -> str:
    """``EventInfo.TaskId``, checked as a registration checks it."""
    try:
        return validate_task_id(info.get("TaskId"))
    except ValidationError:
        raise ValueError(
            "EventInfo.TaskId: must be 1 to 256 characters of letters, digits and ._~+=:-"
        ) from None


def parse_callback(raw: bytes, sdk_app_id_header: str | None = None) -> Callback:
    """Read a (verified) body; raise ``CallbackInvalid`` with a message naming the field.

    Event group 8 (web-page recordings) is ignored here like any other group;
    :func:`monitor.callbacks.web.parse_any_callback` reads it too.
    """
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
        callback_ts = _opt_int(body, "CallbackTs", "body", lo=0)
        if group != EVENT_GROUP_RECORDING:
            return Callback(Kind.IGNORED, group, event_type, callback_ts=callback_ts)
        sdk_app_id, delivery = _sender(sdk_app_id_header, body)
        if event_type not in EVENT_NAMES:
            return Callback(
                Kind.UNKNOWN, group, event_type, delivery, sdk_app_id, callback_ts=callback_ts
            )
        return _recording(body, event_type, sdk_app_id, delivery, callback_ts)
    except ValueError as exc:
        raise CallbackInvalid(str(exc), event_type) from None


def _recording(
    body: Mapping[str, Any],
    event_type: int,
    sdk_app_id: int,
    delivery: bytes,
    callback_ts: int | None,
) -> Callback:
    info = _object(body.get("EventInfo"), "EventInfo")
    task_id = _task_id(info)
    raw_ts = info.get("EventTs")
    event_ts = None if raw_ts is None else _seconds(raw_ts, "EventInfo.EventTs")
    payload = _object(info.get("Payload"), "EventInfo.Payload")
    where = "EventInfo.Payload"
    status = _opt_int(payload, "Status", where)
    if status is None and event_type == 305:
        # The page's table names 305's field LeaveCode, its example body Status: either.
        status = _opt_int(payload, "LeaveCode", where)
    leave_code = None
    file_name = None
    files: tuple[dict[str, Any], ...] = ()
    vod = None
    if event_type == RECORDER_STOPPED:
        leave_code = _opt_int(payload, "LeaveCode", where)
    elif event_type == 307:
        file_name = _opt_text(payload, "FileName", where)
    elif event_type == MP4_FINISHED:
        # The callback page names the list FileList; older payloads called it FileMessage.
        entries = payload.get("FileList")
        if entries is None:
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
    ms = _opt_int(info, "EventMsTs", "EventInfo", lo=0)
    at = ms / 1000 if ms is not None else (None if event_ts is None else float(event_ts))
    upload = _upload(event_type, payload, where, status, files, vod, at)
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
        event_ms_ts=ms,
        status=status,
        leave_code=leave_code,
        file_name=file_name,
        files=files,
        vod=vod,
        callback_ts=callback_ts,
        upload=upload,
    )


# UploadFile's fields and the keys that carry them in a 310's files and a 311's TencentVod
# (as _file and _vod keep them: checked, and absent when not sent).
_MP4_FILE: Mapping[str, str] = {
    "name": "FileName",
    "user_id": "UserId",
    "track_type": "TrackType",
    "media_id": "MediaId",
    "begin_ms": "StartTimeStamp",
    "end_ms": "EndTimeStamp",
}
_VOD_FILE: Mapping[str, str] = {
    "user_id": "UserId",
    "track_type": "TrackType",
    "file_id": "FileId",
    "url": "VideoUrl",
    "media_id": "MediaId",
}


def _upload_file(kind: FileKind, data: Mapping[str, Any], fields: Mapping[str, str]) -> UploadFile:
    """An UploadFile of ``kind`` read from ``data`` by ``fields``; what is not sent keeps the
    default that stands for "not sent"."""
    return UploadFile(kind, **{field: data[key] for field, key in fields.items() if key in data})


def _upload(
    event_type: int,
    payload: Mapping[str, Any],
    where: str,
    status: int | None,
    mp4: tuple[dict[str, Any], ...],
    vod: dict[str, Any] | None,
    at: float | None,
) -> UploadEvent:
    """The upload fields of an event, from which a task's upload state is built: the storage's
    code and message, and the files it reports (307 a COS slice, 310 MP4 files, 311 the VOD
    media)."""
    code = message = ""
    files: list[UploadFile] = []
    if event_type == 307:
        files.append(
            UploadFile(
                FileKind.COS,
                name=_opt_text(payload, "FileName", where) or "",
                user_id=_opt_text(payload, "UserId", where, numbers=True) or "",
                track_type=_opt_text(payload, "TrackType", where) or "",
                begin_ms=_opt_int(payload, "BeginTimeStamp", where, lo=0) or 0,
            )
        )
    elif event_type == 308:
        code = _opt_text(payload, "Code", where, numbers=True) or ""
        message = _opt_text(payload, "Message", where) or ""
    elif event_type == 309:
        # The image's address without its query, which may carry a signature.
        message = (_opt_text(payload, "Url", where) or "").split("?", 1)[0]
    elif event_type == MP4_FINISHED:
        files.extend(_upload_file(FileKind.MP4, f, _MP4_FILE) for f in mp4)
    elif event_type == VOD_COMMITTED:
        message = _opt_text(payload, "Errmsg", where) or ""
        if vod and (vod.get("FileId") or vod.get("VideoUrl")):
            files.append(_upload_file(FileKind.VOD, vod, _VOD_FILE))
    return UploadEvent(event_type, status, code, message, tuple(files), at)
