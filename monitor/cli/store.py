"""`store copy`: from one store to another, the daemon need not run."""

from __future__ import annotations

import argparse
import asyncio

from monitor.cli.common import EXIT_FAILURE, EXIT_OK, UserError


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
