"""Basic auth against a file's users, with a cache of successful checks."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections import OrderedDict

import bcrypt

from monitor.http.webconfig.settings import WebConfig

# Successful checks remembered (a scrape every few seconds must not cost a bcrypt each).
AUTH_CACHE_SIZE = 256


def parse_basic(header: str) -> tuple[str, bytes] | None:
    """(user, password) from an ``Authorization: Basic`` value; None when malformed."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


class BasicAuth:
    """Checks credentials against a file's users; successful checks are cached.

    The cache key is a SHA-256 of user, stored hash and password, so a changed hash or
    password misses; it holds no password. Failures are never cached (each costs a bcrypt,
    which also slows guessing). Checks run one at a time in a thread, off the loop.
    """

    def __init__(self, size: int = AUTH_CACHE_SIZE) -> None:
        self._size = size
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._lock = asyncio.Lock()
        self.bcrypt_checks = 0

    async def check(self, config: WebConfig, header: str) -> bool:
        parsed = parse_basic(header)
        if parsed is None:
            return False
        user, password = parsed
        hashed = config.users.get(user)
        target = hashed if hashed is not None else config.decoy
        if target is None:
            return False
        digest = hashlib.sha256()
        for part in (user.encode(), target, password):
            digest.update(len(part).to_bytes(4, "big"))
            digest.update(part)
        key = digest.digest()
        if hashed is not None and key in self._ok:
            self._ok.move_to_end(key)
            return True
        async with self._lock:
            self.bcrypt_checks += 1
            ok = await asyncio.to_thread(_checkpw, password, target)
        if not ok or hashed is None:
            return False
        self._ok[key] = None
        while len(self._ok) > self._size:
            self._ok.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._ok)


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)  # compares in constant time
    except ValueError:
        return False
