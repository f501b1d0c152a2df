"""Duplicate callbacks: one delivery's key whatever its resend, and the cache that remembers
deliveries for a while."""

from __future__ import annotations

import json

from monitor.callbacks.dedupe import DeliveryCache
from monitor.callbacks.parse import delivery_key
from tests.callbacks_support import APP, body


class TestDeliveryKey:
    def test_a_retry_sent_later_and_reserialised_is_the_same_delivery(self) -> None:
        at = 1_700_000_000.0  # one event, sent twice
        first = json.loads(body(302, payload={"LeaveCode": 3}, at=at, sent=at + 0.1))
        retry = json.loads(body(302, payload={"LeaveCode": 3}, at=at, sent=at + 10.1))
        assert first["CallbackTs"] != retry["CallbackTs"]
        reordered = dict(reversed(list(retry.items())))
        assert delivery_key(APP, first) == delivery_key(APP, reordered)

    def test_different_events_apps_or_payloads_are_different_deliveries(self) -> None:
        at = 1_700_000_000.0
        base = json.loads(body(302, payload={"LeaveCode": 3}, at=at))
        keys = {
            delivery_key(APP, base),
            delivery_key(APP + 1, base),
            delivery_key(APP, json.loads(body(302, payload={"LeaveCode": 0}, at=at))),
            delivery_key(APP, json.loads(body(302, payload={"LeaveCode": 3}, at=at + 1))),
            delivery_key(APP, json.loads(body(302, "task-2", {"LeaveCode": 3}, at=at))),
        }
        assert len(keys) == 5


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestDeliveryCache:
    def test_a_delivery_is_new_once_within_its_lifetime_and_new_again_after(self) -> None:
        clock = FakeClock()
        cache = DeliveryCache(ttl=60.0, clock=clock)
        assert cache.claim(b"a")
        clock.now += 59.0
        assert not cache.claim(b"a")
        clock.now += 1.0
        assert cache.claim(b"a")

    def test_it_holds_at_most_max_entries_forgetting_the_oldest(self) -> None:
        clock = FakeClock()
        cache = DeliveryCache(ttl=60.0, max_entries=3, clock=clock)
        for key in (b"1", b"2", b"3", b"4"):
            clock.now += 1.0
            assert cache.claim(key)
        assert len(cache) == 3
        assert cache.claim(b"1")  # evicted, so new again
        assert not cache.claim(b"4")

    def test_expired_entries_are_dropped_so_the_size_follows_the_traffic(self) -> None:
        clock = FakeClock()
        cache = DeliveryCache(ttl=10.0, clock=clock)
        for i in range(100):
            cache.claim(str(i).encode())
        clock.now += 10.0
        cache.claim(b"fresh")
        assert len(cache) == 1

    def test_a_released_claim_can_be_claimed_again(self) -> None:
        cache = DeliveryCache(clock=FakeClock())
        assert cache.claim(b"a")
        cache.release(b"a")
        assert cache.claim(b"a")
