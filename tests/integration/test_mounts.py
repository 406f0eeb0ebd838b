"""Mounting recorders for real: ext4 on a loop device (kernel) and FAT32 through fusefat.

Root only (loop devices, mount, BLKROSET). Images are made at test time with a few files.
"""

from __future__ import annotations

import configparser
import contextlib
import errno
import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest

from ingestd.docks import mounts
from ingestd.docks.mounts import (
    Mount,
    fs_check,
    mount_point_for,
    mount_readonly,
    remount_readonly,
    remount_readwrite,
    unmount_stale,
    usage,
    writable,
)
from ingestd.errors import RecorderError
from tests.support import confine
from tests.support.confine import PRELUDE, write_syscalls
from tests.support.devices import (
    ImageType,
    attach_loop,
    corrupt_ext4_links,
    loop_device,
    make_image,
    missing_programs,
)

pytestmark = pytest.mark.integration

_needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loop devices, mount")


def root(test: Callable[..., None]) -> Callable[..., None]:
    """Marked ``root`` (selectable with -m) and skipped when not root."""
    marked: Callable[..., None] = pytest.mark.root(_needs_root(test))
    return marked


CLIP = bytes(range(256)) * 4096  # 1 MiB, recognisable
FILES = {
    "DCIM/100AXON/Clip_0001.MP4": CLIP,
    "DCIM/100AXON/Clip_0002.MP4": CLIP[::-1],
    "notes.txt": b"officer notes\n",
}
SCRIPT = "bin/run.sh"
REFUSED = {errno.EROFS, errno.EACCES, errno.EPERM}
UNIT = Path(__file__).resolve().parents[2] / "systemd" / "ingestd.service"


def _require(*programs: str) -> None:
    missing = missing_programs(*programs)
    if missing:
        pytest.skip("not installed: " + ", ".join(missing))


def _mounted_at(path: Path) -> str | None:
    """The per-mount options of ``path`` straight from /proc/self/mountinfo, or None."""
    target = os.path.realpath(path)
    found = None
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if fields[4] == target:
                found = fields[5]
    return found


def _device_ro_flag(devnode: str) -> str:
    return Path("/sys/block", os.path.basename(devnode), "ro").read_text().strip()


def _assert_write_refused(mount: Mount) -> None:
    with pytest.raises(OSError) as new_file:
        (mount.path / "planted.txt").write_bytes(b"x")
    assert new_file.value.errno in REFUSED
    with pytest.raises(OSError) as append:
        with open(mount.path / "notes.txt", "ab") as f:
            f.write(b"altered")
    assert append.value.errno in REFUSED
    with pytest.raises(OSError) as delete:
        (mount.path / "notes.txt").unlink()
    assert delete.value.errno in REFUSED


def _assert_files(root: Path) -> None:
    assert (root / "DCIM/100AXON/Clip_0001.MP4").read_bytes() == CLIP
    assert (root / "DCIM/100AXON/Clip_0002.MP4").read_bytes() == CLIP[::-1]
    # fusefat shows 8.3 names upper case where the kernel's vfat would show "notes.txt".
    names = {p.name.lower() for p in root.iterdir()}
    assert "notes.txt" in names


@pytest.fixture
def ext4_device(tmp_path: Path) -> Iterator[str]:
    _require("mkfs.ext4", "losetup", "mount")
    files = {**FILES, SCRIPT: b"#!/bin/sh\necho ran\n"}
    with loop_device(tmp_path, "ext4", files, modes={SCRIPT: 0o4755}) as devnode:
        yield devnode


@pytest.fixture
def fat_device(tmp_path: Path) -> Iterator[str]:
    _require("mkfs.fat", "mcopy", "mmd", "losetup", "fusefat")
    with loop_device(tmp_path, "fat32", FILES, label="REC0042") as devnode:
        yield devnode


# -- read-only mounts ------------------------------------------------------------------------


