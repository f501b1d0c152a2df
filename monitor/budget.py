"""The API budget: one limiter per (account, access host), and what the tasks require of it.

With the default single access host every region of an account shares one limiter
(docs/polling.md). A limiter is made when its bucket is first used and replaced when its account's
limit, window or guard changes; unchanged buckets keep their history across reloads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from monitor.accounts import AccountRuntime
from monitor.events import ApiAnswered, EventBus
from monitor.metrics import BucketGauge
from monitor.models import Kind, Outcome, Task
from monitor.ratelimit import RateLimiter
from monitor.ratelimit.factory import (
    DESCRIBE_CLOUD_RECORDING,
    BucketKey,
    LimiterSettings,
    new_limiter,
)
from monitor.trtc.sites import Site
from monitor.trtc.web import DESCRIBE_WEB_RECORD

__all__ = ["Budget"]

# A task whose account left the configuration is still scheduled (its polls report the
# missing account as an error, sending nothing); its lane needs some limiter.
_ORPHAN_HOST = "-"
_ORPHAN_SETTINGS = LimiterSettings(20, 1.0, 0.02)

LimiterFactory = Callable[[BucketKey, LimiterSettings], RateLimiter]


def action_of(task: Task) -> str:
    """The API action a task is polled with: each has its own budget."""
    return DESCRIBE_WEB_RECORD if task.kind is Kind.WEB else DESCRIBE_CLOUD_RECORDING


class Budget:
    """Limiters by typed bucket key; the accounts they are sized by."""

    def __init__(
        self, accounts: Mapping[str, AccountRuntime], factory: LimiterFactory = new_limiter
    ) -> None:
        self._accounts = dict(accounts)
        self._factory = factory
        self._limiters: dict[BucketKey, tuple[LimiterSettings, RateLimiter]] = {}

    @property
    def accounts(self) -> Mapping[str, AccountRuntime]:
        return self._accounts

    def account_names(self) -> Mapping[str, Site]:
        """The accounts of the configuration in force, each with its site (a task's region is
        checked against it at registration)."""
        return {name: account.site for name, account in self._accounts.items()}

    def configure(self, accounts: Mapping[str, AccountRuntime]) -> list[BucketKey]:
        """New account settings; returns the buckets whose limiter was replaced."""
        self._accounts = dict(accounts)
        replaced: list[BucketKey] = []
        for bucket, (settings, _) in list(self._limiters.items()):
            account = self._accounts.get(bucket.account)
            if account is None or account.limiter == settings:
                continue  # a vanished account's tasks keep their lane until they go
            self._limiters[bucket] = (account.limiter, self._factory(bucket, account.limiter))
            replaced.append(bucket)
        return replaced

    def bucket_of(self, task: Task) -> BucketKey:
        return self._bucket(task.account, task.region, action_of(task))

    def _bucket(self, name: str, region: str, action: str) -> BucketKey:
        account = self._accounts.get(name)
        if account is None:
            return BucketKey(name, _ORPHAN_HOST, action)
        return BucketKey(name, account.endpoint.host(region), action)

    def subscribe(self, bus: EventBus) -> None:
        """Back off on the poll step's outcome: a throttled answer slows its bucket's limiter
        (the poll step itself only hands the task back to the scheduler to retry)."""
        bus.subscribe(ApiAnswered, self._on_answer)

    def _on_answer(self, event: ApiAnswered) -> None:
        if event.result.outcome is Outcome.THROTTLED:
            self.limiter(self._bucket(event.account, event.region, event.action)).on_throttled()

    def limiter(self, bucket: BucketKey) -> RateLimiter:
        entry = self._limiters.get(bucket)
        if entry is None:
            account = self._accounts.get(bucket.account)
            settings = _ORPHAN_SETTINGS if account is None else account.limiter
            entry = self._limiters[bucket] = (settings, self._factory(bucket, settings))
        return entry[1]

    def buckets(self) -> list[BucketKey]:
        return sorted(self._limiters)

    def by_account(self, required: Callable[[BucketKey], float]) -> dict[str, tuple[float, float]]:
        """(required, budget) requests/second per account; the budget is the configured
        capacity of its buckets, not the rate after backoff, so the alert does not flap."""
        out: dict[str, tuple[float, float]] = {}
        for name, account in self._accounts.items():
            buckets = [b for b in self._limiters if b.account == name]
            total = sum(required(b) for b in buckets)
            out[name] = (total, account.limiter.capacity * max(1, len(buckets)))
        return out

    def gauges(self) -> list[BucketGauge]:
        return [
            BucketGauge(
                account=bucket.account,
                endpoint=bucket.host,
                limit=float(limiter.limit),
                effective_rate=limiter.effective_rate,
                action=bucket.action,
            )
            for bucket, (_, limiter) in sorted(self._limiters.items())
            if bucket.host != _ORPHAN_HOST
        ]
