"""Mounting a docked recorder read-only, checking it, and (for the wipe step only) read-write.

Evidence rule: nothing ingestd does while reading may change a byte on the recorder. So:

* The block device itself is switched read-only in the kernel (``BLKROSET``, as ``blockdev
  --setro`` does) before anything is mounted; even a file system driver that wanted to write
  (ext3/ext4 journal replay, FAT "dirty" bits) cannot. The previous setting is restored when
  the recorder is unmounted.
* The mount is ``ro,nosuid,nodev,noexec``; ext3/ext4 also get ``noload`` (do not replay the
  journal, which would write) and XFS ``norecovery`` for the same reason.
* FAT (``vfat``/``fat32``/``msdos``...) goes to the kernel's ``vfat`` when the kernel has it, and
  otherwise to FUSE ``fusefat``, which is read-only unless given ``rw+``; the same ``ro,nosuid,
  nodev,noexec`` options are passed to the FUSE mount. ``fusefat`` runs in the foreground as our
  child (``-f``), single-threaded (``-s``, its FAT code is not known to be thread-safe), so that
  unmounting can wait until it has exited and a later mount never races a writer still
  flushing. It logs a line per cluster read on stderr: that is drained and only its first and
  last few KiB are kept, for error messages.
* After mounting, ``/proc/self/mountinfo`` is read back and the mount refused (and undone) unless
  it really is read-only, nosuid, nodev and noexec.

Read-write (the wipe step, when policy allows) is a full unmount and mount ``rw,nosuid,nodev,
noexec``, not ``mount -o remount``: a remount would keep ``noload`` and write an ext4 without its
journal, and fusefat cannot change mode at all. :func:`writable` returns to read-only afterwards.

Each mount ingestd makes has a record beside its mount point (``.NAME.ingestd-mount``, naming
the device), written before mounting and removed after unmounting: after a crash,
:func:`unmount_stale` unmounts only what a record names, never another mount that happens to live
below the runtime folder.

The daemon may run as its own user with ``CAP_SYS_ADMIN`` (see ``systemd/ingestd.service``).
mount(8) then works because ``NoNewPrivileges`` keeps it from running setuid, so libmount does
not restrict it and the kernel checks the capability. Unmounting calls umount2(2) itself, for
kernel and FUSE mounts alike: umount(8) run by a user other than root forks a child that calls
setuid(2), and fusermount calls setfsuid(2), both refused by the unit's system call filter.

Every program is run with an argument list, never a shell, ``LC_ALL=C`` (messages are quoted in
errors), and a timeout; failures raise :class:`RecorderError` naming the device and quoting the
program's stderr.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ingestd.errors import RecorderError

log = logging.getLogger(__name__)

Driver = Literal["kernel", "fusefat"]

#: Options every recorder mount carries.
SAFE_OPTIONS: tuple[str, ...] = ("nosuid", "nodev", "noexec")

#: Names udev, blkid and people use for FAT; the kernel driver for all of them is "vfat".
FAT_TYPES = frozenset({"vfat", "fat", "fat12", "fat16", "fat32", "msdos"})

# Extra read-only options that stop a driver from writing on its own (journal replay).
_READ_ONLY_EXTRA: dict[str, tuple[str, ...]] = {
    "ext3": ("noload",),
    "ext4": ("noload",),
    "xfs": ("norecovery",),
}

# <linux/fs.h>: _IO(0x12, 93) and _IO(0x12, 94).
_BLKROSET = 0x125D
_BLKROGET = 0x125E
_MNT_DETACH = 0x2  # <sys/mount.h>: umount2's lazy unmount

_KILL_GRACE = 5.0  # seconds to wait for a killed program before giving up on it
_STDERR_KEEP = 4096  # bytes kept from each end of a FUSE driver's stderr
#: A mount record's name is ``.<mount point name><RECORD_SUFFIX>``, beside the mount point.
RECORD_SUFFIX = ".ingestd-mount"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_ENV = {**os.environ, "LC_ALL": "C"}


@dataclass(frozen=True, kw_only=True)
class DiskUsage:
    """Space on a mounted file system, in bytes (``available`` is what non-root may use)."""

    total_bytes: int
    free_bytes: int
    available_bytes: int

    @property
    def used_bytes(self) -> int:
        return self.total_bytes - self.free_bytes


@dataclass(frozen=True, kw_only=True)
class FsCheck:
    """The result of a read-only file system check. ``message`` is the tool's own output."""

    devnode: str
    fs_type: str
    tool: str
    clean: bool
    exit_code: int
    message: str


