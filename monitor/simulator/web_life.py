"""The event-group-8 callbacks of a simulated web-page recording's life (trtc.io 54914):

* 801 ``Status`` 1 "Success" when it starts (``Status`` 2 when its upload plan is
  ``start_failed``: the recorder never started, nothing else follows);
* 802 ``Status`` 1 when stopped through StopWebRecord; 804 ``Status`` 1 (maximum duration
  reached) when its life ends by itself;
* 311 and 312 (the VOD commit and the end of the upload) when its upload ends, failing as the
  upload plan says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from monitor.simulator.lives import INF, LEAVE_API, PlannedEvent
from monitor.simulator.upload_plan import UploadFault

if TYPE_CHECKING:
    from monitor.simulator.lifecycle import SimTask

__all__ = ["GROUP_WEB", "web_timeline"]

GROUP_WEB = 8


def web_timeline(task: SimTask) -> list[PlannedEvent]:
    """Every group-8 callback of a web task as now planned, in time order (INF: not yet)."""
    fault = task.upload.fault
    if fault is UploadFault.START_FAILED:
        failed = {"Status": 2, "EventMessage": "StartRecording error"}
        return [PlannedEvent("801", 801, task.created, failed, GROUP_WEB)]
    out = [
        PlannedEvent("801", 801, task.created, {"Status": 1, "EventMessage": "Success"}, GROUP_WEB)
    ]
    if task.leave_code == LEAVE_API:
        stop = PlannedEvent(
            "802", 802, task.exited_at, {"Status": 1, "EventMessage": "Success"}, GROUP_WEB
        )
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
