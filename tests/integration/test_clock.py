"""A station clock set back (by hand, a dead clock battery, a wrong time server) never dates a
ledger entry before the one it follows: entries take the later of the clock and the ledger's
last time, so a late dock is still late and a label is never older than its item; the log says
so as an alarm. Run for real under libfaketime, which sets the clock of one command back."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import (
    INGESTD,
    OFFICER,
    OFFICER_ID,
    SERIAL,
    Clips,
    build_recorder,
    init_station,
    ledger_lines,
    run_ingestd,
    subprocess_env,
)

from ingestd.domain.canonical import parse_time

pytestmark = pytest.mark.integration

MEDIA = "DCIM/100MEDIA"


def faked(home: Path, offset: str, *args: object) -> subprocess.CompletedProcess[str]:
    """``ingestd ARGS`` with its clock moved by ``offset`` (libfaketime, e.g. ``-10h``)."""
    faketime = shutil.which("faketime")
    if faketime is None:
        pytest.fail("faketime is needed (Debian package faketime; scripts/setup --test)")
    return subprocess.run([faketime, "-f", offset, str(INGESTD), "--home", str(home),
                           *map(str, args)], capture_output=True, text=True, timeout=120,
                          env=subprocess_env(), check=False)



def test_a_clock_a_little_behind_dates_no_entry_before_the_ledger(
        tmp_path: Path, clips: Clips) -> None:
    home = init_station(tmp_path / "home", register={SERIAL: (OFFICER, OFFICER_ID)})
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    assert run_ingestd(home, "ingest", rec, "--serial", SERIAL).returncode == 0
    stored = next(e for e in ledger_lines(home) if e["kind"] == "stored")

    done = faked(home, "-5m", "label", clips.a.sha256[:12], "--case", "C-1", "--party", "Li")
    assert done.returncode == 0, done.stderr
    assert "ALARM" in done.stderr and "clock" in done.stderr, done.stderr
    labelled = ledger_lines(home)[-1]
    assert labelled["kind"] == "labelled"
    assert parse_time(labelled["at"]) >= parse_time(stored["at"])
    shown = json.loads(run_ingestd(home, "show", clips.a.sha256, "--json").stdout)
    assert shown["labels"][0]["at"] >= shown["record"]["stored_at"]
    times = [parse_time(e["at"]) for e in ledger_lines(home)]
    assert times == sorted(times), "every entry at or after the one before it"
    verified = run_ingestd(home, "ledger", "verify", "--json")
    assert verified.returncode == 0, verified.stdout


def test_a_clock_set_back_writes_nothing(tmp_path: Path, clips: Clips) -> None:
    home = init_station(tmp_path / "home", register={SERIAL: (OFFICER, OFFICER_ID)})
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    assert run_ingestd(home, "ingest", rec, "--serial", SERIAL).returncode == 0
    before = ledger_lines(home)
    done = faked(home, "-400d", "label", clips.a.sha256[:12], "--case", "C-1", "--party", "Li")
    assert done.returncode == 7, done.stderr
    assert "ALARM" in done.stderr and "Set the clock right" in done.stderr, done.stderr
    assert ledger_lines(home) == before, "nothing written under a clock set back"
    assert run_ingestd(home, "ledger", "verify").returncode == 0


def test_a_late_dock_under_a_clock_set_back_is_not_taken_as_on_time(
        tmp_path: Path, clips: Clips) -> None:
    # Recorded 12 h ago, due within 6 h: late. A clock set back 10 h would make it look on
    # time (2 h after the recording), but the ledger already holds entries of today.
    home = init_station(tmp_path / "home", config='[windows]\ningest = "6h"\n')
    added = run_ingestd(home, "devices", "add", SERIAL, "--officer", OFFICER, "--officer-id",
                        OFFICER_ID)  # today, on the station's true clock
    assert added.returncode == 0, added.stderr
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    refused = faked(home, "-10h", "ingest", rec, "--serial", SERIAL, "--json")
    assert refused.returncode == 7, refused.stdout
    assert json.loads(refused.stdout)["error"]["type"] == "IntegrityError"
    assert not [e for e in ledger_lines(home) if e["kind"] == "stored"]
    assert (rec / MEDIA / "A.MP4").is_file()  # the recorder keeps it until the clock is right

    done = faked(home, "-2m", "ingest", rec, "--serial", SERIAL, "--json")  # a little slow
    assert done.returncode == 0, done.stderr
    [item] = json.loads(done.stdout)["items"]
    assert "late_ingest" in item["flags"]
    assert "clock_skew" not in item["flags"]  # the recording is not in the station's future
    times = [parse_time(e["at"]) for e in ledger_lines(home)]
    assert times == sorted(times)
    assert run_ingestd(home, "ledger", "verify").returncode == 0
