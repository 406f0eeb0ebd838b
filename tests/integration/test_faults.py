"""Faults on purpose: kill -9 in the middle of an ingest, a full disk, a flipped bit in the store,
files that change while they are copied."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    OFFICER,
    SERIAL,
    ClipFile,
    Clips,
    FakeClock,
    build_recorder,
    cli_json,
    init_station,
    ledger_lines,
    open_station,
    partial_files,
    run_cli,
    run_ingestd,
    sha256_of,
    snapshot_tree,
    start_ingestd,
    store_objects,
    wait_for,
)

from ingestd.docks.walk import SourceFile
from ingestd.usecases.ingest import Ingestor, IngestReport
from tests.support import catalog
from tests.support.damage import flip_bit

pytestmark = pytest.mark.integration

MEDIA = "DCIM/100MEDIA"


def object_path(home: Path, sha: str, store: Path | None = None) -> Path:
    root = store or home / "store"
    return root / "objects" / "sha256" / sha[:2] / sha[2:4] / sha


def assert_catalog_items_intact(home: Path, store: Path | None = None) -> set[str]:
    """Every item the catalog says is stored hashes correctly from the store."""
    items = cli_json(home, "items")["items"]
    for row in items:
        path = object_path(home, row["sha256"], store)
        assert path.is_file(), f"item {row['sha256']} has no object"
        assert path.stat().st_size == row["size"]
        assert sha256_of(path) == row["sha256"]
    return {r["sha256"] for r in items}


def stored_entries(home: Path) -> list[str]:
    return [e["item"] for e in ledger_lines(home, "stored")]


# -- kill -9 ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crash_recorder(tmp_path_factory: pytest.TempPathFactory, big_clips: list[ClipFile],
                   clips: Clips) -> tuple[Path, dict[str, str]]:
    """A recorder of a few MiB per file (so a kill lands inside copies), with one clip twice
    under two names. Returns the folder and {path: sha256}."""
    files: dict[str, ClipFile | bytes] = {f"{MEDIA}/BIG{i}.MP4": c for i, c in
                                          enumerate(big_clips)}
    files[f"{MEDIA}/COPY_OF_BIG0.MP4"] = big_clips[0]
    files[f"{MEDIA}/SMALL.MP4"] = clips.a
    files[f"{MEDIA}/EMPTY.MP4"] = b""
    rec = build_recorder(tmp_path_factory.mktemp("crash") / "rec", files)
    expected = {path: sha256_of(rec / path) for path in files}
    return rec, expected


def wait_for_dock(home: Path, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    """Until the ingest process has recorded the dock (its work has begun), or has ended."""
    mirror = home / "ledger.jsonl"

    def docked() -> bool:
        return proc.poll() is not None or (
            mirror.exists() and '"kind": "docked"' in mirror.read_text(encoding="utf-8"))

    try:
        wait_for(docked, timeout=timeout, interval=0.005, what="the ingest to start")
    except BaseException:
        proc.kill()
        raise


@pytest.fixture(scope="module")
def work_time(tmp_path_factory: pytest.TempPathFactory,
              crash_recorder: tuple[Path, dict[str, str]]) -> float:
    """How long an uninterrupted ingest of the crash recorder works after the dock."""
    rec, _ = crash_recorder
    home = init_station(tmp_path_factory.mktemp("baseline") / "home",
                        register={SERIAL: (OFFICER, "1")})
    proc = start_ingestd(home, "ingest", rec, "--serial", SERIAL, "--json")
    wait_for_dock(home, proc)
    started = time.monotonic()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return time.monotonic() - started


def kill_when(home: Path, proc: subprocess.Popen[str], point: str, n: int,
              work_time: float) -> str:
    """Wait for the chosen moment of the ingest, then kill -9. Returns what was waited for."""
    tmp = home / "store" / "tmp"
    mirror = home / "ledger.jsonl"
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    if point == "random":
        time.sleep(random.Random(n).uniform(0, work_time * 0.9))
    while point != "random" and proc.poll() is None and time.monotonic() < deadline:
        if point == "copying":
            seen.update(name for name in os.listdir(tmp) if name.endswith(".partial"))
            if len(seen) >= n:
                break
        elif mirror.read_text(encoding="utf-8").count('"kind": "stored"') >= n:
            break
        time.sleep(0.0005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    return f"{point} {n}"


#: Where to kill: while the n-th file is being copied, right after the n-th item was stored,
#: or at a random moment (n is the seed).
KILL_POINTS = [("copying", 1), ("copying", 4), ("stored", 2), ("random", 1), ("random", 2),
               ("random", 3)]


@pytest.mark.slow
@pytest.mark.parametrize(("point", "n"), KILL_POINTS)
def test_kill_9_then_ingest_again_loses_and_duplicates_nothing(
        tmp_path: Path, crash_recorder: tuple[Path, dict[str, str]], work_time: float,
        point: str, n: int) -> None:
    rec, expected = crash_recorder
    home = init_station(tmp_path / "home", register={SERIAL: (OFFICER, "1")})

    proc = start_ingestd(home, "ingest", rec, "--serial", SERIAL, "--json")
    wait_for_dock(home, proc)
    moment = kill_when(home, proc, point, n, work_time)

    # Whatever the killed process left marked stored is intact.
    left = assert_catalog_items_intact(home)
    print(f"killed at {moment} (exit {proc.returncode}): {len(left)} items stored, "
          f"{len(partial_files(home))} temp files left")

    again = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json")
    assert again.exit_code == 0, again.stderr
    report = again.json()
    assert report["errors"] == []
    assert {i["path"]: i["sha256"] for i in report["items"]} == expected

    # Each distinct content is one item, stored and verified exactly once.
    distinct = set(expected.values())
    assert assert_catalog_items_intact(home) == distinct
    assert set(store_objects(home)) == distinct
    stored = stored_entries(home)
    assert sorted(stored) == sorted(distinct), "each item has exactly one 'stored' entry"
    # Acquisitions are consistent: every finished one names an existing item, and the last
    # session acquired every file.
    acqs = catalog.acquisitions(home)
    for a in acqs:
        if a["state"] in ("stored", "known"):
            assert a["item"] in distinct
    last = max(a["session_id"] for a in acqs)
    assert sorted(a["path"] for a in acqs if a["session_id"] == last and
                  a["state"] in ("stored", "known")) == sorted(expected)
    # Nothing half-written is left, and the ledger holds together.
    assert partial_files(home) == []
    verify = run_cli(home, "ledger", "verify", "--json")
    assert verify.exit_code == 0, verify.stdout
    assert verify.json()["ok"] is True


# -- disk full -------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 12 MiB file system of its own (tmpfs with size=)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m,mode=0755", "tmpfs", str(mnt)],
                   check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.root
def test_disk_full_is_a_clear_error_and_nothing_partial_is_stored(
        tmp_path: Path, small_fs: Path, big_clips: list[ClipFile]) -> None:
    store = small_fs / "store"
    home = init_station(tmp_path / "home", config=f'store = "{store}"\n',
                        register={SERIAL: (OFFICER, "1")})
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * (8 * 2**20))  # leaves 4 MiB: room for one 3 MB clip
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/BIG{i}.MP4": c for i, c in
                                            enumerate(big_clips[:3])})

    full = run_cli(home, "ingest", rec, "--serial", SERIAL)
    assert full.exit_code == 5, (full.stdout, full.stderr)
    assert str(store) in full.stderr
    assert "full" in full.stderr
    # It names the recorder file it was storing when the disk filled.
    assert re.search(rf"storing {MEDIA}/BIG[012]\.MP4: evidence store", full.stderr), full.stderr

    stored = assert_catalog_items_intact(home, store)
    assert len(stored) < 3
    assert set(store_objects_at(store)) == stored
    assert partial_files(store) == []
    acquisitions = catalog.acquisitions(home)
    failed = [a for a in acquisitions if a["state"] == "failed"]
    # The files in hand when the store filled (parallel_files of them at most) failed with
    # it, each saying why; none is left half-way, and no file was started after.
    assert 1 <= len(failed) <= 2 and all("full" in a["error"] for a in failed), failed
    assert {a["state"] for a in acquisitions} <= {"stored", "failed"}
    status = run_cli(home, "status", "--json").json()
    assert status["docks"][0]["state"] == "failed"
    assert run_cli(home, "ledger", "verify").exit_code == 0

    filler.unlink()
    done = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json")
    assert done.exit_code == 0, done.stderr
    assert {i["sha256"] for i in done.json()["items"]} == {c.sha256 for c in big_clips[:3]}
    assert assert_catalog_items_intact(home, store) == {c.sha256 for c in big_clips[:3]}
    assert partial_files(store) == []
    assert run_cli(home, "ledger", "verify").exit_code == 0


def store_objects_at(store: Path) -> dict[str, Path]:
    return {p.name: p for p in (store / "objects" / "sha256").rglob("*") if p.is_file()}


# -- a flipped bit ---------------------------------------------------------------------------


def test_flipped_bit_is_found_by_verify_and_audit(home: Path, tmp_path: Path,
                                                  clips: Clips) -> None:
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a, f"{MEDIA}/B.MP4": clips.b})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    assert run_cli(home, "audit", "--all").exit_code == 0
    flip_bit(object_path(home, clips.a.sha256), offset=clips.a.size // 2)

    by_hash = run_cli(home, "verify", "--hash", clips.a.sha256, "--json")
    assert by_hash.exit_code == 1
    (verdict,) = by_hash.json()["results"]
    assert verdict["match"] is False
    assert any("damaged" in p for p in verdict["problems"])

    # The officer's original file is intact, but our stored copy is not: no match.
    by_file = run_cli(home, "verify", rec / MEDIA / "A.MP4")
    assert by_file.exit_code == 1
    assert "NO MATCH" in by_file.stdout and "damaged" in by_file.stdout

    assert run_cli(home, "verify", "--hash", clips.b.sha256).exit_code == 0

    audit = run_cli(home, "audit", "--all", "--json")
    assert audit.exit_code == 1
    report = audit.json()
    assert report["checked"] == 2
    assert [f["sha256"] for f in report["failures"]] == [clips.a.sha256]
    assert "damaged" in report["failures"][0]["problem"]
    text = run_cli(home, "audit", "--all")
    assert text.exit_code == 1
    assert clips.a.sha256[:16] in text.stdout and "FAILURES" in text.stdout
    shown = run_cli(home, "show", clips.a.sha256, "--json").json()
    assert "fixity_failed" in shown["item"]["flags"]
    # The audits are custody events, and the ledger itself is intact.
    assert [h["kind"] for h in shown["history"]].count("audited") == 3
    assert run_cli(home, "ledger", "verify").exit_code == 0


# -- files that change while they are copied -------------------------------------------------


def test_a_file_growing_during_the_copy_is_never_stored_with_wrong_bytes(
        tmp_path: Path) -> None:
    clock = FakeClock()
    home = init_station(tmp_path / "home", clock=clock, register={SERIAL: (OFFICER, "1")},
                        config='[ingest]\nbuffer_size = "64KiB"\nchanged_retries = 2\n')
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/GROWING.MP4": os.urandom(24 * 2**20)})
    growing = rec / MEDIA / "GROWING.MP4"
    stop = threading.Event()

    def grow() -> None:
        with growing.open("ab") as fh:
            while not stop.is_set():
                fh.write(os.urandom(64 * 1024))
                fh.flush()
                time.sleep(0.001)

    writer = threading.Thread(target=grow, daemon=True)

    def progress(event: str, src: SourceFile | None, _n: int) -> None:
        if event == "file" and not writer.is_alive():
            writer.start()  # the recorder keeps writing while ingestd copies

    station = open_station(home, clock)
    try:
        report = Ingestor(station).ingest(rec, serial=SERIAL, progress=progress)
    finally:
        stop.set()
        writer.join()
        station.close()
    (item,) = report.items
    final = growing.read_bytes()
    obj = object_path(home, item.sha256)
    assert sha256_of(obj) == item.sha256, "the stored object must match its hash"
    if "changed_during_copy" in item.flags:
        # What was kept is what the recorder held at one moment: a prefix of the final file.
        assert item.size < len(final)
        assert sha256_of(final[:item.size]) == item.sha256
    else:
        assert item.sha256 == sha256_of(final)
    assert assert_catalog_items_intact(home) == {item.sha256}
    assert run_cli(home, "ledger", "verify").exit_code == 0


@pytest.fixture
def append_during_copy(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Appends to the file being copied, right after each of the first N copies read it.
    The test puts the file in the list once per copy that should see a change."""
    import ingestd.store as store_mod

    real = store_mod.copy_hash_and_check
    pending: list[Path] = []

    def copy_and_change(src_fd: int, dst_fd: int, dst_path: Path,
                        **kw: object) -> object:
        digests = real(src_fd, dst_fd, dst_path, **kw)  # type: ignore[arg-type]
        if pending:
            with pending.pop(0).open("ab") as fh:
                fh.write(b"more footage")
        return digests

    monkeypatch.setattr(store_mod, "copy_hash_and_check", copy_and_change)
    return pending


