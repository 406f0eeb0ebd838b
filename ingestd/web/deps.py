"""What a route asks of the app it runs in: the station it reads (``app.state.station``) and the
``[web]`` settings. A router added later (``/metrics``) reads the station the same way."""

from __future__ import annotations

from fastapi import Request

from ..config import WebSettings
from ..station import Station
from ..usecases.status import StationStatus
from .reading import StatusReader


def station(request: Request) -> Station:
    found: Station = request.app.state.station
    return found


def web_settings(request: Request) -> WebSettings:
    found: WebSettings = request.app.state.web
    return found


def station_status(request: Request) -> StationStatus:
    """The station's status, read at most ``reading.STATUS_TTL`` before."""
    reader: StatusReader = request.app.state.status
    return reader()