@root
def test_ext4_is_mounted_read_only_nosuid_nodev_noexec(ext4_device: str, tmp_path: Path) -> None:
    where = mount_point_for(tmp_path / "run", "D01A12345")
    assert _device_ro_flag(ext4_device) == "0"
    with mount_readonly(ext4_device, "ext4", where) as mount:
        assert mount.driver == "kernel" and mount.read_only and mount.mounted
        options = _mounted_at(where)
        assert options is not None
        assert {"ro", "nosuid", "nodev", "noexec"} <= set(options.split(","))
        _assert_files(where)
        _assert_write_refused(mount)

        # noexec: the executable (setuid, even) on the recorder cannot be run.
        script = where / SCRIPT
        assert script.stat().st_mode & 0o4755 == 0o4755
        with pytest.raises(PermissionError):
            subprocess.run([str(script)], check=False, timeout=10)

        # The block device itself is read-only while mounted: not even root writes to it.
        assert _device_ro_flag(ext4_device) == "1"
        fd = os.open(ext4_device, os.O_WRONLY)
        try:
            with pytest.raises(OSError) as raw:
                os.write(fd, b"\0" * 512)
            assert raw.value.errno in REFUSED
        finally:
            os.close(fd)

        space = usage(where)
        assert 0 < space.available_bytes <= space.free_bytes < space.total_bytes
        assert space.used_bytes >= 2 * len(CLIP)

    assert _mounted_at(where) is None
    assert not where.exists()  # we made the mount point, we removed it
    assert _device_ro_flag(ext4_device) == "0"  # restored as found
    mount.unmount()  # again: harmless


@root
def test_fat32_is_mounted_read_only_through_fusefat(fat_device: str, tmp_path: Path) -> None:
    where = tmp_path / "run" / "fat"
    # This kernel has no vfat: "auto" must pick fusefat. Elsewhere force it, it is what we test.
    driver: Literal["auto", "fusefat"] = "fusefat" if mounts.kernel_supports("vfat") else "auto"
    with mount_readonly(fat_device, "vfat", where, driver=driver) as mount:
        assert mount.driver == "fusefat"
        options = _mounted_at(where)
        assert options is not None
        assert {"ro", "nosuid", "nodev", "noexec"} <= set(options.split(","))
        entry = mounts.find_mount(where)
        assert entry is not None and entry.fs_type == "fuse.fusefat"
        assert entry.source == fat_device
        _assert_files(where)
        _assert_write_refused(mount)
        assert _device_ro_flag(fat_device) == "1"
        assert usage(where).total_bytes == 0  # fusefat does not implement statfs
    assert _mounted_at(where) is None
    assert not where.exists()
    assert mount._fuse is None  # the fusefat child was waited for
    assert _device_ro_flag(fat_device) == "0"


@root
@pytest.mark.parametrize("kind", ["ext4", "fat32"])
def test_read_write_for_the_wipe_step_and_back(kind: ImageType, tmp_path: Path) -> None:
    _require("mkfs.ext4", "mkfs.fat", "mcopy", "mmd", "losetup", "fusefat")
    fs_type = "ext4" if kind == "ext4" else "vfat"
    where = tmp_path / "run" / kind
    with loop_device(tmp_path, kind, FILES) as devnode:
        with mount_readonly(devnode, fs_type, where) as mount:
            with writable(mount):
                assert not mount.read_only
                options = _mounted_at(where)
                assert options is not None
                assert {"rw", "nosuid", "nodev", "noexec"} <= set(options.split(","))
                assert _device_ro_flag(devnode) == "0"
                (where / "DCIM/100AXON/Clip_0001.MP4").unlink()  # the wipe
            assert mount.read_only
            options = _mounted_at(where)
            assert options is not None and "ro" in options.split(",")
            assert _device_ro_flag(devnode) == "1"
            _assert_write_refused(mount)
            assert not (where / "DCIM/100AXON/Clip_0001.MP4").exists()
            assert (where / "DCIM/100AXON/Clip_0002.MP4").read_bytes() == CLIP[::-1]

            # The explicit pair behaves the same, and is idempotent.
            remount_readwrite(mount)
            remount_readwrite(mount)
            remount_readonly(mount)
            remount_readonly(mount)
            assert mount.read_only
        assert _mounted_at(where) is None

        # The wipe left a consistent file system behind (fusefat's rw+ is "experimental").
        assert fs_check(devnode, fs_type).clean


# -- refusing --------------------------------------------------------------------------------


@root
def test_a_bad_device_gives_a_recorder_error_naming_it(tmp_path: Path) -> None:
    _require("losetup", "mount", "fusefat")
    garbage = tmp_path / "garbage.img"
    garbage.write_bytes(os.urandom(4 * 1024 * 1024))
    where = tmp_path / "run" / "bad"
    with attach_loop(garbage) as devnode:
        for fs_type in ("ext4", "vfat"):
            with pytest.raises(RecorderError) as raised:
                mount_readonly(devnode, fs_type, where)
            message = raised.value.message
            assert devnode in message
            if fs_type == "ext4":
                assert "wrong fs type" in message or "bad superblock" in message  # mount's stderr
            else:
                assert "FAT" in message  # refused before fusefat could crash on it
            assert _mounted_at(where) is None
            assert not where.exists()
            assert _device_ro_flag(devnode) == "0"
        with pytest.raises(RecorderError) as raised:
            fs_check(devnode, "ext4")
        assert devnode in raised.value.message and "Bad magic number" in raised.value.message

    with pytest.raises(RecorderError, match="/dev/no-such-recorder"):
        mount_readonly("/dev/no-such-recorder", "ext4", where)
    with pytest.raises(RecorderError, match="not a block device"):
        mount_readonly(str(garbage), "ext4", where)
    with pytest.raises(RecorderError, match="/dev/no-such-recorder"):
        fs_check("/dev/no-such-recorder", "vfat")
    with pytest.raises(RecorderError, match="no read-only check"):
        fs_check("/dev/null", "hfsplus")


