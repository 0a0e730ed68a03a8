"""The JSON log formatter README "Observing" shows, as a worker set-up function
(`WOOL_WORKER_SETUP=tests.jsonlog:setup`): one JSON object per record on stderr."""

from __future__ import annotations

import json
import logging

CALL_FIELDS = ("call_id", "routine", "worker_id", "caller")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update({field: getattr(record, field) for field in CALL_FIELDS if hasattr(record, field)})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(handlers=[handler], force=True)
