"""Alert conditions and what each alert says (SPEC section 7). Pure: no I/O, no clock.

Alerts are level-based: whether an alert should be firing is a function of the current state
(a task, or what was last seen of an account) and the time. The engine compares that with what
it remembers having fired, which makes a restart idempotent.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from monitor.config import AlertsConfig, StaleAfter
from monitor.credentials.base import CODE_NO_CREDENTIALS, CODE_UNAVAILABLE
from monitor.durations import format_duration
from monitor.models import Outcome, Source, Status, Task, TaskKey, Transition
from monitor.taskspec import LABEL_NAME_RE
from monitor.uploads import NO_UPLOAD, UploadPhase, upload_overdue

TASK_EXITED: Final = "RecordingTaskExited"
TASK_NOT_FOUND: Final = "RecordingTaskNotFound"
TASK_ERROR: Final = "RecordingTaskError"
TASK_STALE: Final = "RecordingTaskStale"
TASK_IDLE: Final = "RecordingTaskIdle"
UPLOAD_FAILED: Final = "RecordingUploadFailed"
UPLOAD_OVERDUE: Final = "RecordingUploadOverdue"
MONITOR_AUTH_FAILURE: Final = "RecordingMonitorAuthFailure"
MONITOR_NO_CREDENTIALS: Final = "RecordingMonitorNoCredentials"
MONITOR_THROTTLED: Final = "RecordingMonitorThrottled"
MONITOR_OVER_BUDGET: Final = "RecordingMonitorOverBudget"
MONITOR_CREDENTIALS_EXPIRING: Final = "RecordingMonitorCredentialsExpiring"

TASK_ALERTS: Final = (
    TASK_EXITED,
    TASK_NOT_FOUND,
    TASK_ERROR,
    TASK_STALE,
    TASK_IDLE,
    UPLOAD_FAILED,
    UPLOAD_OVERDUE,
)
MONITOR_ALERTS: Final = (
    MONITOR_AUTH_FAILURE,
    MONITOR_NO_CREDENTIALS,
    MONITOR_THROTTLED,
    MONITOR_OVER_BUDGET,
    MONITOR_CREDENTIALS_EXPIRING,
)
ALERT_NAMES: Final = TASK_ALERTS + MONITOR_ALERTS

# The configuration has no section for most of the monitor's own alerts: rejected credentials
# blind the monitor to every task of the account, the other two only degrade it. Expiring
# credentials have alerts.credentials (this is its default).
MONITOR_SEVERITY: Final[dict[str, str]] = {
    MONITOR_AUTH_FAILURE: "critical",
    # Blind to every task of the account, as rejected credentials are.
    MONITOR_NO_CREDENTIALS: "critical",
    MONITOR_THROTTLED: "warning",
    MONITOR_OVER_BUDGET: "warning",
    MONITOR_CREDENTIALS_EXPIRING: "warning",
}
THROTTLED_WINDOW: Final = 300.0
# A task the API says does not exist, never seen running: most likely a mistyped TaskId,
# SdkAppId or region rather than a recording that stopped. Not a page.
NOT_FOUND_SEVERITY: Final = "warning"
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

# Bits of ``task_alerts``. STALE_NEW is STALE counted from the engine's start at the earliest:
# an alert already firing stays while STALE holds, a new one needs STALE_NEW, so a restart
# neither resolves standing stale alerts nor blames the tasks for the monitor's own downtime.
EXITED: Final = 1
ERROR: Final = 2
STALE: Final = 4
IDLE: Final = 8
STALE_NEW: Final = 16
FAILED_UPLOAD: Final = 32
OVERDUE_UPLOAD: Final = 64
NOT_FOUND: Final = 128
TASK_BITS: Final = (
    (EXITED, TASK_EXITED),
    (NOT_FOUND, TASK_NOT_FOUND),
    (ERROR, TASK_ERROR),
    (STALE, TASK_STALE),
    (IDLE, TASK_IDLE),
    (FAILED_UPLOAD, UPLOAD_FAILED),
    (OVERDUE_UPLOAD, UPLOAD_OVERDUE),
)

_EXITED = Status.EXITED
_ENDED = Status.ENDED
_EXPIRED = Status.EXPIRED
_REMOVED = Status.REMOVED
_IDLE = Status.IDLE
_UPLOADING = UploadPhase.UPLOADING
_UPLOAD_FAILED = UploadPhase.FAILED
_DEFAULT_STALE_AFTER: Final = StaleAfter(multiple=3.0)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The task alert settings in the shape the hot loop reads them."""

    exit_enabled: bool = True
    expected_leave_codes: frozenset[int] = frozenset({0, 1, 2})
    error_enabled: bool = True
    consecutive: int = 3
    stale_enabled: bool = True
    stale_after: StaleAfter = _DEFAULT_STALE_AFTER
    idle_enabled: bool = True
    idle_after: float = 300.0
    upload_enabled: bool = True
    upload_deadline: float = 1800.0

    @classmethod
    def of(cls, config: AlertsConfig) -> Thresholds:
        return cls(
            exit_enabled=config.exit.enabled,
            expected_leave_codes=frozenset(config.exit.expected_leave_codes),
            error_enabled=config.error.enabled,
            consecutive=config.error.consecutive,
            stale_enabled=config.stale.enabled,
            stale_after=config.stale.after,
            idle_enabled=config.idle.enabled,
            idle_after=config.idle.after,
            upload_enabled=config.upload.enabled,
            upload_deadline=config.upload.deadline,
        )