@dataclass(frozen=True, kw_only=True)
class MountEntry:
    """One line of ``/proc/self/mountinfo``: where, what, and the per-mount options."""

    mount_point: str
    source: str
    fs_type: str
    options: frozenset[str]


class Mount:
    """A recorder file system mounted by :func:`mount_readonly`. Use as a context manager or call
    :meth:`unmount`; both are safe to repeat."""

    def __init__(
        self,
        *,
        devnode: str,
        fs_type: str,
        path: Path,
        driver: Driver,
        created_path: bool,
        device_was_read_only: bool,
        timeout: float,
    ) -> None:
        self.devnode = devnode
        self.fs_type = fs_type
        self.path = path
        self.driver: Driver = driver
        self.timeout = timeout
        self._created_path = created_path
        self._device_was_read_only = device_was_read_only
        self._read_only = True
        self._mounted = False
        self._fuse: _FuseProcess | None = None

    def __repr__(self) -> str:
        state = ("ro" if self._read_only else "rw") if self._mounted else "unmounted"
        return (
            f"Mount({self.devnode!r} on {str(self.path)!r}, {self.fs_type}, {self.driver}, {state})"
        )

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def mounted(self) -> bool:
        return self._mounted

    def unmount(self) -> None:
        """Unmount, restore the device's read-only setting, remove the mount point we made."""
        if self._mounted:
            _unmount(self)
        _remove_record(self.path)
        try:
            _set_device_read_only(self.devnode, self._device_was_read_only, missing_ok=True)
        finally:  # unmounted: the mount point goes even if the flag could not be restored
            if self._created_path:
                with contextlib.suppress(FileNotFoundError):
                    self.path.rmdir()
                self._created_path = False

    def __enter__(self) -> Mount:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.unmount()


# -- public API ------------------------------------------------------------------------------


def mount_point_for(runtime_dir: Path, serial: str, *, partition: str = "") -> Path:
    """The mount point for a recorder under ``runtime_dir``: one plain name, never a path.

    A serial is data from the device. Only ``[A-Za-z0-9._-]`` of it is kept (at most 48
    characters, no leading dot), and a hash of the full serial and ``partition`` (e.g. the
    file system UUID or partition number, so two partitions of one recorder differ) is appended,
    so different serials never share a mount point and a hostile one cannot escape.
    """
    stem = _SAFE_NAME.sub("_", serial).strip("._-")[:48].rstrip("._-") or "recorder"
    raw = (
        serial.encode("utf-8", "surrogateescape")
        + b"\0"
        + partition.encode("utf-8", "surrogateescape")
    )
    name = f"{stem}-{hashlib.sha256(raw).hexdigest()[:12]}"
    path = runtime_dir / name
    # Cannot fail given the name above; checked anyway, since a wrong mount point is an escape.
    if path.parent != runtime_dir or path.name != name:
        raise RecorderError(f"unsafe mount point name {name!r} for serial {serial!r}")
    return path


def mount_readonly(
    devnode: str,
    fs_type: str,
    where: Path,
    *,
    timeout: float = 30.0,
    driver: Driver | Literal["auto"] = "auto",
) -> Mount:
    """Mount ``devnode`` (a block device holding ``fs_type``) read-only at ``where``.

    ``where`` is created (mode 0700) if missing, and removed again at unmount; an existing
    ``where`` must be an empty directory that is not a mount point. ``driver`` forces the kernel
    or fusefat; by default FAT uses the kernel's vfat if there is one, else fusefat.
    """
    fs_type = fs_type.lower()
    _check_block_device(devnode)
    chosen = _choose_driver(devnode, fs_type, driver)
    if chosen == "fusefat":
        _check_fat_boot_sector(devnode)
    created = _prepare_mount_point(devnode, where)
    try:
        _write_record(Path(os.path.realpath(where)), devnode, chosen)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                where.rmdir()
        raise
    was_read_only = _device_read_only(devnode)
    mount = Mount(
        devnode=devnode,
        fs_type=fs_type,
        path=where.absolute(),
        driver=chosen,
        created_path=created,
        device_was_read_only=was_read_only,
        timeout=timeout,
    )
    try:
        _set_device_read_only(devnode, True)
        _mount(mount, read_only=True)
    except BaseException:
        with contextlib.suppress(RecorderError):  # the first error is the one to report
            mount.unmount()
        raise
    log.info("mounted %s (%s, %s) read-only at %s", devnode, fs_type, chosen, mount.path)
    return mount


