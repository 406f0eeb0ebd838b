"""Signed ledger checkpoints can be neither deleted nor replayed.

Each checkpoint is locked in COMPLIANCE mode like evidence; ``ledger verify --offsite`` reads
every version of every checkpoint (a plain DELETE only hides one behind a marker), checks that a
checkpoint's name is its own sequence number, and remembers the newest checkpoint each target
was seen to hold. ``checkpoint`` refuses to publish a history that forks from what a target
holds. The attack each test plays: a home restored from an earlier copy of itself, with the
newer checkpoints deleted or an older one copied over the newest.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError
from conftest import ClipFile, cli_json, ledger_lines, run_cli

from tests.integration.test_replicate import (
    LATEST_LOCK,
    PREFIX,
    Home,
    bucket,  # noqa: F401 - fixtures of the moto module
    clips,  # noqa: F401
    credentials,  # noqa: F401
    make_home,
    s3,  # noqa: F401
    station,  # noqa: F401
)
from tests.support import catalog

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

FOLDER = f"{PREFIX}/checkpoints/"


def kinds(home: Path) -> tuple[int, list[str], list[dict[str, Any]]]:
    result = run_cli(home, "ledger", "verify", "--offsite", "--json")
    problems = result.json()["problems"]
    return result.exit_code, sorted(p["kind"] for p in problems), problems


def backup(home: Home, root: Path) -> Path:
    copy = root / "last-week"
    shutil.copytree(home.home, copy, symlinks=True)
    return copy


def restore(home: Home, copy: Path) -> None:
    shutil.rmtree(home.home)
    shutil.copytree(copy, home.home, symlinks=True)


def checkpoint(home: Home) -> dict[str, Any]:
    sent: dict[str, Any] = cli_json(home.home, "checkpoint")
    assert sent["errors"] == [] and sent["sent"], sent
    return sent


def more_history(home: Home, clip: ClipFile) -> None:
    """A few more signed entries, as a working day adds."""
    cli_json(home.home, "hold", clip.sha256, "--reason", "court order 17")
    cli_json(home.home, "release", clip.sha256, "--reason", "order lifted")


def test_checkpoints_are_locked_like_evidence(station: Home, s3: S3Client,  # noqa: F811
                                              bucket: str) -> None:  # noqa: F811
    cli_json(station.home, "replicate")
    sent = checkpoint(station)
    key = FOLDER + sent["name"]

    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == LATEST_LOCK
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert cli_json(station.home, "ledger", "verify", "--offsite")["ok"] is True


def test_a_deleted_checkpoint_and_a_restored_home_are_a_rollback(
        station: Home, s3: S3Client, bucket: str, tmp_path: Path) -> None:  # noqa: F811
    cli_json(station.home, "replicate")
    checkpoint(station)
    week_ago = backup(station, tmp_path)
    more_history(station, station.clips[0])
    newest = checkpoint(station)
    # the newer checkpoint is deleted (a plain DELETE: a marker hides it) and the home is put
    # back as it was a week ago, so both agree on the shorter history
    s3.delete_object(Bucket=bucket, Key=FOLDER + newest["name"])
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=FOLDER).get("Contents", [])
    assert [o["Key"] for o in listed] != [FOLDER + newest["name"]]
    restore(station, week_ago)
    assert run_cli(station.home, "ledger", "verify").exit_code == 0, "consistent locally"

    code, found, problems = kinds(station.home)

    assert code == 1 and found == ["ledger_truncated"]
    assert str(newest["seq"]) in problems[0]["detail"]


def test_an_older_checkpoint_copied_over_the_newest_is_caught(
        station: Home, s3: S3Client, bucket: str, tmp_path: Path) -> None:  # noqa: F811
    cli_json(station.home, "replicate")
    old = checkpoint(station)
    week_ago = backup(station, tmp_path)
    more_history(station, station.clips[0])
    newest = checkpoint(station)
    s3.copy_object(Bucket=bucket, Key=FOLDER + newest["name"],
                   CopySource={"Bucket": bucket, "Key": FOLDER + old["name"]},
                   MetadataDirective="COPY")
    restore(station, week_ago)

    code, found, problems = kinds(station.home)

    assert code == 1 and found == ["checkpoint_misnamed", "ledger_truncated"]
    misnamed = next(p for p in problems if p["kind"] == "checkpoint_misnamed")
    assert newest["name"] in misnamed["detail"] and misnamed["seq"] == old["seq"]


def test_checkpoint_refuses_to_publish_a_forked_history(
        station: Home, s3: S3Client, bucket: str, tmp_path: Path) -> None:  # noqa: F811
    cli_json(station.home, "replicate")
    checkpoint(station)
    week_ago = backup(station, tmp_path)
    more_history(station, station.clips[0])
    newest = checkpoint(station)
    restore(station, week_ago)

    # behind the target: the restored ledger ends before the target's newest checkpoint
    behind = run_cli(station.home, "checkpoint", "--json")
    assert behind.exit_code == 1
    assert "not publishing" in behind.json()["errors"][0]
    assert "ALARM" in behind.stderr

    # then it grows past it with other entries: a fork of what the target witnesses
    more_history(station, station.clips[1])
    more_history(station, station.clips[2])
    forked = run_cli(station.home, "checkpoint", "--json")
    assert forked.exit_code == 1 and forked.json()["sent"] == []
    assert "forked" in forked.json()["errors"][0]
    names = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=FOLDER)["Contents"]]
    assert names[-1] == FOLDER + newest["name"], "nothing published over the fork"
    code, found, _ = kinds(station.home)
    assert code == 1 and found == ["ledger_rewritten"]


def nas_home(tmp_path: Path, clips: list[ClipFile]) -> tuple[Home, Path]:  # noqa: F811
    nas = tmp_path / "nas"
    nas.mkdir()
    home = make_home(tmp_path, clips)
    home.add_target(f'[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\n'
                    f'prefix = "{PREFIX}"\nsame_filesystem_ok = true\n')
    cli_json(home.home, "replicate")
    return home, nas


def test_a_directory_target_records_the_checkpoint_lock(
        tmp_path: Path, clips: list[ClipFile]) -> None:  # noqa: F811
    home, nas = nas_home(tmp_path, clips)
    sent = checkpoint(home)
    lock = json.loads((nas / PREFIX / "locks" / "checkpoints" /
                       f"{sent['name'].removesuffix('.json')}.json").read_text())
    assert datetime.fromisoformat(lock["retain_until"]) == LATEST_LOCK


def test_a_directory_target_that_lost_its_newest_checkpoint_is_reported(
        tmp_path: Path, clips: list[ClipFile]) -> None:  # noqa: F811
    home, nas = nas_home(tmp_path, clips)
    checkpoint(home)
    more_history(home, clips[0])
    newest = checkpoint(home)
    assert cli_json(home.home, "ledger", "verify", "--offsite")["ok"] is True

    (nas / PREFIX / "checkpoints" / newest["name"]).unlink()  # a share has no WORM

    code, found, problems = kinds(home.home)
    assert code == 1 and found == ["checkpoint_missing"]
    assert newest["name"] in problems[0]["detail"]


def test_a_target_that_fails_does_not_hide_another_whose_name_it_contains(
        tmp_path: Path, clips: list[ClipFile]) -> None:  # noqa: F811
    # "nas" is in "nas-b", and in every error about it: which targets went unchanged is
    # known by target, not read from the errors' words.
    home, _ = nas_home(tmp_path, clips)
    other = tmp_path / "nas-b"
    other.mkdir()
    home.add_target(f'[[targets]]\nname = "nas-b"\ntype = "directory"\npath = "{other}"\n'
                    f'prefix = "{PREFIX}"\nsame_filesystem_ok = true\n')
    cli_json(home.home, "replicate")
    assert sorted(checkpoint(home)["sent"]) == ["nas", "nas-b"]
    folder = other / PREFIX / "checkpoints"
    shutil.rmtree(folder)
    folder.write_bytes(b"")  # its checkpoints can no longer be listed

    again = run_cli(home.home, "checkpoint", "--json")

    assert again.exit_code == 1
    result = again.json()
    assert result["sent"] == [] and len(result["errors"]) == 1
    assert "nas-b" in result["errors"][0]
    assert result["unchanged"] == ["nas"]


def test_an_unreadable_entry_does_not_stop_the_offsite_check(
        tmp_path: Path, clips: list[ClipFile]) -> None:  # noqa: F811
    home, _ = nas_home(tmp_path, clips)
    checkpoint(home)
    stored = ledger_lines(home.home, "stored")[0]["seq"]
    assert catalog.tamper(home.home, "UPDATE ledger SET data = 'not json' WHERE seq = ?",
                          stored) == 1

    code, found, problems = kinds(home.home)

    assert code == 1
    assert "entry_unreadable" in found and "checkpoint_missing" not in found
    # The checkpoint vouches for the stored hash, which is still the ledger's.
    assert "ledger_rewritten" not in found
