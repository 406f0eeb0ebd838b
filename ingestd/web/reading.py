"""The station's status as the page and the API read it: at most once every ``STATUS_TTL``,
however many ask. The status model reads the catalog's tallies and a few short walks on its
indexes, not every item, but it is still a dozen queries and the store's file system; a page
left open in many browsers, or a monitor that polls, then costs the catalog one read every
``STATUS_TTL``, and a request that comes while it is read waits for that read instead of
starting another."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..station import Station
from ..usecases.status import StationStatus, status

#: How old the status a page shows may be, in seconds.
STATUS_TTL = 1.0


class StatusReader:
    def __init__(self, station: Station, *, ttl: float = STATUS_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.station = station
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._last: tuple[float, StationStatus] | None = None

    def __call__(self) -> StationStatus:
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last[0] < self.ttl:
                return self._last[1]
            read = status(self.station)
            self._last = (self._clock(), read)
            return read