def remount_readwrite(mount: Mount) -> None:
    """Make a recorder writable, for the wipe step only. Prefer :func:`writable`."""
    if not mount.mounted:
        raise RecorderError(f"recorder device {mount.devnode} is not mounted")
    if not mount.read_only:
        return
    _unmount(mount)
    try:
        _set_device_read_only(mount.devnode, False)
        _mount(mount, read_only=False)
    except BaseException:
        # Leave it as we found it: mounted read-only, so the caller's unmount still works.
        _set_device_read_only(mount.devnode, True, missing_ok=True)
        with contextlib.suppress(RecorderError):
            _mount(mount, read_only=True)
        raise
    log.warning("recorder %s is mounted READ-WRITE at %s (wipe)", mount.devnode, mount.path)


def remount_readonly(mount: Mount) -> None:
    """Back to read-only after the wipe step."""
    if not mount.mounted:
        raise RecorderError(f"recorder device {mount.devnode} is not mounted")
    if mount.read_only:
        return
    _unmount(mount)
    _set_device_read_only(mount.devnode, True)
    _mount(mount, read_only=True)
    log.info("recorder %s is read-only again at %s", mount.devnode, mount.path)


@contextlib.contextmanager
def writable(mount: Mount) -> Iterator[Mount]:
    """``with writable(m):`` -- read-write inside the block, read-only again after it."""
    remount_readwrite(mount)
    try:
        yield mount
    finally:
        remount_readonly(mount)


def usage(path: Path) -> DiskUsage:
    """Total, free and available bytes of the file system holding ``path`` (statvfs).

    All three are 0 when the driver does not report them: fusefat does not implement statfs.
    """
    try:
        st = os.statvfs(path)
    except OSError as exc:
        raise RecorderError(f"cannot read file system usage of {path}: {exc.strerror}") from exc
    return DiskUsage(
        total_bytes=st.f_blocks * st.f_frsize,
        free_bytes=st.f_bfree * st.f_frsize,
        available_bytes=st.f_bavail * st.f_frsize,
    )


def fs_check(devnode: str, fs_type: str, *, timeout: float = 300.0) -> FsCheck:
    """Check a recorder's file system without changing it (``e2fsck -f -n``, ``fsck.fat -n``).

    Run it before mounting (a checker on a mounted file system reports what the driver is still
    holding in memory). ``clean`` is False when the tool found errors; a tool that could not
    check at all (no such device, no file system of that type) raises RecorderError.
    """
    fs = fs_type.lower()
    args: list[str]
    if fs in ("ext2", "ext3", "ext4"):
        # -f: check even if marked clean (a recorder's "clean" flag proves little); -n: read-only.
        args, problems = ["e2fsck", "-f", "-n", devnode], range(1, 8)
    elif fs in FAT_TYPES:
        args, problems = ["fsck.fat", "-n", devnode], range(1, 2)
    elif fs == "exfat":
        args, problems = ["fsck.exfat", "-n", devnode], range(1, 8)
    else:
        raise RecorderError(f"recorder device {devnode}: no read-only check known for {fs_type}")
    done = _run(args, devnode=devnode, timeout=timeout)
    message = "\n".join(part for part in (done.stdout.strip(), done.stderr.strip()) if part)
    if done.returncode != 0 and done.returncode not in problems:
        raise RecorderError(
            f"recorder device {devnode}: {args[0]} could not check it "
            f"(exit {done.returncode}): {message}"
        )
    result = FsCheck(
        devnode=devnode,
        fs_type=fs,
        tool=args[0],
        clean=done.returncode == 0,
        exit_code=done.returncode,
        message=message,
    )
    log.log(
        logging.INFO if result.clean else logging.WARNING,
        "file system check of %s: %s",
        devnode,
        "clean" if result.clean else f"errors (exit {done.returncode})",
    )
    return result


