"""Reports (R15): the items recorded in a period, per case, officer or recorder, with the
hours recorded, the late items by window, the flags, the exports and the spot checks; by
case, the yearly case list the rules ask for by 31 January, with each case's close and
archive.

Counted by the catalog (GROUP BY), so a report costs the same memory whatever the number of
items: one line per case, officer or recorder.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

from ..domain import policy
from ..domain.records import Case, ReportRow
from ..errors import UsageError
from ..station import Station

#: What a report may count by (None: the period's items together).
GROUPINGS = ("case", "officer", "recorder")


@dataclass(frozen=True, kw_only=True)
class Report:
    period: policy.Period
    tz: tzinfo
    by: str | None
    rows: list[ReportRow]
    cases: dict[str, Case]  # by case: the closed ones among the rows

    @property
    def total(self) -> ReportRow:
        """Every row added up (a report's last line)."""
        flags: dict[str, int] = {}
        for row in self.rows:
            for name, n in row.flags.items():
                flags[name] = flags.get(name, 0) + n
        return ReportRow(key="", items=sum(r.items for r in self.rows),
                         seconds=sum(r.seconds for r in self.rows),
                         flagged=sum(r.flagged for r in self.rows), flags=flags,
                         exports=sum(r.exports for r in self.rows),
                         spot_ok=sum(r.spot_ok for r in self.rows),
                         spot_problem=sum(r.spot_problem for r in self.rows),
                         spot_pending=sum(r.spot_pending for r in self.rows))


def report(station: Station, *, period: str, by: str | None = None) -> Report:
    """The report of the items recorded in ``period`` (a year, a month or a range of days,
    read in the station's time zone), counted ``by`` case, officer or recorder."""
    if by is not None and by not in GROUPINGS:
        raise UsageError(f"--by: {by!r} is not one of {', '.join(GROUPINGS)}")
    tz = station.settings.station_tz
    try:
        wanted = policy.report_period(period, tz)
    except ValueError as exc:
        raise UsageError(f"--period: {exc}") from None
    with station.catalog.read() as tx:
        rows = tx.report_rows(since=wanted.start, until=wanted.end, by=by)
        closed: dict[str, Case] = {}
        if by == "case":
            keys = {r.key for r in rows}
            closed = {c.case: c for c in tx.closed_cases() if c.case in keys}
    return Report(period=wanted, tz=tz, by=by, rows=rows, cases=closed)
