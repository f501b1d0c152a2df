"""Web-page recordings in the simulator's API: StartWebRecord, DescribeWebRecord and
StopWebRecord.

A web task lives like a cloud task (:class:`~monitor.simulator.lifecycle.SimTask` with
``kind="web"``): it records from the moment it starts (DescribeWebRecord answers ``Status`` 1,
the only value the API pages list) until it is stopped or its life ends; from then on the API
answers the ended code, as for a cloud task that has gone. Its callbacks are planned by
:mod:`monitor.simulator.web_life`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.simulator.lifecycle import LEAVE_API, TaskSpec
from monitor.simulator.protocol import ApiError, check_sdk_app_id

if TYPE_CHECKING:
    from monitor.simulator.actions import ActionSettings, Payload
    from monitor.simulator.task_table import TaskTable

__all__ = ["WEB_ACTIONS"]

START_WEB = "StartWebRecord"
DESCRIBE_WEB = "DescribeWebRecord"
STOP_WEB = "StopWebRecord"
MAX_RECORD_ID_BYTES = 31  # "less than 32 bytes" (StartWebRecord)


def _record_id(params: Payload) -> str | ApiError | None:
    value = params.get("RecordId")
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value.encode()) > MAX_RECORD_ID_BYTES:
        return ApiError(
            "InvalidParameter.RecordId", "RecordId must be a string of less than 32 bytes."
        )
    return value


def start(
    table: TaskTable, params: Payload, now: float, settings: ActionSettings
) -> Payload | ApiError:
    err = check_sdk_app_id(params)
    if err is not None:
        return err
    url = params.get("RecordUrl")
    if url is None or url == "":
        return ApiError("MissingParameter.RecordUrl", "RecordUrl is required.")
    if not isinstance(url, str):
        return ApiError("InvalidParameter.RecordUrl", "RecordUrl must be a string.")
    limit = params.get("MaxDurationLimit")
    if limit is not None and (
        not isinstance(limit, int) or isinstance(limit, bool) or not 1800 <= limit <= 86400
    ):
        return ApiError("InvalidParameter.OutOfRange", "MaxDurationLimit must be 1800..86400.")
    storage = params.get("StorageParams")
    if storage is not None and not isinstance(storage, dict):
        return ApiError("InvalidParameter", "StorageParams must be an object.")
    record_id = _record_id(params)
    if isinstance(record_id, ApiError):
        return record_id
    sdk_app_id = params["SdkAppId"]
    if record_id is not None and table.web_by_record(sdk_app_id, record_id, now) is not None:
        return ApiError.of("FailedOperation.TaskExist")
    cap = settings.max_tasks_per_app
    if cap is not None and table.live_count(sdk_app_id, now) >= cap:
        return ApiError.of("UnsupportedOperation.TaskLimit")
    task_id = table.add_task(
        TaskSpec(sdk_app_id, room_id="", user_id="", vod=True, kind="web", record_id=record_id)
    )
    return {"TaskId": task_id}


def describe(
    table: TaskTable, params: Payload, now: float, settings: ActionSettings
) -> Payload | ApiError:
    task_id = params.get("TaskId")
    if task_id is not None:
        if not isinstance(task_id, str) or not task_id:
            return ApiError("InvalidParameter.TaskId", "TaskId must be a non-empty string.")
        task = table.web_by_task(task_id, now)
        answer: Payload = {}
        if task is not None and task.record_id is not None:
            answer["RecordId"] = task.record_id
    else:
        record_id = _record_id(params)
        if isinstance(record_id, ApiError):
            return record_id
        if record_id is None:
            return ApiError(
                "MissingParameter", "TaskId, or SdkAppId together with RecordId, is required."
            )
        err = check_sdk_app_id(params)
        if err is not None:
            return err
        task = table.web_by_record(params["SdkAppId"], record_id, now)
        answer = {"TaskId": task.task_id} if task is not None else {}
    if task is None or now >= task.exited_at:
        return ApiError.of(settings.ended_code)
    return {"Status": 1, **answer}


def stop(
    table: TaskTable, params: Payload, now: float, settings: ActionSettings
) -> Payload | ApiError:
    task_id = params.get("TaskId")
    if task_id is None:
        return ApiError("MissingParameter.TaskId", "TaskId is required.")
    if not isinstance(task_id, str) or not task_id:
        return ApiError("InvalidParameter.TaskId", "TaskId must be a non-empty string.")
    task = table.web_by_task(task_id, now)
    if task is None or now >= task.exited_at:
        return ApiError.of(settings.ended_code)
    if task.stop(now, LEAVE_API):
        table.changed(task)
    return {}


WEB_ACTIONS = {START_WEB: start, DESCRIBE_WEB: describe, STOP_WEB: stop}