def mount_entries() -> list[MountEntry]:
    """The mounts this process sees, from ``/proc/self/mountinfo``, in mount order."""
    entries = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")  # optional fields come before it, their number varies
            entries.append(
                MountEntry(
                    mount_point=_unescape(fields[4]),
                    fs_type=fields[sep + 1],
                    source=_unescape(fields[sep + 2]),
                    options=frozenset(fields[5].split(",")),
                )
            )
    return entries


def find_mount(path: Path) -> MountEntry | None:
    """The mount at exactly ``path`` (the topmost, if stacked), or None."""
    target = os.path.realpath(path)
    found = None
    for entry in mount_entries():
        if entry.mount_point == target:
            found = entry
    return found


def unmount_stale(runtime_dir: Path, *, timeout: float = 30.0) -> list[Path]:
    """Unmount what a previous run of ingestd mounted below ``runtime_dir`` and left behind.

    For restart recovery: returns the mount points that were unmounted. Only mounts that
    ingestd made are touched -- those with a mount record (written before mounting, removed
    after unmounting) naming the same device: ``runtime_dir`` may be a folder other mounts live
    under (``/mnt``), and they are left alone. Devices' read-only settings are left as they are
    (the original value died with the previous run).
    """
    root = os.path.realpath(runtime_dir).rstrip("/") + "/"
    stale = []
    for entry in mount_entries():
        if not entry.mount_point.startswith(root):
            continue
        if _recorded(entry):
            stale.append(entry)
        else:
            log.info("leaving %s on %s mounted: ingestd did not mount it", entry.source,
                     entry.mount_point)
    done: list[Path] = []
    for entry in reversed(stale):  # deepest (latest) first
        try:
            # A FUSE mount whose driver died with the previous run can only be detached.
            _umount(entry.mount_point, timeout=timeout, lazy=entry.fs_type.startswith("fuse"))
        except OSError as exc:
            raise RecorderError(
                f"recorder device {entry.source}: cannot unmount stale {entry.mount_point}: "
                f"{_why(exc)}"
            ) from exc
        log.warning("unmounted stale recorder %s from %s", entry.source, entry.mount_point)
        if find_mount(Path(entry.mount_point)) is None:  # nothing of ours stacked below it
            _remove_record(Path(entry.mount_point))
        done.append(Path(entry.mount_point))
    return done


def kernel_supports(fs_type: str) -> bool:
    """Can the kernel mount ``fs_type``: built in, loaded, or as a module it could load?"""
    try:
        with open("/proc/filesystems", encoding="ascii") as f:
            if any(line.split()[-1] == fs_type for line in f if line.strip()):
                return True
    except OSError:
        pass
    modules = Path("/lib/modules") / os.uname().release
    for index in ("modules.builtin", "modules.dep"):
        with contextlib.suppress(OSError):
            text = (modules / index).read_text(encoding="utf-8", errors="replace")
            if re.search(rf"/{re.escape(fs_type)}\.ko(\.[a-z]+)?:?(\s|$)", text):
                return True
    return False


# -- mounting and unmounting -----------------------------------------------------------------


def _choose_driver(devnode: str, fs_type: str, wanted: Driver | Literal["auto"]) -> Driver:
    if wanted == "fusefat" and fs_type not in FAT_TYPES:
        raise RecorderError(f"recorder device {devnode}: fusefat cannot mount {fs_type}")
    if wanted != "auto":
        return wanted
    if fs_type in FAT_TYPES and not kernel_supports("vfat"):
        if shutil.which("fusefat") is None:
            raise RecorderError(
                f"recorder device {devnode}: the kernel has no vfat and fusefat is not "
                "installed (Debian package fusefat)"
            )
        return "fusefat"
    return "kernel"


