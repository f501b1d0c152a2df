"""The one place that chooses a store backend: every other module sees ``Store`` only."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from monitor.config import StorageConfig
from monitor.secrets import Secret, SecretError
from monitor.store.base import Store, StoreError
from monitor.store.redis import RedisStore, redis_location
from monitor.store.sqlite import SqliteStore

__all__ = ["StoreUrlError", "describe_store_url", "new_store", "store_from_url"]

DEFAULT_KEY_PREFIX = "trtc-monitor:"
_REDIS_SCHEMES = ("redis", "rediss", "unix")


class StoreUrlError(ValueError):
    """A store URL that names no store; the message never repeats a password."""


def new_store(
    config: StorageConfig,
    redis_url: Secret | None = None,
    environ: Mapping[str, str] | None = None,
) -> Store:
    """The store the configuration names, not yet opened.

    ``redis_url`` is the resolved ``storage.redis`` URL (``ResolvedSecrets.redis_url``); when
    it is not given it is read from its configured source here.
    """
    if config.backend == "sqlite":
        return SqliteStore(config.path)
    if config.backend == "redis":
        if redis_url is None:
            try:
                redis_url = config.redis.url_source().require(environ)
            except SecretError as exc:
                raise StoreError(str(exc)) from None
        return RedisStore(redis_url.get(), config.redis.key_prefix)
    raise StoreError(f"storage.backend {config.backend!r} is not available")


def _split_prefix(url: str) -> tuple[str, str]:
    """The Redis URL without the monitor's ``key_prefix`` query parameter, and the prefix."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for name, value in query if name == "key_prefix"]
    rest = [(name, value) for name, value in query if name != "key_prefix"]
    prefix = prefixes[-1] if prefixes else DEFAULT_KEY_PREFIX
    return urlunsplit(parts._replace(query=urlencode(rest))), prefix


def store_from_url(url: str) -> Store:
    """The (closed) store a URL names, for tools such as ``store copy``.

    ``sqlite:PATH``, or a Redis URL (``redis://``, ``rediss://``, ``unix://``) that may carry
    ``key_prefix=...`` in its query (default ``trtc-monitor:``; not passed on to Redis).
    """
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:").removeprefix("//")
        if not path:
            raise StoreUrlError("sqlite: URL without a path (use sqlite:PATH)")
        return SqliteStore(Path(path))
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme in _REDIS_SCHEMES:
        redis_url, prefix = _split_prefix(url)
        if not prefix:
            raise StoreUrlError("key_prefix may not be empty")
        return RedisStore(redis_url, prefix)
    raise StoreUrlError(
        "a store URL is sqlite:PATH or redis://[:password@]host:port/db"
        "[?key_prefix=...] (rediss:// and unix:// too)"
    )


def describe_store_url(url: str) -> str:
    """How to name a store URL in output: never its password."""
    if url.startswith("sqlite:"):
        return url
    redis_url, prefix = _split_prefix(url)
    return f"redis {redis_location(redis_url)} (key prefix {prefix!r})"
