"""End to end on the udev path: a USB recorder announced by udev, through the dock coordinator,
to items in the evidence store -- with real file systems on loop devices and real clips.

What is real and what is mocked
-------------------------------
* udev is umockdev: the recorder's usb device -> disk -> partition, its properties (``ID_BUS=usb``,
  ``ID_SERIAL_SHORT``, ``ID_FS_TYPE``, ``INGESTD_BATTERY``...) and its add/remove uevents
  (:class:`tests.support.devices.MockUdev`). ``UdevDockSource`` and the coordinator see only that.
* The recorder's file system is real: an ext4 or FAT32 image with real MP4 clips (ffmpeg, through
  the ``clips`` fixture), on a loop device, checked with e2fsck / fsck.fat, mounted by the kernel
  (ext4) or by fusefat (FAT32: this kernel has no vfat), read, wiped, unmounted.

The device node
---------------
The mocked partition reports, as ``DEVNAME``, a real block device node of the loop device. It
cannot be ``/dev/loopN`` itself: umockdev *can* report ``DEVNAME=/dev/loopN`` (a property like any
other, and ``/dev/loopN`` still opens the real device, since the testbed has no node of that
name), but once a testbed exists umockdev 0.17 sends every ioctl on a file opened through a
``/dev/...`` path to its own default handler, which answers ENOTTY. ingestd switches the device
read-only with ``BLKROSET`` (and reads the flag with ``BLKROGET``) in its own process, so with
``/dev/loopN`` every mount would fail with "Inappropriate ioctl for device". So each recorder gets a
block special file ``mknod``-ed with the loop device's major:minor in a folder outside ``/dev``
(:func:`block_node`) -- the same device, a name umockdev does not intercept -- and the
``DockEvent`` really comes from umockdev through ``UdevDockSource``; nothing is built by hand.
(Programs ingestd runs -- mount, fusefat, e2fsck -- are not affected either way: they do not get
``UMOCKDEV_DIR``.) A recorder "pulled out" loses that node, as devtmpfs removes ``/dev/sdb1``.

How the tests run
-----------------
umockdev needs ``libumockdev-preload.so`` in ``LD_PRELOAD`` from process start. As in
``test_udev.py``, the normal run starts one child ``umockdev-wrapper python -m pytest <these
tests>`` for the module and each test reports the child's outcome (pass, fail with the child's
traceback, skip, xfail); under ``umockdev-wrapper`` the tests run directly, with their fixtures.
Most tests drive :class:`ingestd.app.daemon.Daemon`'s dock sources (``start_sources``: listen, then
enumerate) with the coordinator in this process; one runs the whole ``ingestd run`` process
under the same testbed and stops it with SIGTERM.

Root only: loop devices, mount, BLKROSET, mknod.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    INGESTD,
    OFFICER,
    OFFICER_ID,
    RECORDED_T0,
    SERIAL,
    ClipFile,
    Clips,
    FakeClock,
    init_station,
    make_noise_clip,
    open_station,
    partial_files,
    run_cli,
    sha256_of,
    store_objects,
    subprocess_env,
    wait_for,
)

import ingestd.usecases.ingest
from ingestd.app.daemon import Daemon
from ingestd.docks import mounts, walk
from ingestd.station import Station
from tests.support import catalog
from tests.support.devices import (
    ImageType,
    MockRecorder,
    MockUdev,
    attach_loop,
    corrupt_ext4_links,
    make_image,
    missing_programs,
    run,
)

pytestmark = [pytest.mark.integration, pytest.mark.root]

_PRELOADED = "libumockdev-preload" in os.environ.get("LD_PRELOAD", "")
_CHILD_ENV = "INGESTD_UMOCKDEV_CHILD"
# Read at import: conftest's autouse fixture removes INGESTD_* variables before every test.
_IN_CHILD = bool(os.environ.get(_CHILD_ENV))
_CHILD_TIMEOUT = 240.0
_WAIT = 30.0  # seconds: the longest any single dock may take here

MEDIA = "DCIM/100MEDIA"
SAFE = {"ro", "nosuid", "nodev", "noexec"}
REFUSED = {errno.EROFS, errno.EACCES, errno.EPERM}
_BLKROGET = 0x125E
UDEV_FS_TYPE = {"ext4": "ext4", "fat32": "vfat"}


# -- running under umockdev (see the module doc) ---------------------------------------------


def under_umockdev(test: Callable[..., None]) -> Callable[..., None]:
    """Under umockdev-wrapper: the test itself. Otherwise: its outcome from the child run."""
    if _PRELOADED:
        return test

    def reported(request: pytest.FixtureRequest) -> None:
        if _IN_CHILD:
            pytest.fail("running as the umockdev child, but libumockdev-preload is not loaded")
        results: dict[str, tuple[str, str]] = request.getfixturevalue("_child_results")
        status, detail = results.get(request.node.name, ("missing", results[""][1]))
        if status == "missing":
            pytest.fail(f"the umockdev child run did not report this test:\n{detail}")
        elif status == "skipped":
            pytest.skip(detail)
        elif status == "xfailed":
            pytest.xfail(detail)
        elif status == "failed":
            pytest.fail(f"failed under umockdev-wrapper:\n{detail}", pytrace=False)

    reported.__name__ = reported.__qualname__ = test.__name__
    reported.__doc__ = test.__doc__
    reported.__module__ = test.__module__
    reported._udev_dock = True  # type: ignore[attr-defined]
    return reported


@pytest.fixture(scope="module")
def _child_results(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """Run this module's selected tests once under umockdev-wrapper; read back each outcome."""
    missing = missing_programs("umockdev-wrapper")
    if missing:
        pytest.skip("not installed: " + ", ".join(missing) + " (and gir1.2-umockdev-1.0)")
    node_ids = [item.nodeid for item in request.session.items
                if getattr(item, "module", None) is request.module
                and getattr(getattr(item, "function", None), "_udev_dock", False)]
    report = tmp_path_factory.mktemp("udev-dock") / "report.xml"
    args = [shutil.which("umockdev-wrapper") or "umockdev-wrapper", sys.executable, "-m",
            "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={report}", *node_ids]
    try:
        done = subprocess.run(args, cwd=request.config.rootpath, capture_output=True, text=True,
                              env={**os.environ, _CHILD_ENV: "1"}, timeout=_CHILD_TIMEOUT,
                              check=False)
        output = (done.stdout + done.stderr)[-8000:]
    except subprocess.TimeoutExpired as exc:
        output = f"the umockdev child run timed out after {_CHILD_TIMEOUT:g} s: {exc}"
    results = {"": ("failed", output)}
    if not report.exists():
        return results
    for case in ET.parse(report).getroot().iter("testcase"):
        status, detail = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                status, detail = "failed", f"{child.get('message', '')}\n{child.text or output}"
            elif child.tag == "skipped" and child.get("type") == "pytest.xfail":
                status, detail = "xfailed", child.get("message", "")
            elif child.tag == "skipped":
                status, detail = "skipped", child.get("message", "skipped in the child run")
        results[case.get("name", "")] = (status, detail)
    return results


