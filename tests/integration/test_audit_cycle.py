"""Audit cycles from the command line: ``audit --coverage --json`` shows, per store and per
target, the oldest proof and the copies past their cycle; the scheduled audit flags such a
copy ``audit_overdue`` and re-hashes it, each result an ``audited`` entry. Run for real under
libfaketime, which moves the clock of one command on."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import INGESTD, ClipFile, cli_json, run_cli, subprocess_env

from tests.integration.test_replicate import (
    PREFIX,
    clips,  # noqa: F401 - the session's clips fixture
    make_home,
)
from tests.support import catalog
from tests.support.damage import flip_bit

pytestmark = pytest.mark.integration

CYCLES = '\n[audit]\ncycle = "30d"\noffsite_cycle = "365d"\n'


def later(home: Path, offset: str, *args: object) -> subprocess.CompletedProcess[str]:
    """``ingestd ARGS`` with its clock moved by ``offset`` (libfaketime, e.g. ``+31d``)."""
    faketime = shutil.which("faketime")
    if faketime is None:
        pytest.fail("faketime is needed (Debian package faketime; scripts/setup --test)")
    return subprocess.run([faketime, "-f", offset, str(INGESTD), "--home", str(home),
                           *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=subprocess_env(), check=False)


def flags(home: Path, sha: str) -> set[str]:
    return {f["flag"] for f in cli_json(home, "show", sha)["flags"]}


def by_place(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["store"] or f"target:{c['target']}": c for c in answer["coverage"]}


def test_coverage_shows_the_oldest_proof_and_the_job_flags_what_is_past_its_cycle(
        tmp_path: Path, clips: list[ClipFile]) -> None:  # noqa: F811
    home = make_home(tmp_path, clips[:3], config=CYCLES)
    stored = catalog.raw_rows(home.home, "SELECT stored_at FROM items")
    first_stored = min(r["stored_at"] for r in stored)

    now = cli_json(home.home, "audit", "--coverage")["coverage"]
    assert now == [{
        "store": "station-01", "target": None, "cycle_seconds": 30 * 86400, "copies": 3,
        "never_proven": 3, "oldest_proof": first_stored, "overdue": 0}]

    # 31 days on, nobody audited: every local copy is past its 30-day cycle
    looked = later(home.home, "+31d", "audit", "--coverage", "--json")
    assert looked.returncode == 1, looked  # a copy past its cycle is a finding
    late = by_place(json.loads(looked.stdout))
    assert (late["station-01"]["overdue"], late["station-01"]["copies"]) == (3, 3)
    # looking flags nothing: the scheduled audit does
    assert all("audit_overdue" not in flags(home.home, sha) for sha in home.shas)

    ran = later(home.home, "+31d", "run", "--once")
    assert ran.returncode == 0, ran.stderr
    for sha in home.shas:
        shown = cli_json(home.home, "show", sha)
        assert "audit_overdue" in {f["flag"] for f in shown["flags"]}
        flagged = [e for e in shown["history"] if e["kind"] == "flagged"
                   and e["data"]["flag"] == "audit_overdue"]
        assert len(flagged) == 1 and "past its audit cycle (30d)" in flagged[0]["data"]["detail"]
        audited = [e for e in shown["history"] if e["kind"] == "audited"]
        assert [e["data"]["fixity"] for e in audited] == ["ok"]
    runs = catalog.job_runs(home.home, "audit")
    assert runs[-1]["ok"] and "3 copies past their cycle (flagged)" in runs[-1]["summary"]
    after = by_place(json.loads(later(home.home, "+31d", "audit", "--coverage",
                                      "--json").stdout))
    assert after["station-01"]["overdue"] == 0 and after["station-01"]["never_proven"] == 0
    assert after["station-01"]["oldest_proof"] > first_stored

    # with a target: its copies are counted from their read-back, on their own cycle
    nas = tmp_path / "nas"
    nas.mkdir()
    home.add_target(f'[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\n'
                    f'prefix = "{PREFIX}"\nsame_filesystem_ok = true\n')
    assert later(home.home, "+32d", "run", "--once").returncode == 0
    sent = by_place(json.loads(later(home.home, "+32d", "audit", "--coverage",
                                     "--json").stdout))
    assert sent["target:nas"] == {**sent["target:nas"], "copies": 3, "never_proven": 0,
                                  "overdue": 0, "cycle_seconds": 365 * 86400}
    year = later(home.home, "+400d", "audit", "--coverage", "--json")
    assert year.returncode == 1
    # (the local copies, proven off-site, may have left the store by then)
    assert by_place(json.loads(year.stdout))["target:nas"]["overdue"] == 3
    assert later(home.home, "+32d", "ledger", "verify", "--json").returncode == 0


def test_a_flipped_bit_on_disk_is_caught_by_the_cycle(
        tmp_path: Path, clips: list[ClipFile]) -> None:  # noqa: F811
    home = make_home(tmp_path, clips[:3], config=CYCLES + "[scheduler]\naudit_sample = 1\n")
    victim = home.shas[1]
    flip_bit(home.home / "store" / "objects" / "sha256" / victim[:2] / victim[2:4] / victim,
             500)

    # Three runs of the cycle, one item each (3 items, 6 h runs, a 30 d cycle, at least 1):
    # the damaged copy is found in its turn, and that run and every one after it fail.
    outcomes = [later(home.home, f"+{day}d", "run", "--once").returncode for day in (1, 2, 3)]
    runs = catalog.job_runs(home.home, "audit")
    assert [r["ok"] for r in runs] == [code == 0 for code in outcomes]
    assert outcomes[-1] == 1 and sorted(outcomes) == outcomes  # found, and failing since
    assert "1 of 2 items failed their fixity check" in runs[-1]["summary"] or (
        "1 of 1 items failed their fixity check" in runs[-1]["summary"])
    assert "fixity_failed" in flags(home.home, victim)
    assert all("fixity_failed" not in flags(home.home, sha) for sha in home.shas if sha != victim)
    # each item was re-hashed in the cycle, each result its entry
    audited = {e["item"] for e in catalog.ledger_entries(home.home, "audited")}
    assert set(home.shas) <= audited


def test_coverage_is_alone_or_with_json(tmp_path: Path,
                                        clips: list[ClipFile]) -> None:  # noqa: F811
    home = make_home(tmp_path, clips[:1])
    done = run_cli(home.home, "audit", "--coverage", "--all")
    assert done.exit_code != 0 and "--coverage" in done.stderr
    text = run_cli(home.home, "audit", "--coverage")
    assert text.exit_code == 0 and "store station-01: 1 copy (1 never proven)" in text.stdout
