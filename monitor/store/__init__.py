"""Durable state: tasks, their transitions and the alert state (docs/polling.md)."""

from __future__ import annotations

from monitor.store.base import AlertRecord, AlertState, Store, StoreError
from monitor.store.sqlite import SCHEMA_VERSION, SqliteStore

__all__ = ["SCHEMA_VERSION", "AlertRecord", "AlertState", "SqliteStore", "Store", "StoreError"]
