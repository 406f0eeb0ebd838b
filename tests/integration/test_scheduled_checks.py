"""The daemon checks its own history on schedule: ``ledger verify`` (with ``--offsite`` when
there are targets) and an off-site audit of a sample are jobs, each run is recorded, a failed
check is a failed run with what it found, and ``status`` shows the last of each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import catalog_execute, catalog_rows, flip_bit

from tests.integration.test_replicate import (
    PREFIX,
    Clip,
    Home,
    cli,
    clips,  # noqa: F401 - the session's clips fixture
    make_home,
    ok,
)

pytestmark = pytest.mark.integration


def nas_station(tmp_path: Path, clips: list[Clip]) -> tuple[Home, Path]:  # noqa: F811
    nas = tmp_path / "nas"
    nas.mkdir()
    home = make_home(tmp_path, clips)
    home.add_target(f'[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\n'
                    f'prefix = "{PREFIX}"\nsame_filesystem_ok = true\n')
    return home, nas


def runs(home: Path, job: str) -> list[dict[str, Any]]:
    return catalog_rows(home, "SELECT * FROM job_runs WHERE job = ? ORDER BY id", job)


def test_status_shows_the_last_ledger_check_and_audits(tmp_path: Path,
                                                       clips: list[Clip]) -> None:  # noqa: F811
    home, _ = nas_station(tmp_path, clips)
    before = ok(home.home, "status")["checks"]
    assert before == {"ledger": None, "audit": None, "audit_offsite": None}
    assert "last ledger check: never run" in cli(home.home, "status").stdout

    once = cli(home.home, "run", "--once")
    assert once.code == 0, once

    checks = ok(home.home, "status")["checks"]
    assert checks["ledger"]["ok"] is True and checks["ledger"]["job"] == "ledger-verify"
    assert "the ledger and the off-site checkpoints: intact" in checks["ledger"]["summary"]
    assert checks["audit"]["ok"] is True
    assert checks["audit_offsite"]["ok"] is True
    assert checks["audit_offsite"]["summary"].startswith("3 items re-read")
    assert [r["ok"] for r in runs(home.home, "ledger-verify")] == [1]
    text = " ".join(cli(home.home, "status").stdout.split())
    assert "last ledger check: ok at" in text and "last off-site audit: ok at" in text


def test_a_ledger_edited_behind_its_back_fails_the_scheduled_check(
        tmp_path: Path, clips: list[Clip]) -> None:  # noqa: F811
    home, _ = nas_station(tmp_path, clips)
    assert cli(home.home, "run", "--once").code == 0
    edited = catalog_execute(home.home, "UPDATE ledger SET actor = 'someone else' WHERE seq = "
                             "(SELECT MIN(seq) FROM ledger WHERE kind = 'stored')")
    assert edited == 1

    once = cli(home.home, "run", "--once")

    assert once.code == 1
    last = runs(home.home, "ledger-verify")[-1]
    assert last["ok"] == 0 and last["finished_at"]
    assert "problems in the ledger" in last["summary"] and "entry" in last["summary"]
    checks = ok(home.home, "status")["checks"]
    assert checks["ledger"]["ok"] is False and checks["ledger"]["summary"] == last["summary"]
    assert "last ledger check: FAILED" in " ".join(cli(home.home, "status").stdout.split())


def test_a_damaged_offsite_copy_fails_the_scheduled_offsite_audit(
        tmp_path: Path, clips: list[Clip]) -> None:  # noqa: F811
    home, nas = nas_station(tmp_path, clips)
    assert cli(home.home, "run", "--once").code == 0
    damaged = clips[1].sha256
    flip_bit(nas / PREFIX / "sha256" / damaged, 4000)

    once = cli(home.home, "run", "--once")

    assert once.code == 1
    last = runs(home.home, "audit-offsite")[-1]
    assert last["ok"] == 0 and damaged[:12] in last["summary"]
    checks = ok(home.home, "status")["checks"]
    assert checks["audit_offsite"]["ok"] is False
    assert checks["audit"]["ok"] is True, "the local copies are intact"
    assert "replica_mismatch" in home.flags(damaged)


def test_the_offsite_ledger_check_writes_nothing_to_a_target(tmp_path: Path,
                                                             clips: list[Clip]) -> None:  # noqa: F811
    # Verifying only reads: a folder never used as the target is not made one (no identity
    # file, no probe), so a share that is not mounted yet is not adopted by a check.
    home, nas = nas_station(tmp_path, clips)
    checked = cli(home.home, "ledger", "verify", "--offsite")
    assert checked.code == 0, checked
    assert list(nas.rglob("*")) == []
    assert catalog_rows(home.home, "SELECT * FROM target_identities") == []