# --- task conditions ---------------------------------------------------------------------------


def leave_code(task: Task) -> int | None:
    """The 302 callback's LeaveCode the daemon kept in ``extra``, if any."""
    value = task.extra.get("leave_code")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def exit_firing(task: Task, expected_leave_codes: frozenset[int]) -> bool:
    """Stopped (Exited, Ended, Expired) without a leave code that says it was meant to.

    Deregistering first makes a task Removed, which never fires.
    """
    s = task.status
    if s is not _EXITED and s is not _ENDED and s is not _EXPIRED:
        return False
    if not task.extra:  # the common case: no callback told us anything
        return True
    code = leave_code(task)
    return code is None or code not in expected_leave_codes


def never_seen_running(task: Task) -> bool:
    """Nothing ever said the task existed: no status answer (``answer_status`` is kept from
    every answer that carried one), no callback (none registered it, no leave code or file
    facts, no upload facts)."""
    return (
        task.answer_status is None
        and task.source is not Source.CALLBACK
        and not task.extra
        and (task.upload is NO_UPLOAD or task.upload == NO_UPLOAD)
    )


def not_found_firing(task: Task) -> bool:
    """Ended on its first answer: the API says the task does not exist, and it was never seen
    running. Takes the place of the exit alert (``exit_firing`` holds for such a task too)."""
    return task.status is _ENDED and never_seen_running(task)


def error_firing(task: Task, consecutive: int) -> bool:
    """``consecutive`` failed polls in a row; the tracker never counts throttled answers."""
    s = task.status
    if s is _ENDED or s is _EXPIRED or s is _REMOVED:
        return False
    return task.consecutive_errors >= consecutive


def observed_at(task: Task) -> float:
    """The last successful observation, or the registration for a task never observed."""
    last = task.last_success_at
    return task.registered_at if last is None else last


def stale_firing(task: Task, now: float, threshold: float, floor: float = 0.0) -> bool:
    """No successful observation for longer than ``threshold`` seconds (not counting before
    ``floor``); tasks no longer polled never go stale."""
    s = task.status
    if s is _ENDED or s is _EXPIRED or s is _REMOVED:
        return False
    return now - max(observed_at(task), floor) > threshold


def idle_firing(task: Task, now: float, after: float) -> bool:
    return task.status is _IDLE and now - task.status_since > after


def upload_failed_firing(task: Task) -> bool:
    """A callback said the files failed to reach storage, and nothing since said they did.
    A removed task no longer alerts (a purged one has no record left)."""
    return task.upload.state is _UPLOAD_FAILED and task.status is not _REMOVED


def stopped_at(task: Task) -> float | None:
    """When the recording stopped: the recorder-stopped callback, else the poll that first
    found the task stopped (Exited, Ended or Expired: when that status began)."""
    at = task.upload.stopped_at
    if at is not None:
        return at
    s = task.status
    if s is _EXITED or s is _ENDED or s is _EXPIRED:
        return task.status_since
    return None


def upload_overdue_firing(task: Task, now: float, deadline: float) -> bool:
    """Stopped, the upload had started, and neither a finish nor a failure came within
    ``deadline`` seconds of the stop."""
    if task.status is _REMOVED:
        return False
    return upload_overdue(task.upload, now, deadline, stopped_at(task))


