"""Docking through the watched mount root, as the daemon wires it: ``WatchDockSource`` feeding a
``DockCoordinator``, on a real station (SQLite catalog, evidence store, signed ledger), with real
clips made by ffmpeg and real folders appearing, growing, leaving and coming back.

What a docking station relies on, and what these tests check:

* a recorder folder is taken once, after it settled, never half-written, and a clip added later
  is taken without copying the old ones again;
* the recorder is named by its folder or by its identity file, and one that cannot be named, or
  is not registered, is refused, recorded, and nothing of it copied;
* eight recorders at once are all served, in parallel up to ``max_parallel_recorders`` and never
  more, and a huge one does not hold back the small ones;
* a recorder pulled out mid-copy leaves nothing marked stored that was not verified, and is
  resumed when docked again;
* the wipe policy deletes only files whose bytes are stored, each a ledger event;
* every dock session records the recorder's health (space, file system, faults).

The daemon as a process (signals, restart, sd_notify) is tested in ``test_daemon.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    INGESTD,
    ClipFile,
    ingestd_json,
    init_station,
    ledger_lines,
    make_test_clip,
    open_station,
    partial_files,
    place,
    run_ingestd,
    sha256_of,
    shared_random_file,
    start_ingestd,
    store_objects,
    subprocess_env,
    wait_for,
)

from ingestd.docks.watch import FolderDock, WatchDockSource
from ingestd.domain.models import Recorder
from ingestd.station import Station, system_clock
from ingestd.usecases import registry
from ingestd.usecases.docking import DockCoordinator, faults_of, scan_once
from ingestd.usecases.home import init_home
from ingestd.usecases.ingest import DockContext
from tests.support import catalog
from tests.support.damage import flipped

pytestmark = [
    pytest.mark.integration,
    # watchdog re-adds the watches of a folder moved back into the root, and says so.
    pytest.mark.filterwarnings("ignore:Callback with id .* already exists:RuntimeWarning"),
]

SETTLE = 0.5  # seconds a folder must stay unchanged before it is taken (fast, for tests)
TIMEOUT = 90.0  # generous upper bound for anything to happen on a busy 2-core machine
BIG_MIB = 384  # the "huge recorder": one file of random bytes named .MP4


# -- media and big files (made once per test session) -----------------------------------------


class ClipBank:
    """Distinct real MP4 clips (each with its own creation_time), made on first use."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # Recorded a few hours ago: no late-ingest or clock flags on a real-clock station.
        self.base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
        self._made: dict[int, ClipFile] = {}
        self._lock = threading.Lock()

    def __getitem__(self, index: int) -> ClipFile:
        with self._lock:
            if index not in self._made:
                self._made[index] = make_test_clip(
                    self.folder / f"clip{index:03d}.mp4", seconds=1,
                    recorded=self.base + timedelta(minutes=index))
            return self._made[index]


@pytest.fixture(scope="session")
def clip_bank(tmp_path_factory: pytest.TempPathFactory) -> ClipBank:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.fail("ffmpeg and ffprobe are needed (Debian package ffmpeg; scripts/setup --test)")
    return ClipBank(tmp_path_factory.mktemp("docking-clips"))


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> ClipFile:
    return shared_random_file(tmp_path_factory, BIG_MIB)


# -- stations ----------------------------------------------------------------------------------

OFFICER = "Li Na"


def new_home(tmp_path: Path, *, docks: str = "", extra: str = "",
             register: tuple[str, ...] = (),
             clock: Callable[[], datetime] = system_clock) -> Path:
    """An initialised station in tmp_path/home with a watched root HOME/docks and the given
    ``[docks]`` lines and extra tables; registers ``register`` serials to OFFICER."""
    return init_station(
        tmp_path / "home",
        config="[docks]\n"
        'watch_root = "docks"\n'
        + (docks if "settle" in docks else f'settle = "{SETTLE}s"\n' + docks)
        + "\n[scheduler]\naudit_sample = 0\n" + extra,
        clock=clock, register={serial: (OFFICER, f"ID-{serial}") for serial in register})


def register_recorder(station: Station, serial: str, officer: str = OFFICER) -> None:
    """What ``ingestd devices add`` does: a signed registry entry and the registry row."""
    registry.register(station, Recorder(serial=serial, officer=officer,
                                        officer_id=f"ID-{serial}", unit="patrol"),
                      actor="tester")


