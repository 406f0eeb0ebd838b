"""Stop signals that come before the daemon can answer them.

``ingestd run`` takes a while to import and to open its station; a SIGTERM or SIGINT in that
time would kill it mid-start by the signal's default action. :func:`hold_signals` keeps them
instead, from the moment the command line is known to start the daemon, and the daemon
answers each once its own handlers are in (a warm stop). This module imports nothing of
ingestd's, so that the command line can call it before it imports anything heavy.
"""

from __future__ import annotations

import signal
from types import FrameType

#: Stop signals that came before the daemon could answer them.
held_signals: list[int] = []


def hold_signals() -> None:
    """Keep a SIGTERM or SIGINT from now on, for the daemon to answer once it can."""
    def held(signum: int, _frame: FrameType | None) -> None:
        held_signals.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, held)


def starts_daemon(argv: list[str]) -> bool:
    """Whether ``ingestd ARGV`` runs the daemon (``run``, not ``run --once``): the first word
    after the root group's options (``--config PATH``, ``--home DIR``, ``-v``)."""
    words = iter(argv)
    for word in words:
        if word in ("--config", "--home"):
            next(words, None)
        elif not word.startswith("-"):
            return word == "run" and "--once" not in argv and "--help" not in argv
    return False
