"""The one place that chooses a store backend: every other module sees ``Store`` only."""

from __future__ import annotations

from monitor.config import StorageConfig
from monitor.store.base import Store, StoreError
from monitor.store.sqlite import SqliteStore

__all__ = ["new_store"]


def new_store(config: StorageConfig) -> Store:
    """The store the configuration names, not yet opened."""
    if config.backend == "sqlite":
        return SqliteStore(config.path)
    raise StoreError(f"storage.backend {config.backend!r} is not available")
