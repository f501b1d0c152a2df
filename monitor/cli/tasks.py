"""`tasks`: the client of the daemon's task API, with its label, interval and auth helpers."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

from monitor.cli.common import EXIT_FAILURE, EXIT_OK, UserError, print_errors


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
    if args.recorder_key:
        body["recorder_key"] = args.recorder_key
    if args.kind:
        body["kind"] = args.kind
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
        print_errors(problems)
        raise UserError(f"tasks add --file {path}: {len(problems)} invalid task(s), none sent")
    return data


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
