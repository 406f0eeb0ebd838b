"""``simulate-recorder`` on a station that also serves real recorders: generated clips never land
in a real recorder's folder, where they would be taken as its officer's evidence."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import init_station, run_cli

pytestmark = pytest.mark.integration

REAL = "BWC-7001"


def _home(tmp_path: Path) -> Path:
    return init_station(tmp_path / "home", config='[docks]\nwatch_root = "docks"\n',
                        register={REAL: ("Ana Silva", "P-4411")})


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_serial_registered_to_a_real_officer_is_refused_and_nothing_written(
        tmp_path: Path) -> None:
    home = _home(tmp_path)
    docks = home / "docks"
    # The real recorder is docked: its folder holds its own clip.
    (docks / REAL / "DCIM" / "100MEDIA").mkdir(parents=True)
    (docks / REAL / "DCIM" / "100MEDIA" / "0001.MP4").write_bytes(b"the officer's own clip")
    before = _tree(docks)
    ledger_before = (home / "ledger.jsonl").read_text(encoding="utf-8")

    result = run_cli(home, "simulate-recorder", REAL, "--clips", "1")
    assert result.exit_code == 2, result.stdout + result.stderr
    assert f"recorder {REAL} is registered to Ana Silva (P-4411)" in result.stderr
    assert "nothing was written" in result.stderr and "--into-registered" in result.stderr
    assert _tree(docks) == before
    assert sorted(p.name for p in docks.iterdir()) == [REAL]  # no staging folder either
    assert (home / "ledger.jsonl").read_text(encoding="utf-8") == ledger_before

    # Without registering, too: the serial is still the officer's.
    result = run_cli(home, "simulate-recorder", REAL, "--clips", "1", "--no-register")
    assert result.exit_code == 2 and "registered to Ana Silva" in result.stderr
    assert _tree(docks) == before


def test_demo_serials_and_an_explicit_into_registered_still_dock(tmp_path: Path) -> None:
    home = _home(tmp_path)
    docks = home / "docks"
    first = run_cli(home, "simulate-recorder", "DEMO-0002", "--clips", "1")
    assert first.exit_code == 0, first.stderr
    again = run_cli(home, "simulate-recorder", "DEMO-0002", "--clips", "1")  # its demo officer
    assert again.exit_code == 0, again.stderr
    assert "docked simulated recorder DEMO-0002 with 1 clip at" in again.stdout
    assert list((docks / "DEMO-0002" / "DCIM" / "100MEDIA").iterdir())

    forced = run_cli(home, "simulate-recorder", REAL, "--clips", "1", "--into-registered")
    assert forced.exit_code == 0, forced.stderr
    assert f"docked simulated recorder {REAL} with 1 clip at" in forced.stdout
    assert len(list((docks / REAL / "DCIM" / "100MEDIA").iterdir())) == 1


def test_next_demo_docks_another_recorder_each_time(tmp_path: Path) -> None:
    home = init_station(tmp_path / "home", config='[docks]\nwatch_root = "docks"\n',
                        register={"DEMO-0002": ("Ana Silva", "P-4411")})
    docked = []
    for _ in range(2):
        result = run_cli(home, "simulate-recorder", "--next-demo", "--clips", "1")
        assert result.exit_code == 0, result.stderr
        docked.append(" ".join(result.stdout.split()))
    # DEMO-0001 first, then not DEMO-0002 (a real officer's recorder): DEMO-0003.
    assert "docked simulated recorder DEMO-0001 with 1 clip" in docked[0]
    assert "docked simulated recorder DEMO-0003 with 1 clip" in docked[1]
    assert sorted(p.name for p in (home / "docks").iterdir()) == ["DEMO-0001", "DEMO-0003"]
    both = run_cli(home, "simulate-recorder", "DEMO-0009", "--next-demo")
    assert both.exit_code == 2 and "without SERIAL" in both.stderr
