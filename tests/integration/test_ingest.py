"""Ingest of simulated recorders with real clips: the store, the catalog, acquisitions, recorded
times and flags, hostile recorder contents, unregistered recorders."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import (
    OFFICER,
    SERIAL,
    ClipFile,
    Clips,
    FakeClock,
    build_recorder,
    cli_json,
    init_station,
    item_records,
    ledger_lines,
    open_station,
    partial_files,
    run_cli,
    sha256_of,
    snapshot_tree,
    store_objects,
)

from ingestd.domain.canonical import format_time
from ingestd.station import Station
from ingestd.usecases.ingest import Ingestor, IngestReport
from ingestd.usecases.windows import check_windows

pytestmark = pytest.mark.integration

MEDIA = "DCIM/100MEDIA"


def ingest(station: Station, recorder: Path, serial: str = SERIAL) -> IngestReport:
    return Ingestor(station).ingest(recorder, serial=serial)


def assert_store_holds_exactly(home: Path, shas: set[str]) -> None:
    """Every object is where its hash says, read-only, intact, and nothing else is stored."""
    objects = store_objects(home)
    assert set(objects) == shas
    for sha, path in objects.items():
        assert path == home / "store" / "objects" / "sha256" / sha[:2] / sha[2:4] / sha
        assert not path.is_symlink()
        assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0, f"{path} is writable"
        assert sha256_of(path) == sha
    assert partial_files(home) == []


# -- the ordinary case -----------------------------------------------------------------------


def test_ingest_a_recorder_stores_every_clip_and_prints_json(home: Path, tmp_path: Path,
                                                             clips: Clips) -> None:
    rec = build_recorder(tmp_path / "rec", {
        f"{MEDIA}/A0001.MP4": clips.a, f"{MEDIA}/A0002.MP4": clips.b,
        f"{MEDIA}/A0003.MP4": clips.c, "SYSTEM/DEVICE.TXT": b"serial=BWC-0001\n",
    })
    before = snapshot_tree(rec)
    result = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert set(report) >= {"items", "errors"}
    assert report["errors"] == []
    got = {i["path"]: i for i in report["items"]}
    assert set(got) == {f"{MEDIA}/A0001.MP4", f"{MEDIA}/A0002.MP4", f"{MEDIA}/A0003.MP4"}
    for name, clip in (("A0001", clips.a), ("A0002", clips.b), ("A0003", clips.c)):
        item = got[f"{MEDIA}/{name}.MP4"]
        assert {"sha256", "path", "size", "recorded_at", "flags"} <= set(item)
        assert item["sha256"] == clip.sha256
        assert item["size"] == clip.size
        assert clip.recorded is not None
        assert item["recorded_at"] == format_time(clip.recorded)
        assert item["flags"] == []
    assert_store_holds_exactly(home, {c.sha256 for c in clips.all()})
    assert snapshot_tree(rec) == before, "the recorder must not be changed"


def test_media_facts_from_ffprobe_are_in_the_catalog(home: Path, tmp_path: Path,
                                                     clips: Clips) -> None:
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/B.MP4": clips.b})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    shown = run_cli(home, "show", clips.b.sha256, "--json")
    assert shown.exit_code == 0, shown.stderr
    info = shown.json()
    media = info["record"]["media"]
    assert media["ok"] is True
    assert media["video_codec"] == "h264"
    assert media["audio_codec"] == "aac"
    assert (media["width"], media["height"]) == (320, 240)
    assert media["duration"] == pytest.approx(clips.b.duration)
    assert info["record"]["duration"] == pytest.approx(clips.b.duration)
    assert info["record"]["time_source"] == "media"
    assert info["item"]["officer"] == OFFICER
    assert info["item"]["recorder"] == SERIAL
    assert info["item"]["original_name"] == f"{MEDIA}/B.MP4"
    assert info["item"]["size"] == clips.b.size


def test_ingest_again_copies_nothing_twice_and_records_the_new_acquisition(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/1.MP4": clips.a, f"{MEDIA}/2.MP4": clips.b})
    first = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json").json()
    assert first["bytes_copied"] == clips.a.size + clips.b.size
    objects = {sha: (p.stat().st_ino, p.stat().st_mtime_ns) for sha, p in
               store_objects(home).items()}

    second = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json")
    assert second.exit_code == 0, second.stderr
    report = second.json()
    assert report["bytes_copied"] == 0
    assert [i["new"] for i in report["items"]] == [False, False]
    assert {i["sha256"] for i in report["items"]} == {clips.a.sha256, clips.b.sha256}
    assert {sha: (p.stat().st_ino, p.stat().st_mtime_ns) for sha, p in
            store_objects(home).items()} == objects

    for clip in (clips.a, clips.b):
        acqs = run_cli(home, "show", clip.sha256, "--json").json()["acquisitions"]
        assert [a["state"] for a in acqs] == ["stored", "known"]
        assert len({a["session_id"] for a in acqs}) == 2
    acquired = ledger_lines(home, "acquired")
    assert [e["data"]["copied"] for e in acquired] == [True, True, False, False]
    assert len(ledger_lines(home, "stored")) == 2
    status = run_cli(home, "status", "--json").json()
    assert status["items"]["total"] == 2
    assert status["acquisitions"] == {"stored": 2, "known": 2}


def test_same_bytes_on_two_recorders_are_one_item_with_two_acquisitions(
        tmp_path: Path, clips: Clips) -> None:
    home = init_station(tmp_path / "home", register={"R-1": ("Li Na", "1"),
                                                     "R-2": ("Zhao Lei", "2")})
    rec1 = build_recorder(tmp_path / "r1", {f"{MEDIA}/X.MP4": clips.a})
    rec2 = build_recorder(tmp_path / "r2", {f"{MEDIA}/Y.MP4": clips.a, f"{MEDIA}/Z.MP4": clips.c})
    assert run_cli(home, "ingest", rec1, "--serial", "R-1").exit_code == 0
    report = run_cli(home, "ingest", rec2, "--serial", "R-2", "--json").json()
    by_path = {i["path"]: i for i in report["items"]}
    assert by_path[f"{MEDIA}/Y.MP4"]["new"] is False
    assert by_path[f"{MEDIA}/Y.MP4"]["sha256"] == clips.a.sha256
    assert by_path[f"{MEDIA}/Z.MP4"]["new"] is True

    shown = run_cli(home, "show", clips.a.sha256, "--json").json()
    assert [(a["serial"], a["path"]) for a in shown["acquisitions"]] == [
        ("R-1", f"{MEDIA}/X.MP4"), ("R-2", f"{MEDIA}/Y.MP4")]
    assert shown["item"]["recorder"] == "R-1"  # where it was first stored
    assert_store_holds_exactly(home, {clips.a.sha256, clips.c.sha256})
    assert run_cli(home, "ledger", "verify").exit_code == 0


# -- time and windows, to the second ---------------------------------------------------------


def test_recorded_time_from_media_else_file_name_else_file_time(
        tmp_path: Path, clips: Clips) -> None:
    clock = FakeClock(datetime(2026, 1, 3, tzinfo=UTC))
    home = init_station(tmp_path / "home", clock=clock, register={SERIAL: (OFFICER, "1")})
    # clips.plain has no creation_time. Named by local time (+08:00 by default):
    # 2026-01-02 10:00:00 local is 02:00:00 UTC.
    rec = build_recorder(tmp_path / "rec", {
        f"{MEDIA}/20260102_100000_0001.MP4": clips.plain,
        f"{MEDIA}/clip.mp4": b"not a video at all",
    })
    mtime = datetime(2026, 1, 2, 12, 30, tzinfo=UTC)
    os.utime(rec / MEDIA / "clip.mp4", (mtime.timestamp(), mtime.timestamp()))
    station = open_station(home, clock)
    try:
        ingest(station, rec)
    finally:
        station.close()
    rows = {r["original_name"]: r for r in item_records(home)}
    named = rows[f"{MEDIA}/20260102_100000_0001.MP4"]
    assert named["time_source"] == "filename"
    assert named["recorded_start"] == "2026-01-02T02:00:00.000000Z"
    by_file = rows[f"{MEDIA}/clip.mp4"]
    assert by_file["time_source"] == "file_time"
    assert by_file["recorded_end"] == format_time(mtime)


def test_recorder_timezone_is_configurable(tmp_path: Path, clips: Clips) -> None:
    clock = FakeClock(datetime(2026, 1, 3, tzinfo=UTC))
    home = init_station(tmp_path / "home", clock=clock, register={SERIAL: (OFFICER, "1")},
                        config='[ingest]\nrecorder_timezone = "-05:00"\n')
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/20260102_100000.MP4": clips.plain})
    station = open_station(home, clock)
    try:
        ingest(station, rec)
    finally:
        station.close()
    (row,) = item_records(home)
    assert (row["recorded_start"], row["time_source"]) == ("2026-01-02T15:00:00.000000Z",
                                                           "filename")


@pytest.mark.parametrize(("after_deadline", "late"), [
    (timedelta(0), False), (timedelta(seconds=1), True), (timedelta(seconds=-1), False)])
def test_late_ingest_exactly_at_the_window(tmp_path: Path, clips: Clips,
                                           after_deadline: timedelta, late: bool) -> None:
    deadline = clips.a.recorded_end + timedelta(hours=24)
    clock = FakeClock(deadline + after_deadline)
    home = init_station(tmp_path / "home", clock=clock, register={SERIAL: (OFFICER, "1")})
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    station = open_station(home, clock)
    try:
        report = ingest(station, rec)
    finally:
        station.close()
    (item,) = report.items
    assert item.flags == (["late_ingest"] if late else [])
    (row,) = item_records(home)
    assert row["ingest_deadline"] == format_time(deadline)
    assert row["stored_at"] == format_time(clock.now)


def test_overdue_lists_late_items_with_their_reason(tmp_path: Path, clips: Clips) -> None:
    # On time first, then late: the clock only moves forward, as a station's does.
    clock = FakeClock(clips.c.recorded_end + timedelta(hours=1))
    home = init_station(tmp_path / "home", clock=clock, register={SERIAL: (OFFICER, "1")})
    station = open_station(home, clock)
    try:
        ingest(station, build_recorder(tmp_path / "ontime", {f"{MEDIA}/C.MP4": clips.c}))
        clock.set(clips.b.recorded_end + timedelta(days=3))
        ingest(station, build_recorder(tmp_path / "late", {f"{MEDIA}/B.MP4": clips.b}))
    finally:
        station.close()
    result = run_cli(home, "overdue", "--json")
    assert result.exit_code == 0, result.stderr
    (entry,) = result.json()
    assert entry["sha256"] == clips.b.sha256
    assert entry["flags"] == ["late_ingest"]
    (reason,) = entry["reasons"]
    assert reason["flag"] == "late_ingest"
    assert "ingest window" in reason["reason"]
    assert format_time(clips.b.recorded_end + timedelta(hours=24)) in reason["detail"]
    listed = run_cli(home, "items", "--flag", "late_ingest", "--json").json()["items"]
    assert [i["sha256"] for i in listed] == [clips.b.sha256]


def test_late_label_exactly_at_the_label_window(tmp_path: Path, clips: Clips) -> None:
    clock = FakeClock(clips.a.recorded_end + timedelta(hours=1))
    home = init_station(tmp_path / "home", clock=clock, register={SERIAL: (OFFICER, "1")})
    station = open_station(home, clock)
    try:
        report = ingest(station, build_recorder(tmp_path / "rec", {
            f"{MEDIA}/A.MP4": clips.a, f"{MEDIA}/B.MP4": clips.b}))
        stored_at = clock.now
        done = run_cli(home, "label", clips.b.sha256, "--case", "C-1", "--party", "P")
        assert done.exit_code == 0, done.stderr
        clock.set(stored_at + timedelta(hours=48))
        assert check_windows(station).flagged == []
        clock.advance(seconds=1)
        flagged = check_windows(station).flagged
        assert flagged == [{"sha256": clips.a.sha256, "flag": "late_label"}]
        clock.advance(days=3)
        assert check_windows(station).flagged == []  # a flag is set once, and stays
    finally:
        station.close()
    assert {i.sha256 for i in report.items} == {clips.a.sha256, clips.b.sha256}
    (entry,) = run_cli(home, "overdue", "--json").json()
    assert entry["sha256"] == clips.a.sha256 and entry["flags"] == ["late_label"]
    assert entry["reasons"][0]["since"] == format_time(stored_at + timedelta(hours=48, seconds=1))
    assert format_time(stored_at + timedelta(hours=48)) in entry["reasons"][0]["detail"]


def test_a_justified_late_item_stays_flagged_with_its_reason(tmp_path: Path,
                                                             clips: Clips) -> None:
    # Late by a window of one hour, docked in the past: the commands that follow, on the real
    # clock, come after it (a station's clock only moves forward).
    clock = FakeClock(clips.a.recorded_end + timedelta(hours=2))
    home = init_station(tmp_path / "home", clock=clock, config='[windows]\ningest = "1h"\n',
                        register={SERIAL: (OFFICER, "1")})
    station = open_station(home, clock)
    try:
        ingest(station, build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a}))
    finally:
        station.close()
    reason = "remote duty at the border post until the day before docking"
    done = run_cli(home, "justify", clips.a.sha256[:8], "--reason", reason, "--by", "sgt-4")
    assert done.exit_code == 0, done.stderr
    (entry,) = run_cli(home, "overdue", "--json").json()
    assert entry["flags"] == ["late_ingest"]
    assert entry["justifications"] == [
        {"by": "sgt-4", "reason": reason, "at": entry["justifications"][0]["at"]}]
    history = run_cli(home, "show", clips.a.sha256, "--json").json()["history"]
    assert [h["actor"] for h in history if h["kind"] == "justified"] == ["sgt-4"]
    # Only a flag the item has can be justified.
    wrong = run_cli(home, "justify", clips.a.sha256, "--flag", "late_label", "--reason", "x")
    assert wrong.exit_code == 2 and "not flagged late_label" in wrong.stderr
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_recorder_clock_unset_or_ahead_is_flagged(tmp_path: Path, clips: Clips) -> None:
    clock = FakeClock(datetime(2026, 1, 3, 12, 0, tzinfo=UTC))
    home = init_station(tmp_path / "home", clock=clock, register={SERIAL: (OFFICER, "1")})
    rec = build_recorder(tmp_path / "rec", {
        # 1990 in the name: the recorder clock was never set.
        f"{MEDIA}/19900101_080000.MP4": clips.plain,
        # 20:11 local = 12:11 UTC, 11 minutes after the dock: beyond the 10 minute tolerance.
        f"{MEDIA}/20260103_201100.MP4": b"skewed",
        # 20:10 local = 12:10 UTC: within tolerance.
        f"{MEDIA}/20260103_201000.MP4": b"just in tolerance",
    })
    station = open_station(home, clock)
    try:
        report = ingest(station, rec)
    finally:
        station.close()
    flags = {i.path: set(i.flags) for i in report.items}
    assert flags[f"{MEDIA}/19900101_080000.MP4"] == {"clock_unset"}
    assert flags[f"{MEDIA}/20260103_201100.MP4"] == {"clock_skew", "damaged_media"}
    assert flags[f"{MEDIA}/20260103_201000.MP4"] == {"damaged_media"}
    overdue = run_cli(home, "overdue", "--json").json()
    assert {tuple(e["flags"]) for e in overdue} == {("clock_unset",), ("clock_skew",)}


# -- hostile recorders -----------------------------------------------------------------------


def hostile_recorder(root: Path, clips: Clips, outside: Path) -> Path:
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.mp4").write_bytes(b"station file, not evidence")
    build_recorder(root, {
        f"{MEDIA}/..mp4": clips.a,
        f"{MEDIA}/...mp4": b"dots",
        f"{MEDIA}/a..b.mp4": b"dots in the middle",
        "..../x.mp4": b"folder of dots",
        b"DCIM/new\nline.mp4": b"newline in name",
        b"DCIM/tab\there\r.mp4": b"tab and carriage return",
        b"DCIM/bad\xff\xfe.mp4": b"not utf-8",
        b"DCIM/esc\x1b[2J.mp4": b"terminal escape",
        b"DCIM/" + b"L" * 251 + b".mp4": b"255-byte name",
        f"{MEDIA}/-rf .mp4": b"option-like name",
        f"{MEDIA}/empty.mp4": b"",
        f"{MEDIA}/truncated.MP4": clips.truncated,
    })
    (root / MEDIA / "link.mp4").symlink_to(outside / "secret.mp4")
    (root / MEDIA / "abs.mp4").symlink_to("/etc/passwd")
    (root / "DCIM" / "outside").symlink_to(outside)
    (root / "DCIM" / "up").symlink_to("../..")
    return root


def test_hostile_names_are_data_and_nothing_escapes_the_store(home: Path, tmp_path: Path,
                                                              clips: Clips) -> None:
    rec = hostile_recorder(tmp_path / "rec", clips, tmp_path / "outside")
    before = snapshot_tree(rec)
    outside_before = snapshot_tree(tmp_path / "outside")
    result = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["errors"] == []
    items = {i["path"]: i for i in report["items"]}
    assert set(items) == {
        f"{MEDIA}/..mp4", f"{MEDIA}/...mp4", f"{MEDIA}/a..b.mp4", "..../x.mp4",
        "DCIM/new\\nline.mp4", "DCIM/tab\\there\\r.mp4", "DCIM/bad\\xff\\xfe.mp4",
        "DCIM/esc\\x1b[2J.mp4", "DCIM/" + "L" * 251 + ".mp4", f"{MEDIA}/-rf .mp4",
        f"{MEDIA}/empty.mp4", f"{MEDIA}/truncated.MP4"}
    # Every shown path is one printable line.
    assert all(p.isprintable() for p in items)
    assert items[f"{MEDIA}/..mp4"]["sha256"] == clips.a.sha256
    # Symbolic links are reported and not followed.
    assert {s["path"]: s["reason"] for s in report["skipped"]} == {
        f"{MEDIA}/abs.mp4": "symbolic link (not followed)",
        f"{MEDIA}/link.mp4": "symbolic link (not followed)",
        "DCIM/outside": "symbolic link (not followed)",
        "DCIM/up": "symbolic link (not followed)"}
    stored = {i["sha256"] for i in report["items"]}
    assert sha256_of(tmp_path / "outside" / "secret.mp4") not in stored
    assert sha256_of(Path("/etc/passwd")) not in stored

    # The exact bytes of each name are kept beside the display form.
    acqs = [a for sha in stored for a in cli_json(home, "show", sha)["acquisitions"]]
    by_hex = {bytes.fromhex(a["path_hex"]): a["path"] for a in acqs}
    assert by_hex[b"DCIM/bad\xff\xfe.mp4"] == "DCIM/bad\\xff\\xfe.mp4"
    assert by_hex[b"DCIM/new\nline.mp4"] == "DCIM/new\\nline.mp4"

    # Nothing escapes: every file under home is one ingestd owns, every object is where its
    # hash says; nothing next to the recorder or outside changed.
    assert_store_holds_exactly(home, stored)
    expected_top = {"ingestd.toml", "catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm",
                    "ledger.jsonl", "ledger.lock", "keys", "store", "logs", "run", "docks"}
    assert {p.name for p in home.iterdir()} <= expected_top
    for path in home.rglob("*"):
        rel = path.relative_to(home).parts
        if rel[0] == "store" and path.is_file():
            assert rel[:3] == ("store", "objects", "sha256") and len(rel) == 6, path
        if rel[0] in {"logs", "run", "docks"}:
            assert path.is_dir(), path
        if rel[0] == "keys" and len(rel) > 1:
            assert rel[1:] in {("station.key",), ("station.pub",), ("station.pin",)}, path
    assert snapshot_tree(rec) == before
    assert snapshot_tree(tmp_path / "outside") == outside_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "outside", "rec"]

    # Ingesting the same hostile recorder again finds every file known.
    again = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json").json()
    assert all(not i["new"] for i in again["items"]) and len(again["items"]) == len(items)
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_zero_byte_and_damaged_files_are_stored_and_flagged_never_dropped(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    rec = build_recorder(tmp_path / "rec", {
        f"{MEDIA}/EMPTY.MP4": b"", f"{MEDIA}/CUT.MP4": clips.truncated,
        f"{MEDIA}/GARBAGE.MP4": os.urandom(4096)})
    report = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json").json()
    flags = {i["path"]: set(i["flags"]) for i in report["items"]}
    assert flags[f"{MEDIA}/EMPTY.MP4"] >= {"empty_file"}
    assert flags[f"{MEDIA}/CUT.MP4"] == {"damaged_media"}
    assert flags[f"{MEDIA}/GARBAGE.MP4"] == {"damaged_media"}
    for path in (f"{MEDIA}/EMPTY.MP4", f"{MEDIA}/CUT.MP4", f"{MEDIA}/GARBAGE.MP4"):
        original = rec / path
        check = run_cli(home, "verify", original, "--json")
        assert check.exit_code == 0, check.stdout
        (verdict,) = check.json()["results"]
        assert verdict["match"] is True
    cut = next(i for i in report["items"] if i["path"] == f"{MEDIA}/CUT.MP4")
    assert (home / "store" / "objects" / "sha256" / cut["sha256"][:2] / cut["sha256"][2:4] /
            cut["sha256"]).read_bytes() == clips.truncated
    shown = run_cli(home, "show", cut["sha256"], "--json").json()
    (flag,) = shown["flags"]
    assert flag["flag"] == "damaged_media" and flag["detail"]  # ffprobe's reason is kept


def test_a_clip_whose_bytes_pass_for_text_is_stored_flagged_with_what_ffprobe_refused(
        home: Path, tmp_path: Path) -> None:
    # Lines like an LRC lyrics file: ffprobe, free to guess, would parse such a file to its
    # end (seconds of CPU per 100 MB of random bytes) and print every "tag" it found.
    lyrics = b"".join(b"[00:%02d.00]line %d\n" % (n % 60, n) for n in range(2000))
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/LYRICS.MP4": lyrics})
    (item,) = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json").json()["items"]
    assert item["new"] and item["flags"] == ["damaged_media"]
    shown = run_cli(home, "show", item["sha256"], "--json").json()
    assert shown["record"]["media"]["ok"] is False
    (flag,) = shown["flags"]
    assert flag["detail"] == ("not an audio or video format recorders write "
                              "(its bytes look like lrc)")
    assert run_cli(home, "verify", rec / MEDIA / "LYRICS.MP4").exit_code == 0


@pytest.mark.root
def test_a_directory_loop_is_walked_once(home: Path, tmp_path: Path, clips: Clips) -> None:
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    loop = rec / "DCIM" / "loop"
    loop.mkdir()
    subprocess.run(["mount", "--bind", str(rec), str(loop)], check=True)
    try:
        result = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json")
    finally:
        subprocess.run(["umount", "-l", str(loop)], check=False)
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert [i["path"] for i in report["items"]] == [f"{MEDIA}/A.MP4"]
    assert {"path": "DCIM/loop", "kind": "loop",
            "reason": "folder already walked (loop)"} in report["skipped"]


@pytest.mark.root
def test_ingest_from_a_read_only_mount(home: Path, tmp_path: Path, clips: Clips) -> None:
    src = build_recorder(tmp_path / "src", {f"{MEDIA}/A.MP4": clips.a, f"{MEDIA}/B.MP4": clips.b})
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(src), str(mnt)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], check=True)
        result = run_cli(home, "ingest", mnt, "--serial", SERIAL, "--json")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    assert result.exit_code == 0, result.stderr
    assert {i["sha256"] for i in result.json()["items"]} == {clips.a.sha256, clips.b.sha256}


# -- recorders the registry does not know ----------------------------------------------------


def test_unregistered_recorder_is_refused_visibly(home: Path, tmp_path: Path,
                                                  clips: Clips) -> None:
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    result = run_cli(home, "ingest", rec, "--serial", "STRANGER-9")
    assert result.exit_code == 6
    assert "STRANGER-9" in result.stderr and "not registered" in result.stderr
    assert "ingestd devices add STRANGER-9" in result.stderr
    assert store_objects(home) == {}
    status = run_cli(home, "status", "--json").json()
    assert status["items"]["total"] == 0
    (dock,) = status["docks"]
    assert dock["serial"] == "STRANGER-9" and dock["state"] == "refused"
    assert "not registered" in dock["error"]
    (refused,) = ledger_lines(home, "recorder_refused")
    assert refused["data"]["serial"] == "STRANGER-9"
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_unregistered_recorder_taken_in_unassigned_when_configured(tmp_path: Path,
                                                                   clips: Clips) -> None:
    home = init_station(tmp_path / "home", config='[ingest]\nunregistered = "unassigned"\n')
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    result = run_cli(home, "ingest", rec, "--serial", "STRANGER-9", "--json")
    assert result.exit_code == 0, result.stderr
    (item,) = result.json()["items"]
    assert item["sha256"] == clips.a.sha256
    assert "unregistered_recorder" in item["flags"]
    shown = run_cli(home, "show", clips.a.sha256, "--json").json()
    assert shown["item"]["officer"] == ""
    assert shown["item"]["recorder"] == "STRANGER-9"
    # Labelling it needs an officer, since the registry cannot supply one.
    refused = run_cli(home, "label", clips.a.sha256[:12], "--case", "C-1", "--party", "P")
    assert refused.exit_code == 2
    assert "--officer" in refused.stderr
    done = run_cli(home, "label", clips.a.sha256[:12], "--case", "C-1", "--party", "P",
                   "--officer", "Sun Li")
    assert done.exit_code == 0, done.stderr


# -- several files of one recorder at once ----------------------------------------------------


def many_files(count: int) -> dict[str | bytes, ClipFile | bytes | Path]:
    """Distinct photo-sized files (the many-small-files case where file threads help most)."""
    return {f"{MEDIA}/IMG_{n:04d}.JPG": os.urandom(200_000 + n) for n in range(count)}


@pytest.mark.parametrize("threads", [1, 4])
def test_files_taken_in_parallel_are_each_stored_once_and_reported_in_walk_order(
        tmp_path: Path, threads: int) -> None:
    home = init_station(tmp_path / "home", register={SERIAL: (OFFICER, "1")},
                        config=f"[ingest]\nparallel_files = {threads}\n")
    files = many_files(24)
    rec = build_recorder(tmp_path / "rec", files)
    result = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json")
    assert result.exit_code == 0, result.stderr
    items = result.json()["items"]
    assert [i["path"] for i in items] == sorted(str(p) for p in files)
    assert all(i["new"] for i in items)
    expected = {sha256_of(rec / str(p)) for p in files}
    assert_store_holds_exactly(home, expected)
    assert len(ledger_lines(home, "stored")) == len(expected)
    assert cli_json(home, "status")["acquisitions"] == {"stored": len(files)}
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_a_stop_lets_the_files_in_hand_finish_and_starts_no_other(tmp_path: Path) -> None:
    home = init_station(tmp_path / "home", register={SERIAL: (OFFICER, "1")},
                        config="[ingest]\nparallel_files = 3\n")
    rec = build_recorder(tmp_path / "rec", many_files(12))
    cancel = threading.Event()

    def progress(event: str, src: object, n: int) -> None:
        if event == "file":
            cancel.set()  # the first stop signal, as soon as a file is in hand

    station = open_station(home)
    try:
        report = Ingestor(station).ingest(rec, serial=SERIAL, cancel=cancel, progress=progress)
    finally:
        station.close()
    assert report.state == "interrupted"
    assert 1 <= len(report.items) <= 3, "more files were started than there are file threads"
    assert not report.errors
    # Every file started was finished and stored; none was left half-way.
    assert cli_json(home, "status")["acquisitions"] == {"stored": len(report.items)}
    assert_store_holds_exactly(home, {i.sha256 for i in report.items})
    (session,) = cli_json(home, "status")["docks"]
    assert (session["state"], session["files_new"]) == ("interrupted", len(report.items))
    # Docked again, the rest is taken.
    done = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json")
    assert done.exit_code == 0, done.stderr
    assert len(done.json()["items"]) == 12
    assert len(store_objects(home)) == 12
