"""ThrottledWarning: refusals anyone can provoke are logged once a period, with their count."""

from __future__ import annotations

from typing import Any

from monitor.http.throttled_log import ThrottledWarning


class Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))


def test_the_first_refusal_is_logged_and_the_next_wait_for_the_period() -> None:
    logger = Lines()
    warning = ThrottledWarning(logger, "refused_thing", every=3600.0)
    for n in range(3):
        warning.refused(reason=f"r{n}")
    assert logger.lines == [("refused_thing", {"reason": "r0", "refused": 1})]


def test_the_next_line_counts_the_refusals_it_stood_for() -> None:
    logger = Lines()
    warning = ThrottledWarning(logger, "refused_thing", every=3600.0)
    for n in range(3):
        warning.refused(reason=f"r{n}")
    warning.every = 0.0  # the period is over for the next refusal
    warning.refused(reason="r3")
    warning.refused(reason="r4")
    assert logger.lines[1:] == [
        ("refused_thing", {"reason": "r3", "refused": 3}),
        ("refused_thing", {"reason": "r4", "refused": 1}),
    ]