def test_a_file_that_changed_once_is_read_again(tmp_path: Path, clips: Clips,
                                                append_during_copy: list[Path]) -> None:
    clock = FakeClock()
    home = init_station(tmp_path / "home", clock=clock, register={SERIAL: (OFFICER, "1")})
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    append_during_copy.append(rec / MEDIA / "A.MP4")
    station = open_station(home, clock)
    try:
        report = Ingestor(station).ingest(rec, serial=SERIAL)
    finally:
        station.close()
    (item,) = report.items
    assert item.sha256 == sha256_of(rec / MEDIA / "A.MP4") != clips.a.sha256
    assert "changed_during_copy" not in item.flags
    assert assert_catalog_items_intact(home) == {item.sha256}


def test_a_file_that_keeps_changing_is_kept_and_flagged(tmp_path: Path, clips: Clips,
                                                        append_during_copy: list[Path]) -> None:
    clock = FakeClock()
    home = init_station(tmp_path / "home", clock=clock, register={SERIAL: (OFFICER, "1")},
                        config="[ingest]\nchanged_retries = 2\n")
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    source = rec / MEDIA / "A.MP4"
    append_during_copy.extend([source] * 3)  # every attempt sees a change
    station = open_station(home, clock)
    try:
        report = Ingestor(station).ingest(rec, serial=SERIAL)
    finally:
        station.close()
    (item,) = report.items
    assert "changed_during_copy" in item.flags
    final = source.read_bytes()
    # The last read is what is kept: the file as it was before the last append.
    assert item.sha256 == sha256_of(final[: -len(b"more footage")])
    assert assert_catalog_items_intact(home) == {item.sha256}
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_unstable_reads_leave_no_objects_behind(tmp_path: Path, clips: Clips,
                                                append_during_copy: list[Path]) -> None:
    clock = FakeClock()
    home = init_station(tmp_path / "home", clock=clock, register={SERIAL: (OFFICER, "1")},
                        config="[ingest]\nchanged_retries = 2\n")
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    append_during_copy.extend([rec / MEDIA / "A.MP4"] * 3)
    station = open_station(home, clock)
    try:
        Ingestor(station).ingest(rec, serial=SERIAL)
    finally:
        station.close()
    assert set(store_objects(home)) == assert_catalog_items_intact(home)


