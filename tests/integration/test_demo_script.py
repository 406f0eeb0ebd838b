"""``scripts/run --demo`` docks another simulated recorder each time, and ``run --once`` ends
with what it took. The script itself runs, from a copy of the checkout's ``scripts/run`` whose
``scripts/setup`` is a stand-in (the environment is installed) and whose ``.venv/bin/ingestd``
runs this checkout's ingestd."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, subprocess_env

pytestmark = pytest.mark.integration


def checkout(tmp_path: Path) -> Path:
    """A folder laid out as the checkout, as far as ``scripts/run`` needs one."""
    top = tmp_path / "checkout"
    (top / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "run", top / "scripts" / "run")
    setup = top / "scripts" / "setup"
    setup.write_text("#!/bin/sh\nexit 0\n")
    bin_dir = top / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    ingestd = bin_dir / "ingestd"
    ingestd.write_text(
        f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -c "
        "'import sys; from ingestd.cli import main; sys.argv[0] = \"ingestd\"; main()' \"$@\"\n")
    for script in (setup, ingestd):
        script.chmod(0o755)
    return top


def run_script(top: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(top / "scripts" / "run"), *args], cwd=top, capture_output=True,
                          text=True, timeout=300, env=subprocess_env(INGESTD_HOME=str(home)),
                          check=False)


def status(top: Path, home: Path) -> Any:
    result = subprocess.run([str(top / ".venv" / "bin" / "ingestd"), "--home", str(home),
                             "status", "--json"], capture_output=True, text=True, timeout=120,
                            env=subprocess_env(), check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_each_demo_docks_another_recorder_and_once_ends_with_the_counts(
        tmp_path: Path) -> None:
    top, home = checkout(tmp_path), tmp_path / "home"
    first = run_script(top, home, "--demo", "--once")
    assert first.returncode == 0, first.stdout + first.stderr
    said = " ".join(first.stdout.split())
    assert "docked simulated recorder DEMO-0001 with 3 clips" in said
    assert re.search(r"recorder DEMO-0001: done, 3 files: 3 new, 0 known, \d+ not taken, "
                     r"0 failed \([\d.]+ [KM]iB copied\)", said), said
    assert re.search(r"served 1 recorder: 3 new, 0 known, \d+ not taken, 0 failed "
                     r"\([\d.]+ [KM]iB copied\); every job ran", said), said

    second = run_script(top, home, "--demo", "--once")
    assert second.returncode == 0, second.stdout + second.stderr
    said = " ".join(second.stdout.split())
    assert "docked simulated recorder DEMO-0002 with 3 clips" in said
    assert re.search(r"served 2 recorders: 3 new, 3 known, \d+ not taken, 0 failed", said)
    state = status(top, home)
    assert {d["serial"] for d in state["docks"]} == {"DEMO-0001", "DEMO-0002"}
    assert state["items"]["total"] == 6
    assert sorted(os.listdir(home / "docks")) == ["DEMO-0001", "DEMO-0002"]
