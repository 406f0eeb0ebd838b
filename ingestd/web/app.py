"""The web app: one FastAPI application over one station, read-only."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ..config import WebSettings
from ..station import Station
from . import api, metrics, pages
from .guard import Guard
from .reading import StatusReader

STATIC = Path(__file__).with_name("static")


def _version() -> str:
    try:
        return metadata.version("ingestd")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "0+unknown"


def create_app(station: Station, web: WebSettings, *, token: str | None = None) -> FastAPI:
    """The status page, the API and ``/healthz`` over ``station``. With ``token``, every
    request must carry it as a bearer token. Routes read the station from ``app.state``."""
    # FastAPI's /docs and /redoc pages load their scripts from a CDN: only the schema is
    # served, so that nothing the page needs comes from outside the station.
    app = FastAPI(title="ingestd", version=_version(), docs_url=None,
                  redoc_url=None, openapi_url="/openapi.json",
                  description="The status of an ingestd docking station, read-only.")
    app.state.station = station
    app.state.web = web
    app.state.status = StatusReader(station)
    app.add_middleware(Guard, token=token)
    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(metrics.router)  # the guard stands in front of every router
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
