"""Long work on the loop cut into slices: when ``Slices`` says to yield, and that it does."""

from __future__ import annotations

import asyncio

import pytest

from monitor.slices import Slices


def test_it_says_to_yield_at_the_latest_after_most_items_whatever_the_clock() -> None:
    slices = Slices(most=50, seconds=3600.0)
    answers = [slices.due() for _ in range(50)]
    assert answers == [False] * 49 + [True]


def test_a_used_up_slice_is_seen_at_the_next_clock_check() -> None:
    slices = Slices(most=10_000, seconds=0.0)
    answers = [slices.due() for _ in range(32)]
    # The clock is read every 16 items only: the first yes comes at the 16th.
    assert answers.index(True) == 15
    assert answers.count(True) == 2


async def test_pause_lets_other_work_run_and_starts_a_new_slice() -> None:
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    slices = Slices(most=3, seconds=3600.0)
    for _ in range(3):
        slices.due()
    other_task = asyncio.create_task(other())
    await slices.pause()
    assert ran == ["other"]
    await other_task
    assert [slices.due() for _ in range(3)] == [False, False, True]


async def test_a_long_loop_yields_to_the_loop_between_slices() -> None:
    """A probe scheduled on the loop runs while the work is still going."""
    seen_during: list[int] = []
    done = 0

    async def probe() -> None:
        seen_during.append(done)

    async def work() -> None:
        nonlocal done
        slices = Slices(most=100)
        for _ in range(1_000):
            if slices.due():
                await slices.pause()
            done += 1

    probe_task = asyncio.create_task(probe())
    await work()
    await probe_task
    assert seen_during
    assert 0 < seen_during[0] < 1_000


def test_most_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Slices(most=0)
