"""The archive of a closed case (R9): by the daemon's check-archives job and by `case archive`,
to a directory (the package there passes verify-export and bagit's own validation) and to an
S3 bucket with Object Lock (one tar, locked COMPLIANCE, its bytes as recorded, and what it
unpacks to verifies); a run stopped between the export and the record completed by the next
without a second package; a dead destination leaves the case unarchived, named in the log and
the job's summary."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import Clips, cli_json, ledger_lines, ledger_problems, open_station, run_cli

from ingestd.app.jobs import run_job, standard_jobs
from ingestd.domain.canonical import format_time, parse_time
from ingestd.domain.policy import long_term_until
from ingestd.errors import CatalogError
from ingestd.station import Station
from ingestd.usecases import archive as archive_uc
from ingestd.usecases import cases
from ingestd.usecases.export import export_items
from tests.integration.test_cases import case_home
from tests.integration.test_replicate import (
    NO_WORM_JOB,
    PREFIX,
    new_bucket,
    s3_target,
    write_credentials,
)
from tests.support.servers import S3Endpoint

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

CLOSER = "Zhao Liu"


def now() -> datetime:
    return datetime.now(UTC)


def close_late(home: Path, case: str = "C-1") -> None:
    """Closed 31 days ago: past the default window, so its items are flagged."""
    ended = (now() - timedelta(days=31)).replace(microsecond=0)
    cli_json(home, "case", "close", case, "--by", CLOSER, "--at", format_time(ended))


def run_archive_job(home: Path) -> tuple[bool, str]:
    """The daemon's check-archives job, run as the daemon runs it; its recorded summary."""
    station = open_station(home, clock=now)
    try:
        (job,) = [j for j in standard_jobs(station) if j.name == "check-archives"]
        ok = run_job(station, job)
        with station.catalog.read() as tx:
            (run,) = [r for r in tx.last_jobs(station=station.name)
                      if r.job == "check-archives"]
        summary = run.summary
    finally:
        station.close()
    return ok, summary


def verify_export(package: Path) -> tuple[int, list[dict[str, Any]]]:
    done = run_cli(None, "verify-export", package, "--json")
    assert done.exit_code in (0, 1), done
    return done.exit_code, done.json()["problems"]