@root
def test_mount_point_must_be_a_fresh_empty_directory(ext4_device: str, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "leftover").write_text("x")
    with pytest.raises(RecorderError, match="not empty"):
        mount_readonly(ext4_device, "ext4", busy)
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(RecorderError, match="symbolic link"):
        mount_readonly(ext4_device, "ext4", link)
    existing = tmp_path / "existing"
    existing.mkdir()
    with mount_readonly(ext4_device, "ext4", existing):
        with pytest.raises(RecorderError, match="already a mount point"):
            mount_readonly(ext4_device, "ext4", existing)
    assert existing.is_dir()  # not ours: left in place
    assert _device_ro_flag(ext4_device) == "0"


@root
@pytest.mark.parametrize("kind", ["ext4", "fat32"])
def test_a_busy_recorder_is_not_unmounted_behind_a_reader(kind: ImageType, tmp_path: Path) -> None:
    _require("mkfs.ext4", "mkfs.fat", "mcopy", "mmd", "losetup", "fusefat")
    where = tmp_path / "run" / kind
    with loop_device(tmp_path, kind, FILES) as devnode:
        mount = mount_readonly(devnode, "ext4" if kind == "ext4" else "vfat", where)
        reader = open(where / "notes.txt", "rb")  # held open on purpose
        try:
            with pytest.raises(RecorderError) as raised:
                mount.unmount()
            assert devnode in raised.value.message and "busy" in raised.value.message
            assert mount.mounted and _mounted_at(where) is not None
            assert _device_ro_flag(devnode) == "1"  # still protected while still mounted
        finally:
            reader.close()
        mount.unmount()
        assert _mounted_at(where) is None and not where.exists()


@root
def test_stale_mounts_of_a_dead_run_are_unmounted(ext4_device: str, tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    where = mount_point_for(runtime, "STALE1")
    mount_readonly(ext4_device, "ext4", where)  # and then "crash": no unmount
    assert _mounted_at(where) is not None
    assert unmount_stale(runtime) == [where]
    assert _mounted_at(where) is None
    assert unmount_stale(runtime) == []
    # The dead run could not restore the device's read-only flag: it stays (safe) until replug.
    assert _device_ro_flag(ext4_device) == "1"


@root
def test_only_what_ingestd_mounted_is_unmounted_as_stale(ext4_device: str, tmp_path: Path,
                                                        ) -> None:
    # The runtime folder is shared (as /mnt would be): a file system someone else mounted
    # below it, with a file on it, and one left behind by a run of ingestd that died.
    runtime = tmp_path / "run"
    nas = runtime / "nas"
    nas.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "nas-share", str(nas)], check=True)
    try:
        (nas / "case-files.txt").write_bytes(b"not a recorder\n")
        where = mount_point_for(runtime, "STALE2")
        mount_readonly(ext4_device, "ext4", where)  # and then "crash": no unmount

        assert unmount_stale(runtime) == [where]
        assert _mounted_at(where) is None
        assert _mounted_at(nas) is not None, "a mount ingestd did not make was unmounted"
        assert (nas / "case-files.txt").read_bytes() == b"not a recorder\n"
        assert unmount_stale(runtime) == []
        assert _mounted_at(nas) is not None
        # A record copied beside a foreign mount, naming another device, is not believed.
        (runtime / f".nas{mounts.RECORD_SUFFIX}").write_text(
            f'{{"mount_point": "{os.path.realpath(nas)}", "source": "{ext4_device}"}}')
        assert unmount_stale(runtime) == []
        assert _mounted_at(nas) is not None
    finally:
        subprocess.run(["umount", str(nas)], check=False)


# -- as the daemon's own user, with the unit's capabilities ----------------------------------

