"""What the monitor's own alerts (about an account) say, and the pieces every alert text is
made of. Pure: no I/O, no clock.

The texts name the facts a person on call needs (the task, what was seen and when, what to
check) and when the alert resolves. Whether an alert fires is :mod:`monitor.alerts.conditions`;
what each task alert says stands beside its rule in :mod:`monitor.alerts.task_rules`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from monitor.alerts.conditions import THROTTLED_WINDOW, AccountHealth
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


def ago(seconds: float) -> str:
    return format_duration(max(0.0, round(seconds)))


def who(task: Task) -> str:
    return (
        f"recording task {task.task_id} of SdkAppId {task.sdk_app_id} in {task.region} "
        f"(account {task.account})"
    )


def describe_leave_code(code: int) -> str:
    meaning = LEAVE_CODES.get(code)
    return f"leave code {code} ({meaning})" if meaning else f"leave code {code} (undocumented)"


def what_happened(
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
            f"last {ago(THROTTLED_WINDOW)}{when}. The monitor keeps under its own budget, so "
            "another client probably shares the account's quota; the rate limiter has backed "
            f"off. Resolves after {ago(THROTTLED_WINDOW)} without throttling."
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
        f"expire in {ago(left)} (at {timestamp(expires_at)})"
        if left > 0
        else f"expired at {timestamp(expires_at)}"
    )
    source = health.credentials_source or "unknown"
    error = f": {health.credentials_error}" if health.credentials_error else ""
    return {
        "summary": f"Credentials of account {account} expire soon and cannot be refreshed",
        "description": (
            f"The temporary credentials of account {account} (source {source}) {when}, within "
            f"the {ago(before)} warning time, and refreshing them failed{error}. They stay in "
            "use until they expire; after that every poll of the account fails. Check STS, the "
            "metadata service or the TKE web identity token. Resolves when a refresh succeeds."
        ),
    }
