"""DirectoryTarget on real folders: a temp folder, and small tmpfs mounts for a full or
read-only share."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import ClipFile, random_file

from ingestd.config import DirectoryTargetSettings
from ingestd.errors import ObjectDamaged, ReplicaMismatch, TargetError, TargetUnreachable
from ingestd.targets import Lock, Target
from ingestd.targets.directory import DirectoryTarget
from tests.support.damage import flip_bit, flipped

pytestmark = pytest.mark.integration


@pytest.fixture
def blob(tmp_path: Path) -> ClipFile:
    source = tmp_path / "store"
    source.mkdir()
    return random_file(source / "blob", 3 * 1024 * 1024 + 17)  # not a multiple of the 4 MiB buffer


@pytest.fixture
def share(tmp_path: Path) -> Path:
    folder = tmp_path / "nas"
    folder.mkdir()
    return folder


def nas(path: Path, prefix: str, *, local: Path | None = None, **keys: Any) -> DirectoryTarget:
    """A target as a ``[[targets]]`` table named "nas" makes it (``keys`` the table's others)."""
    settings = DirectoryTargetSettings(name="nas", path=path, prefix=prefix,
                                       **keys)
    return DirectoryTarget(settings, local=local)


@pytest.fixture
def target(share: Path) -> DirectoryTarget:
    return nas(share, "station-1")


def days(n: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=n)


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_target_satisfies_the_protocol(target: DirectoryTarget) -> None:
    checked: Target = target
    assert checked.name == "nas" and checked.required is True


def test_put_head_rehash(target: DirectoryTarget, share: Path, blob: ClipFile) -> None:
    target.check()
    until = days(365)
    remote = target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=until))

    stored = share / "station-1" / "sha256" / blob.sha256
    assert stored.read_bytes() == blob.path.read_bytes()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o444
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o750
    assert remote.key == f"station-1/sha256/{blob.sha256}"
    assert remote.size == blob.size and remote.sha256 == blob.sha256
    assert remote.retain_until == until and remote.legal_hold is False
    assert remote.read_back is True  # hashed from the share, the cache dropped
    assert target.head_item(blob.sha256) == dataclasses.replace(remote, read_back=False)
    assert target.rehash_item(blob.sha256) == blob.sha256
    assert temp_files(share) == []


def test_missing_item(target: DirectoryTarget, blob: ClipFile) -> None:
    assert target.head_item(blob.sha256) is None
    with pytest.raises(TargetError, match="no such item") as caught:
        target.rehash_item(blob.sha256)
    assert "'nas'" in str(caught.value) and blob.sha256 in str(caught.value)
    with pytest.raises(TargetError, match="no such item"):
        target.set_lock(blob.sha256, Lock(retain_until=days(1)))


def test_reput_of_a_good_copy_does_not_rewrite(
    target: DirectoryTarget, share: Path, blob: ClipFile
) -> None:
    target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=None))
    stored = share / "station-1" / "sha256" / blob.sha256
    before = stored.stat()
    target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=None))
    after = stored.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_damaged_copy_is_detected_and_replaced(
    target: DirectoryTarget, share: Path, blob: ClipFile
) -> None:
    target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=None))
    stored = share / "station-1" / "sha256" / blob.sha256
    flip_bit(stored, blob.size // 2)  # same size

    assert target.rehash_item(blob.sha256) != blob.sha256
    inode = stored.stat().st_ino
    damaged = stored.read_bytes()
    repaired = target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=None))
    assert repaired.sha256 == blob.sha256 and repaired.read_back is True
    assert stored.stat().st_ino != inode, "a new file took the damaged one's place"
    assert target.rehash_item(blob.sha256) == blob.sha256
    # the bad copy is kept for investigation, not destroyed
    assert repaired.set_aside is not None
    assert repaired.set_aside.startswith(f"station-1/damaged/{blob.sha256}.")
    kept = share / repaired.set_aside
    assert kept.stat().st_ino == inode and kept.read_bytes() == damaged

    with stored.open("r+b") as handle:
        handle.truncate(10)
    seen = target.head_item(blob.sha256)
    assert seen is not None and seen.size == 10  # a truncated copy shows in head alone


def test_damaged_source_is_refused_and_leaves_nothing(
    target: DirectoryTarget, share: Path, blob: ClipFile
) -> None:
    damaged = blob.path.with_name("damaged")
    damaged.write_bytes(flipped(blob.path.read_bytes(), 0))
    with pytest.raises(ObjectDamaged):
        target.put_item(blob.sha256, damaged, blob.size, Lock(retain_until=None))
    assert target.head_item(blob.sha256) is None
    assert temp_files(share) == []


def test_stale_temp_file_of_a_killed_write_is_cleaned(
    target: DirectoryTarget, share: Path, blob: ClipFile
) -> None:
    folder = share / "station-1" / "sha256"
    folder.mkdir(parents=True)
    stale = folder / f".{blob.sha256}.0123456789abcdef.tmp"
    stale.write_bytes(b"half a copy")
    target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=None))
    assert not stale.exists() and temp_files(share) == []


def test_locks_are_recorded_extended_never_shortened(
    target: DirectoryTarget, share: Path, blob: ClipFile
) -> None:
    later = days(400)
    target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=later))

    shorter = target.set_lock(blob.sha256, Lock(retain_until=days(30), legal_hold=True))
    assert shorter.retain_until == later and shorter.legal_hold is True
    longest = days(4000)
    extended = target.set_lock(blob.sha256, Lock(retain_until=longest, legal_hold=False))
    assert extended.retain_until == longest and extended.legal_hold is False
    # a later put with no retention keeps what is recorded
    again = target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=None))
    assert again.retain_until == longest

    record = json.loads(
        (share / "station-1" / "locks" / "sha256" / f"{blob.sha256}.json").read_text()
    )
    assert record == {"enforced": False, "legal_hold": False, "retain_until": longest.isoformat()}
    with pytest.raises(ValueError, match="timezone"):
        target.set_lock(blob.sha256, Lock(retain_until=datetime(2030, 1, 1)))


