"""The poll step's outcome, heard by the parts that act on it: the budget backs off on a
throttled answer, the metrics count every dispatched poll (the poll step does neither)."""

from __future__ import annotations

from typing import Any, cast

from monitor.accounts import AccountRuntime
from monitor.budget import Budget
from monitor.credentials import CredentialProvider
from monitor.events import ApiAnswered, EventBus
from monitor.metrics import MonitorMetrics
from monitor.models import Outcome, TaskKey
from monitor.ratelimit import RateLimiter
from monitor.ratelimit.factory import BucketKey, LimiterSettings
from monitor.scheduler import Dispatch
from monitor.trtc.client import CallResult, Endpoint

SETTINGS = LimiterSettings(20, 1.0, 0.02)
BUCKET = BucketKey("default", Endpoint.parse("http://127.0.0.1:9").host("ap-guangzhou"))


class CountingLimiter:
    """A limiter that only counts what it is told."""

    limit = 20
    effective_rate = 20.0

    def __init__(self) -> None:
        self.throttled = 0

    def on_throttled(self) -> bool:
        self.throttled += 1
        return True


def _budget() -> tuple[Budget, dict[BucketKey, CountingLimiter]]:
    made: dict[BucketKey, CountingLimiter] = {}

    def factory(bucket: BucketKey, settings: LimiterSettings) -> RateLimiter:
        made[bucket] = CountingLimiter()
        return cast(RateLimiter, made[bucket])

    account = AccountRuntime(
        name="default",
        endpoint=Endpoint.parse("http://127.0.0.1:9"),
        credentials=cast(CredentialProvider, object()),
        language="en-US",
        limiter=SETTINGS,
    )
    return Budget({"default": account}, factory), made


def _answer(outcome: Outcome, code: str = "") -> CallResult:
    return CallResult(outcome, code, request_id="r-1")


class TestTheBudgetBacksOffOnTheAnswer:
    async def test_a_throttled_answer_slows_the_limiter_of_its_bucket_and_no_other(self) -> None:
        bus = EventBus()
        budget, made = _budget()
        budget.subscribe(bus)
        bucket = BUCKET
        budget.limiter(bucket)
        orphan = BucketKey("gone", "-")
        budget.limiter(orphan)

        await bus.publish(
            ApiAnswered("default", "ap-guangzhou", _answer(Outcome.THROTTLED, "LimitExceeded"), 1.0)
        )
        assert made[bucket].throttled == 1
        assert made[orphan].throttled == 0

    async def test_other_answers_change_no_limiter(self) -> None:
        bus = EventBus()
        budget, made = _budget()
        budget.subscribe(bus)
        budget.limiter(BUCKET)
        for outcome in (Outcome.OK, Outcome.INVALID, Outcome.TRANSIENT, Outcome.AUTH):
            await bus.publish(ApiAnswered("default", "ap-guangzhou", _answer(outcome), 1.0))
        assert made[BUCKET].throttled == 0

    async def test_without_the_subscription_nothing_backs_off(self) -> None:
        bus = EventBus()
        budget, made = _budget()
        budget.limiter(BUCKET)
        await bus.publish(
            ApiAnswered("default", "ap-guangzhou", _answer(Outcome.THROTTLED, "x"), 1.0)
        )
        assert made[BUCKET].throttled == 0


def _sample(metrics: MonitorMetrics, name: str, account: str) -> Any:
    return metrics.registry.get_sample_value(name, {"account": account})


class TestTheMetricsCountEveryDispatch:
    def test_poll_delay_and_limiter_wait_are_observed_per_account(self) -> None:
        metrics = MonitorMetrics()
        key = TaskKey(1400000001, "t-1")
        bucket = BucketKey("default", "trtc.tencentcloudapi.com")
        metrics.observe_dispatch(Dispatch(bucket, key, due=10.0, at=10.25, limiter_wait=0.5))
        metrics.observe_dispatch(Dispatch(bucket, key, due=20.0, at=19.0, limiter_wait=0.0))
        assert _sample(metrics, "trtc_monitor_poll_delay_seconds_count", "default") == 2
        # A poll started early counts as no delay.
        assert _sample(metrics, "trtc_monitor_poll_delay_seconds_sum", "default") == 0.25
        assert _sample(metrics, "trtc_monitor_ratelimit_wait_seconds_sum", "default") == 0.5

    def test_a_bucket_that_is_no_bucket_key_is_labelled_by_its_text(self) -> None:
        metrics = MonitorMetrics()
        metrics.observe_dispatch(Dispatch("lane", "k", due=1.0, at=1.0, limiter_wait=0.0))
        assert _sample(metrics, "trtc_monitor_poll_delay_seconds_count", "lane") == 1
