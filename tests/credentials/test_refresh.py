"""Credentials refresh (docs/trtc-api.md): the arithmetic of when to refresh and retry, and the
provider's background refresh."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import pytest

from monitor.credentials import CredentialsError, Issued, RefreshEvent, RefreshingProvider
from monitor.credentials.refresh import refresh_due, refresh_lead, retry_delay
from monitor.secrets import Credentials

# ---------------------------------------------------------------------------------------------
# when to refresh, how to back off (pure)


class TestRefreshArithmetic:
    @pytest.mark.parametrize(
        ("lifetime", "lead"),
        [
            (7200.0, 1440.0),  # a fifth (24m) comes before five minutes
            (3600.0, 720.0),
            (1500.0, 300.0),  # both the same
            (600.0, 300.0),  # five minutes come first
            (20.0, 10.0),  # never in the first half of the lifetime
            (0.0, 0.0),
        ],
    )
    def test_a_fifth_of_the_lifetime_or_five_minutes_whichever_comes_first(
        self, lifetime: float, lead: float
    ) -> None:
        assert refresh_lead(lifetime) == pytest.approx(lead)
        assert refresh_due(1000.0, 1000.0 + lifetime) == pytest.approx(1000.0 + lifetime - lead)

    def test_backoff_doubles_up_to_a_cap_and_is_jittered_over_its_upper_half(self) -> None:
        lows = [retry_delay(n, 0.0, remaining=1e9) for n in range(1, 10)]
        highs = [retry_delay(n, 0.999999, remaining=1e9) for n in range(1, 10)]
        assert lows[:4] == [0.5, 1.0, 2.0, 4.0]
        assert highs[:4] == pytest.approx([1.0, 2.0, 4.0, 8.0])
        assert max(highs) == pytest.approx(60.0)
        assert max(retry_delay(n, 0.999999, remaining=1e9) for n in range(1, 10)) == (
            pytest.approx(60.0)
        )
        assert all(low <= high for low, high in zip(lows, highs, strict=True))

    def test_while_valid_a_retry_comes_within_half_the_time_left(self) -> None:
        assert retry_delay(8, 0.99, remaining=10.0) <= 5.0
        assert retry_delay(8, 0.99, remaining=0.1) <= 0.5  # a floor, not a busy loop
        assert retry_delay(8, 0.0, remaining=0.1) > 0.0
        # expired, or nothing in use: every poll fails meanwhile, so retries come sooner
        assert retry_delay(3, 0.0, remaining=-5.0) == 2.0
        assert retry_delay(9, 0.999999, remaining=-5.0) == pytest.approx(10.0)
        assert retry_delay(9, 0.999999, remaining=None) == pytest.approx(10.0)
        assert retry_delay(9, 0.999999, remaining=float("inf")) == pytest.approx(60.0)


# ---------------------------------------------------------------------------------------------
# the provider around a source (real event loop, a scripted source)


class ScriptedSource:
    """Answers with fresh credentials of ``lifetime`` seconds, or fails while ``failing``;
    ``gate`` holds every fetch until set (a slow STS)."""

    name = "scripted"

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.failing = False
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls = 0
        self.serial = 0

    async def fetch(self, session: aiohttp.ClientSession) -> Issued:
        self.calls += 1
        await self.gate.wait()
        if self.failing:
            raise CredentialsError("scripted", "STS AssumeRole failed: InternalError")
        self.serial += 1
        return Issued(
            Credentials(f"AKIDTMP{self.serial}", f"key-{self.serial}-secret", f"tok-{self.serial}"),
            "scripted",
            time.time() + self.lifetime,
        )


async def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class TestRefreshingProvider:
    async def test_credentials_are_replaced_before_they_expire(
        self, session: aiohttp.ClientSession
    ) -> None:
        source = ScriptedSource(lifetime=2.0)
        events: list[RefreshEvent] = []
        provider = RefreshingProvider("a", source, observer=events.append)
        await provider.start(session)
        try:
            first = provider.current()
            assert first is not None
            assert first.secret_id == "AKIDTMP1"
            # refreshed at half the lifetime: a second set while the first is still valid
            await wait_until(lambda: source.serial >= 3)
            seen = provider.current()
            assert seen is not None
            assert seen.secret_id != "AKIDTMP1"
        finally:
            await provider.stop()
        assert [e.outcome for e in events[:3]] == ["success"] * 3
        assert all(not e.failing for e in events)

    async def test_a_slow_refresh_never_makes_current_wait(
        self, session: aiohttp.ClientSession
    ) -> None:
        source = ScriptedSource(lifetime=4.0)
        provider = RefreshingProvider("a", source)
        await provider.start(session)
        try:
            source.gate.clear()  # the next fetch hangs
            await wait_until(lambda: source.calls >= 2)
            # a refresh is in flight and stuck; the credentials in use are still answered
            credentials = provider.current()
            assert credentials is not None
            assert credentials.secret_id == "AKIDTMP1"
            assert await provider.get() == credentials
            source.gate.set()
            await wait_until(lambda: source.serial >= 2)
        finally:
            await provider.stop()

    async def test_failures_keep_the_old_credentials_until_expiry_then_recover(
        self, session: aiohttp.ClientSession
    ) -> None:
        source = ScriptedSource(lifetime=3.0)
        events: list[RefreshEvent] = []
        provider = RefreshingProvider("a", source, observer=events.append, wait_timeout=0.5)
        await provider.start(session)
        try:
            source.failing = True
            first = provider.current()
            assert first is not None
            await wait_until(lambda: any(e.outcome == "failure" for e in events))
            assert provider.failing
            assert provider.current() == first  # still valid: still in use
            await wait_until(lambda: provider.current() is None)  # expired now
            with pytest.raises(CredentialsError) as info:
                await provider.get()
            assert "expired" in str(info.value)
            assert "InternalError" in str(info.value)
            source.failing = False
            await wait_until(lambda: provider.current() is not None)
            assert await provider.get() != first
            assert not provider.failing
        finally:
            await provider.stop()
        failures = [e for e in events if e.outcome == "failure"]
        assert failures
        assert all(e.failing and e.error for e in failures)
        assert events[-1].outcome == "success"
        assert not events[-1].failing

    async def test_get_waits_for_the_first_resolution(self, session: aiohttp.ClientSession) -> None:
        source = ScriptedSource(lifetime=60.0)
        source.gate.clear()
        provider = RefreshingProvider("a", source)
        provider.launch(session)
        try:
            assert provider.current() is None
            waiting = asyncio.ensure_future(provider.get())
            await asyncio.sleep(0.05)
            assert not waiting.done()
            source.gate.set()
            assert (await waiting).secret_id == "AKIDTMP1"
        finally:
            await provider.stop()

    async def test_an_unstarted_provider_says_so(self) -> None:
        provider = RefreshingProvider("a", ScriptedSource(lifetime=60.0))
        assert provider.current() is None
        with pytest.raises(CredentialsError, match="not started"):
            await provider.get()
