"""Cases (R9): `case close` records that enforcement ended, once, for a case that exists;
`case show` lists its items, exports and archive; a closed case past case_archive_window
without its archive has its items flagged archive_late and is listed by `overdue` until its
archive is recorded; the cases rows are checked against their signed entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import (
    OFFICER,
    OFFICER_ID,
    SERIAL,
    Clips,
    FakeClock,
    build_recorder,
    cli_json,
    init_station,
    ledger_lines,
    ledger_problems,
    open_station,
    run_cli,
)

from ingestd.domain.canonical import format_time, parse_time
from ingestd.domain.flags import Flag
from ingestd.domain.policy import local_time, parse_utc_offset
from ingestd.errors import NotFound, UsageError
from ingestd.usecases import cases
from tests.support import catalog

pytestmark = pytest.mark.integration

ARCHIVE_ENTRY = "case_archived"


def case_home(tmp_path: Path, clips: Clips, config: str = "") -> Path:
    """a and b labelled C-1 (party 张三), c labelled C-2."""
    home = init_station(tmp_path / "home", config=config,
                        register={SERIAL: (OFFICER, OFFICER_ID)})
    rec = build_recorder(tmp_path / "rec", {"DCIM/A.MP4": clips.a, "DCIM/B.MP4": clips.b,
                                            "DCIM/C.MP4": clips.c})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    cli_json(home, "label", clips.a.sha256, clips.b.sha256, "--case", "C-1",
             "--party", "张三")
    cli_json(home, "label", clips.c.sha256, "--case", "C-2", "--party", "李四")
    return home


def shown_time(stamp: str) -> str:
    return parse_time(stamp).astimezone(timezone(timedelta(hours=8))).strftime(
        "%Y-%m-%d %H:%M:%S+08:00")


def test_a_case_is_closed_once_and_shown_with_its_items(tmp_path: Path,
                                                        clips: Clips) -> None:
    home = case_home(tmp_path, clips, config='station_timezone = "+08:00"\n')
    closed = cli_json(home, "case", "close", "C-1", "--by", "Zhao Liu",
                      "--at", "2026-11-30T18:00:00")["closed"]
    # a time without an offset is the station's: 18:00 at +08:00 is 10:00 UTC
    ended = datetime(2026, 11, 30, 10, tzinfo=UTC)
    assert closed["closed_at"] == format_time(ended)
    assert closed["archive_by"] == format_time(ended + timedelta(days=30))
    assert closed["archive_by_local"] == "2026-12-30 18:00:00+08:00"
    assert closed["closed_by"] == "Zhao Liu" and closed["archive"] is None
    (entry,) = ledger_lines(home, "case_closed")
    assert entry["actor"] == "Zhao Liu" and entry["seq"] == closed["seq"]
    assert entry["data"] == {"case": "C-1", "closed_at": format_time(ended),
                             "archive_by": format_time(ended + timedelta(days=30))}

    again = run_cli(home, "case", "close", "C-1", "--by", "Zhao Liu")
    assert again.exit_code == UsageError.exit_code
    assert "closed already" in again.stderr and "Zhao Liu" in again.stderr
    unknown = run_cli(home, "case", "close", "C-9", "--by", "Zhao Liu", "--json")
    assert unknown.exit_code == NotFound.exit_code
    assert "C-9" in unknown.json()["error"]["message"]
    future = run_cli(home, "case", "close", "C-2", "--by", "Zhao Liu",
                     "--at", format_time(datetime.now(UTC) + timedelta(days=1)))
    assert future.exit_code == UsageError.exit_code and "future" in future.stderr
    assert len(ledger_lines(home, "case_closed")) == 1  # nothing written by the refusals

    shown = cli_json(home, "case", "show", "C-1")
    assert shown["case"] == "C-1"
    assert {i["sha256"] for i in shown["items"]} == {clips.a.sha256, clips.b.sha256}
    assert {i["party"] for i in shown["items"]} == {"张三"}
    assert all(i["officer"] == OFFICER and i["local"] for i in shown["items"])
    assert shown["closed"]["seq"] == closed["seq"] and shown["exports"] == []
    open_case = cli_json(home, "case", "show", "C-2")
    assert open_case["closed"] is None
    assert [i["sha256"] for i in open_case["items"]] == [clips.c.sha256]
    text = run_cli(home, "case", "show", "C-1")
    words = " ".join(text.stdout.split())
    assert text.exit_code == 0 and "closed 2026-11-30 18:00:00+08:00 by Zhao Liu" in words
    assert "archive due by 2026-12-30 18:00:00+08:00" in words
    assert "case C-1: 2 items" in words
    # the items' recorded times in the station's zone too, never bare UTC
    recorded = {shown_time(i["recorded_at"]) for i in shown["items"]}
    assert recorded and all(r in words for r in recorded)
    assert run_cli(home, "case", "show", "C-9").exit_code == NotFound.exit_code
    assert ledger_problems(home) == (0, [])


def test_the_archive_window_on_a_controlled_clock(tmp_path: Path, clips: Clips) -> None:
    home = case_home(tmp_path, clips, config='[cases]\ncase_archive_window = "30d"\n')
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1))
    station = open_station(home, clock)
    try:
        closed = cases.close_case(station, "C-1", actor="Zhao Liu")
        assert closed.closed_at == clock.now
        clock.advance(days=30)  # the deadline itself is still within the window
        assert cases.check_archives(station).overdue == []
        assert cases.overdue_cases(station)[1] == []
        clock.advance(seconds=1)
        report = cases.check_archives(station)
        assert [c.case for c in report.overdue] == ["C-1"]
        assert {f["sha256"] for f in report.flagged} == {clips.a.sha256, clips.b.sha256}
        assert cases.check_archives(station).flagged == []  # each flag once
        with station.catalog.read() as tx:
            flags = {sha: tx.item_flags(sha) for sha in (clips.a.sha256, clips.b.sha256,
                                                        clips.c.sha256)}
        assert flags[clips.c.sha256] == []  # C-2 is not closed
        (late,) = flags[clips.a.sha256]
        assert late.flag == Flag.ARCHIVE_LATE
        due = format_time(closed.closed_at + timedelta(days=30))
        assert late.detail == (f"case C-1 closed {format_time(closed.closed_at)}: not "
                               f"archived by {due}")
        assert [c.case for c in cases.overdue_cases(station)[1]] == ["C-1"]

        # The archive job, once wired, records this; called directly here.
        done = cases.record_archive(station, "C-1", location="/srv/archive",
                                    package="C-1-20261201")
        assert done.archived_at == clock.now and done.archive_package == "C-1-20261201"
        assert cases.overdue_cases(station)[1] == []
        assert cases.check_archives(station).overdue == []
        with station.catalog.read() as tx:
            assert [f.flag for f in tx.item_flags(clips.a.sha256)] == [Flag.ARCHIVE_LATE]
        with pytest.raises(UsageError, match="archived already"):
            cases.record_archive(station, "C-1", location="/srv/archive", package="again")
        with pytest.raises(NotFound, match="not closed"):
            cases.record_archive(station, "C-2", location="/srv/archive", package="p")
    finally:
        station.close()
    (entry,) = ledger_lines(home, ARCHIVE_ENTRY)
    assert entry["data"]["package"] == "C-1-20261201"
    assert entry["data"]["archive_by"] == due


def test_overdue_lists_a_late_case_until_its_archive(tmp_path: Path, clips: Clips) -> None:
    home = case_home(tmp_path, clips, config='station_timezone = "+08:00"\n')
    ended = (datetime.now(UTC) - timedelta(days=31)).replace(microsecond=0)
    cli_json(home, "case", "close", "C-1", "--by", "Zhao Liu", "--at", format_time(ended))
    cli_json(home, "case", "close", "C-2", "--by", "Zhao Liu")  # within its window
    checked = cli_json(home, "case", "check")
    assert [c["case"] for c in checked["overdue"]] == ["C-1"]
    assert len(checked["flagged"]) == 2
    due = ended + timedelta(days=30)
    assert checked["overdue"][0]["archive_by"] == format_time(due)

    listed = {e["sha256"]: e for e in cli_json(home, "overdue")}
    assert set(listed) == {clips.a.sha256, clips.b.sha256}
    (reason,) = listed[clips.a.sha256]["reasons"]
    assert reason["flag"] == "archive_late" and "case C-1" in reason["detail"]
    assert format_time(due) in reason["detail"]
    text = run_cli(home, "overdue")
    assert text.exit_code == 0
    local_due = local_time(due, parse_utc_offset("+08:00"))
    line = next(x for x in text.stdout.splitlines() if x.startswith("C-1"))
    assert local_due in line and "Zhao Liu" in line
    assert "1 closed cases not archived" in text.stdout
    assert not any(x.startswith("C-2") for x in text.stdout.splitlines())

    station = open_station(home, clock=lambda: datetime.now(UTC))
    try:
        cases.record_archive(station, "C-1", location="s3://archive/C-1", package="pkg-1")
    finally:
        station.close()
    text = run_cli(home, "overdue")
    assert "closed cases not archived" not in text.stdout
    shown = cli_json(home, "case", "show", "C-1")["closed"]
    assert shown["overdue"] is False
    assert shown["archive"]["package"] == "pkg-1" and shown["archive"]["late"] is True
    assert parse_time(shown["archive"]["archived_at"]) > due
    assert ledger_problems(home) == (0, [])

    # The cases row is what its entries say, or ledger verify tells.
    catalog.tamper(home, "UPDATE cases SET archive_package = 'other' WHERE case_no = 'C-1'")
    catalog.tamper(home, "UPDATE cases SET closed_at = '2020-01-01T00:00:00Z' "
                         "WHERE case_no = 'C-2'")
    code, problems = ledger_problems(home)
    assert code != 0
    assert sorted(kind for kind, _seq in problems) == ["row_differs", "row_differs"]
    catalog.tamper(home, "DELETE FROM cases WHERE case_no = 'C-2'")
    assert ("missing_row", ledger_lines(home, "case_closed")[1]["seq"]) in ledger_problems(
        home)[1]


def test_case_show_lists_the_exports_of_its_items(tmp_path: Path, clips: Clips) -> None:
    home = case_home(tmp_path, clips)
    station = open_station(home, clock=lambda: datetime.now(UTC))
    try:
        with station.custody.transaction() as tx:
            # as the export writes them: one entry per item, and one naming the case
            station.custody.record(tx, kind="exported", actor="clerk", item=clips.a.sha256,
                                   data={"purpose": "party-copy", "package": "P-1"})
            station.custody.record(tx, kind="exported", actor="clerk", item=clips.c.sha256,
                                   data={"purpose": "party-copy", "package": "P-2"})
            station.custody.record(tx, kind="exported", actor="clerk",
                                   data={"purpose": "archive", "package": "P-3",
                                         "case": "C-1"})
    finally:
        station.close()
    shown = cli_json(home, "case", "show", "C-1")
    assert [e["data"]["package"] for e in shown["exports"]] == ["P-1", "P-3"]
    assert shown["exports"][0]["item"] == clips.a.sha256


def test_a_mistaken_close_is_reopened_with_its_reason(tmp_path: Path, clips: Clips) -> None:
    home = case_home(tmp_path, clips)
    ended = (datetime.now(UTC) - timedelta(days=40)).replace(microsecond=0)
    first = cli_json(home, "case", "close", "C-1", "--by", "Zhao Liu", "--at",
                     format_time(ended))["closed"]
    assert first["overdue"] is True
    assert run_cli(home, "case", "reopen", "C-1", "--by", "Zhao Liu").exit_code == 2
    reopened = cli_json(home, "case", "reopen", "C-1", "--by", "Zhao Liu", "--reason",
                        "wrong date: enforcement ended yesterday")["reopened"]
    assert reopened["closed_seq"] == first["seq"]
    (entry,) = ledger_lines(home, "case_reopened")
    assert entry["data"] == {"case": "C-1", "closed_seq": first["seq"],
                             "reason": "wrong date: enforcement ended yesterday"}
    assert cli_json(home, "case", "show", "C-1")["closed"] is None
    assert "closed cases not archived" not in run_cli(home, "overdue").stdout
    assert cli_json(home, "case", "check")["overdue"] == []
    assert run_cli(home, "case", "reopen", "C-1", "--by", "Zhao Liu", "--reason",
                   "again").exit_code == NotFound.exit_code
    # closed again, from the right day: a new window
    again = cli_json(home, "case", "close", "C-1", "--by", "Zhao Liu", "--at",
                     format_time(datetime.now(UTC) - timedelta(days=1)))["closed"]
    assert again["overdue"] is False and again["seq"] > reopened["closed_seq"]
    assert ledger_problems(home) == (0, [])
    # a row that outlives its reopening, or names an older close, is told
    catalog.tamper(home, "UPDATE cases SET ledger_seq = ? WHERE case_no = 'C-1'",
                   first["seq"])
    assert ("row_differs", again["seq"]) in ledger_problems(home)[1]

    station = open_station(home, clock=lambda: datetime.now(UTC))
    try:
        catalog.tamper(home, "UPDATE cases SET ledger_seq = ? WHERE case_no = 'C-1'",
                       again["seq"])
        cases.record_archive(station, "C-1", location="/srv/archive", package="pkg")
        with pytest.raises(UsageError, match="not reopened"):
            cases.reopen_case(station, "C-1", actor="Zhao Liu", reason="late footage")
    finally:
        station.close()
    assert ledger_problems(home) == (0, [])
