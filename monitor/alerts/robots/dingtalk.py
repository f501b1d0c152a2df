"""DingTalk custom robot: markdown, signed in the query when a secret is set, body at most
20,000 bytes, 20 messages a minute; ``130101`` means too fast (and the robot is then held
back for ten minutes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from monitor.alerts.retry import RetryPolicy
from monitor.alerts.robots.messages import DINGTALK_MARKDOWN, Block, Dialect
from monitor.alerts.robots.pacing import Rate
from monitor.alerts.robots.platform import ErrcodePlatform, json_bytes
from monitor.alerts.robots.signing import dingtalk_signed_url


class DingTalk(ErrcodePlatform):
    kind: ClassVar[str] = "dingtalk"
    dialect: ClassVar[Dialect] = DINGTALK_MARKDOWN
    rates: ClassVar[tuple[Rate, ...]] = (Rate(20, 60.0),)
    # Asking during the ten-minute penalty is pointless: start at a minute, then wait longer.
    throttle: ClassVar[RetryPolicy] = RetryPolicy(attempts=1, base=60.0, cap=600.0)
    too_fast: ClassVar[frozenset[int]] = frozenset({130101})
    max_body: ClassVar[int] = 20_000
    signed: ClassVar[bool] = True

    def body(self, title: str, blocks: Sequence[Block]) -> dict[str, Any]:
        text = "\n\n---\n\n".join([f"#### {title}", *(b.text for b in blocks)])
        # The title is what the notification preview shows.
        return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}

    def request(
        self, url: str, body: dict[str, Any], secret: str | None, now: float
    ) -> tuple[str, bytes]:
        if secret is not None:
            url = dingtalk_signed_url(url, secret, int(now * 1000))
        return url, json_bytes(body)
