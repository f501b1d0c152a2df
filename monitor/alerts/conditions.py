"""Alert conditions: whether each alert should be firing. Pure: no I/O, no clock.

Alerts are level-based: whether an alert should be firing is a function of the current state
(a task, or what was last seen of an account) and the time. The engine compares that with what
it remembers having fired, which makes a restart idempotent. What an alert says lives in
:mod:`monitor.alerts.texts`; its identity and labels in :mod:`monitor.alerts.rules`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from monitor.credentials.base import CODE_NO_CREDENTIALS
from monitor.models import Outcome, Source, Status, Task
from monitor.uploads import NO_UPLOAD, UploadPhase, upload_overdue

THROTTLED_WINDOW: Final = 300.0


class TaskKind(enum.Flag):
    """Which task alerts hold for one task. Each kind but ``STALE_NEW`` is one rule of
    :data:`monitor.alerts.task_rules.TASK_RULES` (its name, severity and texts). ``STALE_NEW``
    is no alert of its own: it qualifies ``STALE`` as counted from the engine's start at the
    earliest. An alert already firing stays while ``STALE`` holds, a new one needs
    ``STALE_NEW``, so a restart neither resolves standing stale alerts nor blames the tasks for
    the monitor's own downtime."""

    EXITED = 1
    ERROR = 2
    STALE = 4
    IDLE = 8
    STALE_NEW = 16
    FAILED_UPLOAD = 32
    OVERDUE_UPLOAD = 64
    NOT_FOUND = 128


NO_TASK_ALERT: Final = TaskKind(0)

# The kinds, as the public names the tests and callers use.
EXITED: Final = TaskKind.EXITED
ERROR: Final = TaskKind.ERROR
STALE: Final = TaskKind.STALE
IDLE: Final = TaskKind.IDLE
STALE_NEW: Final = TaskKind.STALE_NEW
FAILED_UPLOAD: Final = TaskKind.FAILED_UPLOAD
OVERDUE_UPLOAD: Final = TaskKind.OVERDUE_UPLOAD
NOT_FOUND: Final = TaskKind.NOT_FOUND

# ``task_alerts`` runs for every task on every sweep: it works on the plain values and answers
# a member looked up by value (combining flags costs an enum construction each time).
_B_EXITED: Final = EXITED.value
_B_ERROR: Final = ERROR.value
_B_STALE: Final = STALE.value
_B_IDLE: Final = IDLE.value
_B_STALE_NEW: Final = STALE_NEW.value
_B_FAILED_UPLOAD: Final = FAILED_UPLOAD.value
_B_OVERDUE_UPLOAD: Final = OVERDUE_UPLOAD.value
_B_NOT_FOUND: Final = NOT_FOUND.value
# Every combination of the flags, by value.
_KINDS: Final[tuple[TaskKind, ...]] = tuple(TaskKind(v) for v in range(1 << len(TaskKind)))

_EXITED = Status.EXITED
_ENDED = Status.ENDED
_EXPIRED = Status.EXPIRED
_REMOVED = Status.REMOVED
_IDLE = Status.IDLE
_UPLOADING = UploadPhase.UPLOADING
_UPLOAD_FAILED = UploadPhase.FAILED


@dataclass(frozen=True, slots=True)
class StaleRule:
    """When a task is stale: a multiple of its polling interval, or a fixed duration."""

    multiple: float | None = 3.0
    duration: float | None = None

    def seconds(self, interval: float) -> float:
        if self.duration is not None:
            return self.duration
        assert self.multiple is not None
        return self.multiple * interval

    @classmethod
    def of(cls, after: Any) -> StaleRule:
        """From the configuration's ``alerts.stale.after`` (its multiple or its duration)."""
        return cls(multiple=after.multiple, duration=after.duration)


def _from(key: str, convert: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """A setting's metadata: read from the configuration's ``alerts.<key>``, converted by
    ``convert``."""
    return {"config": key, "convert": convert}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The alert settings the rules read, in the shape the hot loop reads them. Each names the
    key of the configuration's ``alerts`` section it comes from, and
    ``monitor.alerts.settings.thresholds_of`` reads them from there by that name: the rules
    never read the configuration themselves."""

    exit_enabled: bool = field(default=True, metadata=_from("exit.enabled"))
    expected_leave_codes: frozenset[int] = field(
        default=frozenset({0, 1, 2}), metadata=_from("exit.expected_leave_codes", frozenset)
    )
    error_enabled: bool = field(default=True, metadata=_from("error.enabled"))
    consecutive: int = field(default=3, metadata=_from("error.consecutive"))
    stale_enabled: bool = field(default=True, metadata=_from("stale.enabled"))
    stale_after: StaleRule = field(default=StaleRule(), metadata=_from("stale.after", StaleRule.of))
    idle_enabled: bool = field(default=True, metadata=_from("idle.enabled"))
    idle_after: float = field(default=300.0, metadata=_from("idle.after"))
    upload_enabled: bool = field(default=True, metadata=_from("upload.enabled"))
    upload_deadline: float = field(default=1800.0, metadata=_from("upload.deadline"))
    credentials_enabled: bool = field(default=True, metadata=_from("credentials.enabled"))
    credentials_before: float = field(default=900.0, metadata=_from("credentials.before"))
    credentials_severity: str = field(default="warning", metadata=_from("credentials.severity"))
    # Severity of task alerts, by alert name; an alert not named here has its rule's default
    # (``monitor.alerts.task_rules.severity_of``).
    severity: Mapping[str, str] = field(default_factory=dict)


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


def stale_threshold(task: Task, after: StaleRule, interval_of: Callable[[Task], float]) -> float:
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
) -> TaskKind:
    """Which task alerts hold for ``task``, as kinds (EXITED, NOT_FOUND, ERROR, STALE, IDLE,
    STALE_NEW, FAILED_UPLOAD, OVERDUE_UPLOAD).

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
        return _KINDS[0]
    bits = 0
    upload = task.upload.state
    if upload is _UPLOAD_FAILED and th.upload_enabled:
        bits = _B_FAILED_UPLOAD
    elif upload is _UPLOADING and th.upload_enabled:
        at = task.upload.stopped_at
        stopped = task.stopped_mono
        if at is None and (s is _EXITED or s is _ENDED or s is _EXPIRED):
            at, stopped = task.status_since, task.since_mono
        if at is not None:
            if mono is None or stopped is None:
                if now - at > th.upload_deadline:
                    bits = _B_OVERDUE_UPLOAD
            elif mono - stopped > th.upload_deadline:
                bits = _B_OVERDUE_UPLOAD
    if s is _ENDED or s is _EXPIRED:
        if th.exit_enabled and exit_firing(task, th.expected_leave_codes):
            bits |= _B_NOT_FOUND if s is _ENDED and never_seen_running(task) else _B_EXITED
        return _KINDS[bits]
    if s is _EXITED and th.exit_enabled and exit_firing(task, th.expected_leave_codes):
        bits |= _B_EXITED
    if th.error_enabled and task.consecutive_errors >= th.consecutive:
        bits |= _B_ERROR
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
            bits |= _B_STALE
            if at - (last if last > start else start) > threshold:
                bits |= _B_STALE_NEW
    if s is _IDLE and th.idle_enabled:
        since = task.since_mono
        if (
            now - task.status_since > th.idle_after
            if mono is None or since is None
            else mono - since > th.idle_after
        ):
            bits |= _B_IDLE
    return _KINDS[bits]


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
