"""Walking a recorder: names are data; symbolic links are not followed; a folder reached twice
is walked once; patterns ignore case."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingestd.config import DEFAULT_PATTERNS
from ingestd.docks.walk import Skipped, SourceFile, matches, open_source, walk


def found(root: Path, patterns: tuple[str, ...] = DEFAULT_PATTERNS
          ) -> tuple[list[bytes], dict[bytes, str]]:
    files, skipped = [], {}
    for entry in walk(root, patterns):
        if isinstance(entry, Skipped):
            skipped[entry.rel] = entry.reason
        else:
            assert isinstance(entry, SourceFile)
            files.append(entry.rel)
    return files, skipped


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_walks_matching_regular_files_in_a_stable_order(tmp_path: Path) -> None:
    touch(tmp_path / "DCIM" / "100MEDIA" / "B.MP4")
    touch(tmp_path / "DCIM" / "100MEDIA" / "A.MP4")
    touch(tmp_path / "DCIM" / "101MEDIA" / "C.mov")
    touch(tmp_path / "AUDIO" / "r.wav")
    touch(tmp_path / "SYSTEM" / "DEVICE.TXT")
    touch(tmp_path / "SYSTEM" / "firmware.bin")
    files, skipped = found(tmp_path)
    assert files == [b"AUDIO/r.wav", b"DCIM/100MEDIA/A.MP4", b"DCIM/100MEDIA/B.MP4",
                     b"DCIM/101MEDIA/C.mov"]
    assert skipped == {}


def test_source_file_facts(tmp_path: Path) -> None:
    path = touch(tmp_path / "a.mp4", b"12345")
    os.utime(path, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    (entry,) = list(walk(tmp_path, ["*.mp4"]))
    assert isinstance(entry, SourceFile)
    assert entry.size == 5
    assert entry.mtime_ns == 1_700_000_000_123_456_789
    assert entry.path == os.fsencode(tmp_path / "a.mp4")


@pytest.mark.parametrize("name", ["clip.mp4", "CLIP.MP4", "Clip.Mp4", "photo.JPG", "rec.WAV"])
def test_patterns_ignore_case(tmp_path: Path, name: str) -> None:
    touch(tmp_path / name)
    assert found(tmp_path)[0] == [name.encode()]
    # Upper-case patterns match lower-case names too.
    assert found(tmp_path, ("*.MP4", "*.JPG", "*.WAV"))[0] == [name.encode()]


def test_non_matching_names_are_left_alone(tmp_path: Path) -> None:
    touch(tmp_path / "clip.mp4.tmp")
    touch(tmp_path / "mp4")
    touch(tmp_path / "notes.txt")
    assert found(tmp_path) == ([], {})


def test_matches_undecodable_names() -> None:
    assert matches(b"bad\xff.MP4", ["*.mp4"])
    assert not matches(b"bad\xff.txt", ["*.mp4"])


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    touch(outside / "secret.mp4", b"not from the recorder")
    rec = tmp_path / "rec"
    touch(rec / "DCIM" / "real.mp4")
    (rec / "DCIM" / "link.mp4").symlink_to(outside / "secret.mp4")
    (rec / "DCIM" / "dangling.mp4").symlink_to(tmp_path / "nowhere.mp4")
    (rec / "DCIM" / "outside-dir").symlink_to(outside)
    (rec / "up").symlink_to("..")
    files, skipped = found(rec)
    assert files == [b"DCIM/real.mp4"]
    # Every link is reported, whatever it points at: a folder link may hide recordings.
    assert skipped == {b"DCIM/dangling.mp4": "symbolic link (not followed)",
                       b"DCIM/link.mp4": "symbolic link (not followed)",
                       b"DCIM/outside-dir": "symbolic link (not followed)",
                       b"up": "symbolic link (not followed)"}


def test_open_source_refuses_a_symlink(tmp_path: Path) -> None:
    touch(tmp_path / "target.mp4")
    (tmp_path / "link.mp4").symlink_to(tmp_path / "target.mp4")
    with pytest.raises(OSError):
        open_source(os.fsencode(tmp_path / "link.mp4"))
    fd = open_source(os.fsencode(tmp_path / "target.mp4"))
    try:
        with pytest.raises(OSError):
            os.write(fd, b"y")  # opened read-only
    finally:
        os.close(fd)


def test_special_files_with_media_names_are_skipped_not_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.mp4")  # opening it would block forever
    files, skipped = found(tmp_path)
    assert files == []
    assert skipped == {b"pipe.mp4": "not a regular file"}


def test_hostile_names_are_kept_as_bytes(tmp_path: Path) -> None:
    base = os.fsencode(tmp_path)
    names = [b"new\nline.mp4", b"bad\xff\xfe.mp4", b"..mp4", b"...mp4", b"L" * 251 + b".mp4",
             b" space .mp4", b"-rf.mp4"]
    for name in names:
        with open(os.path.join(base, name), "wb") as fh:
            fh.write(b"x")
    files, skipped = found(tmp_path)
    assert sorted(files) == sorted(names)
    assert skipped == {}


@pytest.fixture
def bind_loop(tmp_path: Path) -> Iterator[Path]:
    rec = tmp_path / "rec"
    touch(rec / "DCIM" / "a.mp4")
    loop = rec / "DCIM" / "loop"
    loop.mkdir()
    subprocess.run(["mount", "--bind", str(rec), str(loop)], check=True)
    try:
        yield rec
    finally:
        subprocess.run(["umount", "-l", str(loop)], check=False)


@pytest.mark.root
def test_a_bind_mount_loop_is_walked_once(bind_loop: Path) -> None:
    files, skipped = found(bind_loop)
    assert files == [b"DCIM/a.mp4"]
    assert skipped == {b"DCIM/loop": "folder already walked (loop)"}


@pytest.mark.root
def test_the_same_folder_mounted_twice_is_walked_once(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    touch(rec / "shared" / "a.mp4")
    (rec / "again").mkdir()
    subprocess.run(["mount", "--bind", str(rec / "shared"), str(rec / "again")], check=True)
    try:
        files, skipped = found(rec)
    finally:
        subprocess.run(["umount", "-l", str(rec / "again")], check=False)
    assert files == [b"again/a.mp4"]
    assert skipped == {b"shared": "folder already walked (loop)"}
