"""`overdue --within` lists what will miss a window soon, with the deadline; a missed deadline
is shown in the station's time zone, while the flag's signed detail stays in UTC."""

from __future__ import annotations

from datetime import timedelta, timezone
from pathlib import Path

import pytest
from conftest import (
    OFFICER,
    OFFICER_ID,
    SERIAL,
    Clips,
    build_recorder,
    cli_json,
    init_station,
    item_record,
    ledger_lines,
    run_cli,
)

from ingestd.domain.canonical import parse_time
from ingestd.domain.policy import local_time

pytestmark = pytest.mark.integration


def station_home(tmp_path: Path, clips: Clips, config: str) -> Path:
    home = init_station(tmp_path / "home", config=config,
                        register={SERIAL: (OFFICER, OFFICER_ID)})
    rec = build_recorder(tmp_path / "rec", {"DCIM/a.mp4": clips.a, "DCIM/b.mp4": clips.b})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    return home


@pytest.fixture
def home(tmp_path: Path, clips: Clips) -> Path:
    nas = tmp_path / "nas"
    nas.mkdir()
    return station_home(tmp_path, clips, (
        'station_timezone = "+08:00"\n[windows]\nlabel = "2h"\nreplication = "1h"\n'
        f'\n[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\n'
        'same_filesystem_ok = true\n'))


def ahead(home: Path, *args: str) -> dict[str, list[dict[str, object]]]:
    report = cli_json(home, "overdue", "--within", *args)
    return {e["sha256"]: e["windows"] for e in report["items"]}


def test_windows_closing_within_the_horizon_are_listed_with_their_deadline(
        home: Path, clips: Clips) -> None:
    a, b = clips.a.sha256, clips.b.sha256
    cli_json(home, "label", a, "--case", "C-1", "--party", "P")
    assert ahead(home, "30m") == {}  # the nearest window closes in about an hour
    soon = ahead(home, "90m")
    assert {sha: [w["window"] for w in ws] for sha, ws in soon.items()} == {
        a: ["replication"], b: ["replication"]}
    later = ahead(home, "3h")
    assert [w["window"] for w in later[a]] == ["replication"]  # a is labelled
    assert [w["window"] for w in later[b]] == ["replication", "label"]
    label = later[b][1]
    deadline = item_record(home, b)["label_deadline"]
    assert label["flag"] == "late_label" and label["deadline"] == deadline
    assert label["deadline_local"] == local_time(parse_time(deadline),
                                                 timezone(timedelta(hours=8)))
    assert 0 < int(str(label["seconds_left"])) <= 3 * 3600
    assert ahead(home, "3h", "--flag", "late_label") == {b: [label]}

    # Replicated: the replication window is met and no longer listed.
    assert run_cli(home, "replicate").exit_code == 0
    assert {sha: [w["window"] for w in ws] for sha, ws in ahead(home, "3h").items()} == {
        b: ["label"]}
    text = run_cli(home, "overdue", "--within", "3h")
    assert text.exit_code == 0
    assert f"label by {label['deadline_local']}" in " ".join(text.stdout.split())
    # Without --within: what missed a window, as before (nothing yet).
    assert cli_json(home, "overdue") == []


def test_within_refuses_what_it_cannot_list(home: Path) -> None:
    for args in (["--within", "soon"], ["--within", "0s"],
                 ["--within", "1h", "--all-flags"], ["--within", "1h", "--flag", "late_ingest"]):
        result = run_cli(home, "overdue", *args)
        assert result.exit_code == 2, args
        assert "--within" in result.stderr


def test_a_missed_deadline_is_shown_in_the_station_time_zone(tmp_path: Path,
                                                            clips: Clips) -> None:
    # The clips were recorded twelve hours ago: with a one-hour ingest window they are late.
    home = station_home(tmp_path, clips, 'station_timezone = "+08:00"\n'
                                         '[windows]\ningest = "1h"\n')
    sha = clips.a.sha256
    deadline = parse_time(item_record(home, sha)["ingest_deadline"])
    local = local_time(deadline, timezone(timedelta(hours=8)))
    (flagged, _) = ledger_lines(home, "flagged")
    late = [e for e in ledger_lines(home, "flagged") if e["item"] == sha][0]
    assert flagged["data"]["flag"] == "late_ingest"
    # The signed detail and its JSON stay in UTC.
    assert late["data"]["detail"].endswith("Z")
    listed = {e["sha256"]: e for e in cli_json(home, "overdue")}
    assert listed[sha]["reasons"][0]["detail"] == late["data"]["detail"]
    text = " ".join(run_cli(home, "overdue").stdout.split())
    assert f"deadline {local} local" in text
    assert f"deadline {local} local" in " ".join(run_cli(home, "show", sha).stdout.split())


def test_a_utc_station_shows_overdue_as_before(tmp_path: Path, clips: Clips) -> None:
    home = station_home(tmp_path, clips, '[ingest]\nrecorder_timezone = "UTC"\n'
                                         '[windows]\ningest = "1h"\n')
    text = run_cli(home, "overdue").stdout
    assert "late_ingest" in text and " local" not in text
    (late, *_) = ledger_lines(home, "flagged")
    assert late["data"]["detail"] in " ".join(text.split())
