"""The recording events as TUICallKit and TUILiveKit deliver them: authentication and
unwrapping. Pure: no I/O, no clock.

Both arrive from the Chat backend as a POST to the app's webhook URL with the query string
``SdkAppid``, ``CallbackCommand``, ``contenttype=json``, ``ClientIP``, ``OptPlatform``:

* ``Call.CallbackAfterRecordChanged`` (TUICallKit; trtc.io 80345, cloud.tencent.com 131580):
  ``{"CallId", "Callback": {EventGroupId, EventType, CallbackTs, EventInfo, KitType},
  "CallbackCommand", "EventTime"}``: the group-3 event under ``Callback``;
* ``Follow.CallbackAfterCloudRecordingChanged`` (TUILiveKit; trtc.io 78428): the group-3 event's
  fields at the top level, beside ``CallbackCommand``.

Authentication is the Chat webhook's ("Security Considerations" of the Chat webhook overview):
with a webhook authentication token set (``v4/live_config/set_callback_token``), every request
carries ``RequestTime`` (Unix seconds) and ``Sign`` = lowercase hex SHA-256 of
``token + RequestTime`` in its query string. The sign covers the token and the time only, not
the body: the receiver bounds ``RequestTime`` (:func:`request_time`) and remembers bodies it has
seen, exactly as for TRTC's own callbacks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from monitor.callbacks.parse import (
    EVENT_GROUP_RECORDING,
    Callback,
    CallbackInvalid,
    parse_callback,
)

__all__ = [
    "CALL_RECORD_CHANGED",
    "LIVE_RECORDING_CHANGED",
    "TUIKIT_COMMANDS",
    "AuthCheck",
    "chat_sign",
    "check_chat_auth",
    "parse_tuikit",
    "request_time",
]

CALL_RECORD_CHANGED = "Call.CallbackAfterRecordChanged"
LIVE_RECORDING_CHANGED = "Follow.CallbackAfterCloudRecordingChanged"
TUIKIT_COMMANDS = frozenset({CALL_RECORD_CHANGED, LIVE_RECORDING_CHANGED})

# Fields of the envelope around the event, never part of the event itself.
_LIVE_ENVELOPE = ("CallbackCommand",)
_MAX_TIME_TEXT = 12  # digits of a Unix time in seconds, with room to spare


def chat_sign(token: str, request_time: str) -> str:
    """``Sign`` as the Chat backend computes it: hex SHA-256 of token + RequestTime."""
    return hashlib.sha256((token + request_time).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class AuthCheck:
    """The verdict on one request: ``ok``, else ``reason`` says why not (never the token)."""

    ok: bool
    reason: str = ""
    request_time: int | None = None  # seconds, when the request carried a valid one


def request_time(query: Mapping[str, str]) -> int | None:
    """The query's ``RequestTime`` as Unix seconds; None when missing or not a number."""
    raw = query.get("RequestTime")
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > _MAX_TIME_TEXT:
        return None
    return int(raw)


def check_chat_auth(token: str | None, query: Mapping[str, str], body: bytes) -> AuthCheck:
    """Whether the request is signed with ``token`` the Chat way; compared in constant time.

    ``body`` is not covered by the Chat sign (it is accepted for the signature of this check
    only, so that callers pass what they have): a verified request proves its sender knew the
    token at ``RequestTime``, and the caller bounds that time and dedupes the body.
    """
    del body  # not signed by the Chat backend; see the docstring
    if not token:
        return AuthCheck(False, "no webhook authentication token is configured")
    given = query.get("Sign")
    if not given:
        return AuthCheck(False, "the query string has no Sign")
    at = request_time(query)
    if at is None:
        return AuthCheck(False, "the query string has no valid RequestTime")
    expected = chat_sign(token, query["RequestTime"]).encode("ascii")
    if not hmac.compare_digest(given.strip().lower().encode("utf-8", "replace"), expected):
        return AuthCheck(False, "Sign does not match the webhook authentication token")
    return AuthCheck(True, request_time=at)


def _unwrap(command: str, envelope: Mapping[str, Any]) -> dict[str, Any]:
    if command == CALL_RECORD_CHANGED:
        inner = envelope.get("Callback")
        if not isinstance(inner, dict):
            raise CallbackInvalid("Callback: must be an object (the recording event)")
        return {k: v for k, v in inner.items() if k != "KitType"}
    return {k: v for k, v in envelope.items() if k not in _LIVE_ENVELOPE}


def parse_tuikit(query: Mapping[str, str], raw: bytes) -> Callback:
    """An (authenticated) TUIKit delivery -> the same ``Callback`` the group-3 parser makes of
    the event, with the query's ``SdkAppid`` as its application.

    Raises ``CallbackInvalid`` naming what is wrong: an unknown or disagreeing
    ``CallbackCommand``, a missing ``SdkAppid``, an envelope without its event, or anything the
    group-3 parser refuses. The delivery key is the event's own, so the same event delivered
    once by TRTC and once through a TUIKit counts once.
    """
    command = query.get("CallbackCommand", "")
    if command not in TUIKIT_COMMANDS:
        raise CallbackInvalid("CallbackCommand: not a TUIKit recording event")
    sdk_app_id = query.get("SdkAppid")
    if not sdk_app_id:
        raise CallbackInvalid("SdkAppid: missing from the query string")
    try:
        envelope = json.loads(raw)
    except (ValueError, RecursionError):
        raise CallbackInvalid("body is not valid JSON") from None
    if not isinstance(envelope, dict):
        raise CallbackInvalid("body must be a JSON object")
    in_body = envelope.get("CallbackCommand")
    if in_body is not None and in_body != command:
        raise CallbackInvalid("CallbackCommand: the query string and the body disagree")
    event = _unwrap(command, envelope)
    group = event.get("EventGroupId")
    if group != EVENT_GROUP_RECORDING:
        raise CallbackInvalid("EventGroupId: a TUIKit recording event is group 3")
    try:
        inner = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):
        raise CallbackInvalid("body is nested too deeply") from None
    return parse_callback(inner, sdk_app_id)
