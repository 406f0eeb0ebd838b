"""Whether the process serving a dock session still runs: what ``ingest`` asks before it marks
a session interrupted, and what ``status`` asks to show one so without writing. A module of its
own, so that a report asks it without importing the ingest and all it copies with."""

from __future__ import annotations

import os
import socket

#: This machine, as a session records the host its process runs on.
HOST = socket.gethostname()


def process_alive(pid: int) -> bool:
    """Is ``pid`` a running ingestd process (not a reused number)?

    Under ProtectProc=invisible (and PrivateUsers=) a process of another user, or of the same
    user outside our user namespace, has no /proc entry for us to read; a signal 0 still says
    whether it exists, and such a process is taken as alive rather than its session as dead."""
    if pid == os.getpid():
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"ingestd" in fh.read()
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True  # it exists, and is not ours to signal
    except OSError:
        return False
    return True


def session_abandoned(pid: int | None, host: str | None) -> bool:
    """Is the process that serves a ``running`` session gone? The same rule as
    ``interrupt_abandoned``, so that a reader can show the truth without writing."""
    return pid is None or host != HOST or not process_alive(int(pid))
