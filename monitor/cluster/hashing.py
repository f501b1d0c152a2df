"""Rendezvous (highest-random-weight) hashing of task keys over live replicas. Pure.

Every replica computes the same owner for a key from the same member list, with no
coordination: the owner is the member with the highest ``weight(member, key)``. A change of
membership moves only the keys of the member that came or went (a departing member's keys
spread over the others; a new member takes about ``1/n`` of everyone's), which is what makes a
takeover cheap.

The weight is a keyed hash that is the same in every process and on every machine (Python's
``hash`` is salted per process, so it cannot be used).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["MONITOR_KEY", "Handover", "assign", "handover", "owner", "takeover_order", "weight"]

# The key whose owner sends monitor-level alerts and exports the fleet series: one replica,
# chosen the same way as a task's owner.
MONITOR_KEY = "monitor"


def weight(member: str, key: str) -> int:
    """The member's weight for the key: 64 bits of BLAKE2b over both, unambiguously joined."""
    digest = hashlib.blake2b(digest_size=8)
    data = member.encode("utf-8", "surrogatepass")
    digest.update(len(data).to_bytes(4, "big"))
    digest.update(data)
    digest.update(key.encode("utf-8", "surrogatepass"))
    return int.from_bytes(digest.digest(), "big")


def owner(key: str, members: Iterable[str]) -> str | None:
    """The member that owns ``key``; None when there is no member."""
    best: str | None = None
    best_weight = -1
    for member in members:
        w = weight(member, key)
        # Ties (astronomically rare) go to the smaller name, so every replica agrees.
        if w > best_weight or (w == best_weight and best is not None and member < best):
            best, best_weight = member, w
    return best


def assign(keys: Iterable[str], members: Sequence[str]) -> dict[str, list[str]]:
    """Every member's keys (members with none included), keys in the order given."""
    out: dict[str, list[str]] = {member: [] for member in members}
    for key in keys:
        chosen = owner(key, members)
        if chosen is not None:
            out[chosen].append(key)
    return out


@dataclass(frozen=True, slots=True)
class Handover:
    """What one replica must do after a membership change."""

    gained: tuple[str, ...]  # start polling these
    lost: tuple[str, ...]  # stop polling these
    # Keys whose owner left the member set, whoever owns them now (this replica or another):
    # nobody has polled them since their owner went.
    orphaned: tuple[str, ...] = ()


def handover(me: str, keys: Iterable[str], before: Sequence[str], after: Sequence[str]) -> Handover:
    """Keys ``me`` owns after the change and did not before, the reverse, and the keys of every
    member that left (see :class:`Handover`)."""
    gained: list[str] = []
    lost: list[str] = []
    orphaned: list[str] = []
    staying = set(after)
    for key in keys:
        was, now = owner(key, before), owner(key, after)
        if now == me and was != me:
            gained.append(key)
        elif was == me and now != me:
            lost.append(key)
        if was is not None and now is not None and was not in staying:
            orphaned.append(key)
    return Handover(tuple(gained), tuple(lost), tuple(orphaned))


def takeover_order(
    keys: Iterable[str],
    last_observed: Mapping[str, float | None],
    interval: Mapping[str, float],
    now: float,
) -> list[tuple[str, float]]:
    """Gained keys with their due time, most overdue first (docs/high-availability.md).

    A key is due one interval after its last observation, kept in the shared store; a key never
    observed is due now. Overdue keys come first, the most overdue at the head; ties keep the
    key order so the result is deterministic.
    """
    due: list[tuple[float, str]] = []
    for key in keys:
        seen = last_observed.get(key)
        due.append((now if seen is None else min(now, seen) + interval[key], key))
    due.sort()
    return [(key, when) for when, key in due]
