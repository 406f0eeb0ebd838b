"""`ingestd report`: the items recorded in a period, per case, officer or recorder, checked
against the items it counts (hours from their durations, late items by window, flags,
exports, spot checks); CSV that a spreadsheet opens with Chinese intact and no formula run;
JSON; a period read in the station's time zone; the same on PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import stat
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    OFFICER,
    OFFICER_ID,
    SERIAL,
    Clips,
    build_recorder,
    cli_json,
    init_station,
    open_station,
    run_cli,
)

from ingestd.domain.canonical import parse_time
from ingestd.domain.flags import Flag
from ingestd.errors import UsageError
from ingestd.usecases.flags import set_flag
from ingestd.usecases.spotcheck import record_review, run_spot_checks

pytestmark = pytest.mark.integration

TZ = timezone(timedelta(hours=8))
SERIAL_2 = "BWC-0002"
OFFICER_2 = "李明"
HOSTILE_CASE = '=HYPERLINK("http://evil.example/","open")'
HOSTILE_PARTY = "@SUM(1+1)"


def config(clips: Clips) -> str:
    """An ingest window half an hour shorter than a's wait, so that a is stored late and b
    (recorded an hour after it) and c are not, however long after the clips were made."""
    waited = datetime.now(UTC) - clips.a.recorded_end
    window = int(waited.total_seconds() // 60) - 30
    return (f'station_timezone = "+08:00"\n[windows]\ningest = "{window}m"\n'
            '[spotcheck]\nper_officer = 5\n')


def build(tmp_path: Path, clips: Clips, catalog_url: str = "") -> Path:
    """Two recorders: a, b, c from Wang Fang's, plain from 李明's. a and b labelled C-1
    (party 张三); c labelled with a hostile case number and party, officer 李明; plain
    unlabelled. c flagged late_label, a exported; every item spot-checked, a reviewed ok and
    b a problem."""
    extra = f'catalog = "{catalog_url}"\n' if catalog_url else ""
    home = init_station(tmp_path / "home", config=extra + config(clips),
                        register={SERIAL: (OFFICER, OFFICER_ID), SERIAL_2: (OFFICER_2, "P2")})
    one = build_recorder(tmp_path / "rec1", {"DCIM/A.MP4": clips.a, "DCIM/B.MP4": clips.b,
                                             "DCIM/C.MP4": clips.c})
    two = build_recorder(tmp_path / "rec2", {"DCIM/PLAIN.MP4": clips.plain})
    assert run_cli(home, "ingest", one, "--serial", SERIAL).exit_code == 0
    assert run_cli(home, "ingest", two, "--serial", SERIAL_2).exit_code == 0
    cli_json(home, "label", clips.a.sha256, clips.b.sha256, "--case", "C-1", "--party", "张三")
    cli_json(home, "label", clips.c.sha256, "--case", HOSTILE_CASE, "--party", HOSTILE_PARTY,
             "--officer", OFFICER_2)
    station = open_station(home, clock=lambda: datetime.now(UTC))
    try:
        with station.custody.transaction() as tx:
            set_flag(station, tx, clips.c.sha256, Flag.LATE_LABEL, at=station.custody.now(tx),
                     actor="tester", detail="set by the test")
            station.custody.record(tx, kind="exported", actor="clerk", item=clips.a.sha256,
                                   data={"purpose": "party-copy", "package": "P-1"})
        assert len(run_spot_checks(station).checks) == 4
        record_review(station, clips.a.sha256, by="supervisor", result="ok", note="seen")
        record_review(station, clips.b.sha256, by="supervisor", result="problem",
                      note="dark")
    finally:
        station.close()
    return home


def expected(home: Path, period: tuple[datetime, datetime], by: str) -> dict[str, Any]:
    """What the report must say, counted here from the items themselves."""
    start, end = period
    rows: dict[str, dict[str, Any]] = defaultdict(lambda: {
        "items": 0, "seconds": 0.0, "flags": Counter(), "flagged": 0})
    for item in cli_json(home, "items")["items"]:
        if not start <= parse_time(item["recorded_at"]) < end:
            continue
        key = {"case": item["case"] or "", "officer": item["officer"],
               "recorder": item["recorder"]}[by]
        row = rows[key]
        row["items"] += 1
        row["seconds"] += cli_json(home, "show", item["sha256"])["record"]["duration"] or 0
        row["flags"].update(item["flags"])
        row["flagged"] += bool(item["flags"])
    return rows


def year_of(clips: Clips) -> tuple[str, tuple[datetime, datetime]]:
    year = clips.b.recorded_end.astimezone(TZ).year  # type: ignore[union-attr]
    return str(year), (datetime(year, 1, 1, tzinfo=TZ), datetime(year + 1, 1, 1, tzinfo=TZ))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, clips: Clips) -> Path:
    return build(tmp_path_factory.mktemp("report"), clips)


def check_against_items(home: Path, clips: Clips) -> None:
    year, period = year_of(clips)
    for by in ("case", "officer", "recorder"):
        got = cli_json(home, "report", "--period", year, "--by", by)
        want = expected(home, period, by)
        assert {r[by]: r["items"] for r in got["rows"]} == {
            k: v["items"] for k, v in want.items()}, by
        for row in got["rows"]:
            w = want[row[by]]
            assert row["seconds"] == pytest.approx(w["seconds"])
            assert row["hours"] == round(w["seconds"] / 3600, 2)
            assert row["flags"] == dict(w["flags"]) and row["flagged"] == w["flagged"]
            assert row["late"] == {f: w["flags"].get(f, 0) for f in (
                "late_ingest", "late_label", "late_replication", "archive_late")}
        assert got["total"]["items"] == sum(v["items"] for v in want.values())
    by_case = {r["case"]: r for r in cli_json(home, "report", "--period", year,
                                               "--by", "case")["rows"]}
    assert by_case["C-1"]["late"]["late_ingest"] == 1  # a, and only a
    assert by_case[HOSTILE_CASE]["late"]["late_label"] == 1
    assert by_case["C-1"]["exports"] == 1 and by_case[HOSTILE_CASE]["exports"] == 0
    assert by_case["C-1"]["spot_checks"] == {"ok": 1, "problem": 1, "pending": 0}
    assert by_case[""]["spot_checks"] == {"ok": 0, "problem": 0, "pending": 1}
    assert by_case["C-1"]["parties"] == ["张三"] and by_case["C-1"]["officers"] == [OFFICER]
    assert by_case[HOSTILE_CASE]["officers"] == [OFFICER_2]


def test_a_report_counts_what_its_items_say(home: Path, clips: Clips) -> None:
    check_against_items(home, clips)
    by_officer = {r["officer"]: r["items"] for r in cli_json(
        home, "report", "--period", year_of(clips)[0], "--by", "officer")["rows"]}
    assert by_officer == {OFFICER: 2, OFFICER_2: 2}  # c is filed under its label's officer
    alone = cli_json(home, "report", "--period", year_of(clips)[0])
    assert alone["rows"] == [] and alone["total"]["items"] == 4


def test_the_period_is_read_in_the_station_time_zone(home: Path, clips: Clips) -> None:
    b = clips.b.recorded.astimezone(TZ)  # type: ignore[union-attr]
    day = b.date().isoformat()
    got = cli_json(home, "report", "--period", f"{day}..{day}")
    assert got["period"]["from"] == (datetime.fromisoformat(day).replace(tzinfo=TZ)
                                     .astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    month = cli_json(home, "report", "--period", b.strftime("%Y-%m"))
    assert month["period"]["from_local"] == b.strftime("%Y-%m-01 00:00:00+08:00")
    assert month["total"]["items"] >= got["total"]["items"] >= 1
    nothing = cli_json(home, "report", "--period", "1999")
    assert nothing["total"]["items"] == 0 and nothing["total"]["seconds"] == 0
    for bad in ("2026-13", "26", "2026-02-01..2026-01-01", "last year"):
        result = run_cli(home, "report", "--period", bad)
        assert result.exit_code == UsageError.exit_code, bad
        assert "--period" in result.stderr


def test_csv_opens_in_a_spreadsheet_with_chinese_intact_and_no_formula(
        home: Path, clips: Clips, tmp_path: Path) -> None:
    year = year_of(clips)[0]
    out = tmp_path / "cases.csv"
    assert run_cli(home, "report", "--period", year, "--by", "case", "--format", "csv",
                   "--out", out).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) & 0o077 == 0
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    head, *body = rows
    assert head[:3] == ["case", "items", "hours"]
    cells = {r[0]: dict(zip(head, r, strict=True)) for r in body}
    assert cells["C-1"]["parties"] == "张三" and cells["C-1"]["items"] == "2"
    # the hostile case number and party are there, as typed, after a quote
    assert cells["'" + HOSTILE_CASE]["parties"] == "'" + HOSTILE_PARTY
    assert not any(c.startswith(("=", "+", "-", "@")) for r in body for c in r)
    assert cells["total"]["items"] == "4"
    # the same on stdout
    printed = run_cli(home, "report", "--period", year, "--by", "case", "--format", "csv")
    assert printed.exit_code == 0
    assert printed.stdout.encode("utf-8") == data


def test_table_and_json_out(home: Path, clips: Clips, tmp_path: Path) -> None:
    year = year_of(clips)[0]
    table = run_cli(home, "report", "--period", year, "--by", "recorder")
    assert table.exit_code == 0
    assert SERIAL in table.stdout and SERIAL_2 in table.stdout and "total" in table.stdout
    out = tmp_path / "r.json"
    assert run_cli(home, "report", "--period", year, "--format", "json", "--out",
                   out).exit_code == 0
    assert json.loads(out.read_text(encoding="utf-8"))["total"]["items"] == 4
    missing = run_cli(home, "report", "--period", year, "--out", tmp_path / "no" / "r.txt")
    assert missing.exit_code == UsageError.exit_code and "--out" in missing.stderr


def test_a_report_on_postgresql(tmp_path: Path, postgres_url: str, clips: Clips) -> None:
    home = build(tmp_path, clips, catalog_url=postgres_url)
    check_against_items(home, clips)
