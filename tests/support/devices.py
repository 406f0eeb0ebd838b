"""Real block devices and mock udev devices for the dock tests.

* :func:`make_image` -- an ext4 or FAT32 image file holding given files (``mkfs.ext4 -d``,
  ``mkfs.fat`` + ``mcopy``); :func:`attach_loop` -- attach it as a loop device (``losetup -f
  --show``) and detach on exit; :func:`loop_device` does both. Root only.
* :func:`corrupt_ext4_links` -- damage an ext4 image on purpose (a wrong inode link count),
  so ``e2fsck -f -n`` finds an error.
* :class:`MockUdev` -- a umockdev testbed with helpers that build what a docked recorder looks
  like to udev: usb device -> disk -> partition with ``ID_BUS=usb``, ``ID_SERIAL_SHORT``,
  ``ID_VENDOR``, ``ID_MODEL``, ``ID_FS_TYPE``... and send uevents. It needs the process to run
  under ``umockdev-wrapper`` and must be created before ``pyudev.Context()``.

:func:`missing_programs` names what is not installed, with the Debian package, so a test can
skip with a useful reason instead of failing obscurely.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

ImageType = Literal["ext4", "fat32"]

#: Debian package of each program these helpers (and the code under test) run.
PACKAGES = {
    "mkfs.ext4": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "mkfs.fat": "dosfstools",
    "fsck.fat": "dosfstools",
    "mcopy": "mtools",
    "mmd": "mtools",
    "mdir": "mtools",
    "setpriv": "util-linux",
    "unshare": "util-linux",
    "losetup": "mount",
    "blockdev": "util-linux",
    "mount": "mount",
    "fusefat": "fusefat",
    "umockdev-wrapper": "umockdev",
}

_TIMEOUT = 60.0
# mtools refuses images whose geometry it finds odd unless told not to check.
_ENV = {**os.environ, "LC_ALL": "C", "MTOOLS_SKIP_CHECK": "1"}


def missing_programs(*names: str) -> list[str]:
    """The programs among ``names`` that are not installed, as "prog (Debian package pkg)"."""
    return [
        f"{name} (Debian package {PACKAGES.get(name, '?')})"
        for name in names
        if shutil.which(name) is None
    ]


def run(args: Sequence[str], *, timeout: float = _TIMEOUT) -> str:
    """Run a program (no shell), return its stdout; raise with its stderr if it fails."""
    done = subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, env=_ENV, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed (exit {done.returncode}): {done.stderr.strip()}"
        )
    return done.stdout


def _relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"image file names must be relative and stay inside: {name!r}")
    return path


def make_image(
    path: Path,
    fs_type: ImageType,
    files: Mapping[str, bytes],
    *,
    size_mib: int = 64,
    label: str = "RECORDER",
    modes: Mapping[str, int] | None = None,
) -> Path:
    """Create an image file at ``path`` with a file system holding ``files`` (name -> bytes).

    Names may contain ``/`` for folders. ``modes`` sets permission bits (ext4 only; FAT has
    none). FAT32 needs at least 33 MiB.
    """
    with open(path, "wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    if fs_type == "ext4":
        with tempfile.TemporaryDirectory(prefix="ingestd-image-") as staging:
            for name, data in files.items():
                target = Path(staging, _relative(name))
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                if modes and name in modes:
                    target.chmod(modes[name])
            # -d copies a directory tree into the new file system: no mount needed.
            run(["mkfs.ext4", "-q", "-F", "-L", label, "-d", staging, str(path)])
    elif fs_type == "fat32":
        run(["mkfs.fat", "-F", "32", "-n", label[:11].upper(), str(path)])
        made: set[PurePosixPath] = set()
        with tempfile.TemporaryDirectory(prefix="ingestd-image-") as staging:
            for index, (name, data) in enumerate(files.items()):
                rel = _relative(name)
                for parent in reversed(rel.parents[:-1]):  # outermost first, without "."
                    if parent not in made:
                        run(["mmd", "-i", str(path), f"::/{parent}"])
                        made.add(parent)
                source = Path(staging, str(index))
                source.write_bytes(data)
                run(["mcopy", "-i", str(path), str(source), f"::/{rel}"])
    else:
        raise ValueError(f"unknown image type {fs_type!r}")
    return path


@contextlib.contextmanager
def attach_loop(image: Path) -> Iterator[str]:
    """Attach ``image`` to a free loop device; yield its node; detach it on exit."""
    devnode = run(["losetup", "-f", "--show", str(image)]).strip()
    try:
        # A read-only flag set with BLKROSET (blockdev --setro) outlives losetup -d and would
        # greet the next user of this loop device: start from a writable device.
        run(["blockdev", "--setrw", devnode])
        yield devnode
    finally:
        # The kernel detaches a busy loop device once its last user (a mount) lets go.
        subprocess.run(["losetup", "-d", devnode], capture_output=True, timeout=_TIMEOUT)


@contextlib.contextmanager
def loop_device(
    directory: Path,
    fs_type: ImageType,
    files: Mapping[str, bytes],
    **image_options: Any,
) -> Iterator[str]:
    """An image with ``files`` in ``directory``, attached as a loop device while in the block."""
    image = make_image(directory / f"recorder-{fs_type}.img", fs_type, files, **image_options)
    with attach_loop(image) as devnode:
        yield devnode


def corrupt_ext4_links(image: Path, name: str, links: int = 7) -> None:
    """Give ``name`` in an (unmounted) ext4 image a wrong link count: a real, checkable error."""
    run(
        [
            "debugfs",
            "-w",
            "-R",
            f"set_inode_field /{_relative(name)} links_count {links}",
            str(image),
        ]
    )


# -- umockdev --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MockRecorder:
    """The sysfs paths of one mock recorder (``partition`` is None for a superfloppy)."""

    usb: str
    disk: str
    partition: str | None
    devnode: str
    serial: str

    @property
    def fs_device(self) -> str:
        """The device that carries the file system."""
        return self.partition or self.disk


class MockUdev:
    """A umockdev testbed shaped like a docking station.

    umockdev announces every device added with an ``add`` uevent to the monitors listening at
    that moment (parents first, as the kernel does), so adding a recorder *is* docking it.
    Devices added before any monitor exists are simply present (for enumeration tests).
    ``testbed.remove_device`` is silent; :meth:`undock` sends the ``remove`` uevents first.
    """

    def __init__(self) -> None:
        import gi

        gi.require_version("UMockdev", "1.0")
        from gi.repository import UMockdev

        self.testbed: Any = UMockdev.Testbed.new()
        self._ports = 0
        self._disks = 0

    def close(self) -> None:
        self.testbed.clear()
        self.testbed = None
        # Free now, between tests, whatever a reference cycle still holds (pyudev monitors,
        # contexts): freed later by a collection on another thread, a monitor's socket can
        # vanish while umockdev is sending to it, and umockdev aborts the process on that.
        gc.collect()

    def __enter__(self) -> MockUdev:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- building ----------------------------------------------------------------------------

    def _next_disk(self) -> str:
        self._disks += 1
        return "sd" + "bcdefghijklmnopqrstuvwxyz"[self._disks - 1]

    def add_usb_device(self, *, serial: str, vendor: str, model: str) -> str:
        self._ports += 1
        port = f"1-{self._ports}"
        return str(
            self.testbed.add_device(
                "usb",
                f"usb1/{port}",
                None,
                ["idVendor", "0b95", "idProduct", "1790", "serial", serial, "busnum", "1"],
                ["DEVTYPE", "usb_device", "ID_VENDOR", vendor, "ID_MODEL", model],
            )
        )

    def add_recorder(
        self,
        *,
        serial: str = "D01A12345",
        vendor: str = "Axon",
        model: str = "Body_3",
        fs_type: str | None = "vfat",
        fs_usage: str = "filesystem",
        fs_uuid: str = "1234-ABCD",
        fs_label: str = "RECORDER",
        partitioned: bool = True,
        serial_properties: Mapping[str, str] | None = None,
        battery_capacity: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> MockRecorder:
        """A USB recorder: usb device -> disk (-> partition 1) carrying ``fs_type``.

        ``serial_properties`` replaces the default ID_SERIAL/ID_SERIAL_SHORT pair (to test the
        fallbacks). ``battery_capacity`` adds a power_supply below the usb device with that
        ``capacity``. ``fs_type=None`` gives a file system-less device (no ID_FS_* at all).
        """
        usb = self.add_usb_device(serial=serial, vendor=vendor, model=model)
        if battery_capacity is not None:
            self.testbed.add_device(
                "power_supply",
                # Unique: umockdev links /sys/class/power_supply/<name>. Named as HID batteries are.
                f"power_supply/hid-{self._ports}-battery",
                usb,
                ["capacity", battery_capacity, "type", "Battery", "status", "Charging"],
                ["POWER_SUPPLY_NAME", f"hid-{self._ports}-battery"],
            )
        identity = dict(
            serial_properties
            if serial_properties is not None
            else {"ID_SERIAL": f"{vendor}_{model}_{serial}-0:0", "ID_SERIAL_SHORT": serial}
        )
        identity.update(
            {
                "ID_BUS": "usb",
                "ID_VENDOR": vendor,
                "ID_MODEL": model,
                "ID_USB_DRIVER": "usb-storage",
            }
        )
        file_system = {}
        if fs_type is not None:
            file_system = {
                "ID_FS_TYPE": fs_type,
                "ID_FS_USAGE": fs_usage,
                "ID_FS_UUID": fs_uuid,
                "ID_FS_LABEL": fs_label,
            }
        name = self._next_disk()
        disk_props = {"DEVNAME": f"/dev/{name}", "DEVTYPE": "disk", **identity}
        if partitioned:
            disk_props["ID_PART_TABLE_TYPE"] = "dos"
        else:
            disk_props.update(file_system)
            disk_props.update(extra or {})
        disk = self._add_block(name, usb, disk_props, size="2097152")
        if not partitioned:
            return MockRecorder(usb, disk, None, f"/dev/{name}", serial)
        part_props = {
            "DEVNAME": f"/dev/{name}1",
            "DEVTYPE": "partition",
            "ID_PART_ENTRY_NUMBER": "1",
            **identity,
            **file_system,
            **(extra or {}),
        }
        part = self._add_block(f"{name}1", disk, part_props, size="2095104", partition="1")
        return MockRecorder(usb, disk, part, f"/dev/{name}1", serial)

    def add_non_usb_disk(self, *, fs_type: str = "ext4") -> MockRecorder:
        """A SATA disk with a partition carrying a file system: must never count as a dock."""
        pci = str(self.testbed.add_device("pci", "pci0000:00/0000:00:1f.2", None, [], []))
        name = self._next_disk()
        common = {"ID_BUS": "ata", "ID_SERIAL": "WDC_WD10EZEX_WD-1234", "ID_MODEL": "WDC"}
        disk = self._add_block(
            name,
            pci,
            {"DEVNAME": f"/dev/{name}", "DEVTYPE": "disk", "ID_PART_TABLE_TYPE": "gpt", **common},
            size="1953525168",
        )
        part = self._add_block(
            f"{name}1",
            disk,
            {
                "DEVNAME": f"/dev/{name}1",
                "DEVTYPE": "partition",
                "ID_FS_TYPE": fs_type,
                "ID_FS_USAGE": "filesystem",
                **common,
            },
            size="1953523120",
            partition="1",
        )
        return MockRecorder(pci, disk, part, f"/dev/{name}1", "WD-1234")

    def _add_block(
        self,
        name: str,
        parent: str,
        properties: Mapping[str, str],
        *,
        size: str,
        partition: str | None = None,
    ) -> str:
        attributes = ["size", size, "removable", "0"]
        if partition is not None:
            attributes += ["partition", partition]
        flat = [item for pair in properties.items() for item in pair]
        return str(self.testbed.add_device("block", name, parent, attributes, flat))

    # -- events ------------------------------------------------------------------------------

    def uevent(self, sys_path: str, action: str) -> None:
        self.testbed.uevent(sys_path, action)

    def set_property(self, sys_path: str, key: str, value: str) -> None:
        self.testbed.set_property(sys_path, key, value)

    def undock(self, recorder: MockRecorder) -> None:
        """The kernel's order: partition, disk, usb device; then gone from sysfs too."""
        for sys_path in (recorder.partition, recorder.disk, recorder.usb):
            if sys_path:
                self.uevent(sys_path, "remove")
        self.testbed.remove_device(recorder.usb)  # silent, and takes the children with it
