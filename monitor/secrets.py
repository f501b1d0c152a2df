"""Where secrets come from, and types that keep them out of logs, reprs and errors.

A secret is named in the configuration by its source (an environment variable, a file, or,
discouraged, a literal value) and read only when the daemon needs it. Every message built
here names the source, never the value.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

MASK = "**********"

logger = logging.getLogger(__name__)

SourceKind = Literal["env", "file", "literal"]


class SecretError(Exception):
    """A secret could not be obtained; the message names where it was looked for."""


class Secret:
    """A secret value that never shows itself in ``repr``, ``str`` or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        # Constant time, since secrets get compared with untrusted input (API tokens).
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        # Pickling would write the value in the clear wherever the bytes end up.
        raise TypeError("Secret values cannot be pickled")

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls,
            core_schema.str_schema(min_length=1),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda _: MASK),
        )


@dataclass(frozen=True, slots=True)
class Credentials:
    """Tencent Cloud credentials of one account. The SecretId is an identifier, not a secret."""

    secret_id: str
    secret_key: str
    token: str | None = None

    def __repr__(self) -> str:
        token = "None" if self.token is None else MASK
        return f"Credentials(secret_id={self.secret_id!r}, secret_key={MASK}, token={token})"

    __str__ = __repr__

    def secret_values(self) -> list[str]:
        """The values that must never be logged (the SecretId may be)."""
        return [v for v in (self.secret_key, self.token) if v]


class _Absent(Exception):
    """The source does not hold a value (variable unset, file missing)."""


def looks_like_secret(ref: str) -> bool:
    """Whether the name of a variable or file looks like a secret value typed in its place.

    Variable names are words (``TENCENTCLOUD_SECRET_KEY``) and paths have separators or
    extensions; a key or token is a long run of mixed letters and digits. Such a value must
    not be echoed in an error, since the mistake itself put a secret where names go.
    """
    if len(ref) < 16 or "/" in ref:
        return False
    classes = sum(
        (
            any(c.islower() for c in ref),
            any(c.isupper() for c in ref),
            any(c.isdigit() for c in ref),
        )
    )
    separators = sum(ref.count(c) for c in "_.-")
    mixed = classes == 3 and separators <= 1
    return mixed or (len(ref) >= 24 and classes >= 2 and not separators)


def shown_ref(ref: str) -> str:
    """``ref`` for a message: in full, or its first four characters if it looks like a secret."""
    if not looks_like_secret(ref):
        return ref
    return f"{ref[:4]}... ({len(ref)} characters; this looks like a secret value, not a name)"


@dataclass(frozen=True, slots=True)
class SecretSource:
    """One place to read a secret from.

    ``key`` is the configuration key path the source was configured at (for messages).
    For ``env`` and ``file`` sources ``ref`` is the variable name or the path; for a
    ``literal`` source it is the value itself, wrapped so it cannot leak.
    """

    kind: SourceKind
    ref: str | Secret
    key: str = ""

    @classmethod
    def from_env(cls, name: str, key: str = "") -> SecretSource:
        return cls("env", name, key)

    @classmethod
    def from_file(cls, path: str | Path, key: str = "") -> SecretSource:
        return cls("file", str(path), key)

    @classmethod
    def from_literal(cls, value: str | Secret, key: str = "") -> SecretSource:
        return cls("literal", value if isinstance(value, Secret) else Secret(value), key)

    def describe(self) -> str:
        """Where the value is read from, e.g. ``environment variable TENCENTCLOUD_SECRET_KEY``."""
        if self.kind == "env":
            return f"environment variable {shown_ref(str(self.ref))}"
        if self.kind == "file":
            return f"file {shown_ref(str(self.ref))}"
        return "literal value in the configuration file"

    def resolve(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The value, or None when the variable is unset/empty or the file does not exist.

        Raises SecretError when the source exists but cannot be used (unreadable file,
        not UTF-8, empty). A literal source logs a warning each time it is resolved.
        """
        try:
            return self._fetch(environ)
        except _Absent:
            return None

    def require(self, environ: Mapping[str, str] | None = None) -> Secret:
        """The value wrapped in a Secret; SecretError when absent or unusable."""
        try:
            return Secret(self._fetch(environ))
        except _Absent as absent:
            raise SecretError(self._message(str(absent))) from None

    def _message(self, problem: str) -> str:
        return f"{self.key}: {problem}" if self.key else problem

    def _fetch(self, environ: Mapping[str, str] | None) -> str:
        if self.kind == "literal":
            assert isinstance(self.ref, Secret)
            logger.warning(
                "literal secret in the configuration file at %s; "
                "prefer an environment variable or a file",
                self.key or "an unnamed key",
            )
            return self.ref.get()
        ref = str(self.ref)
        shown = shown_ref(ref)
        if self.kind == "env":
            env = os.environ if environ is None else environ
            if ref not in env:
                raise _Absent(f"environment variable {shown} is not set")
            if not env[ref]:
                raise _Absent(f"environment variable {shown} is empty")
            return env[ref]
        path = Path(ref)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise _Absent(f"file {shown} does not exist") from None
        except OSError as exc:
            # strerror only: the OSError text is safe but chaining it adds nothing.
            raise SecretError(
                self._message(f"file {shown} cannot be read ({exc.strerror})")
            ) from None
        try:
            value = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise SecretError(self._message(f"file {shown} is not valid UTF-8")) from None
        if not value:
            raise SecretError(self._message(f"file {shown} is empty"))
        return value


def parse_headers(text: str, where: str) -> dict[str, str]:
    """HTTP headers from a JSON object or from ``Name: value`` lines (``#`` starts a comment).

    Errors name ``where`` and the line number, never the content.
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            loaded = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise SecretError(f"{where}: not a valid JSON object (line {exc.lineno})") from None
        if not isinstance(loaded, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()
        ):
            raise SecretError(f"{where}: the JSON object must map header names to strings")
        headers: dict[str, str] = loaded
    else:
        headers = {}
        for number, line in enumerate(stripped.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, value = line.partition(":")
            if not sep or not _valid_header_name(name.strip()):
                raise SecretError(f"{where}: line {number} is not of the form 'Name: value'")
            headers[name.strip()] = value.strip()
    # Names are not echoed: a malformed line may well be a value typed in the wrong place.
    if not all(_valid_header_name(name) for name in headers):
        raise SecretError(f"{where}: a header name is not a valid HTTP token")
    if not headers:
        raise SecretError(f"{where}: no headers found")
    return headers


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _valid_header_name(name: str) -> bool:
    return bool(name) and all(c in _TOKEN_CHARS for c in name)
