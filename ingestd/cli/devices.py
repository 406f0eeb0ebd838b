"""``devices``: the recorder registry (serial → officer)."""

from __future__ import annotations

import click
from rich.table import Table

from ..catalog import queries as q
from ..domain.models import EventKind, Recorder
from ..errors import NotFound, UsageError
from .base import AppContext, actor_option, cli, console, esc, json_option, pass_app, print_json


@cli.group()
def devices() -> None:
    """The registry of recorders allowed to dock, and who carries each."""


@devices.command("add")
@click.argument("serial")
@click.option("--officer", required=True, help="Officer's name (承办人).")
@click.option("--officer-id", required=True, help="Officer's badge or staff number.")
@click.option("--unit", default="", help="Unit or team.")
@click.option("--vendor", default="", help="Recorder maker.")
@click.option("--model", default="", help="Recorder model.")
@actor_option
@pass_app
def devices_add(app: AppContext, serial: str, officer: str, officer_id: str, unit: str,
                vendor: str, model: str, actor: str) -> None:
    """Register a recorder (or reassign it to another officer)."""
    serial = serial.strip()
    if not serial or any(not ch.isprintable() for ch in serial) or len(serial) > 128:
        raise UsageError("SERIAL must be 1 to 128 printable characters")
    if not officer.strip() or not officer_id.strip():
        raise UsageError("--officer and --officer-id must not be empty")
    station = app.station()
    rec = Recorder(serial=serial, officer=officer.strip(), officer_id=officer_id.strip(),
                   unit=unit, vendor=vendor, model=model)
    with station.custody.transaction() as conn:
        entry = station.custody.record(
            conn, kind=EventKind.REGISTRY, actor=actor,
            data={"serial": serial, "officer": rec.officer, "officer_id": rec.officer_id,
                  "unit": unit, "vendor": vendor, "model": model, "active": True},
        )
        q.upsert_recorder(conn, rec, at=station.clock(), ledger_seq=entry.seq)
    console.print(f"registered {esc(serial)} → {esc(rec.officer)} ({esc(rec.officer_id)})")


@devices.command("remove")
@click.argument("serial")
@actor_option
@pass_app
def devices_remove(app: AppContext, serial: str, actor: str) -> None:
    """Take a recorder out of the registry (its history stays)."""
    station = app.station()
    with station.custody.transaction() as conn:
        if q.recorder(conn, serial) is None:
            raise NotFound(f"recorder {serial} is not registered")
        entry = station.custody.record(conn, kind=EventKind.REGISTRY, actor=actor,
                                       data={"serial": serial, "officer": None,
                                             "active": False})
        q.deactivate_recorder(conn, serial, ledger_seq=entry.seq)
    console.print(f"removed {esc(serial)} from the registry")


@devices.command("list")
@click.option("--all", "include_removed", is_flag=True, help="Include removed recorders.")
@json_option
@pass_app
def devices_list(app: AppContext, include_removed: bool, as_json: bool) -> None:
    """Registered recorders."""
    station = app.station()
    with station.catalog.read() as conn:
        rows = [dict(r) for r in q.list_recorders(conn, include_removed=include_removed)]
    if as_json:
        print_json({"recorders": rows})
        return
    table = Table("serial", "officer", "officer id", "unit", "vendor/model", "since", "active")
    for r in rows:
        table.add_row(esc(r["serial"]), esc(r["officer"]), esc(r["officer_id"]), esc(r["unit"]),
                      esc(f"{r['vendor']} {r['model']}".strip()), r["added_at"][:19],
                      "yes" if r["active"] else "no")
    console.print(table)
