"""The root ``Config``: its sections, the checks across them, the secrets it names, its
warnings and the ``check-config`` summary.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, PrivateAttr, model_validator

from monitor.config.accounts import AccountConfig
from monitor.config.alerts import AlertmanagerReceiver, AlertsConfig, RobotReceiver, WebhookReceiver
from monitor.config.errors import LocatedErrors
from monitor.config.locate import locate
from monitor.config.sections import (
    CallbacksConfig,
    ClusterConfig,
    LoggingConfig,
    MetricsConfig,
    PollingConfig,
    ServerConfig,
    StorageConfig,
)
from monitor.config.sources import SecretSpec, field_used
from monitor.config.types import Model, Name, parse_listen
from monitor.durations import format_duration
from monitor.models import TaskKey
from monitor.secrets import SecretSource, looks_like_secret, shown_ref
from monitor.taskspec import TaskSpec, site_problem, unknown_account
from monitor.trtc.client import Endpoint
from monitor.trtc.sites import site_info


def _default_accounts() -> dict[str, AccountConfig]:
    return {"default": AccountConfig()}


class Config(Model):
    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    cluster: ClusterConfig = ClusterConfig()
    accounts: Annotated[dict[Name, AccountConfig], Field(min_length=1)] = Field(
        default_factory=_default_accounts
    )
    polling: PollingConfig = PollingConfig()
    tasks: tuple[TaskSpec, ...] = ()
    callbacks: CallbacksConfig = CallbacksConfig()
    alerts: AlertsConfig = AlertsConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()

    _source: str = PrivateAttr(default="<string>")
    _lines: dict[tuple[str | int, ...], int] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, value: object) -> object:
        # `server:` with everything below commented out means "defaults", not "null".
        if not isinstance(value, dict):
            return value
        cleaned = {k: v for k, v in value.items() if v is not None or k not in cls.model_fields}
        if isinstance(cleaned.get("accounts"), dict):
            cleaned["accounts"] = {
                k: ({} if v is None else v) for k, v in cleaned["accounts"].items()
            }
        return cleaned

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        seen: dict[TaskKey, int] = {}
        for index, task in enumerate(self.tasks):
            if task.account not in self.accounts:
                problems.append(
                    (("tasks", index, "account"), unknown_account(task.account, self.accounts))
                )
            else:
                problem = site_problem(task, self.accounts[task.account].site)
                if problem is not None:
                    problems.append((("tasks", index, "region"), problem))
            if task.key in seen:
                problems.append(
                    (("tasks", index), f"duplicate task {task.key} (also tasks[{seen[task.key]}])")
                )
            seen.setdefault(task.key, index)
        listen = self.callbacks.listen
        if listen is not None and parse_listen(listen)[1] == self.server.port != 0:
            problems.append((("callbacks", "listen"), "same port as server.listen"))
        if self.callbacks.enabled and self.callbacks.account not in self.accounts:
            problems.append(
                (
                    ("callbacks", "account"),
                    unknown_account(self.callbacks.account, self.accounts),
                )
            )
        elif self.callbacks.enabled:
            # Tasks registered from callbacks are polled with this account and region.
            site = site_info(self.accounts[self.callbacks.account].site)
            if not site.serves(self.callbacks.region):
                problems.append(
                    (
                        ("callbacks", "region"),
                        f"{self.callbacks.region} is not served by the {site.site.value} site "
                        f'of account "{self.callbacks.account}" (its regions: '
                        f"{', '.join(site.regions)})",
                    )
                )
        if problems:
            raise LocatedErrors(problems)
        return self

    def __eq__(self, other: object) -> bool:
        # Equal settings are equal configurations, whatever file and lines they came from.
        if not isinstance(other, Config):
            return NotImplemented
        return dict(self) == dict(other)

    __hash__ = None  # type: ignore[assignment]  # dict fields: not hashable anyway

    @property
    def source(self) -> str:
        """The file this configuration was loaded from (``<string>`` for parsed text)."""
        return self._source

    def line_of(self, loc: Iterable[str | int]) -> int | None:
        """The line of the file closest to key path ``loc``, when known."""
        return locate(tuple(loc), self._lines)[1]

    def regions(self) -> list[str]:
        """Regions named by static tasks and by callbacks (when on), sorted."""
        regions = {task.region for task in self.tasks}
        if self.callbacks.enabled:
            regions.add(self.callbacks.region)
        return sorted(regions)

    def secret_specs(self) -> list[SecretSpec]:
        """Every secret the configuration refers to, with whether it must be present."""
        specs: list[SecretSpec] = []

        def add(
            model: BaseModel,
            parent: tuple[str | int, ...],
            base: str,
            source: SecretSource | None,
            required: bool = True,
        ) -> None:
            if source is not None:
                line_loc = (*parent, field_used(model, base))
                specs.append(SecretSpec((*parent, base), source, required, line_loc))

        add(self.server, ("server",), "api_token", self.server.api_token_source())
        if self.storage.backend == "redis":
            redis = self.storage.redis
            add(redis, ("storage", "redis"), "url", redis.url_source())
        for name, account in self.accounts.items():
            if not account.uses_static:
                continue  # the other sources of the chain are read at run time
            parent: tuple[str | int, ...] = ("accounts", name)
            add(account, parent, "secret_id", account.secret_id_source(name))
            add(account, parent, "secret_key", account.secret_key_source(name))
            add(account, parent, "token", account.token_source(name), required=False)
        add(self.callbacks, ("callbacks",), "key", self.callbacks.key_source())
        add(self.callbacks, ("callbacks",), "tuikit_token", self.callbacks.tuikit_token_source())
        for app, app_config in self.callbacks.apps.items():
            add(app_config, ("callbacks", "apps", app), "key", app_config.key_source(app))
        for index, receiver in enumerate(self.alerts.receivers):
            if isinstance(receiver, WebhookReceiver):
                add(
                    receiver,
                    ("alerts", "receivers", index),
                    "headers",
                    receiver.headers_source(index),
                )
            elif isinstance(receiver, RobotReceiver):
                parent = ("alerts", "receivers", index)
                add(receiver, parent, "url", receiver.url_source(index))
                add(receiver, parent, "secret", receiver.secret_source(index))
        return specs

    def warnings(self) -> list[str]:
        """Problems that do not make the file invalid: literal secrets in the file, and
        ``*_env``/``*_file`` keys whose value looks like a secret rather than a name."""
        out: list[str] = []
        for spec in self.secret_specs():
            source = spec.source
            name = source.key.rsplit(".", 1)[-1]
            if source.kind == "literal":
                out.append(
                    self.message_at(
                        spec.line_loc,
                        f"{source.key}: literal secret in the configuration file; "
                        f"prefer {name}_env or {name}_file",
                    )
                )
            elif looks_like_secret(str(source.ref)):
                holder = "an environment variable" if source.kind == "env" else "a file"
                out.append(
                    self.message_at(
                        spec.line_loc,
                        f"{source.key}_{source.kind}: {shown_ref(str(source.ref))}; it takes "
                        f"the name of {holder} holding the secret",
                    )
                )
        return out

    def message_at(self, loc: tuple[str | int, ...], message: str) -> str:
        line = locate(loc, self._lines)[1]
        return f"{self._source}:{line}: {message}" if line else f"{self._source}: {message}"

    def summary(self) -> str:
        """A few lines for ``check-config``: what will run, never a secret."""
        out: list[str] = []
        server = self.server
        token = server.api_token_source()
        out.append(
            f"server: listening on {server.listen}; API token "
            + (f"from {token.describe()}" if token else "not set (mutating API calls disabled)")
        )
        storage = self.storage
        where = (
            f"URL from {storage.redis.url_source().describe()}, key prefix "
            f"{storage.redis.key_prefix!r}"
            if storage.backend == "redis"
            else f"at {storage.path}"
        )
        out.append(
            f"storage: {storage.backend} {where}, retention {format_duration(storage.retention)}"
        )
        if storage.backend == "redis":
            cluster = self.cluster
            out.append(
                f"cluster: replica {cluster.replica_id or '<host name>-<process id>'}, "
                f"heartbeat {format_duration(cluster.heartbeat)}, "
                f"member timeout {format_duration(cluster.member_timeout)}"
            )
        out.append(f"accounts ({len(self.accounts)}):")
        for name, account in self.accounts.items():
            endpoint = account.endpoint
            shown = endpoint if "{region}" in endpoint else str(Endpoint.parse(endpoint))
            out.append(
                f"  {name}: endpoint {shown}, {account.rate_limit} requests per "
                f"{format_duration(account.rate_window)} (guard {account.rate_guard:.0%})"
            )
            out.append(f"    credentials: {account.describe_credentials(name)}")
        regions = self.regions()
        out.append(f"regions in use: {', '.join(regions) if regions else 'none yet'}")
        by_status = ", ".join(
            f"{status} {format_duration(seconds)}"
            for status, seconds in self.polling.interval_by_status.items()
        )
        out.append(
            f"polling: every {format_duration(self.polling.interval)}"
            + (f" ({by_status})" if by_status else "")
            + f", jitter {self.polling.jitter:.0%}, timeout {format_duration(self.polling.timeout)}"
        )
        out.append(f"static tasks: {len(self.tasks)}")
        callbacks = self.callbacks
        if callbacks.enabled:
            out.append(
                f"callbacks: on at {callbacks.path} (auto_register "
                f"{'on' if callbacks.auto_register else 'off'}, account {callbacks.account}, "
                f"region {callbacks.region})"
                + (
                    f"; only applications {', '.join(map(str, sorted(callbacks.apps)))}"
                    if callbacks.apps
                    else ""
                )
            )
        else:
            out.append("callbacks: off (no key configured)")
        alerts = self.alerts
        rules = [
            f"exit ({alerts.exit.severity})" if alerts.exit.enabled else None,
            f"error after {alerts.error.consecutive} ({alerts.error.severity})"
            if alerts.error.enabled
            else None,
            f"stale after {alerts.stale.after} ({alerts.stale.severity})"
            if alerts.stale.enabled
            else None,
            f"idle after {format_duration(alerts.idle.after)} ({alerts.idle.severity})"
            if alerts.idle.enabled
            else None,
            f"upload failed or overdue after {format_duration(alerts.upload.deadline)} "
            f"({alerts.upload.severity})"
            if alerts.upload.enabled
            else None,
            f"credentials expiring within {format_duration(alerts.credentials.before)} "
            f"({alerts.credentials.severity})"
            if alerts.credentials.enabled
            else None,
        ]
        out.append("alerts: " + (", ".join(r for r in rules if r) or "all off"))
        out.append(
            f"receivers ({len(alerts.receivers)}):" if alerts.receivers else "receivers: none"
        )
        for receiver in alerts.receivers:
            if isinstance(receiver, AlertmanagerReceiver):
                target = ", ".join(_origin(url) for url in receiver.urls)
            elif isinstance(receiver, RobotReceiver):
                # The robot URL is a secret: say where it comes from, never what it is.
                target = f"URL from {receiver.url_source(0).describe()}"
                if receiver.secret_source(0) is not None:
                    target += ", signed"
            else:
                target = _origin(receiver.url)
            out.append(f"  {receiver.name}: {receiver.type} -> {target}")
        out.append(
            f"metrics: per-task series {'on' if self.metrics.per_task else 'off'}"
            + (f", info labels {', '.join(self.metrics.labels)}" if self.metrics.labels else "")
        )
        out.append(f"logging: {self.logging.format}, level {self.logging.level}")
        return "\n".join(out)


def _origin(url: str) -> str:
    # Webhook URLs often carry a token in their path or query; the origin is enough to recognise.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
