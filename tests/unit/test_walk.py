"""Walking a recorder: names are data; symbolic links are not followed; a folder reached twice
is walked once; patterns ignore case; everything not taken is yielded with its kind; only a
regular file no pattern took can be one of the recorder's own files, ignored."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingestd.config import DEFAULT_PATTERNS
from ingestd.docks.walk import (
    MAX_DEPTH,
    SkipKind,
    Skipped,
    SourceFile,
    matches,
    open_regular,
    open_source,
    walk,
)
from ingestd.errors import NotRegularFile


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


def kinds(root: Path, patterns: tuple[str, ...] = DEFAULT_PATTERNS) -> dict[bytes, SkipKind]:
    return {e.rel: e.kind for e in walk(root, patterns) if isinstance(e, Skipped)}


UNMATCHED = "name matches no configured pattern"


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
    assert skipped == {b"SYSTEM/DEVICE.TXT": UNMATCHED, b"SYSTEM/firmware.bin": UNMATCHED}


def test_only_unmatched_regular_files_at_an_ignored_path_are_ignored(tmp_path: Path) -> None:
    touch(tmp_path / "SYSTEM" / "DEVICE.TXT")
    touch(tmp_path / "SYSTEM" / "LOGS" / "boot.log")
    touch(tmp_path / "SYSTEM" / "A0001.MP4")  # footage where no footage should be: taken
    touch(tmp_path / "DCIM" / "notes.txt")
    os.symlink("../DCIM", tmp_path / "SYSTEM" / "link")
    os.mkfifo(tmp_path / "SYSTEM" / "pipe")
    kinds = {}
    taken = []
    for entry in walk(tmp_path, DEFAULT_PATTERNS, ignore=["system/*"]):  # case ignored
        if isinstance(entry, Skipped):
            kinds[entry.rel] = entry.kind
        else:
            taken.append(entry.rel)
    assert taken == [b"SYSTEM/A0001.MP4"]
    assert kinds == {
        b"DCIM/notes.txt": SkipKind.UNMATCHED,
        b"SYSTEM/DEVICE.TXT": SkipKind.IGNORED,
        b"SYSTEM/LOGS/boot.log": SkipKind.IGNORED,  # a shell pattern's * spans folders
        b"SYSTEM/link": SkipKind.SYMLINK,
        b"SYSTEM/pipe": SkipKind.FIFO,
    }
    plain = {e.rel: e.kind for e in walk(tmp_path, DEFAULT_PATTERNS) if isinstance(e, Skipped)}
    assert plain[b"SYSTEM/DEVICE.TXT"] == SkipKind.UNMATCHED  # nothing is ignored unless named


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


def test_non_matching_names_are_not_taken_but_reported(tmp_path: Path) -> None:
    # Perhaps footage under an unexpected extension: never silently passed over.
    touch(tmp_path / "clip.mp4.tmp")
    touch(tmp_path / "mp4")
    touch(tmp_path / "notes.txt")
    assert found(tmp_path) == ([], {b"clip.mp4.tmp": UNMATCHED, b"mp4": UNMATCHED,
                                    b"notes.txt": UNMATCHED})
    assert set(kinds(tmp_path).values()) == {SkipKind.UNMATCHED}


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


def test_special_files_are_skipped_by_kind_not_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.mp4")  # opening it would block forever
    os.mkfifo(tmp_path / "pipe")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock.mp4"))
        files, skipped = found(tmp_path)
        found_kinds = kinds(tmp_path)
    assert files == []
    assert skipped[b"pipe.mp4"] == "FIFO (named pipe), not a regular file (not read)"
    assert found_kinds == {b"pipe.mp4": SkipKind.FIFO, b"pipe": SkipKind.FIFO,
                           b"sock.mp4": SkipKind.SOCKET}


@pytest.mark.root
def test_a_device_node_is_skipped_as_a_device(tmp_path: Path) -> None:
    os.mknod(tmp_path / "null.mp4", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    assert kinds(tmp_path) == {b"null.mp4": SkipKind.DEVICE}
    with pytest.raises(NotRegularFile, match="device, not a regular file"):
        open_source(os.fsencode(tmp_path / "null.mp4"))


def test_folders_deeper_than_the_limit_are_reported_not_walked(tmp_path: Path) -> None:
    deep = tmp_path
    for level in range(MAX_DEPTH + 2):
        deep = deep / f"d{level}"
    touch(deep / "lost.mp4")
    touch(tmp_path / "d0" / "kept.mp4")
    files, skipped = found(tmp_path)
    assert files == [b"d0/kept.mp4"]
    too_deep = b"/".join(b"d%d" % n for n in range(MAX_DEPTH + 1))
    assert kinds(tmp_path) == {too_deep: SkipKind.TOO_DEEP}
    assert f"deeper than {MAX_DEPTH} levels" in skipped[too_deep]
    # The limit is the walk's parameter: a shallower one cuts higher.
    assert {e.rel: e.kind for e in walk(tmp_path, DEFAULT_PATTERNS, max_depth=1)
            if isinstance(e, Skipped)} == {b"d0/d1": SkipKind.TOO_DEEP}


def _within(seconds: float, call: Callable[[], object]) -> object:
    """Run ``call`` on a thread; fail (instead of hanging the suite) if it does not return."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    return outcome[0]


@pytest.mark.parametrize("opener", [open_source, open_regular])
def test_opening_a_fifo_is_refused_at_once(tmp_path: Path,
                                           opener: Callable[[bytes], int]) -> None:
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    try:
        got = _within(10, lambda: opener(os.fsencode(fifo)))
    finally:
        # Should the open be blocked after all, a writer releases it.
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert isinstance(got, NotRegularFile)
    assert "FIFO (named pipe), not a regular file" in got.message
    assert "clip.mp4" in got.message


def test_open_source_reads_a_regular_file_in_blocking_mode(tmp_path: Path) -> None:
    path = touch(tmp_path / "a.mp4", b"12345")
    fd = open_source(os.fsencode(path))
    try:
        assert os.get_blocking(fd)
        assert os.read(fd, 10) == b"12345"
    finally:
        os.close(fd)


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
