"""The off-site audit cycle against a real S3 server (moto): clips replicated to an Object
Lock bucket, then one object's bytes overwritten on the server behind the station's back (a
new version of the key, its metadata copied). The scheduled off-site cycle reads the copies
back and flags that item ``replica_mismatch``, names it and the target in its result, keeps
the local copy, and leaves the ledger intact; on an untouched bucket the same cycle flags
nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import ClipFile, cli_json, run_cli, sha256_of

from ingestd.targets.factory import build_targets
from ingestd.usecases.audit import CycleReport, audit_cycle
from tests.integration.test_replicate import (
    Home,
    bucket,  # noqa: F401 - a fresh Object Lock bucket per test
    clips,  # noqa: F401 - the session's clips fixture
    credentials,  # noqa: F401 - credentials for the moto server
    item_key,
    make_home,
    s3,  # noqa: F401 - a raw boto3 client on it
    s3_target,
    versions,
)
from tests.support import catalog
from tests.support.servers import S3Endpoint

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

EVERY = timedelta(hours=6)


@pytest.fixture
def home(tmp_path: Path, clips: list[ClipFile], moto: S3Endpoint,  # noqa: F811
         bucket: str, credentials: Path) -> Home:  # noqa: F811
    """Three clips ingested and replicated (no read-back at upload) to the bucket on moto."""
    made = make_home(tmp_path, clips)
    made.add_target(s3_target(moto.url, bucket, credentials))
    sent = cli_json(made.home, "replicate")
    assert sorted(v["sha256"] for v in sent["verified"]) == sorted(made.shas)
    assert all("replica_mismatch" not in made.flags(sha) for sha in made.shas)
    return made


def offsite_cycle(home: Home) -> CycleReport:
    """One run of the scheduled off-site cycle, as the daemon's job calls it."""
    station = home.open()
    try:
        return audit_cycle(station, every=EVERY, targets=build_targets(station.settings),
                           at_least=len(home.shas), actor="tester")
    finally:
        station.close()


def flags(home: Home) -> dict[str, set[str]]:
    """Each item's flags (clips recorded months ago are ``late_ingest`` from the start)."""
    return {sha: set(home.flags(sha)) for sha in home.shas}


def offsite_results(home: Home, sha: str) -> list[dict[str, Any]]:
    return [e["data"]["offsite"] for e in home.history(sha, "audited") if "offsite" in e["data"]]


def local_copy(home: Home, sha: str) -> Path:
    return home.home / "store" / "objects" / "sha256" / sha[:2] / sha[2:4] / sha


def test_an_untouched_bucket_passes_the_offsite_cycle_with_nothing_flagged(
        home: Home) -> None:
    before = flags(home)

    report = offsite_cycle(home)

    assert report.ok, report.failures
    assert (report.checked, report.of) == (3, 3)
    assert flags(home) == before  # nothing flagged
    for sha in home.shas:
        assert offsite_results(home, sha) == [{"offsite": "ok"}]
    assert home.target_status()["proven"] == 3
    assert run_cli(home.home, "ledger", "verify").exit_code == 0


def test_an_object_overwritten_on_the_server_is_caught_by_the_offsite_cycle(
        home: Home, s3: S3Client, bucket: str) -> None:  # noqa: F811
    before = flags(home)
    victim = home.shas[1]
    key = item_key(victim)
    [sent] = versions(s3, bucket, key)
    # behind the station's back: the same size and metadata, one byte other, a new version
    original = s3.get_object(Bucket=bucket, Key=key)
    body = bytearray(original["Body"].read())
    assert sha256_of(bytes(body)) == victim
    body[len(body) // 2] ^= 0x01
    altered = s3.put_object(Bucket=bucket, Key=key, Body=bytes(body),
                            Metadata=original["Metadata"])
    assert altered["VersionId"] != sent["VersionId"]

    report = offsite_cycle(home)

    assert not report.ok and report.checked == 3
    assert [f["sha256"] for f in report.failures] == [victim]
    assert "off-site copy on offsite" in report.failures[0]["problem"]
    assert altered["VersionId"] in report.failures[0]["problem"]
    # the item is flagged, its result names the target; nothing else is flagged
    assert flags(home) == {**before, victim: before[victim] | {"replica_mismatch"}}
    [result] = offsite_results(home, victim)
    assert set(result) == {"offsite"} and result["offsite"] != "ok"
    assert altered["VersionId"] in result["offsite"]
    for sha in home.shas:
        if sha != victim:
            assert offsite_results(home, sha) == [{"offsite": "ok"}]
    bad = {r["item"]: r for r in catalog.replicas(home.home)}
    assert bad[victim]["state"] == "mismatch"
    assert bad[victim]["bad_versions"] == altered["VersionId"]
    assert home.target_status()["proven"] == 2
    # the local copy is kept, intact; the ledger is intact
    items = {i["sha256"]: i for i in cli_json(home.home, "items")["items"]}
    assert items[victim]["local"]
    assert sha256_of(local_copy(home, victim)) == victim
    assert run_cli(home.home, "ledger", "verify").exit_code == 0
