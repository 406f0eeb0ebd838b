"""A small threaded HTTP(S) proxy on 127.0.0.1 in front of an S3 server that, when told, flips
one byte of a request body on its way to the server or of a GET response body on its way back:
a network, a load balancer or a server that stores (or serves) other bytes than it was sent.

It also keeps every request's method, path, headers and body (after any flip), so a test can
check what reached the server. Request bodies with ``Transfer-Encoding: chunked`` are
de-chunked and sent on with a ``Content-Length``; the bytes inside (aws-chunked framing
included) are passed as they are.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.support import damage

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection",
               "content-length"}

#: (method, unquoted path with query) -> flip this one?
Choose = Callable[[str, str], bool]


def never(method: str, path: str) -> bool:
    return False


def object_puts(needle: str) -> Choose:
    """PUTs of object bytes (a whole object or a part) whose path contains ``needle``."""
    def choose(method: str, path: str) -> bool:
        query = path.partition("?")[2]
        return (method == "PUT" and needle in path
                and (not query or "partNumber=" in query))
    return choose


def gets(needle: str) -> Choose:
    """GETs (whole or ranged) whose path contains ``needle``."""
    def choose(method: str, path: str) -> bool:
        return method == "GET" and needle in path
    return choose


@dataclass(frozen=True, kw_only=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    flipped: bool


class RelayServer:
    """A threaded HTTP(S) server on 127.0.0.1 that hands every request to ``relay`` (the
    proxies of the tests forward it to an S3 server, changing what they are told to)."""

    def __init__(self, relay: Callable[[BaseHTTPRequestHandler], None], *,
                 tls: ssl.SSLContext | None = None) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                relay(self)

            do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        port = self._server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class FlippingProxy:
    """Relays HTTP (or HTTPS, with ``tls``) to ``upstream`` (plain HTTP)."""

    def __init__(self, upstream: str, *, tls: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname and parts.port
        self._upstream = (parts.hostname, parts.port)
        self._guard = threading.Lock()
        self.flip_request: Choose = never
        self.flip_response: Choose = never
        self.seen: list[Seen] = []
        self._relay_server = RelayServer(self._relay, tls=tls)
        self.url = self._relay_server.url

    def __enter__(self) -> FlippingProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._relay_server.close()

    def flipped(self) -> list[Seen]:
        with self._guard:
            return [s for s in self.seen if s.flipped]

    def requests(self, method: str, needle: str = "") -> list[Seen]:
        with self._guard:
            return [s for s in self.seen if s.method == method and needle in s.path]

    def _relay(self, handler: BaseHTTPRequestHandler) -> None:
        method, raw_path = handler.command, handler.path
        path = unquote(raw_path)
        body = _read_body(handler)
        with self._guard:
            flip_in = self.flip_request(method, path)
            flip_out = self.flip_response(method, path)
        if flip_in:
            body = damage.flipped(body)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body or method in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(*self._upstream, timeout=60)
        try:
            upstream.request(method, raw_path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        flip_out = flip_out and 200 <= answer.status < 300 and bool(data)
        if flip_out:
            data = damage.flipped(data)
        with self._guard:
            self.seen.append(Seen(method=method, path=path, headers=dict(handler.headers.items()),
                                  body=body, status=answer.status, flipped=flip_in or flip_out))
        passed = {k: v for k, v in answer.getheaders()
                  if k.lower() not in _HOP_BY_HOP | {"server", "date"}}
        handler.send_response(answer.status)
        for key, value in passed.items():
            handler.send_header(key, value)
        if method == "HEAD":  # no body, but the size of the object it describes
            handler.send_header("Content-Length", answer.getheader("Content-Length") or "0")
        else:
            handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if method != "HEAD":
            handler.wfile.write(data)


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(out)
            out += handler.rfile.read(size)
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""
