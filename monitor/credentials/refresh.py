"""Keeping an account's credentials fresh in the background.

The arithmetic is pure (time and randomness are arguments): when a refresh is due, how long to
back off after a failure. ``RefreshingProvider`` is the thin asyncio shell around it: one
background task per account does every fetch, so a poll reads the credentials in use without
waiting, and waits (for one attempt at most) only when they have already expired. A failed
refresh keeps the old credentials while they are valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field

import aiohttp
import structlog

from monitor.credentials.base import CredentialsError, Issued, NotPresent, Source
from monitor.credentials.chain import NoCredentials, absent_sources
from monitor.log import set_secret_group
from monitor.secrets import Credentials

log = structlog.get_logger("monitor.credentials")

# Five minutes ahead at most, as the official SDK's CVM role credential does...
REFRESH_AHEAD_MAX = 300.0
# ...but never in the first half of a lifetime, so short credentials are not refreshed in a loop.
REFRESH_NOT_BEFORE = 0.5
# Credentials this close to their expiry are not sent: the request would arrive too late.
EXPIRY_MARGIN = 1.0
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
# Without usable credentials every poll of the account fails: retry at least this often.
BACKOFF_CAP_EXPIRED = 10.0
BACKOFF_FLOOR = 0.5
FETCH_TIMEOUT = 30.0
WAIT_TIMEOUT = 10.0

SUCCESS = "success"
FAILURE = "failure"
UNCHANGED = "unchanged"


def refresh_lead(lifetime: float) -> float:
    """How long before expiry a refresh starts: when a fifth of the lifetime or five minutes
    remain, whichever comes first (but not before half of the lifetime has passed)."""
    lifetime = max(0.0, lifetime)
    return max(lifetime / 5, min(REFRESH_AHEAD_MAX, lifetime * REFRESH_NOT_BEFORE))


def refresh_due(issued_at: float, expires_at: float) -> float:
    """When credentials obtained at ``issued_at`` should be replaced."""
    return expires_at - refresh_lead(expires_at - issued_at)


def retry_delay(
    attempt: int,
    u: float,
    remaining: float | None = None,
    *,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
) -> float:
    """Seconds before retry number ``attempt`` (1 for the first retry): exponential, capped,
    jittered by ``u`` in [0, 1) over the upper half (so replicas do not retry in step).

    ``remaining`` is how long the credentials in use stay valid. While they are, it bounds the
    delay to half of it, so several attempts fit before they expire; once they have expired
    (or when there are none: None), the cap drops to ``BACKOFF_CAP_EXPIRED``."""
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    if remaining is not None and remaining > 0:
        ceiling = min(ceiling, max(BACKOFF_FLOOR, remaining / 2))
    else:
        ceiling = min(ceiling, BACKOFF_CAP_EXPIRED)
    return ceiling * (0.5 + 0.5 * min(max(u, 0.0), 1.0))


def expiry_margin(lifetime: float) -> float:
    """How long before their expiry credentials stop being sent: a second, or a tenth of
    very short lifetimes."""
    return min(EXPIRY_MARGIN, max(0.0, lifetime) / 10)


@dataclass(frozen=True, slots=True)
class RefreshEvent:
    """One refresh attempt's result, for metrics and alerts."""

    account: str
    source: str  # the source that answered, or the one that failed
    outcome: str  # success | failure | unchanged
    expires_at: float | None  # of the credentials in use after the attempt
    previous_source: str | None  # of the credentials in use before it
    failing: bool
    error: str | None = None


RefreshObserver = Callable[[RefreshEvent], None]


