"""Reading the simulator's YAML: typed keys with their paths, durations, errors naming the key.

Generic: :mod:`monitor.simulator.scenario` says which keys a scenario has.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "Invalid",
    "ScenarioError",
    "Section",
    "int_list",
    "parse_duration",
    "range_of",
    "signed_duration",
]


class ScenarioError(ValueError):
    """An invalid scenario; ``key`` is the path of the offending key."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class Invalid(Exception):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: object, key: str = "duration") -> float:
    """Seconds from a number or a Prometheus-style duration string."""
    if isinstance(value, bool):
        raise Invalid(key, f"must be a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        parts = _DURATION_PART.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise Invalid(key, f"must be a duration like 500ms, 15s, 1m30s; got {value!r}")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise Invalid(key, f"must be a duration, got {value!r}")
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise Invalid(key, f"must be a duration >= 0, got {value!r}")
    return seconds


class Section:
    """A mapping being read; reading checks types, and unknown keys are refused up front."""

    def __init__(self, data: object, path: str, known: tuple[str, ...]) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise Invalid(path or "(top level)", "must be a mapping")
        for key in data:
            if key not in known:
                raise Invalid(
                    self._join(path, str(key)), f"unknown key (known: {', '.join(known)})"
                )
        self.data: dict[str, Any] = data
        self.path = path

    @staticmethod
    def _join(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def key(self, name: str) -> str:
        return self._join(self.path, name)

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def raw(self, name: str) -> Any:
        return self.data.get(name)

    def integer(self, name: str, default: int | None, minimum: int | None = None) -> int | None:
        value = self.data.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(self.key(name), f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise Invalid(self.key(name), f"must be at least {minimum}, got {value}")
        return value

    def string(self, name: str, default: str | None = None) -> str | None:
        value = self.data.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise Invalid(self.key(name), f"must be a non-empty string, got {value!r}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise Invalid(self.key(name), f"must be true or false, got {value!r}")
        return value

    def duration(self, name: str, default: float | None) -> float | None:
        value = self.data.get(name, default)
        return None if value is None else parse_duration(value, self.key(name))

    def probability(self, name: str, default: float) -> float:
        value = self.data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise Invalid(self.key(name), f"must be a number between 0 and 1, got {value!r}")
        return float(value)

    def items(self, name: str) -> list[Any]:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise Invalid(self.key(name), "must be a list")
        return value

    def secret(self, name: str, env: Mapping[str, str], required: bool) -> str | None:
        """A secret given literally as ``name`` or through the variable named by ``name_env``."""
        literal = self.string(name)
        var = self.string(f"{name}_env")
        if literal is not None and var is not None:
            raise Invalid(self.key(name), f"give either {name} or {name}_env, not both")
        if var is not None:
            value = env.get(var)
            if not value:
                raise Invalid(self.key(f"{name}_env"), f"environment variable {var} is not set")
            return value
        if literal is None and required:
            raise Invalid(self.key(name), f"required (or {name}_env)")
        return literal


def range_of(value: object, key: str) -> tuple[float, float]:
    if isinstance(value, list):
        if len(value) != 2:
            raise Invalid(key, "must be a duration or a [min, max] pair")
        lo = parse_duration(value[0], f"{key}[0]")
        hi = parse_duration(value[1], f"{key}[1]")
        if lo > hi:
            raise Invalid(key, f"min {value[0]!r} exceeds max {value[1]!r}")
        return (lo, hi)
    seconds = parse_duration(value, key)
    return (seconds, seconds)


def int_list(value: object, key: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise Invalid(key, "must be a non-empty list of integers")
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int):
            raise Invalid(f"{key}[{i}]", f"must be an integer, got {item!r}")
    return list(value)


def signed_duration(value: object, key: str) -> float:
    if isinstance(value, str) and value.startswith("-"):
        return -parse_duration(value[1:], key)
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        return float(value)
    return parse_duration(value, key)
