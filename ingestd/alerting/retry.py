"""Bounded retries with a doubling backoff, shared by the channels."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

#: No wait between two tries is longer than this, whatever the backoff.
MAX_WAIT = 60.0


def waits(attempts: int, backoff: timedelta) -> list[float]:
    """The pauses between ``attempts`` tries: ``backoff``, then doubled, capped."""
    first = backoff.total_seconds()
    return [min(MAX_WAIT, first * 2**n) for n in range(max(0, attempts - 1))]


Sleep = Callable[[float], None]
default_sleep: Sleep = time.sleep
