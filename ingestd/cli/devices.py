"""``devices``: the recorder registry (serial → officer)."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from ..domain import text
from ..domain.canonical import format_time
from ..domain.models import Recorder
from ..errors import UsageError
from ..usecases import registry
from .base import (
    AppContext,
    TextParam,
    actor_option,
    cli,
    console,
    esc,
    json_option,
    pass_app,
    print_json,
    shown_time,
)


@cli.group()
def devices() -> None:
    """The registry of recorders allowed to dock, and who carries each."""


@devices.command("add")
@click.argument("serial", type=TextParam(text.SERIAL_MAX))
@click.option("--officer", required=True, type=TextParam(text.OFFICER_MAX),
              help="Officer's name (承办人).")
@click.option("--officer-id", required=True, type=TextParam(text.OFFICER_ID_MAX),
              help="Officer's badge or staff number.")
@click.option("--unit", default="", type=TextParam(text.UNIT_MAX, empty_ok=True),
              help="Unit or team.")
@click.option("--vendor", default="", type=TextParam(text.VENDOR_MAX, empty_ok=True),
              help="Recorder maker.")
@click.option("--model", default="", type=TextParam(text.MODEL_MAX, empty_ok=True),
              help="Recorder model.")
@actor_option
@pass_app
def devices_add(app: AppContext, serial: str, officer: str, officer_id: str, unit: str,
                vendor: str, model: str, actor: str) -> None:
    """Register a recorder (or reassign it to another officer)."""
    if any(not ch.isprintable() for ch in serial):
        raise UsageError("SERIAL must be printable characters")
    station = app.station()
    rec = Recorder(serial=serial, officer=officer.strip(), officer_id=officer_id.strip(),
                   unit=unit, vendor=vendor, model=model)
    registry.register(station, rec, actor=actor)
    console.print(f"registered {esc(serial)} → {esc(rec.officer)} ({esc(rec.officer_id)})")


@devices.command("remove")
@click.argument("serial", type=TextParam(text.SERIAL_MAX))
@actor_option
@pass_app
def devices_remove(app: AppContext, serial: str, actor: str) -> None:
    """Take a recorder out of the registry (its history stays)."""
    registry.unregister(app.station(), serial, actor=actor)
    console.print(f"removed {esc(serial)} from the registry")


@devices.command("list")
@click.option("--all", "include_removed", is_flag=True, help="Include removed recorders.")
@json_option
@pass_app
def devices_list(app: AppContext, include_removed: bool, as_json: bool) -> None:
    """Registered recorders."""
    station = app.station()
    with station.catalog.read() as tx:
        rows = [_registered(r) for r in tx.list_recorders(include_removed=include_removed)]
    if as_json:
        print_json({"recorders": rows})
        return
    table = Table("serial", "officer", "officer id", "unit", "vendor/model", "since", "active")
    for r in rows:
        table.add_row(esc(r["serial"]), esc(r["officer"]), esc(r["officer_id"]), esc(r["unit"]),
                      esc(f"{r['vendor']} {r['model']}".strip()), shown_time(r["added_at"], app.tz),
                      "yes" if r["active"] else "no")
    console.print(table)


def _registered(rec: Recorder) -> dict[str, Any]:
    """A registered recorder as ``devices list --json`` shows it."""
    return {"serial": rec.serial, "officer": rec.officer, "officer_id": rec.officer_id,
            "unit": rec.unit, "vendor": rec.vendor, "model": rec.model,
            "added_at": format_time(rec.added_at) if rec.added_at else None,
            "active": rec.active, "ledger_seq": rec.ledger_seq}
