"""Reading a verified web-page recording callback (event group 8). Pure.

Same envelope and ``Sign`` as group 3 (trtc.io 54914, cloud.tencent.com 647/81113):
``{"EventGroupId": 8, "EventType", "CallbackTs", "EventInfo": {"EventMsTs", "TaskId",
"Payload": {"Status", "EventMessage"}}}``, the application in the ``SdkAppId`` header. The
events, and what each means for the task (:func:`web_effect`):

* 801 recorder start: ``Status`` 1 started; 2 failed to start; 3 exited abnormally and 4 task
  migrated (intermediate: TRTC recovers by itself); 5 task exception, recording stopped;
* 802 recorder stop: ``Status`` 1, the task ended normally;
* 803 status update: 1 page refreshed, 2 paused, 3 resumed (informational);
* 804 resource limit: the task ended because it reached its maximum duration (1) or a video
  exceeded the maximum resolution (2);
* 311 / 312 (the VOD commit and the end of the upload, as for cloud recordings), which the page
  names as what follows an 802; read with the same fields as in group 3.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any

from monitor.callbacks.parse import (
    EVENT_GROUP_WEB,
    VOD_COMMITTED,
    VOD_FINISHED,
    Callback,
    CallbackInvalid,
    Kind,
    _int,
    _object,
    _opt_int,
    _opt_text,
    _sender,
    _task_id,
    _upload,
    _vod,
    parse_callback,
)
from monitor.uploads import UploadEvent

__all__ = ["WEB_EVENT_NAMES", "WebEffect", "parse_any_callback", "parse_web_body", "web_effect"]

WEB_STARTED = 801
WEB_STOPPED = 802
WEB_STATUS_UPDATE = 803
WEB_RESOURCE_LIMIT = 804

WEB_EVENT_NAMES: Mapping[int, str] = {
    801: "web_recorder_started",
    802: "web_recorder_stopped",
    803: "web_status_update",
    804: "web_resource_limit",
    311: "vod_committed",
    312: "vod_finished",
}


class WebEffect(enum.StrEnum):
    """What a group-8 event means for its task."""

    STARTED = "started"  # 801 Status 1
    START_FAILED = "start_failed"  # 801 Status 2
    INTERMEDIATE = "intermediate"  # 801 Status 3 or 4, 803: nothing to do
    STOPPED = "stopped"  # 802, 801 Status 5, 804: the recording ended (an exit)
    UPLOAD = "upload"  # 311, 312
    UNKNOWN = "unknown"  # a type or status the pages do not list


def web_effect(callback: Callback) -> WebEffect:
    event, status = callback.event_type, callback.status
    if event == WEB_STARTED:
        return {
            1: WebEffect.STARTED,
            2: WebEffect.START_FAILED,
            3: WebEffect.INTERMEDIATE,
            4: WebEffect.INTERMEDIATE,
            5: WebEffect.STOPPED,
        }.get(status if status is not None else -1, WebEffect.UNKNOWN)
    if event in (WEB_STOPPED, WEB_RESOURCE_LIMIT):
        return WebEffect.STOPPED
    if event == WEB_STATUS_UPDATE:
        return WebEffect.INTERMEDIATE
    if event in (VOD_COMMITTED, VOD_FINISHED):
        return WebEffect.UPLOAD
    return WebEffect.UNKNOWN


def parse_web_body(
    body: Mapping[str, Any],
    event_type: int,
    sdk_app_id_header: str | None,
    callback_ts: int | None,
) -> Callback:
    """A group-8 body (already a JSON object) -> a ``Kind.WEB`` callback; ValueError naming
    the field otherwise (:func:`parse_any_callback` turns it into ``CallbackInvalid``)."""
    sdk_app_id, delivery = _sender(sdk_app_id_header, body)
    if event_type not in WEB_EVENT_NAMES:
        return Callback(
            Kind.UNKNOWN, EVENT_GROUP_WEB, event_type, delivery, sdk_app_id, callback_ts=callback_ts
        )
    info = _object(body.get("EventInfo"), "EventInfo")
    task_id = _task_id(info)
    where = "EventInfo.Payload"
    payload = _object(info.get("Payload"), where)
    status = _opt_int(payload, "Status", where)
    ms = _opt_int(info, "EventMsTs", "EventInfo", lo=0)
    at = ms / 1000 if ms is not None else None
    vod = _vod(payload, where) if event_type == VOD_COMMITTED else None
    upload: UploadEvent | None = None
    if event_type in (VOD_COMMITTED, VOD_FINISHED):
        upload = _upload(event_type, payload, where, status, (), vod, at)
    elif event_type == WEB_STARTED and status == 2:
        upload = UploadEvent(301, 1, message=_opt_text(payload, "EventMessage", where) or "", at=at)
    event_ts = None if ms is None else _int(ms // 1000, "EventInfo.EventMsTs", lo=0)
    return Callback(
        kind=Kind.WEB,
        group=EVENT_GROUP_WEB,
        event_type=event_type,
        delivery=delivery,
        sdk_app_id=sdk_app_id,
        task_id=task_id,
        event_ts=event_ts,
        event_ms_ts=ms,
        status=status,
        vod=vod,
        callback_ts=callback_ts,
        upload=upload,
        event_message=_opt_text(payload, "EventMessage", where),
    )


def parse_any_callback(raw: bytes, sdk_app_id_header: str | None = None) -> Callback:
    """Read a (verified) body of either group: group 8 into a ``Kind.WEB`` event, anything
    else as :func:`~monitor.callbacks.parse.parse_callback` reads it (which it also refuses)."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict) or body.get("EventGroupId") not in (EVENT_GROUP_WEB, "8"):
        return parse_callback(raw, sdk_app_id_header)
    event_type: int | None = None
    try:
        event_type = _int(body.get("EventType"), "EventType")
        callback_ts = _opt_int(body, "CallbackTs", "body", lo=0)
        return parse_web_body(body, event_type, sdk_app_id_header, callback_ts)
    except ValueError as exc:
        raise CallbackInvalid(str(exc), event_type) from None
