"""Fault injection rules and the choice of which one applies to a request.

Rules are data (``Fault``, loadable from a scenario or JSON); ``FaultInjector.decide`` is pure
apart from its seeded RNG, so a probability of 1.0 (no draw at all) or a fixed seed makes
every test deterministic. How a chosen fault is acted out on the wire lives in the app.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class FaultKind(enum.StrEnum):
    LATENCY = "latency"  # delay the answer, then answer normally
    TIMEOUT = "timeout"  # hold the request past any client timeout, then drop it
    DROP = "drop"  # close the connection without an answer
    HTTP_ERROR = "http_error"  # non-200 status with an HTML body, as a gateway would
    MALFORMED = "malformed"  # 200 whose body is not the envelope
    INTERNAL_ERROR = "internal_error"  # the InternalError envelope (or another code given)
    ERROR = "error"  # any API error code
    THROTTLE = "throttle"  # RequestLimitExceeded whatever the rate
    BAD_CREDENTIALS = "bad_credentials"  # AuthFailure.SecretIdNotFound for everyone


MALFORMED_BODIES = ("not_json", "no_response", "truncated")

_DEFAULT_CODES: dict[FaultKind, str] = {
    FaultKind.INTERNAL_ERROR: "InternalError",
    FaultKind.THROTTLE: "RequestLimitExceeded",
    FaultKind.BAD_CREDENTIALS: "AuthFailure.SecretIdNotFound",
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault rule.

    It applies to a request with ``probability``, only to the listed ``task_ids``/``actions``
    when given, and at most ``count`` times when given. Kind-specific settings: ``latency`` +
    uniform ``jitter`` seconds (latency), ``hold`` seconds (timeout), ``status`` (http_error),
    ``body`` one of not_json / no_response / truncated (malformed), ``code``/``message``
    (error kinds; internal_error defaults to InternalError).
    """

    kind: FaultKind
    probability: float = 1.0
    task_ids: frozenset[str] | None = None
    actions: frozenset[str] | None = None
    count: int | None = None
    latency: float = 0.0
    jitter: float = 0.0
    hold: float = 30.0
    status: int = 502
    body: str = "not_json"
    code: str = ""
    message: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability: must be between 0 and 1")
        if self.count is not None and self.count < 1:
            raise ValueError("count: must be at least 1 (omit it for no limit)")
        for name in ("latency", "jitter", "hold"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name}: must be a finite number of seconds >= 0")
        if not 400 <= self.status <= 599:
            raise ValueError("status: must be an HTTP error status (400-599)")
        if self.body not in MALFORMED_BODIES:
            raise ValueError(f"body: must be one of {', '.join(MALFORMED_BODIES)}")
        if self.kind is FaultKind.ERROR and not self.code:
            raise ValueError("code: required for kind error")

    @property
    def error_code(self) -> str:
        return self.code or _DEFAULT_CODES.get(self.kind, "")

    def applies(self, action: str, task_id: str) -> bool:
        if self.actions is not None and action not in self.actions:
            return False
        return self.task_ids is None or task_id in self.task_ids

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "probability": self.probability,
            "task_ids": None if self.task_ids is None else sorted(self.task_ids),
            "actions": None if self.actions is None else sorted(self.actions),
            "count": self.count,
            "latency": self.latency,
            "jitter": self.jitter,
            "hold": self.hold,
            "status": self.status,
            "body": self.body,
            "code": self.error_code,
            "message": self.message,
        }


_FIELDS = frozenset(Fault.__dataclass_fields__)


def _number(data: Mapping[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key}: must be a number, got {value!r}")
    return float(value)


def _strings(data: Mapping[str, Any], key: str) -> frozenset[str] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}: must be a list of strings")
    return frozenset(value)


