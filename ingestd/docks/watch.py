"""The watched mount root: each folder under it is a docked recorder (``ROOT/SERIAL/``).

For stations where the operating system mounts recorders itself, and for the embedded default.
A folder is offered for ingest once nothing in it has changed for ``settle`` seconds, so files
still being written are not taken half-way; it is offered again whenever it changes and settles
again, and reported gone when it disappears.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from .wipe import ASIDE_PREFIX

log = logging.getLogger(__name__)

MAX_SERIAL = 128


@dataclass(frozen=True, kw_only=True)
class FolderDock:
    action: Literal["add", "remove"]
    path: Path
    serial: str  # "" when the folder does not say which recorder it is
    problem: str = ""


FolderCallback = Callable[[FolderDock], None]


def clean_serial(text: str) -> str:
    text = text.strip()
    if not text or len(text) > MAX_SERIAL or any(not c.isprintable() or c in "/\\" for c in text):
        return ""
    return text


def read_identity(folder: Path, identity_file: str) -> str:
    """The serial a recorder's identity file names ("" if it names none usable); OSError
    (FileNotFoundError when there is none) if it cannot be read. Never through a link."""
    fd = os.open(folder / identity_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        text = os.read(fd, 4096).decode("utf-8", "replace")
    finally:
        os.close(fd)
    return clean_serial(text.splitlines()[0] if text.strip() else "")


class WatchDockSource:
    def __init__(self, root: Path, *, identity: Literal["folder", "file"] = "folder",
                 identity_file: str = "RECORDER.ID", settle: float = 2.0,
                 poll: float = 0.25) -> None:
        self.root = root
        self.identity = identity
        self.identity_file = identity_file
        self.settle = settle
        self.poll = poll
        self._last_change: dict[str, float] = {}
        self._offered: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._thread: threading.Thread | None = None
        self._callback: FolderCallback | None = None

    # -- identity ------------------------------------------------------------------------

    def identify(self, folder: Path) -> FolderDock:
        if self.identity == "folder":
            serial = clean_serial(folder.name)
            problem = "" if serial else f"folder name {folder.name!r} is not a usable serial"
            return FolderDock(action="add", path=folder, serial=serial, problem=problem)
        try:
            serial = read_identity(folder, self.identity_file)
        except OSError as exc:
            return FolderDock(action="add", path=folder, serial="",
                              problem=f"no readable {self.identity_file}: {exc.strerror}")
        problem = "" if serial else f"{self.identity_file} holds no usable serial"
        return FolderDock(action="add", path=folder, serial=serial, problem=problem)

    def enumerate(self) -> list[FolderDock]:
        """Folders present now (offered at start without waiting for an event)."""
        if not self.root.is_dir():
            return []
        return [self.identify(p) for p in sorted(self.root.iterdir())
                if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")]

    # -- running -------------------------------------------------------------------------

    def start(self, callback: FolderCallback) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._callback = callback
        handler = _Handler(self)
        observer = Observer()
        observer.schedule(handler, str(self.root), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer
        now = time.monotonic()
        with self._lock:
            for dock in self.enumerate():
                self._last_change[dock.path.name] = now - self.settle  # offer at once
        self._thread = threading.Thread(target=self._run, name="ingestd-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
        if self._thread is not None:
            self._thread.join(timeout)

    def touched(self, rel: str) -> None:
        top = rel.split(os.sep, 1)[0]
        if not top or top.startswith("."):
            return
        with self._lock:
            self._last_change[top] = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            due: list[str] = []
            gone: list[str] = []
            now = time.monotonic()
            with self._lock:
                for name, changed in list(self._last_change.items()):
                    if now - changed < self.settle:
                        continue
                    del self._last_change[name]
                    folder = self.root / name
                    if folder.is_dir() and not folder.is_symlink():
                        due.append(name)
                    elif name in self._offered:
                        gone.append(name)
            for name in gone:
                self._offered.discard(name)
                self._emit(FolderDock(action="remove", path=self.root / name, serial=""))
            for name in due:
                self._offered.add(name)
                self._emit(self.identify(self.root / name))

    def _emit(self, dock: FolderDock) -> None:
        assert self._callback is not None
        try:
            self._callback(dock)
        except Exception:  # a consumer's bug must not stop docking of other recorders
            log.exception("dock callback failed for %s", dock.path)


class _Handler(FileSystemEventHandler):
    def __init__(self, source: WatchDockSource) -> None:
        self.source = source
        self.root = str(source.root)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reads (our own ingest) are not changes
        if event.event_type == "modified" and event.is_directory:
            return  # a folder's listing changed: the entry that changed has its own event
        if event.event_type == "deleted" and self._inside_recorder(event.src_path):
            # Nothing new to take (and a wipe's own deletions must not look like a new dock);
            # a recorder folder that goes away as a whole is still reported below.
            return
        if event.event_type == "moved" and self._set_aside(event):
            return  # a wipe at work: the file leaves, nothing new arrives
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if isinstance(path, bytes):
                path = os.fsdecode(path)
            if path and path.startswith(self.root):
                rel = os.path.relpath(path, self.root)
                if rel != ".":
                    self.source.touched(rel)

    def _set_aside(self, event: FileSystemEvent) -> bool:
        dest = getattr(event, "dest_path", "")
        if isinstance(dest, bytes):
            dest = os.fsdecode(dest)
        return bool(dest) and os.path.basename(dest).startswith(ASIDE_PREFIX) \
            and self._inside_recorder(dest)

    def _inside_recorder(self, path: str | bytes) -> bool:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        rel = os.path.relpath(path, self.root)
        return not rel.startswith("..") and os.sep in rel
