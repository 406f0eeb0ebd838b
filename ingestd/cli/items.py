"""Items and their custody: ``items``, ``show``, ``overdue``, ``label``, ``hold``,
``release``, ``justify``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import click

from ..catalog.queries import LIST_BATCH
from ..config import parse_duration
from ..domain import policy, text
from ..domain.canonical import format_time
from ..domain.flags import REASONS, WINDOW_FLAGS, Flag
from ..domain.models import EventKind
from ..domain.records import (
    DockedAcquisition,
    FlaggedItem,
    FlagRecord,
    Item,
    ItemFilter,
    Justification,
    Label,
    ListedItem,
)
from ..errors import UsageError
from ..ports import CatalogTx
from ..station import Station
from ..usecases import cases, casework, windows
from ..usecases.describe import describe_item
from .base import (
    AppContext,
    ItemRef,
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
    print_json_list,
    print_rows,
    shown_time,
)


def _date(text: str | None, name: str, tz: tzinfo) -> datetime | None:
    """A date or time given on the command line; one without an offset is read in the
    station's zone (``recorder_timezone``), as every time is shown."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{name}: not a date or time: {text!r} (use 2026-01-31 or "
                         "2026-01-31T08:00:00+08:00)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=tz)).astimezone(UTC)


def _resolution(flag: FlagRecord, history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A flag stays; what resolved it is read from the ledger: for a damaged stored copy, the
    last ``repaired`` entry after the flag."""
    if flag.flag != Flag.FIXITY_FAILED:
        return None
    repairs = [h for h in history
               if h["kind"] == EventKind.REPAIRED and h["seq"] > flag.ledger_seq]
    if not repairs:
        return None
    last = repairs[-1]
    return {"seq": last["seq"], "at": last["at"], "by": last["actor"],
            "serial": last["data"].get("serial", ""), "path": last["data"].get("path", ""),
            "quarantined_to": last["data"].get("quarantined_to", "")}


def _stamp(moment: datetime | None) -> str | None:
    return format_time(moment) if moment is not None else None


def _listed(listed: ListedItem, flags: list[Flag]) -> dict[str, Any]:
    """An item as ``items`` lists it."""
    item = listed.item
    return {
        "sha256": item.sha256, "size": item.size, "recorder": item.recorder,
        "officer": listed.officer, "case": listed.case, "party": listed.party,
        "recorded_at": format_time(item.recorded_start),
        "stored_at": format_time(item.stored_at), "name": item.original_name,
        "flags": [str(f) for f in flags], "retention_class": str(item.retention_class),
        "local": item.local_present, "station": item.station,
    }


def _item_records(tx: CatalogTx, wanted: ItemFilter, *,
                  limit: int | None) -> Iterator[list[dict[str, Any]]]:
    """The listing's records, a batch at a time, each batch with its flags."""
    for page in tx.iter_item_batches(wanted, limit=limit):
        flags = tx.flags_by_item([r.item.sha256 for r in page])
        yield [_listed(r, flags.get(r.item.sha256, [])) for r in page]


# What ``show --json`` says of an item's records: the catalog's own names for them.

def _item_record(item: Item) -> dict[str, Any]:
    return {
        "sha256": item.sha256, "size": item.size, "stored_at": format_time(item.stored_at),
        "station": item.station, "recorder": item.recorder, "officer": item.officer,
        "original_name": item.original_name,
        "recorded_start": format_time(item.recorded_start),
        "recorded_end": format_time(item.recorded_end), "time_source": str(item.time_source),
        "duration": item.duration, "media": item.media,
        "ingest_deadline": format_time(item.ingest_deadline),
        "label_deadline": format_time(item.label_deadline),
        "replication_deadline": format_time(item.replication_deadline),
        "retention_class": str(item.retention_class), "retain_until": _stamp(item.retain_until),
        "hold": item.hold, "local_present": item.local_present, "ledger_seq": item.ledger_seq,
    }


def _label_record(label: Label) -> dict[str, Any]:
    return {"id": label.id, "item": label.item, "case_no": label.case, "party": label.party,
            "officer": label.officer, "categories": json.dumps(list(label.categories)),
            "by": label.by, "at": format_time(label.at), "ledger_seq": label.ledger_seq,
            "case_type": label.case_type}


def _flag_record(flag: FlagRecord) -> dict[str, Any]:
    return {"id": flag.id, "item": flag.item, "flag": str(flag.flag),
            "set_at": format_time(flag.set_at), "detail": flag.detail,
            "ledger_seq": flag.ledger_seq}


def _acquisition_record(docked: DockedAcquisition) -> dict[str, Any]:
    a = docked.acquisition
    return {"id": a.id, "session_id": a.session_id, "serial": a.serial, "path": a.path,
            "path_hex": a.path_hex, "size": a.size, "mtime_ns": a.mtime_ns,
            "state": str(a.state), "item": a.item, "started_at": format_time(a.started_at),
            "finished_at": _stamp(a.finished_at), "error": a.error,
            "wiped_at": _stamp(a.wiped_at), "ledger_seq": a.ledger_seq,
            "station": docked.station, "docked_at": format_time(docked.docked_at)}


def _justification_record(just: Justification) -> dict[str, Any]:
    return {"id": just.id, "item": just.item, "flag": str(just.flag), "reason": just.reason,
            "by": just.by, "at": format_time(just.at), "ledger_seq": just.ledger_seq}


_ITEM_HEADER = ("item", "station", "recorded", "officer", "case", "party", "size", "flags", "name")


def _item_cells(r: dict[str, Any], tz: tzinfo) -> list[str]:
    return [r["sha256"][:16], r["station"], shown_time(r["recorded_at"], tz), r["officer"] or "",
            r["case"] or "", r["party"] or "", human_size(r["size"]), ", ".join(r["flags"]),
            r["name"]]


@cli.command()
@click.option("--case", help="Only items labelled with this case number.")
@click.option("--officer", help="Only this officer's items.")
@click.option("--recorder", "recorder_serial", help="Only items from this recorder.")
@click.option("--flag", type=click.Choice([f.value for f in Flag]), help="Only flagged items.")
@click.option("--since", help="Recorded on or after (date or time; without an offset, in the "
                               "station's recorder_timezone).")
@click.option("--until", help="Recorded before (date or time, read as --since is).")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many.")
@json_option
@pass_app
def items(app: AppContext, case: str | None, officer: str | None,
          recorder_serial: str | None, flag: str | None, since: str | None, until: str | None,
          limit: int | None, as_json: bool) -> None:
    """List items, filtered by case, officer, recorder, flag or recording date.

    The list is read and written a page at a time: any number of items, in constant memory.
    """
    station = app.station(read_only=True)
    wanted = ItemFilter(case=case, officer=officer, recorder_serial=recorder_serial,
                        flag=Flag(flag) if flag else None,
                        since=_date(since, "--since", app.tz),
                        until=_date(until, "--until", app.tz))
    with station.catalog.read() as tx:
        pages = _item_records(tx, wanted, limit=limit)
        if as_json:
            print_json_list("items", (r for page in pages for r in page))
            return
        count = print_rows(_ITEM_HEADER,
                           ([_item_cells(r, app.tz) for r in page] for page in pages))
    # Plain text, as print_rows writes: a listing needs no rich console.
    click.echo(plural(count, "item"))


@cli.command()
@click.argument("item", type=ItemRef())
@json_option
@pass_app
def show(app: AppContext, item: str, as_json: bool) -> None:
    """One item: what it is, its labels, flags, acquisitions and whole custody history."""
    from rich.table import Table  # here, not at the top: ``items`` lists without it

    station = app.station(read_only=True)
    with station.catalog.read() as tx:
        sha = tx.resolve(item)
        found = tx.item(sha)
        labels = [_label_record(r) for r in tx.label_history(sha)]
        set_flags = tx.item_flags(sha)
        acqs = [_acquisition_record(r) for r in tx.acquisitions_of(sha)]
        justs = [_justification_record(r) for r in tx.justifications_of(sha)]
        history: list[dict[str, Any]] = [
                   {"seq": e.seq, "at": e.at.isoformat(), "kind": e.kind, "actor": e.actor,
                    "station": e.station, "data": e.data, "entry_hash": e.entry_hash,
                    "key_id": e.key_id} for e in sorted(
                        [*tx.iter_entries(item=sha), *tx.export_entries([sha])],
                        key=lambda e: e.seq)]
    summary = describe_item(station, sha)
    flags = [{**_flag_record(f), "resolution": _resolution(f, history)} for f in set_flags]
    row = _item_record(found) if found is not None else {"media": {}}
    info = {"item": summary, "record": row, "labels": labels, "flags": flags,
            "acquisitions": acqs, "justifications": justs, "history": history}
    if as_json:
        print_json(info)
        return
    assert summary is not None
    tz = app.tz
    console.print(f"[bold]item {sha}[/]")
    for key in ("size", "recorder", "officer", "case", "party", "recorded_start",
                "recorded_end", "stored_at", "station", "original_name", "retention_class",
                "retain_until", "hold"):
        value = summary[key]
        if key in _SHOWN_TIMES:
            # No retain-until date: a long-term item, kept for ever.
            value = shown_time(value, tz, none="never" if key == "retain_until" else "")
        console.print(f"  {key:16} {esc(value)}")
    media = row["media"]
    if media.get("ok"):
        console.print(f"  {'media':16} {media.get('video_codec')}/{media.get('audio_codec')} "
                      f"{media.get('width')}x{media.get('height')} {media.get('duration')}s")
    for f in flags:
        missed = (policy.missed_deadline(Flag(f["flag"]), ingest=found.ingest_deadline,
                                         label=found.label_deadline,
                                         replication=found.replication_deadline)
                  if found is not None and not _is_utc(tz) else None)
        local = f"; deadline {policy.local_time(missed, tz)} local" if missed else ""
        console.print(f"  [yellow]flag {f['flag']}[/] since {shown_time(f['set_at'], tz)}: "
                      f"{esc(f['detail'])}{local}")
        if f["resolution"]:
            r = f["resolution"]
            console.print(f"    [green]repaired[/] {shown_time(r['at'], tz)} (entry {r['seq']}) "
                          "from "
                          f"{esc(r['serial'])} {esc(r['path'])}; damaged bytes kept at "
                          f"{esc(r['quarantined_to'])}")
    for j in justs:
        console.print(f"  justified {j['flag']} by {esc(j['by'])}: {esc(j['reason'])}")
    table = Table("seq", "time", "event", "actor", "station", "details", title="custody")
    for h in history:
        details = ", ".join(f"{k}={v}" for k, v in h["data"].items()
                            if k not in ("media", "path_hex", "retention", "health"))
        table.add_row(str(h["seq"]), shown_time(h["at"], tz), h["kind"], esc(h["actor"]),
                      esc(h["station"]), esc(details[:120]))
    console.print(table)


@cli.command()
@click.option("--flag", "only", type=click.Choice([f.value for f in Flag]),
              help="Only this flag.")
@click.option("--all-flags", is_flag=True, help="Every flag, not only missed deadlines and "
              "clock faults.")
@click.option("--within", metavar="DURATION",
              help="Instead: what will miss a window within this long (e.g. 6h): label not "
                   "yet given, replication to the required targets not yet done, with the "
                   "deadline.")
@json_option
@pass_app
def overdue(app: AppContext, only: str | None, all_flags: bool, within: str | None,
            as_json: bool) -> None:
    """Items that missed a window (ingest, label, replication) or whose time is doubtful.

    A missed deadline is also shown in the station's time zone (ingest.recorder_timezone)
    when that is not UTC; the flag's detail, as its entry signed it, stays in UTC.
    """
    station = app.station(read_only=True)
    if within is not None:
        _windows_ahead(station, within=within, only=only, all_flags=all_flags,
                       as_json=as_json)
        return
    wanted = [Flag(only)] if only else list(Flag) if all_flags else [
        *WINDOW_FLAGS, Flag.CLOCK_UNSET, Flag.CLOCK_SKEW, Flag.ARCHIVE_LATE]
    with station.catalog.read() as tx:
        rows = tx.flagged_items(wanted)
        justs = {key: [{"by": j.by, "reason": j.reason, "at": format_time(j.at)}
                       for j in found]
                 for key, found in tx.justifications_by_flag(wanted).items()}
    grouped: dict[str, dict[str, Any]] = {}
    for r in rows:
        flag = r.flag
        entry = grouped.setdefault(flag.item, {
            "sha256": flag.item, "recorder": r.recorder, "officer": r.officer,
            "name": r.original_name, "recorded_end": format_time(r.recorded_end),
            "stored_at": format_time(r.stored_at), "flags": [], "reasons": [],
            "justifications": []})
        entry["flags"].append(str(flag.flag))
        entry["reasons"].append({"flag": str(flag.flag), "since": format_time(flag.set_at),
                                 "reason": REASONS.get(flag.flag, str(flag.flag)),
                                 "detail": flag.detail})
        entry["justifications"].extend(justs.get((flag.item, flag.flag), []))
    result = list(grouped.values())
    if as_json:
        print_json(result)
        return
    tz = app.tz
    local = {(r.flag.item, r.flag.flag): _local_deadline(r, tz) for r in rows}

    def detail(sha: str, x: dict[str, Any]) -> str:
        missed = local.get((sha, Flag(x["flag"])))
        return f"{x['detail']}; deadline {missed} local" if missed else x["detail"]

    def cells(e: dict[str, Any]) -> list[str]:
        why = "; ".join(f"{x['reason']} ({detail(e['sha256'], x)})" for x in e["reasons"])
        if e["justifications"]:
            why += " — justified: " + "; ".join(j["reason"] for j in e["justifications"])
        return [e["sha256"][:16], ", ".join(e["flags"]), e["officer"] or "", e["name"], why]

    # Plain rows, a page at a time, the reasons last and whole: a bureau's backlog is long.
    print_rows(("item", "flags", "officer", "name", "why"),
               ([cells(e) for e in result[i:i + LIST_BATCH]]
                for i in range(0, len(result), LIST_BATCH)))
    console.print(plural(len(result), "item"))
    _overdue_cases(station)


def _overdue_cases(station: Station) -> None:
    """The closed cases past their archive window without an archive, with their deadline
    (a case leaves the list once its archive is recorded; its items' flags stay)."""
    now, late = cases.overdue_cases(station)
    if not late:
        return
    tz = station.settings.station_tz
    print_rows(("case", "closed", "archive due", "by"),
               [[[c.case, policy.local_time(c.closed_at, tz),
                  policy.local_time(cases.deadline(station, c), tz), c.closed_by]
                 for c in late]])
    console.print(f"{len(late)} closed cases not archived within "
                  f"case_archive_window (as of {policy.local_time(now, tz)})")


def _local_deadline(row: FlaggedItem, tz: tzinfo) -> str | None:
    """A window flag's missed deadline in the station's time zone, for people to read (None:
    not a window flag, or the station keeps UTC, which the detail already says)."""
    if _is_utc(tz):
        return None
    missed = policy.missed_deadline(row.flag.flag, ingest=row.ingest_deadline,
                                    label=row.label_deadline,
                                    replication=row.replication_deadline)
    return policy.local_time(missed, tz) if missed is not None else None


def _is_utc(tz: tzinfo) -> bool:
    return tz.utcoffset(datetime.now(UTC)) == timedelta(0)


#: What ``show`` gives as times, in the station's zone.
_SHOWN_TIMES = frozenset({"recorded_start", "recorded_end", "stored_at", "retain_until"})

#: The flag each window ahead would set, by the window's name.
_AHEAD = {Flag.LATE_LABEL: "label", Flag.LATE_REPLICATION: "replication"}


def _left(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"


def _windows_ahead(station: Station, *, within: str, only: str | None, all_flags: bool,
                   as_json: bool) -> None:
    try:
        horizon = parse_duration(within)
    except ValueError as exc:
        raise UsageError(f"--within: {exc}") from None
    if horizon <= timedelta(0):
        raise UsageError("--within: must be longer than 0s")
    if all_flags:
        raise UsageError("--within lists windows ahead: --all-flags does not go with it")
    wanted = Flag(only) if only else None
    if wanted is not None and wanted not in _AHEAD:
        raise UsageError(f"--within lists windows ahead: --flag may be "
                         f"{' or '.join(_AHEAD)} (as late_label, late_replication), "
                         f"not {wanted}")
    now, ahead = windows.windows_ahead(station, within=horizon, only=wanted)
    tz = station.settings.station_tz  # deadline_local, as the JSON always gave it
    shown = station.settings.ingest.recorder_tz
    result = [{
        "sha256": w.item.sha256, "recorder": w.item.recorder, "officer": w.item.officer,
        "name": w.item.original_name, "stored_at": format_time(w.item.stored_at),
        "windows": [{"window": _AHEAD[flag], "flag": str(flag),
                     "deadline": format_time(deadline),
                     "deadline_local": policy.local_time(deadline, tz),
                     "seconds_left": int((deadline - now).total_seconds())}
                    for flag, deadline in sorted(w.deadlines.items(), key=lambda kv: kv[1])],
    } for w in ahead]
    if as_json:
        print_json({"now": format_time(now), "within_seconds": int(horizon.total_seconds()),
                    "items": result})
        return

    def cells(e: dict[str, Any]) -> list[str]:
        return [e["sha256"][:16], ", ".join(w["window"] for w in e["windows"]),
                e["officer"] or "", e["name"],
                "; ".join(f"{w['window']} by {shown_time(w['deadline'], shown)} "
                          f"(in {_left(w['seconds_left'])})" for w in e["windows"])]

    print_rows(("item", "windows", "officer", "name", "deadline"),
               ([cells(e) for e in result[i:i + LIST_BATCH]]
                for i in range(0, len(result), LIST_BATCH)))
    console.print(f"{plural(len(result), 'item')} will miss a window within {within} unless "
                  f"done (times in {station.settings.ingest.recorder_timezone})")


@cli.command()
@click.argument("refs", metavar="ITEM...", nargs=-1, required=True, type=ItemRef())
@click.option("--case", help="Case number (案号); needed by an item's first label.")
@click.option("--party", help="Party name (当事人); needed by an item's first label.")
@click.option("--officer", help="Officer (承办人); first label: the recorder's officer.")
@click.option("--category", "categories", multiple=True,
              help="Footage category, e.g. dispute, obstruction, incident (kept long-term); "
                   "default: the current label's.")
@click.option("--case-type", "case_type", metavar="NAME",
              help="Case type from [retention.case_types]: its evidence period, when longer, "
                   "keeps the footage; default: the current label's.")
@actor_option
@json_option
@pass_app
def label(app: AppContext, refs: tuple[str, ...], case: str | None, party: str | None,
          officer: str | None, categories: tuple[str, ...], case_type: str | None, actor: str,
          as_json: bool) -> None:
    """Label items with case number, party and officer (a signed ledger event).

    A label changes only what it is given: the other fields carry over from the item's
    current label. An item's first label needs --case and --party.
    """
    done = casework.label(app.station(), refs, case=case, party=party, officer=officer,
                          categories=categories or None, case_type=case_type, actor=actor)
    if as_json:
        print_json({"labelled": done})
        return
    for d in done:
        console.print(f"labelled {d['sha256'][:16]}: case {esc(d['case'])}, party "
                      f"{esc(d['party'])}, officer {esc(d['officer'])} "
                      f"({d['retention_class']}"
                      + (f", case type {esc(d['case_type'])}" if d["case_type"] else "")
                      + ")")


def _hold_command(name: str, hold: bool, doc: str) -> None:
    @cli.command(name, help=doc)
    @click.argument("refs", metavar="ITEM...", nargs=-1, required=True, type=ItemRef())
    @click.option("--reason", required=True, type=TextParam(text.REASON_MAX),
                  help="Why (recorded in the ledger).")
    @actor_option
    @json_option
    @pass_app
    def command(app: AppContext, refs: tuple[str, ...], reason: str, actor: str,
                as_json: bool) -> None:
        done = casework.set_hold(app.station(), refs, hold=hold, reason=reason, actor=actor)
        if as_json:
            print_json({name: done})
            return
        for d in done:
            console.print(f"{name} {d['sha256'][:16]} (entry {d['seq']})")


_hold_command("hold", True, "Put items on legal hold: no deletion anywhere until released.")
_hold_command("release", False, "Release a legal hold (retention rules apply again).")


@cli.command()
@click.argument("refs", metavar="ITEM...", nargs=-1, required=True, type=ItemRef())
@click.option("--flag", default=Flag.LATE_INGEST.value, show_default=True,
              type=click.Choice([f.value for f in Flag]), help="The flag being explained.")
@click.option("--reason", required=True, type=TextParam(text.REASON_MAX),
              help="Why it was late (e.g. remote duty until ...).")
@actor_option
@json_option
@pass_app
def justify(app: AppContext, refs: tuple[str, ...], flag: str, reason: str, actor: str,
            as_json: bool) -> None:
    """Record why an item is late. It stays flagged; the reason is kept with it."""
    done = casework.justify(app.station(), refs, flag=flag, reason=reason, actor=actor)
    if as_json:
        print_json({"justified": done})
        return
    for d in done:
        console.print(f"justified {d['sha256'][:16]} {d['flag']}: {esc(d['reason'])}")
