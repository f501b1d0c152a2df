"""What each alert says: its summary and description. Pure: no I/O, no clock.

The texts name the facts a person on call needs (the task, what was seen and when, what to
check) and when the alert resolves. Whether an alert fires is :mod:`monitor.alerts.conditions`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from monitor.alerts.conditions import (
    THROTTLED_WINDOW,
    AccountHealth,
    leave_code,
    observed_at,
    stopped_at,
)
from monitor.credentials.base import CODE_UNAVAILABLE
from monitor.durations import format_duration
from monitor.models import Task, Transition

NOT_FOUND_HINT: Final = "never seen running: check TaskId, SdkAppId and region"

# What the LeaveCode of a 302 "recorder stopped" callback means (reference/TRTC.md).
LEAVE_CODES: Final[dict[int, str]] = {
    0: "stopped through the API",
    1: "bot kicked by the customer",
    2: "room dismissed by the customer",
    3: "bot kicked by the server",
    4: "room dismissed by the server",
    99: "no other users' streams for MaxIdleTime",
    100: "room timeout",
    101: "same user id re-entered the room",
}


def timestamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(seconds: float) -> str:
    return format_duration(max(0.0, round(seconds)))


def _who(task: Task) -> str:
    return (
        f"recording task {task.task_id} of SdkAppId {task.sdk_app_id} in {task.region} "
        f"(account {task.account})"
    )


def describe_leave_code(code: int) -> str:
    meaning = LEAVE_CODES.get(code)
    return f"leave code {code} ({meaning})" if meaning else f"leave code {code} (undocumented)"


def _what_happened(
    task: Task, transition: Transition | None
) -> tuple[str, Transition | None, str | None]:
    """How the task came to its status, the transition that brought it there (None when it is
    not known), and the request id that said so."""
    status = task.status.value
    if transition is not None and transition.to_status is task.status:
        happened = (
            f"went from {transition.from_status.value} to {status} at "
            f"{timestamp(transition.at)} (seen by {transition.source.value})"
        )
        return happened, transition, transition.request_id or task.last_request_id
    return f"is {status} since {timestamp(task.status_since)}", None, task.last_request_id


def exit_annotations(
    task: Task, transition: Transition | None, expected_leave_codes: frozenset[int]
) -> dict[str, str]:
    """What an exit alert says. ``transition`` is the one that brought the task to its
    current status, when known (it is not after a restart that lost nothing but the alert)."""
    status = task.status.value
    facts: list[str] = []
    happened, seen, request_id = _what_happened(task, transition)
    code = seen.detail.get("code") if seen is not None else None
    detail_leave = seen.detail.get("leave_code") if seen is not None else None
    left = leave_code(task)
    if left is None and isinstance(detail_leave, int) and not isinstance(detail_leave, bool):
        left = detail_leave
    if left is not None:
        facts.append(describe_leave_code(left))
    else:
        facts.append("no leave code (no recorder-stopped callback seen)")
    if code:
        facts.append(f"error code {code}")
    if request_id:
        facts.append(f"request id {request_id}")
    expected = ", ".join(str(c) for c in sorted(expected_leave_codes)) or "none"
    meaning = {
        "Exited": "The task is being ended.",
        "Ended": "The task no longer exists.",
        "Expired": (
            "The API no longer sees the task (older than ResourceExpiredHour); the recording "
            "may still be running."
        ),
    }.get(status, "")
    return {
        "summary": (
            f"Recording task {task.task_id} ({task.sdk_app_id}, {task.region}) stopped: {status}"
        ),
        "description": (
            f"The {_who(task)} {happened}; {'; '.join(facts)}. {meaning} "
            f"Not an expected stop (expected leave codes: {expected}; deregister a task before "
            "stopping it to avoid this alert). Resolves when the task is removed or purged."
        ),
    }


def not_found_annotations(task: Task, transition: Transition | None) -> dict[str, str]:
    """What ``RecordingTaskNotFound`` says: the answer that ended the task, and the hint."""
    happened, seen, request_id = _what_happened(task, transition)
    code = seen.detail.get("code") if seen is not None else None
    facts = [f"error code {code}" if code else "", f"request id {request_id}" if request_id else ""]
    said = "; ".join(f for f in facts if f)
    return {
        "summary": (
            f"Recording task {task.task_id} ({task.sdk_app_id}, {task.region}) not found: "
            "never seen running"
        ),
        "description": (
            f"The {_who(task)} {happened}: the API answered that it does not exist"
            f"{f' ({said})' if said else ''}, and it was {NOT_FOUND_HINT}. Resolves when "
            "the task is removed or purged."
        ),
    }


def error_annotations(task: Task, consecutive: int) -> dict[str, str]:
    facts = [f"last error code {task.last_error_code or 'unknown'}"]
    if task.last_request_id:
        facts.append(f"request id {task.last_request_id}")
    if task.last_error_at is not None:
        facts.append(f"at {timestamp(task.last_error_at)}")
    return {
        "summary": (
            f"Recording task {task.task_id} ({task.sdk_app_id}): {task.consecutive_errors} "
            "failed polls in a row"
        ),
        "description": (
            f"The last {task.consecutive_errors} polls of the {_who(task)} failed (alert "
            f"threshold {consecutive}; throttled answers do not count): {', '.join(facts)}. "
            "Its status is not being observed. Resolves when a poll succeeds."
        ),
    }


def stale_annotations(task: Task, now: float, threshold: float) -> dict[str, str]:
    last = task.last_success_at
    age = now - observed_at(task)
    since = (
        f"last successful observation at {timestamp(last)}"
        if last is not None
        else f"never observed since its registration at {timestamp(task.registered_at)}"
    )
    return {
        "summary": (
            f"Recording task {task.task_id} ({task.sdk_app_id}) not observed for {_ago(age)}"
        ),
        "description": (
            f"No successful DescribeCloudRecording of the {_who(task)} for {_ago(age)} "
            f"(stale after {_ago(threshold)}; {since}); its status may have changed unseen. "
            f"Status {task.status.value}, {task.consecutive_errors} failed polls in a row. "
            "Check RecordingMonitorOverBudget, RecordingMonitorThrottled and "
            f"RecordingMonitorAuthFailure for account {task.account}. Resolves when an "
            "observation succeeds."
        ),
    }


def idle_annotations(task: Task, now: float, after: float) -> dict[str, str]:
    idle_for = _ago(now - task.status_since)
    return {
        "summary": f"Recording task {task.task_id} ({task.sdk_app_id}) Idle for {idle_for}",
        "description": (
            f"The {_who(task)} has been Idle since {timestamp(task.status_since)} ({idle_for}, "
            f"more than {_ago(after)}): it records nothing (nobody publishing in the room, or "
            "the recorder failed to join). Resolves when the status leaves Idle."
        ),
    }


def upload_failed_annotations(task: Task) -> dict[str, str]:
    """Names the failing event, the storage's code and its message."""
    upload = task.upload
    failure = upload.failure
    what = failure.describe() if failure is not None else "an upload failure"
    when = f" at {timestamp(failure.at)}" if failure is not None else ""
    later = [f for f in upload.failures if failure is not None and f.at > failure.at]
    more = ""
    if later:
        more = f" Since then: {'; '.join(f.describe() for f in later[-3:])}."
    files = len(upload.files)
    return {
        "summary": (
            f"Recording task {task.task_id} ({task.sdk_app_id}): files failed to reach storage"
            + (f" (event {failure.event_type}, {failure.code})" if failure is not None else "")
        ),
        "description": (
            f"A recording callback of the {_who(task)} reported{when} that its files failed to "
            f"reach storage: {what}.{more} Files reported so far: {files}. Status "
            f"{task.status.value}. Resolves when a later callback reports the files recovered "
            "or uploaded, or the task is removed or purged."
        ),
    }


