"""The lookup tables and JSON spelling every stored record uses, in both stores."""

from __future__ import annotations

import json
from typing import Any, Final

from monitor.models import Source, Status
from monitor.store.base import AlertState

__all__ = ["ALERT_STATES", "SOURCES", "STATUSES", "dumps", "loads_dict"]

STATUSES: Final = {s.value: s for s in Status}
SOURCES: Final = {s.value: s for s in Source}
ALERT_STATES: Final[dict[str, AlertState]] = {"firing": "firing", "resolved": "resolved"}

# Compact, and ensure_ascii (the default) keeps every value plain ASCII, lone surrogates from
# callback bodies included, so any value is storable as SQLite TEXT and as a Redis string.
dumps = json.JSONEncoder(separators=(",", ":")).encode


def loads_dict(text: str | bytes) -> dict[str, Any]:
    """A stored JSON object; ``{}`` (the common case) without the parser, for load speed."""
    if text == "{}":
        return {}
    value: dict[str, Any] = json.loads(text)
    return value