# Run as the unit runs the daemon, under its system call filter, MemoryDenyWriteExecute and
# umask: check the file system, mount, read every file, (FAT) wipe one in writable(), unmount.
_AS_DAEMON = PRELUDE + """
import json, os, sys
from pathlib import Path
from ingestd.docks.mounts import find_mount, fs_check, mount_readonly, writable
from ingestd.errors import RecorderError
confine(int(os.environ["CONFINE_UMASK"], 8))
devnode, fs_type, where, wipe = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
out = {"uid": os.geteuid()}
try:
    out["clean"] = fs_check(devnode, fs_type).clean
    with mount_readonly(devnode, fs_type, where) as mount:
        out["driver"] = mount.driver
        out["options"] = sorted(find_mount(where).options)
        out["files"] = {str(p.relative_to(where)).lower(): p.read_bytes().hex()
                        for p in sorted(where.rglob("*")) if p.is_file()}
        if wipe:
            with writable(mount):
                (where / wipe).unlink()
    out["mounted_after"] = find_mount(where) is not None
except RecorderError as exc:
    out["error"] = exc.message
print(json.dumps(out))
"""


def _unit_service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser["Service"]


def _as_daemon_user(
    devnode: str, fs_type: str, where: Path, *, caps: list[str], wipe: str = ""
) -> dict[str, object]:
    """Run _AS_DAEMON as ``nobody`` (standing in for the ingestd user) with only ``caps``,
    confined as the udev unit confines the daemon, in a mount namespace of its own (a mount left
    behind dies with it), and return its report."""
    setpriv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
               "--no-new-privs"]
    names = ",".join("+" + cap.lower().removeprefix("cap_") for cap in caps)
    setpriv += [f"--inh-caps=-all{',' + names if names else ''}",
                f"--ambient-caps={names or '-all'}",
                f"--bounding-set=-all{',' + names if names else ''}"]
    # /dev/fuse is 0666 on a station; where it is not, a 0666 node of it is bound over it.
    fuse = ""
    if os.stat("/dev/fuse").st_mode & 0o006 != 0o006:
        node = where.parent / "fuse"
        os.mknod(node, 0o666 | 0o020000, os.stat("/dev/fuse").st_rdev)
        os.chmod(node, 0o666)
        fuse = f"mount --bind {node} /dev/fuse && "
    command = " ".join([*setpriv, sys.executable, "-c", '"$0"', devnode, fs_type, str(where),
                        f"'{wipe}'"])
    syscalls = write_syscalls(where.parent / "syscalls", UNIT)
    env = {**os.environ, "PYTHONPATH": str(UNIT.parents[1]), "PYTHONDONTWRITEBYTECODE": "1",
           "CONFINE_SYSCALLS": str(syscalls), "CONFINE_UMASK": f"{confine.umask(UNIT):o}"}
    done = subprocess.run(["unshare", "--mount", "sh", "-c",
                           confine.RELEASE_COPIED_MOUNTS + fuse + "exec " + command,
                           _AS_DAEMON], capture_output=True, text=True, timeout=120, env=env,
                          check=False)
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


@pytest.fixture
def daemon_runtime() -> Iterator[Path]:
    """A runtime folder the daemon's user owns (pytest's own tmp is root's, 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="ingestd-run-"))
    nobody = pwd.getpwnam("nobody")
    os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _udev_modes(devnode: str) -> Iterator[None]:
    """Group the daemon's, 0660, as 99-ingestd.rules leaves a docked recorder (a bare loop
    device is root's 0600)."""
    rule = (UNIT.parent / "99-ingestd.rules").read_text(encoding="utf-8")
    assert '\nGROUP="ingestd", MODE="0660"\n' in rule
    before = os.stat(devnode)
    os.chown(devnode, -1, grp.getgrnam("nogroup").gr_gid)
    os.chmod(devnode, 0o660)
    try:
        yield
    finally:
        os.chown(devnode, -1, before.st_gid)
        os.chmod(devnode, before.st_mode & 0o7777)


