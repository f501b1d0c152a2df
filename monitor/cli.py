"""`trtc-monitor` command line (README.md, "Commands").

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error. User errors print one
line each and no traceback. Heavy imports happen inside the commands that need them, and the
run path never imports the simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monitor import __version__

DEFAULT_CONFIG = "config/monitor.yaml"
DEFAULT_URL = "http://127.0.0.1:9877"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code attached."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _config_path(arg: str | None) -> Path:
    return Path(arg or os.environ.get("TRTC_MONITOR_CONFIG") or DEFAULT_CONFIG)


def _print_errors(errors: Sequence[str]) -> None:
    for line in errors:
        print(f"error: {line}", file=sys.stderr)


# ---------------------------------------------------------------------------- commands


def cmd_version(args: argparse.Namespace) -> int:
    print(f"trtc-monitor {__version__}")
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from monitor.config import check_config, load_config

    path = _config_path(args.config)
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
    from monitor.config import ConfigError, validate_for_run
    from monitor.log import configure_logging, get_logger

    path = _config_path(args.config)
    try:
        # The very checks check-config runs: a file it calls valid is one run takes.
        validated = validate_for_run(path)
    except ConfigError as exc:
        _print_errors(exc.errors)
        return EXIT_USAGE
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
        _print_errors(exc.errors)
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


def cmd_describe(args: argparse.Namespace) -> int:
    return asyncio.run(_describe(args))


async def _describe(args: argparse.Namespace) -> int:
    from monitor.config import Config, ConfigError, load_config
    from monitor.credentials import CredentialsError, resolve_once
    from monitor.models import REGIONS
    from monitor.trtc.client import Endpoint, TrtcClient, new_session

    if args.region not in REGIONS:
        raise UserError(f"--region must be one of {', '.join(REGIONS)}")
    path = _config_path(args.config)
    try:
        config = load_config(path) if args.config or path.exists() else Config()
    except ConfigError as exc:
        _print_errors(exc.errors)
        return EXIT_USAGE
    if args.account not in config.accounts:
        raise UserError(f"--account: no account named {args.account!r} in {path}")
    account = config.accounts[args.account]
    async with new_session() as session:
        try:
            issued = await resolve_once(args.account, account, session)
        except CredentialsError as exc:
            raise UserError(f"account {args.account}: no credentials: {exc}") from None
        client = TrtcClient(
            session, timeout=config.polling.timeout, ended_codes=config.polling.ended_codes
        )
        result = await client.describe_cloud_recording(
            endpoint=Endpoint.parse(account.endpoint),
            credentials=issued.credentials,
            region=args.region,
            sdk_app_id=args.sdk_app_id,
            task_id=args.task_id,
            language=account.language,
        )
    if result.ok:
        print(json.dumps({"Response": result.response}, indent=2, ensure_ascii=False))
        return EXIT_OK
    print(
        f"error: DescribeCloudRecording failed: {result.code} ({result.outcome.value}): "
        f"{result.message} [RequestId: {result.request_id or '-'}]",
        file=sys.stderr,
    )
    return EXIT_FAILURE


def cmd_credentials(args: argparse.Namespace) -> int:
    return asyncio.run(_credentials(args))


async def _credentials(args: argparse.Namespace) -> int:
    """Resolve each account's credentials once and say where they came from, never what they
    are (README.md, "Commands")."""
    import time

    from monitor.config import ConfigError, load_config
    from monitor.credentials import CredentialsError, resolve_once
    from monitor.durations import format_duration
    from monitor.trtc.client import new_session

    path = _config_path(args.config)
    try:
        config = load_config(path)
    except ConfigError as exc:
        _print_errors(exc.errors)
        return EXIT_USAGE
    if args.account is not None and args.account not in config.accounts:
        raise UserError(f"--account: no account named {args.account!r} in {path}")
    names = [args.account] if args.account is not None else list(config.accounts)
    failed = 0
    async with new_session() as session:
        for name in names:
            try:
                issued = await resolve_once(name, config.accounts[name], session)
            except CredentialsError as exc:
                failed += 1
                print(f"{name}: no credentials: {exc}")
                continue
            token = ", with session token" if issued.credentials.token else ""
            if issued.expires_at is None:
                # A configured session token is used as given: its expiry is not known here.
                when = "expiry not known" if issued.credentials.token else "do not expire"
            else:
                left = issued.expires_at - time.time()
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(issued.expires_at))
                when = f"expire at {stamp} (in {format_duration(max(0.0, round(left)))})"
            print(f"{name}: source {issued.source}{token}; {when}")
    return EXIT_FAILURE if failed else EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from monitor.simulator import ScenarioError

    try:
        asyncio.run(_simulate(args.listen, Path(args.scenario) if args.scenario else None))
    except (ScenarioError, ValueError, OSError) as exc:
        raise UserError(f"simulate: {exc}") from None
    except KeyboardInterrupt:
        pass
    return EXIT_OK


async def _simulate(listen: str, scenario: Path | None) -> None:
    import signal

    from monitor.simulator import serve

    server = asyncio.ensure_future(serve(listen, scenario))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await server


def cmd_demo(args: argparse.Namespace) -> int:
    from monitor.demo import run_demo
    from monitor.demo_ha import run_ha_demo

    try:
        if args.replicas > 1:
            return asyncio.run(run_ha_demo(args))
        return asyncio.run(run_demo(args))
    except KeyboardInterrupt:
        return EXIT_OK


def cmd_tasks(args: argparse.Namespace) -> int:
    return asyncio.run(_tasks(args))


async def _tasks(args: argparse.Namespace) -> int:
    import aiohttp

    base = args.url.rstrip("/")
    headers = _auth_headers(
        os.environ.get("TRTC_MONITOR_API_TOKEN"), os.environ.get("TRTC_MONITOR_BASIC_AUTH")
    )
    connector = _tls_connector(args.cacert)
    method, path, body = "GET", "/api/v1/tasks", None
    query: list[tuple[str, str]] = []
    if args.tasks_command == "add":
        body = _specs_from_file(Path(args.file)) if args.file else _spec_from_args(args)
        method = "POST"
    elif args.tasks_command == "list":
        for name in ("status", "region", "account"):
            if getattr(args, name):
                query.append((name, getattr(args, name)))
        # name=value on the command line, as for `tasks add`; the API's query takes name:value.
        query += [("label", f"{name}:{value}") for name, value in map(_label, args.label)]
    elif args.tasks_command == "show":
        path = f"/api/v1/tasks/{args.sdk_app_id}/{args.task_id}"
    elif args.tasks_command == "remove":
        method, path = "DELETE", f"/api/v1/tasks/{args.sdk_app_id}/{args.task_id}"
    elif args.tasks_command == "update":
        method, path, body = "PATCH", *_update_request(args)
    try:
        async with (
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=10), connector=connector
            ) as session,
            session.request(
                method, base + path, params=query or None, json=body, headers=headers
            ) as answer,
        ):
            text = await answer.text()
            status = answer.status
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise UserError(
            f"cannot reach the daemon at {base} ({type(exc).__name__}); is it running? set --url",
            EXIT_FAILURE,
        ) from None
    try:
        data = json.loads(text)
    except ValueError:
        data = {"raw": text}
    if status >= 400:
        message = data.get("error", {}).get("message", text) if isinstance(data, dict) else text
        raise UserError(f"HTTP {status}: {message}{_conflict_note(data)}", EXIT_FAILURE)
    if args.tasks_command == "list" and not args.json:
        _print_task_table(data.get("tasks", []))
    else:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    return _bulk_conflicts(data)


def _auth_headers(token: str | None, basic: str | None) -> dict[str, str]:
    """The API token as a bearer token; with basic auth (``user:password``, the main port's
    web configuration asks for it) the login takes ``Authorization`` and the token travels in
    ``X-API-Token``, which the daemon reads once the login passed."""
    if not basic:
        return {"Authorization": f"Bearer {token}"} if token else {}
    if ":" not in basic:
        raise UserError("TRTC_MONITOR_BASIC_AUTH must be user:password")
    login = base64.b64encode(basic.encode("utf-8")).decode("ascii")
    headers = {"Authorization": f"Basic {login}"}
    if token:
        headers["X-API-Token"] = token
    return headers


def _tls_connector(cacert: str | None) -> Any:
    """A connector trusting ``cacert`` (a daemon whose certificate a private CA signed)."""
    if not cacert:
        return None
    import ssl

    import aiohttp

    try:
        context = ssl.create_default_context(cafile=cacert)
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"--cacert {cacert}: cannot read it as CA certificates ({exc})") from None
    return aiohttp.TCPConnector(ssl=context)


# -- tasks update, and conflicts of tasks add ------------------------------------------------


def _update_request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """``tasks update APP TASK``: the path and the PATCH body, checked here as the daemon
    would (labels replace the whole set; an interval in any duration syntax is sent as
    seconds)."""
    from monitor.durations import parse_duration
    from monitor.taskspec import ValidationError, validate_update

    body: dict[str, Any] = {}
    if args.label or args.clear_labels:
        if args.label and args.clear_labels:
            raise UserError("tasks update: --label and --clear-labels exclude each other")
        body["labels"] = dict(_label(item) for item in args.label)
    if args.interval is not None:
        if args.interval == "default":
            body["interval"] = None
        else:
            try:
                body["interval"] = parse_duration(args.interval)
            except ValueError as exc:
                raise UserError(f"tasks update: --interval: {exc}") from None
    if not body:
        raise UserError(
            "tasks update: nothing to change (give --label, --clear-labels or --interval)"
        )
    try:
        validate_update(body)
    except ValidationError as exc:
        raise UserError(f"tasks update: {exc}") from None
    return f"/api/v1/tasks/{args.sdk_app_id}/{args.task_id}", body


def _interval_for_api(text: str) -> float | str:
    """Any duration the configuration takes (``1500ms``), as the seconds the API takes; text
    that is no duration is sent as it is, for the validator to name."""
    from monitor.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError:
        return text


def _conflict_note(data: Any) -> str:
    """For a 409 conflict: the fields that differ, and what to do."""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict) or error.get("code") != "conflict":
        return ""
    fields = ", ".join(str(f) for f in error.get("fields", []))
    return f"\n  fields that differ: {fields}\n  (change labels or interval with `tasks update`)"


def _bulk_conflicts(data: Any) -> int:
    """A bulk answer's conflicts, one line each on stderr; EXIT_FAILURE if there were any."""
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        return EXIT_OK
    conflicts = [r for r in results if isinstance(r, dict) and r.get("status") == 409]
    for r in conflicts:
        error = r.get("error", {})
        print(
            f"error: [{r.get('index')}] {error.get('message', 'conflict')}",
            file=sys.stderr,
        )
    return EXIT_FAILURE if conflicts else EXIT_OK


