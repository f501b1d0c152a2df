"""Durations in Prometheus syntax (``500ms``, ``15s``, ``1h30m``) and percentages. Pure."""

from __future__ import annotations

import math
import re

_MS_PER_UNIT: dict[str, int] = {
    "y": 365 * 24 * 3600 * 1000,
    "w": 7 * 24 * 3600 * 1000,
    "d": 24 * 3600 * 1000,
    "h": 3600 * 1000,
    "m": 60 * 1000,
    "s": 1000,
    "ms": 1,
}

# Units must appear largest first and at most once each, as Prometheus requires; the
# alternatives are tried in order so "ms" is not mistaken for "m" followed by garbage.
_DURATION_RE = re.compile(
    r"(?:(?P<y>[0-9]+)y)?(?:(?P<w>[0-9]+)w)?(?:(?P<d>[0-9]+)d)?(?:(?P<h>[0-9]+)h)?"
    r"(?:(?P<m>[0-9]+)m(?!s))?(?:(?P<s>[0-9]+)s)?(?:(?P<ms>[0-9]+)ms)?"
)
_PERCENT_RE = re.compile(r"(?P<num>[0-9]+(?:\.[0-9]+)?)\s*%")
_NUMBER_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?")

# Prometheus stores durations as int64 milliseconds; anything longer is a typo, not a plan.
_MAX_MS = 2**63 - 1

SYNTAX_HINT = "use Prometheus syntax such as 500ms, 15s, 5m, 1h"


def parse_duration(text: str, *, allow_zero: bool = False) -> float:
    """Seconds in a Prometheus duration such as ``1h30m`` or ``500ms``.

    ``0`` (and ``0s``, ``0ms``, ...) is only accepted with ``allow_zero``.
    Raises ValueError naming the text and the expected syntax.
    """
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r} ({SYNTAX_HINT})")
    stripped = text.strip()
    if stripped == "0":
        total_ms = 0
    else:
        match = _DURATION_RE.fullmatch(stripped)
        if not stripped or match is None:
            raise ValueError(f'invalid duration "{text}" ({SYNTAX_HINT})')
        total_ms = sum(
            int(value) * _MS_PER_UNIT[unit]
            for unit, value in match.groupdict().items()
            if value is not None
        )
    if total_ms > _MAX_MS:
        raise ValueError(f'duration "{text}" is too long')
    if total_ms == 0 and not allow_zero:
        raise ValueError(f'duration "{text}" must be greater than zero')
    return total_ms / 1000


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for ``seconds``, rounded to the millisecond.

    ``90`` gives ``1m30s``, ``0.5`` gives ``500ms``, ``0`` gives ``0s``.
    """
    if isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration (finite and >= 0 only)")
    remaining = round(seconds * 1000)
    if remaining == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in _MS_PER_UNIT.items():
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_percent(value: str | float) -> float:
    """A fraction from ``"10%"`` (0.1) or from a bare fraction such as ``0.1`` or ``"0.1"``.

    Negative, infinite and NaN values are rejected; range checks belong to the caller.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid percentage {value!r} (write it like 10% or 0.1)")
    if isinstance(value, int | float):
        fraction = float(value)
    elif isinstance(value, str):
        stripped = value.strip()
        if match := _PERCENT_RE.fullmatch(stripped):
            fraction = float(match["num"]) / 100
        elif _NUMBER_RE.fullmatch(stripped):
            fraction = float(stripped)
        else:
            raise ValueError(f'invalid percentage "{value}" (write it like 10% or 0.1)')
    else:
        raise ValueError(f"invalid percentage {value!r} (write it like 10% or 0.1)")
    if not math.isfinite(fraction) or fraction < 0:
        raise ValueError(f"invalid percentage {value!r} (must be a finite value >= 0)")
    return fraction
