"""Logging on the package logger: plain text for people, JSON lines for journald collectors."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from .domain.text import json_printable, printable, redact_urls

_HANDLER_NAME = "ingestd"


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``event`` is a stable name when the call passes one."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", record.name.rsplit(".", 1)[-1]),
            "message": redact_urls(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exception"] = redact_urls(self.formatException(record.exc_info))
        return json_printable(json.dumps(doc, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """One line a record: the message (which may quote a recorder's file name, serial or
    label) with anything a terminal would act on escaped; a traceback stays as it is. URLs in
    either lose their user name, password and query (a library's error may quote them)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = printable(redact_urls(record.message))
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return redact_urls(super().formatException(ei))


def configure(*, level: str = "WARNING", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Log on the package logger to ``stream`` (default stderr; the daemon logs to stdout,
    which journald collects, while one-shot commands keep stdout for their report)."""
    logger = logging.getLogger("ingestd")
    logger.setLevel(level.upper())
    for handler in list(logger.handlers):
        if handler.get_name() == _HANDLER_NAME:
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
