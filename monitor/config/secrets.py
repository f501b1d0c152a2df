"""Reading every secret a configuration names (``resolve_secrets``), once, at start and reload.

One secret, the place it is read from and the type that keeps it out of messages are
``monitor.secrets``, which the credentials, the stores and the alerts use too; this module
knows which secrets a configuration names and reads them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from monitor.config.alerts import RobotReceiver, RobotSecrets, WebhookReceiver
from monitor.config.errors import ConfigError
from monitor.config.model import Config
from monitor.config.sections import CallbacksConfig
from monitor.config.sources import field_used
from monitor.secrets import Credentials, Secret, SecretError, parse_headers


@dataclass(frozen=True, slots=True)
class ResolvedSecrets:
    """Every secret the configuration names, read from its source."""

    # by account name; only accounts that use their own keys (the static source)
    accounts: dict[str, Credentials] = field(default_factory=dict)
    api_token: Secret | None = None
    callback_key: Secret | None = None
    # callbacks.apps: SdkAppId -> its own key (absent: checked with ``callback_key``)
    callback_app_keys: dict[int, Secret] = field(default_factory=dict)
    tuikit_token: Secret | None = None  # callbacks.tuikit_token: TUIKit envelopes' token
    # receiver name -> header name -> value
    webhook_headers: dict[str, dict[str, Secret]] = field(default_factory=dict)
    # receiver name -> URL and signing secret of a chat robot
    robots: dict[str, RobotSecrets] = field(default_factory=dict)
    redis_url: Secret | None = None  # with storage.backend: redis

    def secret_values(self) -> list[str]:
        """The values the log redactor must hide."""
        values: list[str] = []
        for credentials in self.accounts.values():
            values.extend(credentials.secret_values())
        for secret in (self.api_token, self.callback_key, self.tuikit_token, self.redis_url):
            if secret is not None:
                values.append(secret.get())
        values.extend(secret.get() for secret in self.callback_app_keys.values())
        if self.redis_url is not None:
            # The password alone too: a message may show it without the rest of the URL.
            values.extend(_url_password(self.redis_url.get()))
        for headers in self.webhook_headers.values():
            values.extend(value.get() for value in headers.values() if value.get())
        for robot in self.robots.values():
            values.append(robot.url.get())
            # The key inside the URL too: a log line may show the query without the rest.
            values.extend(_url_tokens(robot.url.get()))
            if robot.secret is not None:
                values.append(robot.secret.get())
        return values

    def values(self) -> list[str]:
        """Same as ``secret_values()``: what ``configure_logging``/``set_secrets`` take."""
        return self.secret_values()


def resolve_secrets(config: Config, environ: Mapping[str, str] | None = None) -> ResolvedSecrets:
    """Read every secret; ConfigError lists each missing one by key path and source."""
    errors: list[str] = []
    values: dict[tuple[str | int, ...], Secret | None] = {}
    for spec in config.secret_specs():
        try:
            values[spec.loc] = (
                spec.source.require(environ)
                if spec.required
                else _optional(spec.source.resolve(environ))
            )
        except SecretError as exc:
            errors.append(config.message_at(spec.line_loc, str(exc)))

    headers: dict[str, dict[str, Secret]] = {}
    for index, receiver in enumerate(config.alerts.receivers):
        loc: tuple[str | int, ...] = ("alerts", "receivers", index, "headers")
        raw = values.get(loc)
        if isinstance(receiver, WebhookReceiver) and raw is not None:
            source = receiver.headers_source(index)
            assert source is not None
            try:
                parsed = parse_headers(raw.get(), f"{source.key}: {source.describe()}")
            except SecretError as exc:
                errors.append(
                    config.message_at((*loc[:-1], field_used(receiver, "headers")), str(exc))
                )
                continue
            headers[receiver.name] = {name: Secret(value) for name, value in parsed.items()}
    robots: dict[str, RobotSecrets] = {}
    for index, receiver in enumerate(config.alerts.receivers):
        if not isinstance(receiver, RobotReceiver):
            continue
        parent: tuple[str | int, ...] = ("alerts", "receivers", index)
        url = values.get((*parent, "url"))
        if url is None:
            continue  # its absence is already an error
        problem = robot_url_problem(url.get())
        if problem:
            where = receiver.url_source(index)
            errors.append(
                config.message_at(
                    (*parent, field_used(receiver, "url")),
                    f"{where.key}: {where.describe()} {problem}",
                )
            )
            continue
        robots[receiver.name] = RobotSecrets(url, values.get((*parent, "secret")))
    if errors:
        raise ConfigError(errors)

    credentials: dict[str, Credentials] = {}
    for name, account in config.accounts.items():
        if not account.uses_static:
            continue
        loc = ("accounts", name)
        secret_id, secret_key = values[(*loc, "secret_id")], values[(*loc, "secret_key")]
        assert secret_id is not None
        assert secret_key is not None
        token = values.get((*loc, "token"))
        credentials[name] = Credentials(
            secret_id.get(), secret_key.get(), None if token is None else token.get()
        )
    return ResolvedSecrets(
        accounts=credentials,
        api_token=values.get(("server", "api_token")),
        callback_key=values.get(("callbacks", "key")),
        tuikit_token=values.get(("callbacks", "tuikit_token")),
        callback_app_keys={
            app: secret
            for app in config.callbacks.apps
            if (secret := values.get(("callbacks", "apps", app, "key"))) is not None
        },
        webhook_headers=headers,
        robots=robots,
        redis_url=values.get(("storage", "redis", "url")),
    )


def callback_app_keys(
    callbacks: CallbacksConfig, secrets: ResolvedSecrets
) -> dict[int, str] | None:
    """With ``callbacks.apps``: the key each application's callbacks are checked with (its own,
    else the single ``callbacks.key``); None when every callback is checked with the single key."""
    if not callbacks.apps:
        return None
    keys: dict[int, str] = {}
    for app in callbacks.apps:
        secret = secrets.callback_app_keys.get(app) or secrets.callback_key
        if secret is not None:
            keys[app] = secret.get()
    return keys


def robot_url_problem(url: str) -> str:
    """Why a robot URL cannot be used ("" if it can); never quotes the URL: it is a secret."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http(s) URL"
    return ""


def _url_tokens(url: str) -> list[str]:
    # Robot keys live in the query (WeCom key, DingTalk access_token) or the last path
    # segment (Feishu hook id, Slack's T/B/secret path): long enough parts are secrets.
    parts = urlsplit(url)
    pieces = [v for _, v in parse_qsl(parts.query)]
    pieces.extend(parts.path.split("/"))
    return [p for p in pieces if len(p) >= 16]


def _url_password(url: str) -> list[str]:
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password] if password else []


def _optional(value: str | None) -> Secret | None:
    return None if value is None else Secret(value)