# -- recorders: images, loop devices, device nodes, udev --------------------------------------


def block_node(loop: str, path: Path) -> str:
    """A block special file for ``loop`` at ``path`` (outside /dev: see the module doc)."""
    rdev = os.stat(loop).st_rdev  # /dev/loopN is not in the testbed: this is the real device
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.mknod(path, stat.S_IFBLK | 0o600, rdev)
    return str(path)


def read_only_flag(node: str) -> int:
    """The kernel's read-only flag of the block device (BLKROGET), as ``blockdev --getro``."""
    fd = os.open(node, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, _BLKROGET, struct.pack("i", 0)))[0])
    finally:
        os.close(fd)


def mountinfo(path: Path | str) -> tuple[str, str, set[str]] | None:
    """(source, type, per-mount options) of the mount at ``path``, from /proc/self/mountinfo."""
    target = os.path.realpath(path)
    found = None
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if fields[4] == target:
                sep = fields.index("-")
                found = (fields[sep + 2], fields[sep + 1], set(fields[5].split(",")))
    return found


def mounts_below(root: Path) -> list[str]:
    prefix = os.path.realpath(root).rstrip("/") + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


@dataclass
class Recorder:
    """A recorder's storage: an image with ``files``, on a loop device, behind ``node``."""

    serial: str
    kind: ImageType
    image: Path
    loop: str
    node: str
    files: dict[str, bytes]
    mock: MockRecorder | None = None

    @property
    def fs_type(self) -> str:
        return UDEV_FS_TYPE[self.kind]

    @property
    def clips(self) -> dict[str, str]:
        """name -> SHA-256 of the files ingestd takes (the MP4s)."""
        return {n: sha256_of(d) for n, d in self.files.items() if n.endswith(".MP4")}


@dataclass
class Bench:
    """One test's docking station: the umockdev testbed, recorders on loop devices, a home."""

    udev: MockUdev
    root: Path
    nodes: Path
    stack: contextlib.ExitStack
    clock: FakeClock = field(default_factory=FakeClock)
    homes: list[Path] = field(default_factory=list)

    def home(self, config: str = "", register: Mapping[str, tuple[str, str]] | None = None,
             ) -> Path:
        home = init_station(
            self.root / "home",
            config='[docks]\nwatch_root = ""\nudev = true\nready_timeout = "10s"\n' + config,
            clock=self.clock, register={SERIAL: (OFFICER, OFFICER_ID)} if register is None
            else register,
        )
        self.homes.append(home)
        return home

    def station(self, home: Path) -> Station:
        station = open_station(home, self.clock)
        self.stack.callback(station.close)
        return station

    def recorder(self, serial: str, kind: ImageType, files: Mapping[str, bytes], *,
                 name: str | None = None) -> Recorder:
        """Make the image and attach it; not docked yet (see :meth:`dock`)."""
        name = name or f"{serial}-{kind}"
        image = make_image(self.root / f"{name}.img", kind, files, label=serial[:11])
        loop = self.stack.enter_context(attach_loop(image))
        node = block_node(loop, self.nodes / name)
        return Recorder(serial=serial, kind=kind, image=image, loop=loop, node=node,
                        files=dict(files))

    def dock(self, rec: Recorder, **properties: str) -> MockRecorder:
        """Plug it in: umockdev adds usb device, disk and partition, announcing each."""
        rec.mock = self.udev.add_recorder(
            serial=rec.serial, vendor="Axon", model="Body_3", fs_type=rec.fs_type,
            fs_uuid=f"UUID-{rec.serial}", fs_label=rec.serial[:11],
            extra={"DEVNAME": rec.node, **properties},
        )
        return rec.mock


