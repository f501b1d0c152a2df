"""`run`, `check-config` and `version`: the daemon and the checks it makes before it starts."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from monitor import __version__
from monitor.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    checked_config,
    config_path,
    print_errors,
)


def cmd_version(args: argparse.Namespace) -> int:
    print(f"trtc-monitor {__version__}")
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from monitor.config import check_config, load_config

    path = config_path(args.config)
    code, text = check_config(path, syntax_only=args.syntax_only)
    if code == 0 and not args.syntax_only:
        # The web configuration files are read at start too: a broken one stops `run`.
        problem = _web_config_problem(load_config(path), args.web_config_file)
        if problem is not None:
            code, text = 1, problem
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


def _web_config_problem(config: Any, flag: str | None) -> str | None:
    """Why ``run`` would refuse the web configuration files this config names, if it would."""
    from monitor.http.webconfig import WebConfigError, load_web_config

    main = Path(flag) if flag else config.server.web_config_file
    try:
        load_web_config(main)
        load_web_config(config.callbacks.web_config_file, basic_auth_allowed=False)
    except WebConfigError as exc:
        return str(exc)
    return None


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.config import validate_for_run
    from monitor.log import configure_logging, get_logger

    path = config_path(args.config)
    # The very checks check-config runs: a file it calls valid is one run takes.
    validated = checked_config(validate_for_run, path)
    config = validated.config
    configure_logging(config.logging.format, config.logging.level, validated.secrets.values())
    log = get_logger("monitor")
    for warning in validated.warnings:
        log.warning("config_warning", detail=warning)
    web_config = Path(args.web_config_file) if args.web_config_file else None
    return asyncio.run(_run(config, path, web_config))


async def _run(config: Any, path: Path, web_config: Path | None = None) -> int:
    import structlog

    from monitor.config import ConfigError
    from monitor.daemon import Daemon
    from monitor.http.listeners import CALLBACKS, MAIN, Listeners
    from monitor.http.server import ListenError
    from monitor.http.webconfig import WebConfigError
    from monitor.store.base import StoreError

    log = structlog.get_logger("monitor")
    daemon = Daemon(config, path)
    listeners = Listeners(config, web_config, daemon.metrics.registry)
    # Every address is taken, and every web configuration file read, before the store is
    # opened or anything polled: a taken port or a broken file changes nothing.
    try:
        listeners.bind()
        await listeners.load()
    except (ListenError, WebConfigError) as exc:
        listeners.close()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    daemon.reload_hooks.append(listeners)
    stop = asyncio.Event()
    try:
        await daemon.start()
    except StoreError as exc:
        # An unusable store is a configuration problem (storage.path): one line, exit 2.
        listeners.close()
        await daemon.stop()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        listeners.close()
        await daemon.stop()
        print_errors(exc.errors)
        return EXIT_USAGE
    try:
        await listeners.start(daemon)
    except OSError as exc:
        log.error("startup_failed", error=str(exc))
        await listeners.stop()
        await daemon.stop()
        return EXIT_FAILURE
    daemon.install_signal_handlers(stop)
    url = listeners.urls[MAIN]
    callbacks = listeners.urls.get(CALLBACKS)
    log.info("listening", url=url, metrics=f"{url}/metrics", callbacks=callbacks)
    await stop.wait()
    log.info("stopping")
    if not await listeners.stop():
        log.warning("http_shutdown_timeout")
    await daemon.stop()
    return EXIT_OK
