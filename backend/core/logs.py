"""Log lines: one per record, as text for people or JSON for log shippers (``LOG_FORMAT``),
each with the id of the request it was written for.

The id is set per request by ``backend.web.request_telemetry`` in a context variable, so any
code's log records carry it without passing it along; the response echoes it in
``X-Request-ID`` and nginx writes it in its own access log, so the three can be matched.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["json", "text"]
NO_REQUEST = "-"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

request_id: ContextVar[str] = ContextVar("request_id", default=NO_REQUEST)

# What every record has; anything else on a record came from ``extra=`` and goes into the JSON,
# but for uvicorn's ``color_message`` (the message again, with terminal colour codes).
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "request_id",
    "color_message",
}


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request's id (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", NO_REQUEST)
        if rid != NO_REQUEST:
            entry["request_id"] = rid
        entry.update((k, v) for k, v in vars(record).items() if k not in _RECORD_FIELDS)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(log_format: LogFormat, level: int = logging.INFO) -> None:
    """Log to stderr in ``log_format``. Like ``logging.basicConfig``, it leaves a root logger
    that already has handlers alone (a test runner's, or an earlier call's)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root.addHandler(handler)
    root.setLevel(level)
