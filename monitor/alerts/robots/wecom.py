"""WeCom (企业微信) group robot: markdown content of at most 4,096 UTF-8 bytes, 20 messages a
minute; ``45009`` means too fast."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from monitor.alerts.retry import RetryPolicy
from monitor.alerts.robots.messages import MARKDOWN, Block, Dialect, utf8_len
from monitor.alerts.robots.pacing import Rate
from monitor.alerts.robots.platform import ErrcodePlatform

MAX_CONTENT = 4096


class WeCom(ErrcodePlatform):
    kind: ClassVar[str] = "wecom"
    dialect: ClassVar[Dialect] = MARKDOWN
    rates: ClassVar[tuple[Rate, ...]] = (Rate(20, 60.0),)
    # The limit counts per minute: a minute's pause empties the window.
    throttle: ClassVar[RetryPolicy] = RetryPolicy(attempts=1, base=60.0, cap=300.0)
    too_fast: ClassVar[frozenset[int]] = frozenset({45009})

    @staticmethod
    def content(title: str, blocks: Sequence[Block]) -> str:
        return "\n\n".join([f"**{title}**", *(b.text for b in blocks)])

    def body(self, title: str, blocks: Sequence[Block]) -> dict[str, Any]:
        return {"msgtype": "markdown", "markdown": {"content": self.content(title, blocks)}}

    def fits(self, title: str, blocks: Sequence[Block]) -> bool:
        return utf8_len(self.content(title, blocks)) <= MAX_CONTENT
