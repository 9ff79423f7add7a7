"""Structured log lines: one JSON object per event, fields named by the caller.

Callers pass ids and outcomes only; passwords, tokens and hashes are never handed to `audit`.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from flask import has_request_context, request

audit_log = logging.getLogger("app.audit")

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging() -> None:
    root = logging.getLogger("app")
    if any(isinstance(h.formatter, JSONFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def request_ip() -> str | None:
    """The address of the client of the current request, or None outside a request."""
    return request.remote_addr if has_request_context() else None


def audit(event: str, **fields: Any) -> None:
    if has_request_context():
        fields.setdefault("ip", request_ip())
    audit_log.info(event, extra=fields)


def iso_utc(moment: datetime | None) -> str:
    """A moment as the CLI prints it: `2026-12-06T10:00:00Z`, or `-` for none."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"
