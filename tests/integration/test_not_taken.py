"""Nothing on a recorder hangs ingestd or is silently left behind: FIFOs (even one that takes a
file's place mid-ingest) are refused at once, and every file the walk does not take is counted
by kind in the dock session, listed by ``ingest`` and ``status``, and recorded in the ledger."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
from pathlib import Path

import pytest
from conftest import (
    SERIAL,
    Clips,
    build_recorder,
    cli_json,
    ledger_lines,
    open_station,
    run_cli,
    run_ingestd,
    sha256_of,
    store_objects,
)

from ingestd.docks.walk import MAX_DEPTH, SourceFile
from ingestd.usecases.ingest import SKIPPED_LISTED, Ingestor, IngestReport
from tests.support import catalog

pytestmark = pytest.mark.integration

MEDIA = "DCIM/100MEDIA"
FIFO_REFUSED = "FIFO (named pipe), not a regular file"


def release(fifo: Path) -> None:
    """Should a reader be blocked on ``fifo`` after all, a writer that comes and goes frees it
    (so that a failing test fails instead of hanging the suite)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


# -- FIFOs -------------------------------------------------------------------------------------


def test_a_file_replaced_by_a_fifo_between_walk_and_open_is_refused_not_waited_for(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a,
                                            f"{MEDIA}/B.MP4": clips.b,
                                            f"{MEDIA}/C.MP4": clips.c})
    swapped = rec / MEDIA / "B.MP4"

    def progress(event: str, src: SourceFile | None, _n: int) -> None:
        # The walk has seen B.MP4 as a regular file; now, just before it is opened, a FIFO
        # takes its place.
        if event == "file" and src is not None and src.display.endswith("B.MP4"):
            swapped.unlink()
            os.mkfifo(swapped)

    station = open_station(home)
    done: list[IngestReport] = []
    worker = threading.Thread(target=lambda: done.append(Ingestor(station).ingest(
        rec, serial=SERIAL, progress=progress)), daemon=True)
    worker.start()
    worker.join(60)
    if worker.is_alive():
        release(swapped)
        worker.join(30)
        pytest.fail("ingest blocked on a FIFO")
    (report,) = done

    assert report.state == "done"
    (error,) = report.errors
    assert error["path"] == f"{MEDIA}/B.MP4"
    assert FIFO_REFUSED in error["error"] and "not read" in error["error"]
    # The other files were taken as ever; the FIFO's acquisition failed with its reason.
    assert {i.path: i.sha256 for i in report.items} == {
        f"{MEDIA}/A.MP4": clips.a.sha256, f"{MEDIA}/C.MP4": clips.c.sha256}
    assert set(store_objects(home)) == {clips.a.sha256, clips.c.sha256}
    (acq,) = catalog.acquisitions(home, path=f"{MEDIA}/B.MP4")
    assert acq["state"] == "failed" and FIFO_REFUSED in acq["error"]

    # The recording is back in its place at the next dock: it is taken then.
    swapped.unlink()
    build_recorder(rec, {f"{MEDIA}/B.MP4": clips.b})
    again = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json")
    assert again.exit_code == 0, again.stderr
    assert {i["path"]: i["new"] for i in again.json()["items"]} == {
        f"{MEDIA}/A.MP4": False, f"{MEDIA}/B.MP4": True, f"{MEDIA}/C.MP4": False}
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_verify_of_a_fifo_answers_at_once_and_still_checks_the_other_files(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    fifo = tmp_path / "export.mp4"
    os.mkfifo(fifo)
    try:
        # The installed command in its own process, with a timeout: a hang fails the test.
        result = run_ingestd(home, "verify", fifo, rec / MEDIA / "A.MP4", "--json", timeout=60)
    finally:
        release(fifo)
    assert result.returncode == 1, result.stderr
    refused, matched = json.loads(result.stdout)["results"]
    assert refused["match"] is False
    (problem,) = refused["problems"]
    assert FIFO_REFUSED in problem and "export.mp4" in problem
    assert matched["match"] is True and matched["sha256"] == clips.a.sha256

    text = run_ingestd(home, "verify", fifo, timeout=60)
    assert text.returncode == 1
    assert "NO MATCH" in text.stdout and "not a regular file" in text.stdout


# -- what the walk does not take ---------------------------------------------------------------


def strange_recorder(root: Path, clips: Clips) -> tuple[Path, dict[str, str]]:
    """A recorder holding one clip and one of everything that is not taken. Returns the folder
    and {shown path: kind} of what is not taken."""
    deep = "/".join(f"L{n}" for n in range(MAX_DEPTH + 1))
    rec = build_recorder(root, {
        f"{MEDIA}/A.MP4": clips.a,
        f"{MEDIA}/B.MP5": clips.b,  # footage under an extension no pattern knows
        "SYSTEM/log.txt": b"battery 80%\n",
        b"DCIM/odd\nname.txt": b"?",
        f"{deep}/LOST.MP4": clips.c,
    })
    os.mkfifo(rec / MEDIA / "PIPE.MP4")
    (rec / MEDIA / "LINK.MP4").symlink_to(rec / MEDIA / "A.MP4")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(rec / "SYSTEM" / "ctl.sock"))
    os.mknod(rec / "SYSTEM" / "tty.MP4", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    not_taken = {
        f"{MEDIA}/B.MP5": "unmatched", "SYSTEM/log.txt": "unmatched",
        "DCIM/odd\\nname.txt": "unmatched", f"{MEDIA}/PIPE.MP4": "fifo",
        f"{MEDIA}/LINK.MP4": "symlink", "SYSTEM/ctl.sock": "socket", "SYSTEM/tty.MP4": "device",
        "/".join(deep.split("/")[:MAX_DEPTH + 1]): "too_deep",
    }
    return rec, not_taken


@pytest.mark.root
def test_every_file_not_taken_is_counted_listed_shown_and_recorded(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    rec, not_taken = strange_recorder(tmp_path / "rec", clips)
    expected_kinds = {"device": 1, "fifo": 1, "socket": 1, "symlink": 1, "too_deep": 1,
                      "unmatched": 3}

    result = run_ingestd(home, "ingest", rec, "--serial", SERIAL, "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [i["path"] for i in report["items"]] == [f"{MEDIA}/A.MP4"]
    assert report["errors"] == []
    assert {s["path"]: s["kind"] for s in report["skipped"]} == not_taken
    assert all(s["reason"] for s in report["skipped"])
    assert report["skipped_by_kind"] == expected_kinds
    # Nothing on the recorder was lost or touched: the clip is stored, the rest left in place.
    assert set(store_objects(home)) == {clips.a.sha256}
    assert sha256_of(rec / MEDIA / "B.MP5") == clips.b.sha256

    # The dock session counts them by kind, and status shows it.
    (session,) = cli_json(home, "status")["docks"]
    assert session["files_skipped"] == len(not_taken)
    assert session["skipped"] == expected_kinds
    text = run_cli(home, "status").stdout
    assert f"{len(not_taken)} files not taken" in text
    assert "unmatched 3" in text and "fifo 1" in text and "too_deep 1" in text

    # And the ledger says so, in the session's entries, with the paths escaped.
    (entry,) = ledger_lines(home, "skipped")
    assert entry["data"]["session"] == session["id"]
    assert entry["data"]["serial"] == SERIAL
    assert entry["data"]["count"] == len(not_taken)
    assert entry["data"]["by_kind"] == expected_kinds
    assert {p["path"]: p["kind"] for p in entry["data"]["paths"]} == not_taken
    assert entry["data"]["unlisted"] == 0
    assert run_cli(home, "ledger", "verify").exit_code == 0

    # The text report of `ingest` lists each one.
    again = run_cli(home, "ingest", rec, "--serial", SERIAL)
    assert again.exit_code == 0, again.stderr
    assert f"{len(not_taken)} not taken" in again.stdout
    assert "not taken SYSTEM/log.txt: name matches no configured pattern" in again.stdout
    assert "DCIM/odd\\nname.txt" in again.stdout


def test_the_skipped_entry_stays_bounded_while_every_file_is_counted(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    stray = SKIPPED_LISTED + 50
    rec = build_recorder(tmp_path / "rec", {
        f"{MEDIA}/A.MP4": clips.a, **{f"LOGS/{n:04}.log": b"x" for n in range(stray)}})
    report = Ingestor(open_station(home)).ingest(rec, serial=SERIAL)
    assert len(report.skipped) == stray
    assert report.skipped_by_kind() == {"unmatched": stray}
    (entry,) = ledger_lines(home, "skipped")
    assert entry["data"]["count"] == stray
    assert len(entry["data"]["paths"]) == SKIPPED_LISTED
    assert entry["data"]["unlisted"] == 50
    assert entry["data"]["paths"][0] == {"path": "LOGS/0000.log", "kind": "unmatched"}
    (session,) = cli_json(home, "status")["docks"]
    assert session["files_skipped"] == stray


def test_the_log_counts_what_was_not_taken_as_people_write_it(
        home: Path, tmp_path: Path, clips: Clips, caplog: pytest.LogCaptureFixture) -> None:
    for count in (1, 2):
        rec = build_recorder(tmp_path / f"rec{count}", {
            f"{MEDIA}/A.MP4": clips.a, **{f"LOGS/{n}.log": b"x" for n in range(count)}})
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ingestd.usecases.ingest"):
            Ingestor(open_station(home)).ingest(rec, serial=SERIAL)
        said = [r.getMessage() for r in caplog.records
                if getattr(r, "event", None) == "files_skipped"]
        assert said == [f"recorder {SERIAL}: {count} file{'s' * (count > 1)} not taken "
                        f"(unmatched {count})"], said
        assert all(r.levelno == logging.WARNING for r in caplog.records
                   if getattr(r, "event", None) == "files_skipped")
        assert (rec / f"LOGS/{count - 1}.log").read_bytes() == b"x", "left on the recorder"


def test_a_recorder_with_nothing_left_behind_records_no_skipped_entry(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    report = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json").json()
    assert report["skipped"] == [] and report["skipped_by_kind"] == {}
    assert ledger_lines(home, "skipped") == []
    (dock,) = run_cli(home, "status", "--json").json()["docks"]
    assert dock["files_skipped"] == 0 and dock["skipped"] == {}


def test_the_recorders_own_identity_file_is_not_counted_as_left_behind(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    # RECORDER.ID names the recorder (ingestd reads it); the same name deeper down, or any
    # other stray file, is still counted.
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a,
                                            "RECORDER.ID": f"{SERIAL}\n".encode(),
                                            "SYSTEM/RECORDER.ID": b"x"})
    report = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json").json()
    assert [s["path"] for s in report["skipped"]] == ["SYSTEM/RECORDER.ID"]
    assert report["skipped_by_kind"] == {"unmatched": 1}


def test_a_home_from_before_the_count_migrates_with_nothing_lost(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    from alembic import command

    from ingestd.catalog.db import _alembic_config

    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a, "SYSTEM/log.txt": b"x"})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    url = f"sqlite:///{home / 'catalog.sqlite'}"
    command.downgrade(_alembic_config(url), "0002")  # the catalog as the last release left it
    before = catalog.raw_rows(home, "SELECT * FROM dock_sessions")
    assert "files_skipped" not in before[0]
    refused = run_cli(home, "status")
    assert refused.exit_code == 4 and "ingestd init" in refused.stderr

    assert run_cli(home, "init").exit_code == 0
    (after,) = catalog.raw_rows(home, "SELECT * FROM dock_sessions")
    new_columns = ("files_skipped", "skipped", "actor")  # actor: who ran a manual ingest
    assert {k: v for k, v in after.items() if k not in new_columns} == before[0]
    assert after["files_skipped"] == 0 and after["skipped"] == "{}"
    assert run_cli(home, "ledger", "verify").exit_code == 0
    (dock,) = run_cli(home, "status", "--json").json()["docks"]
    assert dock["files_skipped"] == 0 and dock["skipped"] == {}
    again = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json").json()
    assert again["skipped_by_kind"] == {"unmatched": 1}
    assert [i["sha256"] for i in again["items"]] == [clips.a.sha256]
