"""The daemon's log says, in one INFO line a dock served, whose recorder it was, what its
files became, how long it took and where the session stands; ``run --once`` ends with the
counts of what it took. Two clips and a stray file in a watched folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import (
    OFFICER,
    OFFICER_ID,
    SERIAL,
    Clips,
    build_recorder,
    init_station,
    run_ingestd,
)

pytestmark = pytest.mark.integration

MEDIA = "DCIM/100MEDIA"


def docked_home(tmp_path: Path, clips: Clips, log: str) -> Path:
    home = init_station(tmp_path / "home", config=f'[docks]\nwatch_root = "docks"\n{log}',
                        register={SERIAL: (OFFICER, OFFICER_ID)})
    build_recorder(home / "docks" / SERIAL, {f"{MEDIA}/a.mp4": clips.a, f"{MEDIA}/b.mp4": clips.b,
                                             "notes.txt": b"not footage"})
    (home / "docks" / "BWC-UNKNOWN").mkdir()  # refused: no line for a dock not served
    return home


def test_one_info_line_a_dock_served_and_run_once_ends_with_counts(tmp_path: Path,
                                                                  clips: Clips) -> None:
    home = docked_home(tmp_path, clips, '[log]\nlevel = "INFO"\n')
    result = run_ingestd(home, "run", "--once")
    assert result.returncode == 0, result.stderr
    served = [line for line in result.stderr.splitlines() if " served in " in line]
    assert len(served) == 1, result.stderr
    assert re.search(rf"INFO .*recorder {SERIAL} \(officer {OFFICER_ID}\) served in "
                     r"[\d.]+ s: 2 new, 0 known, 1 skipped, 0 failed, [\d.]+ MiB copied; "
                     r"session \d+ done", served[0]), served[0]
    assert OFFICER not in served[0]  # the officer by id: names stay out of the log
    said = " ".join(result.stdout.split())
    assert re.search(rf"recorder {SERIAL}: done, 2 files: 2 new, 0 known, 1 not taken, "
                     r"0 failed \([\d.]+ [KM]iB copied\)", said), said
    assert "recorder BWC-UNKNOWN: refused: recorder BWC-UNKNOWN is not registered" in said
    assert re.search(r"served 2 recorders: 2 new, 0 known, 1 not taken, 0 failed "
                     r"\([\d.]+ [KM]iB copied\); 1 refused; every job ran", said), said

    again = run_ingestd(home, "run", "--once")
    served = [line for line in again.stderr.splitlines() if " served in " in line]
    assert len(served) == 1 and "0 new, 2 known" in served[0], again.stderr


def test_the_line_in_json_has_its_event_and_fields(tmp_path: Path, clips: Clips) -> None:
    home = docked_home(tmp_path, clips, '[log]\nformat = "json"\nlevel = "INFO"\n')
    result = run_ingestd(home, "run", "--once")
    assert result.returncode == 0, result.stderr
    docs = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    (served,) = [d for d in docs if d["event"] == "dock_served"]
    assert served["level"] == "info"
    assert {k: served[k] for k in ("serial", "officer_id", "state", "files_new", "files_known",
                                   "files_skipped", "files_failed", "wiped")} == {
        "serial": SERIAL, "officer_id": OFFICER_ID, "state": "done", "files_new": 2,
        "files_known": 0, "files_skipped": 1, "files_failed": 0, "wiped": 0}
    assert served["bytes"] > 5000 and served["seconds"] >= 0
