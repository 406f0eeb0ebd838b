"""Docked recorders from udev: USB mass-storage file systems appearing and going away.

A recorder shows up as a USB disk. What ingestd reads is a *file system*, so the unit here is a
block device that carries one: a USB partition, or a whole USB disk formatted without a partition
table (a "superfloppy", common on recorders). Everything else on the ``block`` subsystem is
ignored: non-USB disks, a USB disk that has a partition table (its partitions are reported
instead), partitions without a file system, swap, RAID members and encrypted containers.

Events become :class:`~ingestd.domain.docks.DockEvent` values:

* ``add`` -- a recorder file system is there. udev's ``add`` always gives one (even for a device
  already reported: a missed ``remove`` must never hide a dock, so consumers must treat a second
  ``add`` for the same device as "still there"). A ``change`` that newly carries a file system
  (a card reader whose media became ready, a recorder that finished its own start-up) gives
  ``add`` too.
* ``change`` -- a device already reported changed (label, battery, udev re-probe).
* ``remove`` -- gone, or a ``change`` that no longer carries a file system (media pulled).
  The device in a ``remove`` is the one reported at ``add`` when known.

Battery level (``DockedDevice.battery_percent``), first that gives a value in 0..100:

1. the udev property ``INGESTD_BATTERY`` on the block device -- for recorders that report their
   battery some vendor way, a site udev rule can import it (``IMPORT{program}=...``);
2. the ``capacity`` attribute of a ``power_supply`` device below the recorder's USB device (a
   sibling of its storage interface, as HID batteries appear) or above the block device.

Otherwise ``None``. Values that are not whole numbers in 0..100 are logged and ignored.

Callbacks run on the observer thread, one at a time, in udev's order; they should hand the
event to a queue and return. An exception from a callback is logged and does not stop the thread.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pyudev

from ingestd.domain.docks import DockedDevice, DockEvent
from ingestd.errors import RecorderError

log = logging.getLogger(__name__)

#: udev property a site rule can set to a recorder's battery level (0..100).
BATTERY_PROPERTY = "INGESTD_BATTERY"

#: The udev properties kept in ``DockedDevice.properties`` (for diagnostics and dock records).
SNAPSHOT_KEYS: tuple[str, ...] = (
    "DEVTYPE",
    "ID_BUS",
    "ID_FS_TYPE",
    "ID_FS_USAGE",
    "ID_FS_VERSION",
    "ID_MODEL",
    "ID_MODEL_ID",
    "ID_PART_ENTRY_NUMBER",
    "ID_PATH",
    "ID_REVISION",
    "ID_SERIAL",
    "ID_SERIAL_SHORT",
    "ID_USB_DRIVER",
    "ID_VENDOR",
    "ID_VENDOR_ID",
    BATTERY_PROPERTY,
)

DockCallback = Callable[[DockEvent], None]


def carries_recorder_file_system(properties: Mapping[str, str]) -> bool:
    """Is this block device (by its udev properties) a USB file system we should read?"""
    if properties.get("SUBSYSTEM", "block") != "block" or not properties.get("DEVNAME"):
        return False
    if properties.get("ID_BUS") != "usb":
        return False
    if not properties.get("ID_FS_TYPE"):
        return False
    # blkid says "filesystem" for what can be mounted; "other" (swap), "raid" and "crypto" cannot.
    # Some udev versions leave ID_FS_USAGE out: an ID_FS_TYPE alone is then enough.
    if properties.get("ID_FS_USAGE", "filesystem") != "filesystem":
        return False
    devtype = properties.get("DEVTYPE")
    if devtype == "partition":
        return True
    # A whole disk counts only when it has no partition table, else its partitions are the
    # file systems (and a hybrid image that looks like both is read through its partitions).
    return devtype == "disk" and not properties.get("ID_PART_TABLE_TYPE")


def device_from_properties(
    properties: Mapping[str, str], *, sys_path: str, battery_percent: int | None = None
) -> DockedDevice | None:
    """A DockedDevice from udev properties, or None if the device is not a recorder file system."""
    if not carries_recorder_file_system(properties):
        return None
    return DockedDevice.with_properties(
        # ID_SERIAL_SHORT is the USB serial number alone; ID_SERIAL prefixes vendor and model.
        serial=properties.get("ID_SERIAL_SHORT") or properties.get("ID_SERIAL") or "",
        devnode=properties["DEVNAME"],
        fs_type=properties["ID_FS_TYPE"],
        sys_path=sys_path,
        vendor=properties.get("ID_VENDOR", ""),
        model=properties.get("ID_MODEL", ""),
        fs_uuid=properties.get("ID_FS_UUID", ""),
        fs_label=properties.get("ID_FS_LABEL", ""),
        battery_percent=battery_percent,
        properties={k: properties[k] for k in SNAPSHOT_KEYS if k in properties},
    )


def parse_battery(value: str | bytes | None, *, source: str) -> int | None:
    """A battery level 0..100 from a property or sysfs attribute, or None (logged) if unusable."""
    if value is None:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    text = text.strip().removesuffix("%").strip()
    try:
        percent = int(text)
    except ValueError:
        log.warning("ignoring battery level %r from %s: not a whole number", text, source)
        return None
    if not 0 <= percent <= 100:
        log.warning("ignoring battery level %d from %s: not within 0..100", percent, source)
        return None
    return percent


def wait_ready(devnode: str, timeout: float = 10.0, *, interval: float = 0.02) -> None:
    """Wait until ``devnode`` exists and its first block can be read; RecorderError on timeout.

    udev reports ``add`` as soon as the kernel knows the device; the node may not exist yet
    (devtmpfs and udev's permissions race with us) and a recorder or card reader may answer
    "no medium" for a moment. The device is opened read-only and nothing is written.
    """
    deadline = time.monotonic() + timeout
    delay = interval
    attempts = 0
    while True:
        attempts += 1
        try:
            fd = os.open(devnode, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.read(fd, 512)
            finally:
                os.close(fd)
        except OSError as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RecorderError(
                    f"recorder device {devnode} is not ready after {timeout:g} s "
                    f"({attempts} attempts; last: {exc.strerror or exc})"
                ) from exc
            log.debug("%s not ready yet (%s); retrying", devnode, exc.strerror)
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.5)  # back off: a slow card reader needs seconds, not spins
        else:
            if attempts > 1:
                log.debug("%s ready after %d attempts", devnode, attempts)
            return


class UdevDockSource:
    """Recorder file systems from udev: the ones present now, and add/change/remove events.

    Usage: ``source.start(callback)`` first, then ``source.enumerate()`` -- in that order no
    recorder docked in between is missed (it may be reported twice, as an ``add`` event and in
    the list). ``stop()`` ends the observer thread and waits for it.

    The pyudev context is created on first use, not in ``__init__``, so that a test can set up
    umockdev's testbed after building the source.
    """

    def __init__(
        self,
        context: pyudev.Context | None = None,
        *,
        battery_property: str = BATTERY_PROPERTY,
        thread_name: str = "ingestd-udev",
    ) -> None:
        self._context = context
        self._battery_property = battery_property
        self._thread_name = thread_name
        self._lock = threading.Lock()
        self._known: dict[str, DockedDevice] = {}  # sys_path -> device last reported present
        self._monitor: pyudev.Monitor | None = None
        self._thread: threading.Thread | None = None
        self._stop_r: int | None = None
        self._stop_w: int | None = None
        self._callback: DockCallback | None = None

    # -- public -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def enumerate(self) -> list[DockedDevice]:
        """The recorder file systems present now, by sys path. They count as reported."""
        found = self._scan()
        with self._lock:
            self._known.update((d.sys_path, d) for d in found)
        return found

    def start(self, callback: DockCallback) -> None:
        """Watch udev on a background thread, calling ``callback(DockEvent)`` for each event."""
        if self._thread is not None:
            raise RuntimeError("UdevDockSource is already started")
        monitor = pyudev.Monitor.from_netlink(self._ctx())
        monitor.filter_by("block")
        # Bound to the socket before start() returns, so no event after start() is lost.
        monitor.start()
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._monitor = monitor
        self._callback = callback
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()
        log.info("watching udev for docked recorders")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the observer thread and wait for it; no callback runs after this returns."""
        thread = self._thread
        if thread is None:
            return
        if thread is threading.current_thread():
            # Joining itself is impossible, and closing the pipe under the running loop is worse.
            raise RuntimeError("UdevDockSource.stop() cannot be called from a dock callback")
        assert self._stop_w is not None
        os.write(self._stop_w, b"x")
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"udev observer thread did not stop within {timeout:g} s")
        for fd in (self._stop_r, self._stop_w):
            if fd is not None:
                os.close(fd)
        self._stop_r = self._stop_w = None
        self._thread = None
        self._monitor = None
        self._callback = None
        log.info("stopped watching udev")

    def __enter__(self) -> UdevDockSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the observer thread -----------------------------------------------------------------

    def _run(self) -> None:
        monitor, stop_r = self._monitor, self._stop_r
        assert monitor is not None and stop_r is not None
        poller = select.poll()
        poller.register(monitor.fileno(), select.POLLIN)
        poller.register(stop_r, select.POLLIN)
        while True:
            ready = dict(poller.poll())
            if stop_r in ready:
                return
            flags = ready.get(monitor.fileno(), 0)
            if flags & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                log.error("udev monitor socket failed (poll flags %#x); no more dock events", flags)
                return
            self._drain(monitor)

    def _drain(self, monitor: pyudev.Monitor) -> None:
        while True:
            try:
                device = monitor.poll(timeout=0)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    # The kernel dropped events (a storm of docks): what we know may be stale.
                    log.warning("udev events were lost (ENOBUFS); rescanning docked recorders")
                    self._resync()
                else:
                    log.error("cannot receive udev event: %s", exc)
                return
            if device is None:
                return
            try:
                self._handle(device)
            except Exception:  # one bad device or callback must not end dock detection
                log.exception("failed to handle udev %s of %s", device.action, device.sys_path)

    def _handle(self, device: pyudev.Device) -> None:
        action, sys_path = device.action, device.sys_path
        if action == "remove":
            with self._lock:
                gone = self._known.pop(sys_path, None)
            gone = gone or self._convert(device, with_battery=False)
            if gone is not None:
                self._emit(DockEvent.removed(gone))
            return
        if action not in ("add", "change"):
            log.debug("ignoring udev %s of %s", action, sys_path)
            return
        docked = self._convert(device)
        with self._lock:
            before = self._known.pop(sys_path, None)
            if docked is not None:
                self._known[sys_path] = docked
        if docked is None:
            if before is not None:  # the file system went away (media pulled from a reader)
                self._emit(DockEvent.removed(before))
            else:
                log.debug("ignoring %s of %s: not a USB file system", action, sys_path)
        elif action == "add" or before is None:
            self._emit(DockEvent.added(docked))
        else:
            self._emit(DockEvent.changed(docked))

    def _resync(self) -> None:
        present = {d.sys_path: d for d in self._scan()}
        with self._lock:
            gone = [d for p, d in self._known.items() if p not in present]
            new = [d for p, d in present.items() if p not in self._known]
            self._known = present
        for device in gone:
            self._emit(DockEvent.removed(device))
        for device in new:
            self._emit(DockEvent.added(device))

    def _emit(self, event: DockEvent) -> None:
        dev = event.device
        log.info(
            "recorder %s: %s %s (%s, %s %s)",
            event.action,
            dev.serial or "(no serial)",
            dev.devnode,
            dev.fs_type,
            dev.vendor,
            dev.model,
        )
        callback = self._callback
        if callback is None:
            return
        try:
            callback(event)
        except Exception:
            log.exception("dock callback failed for %s of %s", event.action, dev.devnode)

    # -- conversion --------------------------------------------------------------------------

    def _ctx(self) -> pyudev.Context:
        if self._context is None:
            self._context = pyudev.Context()
        return self._context

    def _scan(self) -> list[DockedDevice]:
        found: list[DockedDevice] = []
        for device in _sorted(self._ctx().list_devices(subsystem="block", ID_BUS="usb")):
            docked = self._convert(device)
            if docked is not None:
                found.append(docked)
        return found

    def _convert(self, device: pyudev.Device, *, with_battery: bool = True) -> DockedDevice | None:
        properties = dict(device.properties)
        if not carries_recorder_file_system(properties):
            return None
        battery = self._battery(device, properties) if with_battery else None
        return device_from_properties(properties, sys_path=device.sys_path, battery_percent=battery)

    def _battery(self, device: pyudev.Device, properties: Mapping[str, str]) -> int | None:
        percent = parse_battery(
            properties.get(self._battery_property),
            source=f"{self._battery_property} of {device.sys_path}",
        )
        if percent is not None:
            return percent
        for supply in self._power_supplies(device):
            try:
                raw = supply.attributes.get("capacity")
            except OSError as exc:  # a sysfs read can fail while the device goes away
                log.debug("cannot read capacity of %s: %s", supply.sys_path, exc)
                continue
            percent = parse_battery(raw, source=f"capacity of {supply.sys_path}")
            if percent is not None:
                return percent
        return None

    def _power_supplies(self, device: pyudev.Device) -> Iterable[pyudev.Device]:
        for ancestor in device.ancestors:
            if ancestor.subsystem == "power_supply":
                yield ancestor
        # The nearest usb_device is the recorder itself; a dock's hub is further up and must not
        # lend its (or another recorder's) battery to this one.
        usb = next(
            (a for a in device.ancestors if a.subsystem == "usb" and a.device_type == "usb_device"),
            None,
        )
        if usb is None:
            return
        prefix = usb.sys_path.rstrip("/") + "/"
        for supply in _sorted(self._ctx().list_devices(subsystem="power_supply")):
            if supply.sys_path.startswith(prefix):
                yield supply


def _sorted(devices: Iterable[Any]) -> list[pyudev.Device]:
    return sorted(devices, key=lambda d: str(d.sys_path))
