"""The recording events as TUICallKit and TUILiveKit deliver them, for the simulator's sender.

Group-3 events only (web-page recordings are not a TUIKit's): the query string carries
``SdkAppid``, ``CallbackCommand``, ``contenttype=json``, ``ClientIP``, ``OptPlatform`` and the
Chat webhook authentication (``RequestTime``, ``Sign`` = hex SHA-256 of token + RequestTime);
TUICallKit puts the event under ``Callback`` (adding ``KitType``) beside ``CallId`` and
``EventTime``, TUILiveKit puts its fields at the top level beside ``CallbackCommand``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from urllib.parse import urlencode

__all__ = ["CALL_COMMAND", "LIVE_COMMAND", "wrap"]

CALL_COMMAND = "Call.CallbackAfterRecordChanged"
LIVE_COMMAND = "Follow.CallbackAfterCloudRecordingChanged"
_KIT_TYPE_CALL = 2  # the value in the page's example


def wrap(
    envelope: str, url: str, token: str, sdk_app_id: int, body: bytes, now: float
) -> tuple[str, bytes, dict[str, str]] | None:
    """URL, body and headers of a TUIKit delivery of ``body``; None for an event that is not
    a group-3 recording event (it goes as TRTC sends it)."""
    event = json.loads(body)
    if event.get("EventGroupId") != 3:
        return None
    if envelope == "tuicallkit":
        command = CALL_COMMAND
        wrapped = {
            "CallId": str(uuid.uuid5(uuid.NAMESPACE_URL, event["EventInfo"]["TaskId"])),
            "Callback": {**event, "KitType": _KIT_TYPE_CALL},
            "CallbackCommand": command,
            "EventTime": int(now * 1000),
        }
    else:
        command = LIVE_COMMAND
        wrapped = {"CallbackCommand": command, **event}
    request_time = str(int(now))
    query = urlencode(
        {
            "SdkAppid": sdk_app_id,
            "CallbackCommand": command,
            "contenttype": "json",
            "ClientIP": "127.0.0.1",
            "OptPlatform": "RESTAPI",
            "RequestTime": request_time,
            "Sign": hashlib.sha256((token + request_time).encode("utf-8")).hexdigest(),
        }
    )
    separator = "&" if "?" in url else "?"
    headers = {"Content-Type": "application/json"}
    return f"{url}{separator}{query}", json.dumps(wrapped).encode(), headers
