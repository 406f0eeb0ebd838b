"""``ledger verify`` while another process writes: the catalog and the mirror are read as of
one moment, so entries committed during the check are neither missing nor extra, and a real
change is still caught."""

from __future__ import annotations

import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import (
    ROOT,
    SERIAL,
    Clips,
    build_recorder,
    cli_json,
    open_station,
    run_cli,
    subprocess_env,
)

from tests.support import catalog

pytestmark = pytest.mark.integration

# A second process labelling one item again and again, as investigators at another desk would.
WRITER = """
import sys
from pathlib import Path
from ingestd import config
from ingestd.usecases.casework import label
from ingestd.station import Station
home, sha, stop = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
station = Station.open(config.load(home / "ingestd.toml"))
n = 0
while not stop.exists():
    label(station, [sha], case=f"C-{n}", party="Li", officer=None, categories=(),
          actor="writer")
    n += 1
    print(n, flush=True)
station.close()
"""


#: Checks run while the writer goes on. Each reads the whole ledger, which the writer keeps
#: growing, so the loop's time grows with the square of its rounds.
ROUNDS = 30


def label_count(home: Path, sha: str) -> int:
    return len(cli_json(home, "show", sha)["labels"])


def test_verify_raises_no_false_alarm_while_another_process_writes(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    rec = build_recorder(tmp_path / "rec", {"DCIM/A.MP4": clips.a, "DCIM/B.MP4": clips.b})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(home), clips.a.sha256, str(stop)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=subprocess_env(PYTHONPATH=str(ROOT)))
    station = open_station(home)
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "1", writer.stderr  # it is writing
        before = label_count(home, clips.a.sha256)
        alarms, heads = [], []
        for _ in range(ROUNDS):
            report = station.custody.verify()
            alarms.extend(p.as_dict() for p in report.problems)
            heads.append(report.head_seq)
        during = label_count(home, clips.a.sha256) - before
        # A real change made meanwhile is found, and only it, while the writer goes on.
        assert catalog.forge_item(home, clips.b.sha256, officer="forged") == 1
        found = [[(p.kind, p.detail) for p in station.custody.verify().problems]
                 for _ in range(10)]
    finally:
        stop.touch()
        _, err = writer.communicate(timeout=60)
        station.close()
    assert writer.returncode == 0, err
    assert alarms == []
    # Nearly every check began on a longer ledger than the one before: entries were committed
    # while each of them ran (they run back to back), not only somewhere in the loop.
    grew = sum(later > first for first, later in pairwise(heads))
    assert grew >= ROUNDS - 4, f"the ledger grew during {grew} of {ROUNDS - 1} checks: {heads}"
    assert during >= 2 * ROUNDS, f"only {during} labels were written while verify ran"
    for problems in found:
        assert [kind for kind, _ in problems] == ["row_differs"]
        assert "officer is 'forged'" in problems[0][1]
    assert run_cli(home, "ledger", "verify").exit_code == 1
