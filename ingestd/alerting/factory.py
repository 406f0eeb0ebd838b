"""Each ``[[alerts]]`` table its channel, after the log, which is always one."""

from __future__ import annotations

from ..config import Settings, SmtpChannelSettings, WebhookChannelSettings
from . import Channel
from .log import LogChannel
from .retry import Sleep, default_sleep
from .smtp import SmtpChannel
from .webhook import WebhookChannel


def build_channels(settings: Settings, *, sleep: Sleep = default_sleep) -> list[Channel]:
    channels: list[Channel] = [LogChannel()]
    for spec in settings.alerts:
        ca = settings.path(spec.ca_bundle) if spec.ca_bundle is not None else None
        if isinstance(spec, WebhookChannelSettings):
            token = settings.path(spec.token_file) if spec.token_file is not None else None
            channels.append(WebhookChannel(spec, token_file=token, ca_bundle=ca, sleep=sleep))
        elif isinstance(spec, SmtpChannelSettings):
            password = (settings.path(spec.password_file)
                        if spec.password_file is not None else None)
            channels.append(SmtpChannel(spec, password_file=password, ca_bundle=ca,
                                        sleep=sleep))
    return channels
