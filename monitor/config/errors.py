"""The configuration's errors: every problem, each located in the file."""

from __future__ import annotations


class ConfigError(Exception):
    """The configuration is invalid; ``errors`` lists every problem, one line each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class LocatedErrors(ValueError):
    """Problems found by a validator that knows better than pydantic where they are.

    ``problems`` holds (location relative to the validated value, message) pairs.
    """

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems
