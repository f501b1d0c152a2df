"""Web-page recordings in the simulator: StartWebRecord, DescribeWebRecord, StopWebRecord and
the event-group-8 callbacks of their lives.

A web task lives like a cloud task (:class:`~monitor.simulator.lifecycle.SimTask` with
``kind="web"``): it records from the moment it starts (DescribeWebRecord answers ``Status`` 1,
the only value the API pages list) until it is stopped or its life ends; from then on the API
answers the ended code, as for a cloud task that has gone. Its callbacks (trtc.io 54914):

* 801 ``Status`` 1 "Success" when it starts (``Status`` 2 when its upload plan is
  ``start_failed``: the recorder never started, nothing else follows);
* 802 ``Status`` 1 when stopped through StopWebRecord; 804 ``Status`` 1 (maximum duration
  reached) when its life ends by itself;
* 311 and 312 (the VOD commit and the end of the upload) when its upload ends, failing as the
  upload plan says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from monitor.simulator.lifecycle import INF, LEAVE_API, PlannedEvent
from monitor.simulator.protocol import ApiError, check_sdk_app_id
from monitor.simulator.upload_plan import UploadFault

if TYPE_CHECKING:
    from monitor.simulator.actions import ActionSettings, Payload
    from monitor.simulator.lifecycle import SimTask
    from monitor.simulator.task_table import TaskTable

__all__ = ["WEB_ACTIONS", "web_timeline"]

START_WEB = "StartWebRecord"
DESCRIBE_WEB = "DescribeWebRecord"
STOP_WEB = "StopWebRecord"
GROUP_WEB = 8
MAX_RECORD_ID_BYTES = 31  # "less than 32 bytes" (StartWebRecord)


def web_timeline(task: SimTask) -> list[PlannedEvent]:
    """Every group-8 callback of a web task as now planned, in time order (INF: not yet)."""
    fault = task.upload.fault
    if fault is UploadFault.START_FAILED:
        failed = {"Status": 2, "EventMessage": "StartRecording error"}
        return [PlannedEvent("801", 801, task.created, failed, GROUP_WEB)]
    out = [PlannedEvent("801", 801, task.created, {"Status": 1, "EventMessage": "Success"}, 8)]
    if task.leave_code == LEAVE_API:
        stop = PlannedEvent("802", 802, task.exited_at, {"Status": 1, "EventMessage": "Success"}, 8)
    else:
        limit = {"Status": 1, "EventMessage": "Over time limit"}
        stop = PlannedEvent("804", 804, task.exited_at, limit, GROUP_WEB)
    out.append(stop)
    end = task.gone_at
    if end < INF and task.upload.finish:
        if fault is UploadFault.NONE:
            commit: dict[str, Any] = {"Status": 0, **task._vod()}
            finished = 0
        else:
            commit = {"Status": 2, "Errmsg": task.upload.error_message, "TencentVod": {}}
            finished = 1
        out.append(PlannedEvent("311", 311, end, commit, GROUP_WEB))
        out.append(PlannedEvent("312", 312, end, {"Status": finished}, GROUP_WEB))
    return sorted(out, key=lambda e: e.at)


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
        sdk_app_id, room_id="", user_id="", vod=True, kind="web", record_id=record_id
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
