"""Alert channels: the log (always), webhooks and mail. Each takes a :class:`Notice` and
either delivers it or raises :class:`DeliveryFailed` with a reason fit for the log (no
secret in it); what to send and when is the domain's (``domain/alerts``)."""

from __future__ import annotations

from typing import Protocol

from ..domain.alerts import Notice


class DeliveryFailed(Exception):
    """A channel could not deliver a notice (after its retries); the message says why."""


class Channel(Protocol):
    @property
    def name(self) -> str: ...

    def send(self, notice: Notice, *, station: str) -> None: ...
