"""What ``run`` checks before it starts, and the ``check-config`` command built on it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from monitor.config.errors import ConfigError
from monitor.config.loading import load_config
from monitor.config.locate import locate
from monitor.config.model import Config
from monitor.config.secrets import ResolvedSecrets, resolve_secrets, robot_url_problem
from monitor.secrets import SecretError, parse_headers


@dataclass(frozen=True, slots=True)
class Validated:
    """A configuration as ``run`` takes it: the file, every secret it names, read, and the
    problems that do not stop it (``warnings``)."""

    config: Config
    secrets: ResolvedSecrets
    warnings: list[str]


def validate_for_run(path: Path | str, environ: Mapping[str, str] | None = None) -> Validated:
    """Everything ``run`` checks before it opens the store or polls: the file (keys, values,
    access hosts), every secret it names (read from its variable or file), and each account's
    credential plan and access host as the daemon builds them. ConfigError lists every problem;
    ``check-config`` runs this very function, so a file it calls valid is one ``run`` takes."""
    from monitor.accounts import build_accounts
    from monitor.credentials import CredentialSet

    config = load_config(path)
    secrets = resolve_secrets(config, environ)
    problems = _storage_problems(config)
    if problems:
        raise ConfigError(problems)
    try:
        # As the daemon does at start, without starting anything: no I/O.
        plan = CredentialSet(lambda event: None).plan(config, secrets)
        build_accounts(config, plan.providers)
    except ValueError as exc:
        raise ConfigError([f"{config.source}: {exc}"]) from None
    return Validated(config, secrets, config.warnings())


_SQLITE_HEADER = b"SQLite format 3\x00"


def _storage_problems(config: Config) -> list[str]:
    """What makes ``run`` refuse an SQLite ``storage.path`` before anything else, found
    without creating or locking anything (a running daemon may hold the file: that is fine)."""
    if config.storage.backend != "sqlite":
        return []
    store = Path(config.storage.path)
    loc: tuple[str | int, ...] = ("storage", "path")
    if store.is_dir():
        return [
            config.message_at(loc, f"store {store} is a directory; storage.path must name a file")
        ]
    if store.is_file():
        try:
            with store.open("rb") as file:
                head = file.read(len(_SQLITE_HEADER))
        except OSError as exc:
            return [config.message_at(loc, f"store {store} cannot be read ({exc.strerror})")]
        if head and head != _SQLITE_HEADER:
            return [config.message_at(loc, f"store {store} is not a SQLite database")]
        return []
    ancestor = store.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return [
            config.message_at(
                loc, f"store {store}: cannot create its directory ({ancestor} is not a directory)"
            )
        ]
    return []


def _secret_warnings(config: Config, environ: Mapping[str, str] | None) -> list[str]:
    """``--syntax-only``: secrets that cannot be read on this machine, as warnings."""
    warnings: list[str] = []
    for spec in config.secret_specs():
        if spec.source.kind == "literal" or not spec.required:
            continue
        try:
            value = spec.source.require(environ)
            if spec.loc[-1] == "headers":
                parse_headers(value.get(), f"{spec.source.key}: {spec.source.describe()}")
            elif spec.loc[-1] == "url" and spec.loc[:2] == ("alerts", "receivers"):
                problem = robot_url_problem(value.get())
                if problem:
                    raise SecretError(f"{spec.source.key}: {spec.source.describe()} {problem}")
        except SecretError as exc:
            warnings.append(config.message_at(spec.line_loc, str(exc)))
    return warnings


def credential_warnings(
    config: Config, environ: Mapping[str, str] | None = None, home: Path | None = None
) -> list[str]:
    """Accounts whose credential chain finds nothing on this machine (told without the
    network: the CVM role is named, not asked)."""
    from monitor.credentials.chain import describe_tried
    from monitor.credentials.presence import local_presence

    warnings: list[str] = []
    for name, account in config.accounts.items():
        found = local_presence(account, environ=environ, home=home)
        if found.found is not None:
            continue
        tried = describe_tried(found.tried)
        where = ("accounts", name, "credentials")
        if found.remote is not None:
            message = (
                f"accounts.{name}: no credentials on this machine (tried {tried}); only the "
                f"CVM role remains (metadata {found.remote}, not asked by check-config): "
                "without one, every poll of this account fails (RecordingMonitorNoCredentials)"
            )
        else:
            message = (
                f"accounts.{name}: no credentials found (tried {tried}): every poll of this "
                "account will fail (RecordingMonitorNoCredentials)"
            )
        line = locate(where, config._lines)[1] or locate(where[:2], config._lines)[1]
        warnings.append(
            f"{config.source}:{line}: {message}" if line else f"{config.source}: {message}"
        )
    return warnings


def check_config(
    path: Path | str,
    environ: Mapping[str, str] | None = None,
    *,
    syntax_only: bool = False,
    home: Path | None = None,
) -> tuple[int, str]:
    """Exit code and text of ``check-config``: 0 and a summary, or 1 and every error.

    The checks are ``run``'s own (``validate_for_run``): a secret that cannot be read is an
    error here as it is there. With ``syntax_only`` (for checking a file on a machine that is
    not the one that runs it) only the file is checked, and unreadable secrets are warnings.
    Warnings (literal secrets, an account without credentials here) never fail the check.
    """
    try:
        if syntax_only:
            config = load_config(path)
            warnings = config.warnings() + _secret_warnings(config, environ)
        else:
            # The literal secrets it reads are reported below as warnings, once, rather than
            # also logged on stderr as `run` logs them.
            quiet = logging.getLogger("monitor.secrets")
            was = quiet.disabled
            quiet.disabled = True
            try:
                validated = validate_for_run(path, environ)
            finally:
                quiet.disabled = was
            config = validated.config
            warnings = validated.warnings + credential_warnings(config, environ, home)
    except ConfigError as exc:
        return 1, "\n".join(exc.errors)
    text = f"{config.source}: valid\n{config.summary()}"
    if warnings:
        text += "\n" + "\n".join(f"warning: {w}" for w in warnings)
    return 0, text
