"""The mail channel: one plain-text message per notice to every ``to``, through an SMTP
server, after STARTTLS (the server's certificate checked) unless ``starttls = false``; a
login when ``username`` is set, with the password read from ``password_file`` at each send.
A server that does not offer STARTTLS when asked for it gets nothing."""

from __future__ import annotations

import base64
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from ..config import SmtpChannelSettings
from ..domain.alerts import Notice, mail_text, subject
from ..domain.text import printable
from . import DeliveryFailed
from .retry import Sleep, default_sleep, waits

log = logging.getLogger(__name__)


class SmtpChannel:
    def __init__(self, spec: SmtpChannelSettings, *, password_file: Path | None,
                 ca_bundle: Path | None, sleep: Sleep = default_sleep) -> None:
        self.spec = spec
        self.name = spec.channel
        self._password_file = password_file
        self._ca_bundle = ca_bundle
        self._sleep = sleep

    def _message(self, notice: Notice, station: str) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = subject(notice, station=station)
        msg["From"] = self.spec.sender
        msg["To"] = ", ".join(self.spec.to)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain=self.spec.sender.rsplit("@", 1)[-1])
        msg["X-Ingestd-Alert"] = printable(notice.alert.key)[:200]
        msg["X-Ingestd-State"] = str(notice.alert.state)
        msg.set_content(mail_text(notice, station=station), subtype="plain", charset="utf-8")
        return msg

    def _password(self) -> str:
        assert self._password_file is not None
        try:
            return self._password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise DeliveryFailed(f"cannot read password_file {self._password_file}: "
                                 f"{exc.strerror}") from None

    def _deliver(self, msg: EmailMessage) -> None:
        spec = self.spec
        with smtplib.SMTP(spec.host, spec.port, timeout=spec.timeout.total_seconds()) as smtp:
            smtp.ehlo()
            if spec.starttls:
                context = ssl.create_default_context(
                    cafile=str(self._ca_bundle) if self._ca_bundle is not None else None)
                smtp.starttls(context=context)
                smtp.ehlo()
            if spec.username:
                _login(smtp, spec.username, self._password() if self._password_file else "")
            smtp.send_message(msg, from_addr=spec.sender, to_addrs=list(spec.to))

    def send(self, notice: Notice, *, station: str) -> None:
        msg = self._message(notice, station)
        pauses = waits(self.spec.attempts, self.spec.backoff)
        tries = 0
        where = f"{self.spec.host}:{self.spec.port}"
        while True:
            tries += 1
            try:
                self._deliver(msg)
                return
            except smtplib.SMTPNotSupportedError:
                raise DeliveryFailed(f"mail server {where} does not offer STARTTLS; nothing "
                                     "sent (set starttls = false only on a trusted link)"
                                     ) from None
            except smtplib.SMTPAuthenticationError as exc:
                raise DeliveryFailed(f"mail server {where} refused the login: "
                                     f"{exc.smtp_code}") from None
            except smtplib.SMTPResponseException as exc:
                # 4xx: the server asks to try later; 5xx: it will refuse the same again
                why = f"{exc.smtp_code} {printable(_said(exc.smtp_error))}"
                again = 400 <= exc.smtp_code < 500
            except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
                why, again = printable(str(exc) or type(exc).__name__), True
            if not again or not pauses:
                break
            pause = pauses.pop(0)
            log.warning("mail %s (%s): %s; trying again in %.1fs", self.name, where, why,
                        pause, extra={"event": "alert_retry"})
            self._sleep(pause)
        raise DeliveryFailed(f"mail through {where} failed after {tries} "
                             f"{'try' if tries == 1 else 'tries'}: {why}")


def _login(smtp: smtplib.SMTP, user: str, password: str) -> None:
    """smtplib's login, or for a name or password beyond ASCII (which it cannot send) AUTH
    PLAIN in UTF-8 (RFC 4616)."""
    if user.isascii() and password.isascii():
        smtp.login(user, password)
        return
    if not smtp.has_extn("auth") or "PLAIN" not in smtp.esmtp_features["auth"].upper().split():
        raise DeliveryFailed("the mail server offers no AUTH PLAIN, needed for a user name "
                             "or password beyond ASCII")
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode("ascii")
    code, said = smtp.docmd("AUTH", "PLAIN " + token)
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, said)


def _said(error: bytes | str) -> str:
    return error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