def stale_threshold(task: Task, after: StaleAfter, interval_of: Callable[[Task], float]) -> float:
    if after.duration is not None:
        return after.duration
    return after.seconds(interval_of(task))


def task_alerts(
    task: Task,
    now: float,
    th: Thresholds,
    interval_of: Callable[[Task], float],
    floor: float = 0.0,
    mono: float | None = None,
    mono_floor: float = -math.inf,
) -> int:
    """Which task alerts hold for ``task``, as bits (EXITED, ERROR, STALE, IDLE, STALE_NEW,
    FAILED_UPLOAD, OVERDUE_UPLOAD).

    ``now`` and ``floor`` are wall-clock times. With ``mono`` (now on the monotonic clock) and
    ``mono_floor`` (``floor`` on it), staleness, idleness and the upload deadline are measured
    on the monotonic clock from the task's monotonic stamps (``Task.polled_mono``,
    ``since_mono``, ``stopped_mono``), so a step of the wall clock neither fakes nor delays
    them; a record without them falls back to its wall-clock stamps.

    Called for every task on every sweep, so it is written out rather than composed from the
    functions above (the same rules; the tests hold them together): one call, no allocation.
    """
    s = task.status
    if s is _REMOVED:
        return 0
    bits = 0
    upload = task.upload.state
    if upload is _UPLOAD_FAILED and th.upload_enabled:
        bits = FAILED_UPLOAD
    elif upload is _UPLOADING and th.upload_enabled:
        at = task.upload.stopped_at
        stopped = task.stopped_mono
        if at is None and (s is _EXITED or s is _ENDED or s is _EXPIRED):
            at, stopped = task.status_since, task.since_mono
        if at is not None:
            if mono is None or stopped is None:
                if now - at > th.upload_deadline:
                    bits = OVERDUE_UPLOAD
            elif mono - stopped > th.upload_deadline:
                bits = OVERDUE_UPLOAD
    if s is _ENDED or s is _EXPIRED:
        if th.exit_enabled and exit_firing(task, th.expected_leave_codes):
            bits |= NOT_FOUND if s is _ENDED and never_seen_running(task) else EXITED
        return bits
    if s is _EXITED and th.exit_enabled and exit_firing(task, th.expected_leave_codes):
        bits |= EXITED
    if th.error_enabled and task.consecutive_errors >= th.consecutive:
        bits |= ERROR
    if th.stale_enabled:
        last = task.polled_mono
        if mono is not None and last is not None:
            at, start = mono, mono_floor
        else:
            at, start = now, floor
            last = task.last_success_at
            if last is None:
                last = task.registered_at
        after = th.stale_after
        threshold = after.duration
        if threshold is None:
            threshold = after.seconds(interval_of(task))
        if at - last > threshold:
            bits |= STALE
            if at - (last if last > start else start) > threshold:
                bits |= STALE_NEW
    if s is _IDLE and th.idle_enabled:
        since = task.since_mono
        if (
            now - task.status_since > th.idle_after
            if mono is None or since is None
            else mono - since > th.idle_after
        ):
            bits |= IDLE
    return bits


# --- account conditions ------------------------------------------------------------------------


@dataclass(slots=True)
class AccountHealth:
    """What was last seen of one account's API calls. None means "nothing seen yet": the
    engine then keeps whatever it remembered from before a restart."""

    auth_failing: bool | None = None
    auth_code: str | None = None
    # No credential source of the account was present: nothing could be sent.
    no_credentials: bool | None = None
    no_credentials_detail: str | None = None  # the sources tried, and why each was absent
    last_throttled_at: float | None = None
    required_rate: float | None = None
    budget_rate: float | None = None
    # The credential provider's state after its last refresh attempt.
    credentials_failing: bool | None = None
    credentials_expires_at: float | None = None
    credentials_source: str | None = None
    credentials_error: str | None = None


def observe_outcome(
    health: AccountHealth,
    outcome: Outcome,
    now: float,
    code: str | None = None,
    message: str | None = None,
) -> None:
    """Fold one API attempt's outcome into the account's health. An ``auth`` attempt with
    code ``Credentials.NotFound`` found no credentials at all (``message`` names the sources
    tried): that is not a rejection, and it is told apart."""
    if outcome is Outcome.AUTH:
        if code == CODE_NO_CREDENTIALS:
            health.no_credentials = True
            health.no_credentials_detail = message or health.no_credentials_detail
            # Nothing is being sent, so nothing is being rejected any more.
            health.auth_failing = False
        else:
            health.auth_failing = True
            health.auth_code = code or health.auth_code
            health.no_credentials = False
    elif outcome is Outcome.OK or outcome is Outcome.ENDED:
        # Both prove the signature was accepted.
        health.auth_failing = False
        health.no_credentials = False
    elif outcome is Outcome.THROTTLED:
        last = health.last_throttled_at
        health.last_throttled_at = now if last is None else max(last, now)


