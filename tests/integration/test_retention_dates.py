"""Retention never counts from a recorder's clock.

A clip from a recorder whose clock is years behind, and one from a recorder whose clock was
never set, are stored today: their off-site copies on moto and on Ceph RGW are locked in
COMPLIANCE mode for at least a full year from today. An existing home made by the previous
release (``tests/fixtures/home-0002.tar.gz``) brought forward with ``init`` re-dates its items
from what its ledger says, keeps every entry and still verifies.
"""

from __future__ import annotations

import contextlib
import json
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import ClipFile, cli_json, item_record, ledger_lines, make_test_clip, run_cli

from ingestd.domain.canonical import format_time, parse_time
from tests.integration.test_replicate import (
    item_key,
    make_home,
    new_bucket,
    s3_target,
    write_credentials,
)
from tests.support import catalog
from tests.support.servers import S3Endpoint, ServiceUnavailable, ceph_rgw, moto_server

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

YEAR = timedelta(days=365)
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "home-0002.tar.gz"


@pytest.fixture(scope="module")
def wrong_clocks(tmp_path_factory: pytest.TempPathFactory) -> list[ClipFile]:
    """A recorder clock two and a half years behind, and one never set."""
    folder = tmp_path_factory.mktemp("wrong-clocks")
    return [make_test_clip(folder / "CLIP0001.MP4", seconds=1,
                           recorded=datetime(2024, 6, 1, 8, 30, tzinfo=UTC)),
            make_test_clip(folder / "CLIP0002.MP4", seconds=1,
                           recorded=datetime(1999, 12, 31, 16, 0, tzinfo=UTC))]


@pytest.fixture(scope="module", params=["moto", pytest.param("ceph", marks=pytest.mark.slow)])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    with contextlib.ExitStack() as stack:
        if request.param == "moto":
            yield stack.enter_context(moto_server())
            return
        try:
            endpoint = stack.enter_context(ceph_rgw(tmp_path_factory.mktemp("ceph")))
        except ServiceUnavailable as exc:
            pytest.skip(f"Ceph RGW not installed: {exc}")
        yield endpoint


def test_a_wrong_recorder_clock_never_shortens_the_offsite_lock(
        tmp_path: Path, wrong_clocks: list[ClipFile], server: S3Endpoint) -> None:
    client: S3Client = server.client()
    bucket = new_bucket(client)
    credentials = write_credentials(tmp_path, server)
    before = datetime.now(UTC)
    home = make_home(tmp_path, wrong_clocks)
    home.add_target(s3_target(server.url, bucket, credentials))
    report = cli_json(home.home, "replicate")
    after = datetime.now(UTC)

    assert sorted(v["sha256"] for v in report["verified"]) == sorted(home.shas)
    flags = {c.sha256: home.flags(c.sha256) for c in wrong_clocks}
    assert flags[wrong_clocks[1].sha256] == ["clock_unset"]
    for clip in wrong_clocks:
        head = client.head_object(Bucket=bucket, Key=item_key(clip.sha256))
        assert head["ObjectLockMode"] == "COMPLIANCE"
        until = head["ObjectLockRetainUntilDate"]
        # a full year from the day the lock was set, not from the recorder's date
        assert before + YEAR - timedelta(seconds=1) <= until <= after + YEAR + timedelta(seconds=1)
        item = cli_json(home.home, "show", clip.sha256)["item"]
        stored_at = parse_time(item["stored_at"])
        assert item["retain_until"] == format_time(stored_at + YEAR)
        stored = home.history(clip.sha256, "stored")[0]
        assert stored["data"]["retention"] == {
            "retention_class": "routine", "retain_until": item["retain_until"], "hold": False}


# -- an existing home brought forward -----------------------------------------------------------


def unpack_old_home(root: Path) -> Path:
    home = root / "old-home"
    home.mkdir()
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(home)  # the project's own fixture: relative paths only
    return home


def test_init_re_dates_an_old_homes_items_from_its_ledger(tmp_path: Path) -> None:
    home = unpack_old_home(tmp_path)
    before = ledger_lines(home)
    stored = {e["item"]: e for e in before if e["kind"] == "stored"}
    assert len(stored) == 3
    # A row edited behind ingestd's back is not believed: the ledger's facts are.
    unset = next(sha for sha, e in stored.items() if e["data"]["recorded_start"] < "2000")
    assert catalog.forge_item(home, unset, retain_until="2099-01-01T00:00:00.000000Z") == 1

    assert run_cli(home, "init").exit_code == 0

    after = ledger_lines(home)
    assert after[:len(before)] == before, "every entry kept, unchanged"
    redated = [e for e in after[len(before):] if e["kind"] == "retention"]
    assert len(redated) == 3
    # and one entry saying that from now on no entry is dated before the one it follows
    assert sorted(e["kind"] for e in after[len(before):]) == ["retention"] * 3 + ["time_rule"]
    rows = {sha: item_record(home, sha) for sha in stored}
    for entry in redated:
        sha = entry["item"]
        data = entry["data"]
        assert "target" not in data
        assert set(data["retention"]) == {"retention_class", "retain_until", "hold"}
        start = max(parse_time(stored[sha]["data"]["recorded_end"]),
                    parse_time(stored[sha]["at"]))
        period = {"routine": YEAR, "evidence": timedelta(days=365 * 30)}[
            data["retention"]["retention_class"]]
        assert data["retention"]["retain_until"] == format_time(start + period)
        assert rows[sha]["retain_until"] == data["retention"]["retain_until"]
        assert bool(rows[sha]["hold"]) == data["retention"]["hold"]
        assert data["reason"]
        if data["previous"]:
            assert data["previous"]["retain_until"] < data["retention"]["retain_until"]
    by_item = {e["item"]: e["data"] for e in redated}
    labelled = next(e["item"] for e in before if e["kind"] == "labelled")
    held = next(e["item"] for e in before if e["kind"] == "held")
    assert by_item[labelled]["retention"]["retention_class"] == "evidence"
    assert by_item[labelled]["previous"]["retain_until"] == "2054-05-25T08:30:00.000000Z"
    assert by_item[held]["retention"]["hold"] is True
    assert by_item[unset]["previous"] == {}  # its stored entry stated no retention
    assert parse_time(by_item[unset]["retention"]["retain_until"]) > \
        parse_time(stored[unset]["at"]) + YEAR - timedelta(seconds=1)

    verified = run_cli(home, "ledger", "verify")
    assert verified.exit_code == 0, verified
    again = run_cli(home, "init")
    assert again.exit_code == 0 and ledger_lines(home) == after, "only ever once"

    # The next replicate extends the directory target's locks to the new dates. The fixture's
    # target is a folder inside the home, as a demo has it: this release asks that be said.
    with (home / "ingestd.toml").open("a", encoding="utf-8") as fh:
        fh.write("same_filesystem_ok = true\n")
    report = cli_json(home, "replicate")
    # (A copy recorded before replicas named their location is checked again at the target's
    # place, and locked to the new date as it is: verified again rather than only extended.)
    touched = {x["sha256"] for x in report["locks_extended"] + report["verified"]}
    assert touched == set(stored)
    for sha in stored:
        lock = json.loads((home / "nas" / "locks" / "sha256" / f"{sha}.json").read_text())
        assert lock["retain_until"] >= rows[sha]["retain_until"][:19]
    assert run_cli(home, "ledger", "verify", "--offsite").exit_code == 0