def _spec_from_args(args: argparse.Namespace) -> dict[str, Any]:
    from monitor.taskspec import ValidationError, validate_spec

    for name in ("sdk_app_id", "task_id", "region"):
        if getattr(args, name) is None:
            raise UserError(f"tasks add: --{name.replace('_', '-')} is required (or --file)")
    body: dict[str, Any] = {
        "sdk_app_id": args.sdk_app_id,
        "task_id": args.task_id,
        "region": args.region,
    }
    if args.account:
        body["account"] = args.account
    labels = dict(_label(item) for item in args.label)
    if labels:
        body["labels"] = labels
    if args.interval:
        body["interval"] = _interval_for_api(args.interval)
    try:
        # The daemon's own validator (accounts are the daemon's to check): bad input is told
        # here, by the same words, without a round trip.
        validate_spec(body, None)
    except ValidationError as exc:
        raise UserError(f"tasks add: {exc}") from None
    return body


def _specs_from_file(path: Path) -> list[dict[str, Any]]:
    """A JSON or YAML list of task specs (the API's bulk shape), checked item by item."""
    import yaml

    from monitor.taskspec import MAX_BULK, ValidationError, validate_spec

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"tasks add --file {path}: cannot read it ({exc})") from None
    except yaml.YAMLError:
        raise UserError(f"tasks add --file {path}: neither JSON nor YAML") from None
    if not isinstance(data, list) or not data:
        raise UserError(f"tasks add --file {path}: expected a non-empty list of tasks")
    if len(data) > MAX_BULK:
        raise UserError(f"tasks add --file {path}: at most {MAX_BULK} tasks per request")
    problems = []
    for index, item in enumerate(data):
        try:
            if not isinstance(item, dict):
                raise ValidationError(f"[{index}]", "must be a mapping")
            validate_spec(item, None)
        except ValidationError as exc:
            problems.append(f"tasks add --file {path}: [{index}] {exc}")
    if problems:
        _print_errors(problems)
        raise UserError(f"tasks add --file {path}: {len(problems)} invalid task(s), none sent")
    return data


