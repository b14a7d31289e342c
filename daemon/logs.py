"""The daemon's logs: one JSON object per line (time, level, logger, message, and a line's own fields), for
log shippers.

Nothing logged carries a token: handlers log repos, paths and reasons, never request headers.
"""

from __future__ import annotations

import json
import logging
from typing import TextIO


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname.lower(),
                 "logger": record.name, "message": record.getMessage()}
        for key, value in getattr(record, "fields", {}).items():  # a line's own fields: ``extra={"fields": {...}}``
            entry.setdefault(key, value)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(stream: TextIO) -> None:
    """Log INFO and above from mreg and aiohttp to ``stream`` as JSON lines (Alembic only warnings)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
