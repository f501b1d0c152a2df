"""DescribeWebRecord: the status of a web-page recording task, read into the monitor's model.

The answer is ``{"Status": <int>, "TaskId"?, "RecordId"?, "RequestId"}``; the API pages list
one value, ``1``: recording (trtc.io 72067; cloud.tencent.com 647/104542). How it maps onto the
monitor's statuses (``docs/trtc-api.md``, "DescribeWebRecord"):

* ``1`` -> ``InProgress``;
* an ended code (by default ``FailedOperation.TaskNotExist`` and the others of
  ``polling.ended_codes``) -> ``Ended``, as for cloud recordings;
* any other integer -> ``Exited``: the service says the page is no longer being recorded, in a
  value its pages do not name, so the monitor treats it as the recorder having left and lets the
  next poll confirm the end;
* no integer ``Status`` -> a malformed answer (transient).

A web recording has no ``Idle``: it is recording from the moment StartWebRecord answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from monitor.models import Outcome, Status
from monitor.trtc.client import CODE_MALFORMED, CallResult, CredentialsLike, Endpoint, TrtcClient

__all__ = [
    "DESCRIBE_WEB_RECORD",
    "WEB_STATUS_RECORDING",
    "describe_web_record",
    "describe_web_result",
    "web_answer",
    "web_params",
    "web_status",
]

DESCRIBE_WEB_RECORD = "DescribeWebRecord"
WEB_STATUS_RECORDING = 1


def web_status(response: Mapping[str, Any] | None) -> Status | None:
    """The monitor's status for a DescribeWebRecord answer; None when it has no valid one."""
    raw = response.get("Status") if response is not None else None
    if not isinstance(raw, int) or isinstance(raw, bool):
        return None
    return Status.IN_PROGRESS if raw == WEB_STATUS_RECORDING else Status.EXITED


def describe_web_result(result: CallResult) -> CallResult:
    """A DescribeWebRecord success must carry an integer Status; otherwise it is malformed."""
    if result.ok and web_status(result.response) is None:
        return replace(
            result,
            outcome=Outcome.TRANSIENT,
            code=CODE_MALFORMED,
            message="DescribeWebRecord answer has no valid Status",
        )
    return result


def web_answer(result: CallResult) -> CallResult:
    """A classified DescribeWebRecord result as the monitor keeps an answer: its ``Status``
    read into the monitor's (1 -> ``InProgress``, another integer -> ``Exited``), the web
    answer's own value kept as ``WebStatus``. Anything but a success is handed on as it is."""
    status = web_status(result.response) if result.ok else None
    if status is None or result.response is None:
        return result
    response = {**result.response, "Status": status.value, "WebStatus": result.response["Status"]}
    return replace(result, response=response)


def web_params(
    *, task_id: str | None = None, sdk_app_id: int | None = None, record_id: str | None = None
) -> dict[str, Any]:
    """The request body: by ``TaskId``, or by ``SdkAppId`` + ``RecordId`` (ValueError else)."""
    if task_id:
        if record_id:
            raise ValueError("ask by TaskId or by SdkAppId + RecordId, not both")
        return {"TaskId": task_id}
    if record_id and sdk_app_id:
        return {"SdkAppId": sdk_app_id, "RecordId": record_id}
    raise ValueError("DescribeWebRecord needs a TaskId, or an SdkAppId and a RecordId")


async def describe_web_record(
    client: TrtcClient,
    *,
    endpoint: Endpoint,
    credentials: CredentialsLike,
    region: str,
    task_id: str | None = None,
    sdk_app_id: int | None = None,
    record_id: str | None = None,
    language: str = "en-US",
) -> CallResult:
    """One DescribeWebRecord attempt, classified; ``web_status(result.response)`` reads it."""
    params = web_params(task_id=task_id, sdk_app_id=sdk_app_id, record_id=record_id)
    result = await client.call(
        endpoint=endpoint,
        credentials=credentials,
        action=DESCRIBE_WEB_RECORD,
        region=region,
        params=params,
        language=language,
    )
    return describe_web_result(result)
