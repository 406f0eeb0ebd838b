"""Which command lines start the daemon, whose stop signals are then held from the start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ingestd.app.signals import starts_daemon


@pytest.mark.parametrize(("argv", "daemon"), [
    (["run"], True),
    (["--config", "/etc/ingestd/ingestd.toml", "run"], True),
    (["--home", "run", "status"], False),  # a home folder named "run"
    (["-vv", "--home", "/srv/h", "run"], True),
    (["--config", "run", "run"], True),
    (["run", "--once"], False),  # a one-off scan: Ctrl-C interrupts it as any command
    (["run", "--help"], False),
    (["status"], False),
    (["ingest", "run"], False),  # "run" as a command's argument
    ([], False),
    (["--home"], False),
])
def test_the_daemon_is_told_from_the_command_line(argv: list[str], daemon: bool) -> None:
    assert starts_daemon(argv) is daemon


#: Imports ingestd's command line as ``ingestd ARGV`` would, and tells what SIGTERM does at the
#: moment click (the first library the command line needs) begins to import.
PROBE = """
import signal, sys
sys.argv = ["ingestd", *sys.argv[1:]]
seen = []
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "click" and not seen:
            seen.append(signal.getsignal(signal.SIGTERM))
sys.meta_path.insert(0, Spy())
import ingestd.cli
print("held" if seen[0] not in (signal.SIG_DFL, signal.SIG_IGN) else "default")
"""


@pytest.mark.parametrize(("argv", "said"), [
    (["--home", "/nonexistent", "run"], "held"),
    (["--home", "/nonexistent", "status"], "default"),  # Ctrl-C interrupts a report at once
])
def test_the_daemon_holds_a_stop_before_it_imports_anything_heavy(
        argv: list[str], said: str) -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True,
                          text=True, check=False, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == said
