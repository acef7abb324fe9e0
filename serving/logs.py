"""Operator-facing logs: one line per event, as text or as JSON objects."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                 "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class RateLimitedLog:
    """At most `per_second` lines a second for each kind of event, the rest counted and
    reported with the next line let through: a client flooding the server with bad or
    expiring calls must not flood its log (or its disk) as well."""

    def __init__(self, logger: logging.Logger, per_second: float = 10.0) -> None:
        self.logger = logger
        self.interval = 1.0 / per_second
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def info(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next.get(kind, 0.0):
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return
            self._next[kind] = now + self.interval
            suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += f" (and {suppressed} more like it, not logged)"
        self.logger.info(message, *args)
