"""Pieces shared by the edge server and the device: JSON errors, authentication, limits, serving."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from aiohttp import web

from grl_aecnn.runtime.auth import AuthError, verify
from grl_aecnn.runtime.config import AuthConfig
from grl_aecnn.store import atomic_write_json

OPENAPI_FILE = Path(__file__).with_name("openapi.yaml")


def error_response(status: int, error: str, reason: str) -> web.Response:
    return web.json_response({"error": error, "reason": reason}, status=status)


class Authenticator:
    def __init__(self, auth: AuthConfig):
        self.scheme, self.secret, self.max_skew_s = auth.scheme, auth.secret(), auth.max_clock_skew_s

    def check(self, request: web.Request, body: bytes) -> web.Response | None:
        """None if the request is authorized, else the 401 to send."""
        try:
            verify(self.scheme, self.secret, request.headers.get("Authorization"), request.method, request.path, body,
                   self.max_skew_s, headers=request.headers)
        except AuthError as exc:
            return error_response(401, "unauthorized", str(exc))
        return None


async def read_bounded(request: web.Request, limit: int) -> bytes | web.Response:
    """The body, or a 413 when it is larger than `limit` (checked on the declared length first, so
    an oversize body is refused before it is read)."""
    if request.content_length is not None and request.content_length > limit:
        return error_response(413, "too_large", f"body of {request.content_length} bytes, the limit is {limit}")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "too_large", f"body larger than the limit of {limit} bytes")
    if len(body) > limit:  # a chunked body declares no length; the app-wide cap may be larger than `limit`
        return error_response(413, "too_large", f"body of {len(body)} bytes, the limit is {limit}")
    return body


async def openapi(_: web.Request) -> web.Response:
    return web.Response(text=OPENAPI_FILE.read_text(), content_type="application/yaml")


async def serve_until_signal(app: web.Application, host: str, port: int, ready_file: Path | None, info: dict) -> None:
    """Serve `app` until SIGTERM or SIGINT. The bound URL (port 0 picks a free one) goes to
    `ready_file` with `info`, written atomically once the socket listens: the parent waits for it."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    url = f"http://{host}:{bound_port}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready_file is not None:
        atomic_write_json(ready_file, {**info, "url": url, "pid": os.getpid()})
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
