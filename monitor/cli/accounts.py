"""`describe` and `credentials`: one account's view of TRTC, without the daemon."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from monitor.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    UserError,
    checked_config,
    config_path,
)


def cmd_describe(args: argparse.Namespace) -> int:
    return asyncio.run(_describe(args))


async def _describe(args: argparse.Namespace) -> int:
    from monitor.config import Config, load_config
    from monitor.credentials import CredentialsError, resolve_once
    from monitor.models import REGIONS
    from monitor.trtc.client import Endpoint, TrtcClient, new_session

    if args.region not in REGIONS:
        raise UserError(f"--region must be one of {', '.join(REGIONS)}")
    path = config_path(args.config)
    config = checked_config(load_config, path) if args.config or path.exists() else Config()
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

    from monitor.config import load_config
    from monitor.credentials import CredentialsError, resolve_once
    from monitor.durations import format_duration
    from monitor.trtc.client import new_session

    path = config_path(args.config)
    config = checked_config(load_config, path)
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