def test_a_file_rewritten_in_place_with_its_time_put_back_is_read_again(
        tmp_path: Path, clips: Clips, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the first copy reads it, the file is rewritten in place, same size, and its
    modification time is set back to what it was: only its change time tells. The copy
    is not taken for a stable one; the file is read again and what is stored is what the
    recorder now holds."""
    import ingestd.store as store_mod

    clock = FakeClock()
    home = init_station(tmp_path / "home", clock=clock, register={SERIAL: (OFFICER, "1")})
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    source = rec / MEDIA / "A.MP4"
    real = store_mod.copy_hash_and_check
    rewrites: list[int] = []

    def copy_then_rewrite(src_fd: int, dst_fd: int, dst_path: Path, **kw: object) -> object:
        digests = real(src_fd, dst_fd, dst_path, **kw)  # type: ignore[arg-type]
        if not rewrites:
            times = source.stat()
            with source.open("r+b") as fh:
                fh.seek(1000)
                old = fh.read(16)
                fh.seek(1000)
                fh.write(bytes(b ^ 0xFF for b in old))
            os.utime(source, ns=(times.st_atime_ns, times.st_mtime_ns))
            rewrites.append(times.st_mtime_ns)
        return digests

    monkeypatch.setattr(store_mod, "copy_hash_and_check", copy_then_rewrite)
    station = open_station(home, clock)
    try:
        report = Ingestor(station).ingest(rec, serial=SERIAL)
    finally:
        station.close()
    assert rewrites == [source.stat().st_mtime_ns], "the time was put back"
    (item,) = report.items
    assert item.sha256 == sha256_of(source) != clips.a.sha256
    assert "changed_during_copy" not in item.flags
    assert assert_catalog_items_intact(home) == {item.sha256}
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_a_folder_swapped_for_a_link_after_the_walk_lets_nothing_outside_in(
        tmp_path: Path) -> None:
    """One file at a time. While the first is copied, the folder holding the second is moved
    away and a link to a folder outside the recorder put in its place, holding a file of the
    same name and size. Nothing outside the recorder is read or stored; the second file
    fails, named, and is stored at the next dock once the folder is back."""
    clock = FakeClock()
    home = init_station(tmp_path / "home", clock=clock, register={SERIAL: (OFFICER, "1")},
                        config="[ingest]\nparallel_files = 1\n")
    first, second = os.urandom(300_000), os.urandom(4200)
    rec = build_recorder(tmp_path / "rec", {"A/A.MP4": first, "B/B.MP4": second})
    outside = tmp_path / "outside"
    outside.mkdir()
    planted = b"OUTSIDE THE RECORDER" + os.urandom(4200 - 20)
    (outside / "B.MP4").write_bytes(planted)
    swapped: list[str] = []

    def progress(event: str, src: SourceFile | None, _n: int) -> None:
        if event == "file" and src is not None and src.display == "A/A.MP4" and not swapped:
            (rec / "B").rename(rec / "B.moved")
            (rec / "B").symlink_to(outside, target_is_directory=True)
            swapped.append(src.display)

    station = open_station(home, clock)
    try:
        report = Ingestor(station).ingest(rec, serial=SERIAL, progress=progress)
    finally:
        station.close()
    assert swapped == ["A/A.MP4"]
    assert [i.sha256 for i in report.items] == [sha256_of(first)]
    (failed,) = report.errors
    assert failed["path"] == "B/B.MP4"
    assert "no longer the file found on the recorder" in failed["error"]
    assert sha256_of(planted) not in store_objects(home)
    assert (rec / "B.moved" / "B.MP4").read_bytes() == second

    (rec / "B").unlink()
    (rec / "B.moved").rename(rec / "B")
    station = open_station(home, clock)
    try:
        again = Ingestor(station).ingest(rec, serial=SERIAL)
    finally:
        station.close()
    assert sha256_of(second) in [i.sha256 for i in again.items]
    assert assert_catalog_items_intact(home) == {sha256_of(first), sha256_of(second)}
    assert run_cli(home, "ledger", "verify").exit_code == 0


class FlakyReads:
    """A recorder that, without any error, gives one wrong byte when the byte at ``at`` of
    ``path`` is read, on the reads listed in ``wrong`` (counted from 1 over every read that
    reaches it). No device here can be made to do that, so it is done at the system call
    every read of a recorder file goes through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, path: Path, at: int,
                 wrong: set[int], fail: set[int] | None = None) -> None:
        self.path, self.at, self.wrong, self.reads = os.fsencode(path), at, wrong, 0
        self.fail = fail or set()  # the reads that fail with EIO instead
        self._readv = os.readv
        monkeypatch.setattr(os, "readv", self.readv)

    def readv(self, fd: int, buffers: list[memoryview]) -> int:
        start = os.lseek(fd, 0, os.SEEK_CUR)
        ours = os.readlink(f"/proc/self/fd/{fd}") == os.fsdecode(self.path)
        if ours and start <= self.at < start + sum(len(b) for b in buffers) and (
                self.reads + 1 in self.fail):
            self.reads += 1
            raise OSError(5, "Input/output error")
        n = self._readv(fd, buffers)
        if ours and start <= self.at < start + n:
            self.reads += 1
            if self.reads in self.wrong:
                offset = self.at - start
                for buffer in buffers:
                    if offset < len(buffer):
                        buffer[offset] ^= 0x01
                        break
                    offset -= len(buffer)
        return n


