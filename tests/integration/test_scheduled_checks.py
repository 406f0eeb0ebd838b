"""The daemon checks its own history on schedule: ``ledger verify`` (with ``--offsite`` when
there are targets) and an off-site audit of a sample are jobs, each run is recorded, a failed
check is a failed run with what it found, and ``status`` shows the last of each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import ClipFile, cli_json, ledger_lines, run_cli

from tests.integration.test_replicate import (
    PREFIX,
    Home,
    clips,  # noqa: F401 - the session's clips fixture
    make_home,
)
from tests.support import catalog
from tests.support.damage import flip_bit

pytestmark = pytest.mark.integration


def nas_station(tmp_path: Path, clips: list[ClipFile]) -> tuple[Home, Path]:  # noqa: F811
    nas = tmp_path / "nas"
    nas.mkdir()
    home = make_home(tmp_path, clips)
    home.add_target(f'[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\n'
                    f'prefix = "{PREFIX}"\nsame_filesystem_ok = true\n')
    return home, nas


def runs(home: Path, job: str) -> list[dict[str, Any]]:
    return catalog.job_runs(home, job)


def test_status_shows_the_last_ledger_check_and_audits(tmp_path: Path,
                                                       clips: list[ClipFile]) -> None:  # noqa: F811
    home, _ = nas_station(tmp_path, clips)
    before = cli_json(home.home, "status")["checks"]
    assert before == {"ledger": None, "audit": None, "audit_offsite": None}
    assert "last ledger check: never run" in run_cli(home.home, "status").stdout

    once = run_cli(home.home, "run", "--once")
    assert once.exit_code == 0, once

    checks = cli_json(home.home, "status")["checks"]
    assert checks["ledger"]["ok"] is True and checks["ledger"]["job"] == "ledger-verify"
    assert "the ledger and the off-site checkpoints: intact" in checks["ledger"]["summary"]
    assert checks["audit"]["ok"] is True
    assert checks["audit_offsite"]["ok"] is True
    assert checks["audit_offsite"]["summary"].startswith("3 items re-read")
    assert [r["ok"] for r in runs(home.home, "ledger-verify")] == [1]
    text = " ".join(run_cli(home.home, "status").stdout.split())
    assert "last ledger check: ok at" in text and "last off-site audit: ok at" in text


def test_a_ledger_edited_behind_its_back_fails_the_scheduled_check(
        tmp_path: Path, clips: list[ClipFile]) -> None:  # noqa: F811
    home, _ = nas_station(tmp_path, clips)
    assert run_cli(home.home, "run", "--once").exit_code == 0
    first_stored = ledger_lines(home.home, "stored")[0]["seq"]
    assert catalog.forge_entry(home.home, first_stored, actor="someone else") == 1

    once = run_cli(home.home, "run", "--once")

    assert once.exit_code == 1
    last = runs(home.home, "ledger-verify")[-1]
    assert last["ok"] == 0 and last["finished_at"]
    assert "problems in the ledger" in last["summary"] and "entry" in last["summary"]
    checks = cli_json(home.home, "status")["checks"]
    assert checks["ledger"]["ok"] is False and checks["ledger"]["summary"] == last["summary"]
    assert "last ledger check: FAILED" in " ".join(run_cli(home.home, "status").stdout.split())


def test_a_damaged_offsite_copy_fails_the_scheduled_offsite_audit(
        tmp_path: Path, clips: list[ClipFile]) -> None:  # noqa: F811
    home, nas = nas_station(tmp_path, clips)
    assert run_cli(home.home, "run", "--once").exit_code == 0
    damaged = clips[1].sha256
    flip_bit(nas / PREFIX / "sha256" / damaged, 4000)

    once = run_cli(home.home, "run", "--once")

    assert once.exit_code == 1
    last = runs(home.home, "audit-offsite")[-1]
    assert last["ok"] == 0 and damaged[:12] in last["summary"]
    checks = cli_json(home.home, "status")["checks"]
    assert checks["audit_offsite"]["ok"] is False
    assert checks["audit"]["ok"] is True, "the local copies are intact"
    assert "replica_mismatch" in home.flags(damaged)


def test_the_offsite_ledger_check_writes_nothing_to_a_target(tmp_path: Path,
                                                             clips: list[ClipFile]) -> None:  # noqa: F811
    # Verifying only reads: a folder never used as the target is not made one (no identity
    # file, no probe), so a share that is not mounted yet is not adopted by a check.
    home, nas = nas_station(tmp_path, clips)
    checked = run_cli(home.home, "ledger", "verify", "--offsite")
    assert checked.exit_code == 0, checked
    assert list(nas.rglob("*")) == []
    assert catalog.target_identities(home.home) == {"nas": None}
