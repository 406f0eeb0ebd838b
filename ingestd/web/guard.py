"""What every request passes before any page: the token (when one is configured) and the
methods a read-only server answers (GET, and HEAD as GET without the body).

The token comes as ``Authorization: Bearer TOKEN`` (monitoring, scripts) or as the password of
HTTP Basic authentication, any user name (a browser, which asks for it when refused), never in
the URL, where logs and browser histories would keep it.

A plain ASGI middleware, so that it stands in front of every route, ``/metrics`` and the
static files included, whatever router adds them."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ALLOWED = ("GET", "HEAD")


class Guard:
    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self._expected = None if token is None else token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._expected is not None and not self._authorized(scope):
            await _refuse(send, 401, "a token is required (Authorization: Bearer ..., or the "
                          "token as the password of Basic authentication)",
                          [(b"www-authenticate", b'Bearer realm="ingestd"'),
                           (b"www-authenticate", b'Basic realm="ingestd", charset="UTF-8"')])
            return
        method = scope["method"]
        if method not in ALLOWED:
            await _refuse(send, 405, f"{method} is not allowed: this server only reads",
                          [(b"allow", ", ".join(ALLOWED).encode())])
            return
        if method == "HEAD":
            await self.app({**scope, "method": "GET"}, receive, _without_body(send))
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        assert self._expected is not None
        given = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                given = value
                break
        scheme, _, credential = given.partition(b" ")
        if scheme.lower() == b"basic":
            try:
                credential = base64.b64decode(credential.strip(), validate=True).partition(
                    b":")[2]
            except (binascii.Error, ValueError):
                return False
        elif scheme.lower() != b"bearer":
            return False
        # compared in constant time: how long a refusal takes tells nothing of the token
        return hmac.compare_digest(credential.strip(), self._expected)


def _without_body(send: Send) -> Send:
    async def sender(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return sender


async def _refuse(send: Send, status: int, why: str,
                  headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"error": why}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