class Dockyard:
    """A station served exactly as ``Daemon.start_sources`` wires it (watched root only)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.station = open_station(home, system_clock)
        self.coordinator = DockCoordinator(self.station)
        docks = self.station.settings.docks
        root = self.station.settings.watch_root
        assert root is not None
        self.root = root
        self.source = WatchDockSource(root, identity=docks.identity,
                                      identity_file=docks.identity_file,
                                      settle=docks.settle.total_seconds())
        self.offers: list[tuple[float, FolderDock]] = []

    def _offer(self, dock: FolderDock) -> None:
        self.offers.append((time.time(), dock))
        self.coordinator.folder(dock)

    def start(self) -> Dockyard:
        self.source.start(self._offer)
        return self

    def close(self) -> None:
        self.source.stop()
        self.coordinator.shutdown(wait=True)
        self.station.close()

    def sessions(self) -> list[dict[str, Any]]:
        return catalog.dock_sessions(self.home)

    def finished_sessions(self, count: int) -> list[dict[str, Any]] | None:
        rows = self.sessions()
        done = [r for r in rows if r["state"] != "running"]
        return rows if len(done) >= count and len(done) == len(rows) else None

    def wait_sessions(self, count: int, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        return wait_for(lambda: self.finished_sessions(count), timeout=timeout,
                        what=f"{count} finished dock sessions")

    def offered(self, name: str) -> int:
        """How many times the watched root offered the folder ``name``."""
        return sum(1 for _, dock in self.offers if dock.path.name == name)

    def offered_no_more(self, name: str) -> int:
        """Once everything that happened to folder ``name`` so far has been seen, how many
        times it was offered. A barrier folder is docked now: the root offers folders in the
        order they last changed (their events arrive in order, each folder once it stayed
        quiet for ``settle``), so an offer of ``name`` still to come is made before the
        barrier's. The barrier is refused (not registered) and served; then every session
        any offer started has ended."""
        barrier = f"BARRIER-{len(self.offers)}"
        dock(self.root, barrier, {})
        wait_for(lambda: self.offered(barrier), timeout=TIMEOUT,
                 what=f"the barrier folder {barrier} offered")
        assert self.coordinator.wait_idle(TIMEOUT)
        return self.offered(name)


@pytest.fixture
def dockyard_factory() -> Iterator[Callable[[Path], Dockyard]]:
    yards: list[Dockyard] = []

    def make(home: Path) -> Dockyard:
        yard = Dockyard(home)
        yards.append(yard)
        return yard

    yield make
    for yard in yards:
        yard.close()


def items_of(home: Path) -> list[dict[str, Any]]:
    """Every item, as ``ingestd items --json`` lists it (in a process of its own: the
    dockyard's threads log here meanwhile)."""
    items: list[dict[str, Any]] = ingestd_json(home, "items")["items"]
    return items


def flags_of(home: Path, sha: str) -> list[str]:
    return [f["flag"] for f in ingestd_json(home, "show", sha)["flags"]]


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def interval(session: Mapping[str, Any]) -> tuple[datetime, datetime]:
    return stamp(session["docked_at"]), stamp(session["finished_at"])


def peak_overlap(sessions: list[dict[str, Any]]) -> int:
    """The most dock sessions that were running at the same instant."""
    events = []
    for s in sessions:
        start, end = interval(s)
        events += [(start, 1), (end, -1)]
    events.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def stage(root: Path, name: str, files: Mapping[str, ClipFile | bytes]) -> Path:
    """Build a recorder out of sight, beside the watched root (on the same file system)."""
    staging = root.parent / "staging" / name
    for rel, content in files.items():
        dest = staging / rel
        if isinstance(content, ClipFile):
            place(content.path, dest)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(content)
    (staging / "SYSTEM").mkdir(parents=True, exist_ok=True)
    (staging / "SYSTEM" / "DEVICE.TXT").write_text(f"serial={name}\n", encoding="ascii")
    return staging


def dock(root: Path, name: str, files: Mapping[str, ClipFile | bytes]) -> Path:
    """A recorder appears whole, as a plugged-in recorder does: rename from staging."""
    target = root / name
    os.rename(stage(root, name, files), target)
    return target


def media(*clips: ClipFile, start: int = 1) -> dict[str, ClipFile]:
    return {f"DCIM/100MEDIA/{i:04d}.MP4": c for i, c in enumerate(clips, start)}


def tree(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every file under a recorder folder: hash, size, mtime (to prove it was not altered)."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        st = path.stat()
        out[str(path.relative_to(root))] = (sha256_of(path), st.st_size, st.st_mtime_ns)
    return out


# -- the watched root --------------------------------------------------------------------------


def test_folder_appearing_whole_is_ingested_once_after_settle(
        tmp_path: Path, clip_bank: ClipBank, dockyard_factory: Callable[[Path], Dockyard]) -> None:
    home = new_home(tmp_path, register=("BWC-0001",))
    yard = dockyard_factory(home).start()
    clips = [clip_bank[0], clip_bank[1]]
    docked_at = time.time()
    folder = dock(yard.root, "BWC-0001", media(*clips))
    before = tree(folder)

    [session] = yard.wait_sessions(1)
    assert session["state"] == "done", session
    assert session["serial"] == "BWC-0001" and session["source"] == "watch"
    assert session["officer"] == OFFICER
    assert (session["files_new"], session["files_known"], session["files_failed"]) == (2, 0, 0)
    # Not before the folder had been quiet for `settle`.
    assert stamp(session["docked_at"]).timestamp() >= docked_at + SETTLE - 0.05

    # Nothing more happens to a folder that does not change: no second session.
    assert yard.offered_no_more("BWC-0001") == 1, "a settled, unchanged folder was offered again"
    assert len(catalog.dock_sessions(home, "BWC-0001")) == 1

    acqs = catalog.acquisitions(home)
    assert [(a["path"], a["state"], a["item"]) for a in acqs] == [
        ("DCIM/100MEDIA/0001.MP4", "stored", clips[0].sha256),
        ("DCIM/100MEDIA/0002.MP4", "stored", clips[1].sha256),
    ]
    objects = store_objects(home)
    assert set(objects) == {c.sha256 for c in clips}
    for sha, path in objects.items():
        assert sha256_of(path) == sha
    assert tree(folder) == before, "the recorder folder was altered"
    assert run_ingestd(home, "ledger", "verify").returncode == 0


def test_file_still_being_written_is_not_taken_before_it_settles(
        tmp_path: Path, clip_bank: ClipBank, dockyard_factory: Callable[[Path], Dockyard]) -> None:
    settle = 1.0
    home = new_home(tmp_path, docks=f'settle = "{settle}s"\n', register=("BWC-0002",))
    yard = dockyard_factory(home).start()
    clip = clip_bank[0]
    data = clip.path.read_bytes()
    target = yard.root / "BWC-0002" / "DCIM" / "100MEDIA" / "0001.MP4"
    target.parent.mkdir(parents=True)
    pieces = 25  # one piece every 0.1 s: 2.5 s of writing, far longer than settle
    step = -(-len(data) // pieces)
    last_write = 0.0
    with open(target, "wb") as fh:
        for start in range(0, len(data), step):
            fh.write(data[start:start + step])
            fh.flush()
            last_write = time.time()
            assert not yard.sessions(), "a folder was taken while a file in it was growing"
            time.sleep(0.1)

    [session] = yard.wait_sessions(1)
    assert session["state"] == "done", session
    assert stamp(session["docked_at"]).timestamp() >= last_write + settle - 0.05
    assert yard.offered_no_more("BWC-0002") == 1, "the grown file was ingested more than once"
    assert len(catalog.dock_sessions(home, "BWC-0002")) == 1
    items = [(i["sha256"], i["size"]) for i in items_of(home)]
    assert items == [(clip.sha256, clip.size)], "stored bytes are not final"
    assert set(store_objects(home)) == {clip.sha256}


def test_clip_added_later_is_taken_without_copying_old_ones(
        tmp_path: Path, clip_bank: ClipBank, dockyard_factory: Callable[[Path], Dockyard]) -> None:
    home = new_home(tmp_path, register=("BWC-0003",))
    yard = dockyard_factory(home).start()
    first, second, later = clip_bank[0], clip_bank[1], clip_bank[2]
    folder = dock(yard.root, "BWC-0003", media(first, second))
    yard.wait_sessions(1)

    # The officer records again and docks: one more clip appears in the same folder.
    incoming = folder / "DCIM" / "100MEDIA" / ".0003.MP4.tmp"
    shutil.copy2(later.path, incoming)
    os.rename(incoming, folder / "DCIM" / "100MEDIA" / "0003.MP4")

    one, two = yard.wait_sessions(2)
    assert (one["state"], two["state"]) == ("done", "done")
    assert (two["files_new"], two["files_known"], two["files_failed"]) == (1, 2, 0)
    assert two["bytes_copied"] == later.size, "old clips were copied again"
    acqs = sorted(({k: a[k] for k in ("path", "state", "item")}
                   for a in catalog.acquisitions(home, session_id=two["id"])),
                  key=lambda a: a["path"])
    assert acqs == [
        {"path": "DCIM/100MEDIA/0001.MP4", "state": "known", "item": first.sha256},
        {"path": "DCIM/100MEDIA/0002.MP4", "state": "known", "item": second.sha256},
        {"path": "DCIM/100MEDIA/0003.MP4", "state": "stored", "item": later.sha256},
    ]
    assert set(store_objects(home)) == {first.sha256, second.sha256, later.sha256}
    stored = [e["item"] for e in ledger_lines(home, "stored")]
    assert sorted(stored) == sorted({first.sha256, second.sha256, later.sha256})


@pytest.mark.slow
def test_clip_arriving_while_the_recorder_is_served_is_taken_next(
        tmp_path: Path, clip_bank: ClipBank, big_file: ClipFile,
        dockyard_factory: Callable[[Path], Dockyard]) -> None:
    """The recorder changes while its session runs (the last clip is still being closed):
    the change is remembered and served once the running session ends, not lost."""
    home = new_home(tmp_path, register=("BWC-0014",))
    yard = dockyard_factory(home).start()
    folder = dock(yard.root, "BWC-0014", {"DCIM/100MEDIA/0001.MP4": big_file})
    wait_for(lambda: catalog.acquisitions(home, state="copying"),
             what="the big file being copied")
    place(clip_bank[0].path, folder / "DCIM" / "100MEDIA" / "0002.MP4")

    one, two = yard.wait_sessions(2)
    assert (one["files_new"], two["files_new"], two["files_known"]) == (1, 1, 1)
    assert two["bytes_copied"] == clip_bank[0].size
    assert stamp(two["docked_at"]) >= stamp(one["finished_at"]), "one recorder served twice"
    assert set(store_objects(home)) == {big_file.sha256, clip_bank[0].sha256}


# -- identity ----------------------------------------------------------------------------------


def test_identity_from_identity_file(
        tmp_path: Path, clip_bank: ClipBank, dockyard_factory: Callable[[Path], Dockyard]) -> None:
    home = new_home(tmp_path, docks='identity = "file"\n', register=("BWC-0042",))
    yard = dockyard_factory(home).start()
    files: dict[str, ClipFile | bytes] = {**media(clip_bank[0]),
                                          "RECORDER.ID": b"BWC-0042\r\nv2.1\n"}
    dock(yard.root, "usb-sdb1", files)  # the OS names the mount, not the recorder

    [session] = yard.wait_sessions(1)
    assert (session["serial"], session["state"], session["officer"]) == ("BWC-0042", "done",
                                                                          OFFICER)
    items = [(i["sha256"], i["recorder"], i["officer"]) for i in items_of(home)]
    assert items == [(clip_bank[0].sha256, "BWC-0042", OFFICER)]


@pytest.mark.parametrize(("identity", "folder_name", "identity_text", "reason"), [
    ("file", "usb-sdc1", b"", "RECORDER.ID holds no usable serial"),
    ("file", "usb-sde1", None, "no readable RECORDER.ID"),
    ("folder", "BWC\\0001", None, "is not a usable serial"),
    ("folder", "BWC\t0001", None, "is not a usable serial"),
], ids=["empty-file", "no-file", "backslash", "control-character"])
def test_unusable_identity_is_refused_and_recorded(
        tmp_path: Path, clip_bank: ClipBank, dockyard_factory: Callable[[Path], Dockyard],
        identity: str, folder_name: str, identity_text: bytes | None, reason: str) -> None:
    # Even a registered serial in the folder's content does not help: the identity is unusable.
    home = new_home(tmp_path, docks=f'identity = "{identity}"\n', register=("BWC-0001",))
    yard = dockyard_factory(home).start()
    files: dict[str, ClipFile | bytes] = dict(media(clip_bank[0]))
    if identity_text is not None:
        files["RECORDER.ID"] = identity_text
    folder = dock(yard.root, folder_name, files)
    before = tree(folder)

    [session] = yard.wait_sessions(1)
    assert session["state"] == "refused"
    assert session["serial"] == ""
    assert reason in session["error"]

    status = ingestd_json(home, "status")
    docks = status["docks"]
    assert [(d["state"], d["serial"]) for d in docks] == [("refused", "")]
    assert reason in docks[0]["error"]
    [refusal] = ledger_lines(home, "recorder_refused")
    assert reason in refusal["data"]["reason"]
    assert refusal["data"]["mountpoint"] == str(folder)
    assert status["acquisitions"] == {}, "something was read off it"
    assert not store_objects(home)
    assert tree(folder) == before


def test_unregistered_recorder_is_refused_not_copied(
        tmp_path: Path, clip_bank: ClipBank, dockyard_factory: Callable[[Path], Dockyard],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ingestd")
    home = new_home(tmp_path, register=("BWC-0001",))
    yard = dockyard_factory(home).start()
    folder = dock(yard.root, "BWC-9999", media(clip_bank[0]))
    before = tree(folder)

    [session] = yard.wait_sessions(1)
    assert (session["serial"], session["state"]) == ("BWC-9999", "refused")
    assert "not registered" in session["error"]
    status = ingestd_json(home, "status")
    assert status["acquisitions"] == {}
    assert status["items"]["total"] == 0
    assert not store_objects(home) and not partial_files(home)
    assert tree(folder) == before
    [refusal] = ledger_lines(home, "recorder_refused")
    assert refusal["data"]["serial"] == "BWC-9999"
    assert not ledger_lines(home, "docked")
    docks = status["docks"]
    assert [(d["serial"], d["state"]) for d in docks] == [("BWC-9999", "refused")]
    assert any("refused recorder 'BWC-9999'" in r.getMessage() for r in caplog.records)


# -- recorders cannot claim each other's serial --------------------------------------------------


def _two_officers(tmp_path: Path, docks: str = "") -> Path:
    home = new_home(tmp_path, docks=docks)
    station = open_station(home, system_clock)
    try:
        register_recorder(station, "BWC-0101", officer="Ana Silva")
        register_recorder(station, "BWC-0102", officer="Ben Okafor")
    finally:
        station.close()
    return home


def _assert_refused(home: Path, folder: Path, before: dict[str, tuple[str, int, int]],
                    serial: str, reason: str) -> None:
    """Refused with ``reason``: in the ledger, in status, and nothing of it read or stored."""
    [refusal] = ledger_lines(home, "recorder_refused")
    assert refusal["data"]["serial"] == serial
    assert reason in refusal["data"]["reason"], refusal["data"]["reason"]
    status = ingestd_json(home, "status")
    docks = [d for d in status["docks"] if d["state"] == "refused"]
    assert [d["serial"] for d in docks] == [serial] and reason in docks[0]["error"]
    assert status["acquisitions"] == {}, "something was read off it"
    assert status["items"]["total"] == 0 and not store_objects(home)
    assert not ledger_lines(home, "docked")
    assert tree(folder) == before
    assert run_ingestd(home, "ledger", "verify").returncode == 0


@pytest.mark.parametrize(("identity", "folder_name", "file_serial", "serial", "reason"), [
    ("folder", "BWC-0101", "BWC-0102", "BWC-0101",
     "its RECORDER.ID names recorder 'BWC-0102', but it docked as 'BWC-0101'"),
    ("file", "BWC-0101", "BWC-0102", "BWC-0102",
     "its folder is named after recorder 'BWC-0101', but it docked as 'BWC-0102'"),
], ids=["folder-names-A-file-says-B", "file-says-B-folder-names-A"])
def test_a_folder_and_its_identity_file_that_disagree_are_refused(
        tmp_path: Path, clip_bank: ClipBank, identity: str, folder_name: str, file_serial: str,
        serial: str, reason: str) -> None:
    home = _two_officers(tmp_path, docks=f'identity = "{identity}"\n')
    files: dict[str, ClipFile | bytes] = {**media(clip_bank[0]),
                                      "RECORDER.ID": f"{file_serial}\n".encode()}
    folder = dock(home / "docks", folder_name, files)
    before = tree(folder)
    station = open_station(home, system_clock)
    try:
        [outcome] = scan_once(station)
    finally:
        station.close()
    assert (outcome.serial, outcome.state) == (serial, "refused")
    assert reason in outcome.error
    _assert_refused(home, folder, before, serial, reason)


def test_manual_ingest_of_another_recorders_files_is_refused(
        tmp_path: Path, clip_bank: ClipBank) -> None:
    home = _two_officers(tmp_path)
    # B's card, mounted by hand where the officer thinks A's is.
    files: dict[str, ClipFile | bytes] = {**media(clip_bank[0]), "RECORDER.ID": b"BWC-0102\n"}
    folder = stage(tmp_path, "card", files)
    before = tree(folder)
    result = run_ingestd(home, "ingest", folder, "--serial", "BWC-0101", "--by", "Sgt. Mills")
    assert result.returncode == 61, result.stdout + result.stderr  # RecorderRefused
    reason = "its RECORDER.ID names recorder 'BWC-0102', but it docked as 'BWC-0101'"
    assert f"recorder BWC-0101 refused: {reason}; nothing was copied" in result.stderr
    _assert_refused(home, folder, before, "BWC-0101", reason)
    [refusal] = ledger_lines(home, "recorder_refused")
    assert refusal["actor"] == "Sgt. Mills"


def test_manual_ingest_records_who_ran_it(tmp_path: Path, clip_bank: ClipBank) -> None:
    home = _two_officers(tmp_path)
    folder = stage(tmp_path, "BWC-0101", media(clip_bank[0]))
    by_option = run_ingestd(home, "ingest", folder, "--serial", "BWC-0101", "--json",
                            "--by", "Sgt. Mills")
    assert by_option.returncode == 0, by_option.stderr
    by_env = subprocess.run(
        [str(INGESTD), "--home", str(home), "ingest", str(stage(tmp_path, "again", media(
            clip_bank[1]))), "--serial", "BWC-0101", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
        env=subprocess_env(INGESTD_ACTOR="Det. Rao"))
    assert by_env.returncode == 0, by_env.stderr
    sessions = catalog.dock_sessions(home)
    assert [(s["source"], s["actor"]) for s in sessions] == [("manual", "Sgt. Mills"),
                                                             ("manual", "Det. Rao")]
    ingest_kinds = {"docked", "acquired", "stored"}
    entries = [e for e in ledger_lines(home) if e["kind"] in ingest_kinds]
    assert {e["kind"] for e in entries} == ingest_kinds
    first = [e for e in entries if e["item"] in (None, clip_bank[0].sha256)
             and e["data"].get("serial", "BWC-0101") == "BWC-0101"]
    assert {e["actor"] for e in entries} == {"Sgt. Mills", "Det. Rao"}
    assert any(e["actor"] == "Sgt. Mills" and e["kind"] == "stored" for e in first)


def test_one_serial_is_never_in_two_sessions_at_once(
        tmp_path: Path, clip_bank: ClipBank, big_file: ClipFile) -> None:
    # A manual ingest of the recorder runs in another process; meanwhile two folders whose
    # identity files both claim it are docked; later they are docked again, together.
    home = new_home(tmp_path, docks='identity = "file"\n', register=("BWC-0110",))
    for n, slot in enumerate(("usb-sdb1", "usb-sdc1")):
        dock(home / "docks", slot, {**media(clip_bank[3 + n]), "RECORDER.ID": b"BWC-0110\n"})
    manual = stage(tmp_path, "manual", {"DCIM/100MEDIA/0001.MP4": big_file,
                                        "RECORDER.ID": b"BWC-0110\n"})
    other = start_ingestd(home, "ingest", manual, "--serial", "BWC-0110", "--json")
    station = open_station(home, system_clock)
    coordinator = DockCoordinator(station)
    source = WatchDockSource(home / "docks", identity="file")
    try:
        wait_for(lambda: [s for s in catalog.dock_sessions(home) if s["state"] == "running"],
                 what="the manual session running")
        for found in source.enumerate():
            coordinator.folder(found)
        assert coordinator.wait_idle(TIMEOUT)
        out, err = other.communicate(timeout=TIMEOUT)
        assert other.returncode == 0, out + err
        refused = [(o.state, o.error) for o in coordinator.outcomes]
        for found in source.enumerate():  # docked again, together, nothing else running
            coordinator.folder(found)
        assert coordinator.wait_idle(TIMEOUT)
    finally:
        coordinator.shutdown()
        station.close()
        if other.poll() is None:
            other.kill()
    assert [state for state, _ in refused] == ["refused", "refused"]
    assert all(error.startswith("recorder BWC-0110 is being served already (process "
                                f"{other.pid} from {manual})") for _, error in refused)
    sessions = catalog.dock_sessions(home)
    served = [s for s in sessions if s["state"] != "refused"]
    assert served and all(s["state"] == "done" for s in served)
    assert peak_overlap(served) == 1, "one recorder was served twice at the same time"
    assert [s["source"] for s in sessions if s["state"] == "refused"][:2] == ["watch", "watch"]
    assert [e["kind"] for e in ledger_lines(home)].count("recorder_refused") == len(
        sessions) - len(served)
    assert [p for p in (home / "run").iterdir() if p.name.endswith(".serving")] == []


# -- many at once ------------------------------------------------------------------------------


def test_eight_recorders_docked_at_once_are_all_ingested_in_parallel(
        tmp_path: Path, clip_bank: ClipBank, dockyard_factory: Callable[[Path], Dockyard]) -> None:
    serials = tuple(f"BWC-01{i:02d}" for i in range(8))
    home = new_home(tmp_path, docks="max_parallel_recorders = 8\n", register=serials)
    yard = dockyard_factory(home).start()
    wanted = {}
    staged = []
    for n, serial in enumerate(serials):
        clips = [clip_bank[3 * n + k] for k in range(3)]
        wanted[serial] = {c.sha256 for c in clips}
        staged.append((stage(yard.root, serial, media(*clips)), serial))
    for staging, serial in staged:  # all eight plugged in at the same moment
        os.rename(staging, yard.root / serial)

    sessions = yard.wait_sessions(8)
    assert len(sessions) == 8
    assert sorted(s["serial"] for s in sessions) == sorted(serials)
    assert {s["state"] for s in sessions} == {"done"}
    items = items_of(home)
    for serial, shas in wanted.items():
        rows = [i for i in items if i["recorder"] == serial]
        assert {r["sha256"] for r in rows} == shas, serial
    assert len(store_objects(home)) == 24
    # All eight were being served at the same time: some instant lies in every interval.
    latest_start = max(interval(s)[0] for s in sessions)
    earliest_end = min(interval(s)[1] for s in sessions)
    assert latest_start < earliest_end, [(s["serial"], s["docked_at"], s["finished_at"])
                                         for s in sessions]
    assert peak_overlap(sessions) == 8


@pytest.mark.slow
def test_huge_recorder_does_not_hold_back_small_ones(
        tmp_path: Path, clip_bank: ClipBank, big_file: ClipFile,
        dockyard_factory: Callable[[Path], Dockyard]) -> None:
    small = tuple(f"BWC-02{i:02d}" for i in range(7))
    home = new_home(tmp_path, docks="max_parallel_recorders = 8\n",
                    register=("BWC-HUGE", *small))
    yard = dockyard_factory(home).start()
    # The huge one arrives first: served in arrival order alone, it would finish first.
    staged = [(stage(yard.root, "BWC-HUGE", {"DCIM/100MEDIA/0001.MP4": big_file}), "BWC-HUGE")]
    for n, serial in enumerate(small):
        staged.append((stage(yard.root, serial, media(clip_bank[n])), serial))
    for staging, serial in staged:
        os.rename(staging, yard.root / serial)

    sessions = {s["serial"]: s for s in yard.wait_sessions(8)}
    assert {s["state"] for s in sessions.values()} == {"done"}
    huge_end = interval(sessions["BWC-HUGE"])[1]
    for serial in small:
        assert interval(sessions[serial])[1] < huge_end, f"{serial} waited for the huge recorder"
    [big] = [i for i in items_of(home) if i["recorder"] == "BWC-HUGE"]
    assert (big["sha256"], big["size"]) == (big_file.sha256, big_file.size)
    assert flags_of(home, big_file.sha256) == ["damaged_media"]  # random bytes: kept, flagged
    assert sha256_of(store_objects(home)[big_file.sha256]) == big_file.sha256


def test_never_more_sessions_than_max_parallel_recorders(
        tmp_path: Path, clip_bank: ClipBank, dockyard_factory: Callable[[Path], Dockyard]) -> None:
    serials = tuple(f"BWC-03{i:02d}" for i in range(8))
    home = new_home(tmp_path, docks="max_parallel_recorders = 2\n", register=serials)
    yard = dockyard_factory(home).start()
    staged = [(stage(yard.root, s, media(clip_bank[2 * n], clip_bank[2 * n + 1])), s)
              for n, s in enumerate(serials)]
    for staging, serial in staged:
        os.rename(staging, yard.root / serial)

    sessions = yard.wait_sessions(8)
    assert {s["state"] for s in sessions} == {"done"}
    assert sorted(s["serial"] for s in sessions) == sorted(serials)
    assert len(store_objects(home)) == 16
    assert peak_overlap(sessions) == 2, [(s["serial"], s["docked_at"], s["finished_at"])
                                         for s in sessions]


# -- pulled out mid-copy -----------------------------------------------------------------------


@pytest.mark.slow
def test_recorder_pulled_out_mid_copy_is_resumed_when_docked_again(
        tmp_path: Path, clip_bank: ClipBank, big_file: ClipFile,
        dockyard_factory: Callable[[Path], Dockyard]) -> None:
    home = new_home(tmp_path, register=("BWC-0004",))
    yard = dockyard_factory(home).start()
    small = [clip_bank[0], clip_bank[1]]
    files: dict[str, ClipFile | bytes] = {"DCIM/100MEDIA/0001.MP4": big_file,
                                      **media(*small, start=2)}
    folder = dock(yard.root, "BWC-0004", files)
    pocket = tmp_path / "pocket"
    pulled: list[str] = []

    def pull_out() -> None:
        wait_for(lambda: catalog.acquisitions(home, state="copying"),
                 what="the big file being copied")
        os.rename(folder, pocket)  # the officer pulls the recorder out
        pulled.append("yes")

    puller = threading.Thread(target=pull_out, daemon=True)
    puller.start()
    [first] = yard.wait_sessions(1)
    puller.join(TIMEOUT)
    assert pulled, "the recorder was not pulled out"
    assert first["state"] == "interrupted", first
    assert "removed" in first["error"]
    acqs = catalog.acquisitions(home)
    # A local file stays readable through its open handle, so the file in flight may complete;
    # if it is marked stored, its bytes are verified in the store. Nothing after it is.
    for acq in acqs:
        assert acq["state"] in ("stored", "interrupted"), acq
        if acq["state"] == "stored":
            assert sha256_of(store_objects(home)[acq["item"]]) == acq["item"]
        else:
            assert acq["item"] is None
    assert acqs[-1]["state"] == "interrupted"
    assert "recorder removed" in acqs[-1]["error"]
    stored = {a["item"] for a in acqs if a["state"] == "stored"}
    assert {i["sha256"] for i in items_of(home)} == stored
    assert set(store_objects(home)) == stored
    assert not partial_files(home)

    os.rename(pocket, folder)  # docked again
    sessions = yard.wait_sessions(2)
    assert sessions[-1]["state"] == "done"
    everything = {big_file.sha256, *(c.sha256 for c in small)}
    assert {i["sha256"] for i in items_of(home)} == everything
    assert set(store_objects(home)) == everything
    for sha in everything:  # stored exactly once; a re-dock only finds it known
        states = [a["state"] for a in ingestd_json(home, "show", sha)["acquisitions"]]
        assert states.count("stored") == 1, (sha, states)
    copied_again = sessions[-1]["bytes_copied"]
    assert copied_again == sum(big_file.size if sha == big_file.sha256 else
                               next(c.size for c in small if c.sha256 == sha)
                               for sha in everything - stored)
    assert not partial_files(home)
    assert run_ingestd(home, "ledger", "verify").returncode == 0


# -- wipe policy -------------------------------------------------------------------------------


def test_wipe_after_local_verify_deletes_stored_files_each_a_ledger_event(
        tmp_path: Path, clip_bank: ClipBank, dockyard_factory: Callable[[Path], Dockyard]) -> None:
    home = new_home(tmp_path, docks='wipe = "after-local-verify"\n', register=("BWC-0005",))
    yard = dockyard_factory(home).start()
    clips = [clip_bank[0], clip_bank[1]]
    folder = dock(yard.root, "BWC-0005", media(*clips))
    clip_paths = [folder / rel for rel in media(*clips)]

    wait_for(lambda: not any(p.exists() for p in clip_paths), what="the recorder wiped")
    sessions = yard.wait_sessions(1)
    assert sessions[0]["state"] == "done"
    assert (folder / "SYSTEM" / "DEVICE.TXT").exists(), "a file that is not evidence was wiped"
    assert yard.offered_no_more("BWC-0005") == 1, (
        "the daemon's own wipe was taken for a new dock")

    for clip, rel in zip(clips, media(*clips), strict=True):
        assert sha256_of(store_objects(home)[clip.sha256]) == clip.sha256
        history = ingestd_json(home, "show", clip.sha256)["history"]
        kinds = [h["kind"] for h in history]
        assert kinds.index("stored") < kinds.index("wiped")
        [wiped] = [h for h in history if h["kind"] == "wiped"]
        assert wiped["data"]["path"] == rel
        assert wiped["data"]["policy"] == "after-local-verify"
        assert wiped["data"]["serial"] == "BWC-0005"
    acqs = catalog.acquisitions(home)
    assert all(a["wiped_at"] for a in acqs) and len(acqs) == 2
    assert run_ingestd(home, "ledger", "verify").returncode == 0


def test_file_changed_after_ingest_is_not_wiped(
        tmp_path: Path, clip_bank: ClipBank, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ingestd")
    home = new_home(tmp_path, docks='wipe = "after-local-verify"\n', register=("BWC-0006",))
    keep, changed = clip_bank[0], clip_bank[1]
    folder = stage(tmp_path, "BWC-0006", media(keep, changed))
    station = open_station(home, system_clock)
    coordinator = DockCoordinator(station)
    try:
        report = coordinator.ingestor.ingest(folder, serial="BWC-0006",
                                             ctx=DockContext(source="watch"))
        assert report.state == "done" and len(report.items) == 2
        # Between ingest and wipe the second file is rewritten: same size, same times,
        # different bytes (only hashing again can tell).
        victim = folder / "DCIM" / "100MEDIA" / "0002.MP4"
        st = victim.stat()
        data = flipped(victim.read_bytes())
        victim.unlink()  # a new file: the hard link to the shared clip stays intact
        victim.write_bytes(data)
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))

        wiped = coordinator.wipe(report, folder, contextlib.nullcontext)
    finally:
        coordinator.shutdown()
        station.close()

    assert wiped == 1
    assert not (folder / "DCIM" / "100MEDIA" / "0001.MP4").exists()
    assert victim.read_bytes() == data, "a file whose bytes changed was deleted"
    wipes = ledger_lines(home, "wiped")
    assert [e["item"] for e in wipes] == [keep.sha256]
    assert any("not wiping DCIM/100MEDIA/0002.MP4" in r.getMessage() for r in caplog.records)
    rows = catalog.acquisitions(home)
    assert rows[0]["wiped_at"] and rows[1]["wiped_at"] is None


@pytest.mark.root
def test_a_wipe_is_in_the_ledger_before_the_file_goes_and_a_failed_one_says_so(
        tmp_path: Path, clip_bank: ClipBank, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="ingestd")
    home = new_home(tmp_path, docks='wipe = "after-local-verify"\n', register=("BWC-0016",))
    folder = stage(tmp_path, "BWC-0016", media(clip_bank[0]))
    media_dir = folder / "DCIM" / "100MEDIA"
    station = open_station(home, system_clock)
    coordinator = DockCoordinator(station)
    try:
        report = coordinator.ingestor.ingest(folder, serial="BWC-0016",
                                             ctx=DockContext(source="watch"))
        assert report.state == "done"
        # The recorder's folder refuses the deletion (as a card's write-protect switch would).
        subprocess.run(["chattr", "+i", str(media_dir)], check=True)
        try:
            wiped = coordinator.wipe(report, folder, contextlib.nullcontext)
        finally:
            subprocess.run(["chattr", "-i", str(media_dir)], check=True)
    finally:
        coordinator.shutdown()
        station.close()

    assert wiped == 0
    assert (media_dir / "0001.MP4").read_bytes() == clip_bank[0].path.read_bytes()
    kinds = [e["kind"] for e in ledger_lines(home) if e["kind"].startswith("wipe")]
    assert kinds == ["wipe_failed"]  # refused at the first step: nothing was announced
    [failed] = ledger_lines(home, "wipe_failed")
    assert failed["data"]["path"] == "DCIM/100MEDIA/0001.MP4"
    assert "not permitted" in failed["data"]["error"]
    assert any("could not wipe DCIM/100MEDIA/0001.MP4" in r.getMessage() for r in caplog.records)
    assert [a["wiped_at"] for a in catalog.acquisitions(home)] == [None]
    assert run_ingestd(home, "ledger", "verify").returncode == 0


# A program that keeps changing a recorder folder while ingestd wipes it (see _race_wipe).
HAMMER = r'''
import ctypes, os, random, signal, sys, time

folder, mode, names = sys.argv[1], sys.argv[2], sys.argv[3:]
libc = ctypes.CDLL(None, use_errno=True)
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
log = open(os.environ["HAMMER_LOG"], "w")

def move(src, dst):  # never over an existing name: the hammer must not lose files itself
    return libc.renameat2(dir_fd, src.encode(), dir_fd, dst.encode(), 1) == 0

def replace(name):  # the name holds the stored file and another one, in turn
    if move(name, name + ".tmp"):
        move(name + ".hold", name)
        move(name + ".tmp", name + ".hold")

def append(name):  # each file grows by a byte once, at its own moment during the wipe
    if time.monotonic() < due.get(name, float("inf")):
        return
    del due[name]
    try:
        fd = os.open(name, os.O_WRONLY | os.O_APPEND, dir_fd=dir_fd)
    except OSError:
        return  # wiped already (or set aside for it this instant)
    try:
        os.write(fd, b"\0")
        log.write(f"grew {os.fstat(fd).st_ino}\n")
    finally:
        os.close(fd)

def swap(name):  # the folder is, in turn, itself and a link to a folder off the recorder
    if move(name, name + ".real"):
        os.symlink(sys.argv[-1], name, dir_fd=dir_fd)
        time.sleep(0.002)
        os.unlink(name, dir_fd=dir_fd)
        move(name + ".real", name)
        time.sleep(0.002)

step = {"replace": replace, "append": append, "swap": swap}[mode]
targets = names[:-1] if mode == "swap" else names
due = {}
print("ready", flush=True)
if mode == "append":
    # Once the wipe has taken its first file, the others grow while it works on them.
    while not stop and set(os.listdir(dir_fd)) == set(targets):
        time.sleep(0.0002)
    start = time.monotonic()
    due = {name: start + random.uniform(0, 0.05) for name in targets}
while not stop:
    for name in targets:
        step(name)
    if mode == "append":
        time.sleep(0.0002)
log.close()
'''


def _race_wipe(tmp_path: Path, clip_bank: ClipBank, mode: str, *, rounds: int = 8,
               files: int = 4) -> None:
    """Wipe recorder folders while a separate process keeps changing them (``mode``), round
    after round, and prove that nothing was lost: every file that left the recorder held the
    stored bytes and has its ``wiped`` entry, every other file is still there, and nothing off
    the recorder was touched."""
    home = new_home(tmp_path, docks='wipe = "after-local-verify"\n', register=("BWC-0030",))
    clip = clip_bank[30]
    outside = tmp_path / "elsewhere" / "100MEDIA"
    station = open_station(home, system_clock)
    coordinator = DockCoordinator(station)
    total_wiped = 0
    try:
        n = -1
        # At least ``rounds``, and more until some file was wiped: a race the wipe always
        # lost (every file changed when it came) would prove nothing.
        while (n := n + 1) < rounds or (total_wiped == 0 and n < 5 * rounds):
            folder = tmp_path / f"round{n}" / "BWC-0030"
            media_dir = folder / "DCIM" / "100MEDIA"
            media_dir.mkdir(parents=True)
            names = [f"{i:04d}.MP4" for i in range(1, files + 1)]
            for name in names:
                shutil.copy2(clip.path, media_dir / name)  # a copy: the clip itself is shared
            report = coordinator.ingestor.ingest(folder, serial="BWC-0030",
                                                 ctx=DockContext(source="watch"))
            assert report.state == "done" and len(report.items) == files
            others = {}
            if mode == "replace":
                for name in names:
                    other = f"not stored: {n} {name}".encode() * 100
                    (media_dir / f"{name}.hold").write_bytes(other)
                    others[name] = sha256_of(media_dir / f"{name}.hold")
            if mode == "swap":
                outside.mkdir(parents=True, exist_ok=True)
                for name in names:
                    shutil.copy2(clip.path, outside / name)  # the same bytes, off the recorder
            off_recorder = tree(outside.parent) if mode == "swap" else {}
            where, args = ((folder / "DCIM", ["100MEDIA", str(outside)]) if mode == "swap"
                           else (media_dir, names))
            hammer_log = tmp_path / f"round{n}" / "hammer.log"
            hammer = subprocess.Popen([sys.executable, "-c", HAMMER, str(where), mode, *args],
                                      stdout=subprocess.PIPE, text=True,
                                      env={**os.environ, "HAMMER_LOG": str(hammer_log)})
            try:
                assert hammer.stdout is not None and hammer.stdout.readline() == "ready\n"
                wiped = coordinator.wipe(report, folder, contextlib.nullcontext)
            finally:
                hammer.terminate()
                assert hammer.wait(30) == 0
            total_wiped += wiped

            # What is on the recorder now, by content, whatever its name.
            present: dict[str, list[Path]] = {}
            for path in folder.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    present.setdefault(sha256_of(path), []).append(path)
            entries = [e for e in ledger_lines(home, "wiped")
                       if e["data"]["path"].startswith("DCIM/")]
            session_rows = catalog.acquisitions(home, session_id=report.session_id)
            gone = [r["path"] for r in session_rows if r["wiped_at"]]
            assert len(gone) == wiped
            # Nothing went that was not stored: not the other files, not what was appended to.
            for name, sha in others.items():
                assert sha in present, f"round {n}: a file never stored ({name}'s twin) is gone"
            if mode == "append":
                grown = _grown(hammer_log)
                inodes = {p.stat().st_ino for paths in present.values() for p in paths}
                assert grown <= inodes, f"round {n}: a file was deleted after it had grown"
            if mode == "swap":
                assert tree(outside.parent) == off_recorder, f"round {n}: a file off the " \
                                                              "recorder was touched"
                assert (media_dir).is_dir() and not media_dir.is_symlink()
            # Each file that left the recorder: the stored bytes, verified, with its entry.
            left = sum(map(len, present.values())) if mode == "append" else \
                len(present.get(clip.sha256, []))
            assert left == files - wiped
            assert sum(1 for e in entries if e["item"] == clip.sha256) >= wiped
            station.store.verify(clip.sha256)
            # A wipe's hidden name never outlives the wipe.
            assert not [p for p in folder.rglob(".ingestd-wipe-*")]
    finally:
        coordinator.shutdown()
        station.close()
    assert total_wiped > 0, "the wipe never got to delete anything: the race was not run"
    assert run_ingestd(home, "ledger", "verify").returncode == 0


def _grown(log: Path) -> set[int]:
    """Inodes of the files the hammer appended to (their bytes are no longer the stored ones)."""
    return {int(line.split()[1]) for line in log.read_text(encoding="ascii").splitlines()}


@pytest.mark.parametrize("mode", ["replace", "append", "swap"])
def test_a_wipe_racing_changes_to_the_recorder_never_loses_a_file(
        tmp_path: Path, clip_bank: ClipBank, mode: str) -> None:
    # replace: the file's name holds the stored file and an unstored one in turn;
    # append: each file grows by a byte at some moment; swap: its folder is replaced by a
    # symbolic link to a folder off the recorder holding the same bytes, and back.
    _race_wipe(tmp_path, clip_bank, mode)


@pytest.mark.parametrize("policy", ["never", "after-offsite-verify"])
def test_wipe_policy_that_does_not_allow_it_deletes_nothing(
        tmp_path: Path, clip_bank: ClipBank, dockyard_factory: Callable[[Path], Dockyard],
        caplog: pytest.LogCaptureFixture, policy: str) -> None:
    caplog.set_level(logging.ERROR, logger="ingestd")
    nas = tmp_path / "nas"
    nas.mkdir()
    # after-offsite-verify with a target that is not required: nothing proves an off-site copy.
    extra = (f'[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\nrequired = false\n'
             'same_filesystem_ok = true\n'
             if policy == "after-offsite-verify" else "")
    home = new_home(tmp_path, docks=f'wipe = "{policy}"\n', extra=extra, register=("BWC-0007",))
    yard = dockyard_factory(home).start()
    folder = dock(yard.root, "BWC-0007", media(clip_bank[0], clip_bank[1]))
    before = tree(folder)

    [session] = yard.wait_sessions(1)
    assert session["state"] == "done"
    assert len(items_of(home)) == 2
    assert tree(folder) == before
    assert not ledger_lines(home, "wiped")
    assert all(a["wiped_at"] is None for a in catalog.acquisitions(home))
    if policy == "after-offsite-verify":
        assert any("no required target" in r.getMessage() for r in caplog.records)


# -- device health -----------------------------------------------------------------------------


def test_dock_session_records_space_and_file_system(
        tmp_path: Path, clip_bank: ClipBank, dockyard_factory: Callable[[Path], Dockyard]) -> None:
    home = new_home(tmp_path, register=("BWC-0008",))
    yard = dockyard_factory(home).start()
    folder = dock(yard.root, "BWC-0008", media(clip_bank[0]))

    [session] = yard.wait_sessions(1)
    health = session["health"]
    vfs = os.statvfs(folder)
    assert health["total_bytes"] == vfs.f_blocks * vfs.f_frsize
    assert 0 < health["free_bytes"] <= health["total_bytes"]
    fs_type = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "--target", str(folder)],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert health["fs_type"] == fs_type
    assert health["read_errors"] == 0 and health["faults"] == []
    # The same health is signed into the ledger with the dock.
    [docked] = ledger_lines(home, "docked")
    assert docked["data"]["health"]["total_bytes"] == health["total_bytes"]
    assert docked["data"]["health"]["fs_type"] == fs_type


@pytest.mark.slow
def test_unreadable_file_is_a_fault_in_session_health_and_a_log_line(
        tmp_path: Path, clip_bank: ClipBank, big_file: ClipFile,
        dockyard_factory: Callable[[Path], Dockyard], caplog: pytest.LogCaptureFixture) -> None:
    """As root nothing on a local disk is unreadable by permission; a file that was listed but
    is gone when its turn comes (the recorder itself still there) is a read error all the same."""
    caplog.set_level(logging.WARNING, logger="ingestd")
    # One file at a time: the second must still be waiting when the first is being copied.
    home = new_home(tmp_path, register=("BWC-0009",), extra="[ingest]\nparallel_files = 1\n")
    yard = dockyard_factory(home).start()
    files: dict[str, ClipFile | bytes] = {"DCIM/100MEDIA/0001.MP4": big_file,
                                      "DCIM/100MEDIA/0002.MP4": clip_bank[0]}
    folder = dock(yard.root, "BWC-0009", files)
    doomed = folder / "DCIM" / "100MEDIA" / "0002.MP4"

    def lose_second_file() -> None:
        wait_for(lambda: catalog.acquisitions(home, state="copying"),
                 what="the first file being copied")
        doomed.unlink()

    thread = threading.Thread(target=lose_second_file, daemon=True)
    thread.start()
    sessions = yard.wait_sessions(1)
    thread.join(TIMEOUT)
    session = sessions[0]
    assert session["state"] == "done" and session["files_failed"] == 1
    health = session["health"]
    assert health["read_errors"] == 1
    assert "1 files could not be read" in health["faults"]
    failed = [{k: a[k] for k in ("path", "state", "error")}
              for a in catalog.acquisitions(home, state="failed")]
    assert failed == [{"path": "DCIM/100MEDIA/0002.MP4", "state": "failed",
                       "error": "cannot read: No such file or directory"}]
    assert any(r.getMessage() == "recorder BWC-0009 fault: 1 files could not be read"
               for r in caplog.records)


@contextlib.contextmanager
def unreadable_file(path: Path) -> Iterator[Path]:
    """A regular file that opens but fails to read (EINVAL), whoever reads it, even root: a
    /proc file of this process bind-mounted over ``path``. A read error on a recorder that is
    still there, as a failing flash cell gives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    source = f"/proc/{os.getpid()}/clear_refs"
    done = subprocess.run(["mount", "--bind", source, str(path)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount {source}: {done.stderr.strip()}")
    try:
        try:
            path.read_bytes()
        except OSError:
            pass
        else:
            pytest.skip(f"{source} reads on this kernel: no read error to be had from it")
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


@pytest.mark.root
def test_read_error_on_one_file_is_a_fault_and_the_rest_is_taken(
        tmp_path: Path, clip_bank: ClipBank, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ingestd")
    home = new_home(tmp_path, register=("BWC-0013",))
    folder = stage(tmp_path, "BWC-0013", {"DCIM/100MEDIA/0001.MP4": clip_bank[0],
                                          "DCIM/100MEDIA/0003.MP4": clip_bank[1]})
    station = open_station(home, system_clock)
    coordinator = DockCoordinator(station)
    try:
        with unreadable_file(folder / "DCIM" / "100MEDIA" / "0002.MP4"):
            coordinator.folder(FolderDock(action="add", path=folder, serial="BWC-0013"))
            assert coordinator.wait_idle(TIMEOUT)
    finally:
        coordinator.shutdown()
        station.close()
    [session] = catalog.dock_sessions(home)
    acqs = sorted(catalog.acquisitions(home), key=lambda a: a["path"])
    assert [(a["path"], a["state"]) for a in acqs] == [
        ("DCIM/100MEDIA/0001.MP4", "stored"), ("DCIM/100MEDIA/0002.MP4", "failed"),
        ("DCIM/100MEDIA/0003.MP4", "stored")]
    # The recorder's fault, not the store's (a read error used to be reported as
    # "cannot write to evidence store" and fail the whole session).
    assert acqs[1]["error"].startswith("cannot read"), acqs[1]
    assert "evidence store" not in session["error"]
    assert (session["state"], session["files_failed"]) == ("done", 1), session
    health = session["health"]
    assert health["read_errors"] == 1 and "1 files could not be read" in health["faults"]
    assert any("fault: 1 files could not be read" in r.getMessage() for r in caplog.records)


def test_recorder_clock_ahead_of_station_is_a_fault(
        tmp_path: Path, clip_bank: ClipBank, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ingestd")
    clip = clip_bank[0]  # creation_time: clip_bank.base
    station_now = clip_bank.base - timedelta(hours=2)  # the recorder's clock runs 2 h fast
    home = new_home(tmp_path, register=("BWC-0010",), clock=lambda: station_now)
    station = open_station(home, clock=lambda: station_now)
    coordinator = DockCoordinator(station)
    try:
        folder = stage(tmp_path, "BWC-0010", media(clip))
        coordinator.folder(FolderDock(action="add", path=folder, serial="BWC-0010"))
        assert coordinator.wait_idle(TIMEOUT)
    finally:
        coordinator.shutdown()
        station.close()
    [session] = catalog.dock_sessions(home)
    health = session["health"]
    assert health["clock_ahead_seconds"] == 2 * 3600  # newest recording's start - dock time
    assert "recorder clock ahead of the station by about 7200s" in health["faults"]
    assert flags_of(home, clip.sha256) == ["clock_skew"]
    assert any("recorder clock ahead" in r.getMessage() for r in caplog.records)


def test_faults_of_health_reports_every_problem() -> None:
    """Health a udev dock can carry but a folder cannot (battery, fsck), crafted."""
    assert faults_of({"total_bytes": 100, "free_bytes": 50, "read_errors": 0}) == []
    faults = faults_of({
        "faults": ["cannot read file system usage"], "battery_percent": 12,
        "total_bytes": 1000, "free_bytes": 10, "fs_check": {"clean": False, "message": "bad FAT"},
        "read_errors": 3, "clock_ahead_seconds": 3600.0,
    })
    assert faults == [
        "cannot read file system usage",
        "battery low: 12%",
        "storage nearly full: 10 of 1000 bytes free",
        "file system errors: bad FAT",
        "3 files could not be read",
        "recorder clock ahead of the station by about 3600s",
    ]
    assert faults_of({"battery_percent": 20, "fs_check": {"clean": True}}) == []


# -- serving once ------------------------------------------------------------------------------


def test_scan_once_serves_every_folder_docked_now(tmp_path: Path, clip_bank: ClipBank) -> None:
    home = new_home(tmp_path, register=("BWC-0011", "BWC-0012"))
    root = home / "docks"
    dock(root, "BWC-0011", media(clip_bank[0]))
    dock(root, "BWC-0012", media(clip_bank[1], clip_bank[2]))
    dock(root, "BWC-7777", media(clip_bank[3]))  # not registered
    (root / ".hidden").mkdir()  # staging folders are not recorders
    station = open_station(home, system_clock)
    try:
        outcomes = scan_once(station)
    finally:
        station.close()
    assert sorted((o.serial, o.state) for o in outcomes) == [
        ("BWC-0011", "done"), ("BWC-0012", "done"), ("BWC-7777", "refused")]
    assert len(store_objects(home)) == 3


def test_a_dock_on_a_busy_device_node_is_served_as_what_was_docked_last(
        tmp_path: Path) -> None:
    """A recorder pulled out and another plugged in on the same device node while the first
    session still finishes: the next session must serve the new recorder, not the old one."""
    from ingestd.usecases.docking import DockCoordinator, Outcome, _Job

    home = tmp_path / "home"
    station, _ = init_home(home)
    coordinator = DockCoordinator(station)
    release = threading.Event()
    served: list[str] = []

    def session(serial: str, block: bool) -> Outcome:
        if block:
            release.wait(30)
        served.append(serial)
        return Outcome(serial=serial, state="done")

    try:
        coordinator._submit(_Job(key="udev:/dev/sdb", serial="OLD",
                                 run=lambda: session("OLD", True)))
        wait_for(lambda: coordinator.busy() == ["OLD"], what="the first session to start")
        coordinator._submit(_Job(key="udev:/dev/sdb", serial="NEW",
                                 run=lambda: session("NEW", False)))
        release.set()
        assert coordinator.wait_idle(30)
    finally:
        coordinator.shutdown()
        station.close()
    assert served == ["OLD", "NEW"]
