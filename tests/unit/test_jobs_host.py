"""What a station's jobs share across runs: targets built once (again after a failed run or a
changed credentials file), and a stop that no job starts after and that waits for the runs in
progress."""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from pathlib import Path

from usecase_helpers import bench

from ingestd.app.jobs import Job, host, run_job, stop_jobs
from ingestd.station import Station


def _job_runs(station: Station) -> list[str]:
    with station.catalog.read() as tx:
        return [r.job for r in tx.last_jobs(station=station.name)]


def test_targets_are_built_once_and_again_after_a_failed_run(tmp_path: Path) -> None:
    with bench(tmp_path, target=True) as b:
        shared = host(b.station)
        first = shared.targets()
        assert shared.targets() is first  # the same clients, run after run
        assert host(b.station) is shared

        def failing(_st: object) -> str:
            raise RuntimeError("the target went away")

        assert not run_job(b.station, Job(name="replicate", every=timedelta(minutes=5),
                                          func=failing))
        again = shared.targets()
        assert again is not first and [t.name for t in again] == [t.name for t in first]


def test_targets_are_built_again_when_a_credentials_file_changes(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = a\naws_secret_access_key = b\n")
    config = ('[[targets]]\nname = "s3"\ntype = "s3"\nbucket = "evidence"\n'
              'endpoint_url = "http://127.0.0.1:9"\nobject_lock = false\n'
              f'credentials_file = "{creds}"\n')
    with bench(tmp_path, config=config) as b:
        shared = host(b.station)
        first = shared.targets()
        assert shared.targets() is first
        creds.write_text("[default]\naws_access_key_id = c\naws_secret_access_key = dd\n")
        os.utime(creds, ns=(1, 1))  # a new key, even within the same clock tick
        assert shared.targets() is not first


def test_after_a_stop_no_job_starts_and_the_stop_waits_for_the_one_running(
        tmp_path: Path) -> None:
    with bench(tmp_path) as b:
        inside, release = threading.Event(), threading.Event()

        def slow(_st: object) -> str:
            inside.set()
            assert release.wait(30)
            return "finished"

        runner = threading.Thread(target=run_job, args=(
            b.station, Job(name="replicate", every=timedelta(minutes=5), func=slow)))
        runner.start()
        assert inside.wait(30)
        stop_jobs(b.station)
        assert host(b.station).wait(0) == ["replicate"]

        ran: list[str] = []
        started = run_job(b.station, Job(name="checkpoint", every=timedelta(minutes=5),
                                         func=lambda _st: ran.append("x") or "ran"))
        assert not started and ran == []  # refused: the daemon is stopping

        release.set()
        assert host(b.station).wait(30) == []
        runner.join(30)
        assert _job_runs(b.station) == ["replicate"]  # recorded; the refused one never was
