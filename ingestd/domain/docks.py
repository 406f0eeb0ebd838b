"""What a dock looks like to the rest of ingestd: a docked recorder's file system and its events.

These are plain values. The udev adapter (``ingestd.docks.udev``) builds them from udev's
properties; everything downstream (recorder sessions, registry look-up, status page) sees only
these, so it can be tested without udev.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

from msgspec import Struct, field

DockAction = Literal["add", "change", "remove"]
_ACTIONS: frozenset[str] = frozenset(get_args(DockAction))


class DockedDevice(Struct, frozen=True, kw_only=True):
    """One file system of a docked recorder (a USB partition, or a whole USB disk without one).

    ``serial`` is the USB serial number the recorder reports; it is what the registry maps to an
    officer. It is ``""`` when the device reports none (such a recorder cannot be matched to the
    registry, but it is still reported so that a person sees it). ``vendor``, ``model``,
    ``fs_uuid`` and ``fs_label`` are ``""`` when unknown. ``properties`` is a small sorted
    snapshot of the udev properties worth keeping for diagnostics (not every property: the
    snapshot is logged and stored with the dock session).
    """

    serial: str
    devnode: str
    fs_type: str
    sys_path: str
    vendor: str = ""
    model: str = ""
    fs_uuid: str = ""
    fs_label: str = ""
    battery_percent: int | None = None
    properties: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.devnode:
            raise ValueError("a docked device needs a device node")
        if not self.fs_type:
            raise ValueError(f"{self.devnode}: a docked device needs a file system type")
        if self.battery_percent is not None and not 0 <= self.battery_percent <= 100:
            raise ValueError(f"{self.devnode}: battery {self.battery_percent}% is not 0..100")
        if list(self.properties) != sorted(dict(self.properties).items()):
            # Sorted and unique, so that equal snapshots compare (and hash) equal.
            raise ValueError(f"{self.devnode}: properties must be sorted, unique pairs")

    @classmethod
    def with_properties(
        cls,
        *,
        serial: str,
        devnode: str,
        fs_type: str,
        sys_path: str,
        vendor: str = "",
        model: str = "",
        fs_uuid: str = "",
        fs_label: str = "",
        battery_percent: int | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> DockedDevice:
        """Build one from a mapping of properties (kept sorted as a tuple, so it is hashable)."""
        return cls(
            serial=serial,
            devnode=devnode,
            fs_type=fs_type,
            sys_path=sys_path,
            vendor=vendor,
            model=model,
            fs_uuid=fs_uuid,
            fs_label=fs_label,
            battery_percent=battery_percent,
            properties=tuple(sorted((properties or {}).items())),
        )

    @property
    def has_serial(self) -> bool:
        return bool(self.serial)

    def get_property(self, key: str) -> str | None:
        """One value of the properties snapshot, or None."""
        return dict(self.properties).get(key)


class DockEvent(Struct, frozen=True, kw_only=True):
    """A docked recorder's file system appeared (``add``), changed, or went away (``remove``).

    ``add`` also covers media that became readable later (a ``change`` from udev that newly
    carries a file system), so a consumer starts a recorder session on ``add`` only.
    """

    action: DockAction
    device: DockedDevice

    def __post_init__(self) -> None:
        if self.action not in _ACTIONS:
            raise ValueError(f"unknown dock action {self.action!r}")

    @classmethod
    def added(cls, device: DockedDevice) -> DockEvent:
        return cls(action="add", device=device)

    @classmethod
    def changed(cls, device: DockedDevice) -> DockEvent:
        return cls(action="change", device=device)

    @classmethod
    def removed(cls, device: DockedDevice) -> DockEvent:
        return cls(action="remove", device=device)
