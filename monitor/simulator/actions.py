"""The recording API's actions, each answering one checked request from the task table.

CreateCloudRecording, DescribeCloudRecording, ModifyCloudRecording and DeleteCloudRecording;
the web-page recording actions live in :mod:`monitor.simulator.web_record`.
By the time an action runs the server has verified the signature, the rate limit, the region
and that the body is a JSON object; an action checks its own parameters and returns the
``Response`` payload or the :class:`ApiError` to answer with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from monitor.simulator.lifecycle import LEAVE_API, SimTask, TaskSpec
from monitor.simulator.protocol import (
    CREATE,
    DELETE,
    DESCRIBE,
    MODIFY,
    ApiError,
    check_task_ref,
    parse_create,
)
from monitor.simulator.task_table import TaskTable
from monitor.simulator.web_record import WEB_ACTIONS

__all__ = ["ACTIONS", "Action", "ActionSettings", "Payload"]

Payload = dict[str, Any]


class ActionSettings(Protocol):
    """What the actions read of the simulator's settings (changed at run time by tests)."""

    ended_code: str  # answered for a task that has ended or was never there
    hour_length: float  # seconds in one ResourceExpiredHour
    max_tasks_per_app: int | None  # live tasks one SdkAppId may have; None: no limit


Action = Callable[[TaskTable, Payload, float, ActionSettings], "Payload | ApiError"]


def _on_cloud_task(
    act: Callable[[TaskTable, SimTask, Payload, float], Payload | ApiError],
) -> Action:
    """The action ``act`` on the cloud recording task the request names; the ended code when
    there is none (a web recording is not a cloud recording task)."""

    def action(
        table: TaskTable, params: Payload, now: float, settings: ActionSettings
    ) -> Payload | ApiError:
        err = check_task_ref(params)
        if err is not None:
            return err
        task = table.visible(params["SdkAppId"], params["TaskId"], now)
        if task is None or task.kind != "cloud":
            return ApiError.of(settings.ended_code)
        return act(table, task, params, now)

    return action


@_on_cloud_task
def describe(table: TaskTable, task: SimTask, params: Payload, now: float) -> Payload | ApiError:
    key = params.get("RecorderKey")
    if key is not None and not isinstance(key, str):
        return ApiError("InvalidParameter", "RecorderKey must be a string.")
    if key and key != (task.recorder_key or ""):
        # The pages do not say what a wrong key answers; the simulator treats it as a bad
        # parameter (docs/simulator.md).
        return ApiError(
            "InvalidParameter", "RecorderKey does not identify a recording of the task."
        )
    status = task.api_status(now)
    answer: Payload = {
        "TaskId": task.task_id,
        "Status": status.value if status is not None else None,
        "StorageFileList": task.storage_files(now),
    }
    if task.recorder_key is not None:
        answer["RecorderKey"] = task.recorder_key
    return answer


@_on_cloud_task
def delete(table: TaskTable, task: SimTask, params: Payload, now: float) -> Payload | ApiError:
    if task.stop(now, LEAVE_API):
        table.changed(task)
    return {"TaskId": task.task_id}


@_on_cloud_task
def modify(table: TaskTable, task: SimTask, params: Payload, now: float) -> Payload | ApiError:
    task.modifications += 1
    return {"TaskId": task.task_id}


def create(
    table: TaskTable, params: Payload, now: float, settings: ActionSettings
) -> Payload | ApiError:
    req = parse_create(params)
    if isinstance(req, ApiError):
        return req
    limit = settings.max_tasks_per_app
    if limit is not None and table.live_count(req.sdk_app_id, now) >= limit:
        return ApiError.of("FailedOperation.RestrictedConcurrency")
    task_id = table.add_task(
        TaskSpec(
            req.sdk_app_id,
            room_id=req.room_id,
            user_id=req.user_id,
            max_idle_time=req.max_idle_time,
            expire_after=req.resource_expired_hour * settings.hour_length,
            vod=req.vod,
        )
    )
    return {"TaskId": task_id}


ACTIONS: dict[str, Action] = {
    CREATE: create,
    DESCRIBE: describe,
    DELETE: delete,
    MODIFY: modify,
    **WEB_ACTIONS,
}
