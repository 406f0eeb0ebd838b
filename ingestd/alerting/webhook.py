"""The webhook channel: an HTTP POST of the notice as JSON, with an optional bearer token read
from a file at each send. A server error, a timeout or a refused connection is tried again
after a doubling pause, ``attempts`` times in all; a client error (4xx but 408 and 429) is not
(the same request would be refused again). Redirects are not followed: the token goes to the
configured URL only."""

from __future__ import annotations

import json
import logging
import ssl
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from typing import IO, Any

from ..config import WebhookChannelSettings
from ..domain.alerts import Notice, payload
from ..domain.text import redact_url, redact_urls
from . import DeliveryFailed
from .retry import Sleep, default_sleep, waits

log = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({408, 429})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int,
                         msg: str, headers: Message, newurl: str) -> None:
        return None  # the 3xx is then an HTTPError: refused, not followed


class WebhookChannel:
    def __init__(self, spec: WebhookChannelSettings, *, token_file: Path | None,
                 ca_bundle: Path | None, sleep: Sleep = default_sleep) -> None:
        self.spec = spec
        self.name = spec.channel
        self._token_file = token_file
        self._sleep = sleep
        context = ssl.create_default_context(
            cafile=str(ca_bundle) if ca_bundle is not None else None)
        self._opener = urllib.request.build_opener(
            _NoRedirect(), urllib.request.HTTPSHandler(context=context))

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "ingestd-alerts"}
        if self._token_file is not None:
            try:
                token = self._token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise DeliveryFailed(f"cannot read token_file {self._token_file}: "
                                     f"{exc.strerror}") from None
            if not token:
                raise DeliveryFailed(f"token_file {self._token_file} is empty")
            if not token.isascii() or not token.isprintable() or " " in token:
                # said without the token: http.client would quote it in its refusal
                raise DeliveryFailed(f"token_file {self._token_file} holds more than one "
                                     "token (a line break, space or control character)")
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[bool, str]:
        """One try: (whether to try again, why it failed); returns normally on success as
        (False, "")."""
        request = urllib.request.Request(self.spec.url, data=body, headers=headers,
                                         method="POST")
        try:
            with self._opener.open(request, timeout=self.spec.timeout.total_seconds()) as resp:
                resp.read()
                return False, ""
        except urllib.error.HTTPError as exc:
            exc.close()
            again = exc.code >= 500 or exc.code in _RETRY_STATUS
            return again, f"HTTP {exc.code} {exc.reason}"
        except ValueError:
            # http.client refusing a header or the URL: its message may quote a secret
            return False, "the request could not be formed (a header or the URL refused)"
        except (urllib.error.URLError, OSError) as exc:
            reason: Any = getattr(exc, "reason", exc)
            return True, redact_urls(str(reason))

    def send(self, notice: Notice, *, station: str) -> None:
        body = json.dumps(payload(notice, station=station), ensure_ascii=True,
                          default=str).encode("ascii")
        headers = self._headers()
        pauses = waits(self.spec.attempts, self.spec.backoff)
        tries = 0
        while True:
            tries += 1
            again, why = self._post(body, headers)
            if not why:
                return
            if not again or not pauses:
                break
            pause = pauses.pop(0)
            log.warning("webhook %s (%s): %s; trying again in %.1fs", self.name,
                        redact_url(self.spec.url), why, pause,
                        extra={"event": "alert_retry"})
            self._sleep(pause)
        raise DeliveryFailed(f"POST to {redact_url(self.spec.url)} failed after {tries} "
                             f"{'try' if tries == 1 else 'tries'}: {why}")
