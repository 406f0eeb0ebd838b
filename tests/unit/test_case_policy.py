"""The archive window of a closed case, and report periods read in the station's zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ingestd.cli.report import csv_cell
from ingestd.domain import policy

CLOSED = datetime(2026, 11, 30, 10, tzinfo=UTC)
WINDOW = timedelta(days=30)
TZ = timezone(timedelta(hours=8))


def test_a_case_is_overdue_only_past_its_deadline_and_without_an_archive() -> None:
    due = policy.archive_deadline(closed_at=CLOSED, window=WINDOW)
    assert due == datetime(2026, 12, 30, 10, tzinfo=UTC)
    assert not policy.archive_overdue(closed_at=CLOSED, archived_at=None, now=due,
                                      window=WINDOW)
    later = due + timedelta(seconds=1)
    assert policy.archive_overdue(closed_at=CLOSED, archived_at=None, now=later,
                                  window=WINDOW)
    assert not policy.archive_overdue(closed_at=CLOSED, archived_at=later, now=later,
                                      window=WINDOW)
    assert policy.archived_late(closed_at=CLOSED, archived_at=later, window=WINDOW)
    assert not policy.archived_late(closed_at=CLOSED, archived_at=due, window=WINDOW)
    assert not policy.archived_late(closed_at=CLOSED, archived_at=None, window=WINDOW)


@pytest.mark.parametrize(("text", "start", "end"), [
    ("2026", datetime(2025, 12, 31, 16, tzinfo=UTC), datetime(2026, 12, 31, 16, tzinfo=UTC)),
    ("2026-12", datetime(2026, 11, 30, 16, tzinfo=UTC), datetime(2026, 12, 31, 16, tzinfo=UTC)),
    ("2026-02", datetime(2026, 1, 31, 16, tzinfo=UTC), datetime(2026, 2, 28, 16, tzinfo=UTC)),
    ("2026-01-01..2026-06-30", datetime(2025, 12, 31, 16, tzinfo=UTC),
     datetime(2026, 6, 30, 16, tzinfo=UTC)),
    (" 2026-03-05..2026-03-05 ", datetime(2026, 3, 4, 16, tzinfo=UTC),
     datetime(2026, 3, 5, 16, tzinfo=UTC)),
])
def test_periods_are_read_in_the_station_time_zone(text: str, start: datetime,
                                                   end: datetime) -> None:
    period = policy.report_period(text, TZ)
    assert (period.start, period.end) == (start, end)
    assert period.text == text.strip()


@pytest.mark.parametrize("text", ["26", "2026-13", "2026-00", "2026-1", "2026-02-30..2026-03-01",
                                  "2026-03-02..2026-03-01", "2026..2027", ""])
def test_a_bad_period_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a period"):
        policy.report_period(text, TZ)


@pytest.mark.parametrize(("value", "written"), [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1", "'+1"), ("-1", "'-1"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("张三", "张三"),
    ("C-1", "C-1"), (3, 3), (1.5, 1.5)])
def test_a_csv_cell_never_starts_a_formula(value: object, written: object) -> None:
    assert csv_cell(value) == written
