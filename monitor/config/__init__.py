"""The YAML configuration: models, loading with line-numbered errors, secret resolution and
the ``check-config`` report.

Loading is pure apart from reading the one file; secrets are read only by
``resolve_secrets``, so a configuration can be validated on a machine that lacks them.

Where each part lives: ``types`` (scalar types and their checks), ``sources`` (the
``*_env``/``*_file``/literal keys of a secret), ``accounts``, ``sections`` and ``alerts`` (the
section models), ``model`` (the root ``Config``), ``locate`` and ``loading`` (the file, its
lines and its errors), ``secrets`` (reading the secrets it names) and ``validate`` (what ``run``
and ``check-config`` check). Parts of the daemon below the command line import the module that
holds what they need, so that none of them runs back up through this package.
"""

from monitor.config.accounts import AccountConfig
from monitor.config.alerts import (
    AlertmanagerReceiver,
    AlertsConfig,
    RobotReceiver,
    RobotSecrets,
    WebhookReceiver,
)
from monitor.config.errors import ConfigError
from monitor.config.loading import load_config, parse_config
from monitor.config.model import Config
from monitor.config.secrets import ResolvedSecrets, callback_app_keys, resolve_secrets
from monitor.config.sections import CallbacksConfig, ClusterConfig, PollingConfig, StorageConfig
from monitor.config.types import StaleAfter, parse_listen
from monitor.config.validate import Validated, check_config, credential_warnings, validate_for_run

__all__ = [
    "AccountConfig",
    "AlertmanagerReceiver",
    "AlertsConfig",
    "CallbacksConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "PollingConfig",
    "ResolvedSecrets",
    "RobotReceiver",
    "RobotSecrets",
    "StaleAfter",
    "StorageConfig",
    "Validated",
    "WebhookReceiver",
    "callback_app_keys",
    "check_config",
    "credential_warnings",
    "load_config",
    "parse_config",
    "parse_listen",
    "resolve_secrets",
    "validate_for_run",
]
