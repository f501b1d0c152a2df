"""The ``*_env``/``*_file``/literal pattern of a secret named by a section, and the list of
secrets a configuration refers to.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from monitor.config.errors import LocatedErrors
from monitor.secrets import SecretSource


def one_source(model: BaseModel, base: str) -> None:
    """At most one of ``{base}_env``, ``{base}_file`` and ``{base}`` may be set."""
    names = [f"{base}_env", f"{base}_file", base]
    given = [n for n in names if getattr(model, n) is not None]
    if len(given) > 1:
        raise LocatedErrors(
            [((given[1],), f"set only one of {', '.join(names)} (also set: {given[0]})")]
        )


def field_used(model: BaseModel, base: str) -> str:
    """Which of the source keys is set (``base`` itself when none is)."""
    for name in (f"{base}_env", f"{base}_file", base):
        if getattr(model, name) is not None:
            return name
    return base


def secret_source(
    model: BaseModel, base: str, key: str, default_env: str | None = None
) -> SecretSource | None:
    env, file, literal = (getattr(model, n) for n in (f"{base}_env", f"{base}_file", base))
    if env is not None:
        return SecretSource.from_env(env, key)
    if file is not None:
        return SecretSource.from_file(file, key)
    if literal is not None:
        return SecretSource.from_literal(literal, key)
    return SecretSource.from_env(default_env, key) if default_env else None


@dataclass(frozen=True, slots=True)
class SecretSpec:
    """One secret the configuration refers to."""

    loc: tuple[str | int, ...]  # logical key path, e.g. ("accounts", "default", "secret_key")
    source: SecretSource
    required: bool
    line_loc: tuple[str | int, ...] = ()  # the key actually set in the file, for line numbers
