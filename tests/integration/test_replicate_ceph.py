"""Replication end to end against a real Ceph RADOS Gateway (one throwaway node for this
module): what a bureau's own S3 server does with ingestd's WORM copies.

The station side is the same as in ``test_replicate.py`` (real clips, ``ingestd ingest``,
``ingestd replicate``); the server is Ceph, which enforces Object Lock itself.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError
from conftest import ClipFile, cli_json, run_cli

from tests.integration.test_replicate import (
    EVIDENCE,
    PREFIX,
    ROUTINE,
    Home,
    _rewrite_mirror,
    check_signed,
    clips,  # noqa: F401 - the session's clips fixture
    download_sha,
    item_key,
    long_term_until,
    make_home,
    manifest_key,
    new_bucket,
    s3_target,
    set_for,
    versions,
    write_credentials,
)
from tests.support import catalog
from tests.support.servers import S3Endpoint

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def rgw(ceph: S3Endpoint) -> S3Client:
    return ceph.client()


@pytest.fixture(scope="module")
def rgw_credentials(ceph: S3Endpoint, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_credentials(tmp_path_factory.mktemp("ceph-creds"), ceph)


@pytest.fixture
def bucket(rgw: S3Client) -> str:
    return new_bucket(rgw)


@pytest.fixture
def station(tmp_path: Path, clips: list[ClipFile], ceph: S3Endpoint,  # noqa: F811
            bucket: str, rgw_credentials: Path) -> Home:
    home = make_home(tmp_path, clips)
    home.add_target(s3_target(ceph.url, bucket, rgw_credentials))
    return home


def _refused_delete(rgw: S3Client, bucket: str, sha: str, version: str) -> None:
    with pytest.raises(ClientError) as refused:
        rgw.delete_object(Bucket=bucket, Key=item_key(sha), VersionId=version)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert download_sha(rgw, bucket, item_key(sha)) == sha, "still there, intact"


def test_ceph_copies_are_verified_locked_and_cannot_be_deleted(
    station: Home, rgw: S3Client, bucket: str
) -> None:
    report = cli_json(station.home, "replicate")

    assert sorted(v["sha256"] for v in report["verified"]) == sorted(station.shas)
    key = cli_json(station.home, "keys", "show")
    for clip in station.clips:
        head = rgw.head_object(Bucket=bucket, Key=item_key(clip.sha256))
        assert head["ContentLength"] == clip.size
        assert head["Metadata"]["sha256"] == clip.sha256
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert set_for(head["ObjectLockRetainUntilDate"], ROUTINE)
        retention = rgw.get_object_retention(Bucket=bucket, Key=item_key(clip.sha256))
        assert retention["Retention"]["Mode"] == "COMPLIANCE"
        assert download_sha(rgw, bucket, item_key(clip.sha256)) == clip.sha256
        manifest = json.loads(
            rgw.get_object(Bucket=bucket, Key=manifest_key(clip.sha256))["Body"].read())
        assert check_signed(manifest, "manifest", key["public_key"])["item"] == clip.sha256
        event = station.history(clip.sha256, "replicated")
        assert len(event) == 1 and event[0]["data"]["version_id"] == head["VersionId"]
        # COMPLIANCE: not even the bucket's owner can delete the version
        _refused_delete(rgw, bucket, clip.sha256, head["VersionId"])

    assert station.target_status() == {"verified": 3, "proven": 0, "in_flight": 0,
                                       "failed": 0, "queued": 0, "oldest_waiting": None,
                                       "last_error": None}
    assert cli_json(station.home, "replicate")["verified"] == []
    assert all(len(versions(rgw, bucket, item_key(s))) == 1 for s in station.shas)

    assert cli_json(station.home, "checkpoint")["sent"] == ["offsite"]
    assert rgw.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/checkpoints/")["KeyCount"] == 1
    assert cli_json(station.home, "ledger", "verify", "--offsite")["ok"] is True


def test_ceph_hold_sets_a_legal_hold_that_refuses_deleting(
    station: Home, rgw: S3Client, bucket: str
) -> None:
    cli_json(station.home, "replicate")
    held = station.clips[0]

    cli_json(station.home, "hold", held.sha256, "--reason", "court order 17")
    report = cli_json(station.home, "replicate")

    assert [e["sha256"] for e in report["locks_extended"]] == [held.sha256]
    legal = rgw.get_object_legal_hold(Bucket=bucket, Key=item_key(held.sha256))
    assert legal["LegalHold"]["Status"] == "ON"
    head = rgw.head_object(Bucket=bucket, Key=item_key(held.sha256))
    assert head["ObjectLockLegalHoldStatus"] == "ON"
    _refused_delete(rgw, bucket, held.sha256, head["VersionId"])
    for other in station.clips[1:]:
        # (Ceph answers get_object_legal_hold with an error for a version never held)
        other_head = rgw.head_object(Bucket=bucket, Key=item_key(other.sha256))
        assert other_head.get("ObjectLockLegalHoldStatus", "OFF") == "OFF"

    cli_json(station.home, "release", held.sha256, "--reason", "case closed")
    cli_json(station.home, "replicate")
    legal = rgw.get_object_legal_hold(Bucket=bucket, Key=item_key(held.sha256))
    assert legal["LegalHold"]["Status"] == "OFF"
    _refused_delete(rgw, bucket, held.sha256, head["VersionId"])  # COMPLIANCE still holds


def test_ceph_a_raised_class_extends_the_retention(
    station: Home, rgw: S3Client, bucket: str
) -> None:
    cli_json(station.home, "replicate")
    evidence, disputed, routine = station.clips

    cli_json(station.home, "label", evidence.sha256, "--case", "2026-XZ-0042", "--party", "Li Lei")
    cli_json(station.home, "label", disputed.sha256, "--case", "2026-XZ-0043", "--party", "Han Mei",
       "--category", "obstruction")
    report = cli_json(station.home, "replicate")

    assert sorted(e["sha256"] for e in report["locks_extended"]) == sorted(
        [evidence.sha256, disputed.sha256])
    periods = {evidence: EVIDENCE, routine: ROUTINE}
    for clip in (evidence, disputed, routine):
        retention = rgw.get_object_retention(Bucket=bucket, Key=item_key(clip.sha256))
        assert retention["Retention"]["Mode"] == "COMPLIANCE"
        until = retention["Retention"]["RetainUntilDate"]
        if clip is disputed:
            assert until == long_term_until(datetime.now(UTC))
        else:
            assert set_for(until, periods[clip])
        head = rgw.head_object(Bucket=bucket, Key=item_key(clip.sha256))
        assert head["ObjectLockRetainUntilDate"] == until
        assert len(versions(rgw, bucket, item_key(clip.sha256))) == 1
        # the longer lock still refuses deletion (a date Ceph cannot hold would wrap round to
        # the past and leave the version deletable)
        _refused_delete(rgw, bucket, clip.sha256, head["VersionId"])
    assert cli_json(station.home, "replicate")["locks_extended"] == []
    assert run_cli(station.home, "ledger", "verify").exit_code == 0


def test_ceph_bucket_without_object_lock_is_refused(
    tmp_path: Path, clips: list[ClipFile], ceph: S3Endpoint, rgw: S3Client,  # noqa: F811
    rgw_credentials: Path
) -> None:
    plain = new_bucket(rgw, lock=False)
    home = make_home(tmp_path, clips)
    home.add_target(s3_target(ceph.url, plain, rgw_credentials))

    refused = run_cli(home.home, "replicate")

    assert refused.exit_code == 9
    assert "no Object Lock" in " ".join(refused.stderr.split())
    assert rgw.list_objects_v2(Bucket=plain)["KeyCount"] == 0


def test_ceph_checkpoints_are_locked_and_a_hidden_one_is_still_read(
    station: Home, rgw: S3Client, bucket: str
) -> None:
    cli_json(station.home, "replicate")
    first = cli_json(station.home, "checkpoint")
    key = f"{PREFIX}/checkpoints/{first['name']}"
    head = rgw.head_object(Bucket=bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == long_term_until(datetime.now(UTC))
    with pytest.raises(ClientError) as refused:
        rgw.delete_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"

    # the local ledger cut back to before the checkpoint, and the checkpoint hidden behind a
    # delete marker: its locked version is still read
    rgw.delete_object(Bucket=bucket, Key=key)
    assert rgw.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/checkpoints/")["KeyCount"] == 0
    # (the entry the checkpoint vouches for, and the `checkpointed` entry that records it)
    assert catalog.delete_entries(station.home, after=first["seq"] - 1) == 2
    _rewrite_mirror(station)
    result = run_cli(station.home, "ledger", "verify", "--offsite", "--json")
    assert result.exit_code == 1
    assert "ledger_truncated" in [p["kind"] for p in result.json()["problems"]]
