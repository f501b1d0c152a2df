"""The one place that chooses a store backend: every other module sees ``Store`` only."""

from __future__ import annotations

from collections.abc import Mapping

from monitor.config import StorageConfig
from monitor.secrets import Secret, SecretError
from monitor.store.base import Store, StoreError
from monitor.store.redis import RedisStore
from monitor.store.sqlite import SqliteStore

__all__ = ["new_store"]


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