def fault_from_mapping(data: Mapping[str, Any]) -> Fault:
    """Build a fault from plain data (JSON or YAML with durations already in seconds).

    Raises ValueError naming the offending key.
    """
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown key (known: {', '.join(sorted(_FIELDS))})")
    raw_kind = data.get("kind")
    try:
        kind = FaultKind(str(raw_kind))
    except ValueError:
        kinds = ", ".join(k.value for k in FaultKind)
        raise ValueError(f"kind: must be one of {kinds}, got {raw_kind!r}") from None
    count = data.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
        raise ValueError(f"count: must be an integer, got {count!r}")
    status = data.get("status", 502)
    if isinstance(status, bool) or not isinstance(status, int):
        raise ValueError(f"status: must be an integer, got {status!r}")
    for key in ("body", "code", "message"):
        if key in data and not isinstance(data[key], str):
            raise ValueError(f"{key}: must be a string")
    return Fault(
        kind=kind,
        probability=_number(data, "probability", 1.0),
        task_ids=_strings(data, "task_ids"),
        actions=_strings(data, "actions"),
        count=count,
        latency=_number(data, "latency", 0.0),
        jitter=_number(data, "jitter", 0.0),
        hold=_number(data, "hold", 30.0),
        status=status,
        body=data.get("body", "not_json"),
        code=data.get("code", ""),
        message=data.get("message", ""),
    )


@dataclass(slots=True)
class _Rule:
    id: int
    fault: Fault
    remaining: int | None
    fired: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do to one request: wait ``delay`` seconds, then act out ``fault`` if any."""

    delay: float = 0.0
    fault: Fault | None = None
    delayed_by: tuple[FaultKind, ...] = field(default_factory=tuple)


NO_FAULT = Decision()


class FaultInjector:
    """The active rules, in the order they were added.

    Every matching latency rule adds its delay; the first other rule that fires decides the
    answer, and later ones are not drawn (nor do they use up their count).
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._rules: list[_Rule] = []
        self._next_id = 1
        self.fired: dict[str, int] = {}

    def add(self, fault: Fault) -> int:
        rule = _Rule(self._next_id, fault, fault.count)
        self._next_id += 1
        self._rules.append(rule)
        return rule.id

    def extend(self, faults: Iterable[Fault]) -> list[int]:
        return [self.add(f) for f in faults]

    def remove(self, fault_id: int) -> bool:
        before = len(self._rules)
        self._rules = [r for r in self._rules if r.id != fault_id]
        return len(self._rules) != before

    def clear(self) -> None:
        self._rules.clear()

    def __len__(self) -> int:
        return len(self._rules)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"id": r.id, "remaining": r.remaining, "fired": r.fired, **r.fault.to_dict()}
            for r in self._rules
        ]

    def _fires(self, rule: _Rule, action: str, task_id: str) -> bool:
        f = rule.fault
        if not f.applies(action, task_id):
            return False
        # probability 1.0 never draws, so deterministic rules don't shift the RNG sequence
        if f.probability < 1.0 and not self._rng.random() < f.probability:
            return False
        rule.fired += 1
        self.fired[f.kind.value] = self.fired.get(f.kind.value, 0) + 1
        if rule.remaining is not None:
            rule.remaining -= 1
        return True

    def decide(self, action: str, task_id: str) -> Decision:
        if not self._rules:
            return NO_FAULT
        delay = 0.0
        delayed_by: list[FaultKind] = []
        chosen: Fault | None = None
        for rule in self._rules:
            kind = rule.fault.kind
            if kind is not FaultKind.LATENCY and chosen is not None:
                continue
            if not self._fires(rule, action, task_id):
                continue
            if kind is FaultKind.LATENCY:
                f = rule.fault
                delay += f.latency + (self._rng.uniform(0.0, f.jitter) if f.jitter else 0.0)
                delayed_by.append(kind)
            else:
                chosen = rule.fault
        self._rules = [r for r in self._rules if r.remaining is None or r.remaining > 0]
        if chosen is None and not delayed_by:
            return NO_FAULT
        return Decision(delay, chosen, tuple(delayed_by))