def _mount(mount: Mount, *, read_only: bool) -> None:
    mode = "ro" if read_only else "rw"
    if mount.driver == "fusefat":
        # fusefat's own switches: "ro", or "rw+" to write at all ("rw" alone it refuses).
        options = ["ro" if read_only else "rw+", *SAFE_OPTIONS]
        if re.fullmatch(r"[/A-Za-z0-9._-]+", mount.devnode):  # commas would split the option
            # Shown as source and type in mountinfo (findmnt, our own checks, unmount_stale).
            options += [f"fsname={mount.devnode}", "subtype=fusefat"]
        mount._fuse = _FuseProcess.start(mount, ",".join(options))
    else:
        kernel_type = "vfat" if mount.fs_type in FAT_TYPES else mount.fs_type
        options = [mode, *SAFE_OPTIONS]
        if read_only:
            options.extend(_READ_ONLY_EXTRA.get(kernel_type, ()))
        args = ["mount", "-t", kernel_type, "-o", ",".join(options), mount.devnode, str(mount.path)]
        result = _run(args, devnode=mount.devnode, timeout=mount.timeout)
        if result.returncode != 0:
            raise RecorderError(
                f"recorder device {mount.devnode}: mount {mount.fs_type} {mode} at {mount.path} "
                f"failed (exit {result.returncode}): {_output(result)}"
            )
    mount._mounted = True
    mount._read_only = read_only
    _verify_options(mount, read_only=read_only)


def _verify_options(mount: Mount, *, read_only: bool) -> None:
    entry = find_mount(mount.path)
    required = {"ro" if read_only else "rw", *SAFE_OPTIONS}
    if entry is not None and required <= entry.options:
        return
    seen = ",".join(sorted(entry.options)) if entry else "not mounted"
    with contextlib.suppress(RecorderError):
        _unmount(mount)
    raise RecorderError(
        f"recorder device {mount.devnode}: mounted at {mount.path} without "
        f"{','.join(sorted(required))} (mountinfo: {seen}); unmounted it"
    )


def _unmount(mount: Mount) -> None:
    fuse = mount._fuse
    if fuse is not None:
        fuse.stop(mount)
        mount._fuse = None
    elif find_mount(mount.path) is not None:
        try:
            _umount(str(mount.path), timeout=mount.timeout)
        except OSError as exc:
            raise RecorderError(
                f"recorder device {mount.devnode}: cannot unmount {mount.path}: {_why(exc)}"
            ) from exc
    mount._mounted = False
    mount._read_only = True
    log.info("unmounted %s from %s", mount.devnode, mount.path)


