"""The ``profile`` source: ``~/.tencentcloud/credentials``, then
``/etc/tencentcloud/credentials`` (INI; the section the account names, keys ``secret_id`` and
``secret_key``). Read in a worker thread at each resolution, so an edited file is picked up."""

from __future__ import annotations

import asyncio
import configparser
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from monitor.credentials.base import PROFILE, CredentialsError, Issued, NotPresent
from monitor.secrets import Credentials

SYSTEM_FILE = Path("/etc/tencentcloud/credentials")


def default_paths(home: Path | None = None) -> tuple[Path, ...]:
    base = Path.home() if home is None else home
    return (base / ".tencentcloud" / "credentials", SYSTEM_FILE)


def read_profile(paths: Sequence[Path], section: str) -> Credentials:
    """The named section of the first file that exists. Blocking: call it off the loop."""
    for path in paths:
        if not path.is_file():
            continue
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise CredentialsError(
                PROFILE, f"{path} cannot be read ({type(exc).__name__})"
            ) from None
        except configparser.Error:
            # The parser's message quotes the offending line, which may hold a key.
            raise CredentialsError(PROFILE, f"{path} is not a valid INI file") from None
        if not parser.has_section(section):
            raise NotPresent(PROFILE, f"{path} has no [{section}] section")
        values = {
            k: parser.get(section, k, fallback="").strip() for k in ("secret_id", "secret_key")
        }
        missing = [k for k, v in values.items() if not v]
        if missing:
            raise CredentialsError(PROFILE, f"[{section}] of {path} lacks {' and '.join(missing)}")
        return Credentials(values["secret_id"], values["secret_key"])
    raise NotPresent(PROFILE, f"no file at {' or '.join(str(p) for p in paths)}")


class ProfileSource:
    name = PROFILE

    def __init__(self, section: str, paths: Sequence[Path] | None = None) -> None:
        self._section = section
        self._paths = tuple(paths) if paths is not None else default_paths()

    async def fetch(self, session: aiohttp.ClientSession) -> Issued:
        credentials = await asyncio.to_thread(read_profile, self._paths, self._section)
        return Issued(credentials, PROFILE)
