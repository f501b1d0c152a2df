"""The notification retry policy: attempts and exponential backoff, pure."""

from __future__ import annotations

from monitor.alerts.retry import RetryPolicy


class TestRetryPolicy:
    def test_backoff_doubles_up_to_the_cap(self) -> None:
        policy = RetryPolicy(attempts=6, base=1.0, cap=5.0)
        assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