def cmd_store(args: argparse.Namespace) -> int:
    return asyncio.run(_store_copy(args.source, args.target, args.force))


async def _store_copy(source_url: str, target_url: str, force: bool) -> int:
    from monitor.store import StoreError
    from monitor.store.factory import StoreUrlError, describe_store_url, store_from_url
    from monitor.storecopy import check_source, copy_store

    try:
        source, target = store_from_url(source_url), store_from_url(target_url)
    except StoreUrlError as exc:
        raise UserError(str(exc)) from None
    if source_url == target_url:
        raise UserError("--from and --to name the same store")
    where = f"{describe_store_url(source_url)} to {describe_store_url(target_url)}"
    # The source first, and alone: a source that is missing or does not answer is refused
    # before the target is opened (and so created), with nothing written anywhere.
    try:
        check_source(source)
        await source.open()
    except StoreError as exc:
        raise UserError(f"store copy: source {str(exc).rstrip('.')}; nothing copied") from None
    try:
        try:
            await target.open()
            try:
                counts = await copy_store(source, target, force=force)
            finally:
                await target.close()
        finally:
            await source.close()
    except StoreError as exc:
        raise UserError(f"store copy from {where}: {exc}", EXIT_FAILURE) from None
    print(
        f"copied {counts.tasks} tasks, {counts.transitions} transitions and "
        f"{counts.alerts} alert records from {where}"
    )
    return EXIT_OK


