"""The status page (``/``) and an item's page (``/items/{ref}``): rendered on the server from
Jinja2 templates (autoescaped: every name a recorder or a person typed is text), readable
without JavaScript, reloaded by a meta refresh."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from ..config import WebSettings
from ..domain.canonical import parse_time
from ..domain.policy import local_time
from ..station import Station
from ..usecases.alerts import list_alerts
from ..usecases.status import StationStatus
from .api import resolved
from .deps import station, station_status
from .text import HTML_LANG, LANGUAGES

router = APIRouter(include_in_schema=False)

_templates = Environment(loader=PackageLoader("ingestd.web", "templates"),
                         autoescape=select_autoescape(["html"], default=True),
                         trim_blocks=True, lstrip_blocks=True)


def human_size(n: int | float | None) -> str:
    if n is None:
        return "–"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _render(request: Request, name: str, *, status_code: int = 200,
            **context: Any) -> HTMLResponse:
    web: WebSettings = request.app.state.web
    st: Station = request.app.state.station
    tz = st.settings.station_tz

    def when(moment: datetime | str | None) -> str:
        if moment is None:
            return "–"
        if isinstance(moment, str):
            moment = parse_time(moment)
        return local_time(moment, tz)

    template = _templates.get_template(name)
    html = template.render(
        t=LANGUAGES[web.language], lang=HTML_LANG[web.language],
        refresh=int(web.refresh.total_seconds()), station=st.name, when=when,
        size=human_size, now=st.clock(), **context)
    return HTMLResponse(html, status_code=status_code)


@router.get("/", response_class=HTMLResponse)
def status_page(request: Request,
                state: Annotated[StationStatus, Depends(station_status)]) -> HTMLResponse:
    return _render(request, "status.html", s=state,
                   alerts=list_alerts(request.app.state.station))


@router.get("/items/{ref}", response_class=HTMLResponse)
def item_page(ref: str, request: Request,
              st: Annotated[Station, Depends(station)]) -> HTMLResponse:
    try:
        view = resolved(st, ref)
    except HTTPException as exc:
        return _render(request, "missing.html", status_code=exc.status_code, ref=ref,
                       why=str(exc.detail))
    return _render(request, "item.html", i=view)
