"""Every stored record's fields, spelt once: the stores only map these values to rows and
hashes. ``tasks`` (state and health), ``records`` (transitions and alert records), ``values``
(lookup tables, JSON), ``checks`` (what a read repairs: times no date can show; imported from
there)."""

from __future__ import annotations

from monitor.store.codec.checks import decoded
from monitor.store.codec.records import (
    ALERT_FIELDS,
    TRANSITION_FIELDS,
    alert_of,
    alert_values,
    check_transition,
    transition_of,
    transition_values,
)
from monitor.store.codec.tasks import (
    HEALTH_FIELDS,
    NO_HEALTH,
    STATE_FIELDS,
    TASK_FIELDS,
    TaskDecoder,
    answer_text,
    health_values,
    padded,
    state_values,
)
from monitor.store.codec.values import ALERT_STATES, SOURCES, STATUSES, dumps, loads_dict

__all__ = [
    "ALERT_FIELDS",
    "ALERT_STATES",
    "HEALTH_FIELDS",
    "NO_HEALTH",
    "SOURCES",
    "STATE_FIELDS",
    "STATUSES",
    "TASK_FIELDS",
    "TRANSITION_FIELDS",
    "TaskDecoder",
    "alert_of",
    "alert_values",
    "answer_text",
    "check_transition",
    "decoded",
    "dumps",
    "health_values",
    "loads_dict",
    "padded",
    "state_values",
    "transition_of",
    "transition_values",
]
