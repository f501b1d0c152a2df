"""Rendezvous hashing and handover: pure, the same answer in every process."""

from __future__ import annotations

import subprocess
import sys
from typing import ClassVar

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.cluster import MONITOR_KEY, assign, handover, owner, takeover_order, weight
from monitor.cluster.ownership import Ownership
from monitor.models import TaskKey

KEYS = [f"1400000001/task-{i}" for i in range(3000)]
MEMBERS = ["monitor-a-1", "monitor-b-7", "monitor-c-3"]


class TestOwner:
    def test_no_member_means_no_owner(self) -> None:
        assert owner("1400000001/t", []) is None

    def test_the_owner_is_the_same_in_another_process(self) -> None:
        # Python's own hash() is salted per process; the weight must not be.
        code = (
            "from monitor.cluster import owner, weight\n"
            f"print([owner(k, {MEMBERS!r}) for k in {KEYS[:50]!r}])\n"
            "print(weight('m', 'k'))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        assert out[0] == repr([owner(k, MEMBERS) for k in KEYS[:50]])
        assert int(out[1]) == weight("m", "k")

    def test_member_order_does_not_matter(self) -> None:
        for key in KEYS[:200]:
            assert owner(key, MEMBERS) == owner(key, list(reversed(MEMBERS)))

    def test_keys_spread_over_the_members(self) -> None:
        shares = {m: len(keys) for m, keys in assign(KEYS, MEMBERS).items()}
        assert sum(shares.values()) == len(KEYS)
        for member, count in shares.items():
            assert 800 <= count <= 1200, (member, shares)

    def test_the_monitor_key_has_one_owner_among_the_members(self) -> None:
        assert owner(MONITOR_KEY, MEMBERS) in MEMBERS

    def test_joined_name_parts_do_not_collide(self) -> None:
        # ("ab", "c") and ("a", "bc") must weigh differently.
        assert weight("ab", "c") != weight("a", "bc")


class TestMembershipChanges:
    def test_a_departure_moves_only_the_departed_members_keys(self) -> None:
        before = assign(KEYS, MEMBERS)
        after = assign(KEYS, MEMBERS[:2])
        for member in MEMBERS[:2]:
            assert set(before[member]) <= set(after[member])
        moved = set(after[MEMBERS[0]]) - set(before[MEMBERS[0]])
        moved |= set(after[MEMBERS[1]]) - set(before[MEMBERS[1]])
        assert moved == set(before[MEMBERS[2]])

    def test_an_arrival_takes_keys_only_for_itself(self) -> None:
        grown = [*MEMBERS, "monitor-d-9"]
        before, after = assign(KEYS, MEMBERS), assign(KEYS, grown)
        for member in MEMBERS:
            assert set(after[member]) <= set(before[member])
        assert 500 <= len(after["monitor-d-9"]) <= 1000

    def test_handover_names_what_a_replica_gains_and_loses(self) -> None:
        me = MEMBERS[0]
        gone = handover(me, KEYS, MEMBERS, MEMBERS[:2])
        assert gone.lost == ()
        assert set(gone.gained) == {k for k in KEYS if owner(k, MEMBERS) == MEMBERS[2]} & {
            k for k in KEYS if owner(k, MEMBERS[:2]) == me
        }
        back = handover(me, KEYS, MEMBERS[:2], MEMBERS)
        assert (set(back.lost), back.gained) == (set(gone.gained), ())
        # A replica that counts itself out (no members) loses everything it had.
        out = handover(me, KEYS, MEMBERS, [])
        assert set(out.lost) == set(assign(KEYS, MEMBERS)[me])

    @settings(max_examples=50, deadline=None)
    @given(
        members=st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=6, unique=True),
        keys=st.lists(st.text(max_size=20), min_size=1, max_size=60, unique=True),
        leaving=st.integers(min_value=0, max_value=5),
    )
    def test_only_keys_of_a_leaving_member_ever_move(
        self, members: list[str], keys: list[str], leaving: int
    ) -> None:
        gone = members[leaving % len(members)]
        rest = [m for m in members if m != gone]
        for key in keys:
            if owner(key, members) != gone:
                assert owner(key, rest) == owner(key, members)
            else:
                assert owner(key, rest) in rest


class TestTakeoverOrder:
    def test_most_overdue_first_and_never_observed_due_now(self) -> None:
        order = takeover_order(
            ["fresh", "late", "never", "very-late"],
            {"fresh": 99.0, "late": 80.0, "very-late": 50.0},
            {"fresh": 15.0, "late": 15.0, "never": 15.0, "very-late": 15.0},
            now=100.0,
        )
        assert order == [("very-late", 65.0), ("late", 95.0), ("never", 100.0), ("fresh", 114.0)]

    def test_an_observation_from_the_future_counts_as_now(self) -> None:
        # Another replica's clock may run ahead: the task is due one interval from now.
        assert takeover_order(["k"], {"k": 500.0}, {"k": 10.0}, now=100.0) == [("k", 110.0)]


class TestOwnership:
    TASKS: ClassVar[list[TaskKey]] = [TaskKey(1400000001, f"task-{i}") for i in range(600)]

    def test_alone_owns_everything_and_leads(self) -> None:
        alone = Ownership.alone("solo")
        assert all(alone.owns(k) for k in self.TASKS)
        assert alone.leads

    def test_replicas_split_the_tasks_exactly_and_one_leads(self) -> None:
        views = [Ownership(m, MEMBERS) for m in MEMBERS]
        for key in self.TASKS:
            assert sum(v.owns(key) for v in views) == 1
            assert {v.owner_of(key) for v in views} == {hash_key_owner(key)}
        assert sum(v.leads for v in views) == 1

    def test_a_replica_outside_the_member_set_owns_nothing(self) -> None:
        cut_off = Ownership(MEMBERS[0], MEMBERS[1:])
        assert not any(cut_off.owns(k) for k in self.TASKS)
        assert not cut_off.leads

    def test_update_reports_the_tasks_gained_and_lost(self) -> None:
        view = Ownership(MEMBERS[0], MEMBERS)
        mine = {k for k in self.TASKS if view.owns(k)}
        grown = view.update(MEMBERS[:2], self.TASKS)
        assert grown.lost == ()
        assert set(grown.gained) == {k for k in self.TASKS if view.owns(k)} - mine
        assert grown.gained
        out = view.update([], self.TASKS)
        assert out.gained == ()
        assert set(out.lost) == mine | set(grown.gained)
        back = view.update(MEMBERS, self.TASKS)
        assert set(back.gained) == mine
        assert view.members == tuple(sorted(MEMBERS))


def hash_key_owner(key: TaskKey) -> str | None:
    return owner(f"{key.sdk_app_id}/{key.task_id}", MEMBERS)