def upload_overdue_annotations(task: Task, now: float, deadline: float) -> dict[str, str]:
    at = stopped_at(task)
    since = _ago(now - at) if at is not None else "unknown"
    started = task.upload.started_at
    began = f" (upload started at {timestamp(started)})" if started is not None else ""
    return {
        "summary": (
            f"Recording task {task.task_id} ({task.sdk_app_id}): upload not finished {since} "
            "after the recording stopped"
        ),
        "description": (
            f"The {_who(task)} stopped{f' at {timestamp(at)}' if at is not None else ''}; its "
            f"upload had started{began} but no callback said it finished (305, 310, or 312 "
            f"after a successful 311) within {_ago(deadline)}. The files may be stuck on the "
            f"recording server. Status {task.status.value}, {len(task.upload.files)} files "
            "reported. Resolves when the upload finishes, or the task is removed or purged."
        ),
    }


def auth_annotations(account: str, health: AccountHealth) -> dict[str, str]:
    code = f" ({health.auth_code})" if health.auth_code else ""
    if health.auth_code == CODE_UNAVAILABLE:
        # A source is there but failed to hand out credentials (STS, the metadata service, a
        # broken profile file): the polls were not sent, so Tencent rejected nothing.
        return {
            "summary": f"The credentials of account {account} cannot be obtained",
            "description": (
                f"DescribeCloudRecording calls of account {account} are not sent: its "
                f"credential source fails to hand out credentials{code}, and none succeeded "
                "since: no task of this account is being observed. See the daemon's "
                "credentials_refresh_failed log lines or `trtc-monitor credentials -c FILE`. "
                "Resolves when a call with credentials succeeds."
            ),
        }
    return {
        "summary": f"Tencent Cloud rejects the credentials of account {account}",
        "description": (
            f"DescribeCloudRecording calls of account {account} are answered with an "
            f"authentication failure{code} and none succeeded since: no task of this account is "
            "being observed. Check the SecretId/SecretKey (and session token) and the host "
            "clock. Resolves when a call with these credentials succeeds."
        ),
    }


