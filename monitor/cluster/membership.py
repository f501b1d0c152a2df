"""Membership: each replica renews an entry every ``heartbeat``; entries older than
``member_timeout`` are dead (docs/high-availability.md).

The entries are a sorted set of replica ids scored by the time of their last heartbeat on
Redis's clock (``TIME``), so clock skew between replicas changes nothing. One Lua script per
heartbeat renews the entry, drops the dead and answers the live set, atomically.

A replica that cannot renew for ``member_timeout`` (measured on its own monotonic clock from
its last successful heartbeat) counts itself out: the others have declared it dead by then and
taken its tasks, so it must stop polling them. It rejoins at its next successful heartbeat.

A death is noticed when the dead entry expires, not at the next heartbeat after that: each
heartbeat also answers when the earliest other entry expires, and the next exchange comes then
if that is sooner than one heartbeat. A replica that died just after its last heartbeat is thus
declared dead ``member_timeout`` after it, by every survivor at about the same moment, rather
than up to one heartbeat later at each survivor's own phase.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from typing import Any, Final

import redis.asyncio as aredis
from redis.exceptions import RedisError

from monitor.log import get_logger

__all__ = ["Membership", "default_replica_id"]

log = get_logger(__name__)

# KEYS: members. ARGV: replica id, member timeout (s), "1" to join / "0" to leave.
# Returns {the live replica ids, seconds until the earliest other live entry expires ("" if none)}.
_LUA_HEARTBEAT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local timeout = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%.17g', now - timeout))
if ARGV[3] == '1' then
    redis.call('ZADD', KEYS[1], string.format('%.17g', now), ARGV[1])
else
    redis.call('ZREM', KEYS[1], ARGV[1])
end
-- Nobody heartbeats for long: let an abandoned set expire.
redis.call('PEXPIRE', KEYS[1], math.ceil(timeout * 1000) * 10)
local live = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local names = {}
local expires = nil
for i = 1, #live, 2 do
    names[#names + 1] = live[i]
    if live[i] ~= ARGV[1] then
        local at = tonumber(live[i + 1]) + timeout - now
        if expires == nil or at < expires then expires = at end
    end
end
table.sort(names)
return {names, expires and string.format('%.17g', expires) or ''}
"""

# An entry is dropped once it is strictly older than the timeout: look just after that.
_EXPIRY_MARGIN: Final = 0.005


def default_replica_id() -> str:
    """The host name plus the process id: unique among processes that share a Redis."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Membership:
    """This replica's heartbeat and its view of the live replicas.

    ``on_change(before, after)`` is called (on the event loop) whenever the live set this
    replica sees changes, including to and from ``()`` when it loses or regains Redis.
    """

    def __init__(
        self,
        client: aredis.Redis,
        key: bytes,
        replica_id: str,
        *,
        heartbeat: float = 2.0,
        member_timeout: float = 10.0,
        on_change: Callable[[tuple[str, ...], tuple[str, ...]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not replica_id:
            raise ValueError("replica_id may not be empty")
        if member_timeout < 2 * heartbeat:
            raise ValueError("member_timeout must be at least twice the heartbeat")
        self.replica_id = replica_id
        self.heartbeat = heartbeat
        self.member_timeout = member_timeout
        self._key = key
        self._script: Any = client.register_script(_LUA_HEARTBEAT)
        self._on_change = on_change
        self._clock = clock
        self._members: tuple[str, ...] = ()
        self._last_ok: float | None = None
        self._next_expiry: float | None = None  # on ``clock``: the earliest other entry's end
        self._task: asyncio.Task[None] | None = None

    @property
    def members(self) -> tuple[str, ...]:
        """The live replicas as last seen, sorted; ``()`` while this replica counts itself out."""
        return self._members

    @property
    def joined(self) -> bool:
        return self.replica_id in self._members

    def next_wait(self) -> float:
        """Seconds until the next heartbeat: one heartbeat, or sooner when another replica's
        entry expires before that, so its death is seen when it is due (module docstring)."""
        wait = self.heartbeat
        if self._next_expiry is not None:
            wait = min(wait, max(0.0, self._next_expiry - self._clock()) + _EXPIRY_MARGIN)
        return wait

    async def beat(self) -> tuple[str, ...]:
        """One heartbeat now; returns the live set (RedisError or TimeoutError on failure)."""
        return await self._exchange(join=True)

    async def _exchange(self, *, join: bool) -> tuple[str, ...]:
        args = [self.replica_id, repr(self.member_timeout), "1" if join else "0"]
        # A heartbeat that takes half the timeout is as good as missed.
        async with asyncio.timeout(self.member_timeout / 2):
            live, expires = await self._script(keys=[self._key], args=args)
        members = tuple(sorted(m.decode() if isinstance(m, bytes) else str(m) for m in live))
        now = self._clock()
        if join:
            self._last_ok = now
        # Redis's clock says how far off the expiry is; the wait is kept on this one.
        expires = expires.decode() if isinstance(expires, bytes) else str(expires)
        self._next_expiry = now + float(expires) if expires else None
        self._set(members)
        return members

    def _set(self, members: tuple[str, ...]) -> None:
        before, self._members = self._members, members
        if before != members:
            log.info("cluster_members_changed", replicas=list(members), replica=self.replica_id)
            if self._on_change is not None:
                try:
                    self._on_change(before, members)
                except Exception:
                    # The heartbeat must go on whatever a listener does.
                    log.exception("cluster_on_change_failed", replica=self.replica_id)

    async def start(self) -> None:
        """Join now (raises when Redis does not answer), then keep renewing in the background."""
        await self.beat()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.next_wait())
            try:
                await self.beat()
            except (RedisError, TimeoutError) as exc:
                self._missed(exc)

    def _missed(self, exc: BaseException) -> None:
        self._next_expiry = None  # retried a heartbeat later, not at once again and again
        silent = self._clock() - (self._last_ok if self._last_ok is not None else 0.0)
        log.warning(
            "cluster_heartbeat_failed",
            replica=self.replica_id,
            error=type(exc).__name__,
            silent_seconds=round(silent, 1),
        )
        if silent >= self.member_timeout and self._members:
            # The others count this replica dead by now: it owns nothing until it rejoins.
            self._set(())

    async def stop(self, *, leave: bool = True) -> None:
        """Stop renewing; ``leave`` removes the entry at once so the others take over now."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if leave:
            # On failure the entry times out as a crashed replica's would.
            with contextlib.suppress(RedisError, TimeoutError):
                await self._exchange(join=False)