def ingest_flaky(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes, *,
                 config: str, at: int, wrong: set[int], fail: set[int] | None = None,
                 ) -> tuple[Path, Path, FlakyReads, IngestReport]:
    """A station with ``config`` ingests a recorder holding ``data`` whose byte ``at`` reads
    wrong on the ``wrong`` reads: its home, the recorder's file, the reads, the report."""
    clock = FakeClock()
    home = init_station(tmp_path / "home", clock=clock, register={SERIAL: (OFFICER, "1")},
                        config=config)
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": data})
    source = rec / MEDIA / "A.MP4"
    flaky = FlakyReads(monkeypatch, source, at=at, wrong=wrong, fail=fail)
    station = open_station(home, clock)
    try:
        report = Ingestor(station).ingest(rec, serial=SERIAL)
    finally:
        station.close()
        monkeypatch.undo()
    return home, source, flaky, report


@pytest.mark.parametrize("size", [3000, 12 * 2**20 + 5])
def test_with_verify_source_a_byte_read_wrong_once_is_read_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """The recorder gives one wrong byte on the first read and the right one after, with no
    error: a copy from one read would be stored, read back intact, as the wrong bytes. With
    ``verify_source`` the second read disagrees, the file is read again, and what is stored
    is the file as the recorder holds it, unflagged."""
    data = os.urandom(size)
    home, source, flaky, report = ingest_flaky(
        tmp_path, monkeypatch, data, config="[ingest]\nverify_source = true\n",
        at=size // 2, wrong={1})
    (item,) = report.items
    assert flaky.reads == 4, "read, read again (disagreeing), then two reads that agree"
    assert item.sha256 == sha256_of(data)
    assert "changed_during_copy" not in item.flags
    assert source.read_bytes() == data
    assert assert_catalog_items_intact(home) == {item.sha256}
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_with_verify_source_a_file_that_never_reads_alike_is_kept_flagged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every first read of each attempt gives a wrong byte: no two reads of an attempt
    agree. The last read is kept, flagged, with nothing else left in the store; the
    recorder's file is untouched and read again at the next dock."""
    data = os.urandom(100_000)
    home, source, flaky, report = ingest_flaky(
        tmp_path, monkeypatch, data,
        config="[ingest]\nverify_source = true\nchanged_retries = 1\n", at=777, wrong={1, 3})
    assert flaky.reads == 4
    (item,) = report.items
    assert "changed_during_copy" in item.flags
    assert item.sha256 != sha256_of(data)
    assert set(store_objects(home)) == {item.sha256}
    assert partial_files(home / "store") == []
    assert source.read_bytes() == data

    station = open_station(home, FakeClock())
    try:
        again = Ingestor(station).ingest(tmp_path / "rec", serial=SERIAL)
    finally:
        station.close()
    assert sha256_of(data) in [i.sha256 for i in again.items]
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_with_verify_source_a_known_file_docked_again_is_read_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file already stored, docked again: its one read hashes to the stored copy, which
    proves it right; no second read is made. A wrong byte on that read is not taken for
    the file: its bytes are copied again, and read twice, as new bytes are."""
    data = os.urandom(100_000)
    home, source, _, first = ingest_flaky(
        tmp_path, monkeypatch, data, config="[ingest]\nverify_source = true\n",
        at=500, wrong=set())
    assert [i.sha256 for i in first.items] == [sha256_of(data)]
    for wrong, reads in ((set(), 1), ({1}, 3)):
        with pytest.MonkeyPatch.context() as patch:
            flaky = FlakyReads(patch, source, at=500, wrong=wrong)
            station = open_station(home, FakeClock())
            try:
                again = Ingestor(station).ingest(tmp_path / "rec", serial=SERIAL)
            finally:
                station.close()
        assert flaky.reads == reads, wrong
        (item,) = again.items
        assert item.sha256 == sha256_of(data) and not item.new
    assert set(store_objects(home)) == {sha256_of(data)}


@pytest.mark.parametrize(("size", "at", "fails_at"), [
    (3000, 1500, 0), (12 * 2**20 + 5, 5 * 2**20, 4 * 2**20)])
def test_with_verify_source_a_second_read_that_fails_is_the_recorders_fault(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, at: int,
        fails_at: int) -> None:
    """The second read meets a bad sector: the file fails, named, as a read of the recorder
    that says where (not as a broken store, which would stop the dock); nothing of it is
    stored, and the dock goes on."""
    data = os.urandom(size)
    home, source, flaky, report = ingest_flaky(
        tmp_path, monkeypatch, data, config="[ingest]\nverify_source = true\n",
        at=at, wrong=set(), fail={2})
    assert flaky.reads == 2
    assert report.items == []
    assert report.errors == [{
        "path": f"{MEDIA}/A.MP4",
        "error": f"reading it a second time: cannot read at byte {fails_at}: "
                 "Input/output error"}]
    assert str(report.state) == "done"
    assert store_objects(home) == {}
    assert partial_files(home / "store") == []
    assert source.read_bytes() == data


@pytest.mark.parametrize("retries", [0, 3])
def test_different_bytes_under_the_same_name_size_and_time_are_stored(
        tmp_path: Path, clips: Clips, retries: int) -> None:
    # FAT keeps times to 2 s: a recorder can rewrite a file with the same size and time.
    clock = FakeClock()
    home = init_station(tmp_path / "home", clock=clock, register={SERIAL: (OFFICER, "1")},
                        config=f"[ingest]\nchanged_retries = {retries}\n")
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": os.urandom(50_000)})
    source = rec / MEDIA / "A.MP4"
    station = open_station(home, clock)
    try:
        first = Ingestor(station).ingest(rec, serial=SERIAL)
        st = source.stat()
        source.write_bytes(os.urandom(50_000))
        os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
        second = Ingestor(station).ingest(rec, serial=SERIAL)
    finally:
        station.close()
    (old,), (new,) = first.items, second.items
    assert new.sha256 == sha256_of(source) != old.sha256
    assert new.new is True
    assert assert_catalog_items_intact(home) == {old.sha256, new.sha256}
    assert run_cli(home, "verify", source).exit_code == 0


# -- a killed ingest, as status shows it ------------------------------------------------------


def test_status_shows_a_killed_ingest_interrupted_at_once_without_writing(
        tmp_path: Path, crash_recorder: tuple[Path, dict[str, str]]) -> None:
    rec, _ = crash_recorder
    home = init_station(tmp_path / "home", register={SERIAL: (OFFICER, "1")})
    proc = start_ingestd(home, "ingest", rec, "--serial", SERIAL, "--json")
    wait_for_dock(home, proc)
    kill_when(home, proc, "copying", 1, 0)
    assert proc.returncode == -signal.SIGKILL

    (dock,) = run_cli(home, "status", "--json").json()["docks"]
    assert dock["state"] == "interrupted" and dock["process_gone"] is True
    text = run_cli(home, "status")
    assert text.exit_code == 0
    assert f"dock {dock['id']} ({SERIAL}): interrupted: its process is gone" in text.stdout
    assert "running" not in text.stdout
    # Derived when read: the catalog still holds what the killed process left; the next
    # command that writes records it.
    (row,) = catalog.dock_sessions(home)
    assert row["state"] == "running"
    again = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json")
    assert again.exit_code == 0, again.stderr
    states = [s["state"] for s in catalog.dock_sessions(home)]
    assert states == ["interrupted", "done"]


def test_status_shows_a_live_ingest_running(tmp_path: Path,
                                            crash_recorder: tuple[Path, dict[str, str]]) -> None:
    rec, _ = crash_recorder
    home = init_station(tmp_path / "home", register={SERIAL: (OFFICER, "1")})
    proc = start_ingestd(home, "ingest", rec, "--serial", SERIAL, "--json")
    try:
        wait_for_dock(home, proc)
        states = [d["state"] for d in run_cli(home, "status", "--json").json()["docks"]]
        alive_after = proc.poll() is None
    finally:
        proc.communicate(timeout=120)
    assert proc.returncode == 0
    # A live process's session is never shown interrupted.
    assert states in ([["running"]] if alive_after else [["running"], ["done"]])


# -- orphans: bytes in the store that no item names -------------------------------------------


def plant(home: Path, name: str, data: bytes) -> Path:
    """An object left in the store behind the catalog's back (a process killed between the
    store's rename and the catalog's commit, or a hand)."""
    path = object_path(home, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o440)
    return path


def test_audit_keeps_an_intact_orphan_and_quarantines_a_damaged_one(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    good = plant(home, clips.b.sha256, clips.b.path.read_bytes())
    bad_bytes = b"not what the name says" * 100
    bad_name = sha256_of(b"some other bytes")
    plant(home, bad_name, bad_bytes)

    result = run_cli(home, "audit", "--all", "--json")
    assert result.exit_code == 1  # a damaged object is a failure, even when no item names it
    report = result.json()
    orphans = {o["sha256"]: o for o in report["orphans"]}
    assert set(orphans) == {clips.b.sha256, bad_name}
    assert orphans[clips.b.sha256] == {"sha256": clips.b.sha256, "size": clips.b.size,
                                       "action": "kept"}
    moved = orphans[bad_name]
    assert moved["action"] == "quarantined" and "damaged" in moved["problem"]
    assert [f["sha256"] for f in report["failures"]] == [bad_name]
    assert report["checked"] == 1  # the one item, intact

    # The intact orphan stays where it is; the damaged one is kept in quarantine, not deleted.
    assert sha256_of(good) == clips.b.sha256
    assert not object_path(home, bad_name).exists()
    quarantined = home / "store" / moved["quarantined_to"]
    assert quarantined.parent == home / "store" / "quarantine"
    assert quarantined.read_bytes() == bad_bytes

    recorded = {e["data"]["action"]: e for e in ledger_lines(home, "orphan")}
    assert set(recorded) == {"kept", "quarantined"}
    assert recorded["kept"]["item"] == clips.b.sha256
    assert recorded["kept"]["data"]["size"] == clips.b.size
    assert recorded["quarantined"]["item"] is None  # its name is not what its bytes are
    assert recorded["quarantined"]["data"]["sha256"] == bad_name
    assert recorded["quarantined"]["data"]["quarantined_to"] == moved["quarantined_to"]

    # Audited again: still reported, recorded once; nothing more is quarantined.
    again = run_cli(home, "audit", "--all")
    assert again.exit_code == 0, again.stdout
    assert f"orphan object {clips.b.sha256[:16]}" in again.stdout and "kept" in again.stdout
    assert (home / "ledger.jsonl").read_text(encoding="utf-8").count('"kind": "orphan"') == 2

    # The next dock that brings those bytes makes the orphan an item, as any first copy.
    rec_b = build_recorder(tmp_path / "rec_b", {f"{MEDIA}/B.MP4": clips.b})
    ingest = run_cli(home, "ingest", rec_b, "--serial", SERIAL, "--json").json()
    assert [(i["sha256"], i["new"]) for i in ingest["items"]] == [(clips.b.sha256, True)]
    shown = run_cli(home, "show", clips.b.sha256, "--json").json()
    assert [h["kind"] for h in shown["history"]][:3] == ["orphan", "acquired", "stored"]
    final = run_cli(home, "audit", "--all", "--json").json()
    assert final["ok"] is True and final["orphans"] == [] and final["checked"] == 2
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_bytes_found_in_quarantine_without_a_record_are_recorded_once(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    """As a process stopped between moving damaged bytes aside and recording it leaves them."""
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    folder = home / "store" / "quarantine"
    folder.mkdir()
    (folder / f"{clips.a.sha256}.0123456789ab").write_bytes(b"damaged bytes")

    report = run_cli(home, "audit", "--all", "--json").json()
    assert report["ok"] is True  # the item itself is intact
    (found,) = report["orphans"]
    assert found["quarantined_to"] == f"quarantine/{clips.a.sha256}.0123456789ab"
    assert found["sha256"] == clips.a.sha256 and found["size"] == len(b"damaged bytes")
    assert "no record" in found["problem"]
    assert (folder / f"{clips.a.sha256}.0123456789ab").read_bytes() == b"damaged bytes"
    # Recorded once: the next audit finds the record.
    assert run_cli(home, "audit", "--all", "--json").json()["orphans"] == []
    assert (home / "ledger.jsonl").read_text(encoding="utf-8").count('"kind": "orphan"') == 1
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_a_fifo_in_the_store_does_not_hang_audit_and_is_quarantined(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    name = sha256_of(b"a name with a pipe behind it")
    fifo = object_path(home, name)
    fifo.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(fifo)
    try:
        # In its own process with a timeout: a hang fails the test instead of the suite.
        result = run_ingestd(home, "audit", "--all", "--json", timeout=60)
    finally:
        for path in (fifo, *(home / "store" / "quarantine").glob(f"{name}.*")):
            try:  # should a reader be blocked on it after all, a writer frees it
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
    assert result.returncode == 1, result.stderr
    (orphan,) = json.loads(result.stdout)["orphans"]
    assert orphan["sha256"] == name and orphan["action"] == "quarantined"
    assert "not a regular file" in orphan["problem"]
    assert stat.S_ISFIFO((home / "store" / orphan["quarantined_to"]).lstat().st_mode)
    assert not fifo.exists()
    assert assert_catalog_items_intact(home) == {clips.a.sha256}


# -- damaged copies repaired by a later dock --------------------------------------------------


def quarantine_of(home: Path) -> dict[str, bytes]:
    folder = home / "store" / "quarantine"
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else {}


def test_a_damaged_copy_is_repaired_by_the_next_dock_and_the_bad_bytes_are_kept(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a, f"{MEDIA}/B.MP4": clips.b})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    stored = object_path(home, clips.a.sha256)
    flip_bit(stored, offset=clips.a.size // 2)
    damaged = stored.read_bytes()
    assert run_cli(home, "audit", "--all").exit_code == 1  # flagged fixity_failed

    # The same recorder docks again, still holding the intact file.
    again = run_cli(home, "ingest", rec, "--serial", SERIAL, "--json")
    assert again.exit_code == 0, again.stderr
    items = {i["path"]: i for i in again.json()["items"]}
    assert items[f"{MEDIA}/A.MP4"]["new"] is False and items[f"{MEDIA}/B.MP4"]["new"] is False
    assert sha256_of(stored) == clips.a.sha256
    assert stat.S_IMODE(stored.stat().st_mode) & 0o222 == 0
    (kept,) = quarantine_of(home).values()
    assert kept == damaged  # the bad bytes are kept, never destroyed

    (repaired,) = ledger_lines(home, "repaired")
    assert repaired["item"] == clips.a.sha256
    assert repaired["data"]["quarantined_to"].startswith("quarantine/")
    assert (home / "store" / repaired["data"]["quarantined_to"]).read_bytes() == damaged
    assert "damaged" in repaired["data"]["problem"]
    assert repaired["data"]["path"] == f"{MEDIA}/A.MP4" and repaired["data"]["serial"] == SERIAL

    # The flag stays, with its resolution.
    shown = run_cli(home, "show", clips.a.sha256, "--json").json()
    (flag,) = [f for f in shown["flags"] if f["flag"] == "fixity_failed"]
    assert flag["resolution"]["seq"] == repaired["seq"]
    assert flag["resolution"]["quarantined_to"] == repaired["data"]["quarantined_to"]
    text = run_cli(home, "show", clips.a.sha256).stdout
    assert "repaired" in text and "damaged bytes kept at" in text
    assert run_cli(home, "verify", "--hash", clips.a.sha256).exit_code == 0
    assert run_cli(home, "audit", "--all").exit_code == 0
    assert run_cli(home, "ledger", "verify").exit_code == 0

    # An intact copy is not replaced again: a further dock repairs nothing.
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    assert len(quarantine_of(home)) == 1
    assert (home / "ledger.jsonl").read_text(encoding="utf-8").count('"kind": "repaired"') == 1


def test_a_damaged_object_replaced_by_other_bytes_of_the_same_content_leaves_a_trace(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    """No audit has seen the damage: the copy that finds it (another recorder, another name)
    still keeps the bad bytes and records the repair."""
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    stored = object_path(home, clips.a.sha256)
    flip_bit(stored, offset=100)
    damaged = stored.read_bytes()

    other = build_recorder(tmp_path / "other", {f"{MEDIA}/COPY.MP4": clips.a})
    report = run_cli(home, "ingest", other, "--serial", SERIAL, "--json")
    assert report.exit_code == 0, report.stderr
    assert sha256_of(stored) == clips.a.sha256
    assert list(quarantine_of(home).values()) == [damaged]
    (repaired,) = ledger_lines(home, "repaired")
    assert repaired["item"] == clips.a.sha256 and repaired["data"]["path"] == f"{MEDIA}/COPY.MP4"
    assert run_cli(home, "ledger", "verify").exit_code == 0


# -- the fast check: presence and size, no bytes read -----------------------------------------


def ingest_three(home: Path, tmp_path: Path, clips: Clips) -> Path:
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a, f"{MEDIA}/B.MP4": clips.b,
                                            f"{MEDIA}/C.MP4": clips.c})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    return rec


def fast_entries(home: Path) -> list[dict]:
    return [{"item": e["item"], **e["data"]} for e in ledger_lines(home, "audited")]


def test_the_fast_check_of_an_intact_store_finds_nothing_and_changes_nothing(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    ingest_three(home, tmp_path, clips)
    before = snapshot_tree(home / "store")

    result = run_cli(home, "audit", "--fast", "--json")

    assert result.exit_code == 0, result.stdout
    assert result.json() == {"ok": True, "fast": True, "checked": 3, "decoded": 0,
                             "failures": [], "orphans": []}
    text = run_cli(home, "audit", "--fast")
    assert text.exit_code == 0
    assert "looked at 3 items" in text.stdout and "not re-hashed" in text.stdout
    assert snapshot_tree(home / "store") == before
    # Each run is one entry naming no item: no item is said to be re-hashed.
    runs = fast_entries(home)
    assert [(e["item"], e["check"], e["checked"], e["found"]) for e in runs] == [
        (None, "fast", 3, {}), (None, "fast", 3, {})]
    assert not any("fixity" in e for e in runs)
    assert all(item["flags"] == [] for item in cli_json(home, "items")["items"])
    assert run_cli(home, "ledger", "verify").exit_code == 0


def test_the_fast_check_finds_a_removed_a_cut_and_a_grown_object(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    rec = ingest_three(home, tmp_path, clips)
    gone, cut, grown = clips.a.sha256, clips.b.sha256, clips.c.sha256
    object_path(home, gone).unlink()
    for sha, data in ((cut, clips.b.path.read_bytes()[:1000]),
                      (grown, clips.c.path.read_bytes() + b"\0" * 10)):
        path = object_path(home, sha)
        path.chmod(0o640)
        path.write_bytes(data)
        path.chmod(0o440)
    before = snapshot_tree(home / "store")

    result = run_cli(home, "audit", "--fast", "--json")

    assert result.exit_code == 1
    report = result.json()
    assert report["ok"] is False and report["fast"] is True and report["checked"] == 3
    by_item = {f["sha256"]: f for f in report["failures"]}
    assert set(by_item) == {gone, cut, grown}, "every one, not just the first"
    assert by_item[gone]["kind"] == "object_missing" and "missing" in by_item[gone]["problem"]
    assert (by_item[cut]["kind"], by_item[cut]["expected_size"], by_item[cut]["found_size"]) \
        == ("size_mismatch", clips.b.size, 1000)
    assert "cut short" in by_item[cut]["problem"]
    assert (by_item[grown]["expected_size"], by_item[grown]["found_size"]) == (
        clips.c.size, clips.c.size + 10)
    assert "grown" in by_item[grown]["problem"]
    # Found, flagged and recorded; nothing moved, removed or rewritten in the store.
    assert snapshot_tree(home / "store") == before
    for sha in (gone, cut, grown):
        shown = run_cli(home, "show", sha, "--json").json()
        assert "fixity_failed" in shown["item"]["flags"]
        audited = [h for h in shown["history"] if h["kind"] == "audited"]
        assert [h["data"]["check"] for h in audited] == ["fast"]
        assert "fixity" not in audited[0]["data"]
    run_entry = fast_entries(home)[-1]
    assert run_entry["item"] is None and run_entry["found"] == {"object_missing": 1,
                                                                "size_mismatch": 2}
    text = run_cli(home, "audit", "--fast")
    assert text.exit_code == 1 and "FAILURES" in text.stdout
    assert gone[:16] in text.stdout and cut[:16] in text.stdout and grown[:16] in text.stdout
    # The catalog lost nothing, and the ledger still proves itself.
    assert {item["sha256"] for item in cli_json(home, "items")["items"]} == {gone, cut, grown}
    assert run_cli(home, "ledger", "verify").exit_code == 0
    # A flagged item is copied again at its next dock, which repairs every object.
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    assert run_cli(home, "audit", "--fast", "--json").json()["ok"] is True
    assert assert_catalog_items_intact(home) == {gone, cut, grown}


def test_the_fast_check_misses_a_flipped_bit_the_full_audit_finds(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    ingest_three(home, tmp_path, clips)
    flip_bit(object_path(home, clips.a.sha256), offset=clips.a.size // 2)
    assert run_cli(home, "audit", "--fast").exit_code == 0  # same size: not seen
    assert run_cli(home, "audit", "--all", "--decode", "0").exit_code == 1


def test_the_fast_check_lists_orphans_and_moves_nothing(
        home: Path, tmp_path: Path, clips: Clips) -> None:
    ingest_three(home, tmp_path, clips)
    stray = b"bytes no item names"
    name = sha256_of(stray)
    path = object_path(home, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(stray)

    result = run_cli(home, "audit", "--fast", "--json")

    assert result.exit_code == 0, "an orphan is not damage until a re-hash says so"
    assert result.json()["orphans"] == [{"sha256": name, "size": len(stray),
                                         "action": "unchecked"}]
    assert path.read_bytes() == stray
    assert not any(e["item"] == name for e in fast_entries(home))


@pytest.mark.parametrize("args", [["--sample", "2"], ["--offsite"], ["--decode", "1"]])
def test_the_fast_check_takes_no_option_that_reads_bytes(home: Path, args: list[str]) -> None:
    result = run_cli(home, "audit", "--fast", *args, "--json")
    assert result.exit_code == 2
    assert "--fast" in result.json()["error"]["message"]
