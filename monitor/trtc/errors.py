"""Mapping of Tencent Cloud error codes to outcomes (SPEC section 5). Pure."""

from __future__ import annotations

from collections.abc import Collection

from monitor.models import Outcome

DEFAULT_ENDED_CODES: tuple[str, ...] = (
    "ResourceNotFound",
    "FailedOperation.TaskNotExist",
    "FailedOperation.TaskFinished",
)

_THROTTLED_EXACT = frozenset({"FailedOperation.RestrictedFrequency"})
_TRANSIENT_EXACT = frozenset({"ServiceUnavailable"})


def classify_code(code: str, ended_codes: Collection[str] = DEFAULT_ENDED_CODES) -> Outcome:
    """The outcome of an API answer that carried ``Response.Error.Code == code``."""
    if code in ended_codes:
        return Outcome.ENDED
    if code.startswith("RequestLimitExceeded") or code in _THROTTLED_EXACT:
        return Outcome.THROTTLED
    if code.startswith("InternalError") or code in _TRANSIENT_EXACT:
        return Outcome.TRANSIENT
    if code.startswith("AuthFailure"):
        return Outcome.AUTH
    # InvalidParameter*, MissingParameter*, UnsupportedRegion and every other client error.
    return Outcome.INVALID
