"""Mapping of Tencent Cloud error codes to outcomes. Pure.

Why each code falls where it does is written in ``docs/trtc-api.md`` ("Answers and errors").
"""

from __future__ import annotations

from collections.abc import Collection

from monitor.models import Outcome

DEFAULT_ENDED_CODES: tuple[str, ...] = (
    "ResourceNotFound",
    "FailedOperation.TaskNotExist",
    "FailedOperation.TaskFinished",
)

_THROTTLED_EXACT = frozenset({"FailedOperation.RestrictedFrequency"})
# "Query task failed" (the SDK's errorcodes.py): the service could not look the task up this
# time; the next poll may well succeed, so it is a transient failure, not a verdict.
_TRANSIENT_EXACT = frozenset({"ServiceUnavailable", "FailedOperation.QueryTaskInfoFailed"})
# Answers about the request itself that asking again cannot change: a RecordId that already
# started a task (StartWebRecord), the account's task limit, a malformed RecordId.
INVALID_CODES: frozenset[str] = frozenset(
    {
        "FailedOperation.TaskExist",
        "UnsupportedOperation.TaskLimit",
        "InvalidParameter.RecordId",
    }
)


def classify_code(code: str, ended_codes: Collection[str] = DEFAULT_ENDED_CODES) -> Outcome:
    """The outcome of an API answer that carried ``Response.Error.Code == code``."""
    if code in ended_codes:
        return Outcome.ENDED
    if code in INVALID_CODES:
        return Outcome.INVALID
    if code.startswith("RequestLimitExceeded") or code in _THROTTLED_EXACT:
        return Outcome.THROTTLED
    if code.startswith("InternalError") or code in _TRANSIENT_EXACT:
        return Outcome.TRANSIENT
    if code.startswith("AuthFailure"):
        return Outcome.AUTH
    # InvalidParameter*, MissingParameter*, UnsupportedRegion and every other client error.
    return Outcome.INVALID