def _label(item: str) -> tuple[str, str]:
    """``--label name=value``: one syntax for every command (the value may hold ``=``)."""
    from monitor.taskspec import LABEL_NAME_RE

    name, sep, value = item.partition("=")
    if not sep:
        hint = f" (e.g. {item.replace(':', '=', 1)})" if ":" in item else ""
        raise UserError(f"--label {item!r}: use name=value{hint}")
    if not LABEL_NAME_RE.fullmatch(name):
        raise UserError(
            f"--label {item!r}: the name {name!r} must be letters, digits and _, "
            "not starting with a digit"
        )
    return name, value


def _print_task_table(tasks: list[dict[str, Any]]) -> None:
    print(f"{'SDKAPPID':<12} {'TASK ID':<36} {'REGION':<13} {'STATUS':<11} ERRORS")
    for t in tasks:
        print(
            f"{t['sdk_app_id']:<12} {t['task_id'][:36]:<36} {t['region']:<13} "
            f"{t['status']:<11} {t['health']['consecutive_errors']}"
        )


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trtc-monitor", description="Monitor Tencent TRTC on-cloud recording tasks."
    )
    parser.add_argument("--version", action="version", version=f"trtc-monitor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("-c", "--config", help=f"config file (default {DEFAULT_CONFIG})")
    p.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="web configuration file of Prometheus exporters (TLS, basic auth); "
        "wins over server.web_config_file",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "check-config",
        help="validate a config file as `run` would (its secrets too)",
        description="Checks what `run` checks before it starts: the file, every secret it "
        "names, the access hosts. Exit 0 when `run` would take it, 1 with every error.",
    )
    p.add_argument("-c", "--config", help=f"config file (default {DEFAULT_CONFIG})")
    p.add_argument(
        "--syntax-only",
        action="store_true",
        help="check the file alone (on a machine that is not the one that runs it): "
        "secrets that cannot be read here are warnings",
    )
    p.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="the main port's web configuration file, as given to run (wins over "
        "server.web_config_file)",
    )
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("demo", help="daemon + built-in simulator, zero set-up")
    p.add_argument("--duration", help="stop after this long, e.g. 60s (default: until Ctrl-C)")
    p.add_argument("--port", type=int, default=9877, help="daemon port (default 9877; 0 = any)")
    p.add_argument("--config", help="demo config (default config/demo.yaml)")
    p.add_argument(
        "--replicas",
        type=int,
        default=1,
        choices=range(1, 6),
        metavar="N",
        help="N replicas on one local redis-server, one killed to show the takeover (1-5)",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("simulate", help="run only the TRTC API simulator")
    p.add_argument("--listen", default="127.0.0.1:18080", help="host:port (default %(default)s)")
    p.add_argument("--scenario", help="scenario YAML file")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("describe", help="one DescribeCloudRecording call")
    p.add_argument("--sdk-app-id", type=int, required=True)
    p.add_argument("--task-id", required=True)
    p.add_argument("--region", required=True)
    p.add_argument("-c", "--config")
    p.add_argument("--account", default="default")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser(
        "credentials", help="show where each account's credentials come from (no secrets)"
    )
    p.add_argument("-c", "--config", help=f"config file (default {DEFAULT_CONFIG})")
    p.add_argument("--account", help="only this account (default: all)")
    p.set_defaults(func=cmd_credentials)

    p = sub.add_parser("tasks", help="manage tasks through the daemon's API")
    p.add_argument(
        "--url",
        default=os.environ.get("TRTC_MONITOR_URL", DEFAULT_URL),
        help="daemon URL (default %(default)s; env TRTC_MONITOR_URL)",
    )
    p.add_argument(
        "--cacert",
        default=os.environ.get("TRTC_MONITOR_CA_FILE"),
        metavar="FILE",
        help="CA certificates to trust for an https URL (env TRTC_MONITOR_CA_FILE); the "
        "token comes from TRTC_MONITOR_API_TOKEN, a basic auth login from "
        "TRTC_MONITOR_BASIC_AUTH=user:password",
    )
    tsub = p.add_subparsers(dest="tasks_command", metavar="ACTION", required=True)
    a = tsub.add_parser("add", help="register a task, or many from a file")
    a.add_argument("--sdk-app-id", type=int)
    a.add_argument("--task-id")
    a.add_argument("--region")
    a.add_argument(
        "--file",
        help="a JSON or YAML list of tasks ({sdk_app_id, task_id, region, ...} each), "
        "registered in one request (at most 1000)",
    )
    a.add_argument("--account")
    a.add_argument("--label", action="append", default=[], help="name=value (repeatable)")
    a.add_argument("--interval", help="poll interval, e.g. 10s")
    a = tsub.add_parser("list", help="list tasks")
    a.add_argument("--status")
    a.add_argument("--region")
    a.add_argument("--account")
    a.add_argument(
        "--label", action="append", default=[], help="name=value (repeatable; all must match)"
    )
    a.add_argument("--json", action="store_true", help="print JSON")
    for name, text in (("show", "show one task"), ("remove", "deregister a task")):
        a = tsub.add_parser(name, help=text)
        a.add_argument("--sdk-app-id", type=int, required=True)
        a.add_argument("--task-id", required=True)
    # tasks update: a block of its own.
    a = tsub.add_parser(
        "update",
        help="change a task's labels and/or interval",
        description="Labels given replace the task's whole label set.",
    )
    a.add_argument("sdk_app_id", type=int, metavar="SDK_APP_ID")
    a.add_argument("task_id", metavar="TASK_ID")
    a.add_argument("--label", action="append", default=[], help="name=value (repeatable)")
    a.add_argument("--clear-labels", action="store_true", help="remove every label")
    a.add_argument(
        "--interval", help="poll interval, e.g. 30s or 1m30s; 'default' for the configured one"
    )
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("store", help="work on stores directly (the daemon need not run)")
    ssub = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    a = ssub.add_parser(
        "copy",
        help="copy every task, transition and alert record from one store to another",
        description="Store URLs: sqlite:PATH, or redis://[:password@]host:port/db with an "
        "optional ?key_prefix=... (default trtc-monitor:); rediss:// and unix:// too.",
    )
    a.add_argument("--from", dest="source", required=True, metavar="URL", help="source store")
    a.add_argument("--to", dest="target", required=True, metavar="URL", help="target store")
    a.add_argument("--force", action="store_true", help="copy into a target that is not empty")
    p.set_defaults(func=cmd_store)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
    return parser


def _stdout_gone() -> int:
    """The reader of our output went away (``trtc-monitor tasks list | head -1``): what is
    left has nowhere to go, which is no failure. Quietly: stdout now points at /dev/null, so
    the interpreter's last flush has nothing to complain about either."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        code: int = args.func(args)
        sys.stdout.flush()  # here, where a closed pipe can still be told apart
    except BrokenPipeError:
        return _stdout_gone()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_FAILURE
    return code