def no_credentials_annotations(account: str, health: AccountHealth) -> dict[str, str]:
    detail = health.no_credentials_detail or "no credentials found"
    return {
        "summary": f"No credentials found for account {account}",
        "description": (
            f"Account {account} has no credentials: {detail}. Nothing was sent to Tencent "
            "Cloud (nothing was rejected) and no task of this account is being observed. "
            "Provide credentials (the account's secret_id/secret_key keys, "
            "TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY, a profile file, TKE workload "
            "identity or a CVM role); `trtc-monitor credentials -c FILE` shows what this machine "
            "finds. Resolves when a call with credentials succeeds."
        ),
    }


def throttled_annotations(account: str, health: AccountHealth) -> dict[str, str]:
    last = health.last_throttled_at
    when = f" (last at {timestamp(last)})" if last is not None else ""
    return {
        "summary": f"Account {account} is being throttled by the TRTC API",
        "description": (
            f"Requests of account {account} were answered with RequestLimitExceeded within the "
            f"last {_ago(THROTTLED_WINDOW)}{when}. The monitor keeps under its own budget, so "
            "another client probably shares the account's quota; the rate limiter has backed "
            f"off. Resolves after {_ago(THROTTLED_WINDOW)} without throttling."
        ),
    }


def over_budget_annotations(account: str, health: AccountHealth) -> dict[str, str]:
    required = health.required_rate or 0.0
    budget = health.budget_rate or 0.0
    return {
        "summary": (
            f"Account {account} needs {required:.1f} req/s, more than its API budget "
            f"({budget:.1f} req/s)"
        ),
        "description": (
            f"The polling intervals of account {account} need {required:.1f} "
            f"DescribeCloudRecording requests per second, more than the {budget:.1f} the rate "
            "limiter may send: every task is observed less often than configured and may go "
            "stale. Raise intervals, move tasks to another account, or ask Tencent Cloud for a "
            "higher quota. Resolves when the required rate fits the budget."
        ),
    }


def credentials_expiring_annotations(
    account: str, health: AccountHealth, now: float, before: float
) -> dict[str, str]:
    expires_at = health.credentials_expires_at or now
    left = expires_at - now
    when = (
        f"expire in {_ago(left)} (at {timestamp(expires_at)})"
        if left > 0
        else f"expired at {timestamp(expires_at)}"
    )
    source = health.credentials_source or "unknown"
    error = f": {health.credentials_error}" if health.credentials_error else ""
    return {
        "summary": f"Credentials of account {account} expire soon and cannot be refreshed",
        "description": (
            f"The temporary credentials of account {account} (source {source}) {when}, within "
            f"the {_ago(before)} warning time, and refreshing them failed{error}. They stay in "
            "use until they expire; after that every poll of the account fails. Check STS, the "
            "metadata service or the TKE web identity token. Resolves when a refresh succeeds."
        ),
    }
