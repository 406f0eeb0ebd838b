"""The log channel, always on: every notice is a log line (journald keeps it)."""

from __future__ import annotations

import logging

from ..domain.alerts import AlertState, Notice, Severity, log_line

log = logging.getLogger("ingestd.alerts")


class LogChannel:
    name = "log"

    def send(self, notice: Notice, *, station: str) -> None:
        alert = notice.alert
        if alert.state == AlertState.RESOLVED:
            level = logging.INFO
        else:
            level = logging.CRITICAL if alert.severity == Severity.CRITICAL else logging.WARNING
        log.log(level, "%s", log_line(notice),
                extra={"event": f"alert_{alert.state}",
                       "fields": {"alert": alert.key, "state": str(alert.state),
                                  "severity": str(alert.severity), "station": station,
                                  "repeat": notice.repeat}})
