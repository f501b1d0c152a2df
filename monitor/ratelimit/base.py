"""The limiter's contract: what the scheduler and the poll step need from a request budget."""

from __future__ import annotations

from typing import Protocol

__all__ = ["RateLimiter"]


class RateLimiter(Protocol):
    """What the scheduler and the API client need from a request budget."""

    @property
    def key(self) -> str:
        """Which budget this is, e.g. ``"default@trtc.tencentcloudapi.com"``."""
        ...

    @property
    def limit(self) -> int:
        """Configured requests per window."""
        ...

    @property
    def window(self) -> float:
        """Window length in seconds."""
        ...

    @property
    def guard(self) -> float:
        """Fraction of the limit kept unused against arrival jitter."""
        ...

    @property
    def effective_rate(self) -> float:
        """Requests per second currently allowed, after backoff."""
        ...

    async def acquire(self) -> float:
        """Wait for permission to send one request now; return the seconds waited."""
        ...

    def on_throttled(self) -> bool:
        """Report a throttled answer; return whether the rate was lowered."""
        ...
