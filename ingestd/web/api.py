"""The JSON API (``/api/...``) and ``/healthz``: the facts of the status page, from the same
models (``usecases/status``, ``views``), documented by the OpenAPI schema."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse

from ..domain.flags import Flag
from ..domain.models import item_prefix
from ..domain.records import ItemFilter
from ..errors import Ambiguous, IngestdError, NotFound
from ..station import Station
from ..usecases.alerts import list_alerts
from ..usecases.status import StationStatus
from . import views
from .deps import station, station_status
from .reading import STATUS_TTL

router = APIRouter()
StationDep = Annotated[Station, Depends(station)]


def _moment(value: str | None, name: str, tz: tzinfo) -> datetime | None:
    """A date or time as ``ingestd items --since/--until`` takes it (no offset: in the
    station's zone, ``tz``)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"{name}: not a date or time: {value!r} (use 2026-01-31 "
                                 "or 2026-01-31T08:00:00+08:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def resolved(st: Station, ref: str) -> dict[str, Any]:
    """The item view of ``ref``, or the HTTP error saying why there is none."""
    if item_prefix(ref) is None:
        raise HTTPException(404, f"{ref!r} is not an item: give its SHA-256 or 8 or more "
                                 "of its first hex digits")
    try:
        return views.item_view(st, ref)
    except NotFound as exc:
        raise HTTPException(404, exc.message) from None
    except Ambiguous as exc:
        raise HTTPException(409, exc.message) from None


@router.get("/api/status", tags=["status"], summary="The station's status",
            description="What `ingestd status --json` prints, read at most "
                        f"{STATUS_TTL:g} s before the request.")
def api_status(state: Annotated[StationStatus, Depends(station_status)]) -> dict[str, Any]:
    return state.to_json()


@router.get("/api/items", tags=["items"], summary="Items, filtered and paged",
            description="The filters `ingestd items` takes, in its order (recorded start, "
                        "then SHA-256). A page ends with `next_after`: pass it as `after` for "
                        "the next page (null: this is the last).")
def api_items(
    st: StationDep,
    case: str | None = None,
    officer: str | None = None,
    recorder: str | None = None,
    flag: Flag | None = None,
    since: Annotated[str | None, Query(
        description="recorded on or after (no offset: in the station's zone)")] = None,
    until: Annotated[str | None, Query(
        description="recorded before (no offset: in the station's zone)")] = None,
    limit: Annotated[int, Query(ge=1, le=views.PAGE_MAX)] = 50,
    after: Annotated[str | None, Query(pattern="^[0-9a-f]{64}$",
                                       description="the last item of the page before")] = None,
) -> dict[str, Any]:
    wanted = ItemFilter(case=case, officer=officer, recorder_serial=recorder, flag=flag,
                        since=_moment(since, "since", st.settings.station_tz),
                        until=_moment(until, "until", st.settings.station_tz))
    try:
        return views.item_page(st, wanted, after=after, limit=limit).to_json()
    except NotFound as exc:
        raise HTTPException(400, exc.message) from None


@router.get("/api/items/{ref}", tags=["items"], summary="One item and its custody",
            description="`ref` is a SHA-256 or 8 or more of its first hex digits, as the "
                        "command line takes it.")
def api_item(ref: str, st: StationDep) -> dict[str, Any]:
    return resolved(st, ref)


@router.get("/api/alerts", tags=["alerts"], summary="The alerts firing",
            description="What `ingestd alerts list --json` prints (`all=true`: resolved "
                        "ones too).")
def api_alerts(st: StationDep, all: bool = False) -> dict[str, Any]:  # noqa: A002
    return {"alerts": [a.to_json() for a in list_alerts(st, include_resolved=all)]}


@router.get("/healthz", tags=["health"], summary="Does the catalog answer?",
            responses={503: {"description": "the catalog does not answer: why"}})
def healthz(st: StationDep) -> JSONResponse:
    try:
        with st.catalog.read() as tx:
            seq, _ = tx.ledger_head()
    except IngestdError as exc:
        return JSONResponse({"ok": False, "station": st.name, "problem": exc.message},
                            status_code=503)
    except Exception as exc:  # noqa: BLE001 - whatever the driver raises is the answer
        # the kind only: a driver's message may carry the catalog's address
        return JSONResponse({"ok": False, "station": st.name,
                             "problem": f"catalog: {type(exc).__name__}"}, status_code=503)
    return JSONResponse({"ok": True, "station": st.name, "ledger_seq": seq})