@dataclass(eq=False, repr=False)
class RefreshingProvider:
    """A ``CredentialProvider`` over one ``Source`` (see ``base.CredentialProvider``):
    ``origin``, the account's configured source (or chain)."""

    account: str
    origin: Source
    _: KW_ONLY
    clock: Callable[[], float] = time.time
    rng: Callable[[], float] = random.random
    fetch_timeout: float = FETCH_TIMEOUT
    wait_timeout: float = WAIT_TIMEOUT
    observer: RefreshObserver | None = None
    _issued: Issued | None = field(default=None, init=False)
    _issued_at: float = field(default=0.0, init=False)
    _due: float = field(default=0.0, init=False)
    _failures: int = field(default=0, init=False)
    _last_error: str | None = field(default=None, init=False)
    # The sources the last attempt tried, when none of them was present (else None).
    _absent: tuple[NotPresent, ...] | None = field(default=None, init=False)
    _session: aiohttp.ClientSession | None = field(default=None, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _stopping: bool = field(default=False, init=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _attempted: asyncio.Future[None] | None = field(default=None, init=False)
    _group: str = field(init=False)

    def __post_init__(self) -> None:
        self._group = f"credentials:{self.account}:{id(self)}"

    def __repr__(self) -> str:
        return (
            f"RefreshingProvider(account={self.account!r}, source={self.source!r}, "
            f"expires_at={self.expires_at!r}, failures={self._failures})"
        )

    # ------------------------------------------------------------------ reading

    @property
    def mode(self) -> str:
        """What the account is configured with (``auto``, ``oidc``, ``env+role``, ...)."""
        return self.origin.name

    @property
    def source(self) -> str:
        """The source whose credentials are in use (the configured mode before any)."""
        return self._issued.source if self._issued is not None else self.origin.name

    @property
    def expires_at(self) -> float | None:
        return self._issued.expires_at if self._issued is not None else None

    @property
    def failing(self) -> bool:
        """The last attempt failed (and no later one succeeded)."""
        return self._failures > 0

    @property
    def last_error(self) -> str | None:
        return self._last_error

    @property
    def running(self) -> bool:
        """Launched and not stopped: refreshing in the background."""
        return self._task is not None

    @property
    def next_attempt_at(self) -> float | None:
        return None if math.isinf(self._due) else self._due

    def current(self) -> Credentials | None:
        issued = self._issued
        if issued is None:
            return None
        if not self._usable(self.clock()):
            return None
        return issued.credentials

    def _usable(self, now: float) -> bool:
        issued = self._issued
        if issued is None:
            return False
        expires_at = issued.expires_at
        if expires_at is None:
            return True
        return now < expires_at - expiry_margin(expires_at - self._issued_at)

    async def get(self) -> Credentials:
        credentials = self.current()
        if credentials is not None:
            return credentials
        attempted = self._attempted
        if self._task is None or attempted is None:
            raise CredentialsError(self.source, "credentials provider not started")
        if self._failures and self.clock() < self._due:
            # Backing off: every poll of the account would otherwise pile onto the source.
            raise self._unavailable()
        self._due = min(self._due, self.clock())
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(attempted), self.wait_timeout)
        credentials = self.current()
        if credentials is None:
            raise self._unavailable()
        return credentials

    def _unavailable(self) -> CredentialsError:
        if self._absent is not None:
            # Nothing was found at all: said as such, with every source tried, so that it is
            # never mistaken for credentials that Tencent Cloud rejected.
            return NoCredentials(self._absent, self.origin.name)
        what = "expired" if self._issued is not None else "not available"
        reason = f"; last refresh: {self._last_error}" if self._last_error else ""
        return CredentialsError(self.source, f"credentials {what}{reason}")

    # ------------------------------------------------------------------ life cycle

    def launch(self, session: aiohttp.ClientSession) -> None:
        """Begin refreshing on ``session`` now, without waiting: from here on ``get`` waits
        for the first attempt instead of failing."""
        if self._task is not None:
            return
        self._stopping = False
        self._session = session
        self._attempted = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(), name=f"credentials-{self.account}")

    async def first_attempt(self) -> None:
        """Until the first attempt is over (bounded by the fetch timeout)."""
        attempted = self._attempted
        if self._issued is not None or self._failures or attempted is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(attempted), self.fetch_timeout)

    async def start(self, session: aiohttp.ClientSession, *, wait: bool = True) -> None:
        """Begin refreshing on ``session``; with ``wait``, until the first attempt is over
        (bounded): a daemon starts with credentials when it can, and runs on when not."""
        self.launch(session)
        if wait:
            await self.first_attempt()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            # On Python 3.11 asyncio.wait_for can swallow a cancellation that arrives as its
            # inner wait finishes; the loop also checks this flag, and the cancel is repeated
            # until the task is really over, so a stop never hangs on it.
            self._stopping = True
            self._wake.set()
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
            if not task.cancelled() and task.exception() is not None:
                log.error("credentials_refresh_ended", error=repr(task.exception()))
        set_secret_group(self._group, ())

    async def refresh_now(self) -> None:
        """One attempt right away (the ``credentials`` command, tests)."""
        await self._refresh()

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        while not self._stopping:
            delay = self._due - self.clock()
            if delay > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), None if math.isinf(delay) else delay)
                continue
            await self._refresh()

    async def _refresh(self) -> None:
        assert self._session is not None, "provider not started"
        failed_source = self.origin.name
        absent: tuple[NotPresent, ...] | None = None
        try:
            issued: Issued | None = await asyncio.wait_for(
                self.origin.fetch(self._session), self.fetch_timeout
            )
            error: str | None = None
        except CredentialsError as exc:
            issued, error, failed_source = None, str(exc), exc.source
            absent = absent_sources(exc)
        except TimeoutError:
            issued, error = None, f"{failed_source}: no answer within {self.fetch_timeout:g}s"
        except Exception as exc:  # a bug in one source must not end refreshing
            issued, error = None, f"{failed_source}: unexpected {type(exc).__name__}"
            log.exception("credentials_refresh_crashed", account=self.account)
        now = self.clock()
        if issued is not None:
            self._absent = None
            self._accept(issued, now)
        else:
            assert error is not None
            self._absent = absent
            self._fail(error, failed_source, now)
        attempted = self._attempted
        if attempted is not None:
            self._attempted = asyncio.get_running_loop().create_future()
            if not attempted.done():
                attempted.set_result(None)

    def _accept(self, issued: Issued, now: float) -> None:
        previous = self._issued
        if previous is not None and issued.credentials == previous.credentials:
            # The source has not rotated them yet (the metadata service hands out the same
            # ones for a while): ask again later, without calling it a failure.
            remaining = (issued.expires_at or now) - now
            self._due = now + retry_delay(self._failures + 1, self.rng(), remaining)
            self._failures = 0
            self._last_error = None
            self._notify(UNCHANGED, issued.source, previous)
            return
        # The redactor learns the new secrets before anything can log them; the previous
        # generation stays hidden too, since requests signed with it may still be in flight.
        set_secret_group(
            self._group,
            [*issued.secret_values(), *(previous.secret_values() if previous else ())],
        )
        recovered = self._failures > 0
        self._issued, self._issued_at = issued, now
        self._failures, self._last_error = 0, None
        self._due = (
            refresh_due(now, issued.expires_at) if issued.expires_at is not None else math.inf
        )
        log.info(
            "credentials_refreshed" if previous is not None else "credentials_resolved",
            account=self.account,
            source=issued.source,
            expires_at=issued.expires_at,
            expires_in=None if issued.expires_at is None else round(issued.expires_at - now, 1),
            recovered=recovered,
        )
        self._notify(SUCCESS, issued.source, previous)

    def _fail(self, error: str, source: str, now: float) -> None:
        self._failures += 1
        self._last_error = error
        issued = self._issued
        remaining = None
        if issued is not None and issued.expires_at is not None:
            remaining = issued.expires_at - now
        elif issued is not None:
            remaining = math.inf  # permanent ones in use: no hurry
        self._due = now + retry_delay(self._failures, self.rng(), remaining)
        log.warning(
            "credentials_refresh_failed",
            account=self.account,
            source=source,
            error=error,
            attempt=self._failures,
            retry_in=round(self._due - now, 2),
            expires_in=None if remaining is None or math.isinf(remaining) else round(remaining, 1),
            in_use=self._usable(now),
        )
        self._notify(FAILURE, source, issued, error)

    def _notify(
        self, outcome: str, source: str, previous: Issued | None, error: str | None = None
    ) -> None:
        if self.observer is None:
            return
        self.observer(
            RefreshEvent(
                account=self.account,
                source=source,
                outcome=outcome,
                expires_at=self.expires_at,
                previous_source=previous.source if previous is not None else None,
                failing=self._failures > 0,
                error=error,
            )
        )
