"""The request budget: sliding-window cap, even spacing, AIMD backoff, asyncio wrapper."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.ratelimit import LocalRateLimiter, WindowBudget, mark_sent


def drive(
    budget: WindowBudget,
    arrivals: Sequence[float],
    *,
    lateness: Callable[[], float] = lambda: 0.0,
    throttles: Sequence[float] = (),
    until: float = math.inf,
) -> list[float]:
    """Serve requests FIFO as one sender that sleeps ``delay`` and wakes ``lateness()`` late.

    Returns the actual send times (the times passed to ``record``).
    """
    pending = deque(sorted(arrivals))
    pending_throttles = deque(sorted(throttles))
    sends: list[float] = []
    t = -math.inf
    while pending:
        t = max(t, pending[0])
        if t >= until:
            break
        while pending_throttles and pending_throttles[0] <= t:
            budget.on_throttled(pending_throttles.popleft())
        wait = budget.delay(t)
        if wait == 0.0:
            budget.record(t)
            sends.append(t)
            pending.popleft()
        else:
            t = t + wait + lateness()
    return sends


def assert_window_cap(sends: Sequence[float], limit: int, window: float) -> None:
    """No half-open window of length ``window`` holds more than ``limit`` sends."""
    ordered = sorted(sends)
    for i in range(len(ordered) - limit):
        assert ordered[i + limit] >= ordered[i] + window, (
            f"{limit + 1} sends within {window}s: {ordered[i : i + limit + 1]}"
        )


def max_in_any_window(sends: Sequence[float], window: float) -> int:
    ordered = sorted(sends)
    best = 0
    lo = 0
    for hi, t in enumerate(ordered):
        while ordered[lo] + window <= t:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


class TestWindowBudgetSpacing:
    def test_fresh_budget_allows_a_send_at_once(self) -> None:
        budget = WindowBudget(20, 1.0)
        assert budget.delay(100.0) == 0.0

    def test_sends_under_continuous_demand_follow_the_target_spacing(self) -> None:
        budget = WindowBudget(20, 1.0, guard=0.02)
        spacing = 1.0 / (20 * 0.98)
        sends = drive(budget, [0.0] * 60)
        # The first window may be shaped by the cap (the half-spacing start); then it is steady.
        steady = sends[21:]
        gaps = [b - a for a, b in itertools.pairwise(steady)]
        assert len(gaps) > 30
        assert all(gap == pytest.approx(spacing) for gap in gaps)

    def test_the_second_send_after_idle_comes_a_full_spacing_later(self) -> None:
        budget = WindowBudget(20, 1.0)
        budget.record(10.0)
        spacing = budget.spacing(10.0)
        assert budget.delay(10.0) == pytest.approx(spacing)
        assert budget.delay(10.0 + spacing) == 0.0

    def test_idle_time_earns_no_burst(self) -> None:
        budget = WindowBudget(20, 1.0)
        drive(budget, [0.0] * 20)
        sends = drive(budget, [30.0] * 60)
        spacing = budget.spacing(30.0)
        gaps = [b - a for a, b in itertools.pairwise(sends)]
        assert min(gaps) >= spacing / 2 - 1e-9
        assert sum(1 for t in sends if t < 31.0) <= 20

    def test_constant_lateness_does_not_accumulate(self) -> None:
        budget = WindowBudget(20, 1.0, guard=0.02)
        sends = drive(budget, [0.0] * 5000, lateness=lambda: 0.008, until=60.0)
        # Following the actual sends would give 60 / (0.051 + 0.008) = 1017 sends. (Lateness
        # beyond half the guard, 10 ms here, makes the arrival-jitter cap bind and costs rate.)
        assert len(sends) >= 0.97 * 20 * 60

    @pytest.mark.parametrize(("limit", "window"), [(20, 1.0), (1, 1.0), (5, 0.1), (100, 1.0)])
    def test_sustained_rate_under_continuous_demand_is_at_least_97_percent(
        self, limit: int, window: float
    ) -> None:
        rng = random.Random(7)
        budget = WindowBudget(limit, window, guard=0.02)
        # Wake-ups late by up to 2 ms, or 5% of a spacing where spacings are short.
        worst = min(0.002, 0.05 * budget.spacing(0.0))
        sends = drive(
            budget,
            [0.0] * int(limit * 70 / window),
            lateness=lambda: rng.uniform(0.0, worst),
            until=60.0,
        )
        capacity = limit * 60.0 / window
        assert len(sends) >= 0.97 * capacity
        assert len(sends) <= capacity
        assert_window_cap(sends, limit, window)

    def test_record_refuses_a_send_the_budget_does_not_allow(self) -> None:
        budget = WindowBudget(20, 1.0)
        budget.record(5.0)
        with pytest.raises(ValueError, match="before the budget allowed"):
            budget.record(5.001)

    def test_invalid_parameters_are_rejected(self) -> None:
        with pytest.raises(ValueError, match="limit"):
            WindowBudget(0, 1.0)
        with pytest.raises(ValueError, match="window"):
            WindowBudget(1, 0.0)
        with pytest.raises(ValueError, match="guard"):
            WindowBudget(1, 1.0, guard=1.0)


class TestWindowBudgetCap:
    def test_the_sliding_window_cap_holds_back_a_send_the_schedule_would_allow(self) -> None:
        budget = WindowBudget(2, 1.0, guard=0.0)
        budget.record(0.0)
        budget.record(0.6)  # a late send: the schedule lets the next one catch up at 1.0
        budget.record(1.0)
        # The schedule would allow 1.5, but 0.6 and 1.0 are still in the window until 1.6.
        assert budget.delay(1.5) == pytest.approx(0.1)
        assert budget.delay(1.6) == 0.0

    def test_the_cap_keeps_the_guard_so_catch_up_leaves_room_for_arrival_jitter(self) -> None:
        budget = WindowBudget(20, 1.0, guard=0.02)
        # One long stall and then a catch-up: no 21 sends may fit in 1.01 seconds.
        sends = drive(budget, [0.0] * 200, lateness=iter([0.0, 0.3] + [0.0] * 500).__next__)
        assert max_in_any_window(sends, 1.01 * (1 - 1e-9)) <= 20
        assert max_in_any_window(sends, 1.0) == 20  # the catch-up did happen

    def test_waiting_exactly_the_delay_is_always_enough(self) -> None:
        budget = WindowBudget(3, 0.1, guard=0.0)
        t = 1234.567
        for _ in range(200):
            wait = budget.delay(t)
            t += wait
            while (extra := budget.delay(t)) > 0.0:
                # Rounding may leave a sliver; it must shrink to nothing, not loop forever.
                assert extra < 1e-9
                t += extra
            budget.record(t)

    def test_sends_in_window_counts_only_the_last_window(self) -> None:
        budget = WindowBudget(5, 1.0)
        sends = drive(budget, [0.0] * 5)
        assert budget.sends_in_window(sends[-1]) == 5
        assert budget.sends_in_window(sends[-1] + 1.0) == 0

    @settings(max_examples=300, deadline=None)
    @given(
        limit=st.integers(1, 25),
        window=st.floats(0.01, 3.0),
        guard=st.floats(0.0, 0.1),
        bursts=st.lists(
            st.tuples(st.floats(0.0, 20.0), st.integers(1, 40)), min_size=1, max_size=15
        ),
        lateness=st.lists(
            st.one_of(st.just(0.0), st.floats(0.0, 0.003), st.floats(0.0, 1.5)),
            min_size=1,
            max_size=40,
        ),
        throttles=st.lists(st.floats(0.0, 25.0), max_size=12),
    )
    def test_no_window_ever_holds_more_than_limit_sends(
        self,
        limit: int,
        window: float,
        guard: float,
        bursts: list[tuple[float, int]],
        lateness: list[float],
        throttles: list[float],
    ) -> None:
        budget = WindowBudget(limit, window, guard=guard)
        arrivals = sorted(at for at, count in bursts for _ in range(count))
        late = iter(lateness * (1 + 10 * len(arrivals)))
        sends = drive(budget, arrivals, lateness=lambda: next(late, 0.0), throttles=throttles)
        assert len(sends) == len(arrivals)
        assert all(sent >= arrived for sent, arrived in zip(sends, arrivals, strict=True))
        assert_window_cap(sends, limit, window)
        assert max_in_any_window(sends, window) <= limit


class TestWindowBudgetBackoff:
    def test_a_throttle_cuts_the_effective_rate_by_a_fifth(self) -> None:
        budget = WindowBudget(20, 1.0, guard=0.0)
        assert budget.effective_rate(0.0) == pytest.approx(20.0)
        assert budget.on_throttled(0.0)
        assert budget.effective_rate(0.0) == pytest.approx(16.0)

    def test_the_decrease_factor_is_configurable(self) -> None:
        budget = WindowBudget(20, 1.0, guard=0.0, decrease=0.5)
        assert budget.on_throttled(0.0)
        assert budget.effective_rate(0.0) == pytest.approx(10.0)

    def test_a_burst_of_throttles_within_one_window_decreases_only_once(self) -> None:
        budget = WindowBudget(20, 1.0, guard=0.0)
        assert budget.on_throttled(0.0)
        assert [budget.on_throttled(t) for t in (0.01, 0.2, 0.99)] == [False, False, False]
        assert budget.effective_rate(0.99) == pytest.approx(16.0)
        # One quiet window has passed: the rate regained one step (+1/s) before the next cut.
        assert budget.on_throttled(1.0)
        assert budget.effective_rate(1.0) == pytest.approx(17.0 * 0.8)

    def test_the_rate_never_drops_below_the_floor(self) -> None:
        budget = WindowBudget(20, 1.0, guard=0.0, decrease=0.1)
        assert budget.on_throttled(0.0)
        assert budget.effective_rate(0.0) == pytest.approx(2.0)
        assert budget.on_throttled(1.0)
        assert budget.effective_rate(1.0) == pytest.approx(1.0)

    def test_the_rate_recovers_additively_per_quiet_window_up_to_the_configured_rate(
        self,
    ) -> None:
        budget = WindowBudget(20, 1.0, guard=0.02)
        budget.on_throttled(0.0)
        cut = 20 * 0.98 * 0.8
        assert budget.effective_rate(0.5) == pytest.approx(cut)
        assert budget.effective_rate(1.0) == pytest.approx(cut + 1.0)
        assert budget.effective_rate(3.5) == pytest.approx(cut + 3.0)
        assert budget.effective_rate(1000.0) == pytest.approx(20 * 0.98)

    def test_after_a_throttle_the_next_send_waits_the_slower_spacing(self) -> None:
        budget = WindowBudget(20, 1.0, guard=0.0)
        budget.record(0.0)
        budget.on_throttled(0.01)
        assert budget.delay(0.01) == pytest.approx(1 / 16 - 0.01)

    def test_sending_rate_follows_backoff_and_recovery(self) -> None:
        budget = WindowBudget(20, 1.0, guard=0.0)
        sends = drive(budget, [0.0] * 400, throttles=[2.0], until=20.0)
        per_second = [sum(1 for t in sends if s <= t < s + 1) for s in range(20)]
        assert per_second[0] == 20
        assert per_second[2] <= 17
        assert per_second[3] <= 18
        assert per_second[15] == 20


class RecordingBudget(WindowBudget):
    """A budget that remembers the exact times the limiter recorded sends at."""

    def __init__(self, limit: int, window: float, **kwargs: float) -> None:
        super().__init__(limit, window, **kwargs)
        self.recorded: list[float] = []

    def record(self, now: float) -> None:
        super().record(now)
        self.recorded.append(now)


class TestLocalRateLimiter:
    """What only the local limiter has; the shared behaviour is in test_limiter_contract."""

    def test_a_budget_with_other_figures_is_refused(self) -> None:
        with pytest.raises(ValueError, match="differ"):
            LocalRateLimiter(2, 1.0, budget=WindowBudget(1, 1.0))


class TestSendReceipts:
    def test_a_late_send_moves_the_cap_to_when_it_really_left(self) -> None:
        budget = WindowBudget(2, 1.0, guard=0.0)
        budget.record(0.0)
        budget.record(0.5)
        assert budget.delay(1.0) == 0.0  # counted at its grant, the first send is a window old
        assert budget.sent(0.0, 0.2)
        assert budget.delay(1.0) == pytest.approx(0.2)  # it left at 0.2: wait until 1.2

    def test_receipts_out_of_order_still_cap_on_the_earliest_send(self) -> None:
        budget = WindowBudget(2, 1.0, guard=0.0)
        budget.record(0.0)
        budget.record(0.5)
        assert budget.sent(0.0, 0.7)  # left after the second one
        assert budget.delay(1.0) == pytest.approx(0.5)
        assert not budget.sent(42.0, 43.0)  # unknown grants change nothing

    @settings(max_examples=200, deadline=None)
    @given(delays=st.lists(st.floats(0.0, 0.05), min_size=30, max_size=120))
    def test_with_receipts_the_cap_holds_on_actual_send_times(self, delays: list[float]) -> None:
        budget = WindowBudget(20, 1.0, guard=0.02)
        now, sent = 0.0, []
        for delay in delays:
            now += budget.delay(now)
            budget.record(now)
            budget.sent(now, now + delay)
            sent.append(now + delay)
        assert max_in_any_window(sent, 1.0 / 0.98 * (1 - 1e-9)) <= 20

    async def test_the_grant_travels_into_the_task_that_sends(self) -> None:
        budget = RecordingBudget(5, 1.0, guard=0.0)
        limiter = LocalRateLimiter(5, 1.0, budget=budget)
        left: list[float] = []

        async def send_later() -> None:
            await asyncio.sleep(0.05)
            mark_sent()
            mark_sent()  # a second receipt for the same grant changes nothing
            left.append(time.monotonic())

        await limiter.acquire()
        granted = budget.recorded[-1]
        await asyncio.create_task(send_later())
        # Counted from when it left (at least 50 ms after the grant), not from the grant: a
        # second after the grant it is still in the window; a second after it left, gone.
        # (Bounds, not the 50 ms itself: a busy machine may wake the sender later.)
        assert budget.sends_in_window(granted + 1.01) == 1
        assert budget.sends_in_window(left[0] + 1.0) == 0

    def test_mark_sent_outside_a_grant_does_nothing(self) -> None:
        mark_sent()
