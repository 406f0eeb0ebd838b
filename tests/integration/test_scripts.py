"""The scripts a newcomer runs first, run as the README tells them to.

``./scripts/run --once`` must work end to end on an empty home (a simulated recorder docked,
ingested, signed, shown, the ledger verified), be safe to run again, and ``./scripts/run`` must
stop on Ctrl-C without leaving a daemon behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INGESTD = Path(sys.executable).with_name("ingestd")
TIMEOUT = 300.0  # scripts/run may first have to (re)install ingestd into .venv


def script_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INGESTD_", "NOTIFY_SOCKET", "WATCHDOG_"))}
    env["INGESTD_HOME"] = str(home)
    env["INGESTD_WEB_LISTEN"] = "127.0.0.1:0"  # the status page on a free port, not 8765
    return env


def run_script(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts" / "run"), *args], cwd=home.parent,
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env=script_env(home), check=False)


def ingestd_json(home: Path, *args: str) -> Any:
    result = subprocess.run([str(INGESTD), "--home", str(home), *args, "--json"],
                            capture_output=True, text=True, timeout=120,
                            env=script_env(home), check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_scripts_run_once_works_end_to_end_and_again(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = run_script(home, "--once")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "docked simulated recorder DEMO-0001 with 3 clips" in first.stdout
    assert "recorder DEMO-0001: done" in first.stdout
    assert "ledger intact" in first.stdout

    status = ingestd_json(home, "status")
    assert status["items"]["total"] == 3
    assert status["acquisitions"] == {"stored": 3}
    [dock] = status["docks"]
    assert (dock["serial"], dock["state"], dock["files_new"]) == ("DEMO-0001", "done", 3)
    items = ingestd_json(home, "items")["items"]
    assert len(items) == 3
    assert {(i["recorder"], i["officer"]) for i in items} == {("DEMO-0001", "Demo Officer")}
    for item in items:  # each one in the store under its hash
        obj = home / "store" / "objects" / "sha256" / item["sha256"][:2] / item["sha256"][2:4]
        assert (obj / item["sha256"]).is_file()
        assert not item["flags"], item
    assert ingestd_json(home, "ledger", "verify")["ok"] is True

    # Again on the same home: the recorder is still docked, so none is simulated, and its
    # files are found known, not copied twice.
    second = run_script(home, "--once")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "docked simulated recorder" not in second.stdout
    status = ingestd_json(home, "status")
    assert status["items"]["total"] == 3
    latest = status["docks"][0]
    assert (latest["state"], latest["files_new"], latest["files_known"]) == ("done", 0, 3)
    assert "ledger intact" in second.stdout  # under set -e: a failed verify fails the script


def test_scripts_run_help_and_unknown_option(tmp_path: Path) -> None:
    helped = run_script(tmp_path / "home", "--help")
    assert helped.returncode == 0
    for option in ("--demo", "--once"):
        assert option in helped.stdout
    wrong = run_script(tmp_path / "home", "--bogus")
    assert wrong.returncode == 2
    assert "unknown option --bogus" in wrong.stderr
    assert not (tmp_path / "home").exists(), "a wrong option still created a station"


def test_readme_quick_start_names_the_scripts() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Quick start.*?(?=^## )", readme, flags=re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Quick start' section"
    quick = match.group(0)
    for script in ("./scripts/run", "./scripts/test"):
        assert script in quick, f"the quick start does not name {script}"
        path = ROOT / script
        assert path.is_file() and os.access(path, os.X_OK), f"{script} is not executable"


# -- the daemon in the foreground, stopped with Ctrl-C ---------------------------------------


@dataclass
class ForegroundRun:
    home: Path
    output: str
    code: int
    daemon_pid: int
    daemon_alive_after: bool


@pytest.fixture(scope="module")
def ctrl_c_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForegroundRun]:
    """``./scripts/run`` until it says the daemon is running, then Ctrl-C: SIGINT to the
    terminal's foreground process group, which is what a terminal sends."""
    home = tmp_path_factory.mktemp("foreground") / "home"
    log = home.parent / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(ROOT / "scripts" / "run")], cwd=home.parent, stdout=out,
                                stderr=subprocess.STDOUT, env=script_env(home),
                                start_new_session=True)
        try:
            deadline = time.monotonic() + TIMEOUT
            pid = None
            while pid is None:
                found = re.search(r"ingestd is running on .* \(pid (\d+)\)", log.read_text())
                if found:
                    pid = int(found.group(1))
                elif proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"scripts/run did not start the daemon:\n{log.read_text()}")
                else:
                    time.sleep(0.1)
            os.killpg(proc.pid, signal.SIGINT)
            code = proc.wait(60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
    alive = True
    deadline = time.monotonic() + 30
    while alive and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            alive = False
        else:
            time.sleep(0.1)
    yield ForegroundRun(home=home, output=log.read_text(), code=code, daemon_pid=pid,
                        daemon_alive_after=alive)
    if alive:
        os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_scripts_run_stops_the_daemon_on_ctrl_c(ctrl_c_run: ForegroundRun) -> None:
    assert not ctrl_c_run.daemon_alive_after, "Ctrl-C left the daemon running"
    assert "ingestd stopped" in ctrl_c_run.output
    assert "ledger intact" in ctrl_c_run.output  # it showed the demo recorder ingested
    assert ingestd_json(ctrl_c_run.home, "ledger", "verify")["ok"] is True


@pytest.mark.slow
def test_scripts_run_serves_the_status_page_on_loopback(ctrl_c_run: ForegroundRun) -> None:
    assert re.search(r"status page at http://127\.0\.0\.1:\d+/", ctrl_c_run.output)
    assert 'listen = "127.0.0.1:0"' in (ctrl_c_run.home / "ingestd.toml").read_text()


@pytest.mark.slow
def test_one_ctrl_c_on_scripts_run_is_a_warm_stop(ctrl_c_run: ForegroundRun) -> None:
    assert "finishing current files" in ctrl_c_run.output
    assert "aborting copies in flight" not in ctrl_c_run.output
