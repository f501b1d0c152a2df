"""The ``*_env``/``*_file``/literal pattern of a secret named by a section, and the list of
secrets a configuration refers to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from pydantic import BaseModel, model_validator

from monitor.config.errors import LocatedErrors
from monitor.config.types import Model
from monitor.secrets import SecretSource

Problem = tuple[tuple[str | int, ...], str]


def source_keys(base: str) -> tuple[str, str, str]:
    """The keys that may name secret ``base``, in the order they are looked at."""
    return (f"{base}_env", f"{base}_file", base)


def source_problems(model: BaseModel, base: str) -> list[Problem]:
    """At most one of ``{base}_env``, ``{base}_file`` and ``{base}`` may be set."""
    names = source_keys(base)
    given = [n for n in names if getattr(model, n) is not None]
    if len(given) > 1:
        return [((given[1],), f"set only one of {', '.join(names)} (also set: {given[0]})")]
    return []


def one_source(model: BaseModel, base: str) -> None:
    problems = source_problems(model, base)
    if problems:
        raise LocatedErrors(problems)


def field_used(model: BaseModel, base: str) -> str:
    """Which of the source keys is set (``base`` itself when none is)."""
    for name in source_keys(base):
        if getattr(model, name) is not None:
            return name
    return base


def secret_source(model: BaseModel, base: str, key: str) -> SecretSource | None:
    """Where secret ``base`` of ``model`` is read from, None when no key names it; ``key`` is
    its configuration key path (for messages)."""
    env, file, literal = (getattr(model, n) for n in source_keys(base))
    if env is not None:
        return SecretSource.from_env(env, key)
    if file is not None:
        return SecretSource.from_file(file, key)
    if literal is not None:
        return SecretSource.from_literal(literal, key)
    return None


def secret_source_or_env(model: BaseModel, base: str, key: str, default_env: str) -> SecretSource:
    """As ``secret_source``, with variable ``default_env`` when no key names the secret."""
    source = secret_source(model, base, key)
    return SecretSource.from_env(default_env, key) if source is None else source


class SecretKeys(Model):
    """A section that names each secret of ``SECRET_BASES`` by one of three keys:
    ``{base}_env`` (a variable), ``{base}_file`` or, discouraged, ``{base}`` (the value)."""

    SECRET_BASES: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _single_sources(self) -> Self:
        problems = [p for base in self.SECRET_BASES for p in source_problems(self, base)]
        if problems:
            raise LocatedErrors(problems)
        return self


@dataclass(frozen=True, slots=True)
class SecretSpec:
    """One secret the configuration refers to."""

    loc: tuple[str | int, ...]  # logical key path, e.g. ("accounts", "default", "secret_key")
    source: SecretSource
    required: bool
    line_loc: tuple[str | int, ...] = ()  # the key actually set in the file, for line numbers
