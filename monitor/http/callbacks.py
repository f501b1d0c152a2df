"""TRTC recording callbacks (SPEC section 8)."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application, path: str) -> None:
    """Mount the callback endpoint at ``path``."""
    raise NotImplementedError
