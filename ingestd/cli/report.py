"""``ingestd report``: the items recorded in a period, per case, officer or recorder, as a
table, CSV (for a spreadsheet) or JSON, to stdout or a file."""

from __future__ import annotations

import csv
import io
import json
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import click

from ..domain import policy
from ..domain.canonical import format_time
from ..domain.flags import Flag
from ..domain.records import ReportRow
from ..errors import UsageError
from ..integrity.hashing import atomic_write
from ..usecases.report import GROUPINGS, Report, report
from .base import AppContext, cli, console, pass_app, print_json, print_rows

#: The late items a report counts, by window.
LATE = (Flag.LATE_INGEST, Flag.LATE_LABEL, Flag.LATE_REPLICATION, Flag.ARCHIVE_LATE)

#: What a spreadsheet reads as the start of a formula (or, after a tab or a carriage return,
#: may): a cell that begins so is written after a single quote, and shown as typed.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A CSV cell that no spreadsheet runs as a formula: numbers as they are, text beginning
    with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return after a single quote."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 2)


def _header(rep: Report) -> list[str]:
    head = [rep.by or "period", "items", "hours", *(str(f) for f in LATE), "flagged",
            "exports", "spot_ok", "spot_problem", "spot_pending"]
    return head + (["parties", "officers", "closed", "archived"] if rep.by == "case" else [])


def _cells(rep: Report, row: ReportRow, key: str) -> list[object]:
    cells: list[object] = [key, row.items, _hours(row.seconds),
                           *(row.flags.get(str(f), 0) for f in LATE), row.flagged,
                           row.exports, row.spot_ok, row.spot_problem, row.spot_pending]
    if rep.by == "case":
        case = rep.cases.get(row.key)
        cells += ["; ".join(row.parties), "; ".join(row.officers),
                  policy.local_time(case.closed_at, rep.tz) if case else "",
                  policy.local_time(case.archived_at, rep.tz)
                  if case and case.archived_at else ""]
    return cells


def _rows(rep: Report) -> list[tuple[ReportRow, str]]:
    """Each row with what its first column says."""
    if rep.by is None:
        return [(rep.total, rep.period.text)]
    return [(r, r.key) for r in rep.rows] + [(rep.total, "total")]


def _row_json(rep: Report, row: ReportRow) -> dict[str, Any]:
    out: dict[str, Any] = {
        "items": row.items, "seconds": row.seconds, "hours": _hours(row.seconds),
        "late": {str(f): row.flags.get(str(f), 0) for f in LATE},
        "flagged": row.flagged, "flags": dict(sorted(row.flags.items())),
        "exports": row.exports,
        "spot_checks": {"ok": row.spot_ok, "problem": row.spot_problem,
                        "pending": row.spot_pending},
    }
    if rep.by == "case":
        case = rep.cases.get(row.key)
        out["parties"] = list(row.parties)
        out["officers"] = list(row.officers)
        out["closed_at"] = format_time(case.closed_at) if case else None
        out["archived_at"] = format_time(case.archived_at) if case and case.archived_at \
            else None
        out["archive_package"] = case.archive_package if case else None
    return out


def render_json(rep: Report) -> dict[str, Any]:
    return {
        "period": {"text": rep.period.text, "from": format_time(rep.period.start),
                   "until": format_time(rep.period.end),
                   "from_local": policy.local_time(rep.period.start, rep.tz),
                   "until_local": policy.local_time(rep.period.end, rep.tz)},
        "by": rep.by,
        "rows": [{rep.by: r.key, **_row_json(rep, r)} for r in rep.rows] if rep.by else [],
        "total": _row_json(rep, rep.total),
    }


def render_csv(rep: Report) -> str:
    """The report as CSV, a byte-order mark first so that a spreadsheet reads it as UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(_header(rep))
    for row, key in _rows(rep):
        writer.writerow([csv_cell(c) for c in _cells(rep, row, key)])
    return "\ufeff" + out.getvalue()


def _table(rep: Report) -> None:
    print_rows(_header(rep), [[[str(c) for c in _cells(rep, row, key or "(none)")]
                               for row, key in _rows(rep)]])
    console.print(f"items recorded {policy.local_time(rep.period.start, rep.tz)} to "
                  f"{policy.local_time(rep.period.end, rep.tz)} (excluded)")


@cli.command("report")
@click.option("--period", required=True, metavar="PERIOD",
              help="A year (2026), a month (2026-11) or days (2026-01-01..2026-06-30), in "
                   "the station's time zone (station_timezone); by recording time.")
@click.option("--by", "by", type=click.Choice(GROUPINGS),
              help="One line per case (the yearly case list), officer or recorder; "
                   "default: the period's items together.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]),
              default="table", show_default=True,
              help="csv: UTF-8 with a byte-order mark, for a spreadsheet.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (as --format json).")
@click.option("--out", "out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write to this file (mode 0600: it names parties) instead of stdout.")
@pass_app
def report_command(app: AppContext, period: str, by: str | None, fmt: str, as_json: bool,
                   out: Path | None) -> None:
    """Items recorded in a period, per case, officer or recorder: hours recorded, late
    items by window, flags, exports and spot checks (reviewed ok, problem, pending).

    `--period 2026 --by case` is the yearly case list (due by 31 January).
    """
    rep = report(app.station(read_only=True), period=period, by=by)
    fmt = "json" if as_json else fmt
    if out is None:
        if fmt == "json":
            print_json(render_json(rep))
        elif fmt == "csv":
            sys.stdout.write(render_csv(rep))
        else:
            _table(rep)
        return
    if fmt == "json":
        data = (json.dumps(render_json(rep), indent=2, ensure_ascii=False) + "\n").encode()
    elif fmt == "csv":
        data = render_csv(rep).encode("utf-8")
    else:
        text = io.StringIO()
        with redirect_stdout(text):
            _table(rep)
        data = text.getvalue().encode("utf-8")
    try:
        atomic_write(out, data, mode=0o600)
    except OSError as exc:
        raise UsageError(f"--out: cannot write {out}: {exc.strerror or exc}") from None
