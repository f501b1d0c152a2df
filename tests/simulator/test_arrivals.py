"""The simulator's sliding rate window, pure."""

from __future__ import annotations

import random

from monitor.simulator.arrivals import SlidingWindowCounter, max_in_window
from tests.simulator.helpers import DESCRIBE


class TestSlidingWindow:
    def test_the_arrival_past_the_limit_within_one_second_is_counted_over_it(self) -> None:
        counter = SlidingWindowCounter(1.0)
        counts = [counter.hit(("AKID", DESCRIBE), 100.0 + i * 0.04) for i in range(21)]
        assert counts[19] == 20
        assert counts[20] == 21

    def test_arrivals_exactly_one_window_apart_do_not_share_a_window(self) -> None:
        counter = SlidingWindowCounter(1.0)
        assert counter.hit(("a", "x"), 10.0) == 1
        assert counter.hit(("a", "x"), 10.5) == 2
        assert counter.hit(("a", "x"), 11.0) == 2  # 10.0 is outside (10.0, 11.0]

    def test_keys_are_counted_separately(self) -> None:
        counter = SlidingWindowCounter(1.0)
        for _ in range(5):
            counter.hit(("a", DESCRIBE), 1.0)
        assert counter.hit(("b", DESCRIBE), 1.0) == 1
        assert counter.hit(("a", "CreateCloudRecording"), 1.0) == 1

    def test_max_in_window_finds_the_densest_second(self) -> None:
        times = [0.0, 0.1, 0.2, 1.15, 1.2, 1.25, 1.3, 3.0]
        assert max_in_window(times, 1.0) == 4  # (0.3, 1.3]
        assert max_in_window(times, 1.2) == 5  # (0.1, 1.3]
        assert max_in_window(times, 0.1) == 2
        assert max_in_window([], 1.0) == 0

    def test_max_in_window_matches_a_brute_force_count(self) -> None:
        rng = random.Random(5)
        times = sorted(rng.uniform(0, 20) for _ in range(300))
        brute = max(sum(1 for u in times if t - 1.0 < u <= t) for t in times)
        assert max_in_window(times, 1.0) == brute