def auth_firing(health: AccountHealth) -> bool | None:
    return health.auth_failing


def no_credentials_firing(health: AccountHealth) -> bool | None:
    return health.no_credentials


def throttled_firing(health: AccountHealth, now: float) -> bool | None:
    last = health.last_throttled_at
    return None if last is None else now - last < THROTTLED_WINDOW


def observe_credentials(
    health: AccountHealth,
    *,
    failing: bool,
    expires_at: float | None,
    source: str,
    error: str | None = None,
) -> None:
    """Fold one credentials refresh attempt into the account's health."""
    health.credentials_failing = failing
    health.credentials_expires_at = expires_at
    health.credentials_source = source
    health.credentials_error = error if failing else None


def credentials_expiring_firing(health: AccountHealth, now: float, before: float) -> bool | None:
    """Temporary credentials expire within ``before`` (or have expired) and the last attempt
    to refresh them failed. Permanent credentials never expire."""
    failing = health.credentials_failing
    if failing is None:
        return None
    expires_at = health.credentials_expires_at
    return failing and expires_at is not None and expires_at - now <= before


def over_budget_firing(health: AccountHealth) -> bool | None:
    if health.required_rate is None or health.budget_rate is None:
        return None
    return health.required_rate > health.budget_rate


# --- identity and content ----------------------------------------------------------------------


def fingerprint(alertname: str, *identity: str) -> str:
    """16 hex digits, like Alertmanager's. Built from the alert's identity only, not from all
    labels, so an alert keeps its identity when its severity or description changes."""
    text = "\x1f".join((alertname, *identity))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def task_fingerprint(alertname: str, key: TaskKey) -> str:
    return fingerprint(alertname, str(key.sdk_app_id), key.task_id)


def account_fingerprint(alertname: str, account: str) -> str:
    return fingerprint(alertname, account)


def task_labels(alertname: str, severity: str, task: Task) -> dict[str, str]:
    """The task's user labels, then the monitor's own (which always win)."""
    labels = {
        k: v
        for k, v in task.labels.items()
        # Prometheus semantics: an empty value is no label; "__" names are reserved there.
        if v and LABEL_NAME_RE.fullmatch(k) and not k.startswith("__")
    }
    labels.update(
        alertname=alertname,
        severity=severity,
        account=task.account,
        region=task.region,
        sdk_app_id=str(task.sdk_app_id),
        task_id=task.task_id,
    )
    return labels


def account_labels(alertname: str, account: str, severity: str | None = None) -> dict[str, str]:
    return {
        "alertname": alertname,
        "severity": severity or MONITOR_SEVERITY[alertname],
        "account": account,
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


def exit_annotations(
    task: Task, transition: Transition | None, expected_leave_codes: frozenset[int]
) -> dict[str, str]:
    """What an exit alert says. ``transition`` is the one that brought the task to its
    current status, when known (it is not after a restart that lost nothing but the alert)."""
    status = task.status.value
    facts: list[str] = []
    if transition is not None and transition.to_status is task.status:
        happened = (
            f"went from {transition.from_status.value} to {status} at "
            f"{timestamp(transition.at)} (seen by {transition.source.value})"
        )
        code = transition.detail.get("code")
        request_id = transition.request_id or task.last_request_id
        detail_leave = transition.detail.get("leave_code")
    else:
        happened = f"is {status} since {timestamp(task.status_since)}"
        code = None
        request_id = task.last_request_id
        detail_leave = None
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
    status = task.status.value
    if transition is not None and transition.to_status is task.status:
        happened = (
            f"went from {transition.from_status.value} to {status} at "
            f"{timestamp(transition.at)} (seen by {transition.source.value})"
        )
        code = transition.detail.get("code")
        request_id = transition.request_id or task.last_request_id
    else:
        happened = f"is {status} since {timestamp(task.status_since)}"
        code = None
        request_id = task.last_request_id
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
    """Names the failing event, the storage's code and its message (SPEC section 7)."""
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
