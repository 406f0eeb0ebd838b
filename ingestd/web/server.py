"""The web server inside the daemon: uvicorn on a thread of the daemon's process.

A thread, not a process of its own: the pages read the catalog through a read-only station of
their own (SQLite ``mode=ro``: a page cannot write even by mistake) and the store's file
system, both of which the daemon has open already, and there is no second process to start,
watch and stop with it. A request holds a read transaction for a few bounded queries; SQLite
in WAL mode (and PostgreSQL) lets readers and the one writer go on side by side, and hashing
releases the GIL, so ingest does not wait for a page. The socket is bound before the thread
starts, so an address in use, or a certificate that does not load, stops the daemon at start
with the reason.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from pathlib import Path

import uvicorn

from ..config import Settings
from ..errors import ConfigError
from ..station import Station
from .app import create_app

log = logging.getLogger(__name__)

#: How long the server may take to start, and to finish the requests in hand at a stop.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


def read_token(path: Path) -> str:
    """The bearer token in ``[web] token_file`` (its text, without the line's end)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"web.token_file: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"web.token_file: {path} is not text") from None
    if len(token) < 16:
        raise ConfigError(f"web.token_file: {path} holds {'no' if not token else 'too short a'}"
                          " token (at least 16 characters)")
    return token


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"web.listen: cannot listen on {host}:{port}: "
                          f"{exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class WebServer:
    """The status page of one station, served until :meth:`stop`."""

    def __init__(self, settings: Settings) -> None:
        web = settings.web
        assert web.address is not None
        self.host, port = web.address
        token = read_token(settings.path(web.token_file)) if web.token_file else None
        self.station = Station.open(settings, read_only=True)
        app = create_app(self.station, web, token=token)
        cert = settings.path(web.tls_cert) if web.tls_cert else None
        key = settings.path(web.tls_key) if web.tls_key else None
        self.scheme = "https" if cert else "http"
        self._config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", server_header=False,
            proxy_headers=False, timeout_graceful_shutdown=int(STOP_TIMEOUT),
            ssl_certfile=str(cert) if cert else None, ssl_keyfile=str(key) if key else None)
        try:
            self._config.load()
        except (OSError, ssl.SSLError) as exc:
            self.station.close()
            raise ConfigError(f"web.tls_cert / web.tls_key: cannot load {cert} and {key}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
        self._socket = _bind(self.host, port)
        self.port = int(self._socket.getsockname()[1])
        self._server = uvicorn.Server(self._config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]},
                                        name="ingestd-web", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/"

    def start(self) -> None:
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(START_TIMEOUT / 0.05)):
            if self._server.started or not self._thread.is_alive():
                break
            deadline.wait(0.05)
        if not self._server.started:
            self.stop()
            raise ConfigError(f"web.listen: the status page did not start on {self.url}")
        log.info("status page at %s", self.url, extra={"event": "web_ready",
                                                      "fields": {"url": self.url}})

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT + 2)
        self._socket.close()
        self.station.close()
