"""``ingestd case``: ``close`` (enforcement ended: the archive window runs), ``reopen`` (a
close undone), ``show`` (a case's items, their state, exports and archive), ``archive`` (a
closed case's package made, placed and recorded) and ``check`` (flag the cases past their
archive window); the daemon's ``check-archives`` job does the last two on schedule."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

import click

from ..domain import policy, text
from ..domain.canonical import format_time
from ..domain.records import Case
from ..errors import UsageError
from ..station import Station
from ..usecases import archive as archive_uc
from ..usecases import cases
from .base import (
    AppContext,
    TextParam,
    actor_option,
    cli,
    console,
    esc,
    human_size,
    json_option,
    pass_app,
    plural,
    print_json,
    print_rows,
    shown_time,
)


def moment(value: str, name: str, tz: tzinfo) -> datetime:
    """A date or time as given on the command line; one without an offset is read in the
    station's time zone (a date is its midnight there)."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(f"{name}: not a date or time: {value!r} (use 2026-01-31 or "
                         "2026-01-31T08:00:00+08:00)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def case_json(station: Station, case: Case, now: datetime) -> dict[str, Any]:
    """A closed case as the commands print it: its close, deadline and archive."""
    tz = station.settings.station_tz
    due = cases.deadline(station, case)
    window = station.settings.cases.case_archive_window
    return {
        "case": case.case, "closed_at": format_time(case.closed_at),
        "closed_by": case.closed_by, "seq": case.ledger_seq,
        "archive_by": format_time(due), "archive_by_local": policy.local_time(due, tz),
        "overdue": policy.archive_overdue(closed_at=case.closed_at,
                                          archived_at=case.archived_at, now=now,
                                          window=window),
        "archive": None if case.archived_at is None else {
            "archived_at": format_time(case.archived_at), "location": case.archive_location,
            "package": case.archive_package, "seq": case.archive_seq,
            "late": policy.archived_late(closed_at=case.closed_at,
                                         archived_at=case.archived_at, window=window)},
    }


@cli.group("case")
def case_group() -> None:
    """Cases: close one when its enforcement ends; its items are then archived as one
    package within case_archive_window ([cases])."""


@case_group.command("close")
@click.argument("case", type=TextParam(text.CASE_MAX))
@click.option("--by", "by", required=True, type=TextParam(text.ACTOR_MAX),
              help="Who records that enforcement ended (in the ledger).")
@click.option("--at", "at", metavar="TIME",
              help="When enforcement ended (default: now); without an offset, in the "
                   "station's time zone (station_timezone).")
@json_option
@pass_app
def case_close(app: AppContext, case: str, by: str, at: str | None, as_json: bool) -> None:
    """Record that enforcement in CASE ended (a signed case_closed entry): its archive is
    due within case_archive_window. A case is closed once; an unknown case is refused."""
    station = app.station()
    ended = moment(at, "--at", station.settings.station_tz) if at else None
    closed = cases.close_case(station, case, actor=by, ended_at=ended)
    info = case_json(station, closed, station.custody.now())
    if as_json:
        print_json({"closed": info})
        return
    console.print(f"closed case {esc(case)} (entry {closed.ledger_seq}): enforcement ended "
                  f"{shown_time(closed.closed_at, app.tz)}; archive due by "
                  f"{info['archive_by_local']}")


@case_group.command("reopen")
@click.argument("case", type=TextParam(text.CASE_MAX))
@click.option("--by", "by", required=True, type=TextParam(text.ACTOR_MAX),
              help="Who undoes the close (in the ledger).")
@click.option("--reason", required=True, type=TextParam(text.REASON_MAX),
              help="Why: closed by mistake, at the wrong time, enforcement resumed...")
@json_option
@pass_app
def case_reopen(app: AppContext, case: str, by: str, reason: str, as_json: bool) -> None:
    """Undo the close of CASE (a signed case_reopened entry with its reason): its archive
    window stops; a later close starts a new one. An archived case is not reopened."""
    station = app.station()
    undone = cases.reopen_case(station, case, actor=by, reason=reason)
    if as_json:
        print_json({"reopened": {"case": undone.case, "reason": reason, "by": by,
                                 "closed_seq": undone.ledger_seq}})
        return
    console.print(f"reopened case {esc(case)} (its close, entry {undone.ledger_seq}, is "
                  "undone)")


