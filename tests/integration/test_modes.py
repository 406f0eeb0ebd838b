"""A home holds party names, case numbers and footage: no file or folder of it is for other
users, whatever the umask of whoever made it."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import OFFICER, OFFICER_ID, SERIAL, Clips, build_recorder, init_station, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def open_to_others(home: Path) -> list[str]:
    """Every entry of ``home`` (itself included) with a bit for other users."""
    found = []
    for path in [home, *home.rglob("*")]:
        st = os.lstat(path)
        if stat.S_IMODE(st.st_mode) & 0o007:
            found.append(f"{path.relative_to(home)} {stat.S_IMODE(st.st_mode):04o}")
    return found


@pytest.mark.parametrize("umask", [0o000, 0o022], indirect=True, ids=["000", "022"])
def test_nothing_in_a_home_is_open_to_other_users(umask: int, tmp_path: Path,
                                                    clips: Clips) -> None:
    home = init_station(tmp_path / "stations" / "home",
                        register={SERIAL: (OFFICER, OFFICER_ID)})
    rec = build_recorder(tmp_path / "rec", {"DCIM/a.mp4": clips.a, "DCIM/b.mp4": clips.b})
    result = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json")
    assert result.exit_code == 0, result.stderr
    assert run_cli(home, "label", clips.a.sha256[:12], "--case", "C-1",
                   "--party", "Li Si").exit_code == 0
    # The files that matter are really there and looked at.
    names = {p.name for p in home.rglob("*")}
    assert {"catalog.sqlite", "ledger.jsonl", "ingestd.toml", "station.key", "logs",
            clips.a.sha256, clips.b.sha256} <= names
    assert open_to_others(home) == []
    assert stat.S_IMODE((home / "catalog.sqlite").stat().st_mode) in (0o600, 0o640)
    assert stat.S_IMODE(home.stat().st_mode) in (0o700, 0o750)


def test_init_closes_an_existing_home_to_other_users(tmp_path: Path, clips: Clips) -> None:
    home = init_station(tmp_path / "home", register={SERIAL: (OFFICER, OFFICER_ID)})
    rec = build_recorder(tmp_path / "rec", {"DCIM/a.mp4": clips.a})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    # As a home made under umask 022 by an older ingestd, or by hand, looks.
    for path in [home, *home.rglob("*")]:
        if path.is_dir() and path.name != "keys":
            path.chmod(0o755)
        elif path.is_file() and path.parent.name != "keys" and not \
                stat.S_IMODE(path.stat().st_mode) == 0o440:
            path.chmod(0o644)
    assert open_to_others(home)
    result = run_cli(home, "init")
    assert result.exit_code == 0, result.stderr
    assert open_to_others(home) == []
    # Nothing was lost: the item is still there, intact, and the ledger verifies.
    assert run_cli(home, "verify", clips.a.path).exit_code == 0
    verify = run_cli(home, "ledger", "verify", "--json")
    assert verify.exit_code == 0, verify.stdout
