"""``scripts/soak``: CI's three-minute version, and the checker's own proofs on a prepared home.

The soak runs a real daemon under docks, kills, S3 outages and a full store, and then proves
what a station relies on (``scripts/soak.py``). Here: a three-minute run exits 0 and says, in
its JSON, that every proof held; and each proof that reads a home fails when what it proves is
not so (a file on a recorder that no item stores, a temporary file left in the store, memory
that grew), so that a soak that passes means something.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from conftest import init_station, make_test_clip, run_ingestd

from ingestd.station import system_clock

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SOAK = REPO / "scripts" / "soak.py"
SERIAL = "BWC-SOAK"
#: The proofs every run prints; the full-store one too where a loop device can be made.
PROOFS = {
    "every file stored exactly once or accounted for",
    "ledger verified",
    "every replica verified",
    "no temporary files",
    "no alert left firing that should have resolved",
    "memory flat",
    "page, /api/status and /metrics answered",
    "the daemon stopped and started as told",
}
FULL_STORE = "a full store refuses, keeps the evidence on the recorder, recovers"


@pytest.fixture(scope="module")
def soak() -> Iterator[ModuleType]:
    sys.path.insert(0, str(SOAK.parent))
    try:
        import soak as module
    finally:
        sys.path.remove(str(SOAK.parent))
    yield module


def test_a_three_minute_soak_holds_every_proof(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INGESTD_", "AWS_"))}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, str(SOAK), "--minutes", "3", "--seed", "13", "--json",
         "--work", str(tmp_path / "soak")],
        capture_output=True, text=True, timeout=600, env=env, check=False)
    assert proc.stdout, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    failed = [f"{p['name']}: {p['problems']}" for p in report["proofs"] if not p["held"]]
    assert proc.returncode == 0 and not failed, "\n".join(failed) + proc.stderr[-3000:]
    names = {p["name"] for p in report["proofs"]}
    assert PROOFS <= names
    if os.geteuid() == 0:
        assert FULL_STORE in names  # root: the store was on a loop device, and filled
    run = report["run"]
    assert run["docks"]["good"] and run["docks"]["hostile"] and run["docks"]["pulled"]
    assert run["signals"]["SIGKILL"] + run["signals"]["SIGTERM"] >= 2
    assert run["s3_stops"] >= 1 and run["items"] > 0
    assert not (tmp_path / "soak").exists()  # the work folder goes unless --keep


@pytest.fixture
def ingested(tmp_path: Path) -> tuple[Path, Path]:
    """A home that ingested a recorder of two clips and a device file: (home, recorder)."""
    home = init_station(tmp_path / "home", config="", clock=system_clock,
                        register={SERIAL: ("Zhao Lei", "PS-0100")})
    folder = tmp_path / "recorder" / SERIAL
    recorded = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    for n in range(2):
        make_test_clip(folder / "DCIM" / f"CLIP{n}.MP4", seconds=1,
                       recorded=recorded + timedelta(minutes=n))
    (folder / "SYSTEM").mkdir()
    (folder / "SYSTEM" / "DEVICE.TXT").write_text(f"serial={SERIAL}\n", encoding="ascii")
    result = run_ingestd(home, "ingest", folder, "--serial", SERIAL)
    assert result.returncode == 0, result.stderr
    return home, folder


def test_the_file_proof_holds_on_an_ingested_recorder_and_names_a_file_not_stored(
        soak: ModuleType, ingested: tuple[Path, Path]) -> None:
    home, folder = ingested
    proof = soak.prove_files(home, home / "store", soak.recorder_facts(folder, SERIAL))
    assert proof.held, proof.problems
    assert "2 stored once" in proof.detail

    make_test_clip(folder / "DCIM" / "LATE.MP4", seconds=1, recorded=None)
    proof = soak.prove_files(home, home / "store", soak.recorder_facts(folder, SERIAL))
    assert not proof.held
    assert proof.problems == [f"{SERIAL}/DCIM/LATE.MP4 (file): neither stored nor accounted "
                              "for (no acquisition)"]


def test_the_file_proof_fails_when_an_item_is_gone_from_the_store(
        soak: ModuleType, ingested: tuple[Path, Path]) -> None:
    home, folder = ingested
    facts = soak.recorder_facts(folder, SERIAL)
    victim = next(f for f in facts if f.rel.endswith(b"CLIP0.MP4"))
    obj = next((home / "store" / "objects").rglob(victim.sha256))
    obj.chmod(0o600)
    obj.unlink()
    proof = soak.prove_files(home, home / "store", facts)
    assert not proof.held
    assert proof.problems == [f"{SERIAL}/DCIM/CLIP0.MP4: 0 objects in the store for "
                              f"{victim.sha256[:12]} (one expected)"]


def test_the_temp_proof_fails_on_a_stray_temporary_file(
        soak: ModuleType, ingested: tuple[Path, Path]) -> None:
    home, _ = ingested
    assert soak.prove_no_temp(home, home / "store").held
    stray = home / "store" / "tmp" / "abc.partial"
    stray.write_bytes(b"half")
    proof = soak.prove_no_temp(home, home / "store")
    assert not proof.held
    assert proof.problems == [f"temporary file left: {stray}"]


def test_the_memory_proof_fails_when_the_daemon_grows(soak: ModuleType) -> None:
    mib = 2**20
    flat = [(float(t), 150 * mib + (t % 3) * mib) for t in range(0, 180, 2)]
    assert soak.prove_memory(flat, 60.0).held
    growing = [(float(t), 150 * mib + t * mib) for t in range(0, 180, 2)]
    proof = soak.prove_memory(growing, 60.0)
    assert not proof.held
    assert proof.problems[0].startswith("the daemon grew: median RSS")


def test_a_recorder_refused_for_room_is_docked_again_once_its_dock_has_ended(
        soak: ModuleType, ingested: tuple[Path, Path], tmp_path: Path) -> None:
    """Even one refused just as the store was freed: found on a later look, docked again once
    its dock has ended, and only once for each refusal."""
    home, folder = ingested
    with sqlite3.connect(home / "catalog.sqlite") as con:
        con.execute("UPDATE acquisitions SET state = 'failed', error = 'evidence store "
                    "/x is full (No space left on device); nothing partial was kept' "
                    "WHERE id = (SELECT min(id) FROM acquisitions)")
    feeder = soak.Feeder(home, tmp_path / "work", random.Random(1))
    rec = soak.Recorder(serial=SERIAL, kind="good", folder=folder)
    feeder.recorders.append(rec)
    feeder.docked.append(rec)  # its dock still running

    assert feeder.redock_refused(served_only=True) == 0, "not while its dock runs"
    feeder._put_away(rec)
    assert feeder.redock_refused(served_only=True) == 1
    assert rec.folder == home / "docks" / SERIAL and rec in feeder.docked
    assert feeder.redock_refused(served_only=True) == 0, "that refusal was handled"
