"""How often a notification request is tried, and how long to wait between tries.

Shared by every receiver worker (Alertmanager, webhooks, the chat robots) and by the robots'
answer to throttling; pure arithmetic, so it lives apart from the workers that sleep on it.
"""

from __future__ import annotations

__all__ = ["RetryPolicy"]


class RetryPolicy:
    """Attempts per request and the exponential backoff between them."""

    __slots__ = ("attempts", "base", "cap")

    def __init__(self, attempts: int = 4, base: float = 1.0, cap: float = 30.0) -> None:
        if attempts < 1 or base < 0 or cap < 0:
            raise ValueError("attempts must be >= 1 and delays >= 0")
        self.attempts = attempts
        self.base = base
        self.cap = cap

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the ``failed_attempts``-th failure: base, 2 base, 4 base..."""
        return float(min(self.cap, self.base * 2 ** (failed_attempts - 1)))

    def __repr__(self) -> str:
        return f"RetryPolicy(attempts={self.attempts}, base={self.base}, cap={self.cap})"
