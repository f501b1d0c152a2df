"""What every chat platform has: a request shape, a size limit, a rate, and answers to read.

One subclass per platform (``wecom``, ``dingtalk``, ``feishu``, ``slack``); all pure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

from monitor.alerts.retry import RetryPolicy
from monitor.alerts.robots.messages import Block, Dialect
from monitor.alerts.robots.pacing import Rate

OK: Final = "ok"
THROTTLED: Final = "throttled"  # "too fast": wait, then send the same message again
RETRY: Final = "retry"  # a temporary failure: retry a few times
FAILED: Final = "failed"  # asking again will not help (bad signature, bad payload, bad key)
AnswerKind = Literal["ok", "throttled", "retry", "failed"]

RETRY_AFTER_CAP: Final = 3600.0


@dataclass(frozen=True, slots=True)
class Answer:
    kind: AnswerKind
    code: str = ""  # the platform's error code or HTTP status, for logs
    retry_after: float | None = None  # seconds, when the platform said


def retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (the date form is not used by these platforms)."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative: ignore
        return None
    return min(seconds, RETRY_AFTER_CAP)


def json_bytes(body: Mapping[str, Any]) -> bytes:
    # ensure_ascii=False: Chinese room names cost 3 bytes each, not 6, against the size limit.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def parse_json(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class Platform:
    """A chat platform's robot API."""

    kind: ClassVar[str] = ""
    dialect: ClassVar[Dialect]
    # The published limits, kept under by ``pacing``.
    rates: ClassVar[tuple[Rate, ...]]
    # Back-off after a "too fast" answer that says nothing of how long.
    throttle: ClassVar[RetryPolicy]
    max_body: ClassVar[int] = 20_000
    signed: ClassVar[bool] = False

    def body(self, title: str, blocks: Sequence[Block]) -> dict[str, Any]:
        raise NotImplementedError

    def fits(self, title: str, blocks: Sequence[Block]) -> bool:
        return len(json_bytes(self.body(title, blocks))) <= self.max_body

    def request(
        self, url: str, body: dict[str, Any], secret: str | None, now: float
    ) -> tuple[str, bytes]:
        """The URL and bytes to POST (signed when ``secret`` is set); ``now`` is wall time."""
        return url, json_bytes(body)

    def answer(self, status: int, headers: Mapping[str, str], text: str) -> Answer:
        """What an HTTP answer means. The platforms answer 200 with a JSON error code."""
        if status == 429:
            return Answer(THROTTLED, "429", retry_after(headers))
        if status >= 500 or status == 408:
            return Answer(RETRY, str(status))
        if not 200 <= status < 300:
            return Answer(FAILED, str(status))
        return self.answer_body(text, headers)

    def answer_body(self, text: str, headers: Mapping[str, str]) -> Answer:
        raise NotImplementedError


class ErrcodePlatform(Platform):
    """WeCom and DingTalk: ``{"errcode": 0, "errmsg": "ok"}``."""

    too_fast: ClassVar[frozenset[int]] = frozenset()

    def answer_body(self, text: str, headers: Mapping[str, str]) -> Answer:
        data = parse_json(text)
        code = data.get("errcode") if data is not None else None
        if not isinstance(code, int) or isinstance(code, bool):
            return Answer(RETRY, "unreadable answer")
        if code == 0:
            return Answer(OK)
        if code in self.too_fast:
            return Answer(THROTTLED, str(code), retry_after(headers))
        if code == -1:  # "system busy"
            return Answer(RETRY, str(code))
        return Answer(FAILED, str(code))
