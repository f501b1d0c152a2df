"""Feishu / Lark custom bot: an interactive card, signed in the body when a secret is set,
body at most 20 KB, 100 requests a minute and 5 a second; ``9499`` (too many requests) and
``11232`` (bursts on the hour) mean too fast.

Values go into ``plain_text`` elements, where nothing is markup; links are buttons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from monitor.alerts.retry import RetryPolicy
from monitor.alerts.robots.messages import PLAIN, Block, Dialect
from monitor.alerts.robots.pacing import Rate
from monitor.alerts.robots.platform import (
    FAILED,
    OK,
    RETRY,
    THROTTLED,
    Answer,
    Platform,
    json_bytes,
    parse_json,
    retry_after,
)
from monitor.alerts.robots.signing import feishu_signature

TOO_FAST = frozenset({9499, 11232})
# Room for the "timestamp" and "sign" fields signing adds to the body.
SIGN_RESERVE = 128


class Feishu(Platform):
    kind: ClassVar[str] = "feishu"
    dialect: ClassVar[Dialect] = PLAIN
    rates: ClassVar[tuple[Rate, ...]] = (Rate(100, 60.0), Rate(5, 1.0))
    throttle: ClassVar[RetryPolicy] = RetryPolicy(attempts=1, base=5.0, cap=120.0)
    max_body: ClassVar[int] = 20_000 - SIGN_RESERVE
    signed: ClassVar[bool] = True

    def body(self, title: str, blocks: Sequence[Block]) -> dict[str, Any]:
        elements: list[dict[str, Any]] = []
        for index, block in enumerate(blocks):
            if index:
                elements.append({"tag": "hr"})
            elements.append({"tag": "div", "text": {"tag": "plain_text", "content": block.text}})
            if block.link:
                elements.append(
                    {
                        "tag": "action",
                        "actions": [
                            {
                                "tag": "button",
                                "text": {"tag": "plain_text", "content": "Open in monitor"},
                                "type": "default",
                                "url": block.link,
                            }
                        ],
                    }
                )
        return {
            "msg_type": "interactive",
            "card": {
                "config": {"wide_screen_mode": True},
                "header": {
                    "title": {"tag": "plain_text", "content": title},
                    "template": "red" if any(b.firing for b in blocks) else "green",
                },
                "elements": elements,
            },
        }

    def request(
        self, url: str, body: dict[str, Any], secret: str | None, now: float
    ) -> tuple[str, bytes]:
        if secret is not None:
            timestamp = int(now)
            body = {
                **body,
                "timestamp": str(timestamp),
                "sign": feishu_signature(secret, timestamp),
            }
        return url, json_bytes(body)

    def answer_body(self, text: str, headers: Mapping[str, str]) -> Answer:
        data = parse_json(text)
        if data is None:
            return Answer(RETRY, "unreadable answer")
        code = data.get("code", data.get("StatusCode"))  # older answers: StatusCode
        if not isinstance(code, int) or isinstance(code, bool):
            return Answer(RETRY, "unreadable answer")
        if code == 0:
            return Answer(OK)
        if code in TOO_FAST:
            return Answer(THROTTLED, str(code), retry_after(headers))
        return Answer(FAILED, str(code))