@root
@pytest.mark.parametrize("kind", ["ext4", "fat32"])
def test_the_daemon_user_mounts_recorders_with_only_the_units_capabilities(
    kind: ImageType, tmp_path: Path, daemon_runtime: Path
) -> None:
    _require("mkfs.ext4", "mkfs.fat", "mcopy", "mmd", "mdir", "losetup", "fusefat", "setpriv",
             "unshare")
    caps = _unit_service()["AmbientCapabilities"].split()
    assert "CAP_SYS_ADMIN" in caps and _unit_service()["User"] == "ingestd"
    if kind == "fat32":  # FAT has no owners: mounting is all it needs, even for the wipe
        caps = ["CAP_SYS_ADMIN"]
    fs_type = "ext4" if kind == "ext4" else "vfat"
    # Recorder files are root's and private on ext4; FAT has no owners at all.
    modes = {"notes.txt": 0o600} if kind == "ext4" else None
    wipe = "" if kind == "ext4" else "DCIM/100AXON/Clip_0002.MP4"
    where = daemon_runtime / "recorder"
    with loop_device(tmp_path, kind, FILES, modes=modes) as devnode, _udev_modes(devnode):
        report = _as_daemon_user(devnode, fs_type, where, caps=caps, wipe=wipe)
        assert report.get("error") is None and report["uid"] == pwd.getpwnam("nobody").pw_uid
        assert report["clean"] is True
        assert {"ro", "nosuid", "nodev", "noexec"} <= set(report["options"])  # type: ignore[arg-type]
        files = report["files"]
        assert isinstance(files, dict)
        assert files["dcim/100axon/clip_0001.mp4"] == CLIP.hex()
        assert files["notes.txt"] == FILES["notes.txt"].hex()
        assert report["mounted_after"] is False
        assert _device_ro_flag(devnode) == "0"  # restored as found
    assert not where.exists()
    if wipe:  # the wipe step really wrote the recorder, and only what it was told to
        names = subprocess.run(["mdir", "-b", "-i", str(tmp_path / "recorder-fat32.img"),
                                "::/DCIM/100AXON"], capture_output=True, text=True,
                               env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}, check=True)
        assert "CLIP_0001.MP4" in names.stdout.upper()
        assert "CLIP_0002.MP4" not in names.stdout.upper()


@root
def test_without_cap_sys_admin_the_daemon_user_is_refused_and_nothing_changes(
    ext4_device: str, daemon_runtime: Path
) -> None:
    _require("setpriv", "unshare")
    where = daemon_runtime / "recorder"
    with _udev_modes(ext4_device):
        report = _as_daemon_user(ext4_device, "ext4", where, caps=[])
        message = report["error"]
        assert isinstance(message, str) and ext4_device in message
        assert "CAP_SYS_ADMIN" in message
        assert "files" not in report
        assert _device_ro_flag(ext4_device) == "0"
    assert not where.exists()


# -- file system checks ----------------------------------------------------------------------


@root
def test_fs_check_healthy_and_corrupted_ext4(tmp_path: Path) -> None:
    _require("mkfs.ext4", "e2fsck", "debugfs", "losetup")
    healthy = make_image(tmp_path / "healthy.img", "ext4", FILES)
    corrupted = make_image(tmp_path / "corrupted.img", "ext4", FILES)
    corrupt_ext4_links(corrupted, "notes.txt", links=7)
    with attach_loop(healthy) as good, attach_loop(corrupted) as bad:
        ok = fs_check(good, "ext4")
        assert ok.clean and ok.exit_code == 0 and ok.tool == "e2fsck"
        assert good in ok.message or "files" in ok.message

        before = corrupted.read_bytes()
        damaged = fs_check(bad, "ext4", timeout=60)
        assert not damaged.clean
        assert damaged.exit_code == 4  # errors left uncorrected: -n changed nothing
        assert "ref count is 7, should be 1" in damaged.message
        assert corrupted.read_bytes() == before  # a read-only check indeed


@root
def test_fs_check_fat(fat_device: str) -> None:
    _require("fsck.fat")
    result = fs_check(fat_device, "vfat")
    assert result.clean and result.tool == "fsck.fat"
    assert "clusters" in result.message


# -- mount point names (no root needed) -------------------------------------------------------


@pytest.mark.parametrize(
    "serial",
    [
        "D01A12345",
        "../../etc",
        "/etc/passwd",
        "a/../../b",
        "..",
        ".",
        "",
        "\x00evil\n",
        "..\\..\\windows",
        "é" * 300,
        "x" * 10_000,
        "-rf",
        ".hidden",
        "a b;rm -rf /",
        "\udcff",  # undecodable bytes from a device, as Python represents them
    ],
)
def test_mount_point_names_never_escape(serial: str, tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    path = mount_point_for(runtime, serial)
    assert path.parent == runtime
    assert os.path.realpath(path).startswith(os.path.realpath(runtime) + os.sep)
    name = path.name
    assert name not in (".", "..") and not name.startswith((".", "-"))
    assert len(name) <= 61
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
    assert mount_point_for(runtime, serial) == path  # stable across calls


def test_mount_point_names_keep_recorders_apart(tmp_path: Path) -> None:
    names = {
        mount_point_for(tmp_path, serial, partition=part)
        for serial in ("a/b", "a_b", "a b", "A_B", "")
        for part in ("", "1", "2")
    }
    assert len(names) == 15
    assert mount_point_for(tmp_path, "D01A12345").name.startswith("D01A12345-")