def test_unreadable_lock_record_is_not_overwritten(
    target: DirectoryTarget, share: Path, blob: ClipFile
) -> None:
    target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=days(10)))
    record = share / "station-1" / "locks" / "sha256" / f"{blob.sha256}.json"
    record.chmod(0o644)
    record.write_text("{not json")
    with pytest.raises(TargetError, match="lock record unreadable"):
        target.set_lock(blob.sha256, Lock(retain_until=days(1)))
    assert record.read_text() == "{not json"


def test_manifest_written_once_and_locked(
    target: DirectoryTarget, share: Path, blob: ClipFile
) -> None:
    manifest = b'{"item": "%s"}' % blob.sha256.encode()
    target.put_manifest(blob.sha256, manifest, Lock(retain_until=days(5), legal_hold=True))
    path = share / "station-1" / "manifests" / f"{blob.sha256}.json"
    inode = path.stat().st_ino
    target.put_manifest(blob.sha256, manifest, Lock(retain_until=days(5), legal_hold=True))
    assert path.read_bytes() == manifest and path.stat().st_ino == inode
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    record = json.loads(
        (share / "station-1" / "locks" / "manifests" / f"{blob.sha256}.json").read_text()
    )
    assert record["legal_hold"] is True
    target.put_manifest(blob.sha256, manifest + b"\n", Lock(retain_until=days(5)))
    assert path.read_bytes() == manifest + b"\n"
    assert temp_files(share) == []


def test_checkpoints(target: DirectoryTarget, share: Path) -> None:
    assert target.list_checkpoints() == []
    target.put_checkpoint("000002.json", b'{"seq": 2}')
    target.put_checkpoint("000001.json", b'{"seq": 1}')
    target.put_checkpoint("000001.json", b'{"seq": 1}')
    (share / "station-1" / "checkpoints" / ".000003.json.1.2.tmp").write_bytes(b"partial")
    assert target.list_checkpoints() == ["000001.json", "000002.json"]
    assert target.get_checkpoint("000002.json") == b'{"seq": 2}'
    with pytest.raises(TargetError, match="refusing to overwrite"):
        target.put_checkpoint("000002.json", b'{"seq": 2, "forged": true}')
    with pytest.raises(TargetError, match="no such checkpoint"):
        target.get_checkpoint("000009.json")
    with pytest.raises(ValueError):
        target.get_checkpoint("../../etc/passwd")


def test_check_refuses_a_missing_share(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="not mounted"):
        nas(tmp_path / "absent", "").check()
    blob = random_file(tmp_path / "blob", 10)
    with pytest.raises(TargetError):
        nas(tmp_path / "absent", "").put_item(
            blob.sha256, blob.path, blob.size, Lock(retain_until=None)
        )
    assert not (tmp_path / "absent").exists(), "the share's folder is never created"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a share that fills up (mounting needs root)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(mountpoint)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.mark.root
def test_full_share_gives_target_error_and_leaves_no_temp(tmpfs: Path, blob: ClipFile) -> None:
    target = nas(tmpfs, "")
    target.check()
    with pytest.raises(TargetError, match="target full") as caught:
        target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=None))
    assert caught.value.exit_code == 9
    assert temp_files(tmpfs) == []
    assert target.head_item(blob.sha256) is None


@pytest.mark.root
def test_read_only_share_is_refused_by_check(tmpfs: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    with pytest.raises(TargetError, match="not writable"):
        nas(tmpfs, "station-1").check()


# -- proving the share is the share ------------------------------------------------------------


def test_the_share_is_known_by_the_identity_it_was_given_at_first_use(
    target: DirectoryTarget, share: Path, tmp_path: Path
) -> None:
    identity = target.identify(None)
    marker = share / "station-1" / ".ingestd-target.json"
    assert json.loads(marker.read_text())["identity"] == identity
    assert target.identify(identity) == identity
    assert target.identify(None) == identity, "a marker already there is adopted, not replaced"

    # the share did not mount: its mount point is an empty folder
    share.rename(tmp_path / "elsewhere")
    share.mkdir()
    with pytest.raises(TargetUnreachable, match="no identity file") as caught:
        target.identify(identity)
    assert "not mounted" in str(caught.value)
    assert list(share.iterdir()) == [], "nothing is written to the empty folder"

    # another share mounted there
    other = nas(share, "station-1")
    other.identify(None)
    with pytest.raises(TargetUnreachable, match="another share"):
        target.identify(identity)


def test_a_path_on_the_stores_own_file_system_is_refused_unless_allowed(
    share: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    with pytest.raises(TargetUnreachable, match="same file system as the local store"):
        nas(share, "", local=store).check()
    nas(share, "", local=store, same_filesystem_ok=True).check()


def test_rehash_of_a_missing_copy_is_a_mismatch_not_an_outage(
    target: DirectoryTarget, blob: ClipFile
) -> None:
    with pytest.raises(ReplicaMismatch):
        target.rehash_item(blob.sha256)


@pytest.mark.root
def test_a_path_not_on_the_file_system_mounted_at_mount_point_is_refused(
    tmpfs: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    mounted = nas(tmpfs, "", mount_point=tmpfs, local=store)
    mounted.check()  # a tmpfs of its own: another file system than the store's
    subprocess.run(["umount", str(tmpfs)], check=True)
    with pytest.raises(TargetUnreachable, match=f"not on a file system mounted at {tmpfs}"):
        mounted.check()
    assert list(tmpfs.iterdir()) == []