def _item_row(i: cases.CaseItem) -> dict[str, Any]:
    item = i.listed.item
    return {
        "sha256": item.sha256, "recorded_at": format_time(item.recorded_start),
        "officer": i.listed.officer, "party": i.listed.party, "recorder": item.recorder,
        "name": item.original_name, "size": item.size, "duration": item.duration,
        "stored_at": format_time(item.stored_at), "station": item.station,
        "retention_class": str(item.retention_class),
        "retain_until": format_time(item.retain_until) if item.retain_until else None,
        "hold": item.hold, "local": item.local_present,
        "flags": [str(f.flag) for f in i.flags], "replicated_to": i.targets,
    }


@case_group.command("show")
@click.argument("case", type=TextParam(text.CASE_MAX))
@json_option
@pass_app
def case_show(app: AppContext, case: str, as_json: bool) -> None:
    """A case: its items (labelled with it) and their state, its close and archive deadline,
    the exports of its items, and its archive."""
    station = app.station(read_only=True)
    view = cases.show_case(station, case)
    info: dict[str, Any] = {
        "case": view.case,
        "closed": None if view.closed is None else case_json(station, view.closed, view.now),
        "items": [_item_row(i) for i in view.items],
        "exports": [{"seq": e.seq, "at": format_time(e.at), "actor": e.actor,
                     "station": e.station, "item": e.item, "data": e.data}
                    for e in view.exports],
    }
    if as_json:
        print_json(info)
        return
    console.print(f"[bold]case {esc(view.case)}[/]: {plural(len(view.items), 'item')}")
    closed: dict[str, Any] | None = info["closed"]
    if closed is None:
        console.print("  open (enforcement not recorded as ended: ingestd case close)")
    else:
        ended = policy.local_time(view.closed.closed_at, station.settings.station_tz) \
            if view.closed else ""
        console.print(f"  closed {ended} by {esc(closed['closed_by'])} "
                      f"(entry {closed['seq']}); archive due by {closed['archive_by_local']}")
        archive = closed["archive"]
        if archive is not None:
            when = shown_time(archive["archived_at"], app.tz)
            console.print(f"  archived {when} as {esc(archive['package'])} "
                          f"at {esc(archive['location'])} (entry {archive['seq']})"
                          + (" [yellow]late[/]" if archive["late"] else ""))
        elif closed["overdue"]:
            console.print("  [red]not archived, past its deadline[/]")
        else:
            console.print("  not archived yet")
    print_rows(("item", "recorded", "officer", "party", "size", "flags", "copies", "name"),
               [[[r["sha256"][:16], shown_time(r["recorded_at"], app.tz), r["officer"] or "",
                  r["party"] or "", human_size(r["size"]), ", ".join(r["flags"]),
                  ", ".join(r["replicated_to"]), r["name"]] for r in info["items"]]])
    for e in info["exports"]:
        data = e["data"]
        when = shown_time(e["at"], app.tz)
        console.print(f"  exported {when} by {esc(e['actor'])} (entry {e['seq']}): "
                      f"{esc(data.get('purpose', ''))} {esc(data.get('package', ''))}")


@case_group.command("archive")
@click.argument("case", type=TextParam(text.CASE_MAX))
@actor_option
@json_option
@pass_app
def case_archive(app: AppContext, case: str, actor: str, as_json: bool) -> None:
    """Archive the closed CASE now, as the daemon does: its items exported as one package
    (purpose archive, approved by who closed it), placed at [cases] archive, verified there,
    and recorded (a signed case_archived entry). An archive an earlier run began is completed;
    a failure leaves the case unarchived, to be tried again."""
    station = app.station()
    done = archive_uc.archive_case(station, case, actor=actor)
    if as_json:
        print_json({"archived": done.as_dict(),
                    "case": case_json(station, done.case, station.custody.now())})
        return
    console.print(f"archived case {esc(case)} as package {done.package} "
                  f"(entry {done.case.archive_seq}): {esc(done.location)}")
    if done.resumed:
        console.print(f"  completed the package its export entry {done.export_entry} made")
    for note in done.notes:
        console.print(f"  [yellow]{esc(note)}[/]")


@case_group.command("check")
@json_option
@pass_app
def case_check(app: AppContext, as_json: bool) -> None:
    """Flag archive_late the items of each closed case past its archive window without an
    archive (what the daemon does on schedule)."""
    station = app.station()
    report = cases.check_archives(station)
    now = station.custody.now()
    if as_json:
        print_json({"overdue": [case_json(station, c, now) for c in report.overdue],
                    "flagged": report.flagged})
        return
    for c in report.overdue:
        console.print(f"case {esc(c.case)}: not archived by "
                      f"{esc(case_json(station, c, now)['archive_by_local'])}")
    console.print(f"{plural(len(report.overdue), 'case')} past their archive window, "
                  f"{plural(len(report.flagged), 'new flag')}")
