"""The WORM check (``ingestd targets check``) against real servers: Ceph RGW, which enforces
COMPLIANCE retention, passes; moto, which lets a COMPLIANCE date be shortened, is caught; a
bucket without Object Lock behind a target that claims it fails, and then neither the
retention sweep nor a wipe lets go of what only its copies would keep, until it passes again.

Each run is a signed ``worm_checked`` entry, and the target's standing is a catalog row backed
by it, which ``ledger verify`` checks.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from conftest import (
    SERIAL,
    ClipFile,
    build_recorder,
    cli_json,
    ledger_lines,
    run_cli,
    store_objects,
)

from ingestd.usecases.docking import scan_once
from tests.integration.test_replicate import (
    PREFIX,
    FaultProxy,
    Home,
    clips,  # noqa: F401 - the session's clips fixture
    item_key,
    make_home,
    new_bucket,
    s3_target,
    write_credentials,
)
from tests.support import catalog
from tests.support.servers import S3Endpoint

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = [pytest.mark.integration]

CANARY = f"{PREFIX}/worm/canary"


def check(home: Path, *, ok: bool) -> dict[str, Any]:
    result = run_cli(home, "targets", "check", "--json")
    assert result.exit_code == (0 if ok else 1), result.stderr
    report: dict[str, Any] = result.json()
    assert report["ok"] is ok
    return report


def attempts(report: dict[str, Any], name: str = "offsite") -> dict[str, list[dict[str, Any]]]:
    (target,) = [t for t in report["targets"] if t["target"] == name]
    out: dict[str, list[dict[str, Any]]] = {}
    for attempt in target["attempts"]:
        out.setdefault(attempt["probe"], []).append(attempt)
    return out


def replicated(tmp_path: Path, clips: list[ClipFile], url: str, bucket: str,  # noqa: F811
               credentials: Path, *, config: str = "", **target: object) -> Home:
    home = make_home(tmp_path, clips, config=config)
    home.add_target(s3_target(url, bucket, credentials, readback=True, **target))
    report = cli_json(home.home, "replicate")
    assert len(report["verified"]) == len(clips), report
    return home


def assert_ledger_intact(home: Path) -> None:
    result = run_cli(home, "ledger", "verify", "--json")
    assert result.exit_code == 0, result.output


# -- Ceph: WORM holds ------------------------------------------------------------------------


@pytest.mark.slow
def test_ceph_holds_worm_and_the_canary_is_written_once(
        tmp_path: Path, clips: list[ClipFile], ceph: S3Endpoint) -> None:  # noqa: F811
    client = ceph.client()
    bucket = new_bucket(client)
    home = replicated(tmp_path, clips, ceph.url, bucket, write_credentials(tmp_path, ceph))

    first = check(home.home, ok=True)
    tried = attempts(first)
    assert all(a["held"] for group in tried.values() for a in group), tried
    assert "refused" in tried["delete"][0]["detail"]
    assert "refused" in tried["shorten"][0]["detail"]
    assert {a["item"] for a in tried["sample"]} == set(home.shas)  # every copy's lock read
    (canary,) = [v for v in client.list_object_versions(Bucket=bucket, Prefix=CANARY)
                 .get("Versions", [])]
    head = client.head_object(Bucket=bucket, Key=CANARY, VersionId=canary["VersionId"])
    assert head["ObjectLockMode"] == "COMPLIANCE"

    second = check(home.home, ok=True)
    assert "reused" in attempts(second)["canary"][0]["detail"]
    assert len(client.list_object_versions(Bucket=bucket, Prefix=CANARY)["Versions"]) == 1
    entries = ledger_lines(home.home, "worm_checked")
    assert [e["data"]["passed"] for e in entries] == [True, True]
    assert entries[0]["data"]["target"] == "offsite"
    assert cli_json(home.home, "status")["worm"]["offsite"]["critical"] is False
    assert_ledger_intact(home.home)


@pytest.mark.slow
def test_the_daemon_checks_worm_on_schedule_unless_told_not_to(
        tmp_path: Path, clips: list[ClipFile], ceph: S3Endpoint) -> None:  # noqa: F811
    credentials = write_credentials(tmp_path, ceph)
    home = replicated(tmp_path / "daily", clips[:1], ceph.url, new_bucket(ceph.client()),
                      credentials)
    assert run_cli(home.home, "run", "--once").exit_code == 0
    (run,) = catalog.job_runs(home.home, "worm-check")
    assert run["ok"] == 1 and "offsite passed" in run["summary"]
    assert len(ledger_lines(home.home, "worm_checked")) == 1

    off = replicated(tmp_path / "off", clips[:1], ceph.url, new_bucket(ceph.client()),
                     credentials, config='[scheduler]\nworm_check = "0s"\n')
    assert run_cli(off.home, "run", "--once").exit_code == 0
    assert catalog.job_runs(off.home, "worm-check") == []
    assert ledger_lines(off.home, "worm_checked") == []


# -- moto: a COMPLIANCE date it lets be shortened --------------------------------------------


def test_moto_lets_a_compliance_date_be_shortened_and_the_check_says_so(
        tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint) -> None:  # noqa: F811
    client = moto.client()
    bucket = new_bucket(client)
    home = replicated(tmp_path, clips, moto.url, bucket, write_credentials(tmp_path, moto))

    report = check(home.home, ok=False)
    tried = attempts(report)
    # what moto does enforce is seen to hold: the canary is locked, its version not deleted,
    # the real copies carry the locks the catalog recorded
    assert tried["canary"][0]["held"] and tried["delete"][0]["held"]
    assert all(a["held"] for a in tried["sample"]) and len(tried["sample"]) == len(home.shas)
    # and what it does not is caught (see test_servers: moto accepts a shorter date)
    assert not tried["shorten"][0]["held"]
    assert "accepted" in tried["shorten"][0]["detail"]
    (entry,) = ledger_lines(home.home, "worm_checked")
    assert entry["data"]["passed"] is False
    assert cli_json(home.home, "status")["worm"]["offsite"]["critical"] is True
    assert_ledger_intact(home.home)


# -- a bucket without Object Lock, then the server put right ---------------------------------


class SwitchedProxy(FaultProxy):
    """One endpoint whose server behind it can be replaced: the target's location (endpoint,
    bucket, prefix) stays the same."""

    def switch_to(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname and parts.port
        self._upstream = (parts.hostname, parts.port)


@pytest.mark.slow
def test_a_target_without_worm_keeps_what_only_it_holds_until_it_passes_again(
        tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint,  # noqa: F811
        ceph: S3Endpoint) -> None:
    proxy = SwitchedProxy(moto.url)
    try:
        _broken_then_repaired(tmp_path, clips, moto, ceph, proxy)
    finally:
        proxy.close()


def _broken_then_repaired(tmp_path: Path, clips: list[ClipFile],  # noqa: F811
                          moto: S3Endpoint, ceph: S3Endpoint, proxy: SwitchedProxy) -> None:
    broken, good = moto.client(), ceph.client()
    bucket = new_bucket(broken, lock=False)
    credentials = write_credentials(tmp_path, ceph)  # moto takes any
    # Copied without Object Lock (the startup check would refuse the bucket otherwise), then
    # the configuration claims it: the check must find out.
    home = replicated(tmp_path, clips, proxy.url, bucket, credentials, object_lock=False,
                      config='wipe = "after-offsite-verify"\nsettle = "0s"\n'
                             '[retention]\nlocal_keep = "0s"\n')
    home.edit_config('object_lock = false', 'object_lock = true')

    report = check(home.home, ok=False)
    assert not attempts(report)["canary"][0]["held"]
    assert all(not a["held"] for a in attempts(report)["sample"])
    assert cli_json(home.home, "status")["worm"]["offsite"]["critical"] is True
    shown = " ".join(run_cli(home.home, "status").stdout.split())
    assert "target offsite: CRITICAL: WORM check FAILED" in shown

    # every item's only required copy is there: nothing leaves the store or the recorder
    assert cli_json(home.home, "retention")["evicted"] == []
    assert set(store_objects(home.home)) == set(home.shas)
    docked = build_recorder(home.home / "docks" / SERIAL,
                            {f"DCIM/100MEDIA/{c.path.name}": c for c in clips})
    assert dock(home) == 0
    assert len(list((docked / "DCIM" / "100MEDIA").iterdir())) == len(clips)

    # the server is put right: a bucket of the same name with Object Lock, holding the same
    # copies under the locks the catalog recorded
    _restore_with_locks(home, broken, good, bucket)
    proxy.switch_to(ceph.url)
    report = check(home.home, ok=True)
    assert {a["item"] for a in attempts(report)["sample"]} == set(home.shas)
    assert cli_json(home.home, "status")["worm"]["offsite"]["critical"] is False

    evicted = cli_json(home.home, "retention")["evicted"]
    assert sorted(e["sha256"] for e in evicted) == sorted(home.shas)
    assert store_objects(home.home) == {}
    assert dock(home) == len(clips)
    shutil.rmtree(docked)
    assert [e["data"]["passed"] for e in ledger_lines(home.home, "worm_checked")] == [
        False, True]
    assert_ledger_intact(home.home)


def dock(home: Home) -> int:
    """Serve the recorder folder under the watched root once: how many files it wiped."""
    station = home.open()
    try:
        (outcome,) = scan_once(station)
    finally:
        station.close()
    return outcome.wiped


def _restore_with_locks(home: Home, broken: S3Client, good: S3Client, bucket: str) -> None:
    good.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    for replica in catalog.replicas(home.home):
        key = item_key(replica["item"])
        got = broken.get_object(Bucket=bucket, Key=key)
        extra: dict[str, Any] = {"ObjectLockMode": "COMPLIANCE",
                                 "ObjectLockRetainUntilDate": replica["retain_until"]}
        if replica["hold"]:
            extra["ObjectLockLegalHoldStatus"] = "ON"
        good.put_object(Bucket=bucket, Key=key, Body=got["Body"].read(),
                        Metadata=got["Metadata"], **extra)


def test_a_server_that_cannot_be_asked_is_not_a_pass_and_changes_no_standing(
        tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint) -> None:  # noqa: F811
    home = make_home(tmp_path, clips[:1])
    # nothing listens on the discard port
    home.add_target(s3_target("http://127.0.0.1:9", "nowhere", write_credentials(tmp_path, moto)))
    report = check(home.home, ok=False)
    (target,) = report["targets"]
    assert target["passed"] is None and "cannot check WORM" in target["error"]
    assert ledger_lines(home.home, "worm_checked") == []
    assert cli_json(home.home, "status")["worm"] == {}


# -- the standing is backed by its entry -----------------------------------------------------


def test_a_standing_row_put_back_to_passed_or_deleted_is_caught_by_ledger_verify(
        tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint) -> None:  # noqa: F811
    client = moto.client()
    home = replicated(tmp_path, clips[:1], moto.url, new_bucket(client, lock=False),
                      write_credentials(tmp_path, moto), object_lock=False)
    home.edit_config('object_lock = false', 'object_lock = true')
    check(home.home, ok=False)
    assert_ledger_intact(home.home)

    catalog.tamper(home.home, "UPDATE target_worm SET passed = 1")
    result = run_cli(home.home, "ledger", "verify", "--json")
    assert result.exit_code == 1
    assert [p["kind"] for p in result.json()["problems"]] == ["row_differs"]
    assert "target_worm row offsite: passed is True" in result.json()["problems"][0]["detail"]

    catalog.tamper(home.home, "DELETE FROM target_worm")
    result = run_cli(home.home, "ledger", "verify", "--json")
    assert result.exit_code == 1
    assert [p["kind"] for p in result.json()["problems"]] == ["missing_row"]
    assert "no target_worm row" in result.json()["problems"][0]["detail"]