def bagit_validates(package: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bagit", "--validate", str(package)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def archive_exports(home: Path, case: str) -> list[dict[str, Any]]:
    return [e for e in ledger_lines(home, "exported")
            if e["data"].get("purpose") == "archive" and e["data"].get("case") == case]


def overdue_cases(home: Path) -> list[str]:
    text = run_cli(home, "overdue")
    assert text.exit_code == 0
    return [line.split()[0] for line in text.stdout.splitlines()
            if line.startswith(("C-1", "C-2"))]


class FailOnce:
    """``cases.record_archive`` failing once, as a run killed between its export and its
    record would leave things."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.real: Callable[..., Any] = cases.record_archive
        self.failed = 0
        monkeypatch.setattr(archive_uc.cases, "record_archive", self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            self.failed += 1
            raise CatalogError("the catalog is read-only")
        return self.real(*args, **kwargs)


# -- a directory -------------------------------------------------------------------------------


def folder_home(tmp_path: Path, clips: Clips, where: str = "./archive") -> Path:
    home = case_home(tmp_path, clips, config=f'[cases]\narchive = "{where}"\n')
    if where == "./archive":
        (home / "archive").mkdir()
    return home


def test_the_job_archives_a_closed_case_to_a_directory(tmp_path: Path, clips: Clips) -> None:
    home = folder_home(tmp_path, clips)
    close_late(home)
    assert len(cli_json(home, "case", "check")["flagged"]) == 2
    assert overdue_cases(home) == ["C-1"]

    ok, summary = run_archive_job(home)
    assert ok, summary
    assert summary.startswith("1 case archived"), summary
    (package,) = (home / "archive").glob("C-1-*")
    code, problems = verify_export(package)
    assert (code, problems) == (0, [])
    bagit_validates(package)
    info = (package / "bag-info.txt").read_text(encoding="utf-8")
    for said in ("Case: C-1", f"Approved-By: {CLOSER}", "Purpose: archive",
                 "Reason: case archive (R9)"):
        assert said in info, info
    (export,) = archive_exports(home, "C-1")
    assert sorted(export["data"]["items"]) == sorted([clips.a.sha256, clips.b.sha256])
    assert package.name == f"C-1-{export['data']['package']}"

    (entry,) = ledger_lines(home, "case_archived")
    assert entry["data"]["package"] == export["data"]["package"]
    assert entry["data"]["location"] == str(package)
    assert entry["data"]["export_entry"] == export["seq"]
    shown = cli_json(home, "case", "show", "C-1")
    archive = shown["closed"]["archive"]
    assert archive["package"] == export["data"]["package"] and archive["late"] is True
    assert archive["location"] == str(package) and archive["seq"] == entry["seq"]
    assert shown["closed"]["overdue"] is False
    assert "archive" in {e["data"]["purpose"] for e in shown["exports"]}
    assert overdue_cases(home) == []
    assert "closed cases not archived" not in run_cli(home, "overdue").stdout

    # nothing left to do: no second package
    ok, summary = run_archive_job(home)
    assert ok and summary.startswith("0 cases archived"), summary
    assert len(list((home / "archive").glob("C-1-*"))) == 1
    assert ledger_problems(home) == (0, [])


def test_case_archive_archives_one_case_by_hand(tmp_path: Path, clips: Clips) -> None:
    home = folder_home(tmp_path, clips)
    open_case = run_cli(home, "case", "archive", "C-2")
    assert open_case.exit_code == 10 and "not closed" in open_case.stderr
    cli_json(home, "case", "close", "C-2", "--by", CLOSER)
    done = cli_json(home, "case", "archive", "C-2", "--by", "clerk")
    archived = done["archived"]
    package = Path(archived["location"])
    assert package.parent == home / "archive" and archived["resumed"] is False
    assert package.name == f"C-2-{archived['package']}"
    assert verify_export(package) == (0, [])
    bagit_validates(package)
    assert done["case"]["archive"]["package"] == archived["package"]
    (entry,) = ledger_lines(home, "case_archived")
    assert entry["actor"] == "clerk" and entry["data"]["case"] == "C-2"
    again = run_cli(home, "case", "archive", "C-2")
    assert again.exit_code == 2 and "archived already" in again.stderr
    # C-1 stays open and unarchived
    assert cli_json(home, "case", "show", "C-1")["closed"] is None


def test_a_run_stopped_before_its_record_is_completed_without_a_second_package(
        tmp_path: Path, clips: Clips, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    home = folder_home(tmp_path, clips)
    close_late(home)
    fault = FailOnce(monkeypatch)
    with caplog.at_level(logging.ERROR, logger="ingestd"):
        ok, summary = run_archive_job(home)
    assert not ok and "C-1: the catalog is read-only" in summary, summary
    assert any("case C-1 not archived" in r.getMessage() for r in caplog.records)
    (placed,) = (home / "archive").glob("C-1-*")
    assert ledger_lines(home, "case_archived") == [] and overdue_cases(home) == ["C-1"]

    ok, summary = run_archive_job(home)
    assert ok and fault.failed == 1, summary
    assert list((home / "archive").glob("C-1-*")) == [placed]
    (export,) = archive_exports(home, "C-1")
    (entry,) = ledger_lines(home, "case_archived")
    assert entry["data"]["package"] == export["data"]["package"]
    assert entry["data"]["location"] == str(placed)
    assert overdue_cases(home) == []
    assert ledger_problems(home) == (0, [])


def test_a_package_changed_in_place_is_kept_never_recorded_and_never_copied_again(
        tmp_path: Path, clips: Clips, monkeypatch: pytest.MonkeyPatch) -> None:
    import bagit

    home = folder_home(tmp_path, clips)
    close_late(home)
    FailOnce(monkeypatch)
    ok, _ = run_archive_job(home)
    assert not ok
    (placed,) = (home / "archive").glob("C-1-*")
    # while nobody recorded it, someone removed its custody report and made the manifests
    # again: it checks against itself, but not as the station signed it
    (placed / "report" / "custody-report.pdf").unlink()
    cwd = os.getcwd()
    try:
        bagit.Bag(str(placed)).save()
    finally:
        os.chdir(cwd)
    for _ in range(2):
        ok, summary = run_archive_job(home)
        assert not ok and "does not verify" in summary and "tag_manifest_unsigned" in summary
    assert list((home / "archive").glob("C-1-*")) == [placed]  # kept; no copy made beside it
    assert len(archive_exports(home, "C-1")) == 1
    assert ledger_lines(home, "case_archived") == [] and overdue_cases(home) == ["C-1"]


def test_a_package_exported_but_never_placed_is_placed_by_the_next_run(
        tmp_path: Path, clips: Clips) -> None:
    home = folder_home(tmp_path, clips)
    close_late(home)
    # the first steps of a run, alone: exported into .pending, then the run stopped
    (home / "archive" / archive_uc.PENDING).mkdir()
    station = open_station(home, clock=now)
    try:
        half = export_items(station, items=[clips.a.sha256, clips.b.sha256],
                            out=home / "archive" / ".pending" / "C-1-stopped",
                            approved_by=CLOSER, reason=archive_uc.ARCHIVE_REASON,
                            purpose="archive", case="C-1")
    finally:
        station.close()
    done = cli_json(home, "case", "archive", "C-1")["archived"]
    assert done["resumed"] is True and done["package"] == half.package_id
    assert done["export_entry"] == half.entry_seq
    assert [p.name for p in (home / "archive").glob("C-1-*")] == [f"C-1-{half.package_id}"]
    assert list((home / "archive" / ".pending").iterdir()) == []
    assert len(archive_exports(home, "C-1")) == 1
    assert verify_export(Path(done["location"])) == (0, [])


def test_a_dead_destination_leaves_the_case_unarchived_and_says_why(
        tmp_path: Path, clips: Clips, caplog: pytest.LogCaptureFixture) -> None:
    home = folder_home(tmp_path, clips, where="./gone")  # never made: a share not mounted
    close_late(home)
    with caplog.at_level(logging.ERROR, logger="ingestd"):
        ok, summary = run_archive_job(home)
    assert not ok
    assert "1 case not archived: C-1" in summary and "is not a directory" in summary, summary
    assert "1 case past their archive window" in summary
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("case C-1 not archived" in m and "gone" in m for m in errors), errors
    assert ledger_lines(home, "case_archived") == [] and archive_exports(home, "C-1") == []
    assert overdue_cases(home) == ["C-1"]
    by_hand = run_cli(home, "case", "archive", "C-1")
    assert by_hand.exit_code != 0 and "is not a directory" in by_hand.stderr
    # the share comes back: the next run archives it
    (home / "gone").mkdir()
    ok, summary = run_archive_job(home)
    assert ok, summary
    assert overdue_cases(home) == []


# -- an S3 bucket with Object Lock ----------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(moto: S3Endpoint) -> S3Client:
    return moto.client()


def bucket_home(tmp_path: Path, clips: Clips, moto: S3Endpoint, s3: S3Client
                ) -> tuple[Path, str]:
    bucket = new_bucket(s3)
    credentials = write_credentials(tmp_path, moto)
    config = (NO_WORM_JOB + '[cases]\narchive = "offsite"\n'
              + s3_target(moto.url, bucket, credentials))
    return case_home(tmp_path, clips, config=config), bucket


def archive_objects(s3: S3Client, bucket: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/archives/")
    return [o["Key"] for o in listed.get("Contents", [])]


def test_the_job_archives_a_closed_case_to_a_locked_bucket_as_one_tar(
        tmp_path: Path, clips: Clips, moto: S3Endpoint, s3: S3Client,
        monkeypatch: pytest.MonkeyPatch) -> None:
    home, bucket = bucket_home(tmp_path, clips, moto, s3)
    close_late(home)
    fault = FailOnce(monkeypatch)  # the first run stops between its upload and its record
    ok, summary = run_archive_job(home)
    assert not ok and "read-only" in summary, summary
    (key,) = archive_objects(s3, bucket)
    ok, summary = run_archive_job(home)
    assert ok and fault.failed == 1, summary
    assert archive_objects(s3, bucket) == [key]  # completed, not made again
    (export,) = archive_exports(home, "C-1")
    package = export["data"]["package"]
    assert key == f"{PREFIX}/archives/station-01/C-1-{package}.tar"

    (entry,) = ledger_lines(home, "case_archived")
    assert entry["data"]["package"] == package
    assert entry["data"]["location"].endswith(f"/{bucket}/{key}")
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    wanted = long_term_until(parse_time(entry["at"]))
    assert head["ObjectLockRetainUntilDate"] >= wanted - timedelta(days=2)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == entry["data"]["sha256"]
    assert len(body) == entry["data"]["bytes"]
    with pytest.raises(s3.exceptions.ClientError):  # locked: not even deleted
        s3.delete_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])

    tar = tmp_path / "got.tar"
    tar.write_bytes(body)
    out = tmp_path / "unpacked"
    with tarfile.open(tar, "r:") as bundle:
        members = bundle.getmembers()
        assert all((m.isreg() or m.isdir()) and ".." not in Path(m.name).parts
                   and not m.name.startswith("/") for m in members)
        bundle.extractall(out)  # what it holds was checked just above
    unpacked = out / f"C-1-{package}"
    assert verify_export(unpacked) == (0, [])
    bagit_validates(unpacked)
    # the staging copy is gone once the archive is verified on the target
    assert list((home / archive_uc.STAGING).iterdir()) == []
    assert overdue_cases(home) == []
    shown = cli_json(home, "case", "show", "C-1")["closed"]["archive"]
    assert shown["package"] == package and shown["location"] == entry["data"]["location"]
    assert ledger_problems(home) == (0, [])


def test_an_unreachable_bucket_leaves_the_case_unarchived(
        tmp_path: Path, clips: Clips, moto: S3Endpoint, s3: S3Client) -> None:
    home, bucket = bucket_home(tmp_path, clips, moto, s3)
    cli_json(home, "case", "close", "C-2", "--by", CLOSER)
    s3.delete_bucket(Bucket=bucket)  # empty yet: the destination is gone
    done = run_cli(home, "case", "archive", "C-2", "--json")
    assert done.exit_code != 0
    assert "bucket missing" in done.json()["error"]["message"]
    assert ledger_lines(home, "case_archived") == [] and archive_exports(home, "C-2") == []
    station: Station = open_station(home, clock=now)
    try:
        assert [c.case for c in cases.to_archive(station)] == ["C-2"]
    finally:
        station.close()


# -- a directory target ------------------------------------------------------------------------


def test_a_directory_target_gets_the_tar_and_a_stopped_upload_is_resumed_from_staging(
        tmp_path: Path, clips: Clips, monkeypatch: pytest.MonkeyPatch) -> None:
    from ingestd.errors import TargetUnreachable
    from ingestd.targets.directory import DirectoryTarget

    nas = tmp_path / "nas"
    nas.mkdir()
    config = ('[cases]\narchive = "nas"\n[[targets]]\nname = "nas"\ntype = "directory"\n'
              f'path = "{nas}"\nprefix = "p"\nsame_filesystem_ok = true\n')
    home = case_home(tmp_path, clips, config=config)
    cli_json(home, "case", "close", "C-1", "--by", CLOSER)
    real = DirectoryTarget.read_archive
    calls = {"n": 0}

    def cut_once(self: DirectoryTarget, name: str, sink: Any = None) -> str:
        calls["n"] += 1
        if calls["n"] == 1:  # the share went away just after the tar was written
            raise TargetUnreachable("target 'nas': share gone")
        return real(self, name, sink)

    monkeypatch.setattr(DirectoryTarget, "read_archive", cut_once)
    failed = run_cli(home, "case", "archive", "C-1")
    assert failed.exit_code != 0 and "share gone" in failed.stderr
    staged = sorted(p.name for p in (home / archive_uc.STAGING).iterdir())
    assert len(staged) == 2 and staged[1] == staged[0] + ".tar"  # kept for the next run

    done = cli_json(home, "case", "archive", "C-1")["archived"]
    assert done["resumed"] is True
    (tar,) = (nas / "p" / "archives" / "station-01").iterdir()
    assert tar.name == f"C-1-{done['package']}.tar"
    assert hashlib.sha256(tar.read_bytes()).hexdigest() == done["sha256"]
    assert list((home / archive_uc.STAGING).iterdir()) == []
    assert len(archive_exports(home, "C-1")) == 1
    lock = (nas / "p" / "locks" / "archives" / "station-01" / f"{tar.name}.json").read_text()
    assert '"retain_until": "2' in lock
    assert ledger_problems(home) == (0, [])


def test_a_closed_case_with_no_item_left_is_not_archived_and_stays_listed(
        tmp_path: Path, clips: Clips) -> None:
    home = folder_home(tmp_path, clips)
    close_late(home, "C-2")
    cli_json(home, "label", clips.c.sha256, "--case", "C-3")  # its one item labelled anew
    done = run_cli(home, "case", "archive", "C-2")
    assert done.exit_code == 10 and "nothing to archive" in done.stderr, done.stderr
    assert list((home / "archive").glob("C-2-*")) == []
    assert list((home / "archive" / archive_uc.PENDING).iterdir()) == []
    assert ledger_lines(home, "case_archived") == [] and archive_exports(home, "C-2") == []
    assert overdue_cases(home) == ["C-2"]


def test_one_archive_at_a_time_on_a_station(tmp_path: Path, clips: Clips) -> None:
    import fcntl
    import os

    home = folder_home(tmp_path, clips)
    cli_json(home, "case", "close", "C-2", "--by", CLOSER)
    fd = os.open(home / ".archive.lock", os.O_CREAT | os.O_RDWR, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as the daemon's job holds it while it archives
        busy = run_cli(home, "case", "archive", "C-2")
        assert busy.exit_code == 2 and "under way" in busy.stderr
    finally:
        os.close(fd)
    assert archive_exports(home, "C-2") == []
    assert cli_json(home, "case", "archive", "C-2")["archived"]["resumed"] is False
