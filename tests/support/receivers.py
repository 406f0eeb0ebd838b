"""Real receivers for alerts: an HTTP server that keeps every POST (and can answer 503 a given
number of times first), and an SMTP server (aiosmtpd) that keeps every message, with
STARTTLS on a certificate made by ``openssl req -x509`` and a login checked against a
password."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class WebhookReceiver:
    url: str
    posts: list[Post] = field(default_factory=list)
    #: answer this many requests with 503 before taking one
    fail_next: int = 0
    #: answer every request with a redirect elsewhere
    redirect: bool = False
    tries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def alerts(self, key: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [p.body for p in self.posts if key is None or p.body["alert"] == key]

    def clear(self) -> None:
        with self.lock:
            self.posts.clear()
            self.tries = 0
            self.fail_next = 0
            self.redirect = False


@contextlib.contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            with receiver.lock:
                receiver.tries += 1
                if receiver.redirect:
                    self.send_response(307)
                    self.send_header("Location", "/elsewhere")
                    self.end_headers()
                    return
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.posts.append(Post(path=self.path, headers=dict(self.headers.items()),
                                           body=json.loads(raw)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dead_url() -> str:
    """An http URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}/hook"


@dataclass
class Mail:
    sender: str
    rcpt: list[str]
    message: Message
    tls: bool
    login: str | None

    @property
    def body(self) -> str:
        payload = self.message.get_payload(decode=True)
        assert isinstance(payload, bytes)
        text = payload.decode(self.message.get_content_charset() or "utf-8")
        return text.replace("\r\n", "\n")  # as sent: SMTP carries lines ending CRLF


@dataclass
class MailReceiver:
    host: str
    port: int
    ca: Path
    user: str
    password: str
    mails: list[Mail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def messages(self, key: str | None = None) -> list[Mail]:
        with self.lock:
            return [m for m in self.mails
                    if key is None or m.message["X-Ingestd-Alert"] == key]

    def clear(self) -> None:
        with self.lock:
            self.mails.clear()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by openssl."""
    cert, key = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@contextlib.contextmanager
def mail_receiver(folder: Path) -> Iterator[MailReceiver]:
    """An SMTP server on a free port that insists on STARTTLS and a login."""
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = self_signed(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    receiver = MailReceiver(host="127.0.0.1", port=free_port(), ca=cert, user="ingestd",
                            password="s3cret-pässword")

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                      data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login.decode() == receiver.user and (
            data.password.decode() == receiver.password)
        return AuthResult(success=ok, auth_data=data if ok else None)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any,  # noqa: N802
                              envelope: Any) -> str:
            auth = session.auth_data
            login = auth.login.decode() if isinstance(auth, LoginPassword) else None
            with receiver.lock:
                receiver.mails.append(Mail(
                    sender=envelope.mail_from, rcpt=list(envelope.rcpt_tos),
                    message=message_from_bytes(envelope.original_content or envelope.content),
                    tls=session.ssl is not None,
                    login=login))
            return "250 OK"

    controller = Controller(Handler(), hostname=receiver.host, port=receiver.port,
                            tls_context=context, require_starttls=True, auth_required=True,
                            auth_require_tls=True, authenticator=authenticator)
    controller.start()
    try:
        yield receiver
    finally:
        controller.stop()
