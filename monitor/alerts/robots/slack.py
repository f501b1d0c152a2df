"""Slack incoming webhook: Block Kit (a section's text at most 3,000 characters, at most 50
blocks), about one message a second; HTTP 429 with ``Retry-After`` means too fast.

Values go into ``plain_text`` sections, where nothing is markup; links are buttons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from monitor.alerts.retry import RetryPolicy
from monitor.alerts.robots.messages import PLAIN, Block, Dialect
from monitor.alerts.robots.pacing import Rate
from monitor.alerts.robots.platform import FAILED, OK, Answer, Platform, json_bytes

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_HEADER = 150


def _mrkdwn_escape(text: str) -> str:
    # The fallback "text" is mrkdwn: &, < and > are the only characters Slack wants escaped.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Slack(Platform):
    kind: ClassVar[str] = "slack"
    dialect: ClassVar[Dialect] = PLAIN
    rates: ClassVar[tuple[Rate, ...]] = (Rate(1, 1.0),)
    throttle: ClassVar[RetryPolicy] = RetryPolicy(attempts=1, base=1.0, cap=60.0)
    max_body: ClassVar[int] = 40_000

    def body(self, title: str, blocks: Sequence[Block]) -> dict[str, Any]:
        header = title if len(title) <= MAX_HEADER else title[: MAX_HEADER - 1] + "…"
        out: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": header}}
        ]
        for block in blocks:
            section: dict[str, Any] = {
                "type": "section",
                "text": {"type": "plain_text", "text": block.text},
            }
            if block.link:
                section["accessory"] = {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Open"},
                    "url": block.link,
                }
            out.append(section)
        return {"text": _mrkdwn_escape(title), "blocks": out}

    def fits(self, title: str, blocks: Sequence[Block]) -> bool:
        return (
            len(blocks) + 1 <= MAX_BLOCKS
            and all(len(b.text) <= MAX_SECTION for b in blocks)
            and len(json_bytes(self.body(title, blocks))) <= self.max_body
        )

    def answer_body(self, text: str, headers: Mapping[str, str]) -> Answer:
        return Answer(OK) if text.strip() == "ok" else Answer(FAILED, text.strip()[:64])