@pytest.fixture
def bench(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    if not _PRELOADED:
        pytest.fail("this fixture runs only under umockdev-wrapper")
    missing = missing_programs("mkfs.ext4", "e2fsck", "mkfs.fat", "fsck.fat", "mcopy", "mmd",
                               "losetup", "blockdev", "mount", "fusefat")
    if missing:
        pytest.skip("not installed: " + ", ".join(missing))
    # Closed in reverse: what a failed test left mounted, then the testbed, then the loop devices.
    # The testbed must be gone first: while it exists, UMOCKDEV_DIR is in this process's (C)
    # environment, attach_loop's `losetup -d` inherits it, and its LOOP_CLR_FD on /dev/loopN is
    # answered by umockdev (ENOTTY) -- silently leaving the loop device attached.
    with contextlib.ExitStack() as loops:
        with MockUdev() as udev:  # before any pyudev.Context
            # Node names outside tmp_path, which may hold "[" (fusefat's fsname= refuses it).
            nodes = tmp_path_factory.mktemp("nodes")
            bench = Bench(udev=udev, root=tmp_path, nodes=nodes, stack=loops)
            try:
                yield bench
            finally:
                for home in bench.homes:
                    if (home / "run").is_dir():
                        with contextlib.suppress(Exception):
                            mounts.unmount_stale(home / "run")
    # Nothing left behind: no loop device on this test's images, no fusefat on its nodes.
    attached = run(["losetup", "-a"])
    assert str(tmp_path) not in attached, attached
    fusefat = subprocess.run(["pgrep", "-af", f"fusefat .*{nodes}/"], capture_output=True,
                             text=True)
    assert fusefat.returncode == 1, fusefat.stdout


@dataclass
class Spy:
    """What the recorder looked like while ingestd was reading it (asserted afterwards)."""

    seen: list[dict[str, Any]] = field(default_factory=list)

    def wrap(self, daemon: Daemon) -> None:
        ingestor = daemon.coordinator.ingestor
        real = ingestor.ingest

        def ingest(path: Path, **kwargs: Any) -> Any:
            facts: dict[str, Any] = {"path": path, "mount": mountinfo(path),
                                     "listing": sorted(os.listdir(path))}
            entry = mounts.find_mount(path)
            if entry is not None:
                facts["ro_flag"] = read_only_flag(entry.source)
            try:
                (path / "planted.txt").write_bytes(b"x")
                facts["write"] = "accepted"
            except OSError as exc:
                facts["write"] = exc.errno
            self.seen.append(facts)
            return real(path, **kwargs)

        ingestor.ingest = ingest  # type: ignore[method-assign,assignment]


@contextlib.contextmanager
def docking(station: Station, *, spy: Spy | None = None,
            abort: threading.Event | None = None) -> Iterator[Daemon]:
    """The daemon's dock sources (udev: listen, then enumerate) feeding its coordinator."""
    daemon = Daemon(station)
    if abort is not None:
        daemon.coordinator.abort = abort
    if spy is not None:
        spy.wrap(daemon)
    try:
        daemon.start_sources()
        yield daemon
    finally:
        daemon.stop_sources()
        daemon.coordinator.shutdown(wait=True)


def wait_outcomes(daemon: Daemon, count: int) -> list[Any]:
    """Block until ``count`` dock sessions have ended and the coordinator is idle (every
    session it was given before then has ended too), then return every outcome so far."""
    coordinator = daemon.coordinator
    wait_for(lambda: len(coordinator.outcomes) >= count, timeout=_WAIT, interval=0.02,
             what=f"{count} dock sessions ended")
    assert coordinator.wait_idle(_WAIT)
    return list(coordinator.outcomes)


def recorder_files(clips: Clips) -> dict[str, bytes]:
    return {
        f"{MEDIA}/A0001.MP4": clips.a.path.read_bytes(),
        f"{MEDIA}/A0002.MP4": clips.b.path.read_bytes(),
        f"{MEDIA}/A0003.MP4": clips.c.path.read_bytes(),
        "notes.txt": b"not a recording: left alone\n",
    }


def assert_ingested(home: Path, rec: Recorder, *, officer: str = OFFICER) -> None:
    """Every clip is an item of this recorder and officer, stored once and intact."""
    listed = run_cli(home, "items", "--recorder", rec.serial, "--json")
    assert listed.exit_code == 0, listed.stderr
    items = {i["sha256"]: i for i in listed.json()["items"]}
    assert set(items) == set(rec.clips.values())
    for name, sha in rec.clips.items():
        assert items[sha]["officer"] == officer
        assert items[sha]["name"] == name
        assert items[sha]["local"]
    objects = store_objects(home)
    for sha in rec.clips.values():
        assert sha256_of(objects[sha]) == sha
    assert partial_files(home) == []


def assert_let_go(home: Path, rec: Recorder, mount_point: Path) -> None:
    """Unmounted, mount point removed, the device's read-only flag back as it was (off)."""
    assert mountinfo(mount_point) is None
    assert mounts_below(home / "run") == []
    assert not mount_point.exists()
    assert list((home / "run").iterdir()) == []
    assert read_only_flag(rec.node) == 0
    fusefat = subprocess.run(["pgrep", "-f", f"fusefat .*{rec.node}"], capture_output=True)
    assert fusefat.returncode == 1, f"fusefat still running: {fusefat.stdout!r}"


def assert_ledger_intact(home: Path) -> None:
    result = run_cli(home, "ledger", "verify")
    assert result.exit_code == 0, result.stdout + result.stderr


# -- the ordinary dock -----------------------------------------------------------------------


def _dock_and_ingest(bench: Bench, clips: Clips, kind: ImageType,
                     properties: Mapping[str, str]) -> tuple[Path, Recorder, Spy, dict[str, Any]]:
    home = bench.home()
    station = bench.station(home)
    rec = bench.recorder(SERIAL, kind, recorder_files(clips))
    spy = Spy()
    with docking(station, spy=spy) as daemon:
        bench.dock(rec, **properties)
        [outcome] = wait_outcomes(daemon, 1)
    assert (outcome.serial, outcome.state, outcome.error) == (SERIAL, "done", "")
    assert outcome.report is not None and len(outcome.report.items) == 3

    # While ingestd read it: mounted under the station's runtime dir, read-only, nosuid, nodev,
    # noexec, the device itself read-only, and writing refused.
    [seen] = spy.seen
    mount_point: Path = seen["path"]
    assert mount_point.parent == home / "run"
    assert mount_point.name.startswith(f"{SERIAL}-")
    assert seen["mount"] is not None
    source, fs_type, options = seen["mount"]
    assert source == rec.node
    assert fs_type == ("ext4" if kind == "ext4" else "fuse.fusefat")
    assert SAFE <= options, options
    assert seen["ro_flag"] == 1
    assert seen["write"] in REFUSED
    assert "DCIM" in seen["listing"]

    assert_ingested(home, rec)
    assert_let_go(home, rec, mount_point)

    [session] = catalog.dock_sessions(home, SERIAL)
    assert (session["source"], session["state"], session["officer"]) == ("udev", "done", OFFICER)
    assert (session["files_new"], session["files_failed"]) == (3, 0)
    assert session["mountpoint"] == str(mount_point)
    acquisitions = catalog.acquisitions(home, session_id=session["id"])
    assert sorted(a["state"] for a in acquisitions) == ["stored"] * 3
    assert {a["path"] for a in acquisitions} == set(rec.clips)
    health = session["health"]
    assert (health["devnode"], health["fs_type"]) == (rec.node, rec.fs_type)
    assert (health["vendor"], health["model"], health["fs_uuid"]) == (
        "Axon", "Body_3", f"UUID-{SERIAL}")
    assert health["read_errors"] == 0
    [docked] = catalog.ledger_entries(home, "docked")
    assert docked["data"]["serial"] == SERIAL and docked["data"]["source"] == "udev"
    assert docked["data"]["health"]["fs_check"] == health["fs_check"]
    assert_ledger_intact(home)
    return home, rec, spy, health


@under_umockdev
def test_a_registered_ext4_recorder_is_mounted_read_only_ingested_and_let_go(
        bench: Bench, clips: Clips) -> None:
    _, _, _, health = _dock_and_ingest(bench, clips, "ext4", {})
    assert health["fs_check"]["clean"] is True
    assert health["fs_check"]["tool"] == "e2fsck"
    # statvfs of the mounted ext4: real numbers (64 MiB image, three small clips on it).
    assert 0 < health["free_bytes"] < health["total_bytes"] <= 64 * 2**20
    assert "battery_percent" not in health  # the device carries none
    assert health["faults"] == []


@under_umockdev
def test_a_registered_fat32_recorder_goes_through_fusefat_and_reports_its_battery(
        bench: Bench, clips: Clips, caplog: pytest.LogCaptureFixture) -> None:
    if mounts.kernel_supports("vfat"):
        pytest.skip("this kernel has vfat: ingestd would not use fusefat")
    _, _, _, health = _dock_and_ingest(bench, clips, "fat32", {"INGESTD_BATTERY": "15"})
    assert health["fs_check"]["clean"] is True
    assert health["fs_check"]["tool"] == "fsck.fat"
    # fusefat does not implement statfs: the session says 0 and 0, and that is not taken for
    # "storage nearly full" (the fault needs a total to compare with).
    assert (health["total_bytes"], health["free_bytes"]) == (0, 0)
    assert health["battery_percent"] == 15
    assert health["faults"] == ["battery low: 15%"]
    assert any("battery low: 15%" in r.getMessage() and
               getattr(r, "event", None) == "recorder_fault" for r in caplog.records)


# -- refused ---------------------------------------------------------------------------------


@under_umockdev
def test_an_unregistered_recorder_is_refused_and_never_mounted(
        bench: Bench, clips: Clips, monkeypatch: pytest.MonkeyPatch) -> None:
    home = bench.home()
    station = bench.station(home)
    stranger = bench.recorder("STRANGER-9", "ext4", recorder_files(clips))
    anonymous = bench.recorder("ANON", "ext4", {f"{MEDIA}/A0001.MP4": b"x"})
    touched: list[tuple[str, str]] = []
    for name in ("mount_readonly", "fs_check"):
        real = getattr(mounts, name)

        def spy(devnode: str, *args: Any, _name: str = name, _real: Any = real,
                **kwargs: Any) -> Any:
            touched.append((_name, devnode))
            return _real(devnode, *args, **kwargs)

        monkeypatch.setattr(mounts, name, spy)

    with docking(station) as daemon:
        bench.dock(stranger, INGESTD_BATTERY="80")
        anonymous.mock = bench.udev.add_recorder(  # reports no USB serial number at all
            serial="ANON", fs_type="ext4", serial_properties={},
            extra={"DEVNAME": anonymous.node})
        outcomes = wait_outcomes(daemon, 2)

    assert sorted((o.serial, o.state) for o in outcomes) == [
        ("", "refused"), ("STRANGER-9", "refused")]
    assert touched == []  # not checked, not mounted
    assert mounts_below(home / "run") == []
    assert not (home / "run").exists() or list((home / "run").iterdir()) == []
    assert read_only_flag(stranger.node) == 0 and read_only_flag(anonymous.node) == 0
    status = run_cli(home, "status", "--json")
    assert status.exit_code == 0, status.stderr
    assert status.json()["items"]["total"] == 0
    assert status.json()["acquisitions"] == {}
    docks = {d["serial"]: d for d in status.json()["docks"]}
    assert set(docks) == {"STRANGER-9", ""}
    assert (docks["STRANGER-9"]["source"], docks["STRANGER-9"]["state"]) == ("udev", "refused")
    assert docks["STRANGER-9"]["error"] == "recorder not registered"
    assert docks[""]["state"] == "refused" and "no USB serial" in docks[""]["error"]

    refusals = {e["data"]["serial"]: e["data"]
                for e in catalog.ledger_entries(home, "recorder_refused")}
    assert set(refusals) == {"STRANGER-9", ""}
    assert refusals["STRANGER-9"]["source"] == "udev"
    assert refusals["STRANGER-9"]["reason"] == "recorder not registered"
    assert refusals["STRANGER-9"]["health"]["devnode"] == stranger.node
    assert refusals["STRANGER-9"]["health"]["battery_percent"] == 80
    assert catalog.ledger_entries(home, "docked") == []
    assert_ledger_intact(home)


@under_umockdev
def test_a_device_whose_identity_file_names_another_recorder_is_refused(
        bench: Bench, clips: Clips) -> None:
    home = bench.home(register={SERIAL: (OFFICER, OFFICER_ID), "BWC-OTHER": ("Ben Okafor", "B2")})
    station = bench.station(home)
    rec = bench.recorder(SERIAL, "ext4", {**recorder_files(clips), "RECORDER.ID": b"BWC-OTHER\n"})
    with docking(station) as daemon:
        bench.dock(rec)
        [outcome] = wait_outcomes(daemon, 1)
    reason = f"its RECORDER.ID names recorder 'BWC-OTHER', but it docked as '{SERIAL}'"
    assert (outcome.serial, outcome.state, outcome.error) == (SERIAL, "refused", reason)
    status = run_cli(home, "status", "--json").json()
    assert status["items"]["total"] == 0 and status["acquisitions"] == {}
    [refusal] = catalog.ledger_entries(home, "recorder_refused")
    assert (refusal["data"]["serial"], refusal["data"]["reason"]) == (SERIAL, reason)
    docks = status["docks"]
    assert [(d["serial"], d["state"], d["error"]) for d in docks] == [(SERIAL, "refused", reason)]
    assert mounts_below(home / "run") == [] and read_only_flag(rec.node) == 0
    assert_ledger_intact(home)


# -- present at start ------------------------------------------------------------------------


@under_umockdev
def test_a_recorder_plugged_in_before_start_is_found_and_served_once(
        bench: Bench, clips: Clips, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    home = bench.home()
    station = bench.station(home)
    rec = bench.recorder(SERIAL, "ext4", recorder_files(clips))
    bench.dock(rec)  # no monitor listens yet: only enumeration can find it
    assert rec.mock is not None and rec.mock.partition is not None
    stranger = bench.recorder("BARRIER", "ext4", {"x.txt": b"x"})
    with docking(station) as daemon:
        # ... and the kernel's own "add" arrives too, after the daemon listens.
        bench.udev.uevent(rec.mock.partition, "add")
        # Events are handled in order, each given to the coordinator as it is handled: once
        # this refusal is in, that "add" was handled, and a session it started (or asked of
        # the running one) had been given to the coordinator before this one. Waiting until
        # the coordinator is idle, then, waits for that session to end too.
        bench.dock(stranger)
        outcomes = wait_outcomes(daemon, 2)
    assert sorted((o.serial, o.state) for o in outcomes) == [
        ("BARRIER", "refused"), (SERIAL, "done")]
    announced = [r for r in caplog.records
                 if r.getMessage().startswith(f"recorder add: {SERIAL} ")]
    assert len(announced) == 1  # the event did arrive, and was recognised as the same plug
    assert len(catalog.dock_sessions(home, SERIAL)) == 1
    assert len(catalog.acquisitions(home)) == 3
    assert_ingested(home, rec)
    assert mounts_below(home / "run") == []


# -- wipe ------------------------------------------------------------------------------------


def _wipe(bench: Bench, clips: Clips, kind: ImageType, monkeypatch: pytest.MonkeyPatch) -> None:
    home = bench.home('wipe = "after-local-verify"\nfusefat_write = true\n')
    station = bench.station(home)
    rec = bench.recorder(SERIAL, kind, recorder_files(clips))
    spy = Spy()
    states: list[tuple[str, set[str] | None, int]] = []
    real_writable = mounts.writable

    @contextlib.contextmanager
    def writable(mount: mounts.Mount) -> Iterator[mounts.Mount]:
        def note(step: str) -> None:
            info = mountinfo(mount.path)
            states.append((step, info and info[2], read_only_flag(mount.devnode)))

        with real_writable(mount) as m:
            note("wiping")
            yield m
        note("after the wipe")

    monkeypatch.setattr(mounts, "writable", writable)
    with docking(station, spy=spy) as daemon:
        bench.dock(rec)
        [outcome] = wait_outcomes(daemon, 1)
    assert (outcome.state, outcome.wiped) == ("done", 3)
    assert_ingested(home, rec)
    [seen] = spy.seen
    assert SAFE <= seen["mount"][2]  # read-only while it was read
    # Read-write for the wipe step only (still nosuid, nodev, noexec), then read-only again,
    # the device too, before it was unmounted and its flag restored.
    [(_, wiping, rw_flag), (_, after, ro_flag)] = states
    assert wiping is not None and {"rw", "nosuid", "nodev", "noexec"} <= wiping
    assert rw_flag == 0
    assert after is not None and SAFE <= after
    assert ro_flag == 1
    assert_let_go(home, rec, seen["path"])

    wiped = catalog.ledger_entries(home, "wiped")
    assert sorted(e["data"]["path"] for e in wiped) == sorted(rec.clips)
    for entry in wiped:
        assert entry["item"] == rec.clips[entry["data"]["path"]]
        assert entry["data"]["serial"] == SERIAL
        assert entry["data"]["policy"] == "after-local-verify"
    rows = catalog.acquisitions(home)
    assert len(rows) == 3 and all(r["state"] == "stored" and r["wiped_at"] for r in rows)
    assert_ledger_intact(home)

    # Look at the recorder afterwards: the clips are gone, what is not a clip is still there,
    # and the file system is consistent.
    check = mounts.fs_check(rec.node, rec.fs_type)
    assert check.clean, check.message
    with mounts.mount_readonly(rec.node, rec.fs_type, bench.root / "look") as look:
        assert sorted(os.listdir(look.path / MEDIA)) == []
        names = {p.name.lower(): p for p in look.path.iterdir()}
        assert names["notes.txt"].read_bytes() == rec.files["notes.txt"]


@under_umockdev
def test_wipe_after_local_verify_deletes_exactly_the_stored_clips_ext4(
        bench: Bench, clips: Clips, monkeypatch: pytest.MonkeyPatch) -> None:
    _wipe(bench, clips, "ext4", monkeypatch)


@under_umockdev
def test_wipe_after_local_verify_deletes_exactly_the_stored_clips_fat32(
        bench: Bench, clips: Clips, monkeypatch: pytest.MonkeyPatch) -> None:
    _wipe(bench, clips, "fat32", monkeypatch)


def _not_wiped(bench: Bench, clips: Clips, monkeypatch: pytest.MonkeyPatch,
               caplog: pytest.LogCaptureFixture, case: str) -> None:
    """Docked with wipe = "after-local-verify", ingested, and yet nothing deleted (``case``)."""
    kind: ImageType = "fat32" if case == "fat32-fusefat" else "ext4"
    if kind == "fat32" and mounts.kernel_supports("vfat"):
        pytest.skip("this kernel has vfat: ingestd would not use fusefat")
    extra = "fs_check = false\n" if case == "ext4-unchecked" else ""
    home = bench.home('wipe = "after-local-verify"\n' + extra)
    station = bench.station(home)
    rec = bench.recorder(SERIAL, kind, recorder_files(clips))
    if case == "ext4-damaged":
        corrupt_ext4_links(rec.image, "notes.txt", links=7)
    made_writable: list[str] = []
    real_writable = mounts.writable

    @contextlib.contextmanager
    def writable(mount: mounts.Mount) -> Iterator[mounts.Mount]:
        made_writable.append(mount.devnode)
        with real_writable(mount) as m:
            yield m

    monkeypatch.setattr(mounts, "writable", writable)
    with docking(station) as daemon:
        bench.dock(rec)
        [outcome] = wait_outcomes(daemon, 1)

    # Ingested as usual, but nothing deleted, and the recorder never made writable.
    assert (outcome.state, outcome.wiped) == ("done", 0)
    assert_ingested(home, rec)
    assert made_writable == []
    assert catalog.ledger_entries(home, "wiped") == []
    assert all(r["wiped_at"] is None for r in catalog.acquisitions(home))
    reason = {
        "ext4-damaged": "e2fsck found file system errors",
        "ext4-unchecked": "its file system was not checked (docks.fs_check = false)",
        "fat32-fusefat": "FAT through fusefat is written only with docks.fusefat_write = true",
    }[case]
    # Why, where people look: the session's health and faults, the docked entry, the log.
    [session] = catalog.dock_sessions(home, SERIAL)
    assert session["health"]["wipe_blocked"] == reason
    assert f"not wiped: {reason}" in session["health"]["faults"]
    [docked] = catalog.ledger_entries(home, "docked")
    assert docked["data"]["health"]["wipe_blocked"] == reason
    assert any(getattr(r, "event", None) == "wipe_blocked" and reason in r.getMessage()
               for r in caplog.records)
    # The recorder still holds every file, bytes unchanged.
    with mounts.mount_readonly(rec.node, rec.fs_type, bench.root / "look") as look:
        for name, data in rec.files.items():
            if name.endswith(".MP4"):
                assert (look.path / name).read_bytes() == data
    assert_ledger_intact(home)


@under_umockdev
def test_no_wipe_on_a_file_system_the_check_found_damaged(
        bench: Bench, clips: Clips, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    _not_wiped(bench, clips, monkeypatch, caplog, "ext4-damaged")  # a wrong link count


@under_umockdev
def test_no_wipe_when_the_file_system_was_not_checked(
        bench: Bench, clips: Clips, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    _not_wiped(bench, clips, monkeypatch, caplog, "ext4-unchecked")


@under_umockdev
def test_no_wipe_through_fusefat_unless_configured(
        bench: Bench, clips: Clips, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    _not_wiped(bench, clips, monkeypatch, caplog, "fat32-fusefat")


# -- pulled out mid-copy ---------------------------------------------------------------------


class PullTrigger(threading.Event):
    """Stands in for the coordinator's ``abort`` event, which the copy loop asks before every
    buffer it reads. Once armed (when the big file is opened), it pulls the recorder at the
    second question: after exactly one buffer of that file was read. It never answers True."""

    def __init__(self, pull: Callable[[], None]) -> None:
        super().__init__()
        self._pull = pull
        self.armed = False
        self.asked = 0
        self.pulled = threading.Event()

    def is_set(self) -> bool:
        if self.armed:
            self.asked += 1
            if self.asked == 2:
                self.armed = False
                self._pull()
                self.pulled.set()
        return super().is_set()


@dataclass
class MidCopy:
    home: Path
    first: Any  # the outcome of the dock that was pulled
    acquisitions: list[dict[str, Any]]  # after the pull
    items: set[str]  # after the pull
    stored_entries: set[str]  # items with a "stored" ledger entry, after the pull
    acquired_entries: set[str]  # paths with an "acquired" ledger entry, after the pull
    first_session: dict[str, Any]  # the pulled dock's session, after the pull
    big: str  # the name of the file that was being copied
    rec: Recorder  # the second dock
    second: Any


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipFile:
    """About 9 MiB of real MP4 (noise does not compress), read 1 MiB at a time."""
    return make_noise_clip(tmp_path_factory.mktemp("big") / "big.mp4", seconds=3,
                           tag="pulled", recorded=RECORDED_T0)


def _pulled_mid_copy(bench: Bench, clips: Clips, big_clip: ClipFile,
                     monkeypatch: pytest.MonkeyPatch) -> MidCopy:
    # One file at a time: with two file threads, A0003 may start (and fail) before the pull
    # ends the session, and the test asserts that a recorder that is gone is not read further.
    home = bench.home('[ingest]\nbuffer_size = "1MiB"\nparallel_files = 1\n')
    station = bench.station(home)
    big = f"{MEDIA}/A0002.MP4"
    files = {f"{MEDIA}/A0001.MP4": clips.a.path.read_bytes(), big: big_clip.path.read_bytes(),
             f"{MEDIA}/A0003.MP4": clips.c.path.read_bytes()}
    assert len(files[big]) > 6 * 2**20
    rec = bench.recorder(SERIAL, "ext4", files)
    intact = bench.root / "intact.img"
    shutil.copyfile(rec.image, intact)

    def pull() -> None:
        # What a USB pull does, in the kernel's order: the device fails every read it has not
        # already cached (here: a loop device whose backing file shrank to nothing), then its
        # node is gone (devtmpfs). udev's remove events follow from the test's thread.
        os.truncate(rec.image, 0)
        run(["losetup", "--set-capacity", rec.loop])
        os.unlink(rec.node)

    trigger = PullTrigger(pull)
    real_open = walk.open_source

    def open_source(path: bytes) -> int:
        fd = real_open(path)
        if path.endswith(big.encode()) and not trigger.pulled.is_set():
            trigger.armed = True
        return fd

    monkeypatch.setattr(ingestd.usecases.ingest, "open_source", open_source)
    with docking(station, abort=trigger) as daemon:
        bench.dock(rec)
        assert trigger.pulled.wait(_WAIT), "the big file was never copied"
        assert rec.mock is not None
        bench.udev.undock(rec.mock)
        [first] = wait_outcomes(daemon, 1)
        assert mounts_below(home / "run") == []
        assert list((home / "run").iterdir()) == []  # mount point removed
        after_pull = {
            "acquisitions": catalog.acquisitions(home),
            "items": set(catalog.item_shas(home)),
            "stored": {e["item"] for e in catalog.ledger_entries(home, "stored")},
            "acquired": {e["data"]["path"] for e in catalog.ledger_entries(home, "acquired")},
            "session": catalog.dock_sessions(home, SERIAL)[0],
        }
        assert partial_files(home) == []

        # Docked again (the same recorder, intact: it was only pulled out).
        again = bench.root / "again.img"
        shutil.copyfile(intact, again)
        loop = bench.stack.enter_context(attach_loop(again))
        second_rec = Recorder(serial=SERIAL, kind="ext4", image=again, loop=loop,
                              node=block_node(loop, Path(rec.node)), files=files)
        bench.dock(second_rec)
        outcomes = wait_outcomes(daemon, 2)
    return MidCopy(home=home, first=first, acquisitions=after_pull["acquisitions"],
                   items=after_pull["items"], stored_entries=after_pull["stored"],
                   acquired_entries=after_pull["acquired"], first_session=after_pull["session"],
                   big=big,
                   rec=second_rec, second=outcomes[1])


@under_umockdev
def test_a_recorder_pulled_mid_copy_keeps_nothing_unverified_and_resumes_when_docked_again(
        bench: Bench, clips: Clips, big_clip: ClipFile, monkeypatch: pytest.MonkeyPatch) -> None:
    run_ = _pulled_mid_copy(bench, clips, big_clip, monkeypatch)
    home, rec = run_.home, run_.rec
    first_sha = rec.clips[f"{MEDIA}/A0001.MP4"]

    # After the pull: only what was copied and verified before it is stored; the big file is
    # not, in any form (no item, no stored acquisition, no ledger entry, no partial file).
    assert run_.first.state != "done"
    assert run_.first_session["state"] not in ("done", "running")
    assert run_.items == {first_sha} == run_.stored_entries
    assert run_.acquired_entries == {f"{MEDIA}/A0001.MP4"}
    by_path = {a["path"]: a for a in run_.acquisitions}
    assert by_path[f"{MEDIA}/A0001.MP4"]["state"] == "stored"
    pulled = by_path[run_.big]
    assert pulled["state"] not in ("stored", "known", "copying")
    assert pulled["item"] is None and pulled["error"]
    assert f"{MEDIA}/A0003.MP4" not in by_path  # not tried on a recorder that is gone

    # Docked again: the rest is copied, the first file is recognised, not copied twice.
    assert run_.second.state == "done"
    assert_ingested(home, rec)
    stored = [a["item"] for a in catalog.acquisitions(home, state="stored")]
    assert {sha: stored.count(sha) for sha in stored} == {sha: 1 for sha in rec.clips.values()}
    last = catalog.dock_sessions(home, SERIAL)[-1]
    assert (last["state"], last["files_new"], last["files_known"]) == ("done", 2, 1)
    assert len(catalog.ledger_entries(home, "stored")) == 3
    assert mounts_below(home / "run") == []
    assert read_only_flag(rec.node) == 0
    assert_ledger_intact(home)


@under_umockdev
def test_a_recorder_pulled_mid_copy_is_interrupted_not_a_store_failure(
        bench: Bench, clips: Clips, big_clip: ClipFile, monkeypatch: pytest.MonkeyPatch) -> None:
    run_ = _pulled_mid_copy(bench, clips, big_clip, monkeypatch)
    pulled = {a["path"]: a for a in run_.acquisitions}[run_.big]
    assert "evidence store" not in run_.first.error
    assert (pulled["state"], run_.first_session["state"], run_.first.state) == (
        "interrupted", "interrupted", "interrupted")
    assert "removed" in pulled["error"]


# -- the whole daemon ------------------------------------------------------------------------


@under_umockdev
def test_ingestd_run_serves_udev_recorders_and_stops_on_sigterm(
        bench: Bench, clips: Clips) -> None:
    """``ingestd run`` as a process under the same testbed: one recorder present at start
    (enumeration), one docked while it runs (a uevent), SIGTERM, clean exit."""
    other = "BWC-0002"
    home = bench.home(register={SERIAL: (OFFICER, OFFICER_ID), other: ("Li Lei", "PS-1002")})
    early = bench.recorder(SERIAL, "ext4", recorder_files(clips))
    late_files = {f"{MEDIA}/B0001.MP4": clips.plain.path.read_bytes()}
    late = bench.recorder(other, "fat32", late_files)
    bench.dock(early)
    log = (bench.root / "daemon.log").open("w+")
    # The testbed lives in this process's environment (set in C, after Python copied it).
    env = {**subprocess_env(), "UMOCKDEV_DIR": bench.udev.testbed.get_root_dir()}
    process = subprocess.Popen([str(INGESTD), "--home", str(home), "run"], stdout=log,
                               stderr=subprocess.STDOUT, env=env)

    def sessions_done(count: int) -> list[dict[str, Any]]:
        def done() -> list[dict[str, Any]] | None:
            assert process.poll() is None, _tail(log)
            ended = [s for s in catalog.dock_sessions(home) if s["state"] != "running"]
            return ended if len(ended) >= count else None

        ended: list[dict[str, Any]] = wait_for(done, timeout=_WAIT, interval=0.1,
                                               what=f"{count} dock sessions ended")
        return ended

    try:
        sessions_done(1)
        bench.dock(late)
        done = sessions_done(2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(_WAIT) == 0, _tail(log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = _tail(log)
    assert [(s["serial"], s["state"], s["source"]) for s in done] == [
        (SERIAL, "done", "udev"), (other, "done", "udev")], output
    assert "ingestd stopped" in output
    assert_ingested(home, early)
    assert_ingested(home, late, officer="Li Lei")
    assert mounts_below(home / "run") == []
    for rec in (early, late):
        assert read_only_flag(rec.node) == 0
        assert subprocess.run(["pgrep", "-f", rec.node], capture_output=True).returncode == 1
    assert_ledger_intact(home)


def _tail(log: Any) -> str:
    log.flush()
    log.seek(0)
    return str(log.read())[-4000:]