class _FuseProcess:
    """fusefat running in the foreground as our child, its stderr drained in a thread."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._head = bytearray()
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_size = 0
        self._reader = threading.Thread(target=self._drain, name="fusefat-stderr", daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, mount: Mount, options: str) -> _FuseProcess:
        args = ["fusefat", "-f", "-s", "-o", options, mount.devnode, str(mount.path)]
        try:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=_ENV,
                start_new_session=True,  # a Ctrl-C meant for us must not unmount the recorder
            )
        except OSError as exc:
            raise RecorderError(
                f"recorder device {mount.devnode}: cannot run fusefat: {exc.strerror}"
            ) from exc
        fuse = cls(process)
        deadline = time.monotonic() + mount.timeout
        while find_mount(mount.path) is None:
            if process.poll() is not None:
                fuse._reader.join(1.0)
                raise RecorderError(
                    f"recorder device {mount.devnode}: fusefat failed "
                    f"({_describe_exit(process.returncode)}): {fuse.stderr()}"
                )
            if time.monotonic() > deadline:
                fuse._kill()
                raise RecorderError(
                    f"recorder device {mount.devnode}: fusefat did not mount within "
                    f"{mount.timeout:g} s: {fuse.stderr()}"
                )
            time.sleep(0.01)
        return fuse

    def stop(self, mount: Mount) -> None:
        if find_mount(mount.path) is not None:
            try:
                _umount(str(mount.path), timeout=mount.timeout)
            except OSError as exc:
                if self.process.poll() is None:
                    raise RecorderError(
                        f"recorder device {mount.devnode}: cannot unmount {mount.path}: "
                        f"{_why(exc)}"
                    ) from exc
                # fusefat died: the mount is dead, detach it lazily.
                with contextlib.suppress(OSError):
                    _umount(str(mount.path), timeout=mount.timeout, lazy=True)
        try:
            # It may still be writing (after rw+); the next mount must not race it.
            self.process.wait(mount.timeout)
        except subprocess.TimeoutExpired:
            log.error("fusefat for %s did not exit after unmount; killing it", mount.devnode)
            self._kill()
        self._reader.join(1.0)
        code = self.process.returncode
        # fusefat ends with 255 and "Bad file descriptor" on every unmount; only a signal is news.
        level = logging.WARNING if code is None or code < 0 else logging.DEBUG
        log.log(
            level,
            "fusefat for %s ended (%s): %s",
            mount.devnode,
            _describe_exit(code),
            self.stderr()[-1000:],
        )

    def stderr(self) -> str:
        text = bytes(self._head)
        if self._tail:
            text += b"\n[...]\n" + b"".join(self._tail)
        return text.decode("utf-8", "replace").strip()

    def _kill(self) -> None:
        self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(_KILL_GRACE)

    def _drain(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        with stream:
            fd = stream.fileno()
            for chunk in iter(lambda: os.read(fd, 65536), b""):
                room = _STDERR_KEEP - len(self._head)
                self._head += chunk[:room]
                rest = chunk[room:] if room > 0 else chunk
                if rest:
                    self._tail.append(rest)
                    self._tail_size += len(rest)
                    while self._tail_size - len(self._tail[0]) >= _STDERR_KEEP:
                        self._tail_size -= len(self._tail.popleft())


# -- mount records ---------------------------------------------------------------------------


def _record_path(where: Path) -> Path:
    """Beside the mount point (a hidden file in its parent): inside it, the mount would hide it."""
    return where.parent / f".{where.name}{RECORD_SUFFIX}"


def _write_record(where: Path, devnode: str, driver: Driver) -> None:
    """Say that ingestd mounts ``devnode`` at ``where``, before it does (so a crash in between
    still leaves the record). Written whole: a temp file, fsync, rename."""
    # What mountinfo will show as the source: the device, unless fusefat could not be told it.
    named = driver == "kernel" or re.fullmatch(r"[/A-Za-z0-9._-]+", devnode) is not None
    body = json.dumps({"mount_point": str(where), "device": devnode, "driver": driver,
                       "source": devnode if named else None, "pid": os.getpid()})
    path = _record_path(where)
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                     0o600)
        try:
            os.write(fd, body.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        raise RecorderError(
            f"recorder device {devnode}: cannot write the mount record {path}: {exc.strerror}"
        ) from exc


def _remove_record(where: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        _record_path(where).unlink()


def _recorded(entry: MountEntry) -> bool:
    """Did ingestd make this mount: is there a record for its mount point, naming its device?"""
    point = Path(entry.mount_point)
    try:
        fd = os.open(_record_path(point), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            record = json.loads(os.read(fd, 65536))
        finally:
            os.close(fd)
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("mount_point") != entry.mount_point:
        return False
    source = record.get("source")
    return source is None or source == entry.source


# -- devices and mount points ----------------------------------------------------------------


def _check_block_device(devnode: str) -> None:
    if not os.path.isabs(devnode):
        raise RecorderError(f"recorder device {devnode!r} is not an absolute path")
    try:
        st = os.stat(devnode)
    except OSError as exc:
        raise RecorderError(f"recorder device {devnode}: {exc.strerror}") from exc
    if not stat.S_ISBLK(st.st_mode):
        raise RecorderError(f"recorder device {devnode} is not a block device")


def _check_fat_boot_sector(devnode: str) -> None:
    """Refuse what is not FAT before fusefat sees it: it dies of SIGFPE on a zero geometry."""
    try:
        with open(devnode, "rb", buffering=0) as f:
            sector = f.read(512)
    except OSError as exc:
        raise RecorderError(f"recorder device {devnode}: cannot read: {exc.strerror}") from exc
    if len(sector) < 512:
        raise RecorderError(f"recorder device {devnode} is too small for a FAT file system")
    bytes_per_sector, sectors_per_cluster, reserved, fats = struct.unpack_from("<HBHB", sector, 11)
    if (
        bytes_per_sector not in (512, 1024, 2048, 4096)
        or sectors_per_cluster == 0
        or sectors_per_cluster & (sectors_per_cluster - 1)
        or reserved == 0
        or fats == 0
        or sector[510:512] != b"\x55\xaa"
    ):
        raise RecorderError(
            f"recorder device {devnode} does not hold a FAT file system (bad boot sector)"
        )


def _prepare_mount_point(devnode: str, where: Path) -> bool:
    """Make sure ``where`` is an empty, unmounted, real directory; True if we created it."""
    if where.is_symlink():
        raise RecorderError(f"recorder device {devnode}: mount point {where} is a symbolic link")
    try:
        where.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        where.mkdir(mode=0o700)
        return True
    except FileExistsError:
        pass
    except OSError as exc:
        raise RecorderError(
            f"recorder device {devnode}: cannot create mount point {where}: {exc.strerror}"
        ) from exc
    if not where.is_dir():
        raise RecorderError(f"recorder device {devnode}: mount point {where} is not a directory")
    if os.path.ismount(where):
        raise RecorderError(f"recorder device {devnode}: {where} is already a mount point")
    if any(where.iterdir()):
        raise RecorderError(f"recorder device {devnode}: mount point {where} is not empty")
    return False


def _device_read_only(devnode: str) -> bool:
    try:
        fd = os.open(devnode, os.O_RDONLY | os.O_CLOEXEC)
        try:
            flag = fcntl.ioctl(fd, _BLKROGET, struct.pack("i", 0))
        finally:
            os.close(fd)
    except OSError as exc:
        raise RecorderError(
            f"recorder device {devnode}: cannot read its read-only flag: {exc.strerror}"
        ) from exc
    return bool(struct.unpack("i", flag)[0])


def _set_device_read_only(devnode: str, read_only: bool, *, missing_ok: bool = False) -> None:
    try:
        fd = os.open(devnode, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, _BLKROSET, struct.pack("i", int(read_only)))
        finally:
            os.close(fd)
    except OSError as exc:
        if missing_ok and exc.errno in (errno.ENOENT, errno.ENXIO, errno.ENODEV):
            return  # unplugged: there is nothing left to protect or restore
        why = exc.strerror or str(exc)
        if exc.errno in (errno.EACCES, errno.EPERM):
            why += " (needs root or CAP_SYS_ADMIN)"
        raise RecorderError(
            f"recorder device {devnode}: cannot set it {'read-only' if read_only else 'writable'}"
            f": {why}"
        ) from exc


# -- programs ---------------------------------------------------------------------------------


def _run(args: Sequence[str], *, devnode: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a program (no shell) with a timeout; RecorderError if it cannot run or times out."""
    tool = args[0]
    try:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=_ENV,
            start_new_session=True,
        )
    except OSError as exc:
        raise RecorderError(
            f"recorder device {devnode}: cannot run {tool}: {exc.strerror}"
        ) from exc
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        try:
            out, err = process.communicate(timeout=_KILL_GRACE)
        except subprocess.TimeoutExpired:
            # Stuck in uninterruptible I/O on a failing device: it cannot be killed, only left.
            out, err = "", "(the program could not be killed; it is stuck on the device)"
        raise RecorderError(
            f"recorder device {devnode}: {tool} did not finish within {timeout:g} s: "
            f"{(err or out).strip()}"
        ) from None
    log.debug("%s exited %d", " ".join(args), process.returncode)
    return subprocess.CompletedProcess(args, process.returncode, out, err)


def _umount(mount_point: str, *, timeout: float, lazy: bool = False) -> None:
    """umount2(2) (``MNT_DETACH`` if ``lazy``); fusefat exits once its mount is gone. Made in a
    thread so that a call stuck on a failing device holds us at most ``timeout``; OSError
    (ETIMEDOUT for that) if it fails."""
    outcome: list[int] = []

    def call() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        done = libc.umount2(os.fsencode(mount_point), _MNT_DETACH if lazy else 0)
        outcome.append(0 if done == 0 else ctypes.get_errno() or errno.EIO)

    worker = threading.Thread(target=call, name="umount2", daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:  # in uninterruptible I/O: it cannot be cancelled, only left behind
        raise OSError(errno.ETIMEDOUT, f"umount2 did not return within {timeout:g} s")
    if outcome[0]:
        raise OSError(outcome[0], os.strerror(outcome[0]))


def _why(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    if exc.errno == errno.EPERM:
        text += " (unmounting needs root or CAP_SYS_ADMIN)"
    return text


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stderr.strip() or result.stdout.strip() or "no output").replace("\n", " / ")


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit {code}"


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \040, \011, \012, \134.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)
