"""The access log writes gunicorn's own line for our format, cheaper: compared line for line
with gunicorn's Logger on the same requests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from gunicorn.config import Config
from gunicorn.glogging import Logger

from app.web.access_log import ACCESS_LOG_FORMAT, AccessLogger


class Sent:
    """What gunicorn's access() reads of its Response: status, bytes sent, headers."""

    def __init__(self, status: str, sent: int | None) -> None:
        self.status = status
        self.sent = sent
        self.headers = [("Content-Type", "application/json")]


def _line(logger_class: type[Logger], tmp_path: Path, fmt: str, environ: dict[str, Any]) -> str:
    log_file = tmp_path / f"{logger_class.__name__}.log"
    cfg = Config()
    cfg.set("accesslog", str(log_file))
    cfg.set("access_log_format", fmt)
    logger = logger_class(cfg)
    with time_machine.travel("2026-11-27 08:00:00+00:00", tick=False):
        logger.access(
            Sent("200 OK", 15), [("User-Agent", "x")], environ, timedelta(microseconds=1234)
        )
    logger.access_log.handlers[0].flush()
    return log_file.read_text()


ENVIRONS = [
    {
        "REMOTE_ADDR": "127.0.0.1",
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/auth/activate",
        "QUERY_STRING": "token=never-in-the-log",
        "RAW_URI": "/auth/activate?token=never-in-the-log",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_USER_AGENT": 'curl/8 "quoted" \\ agent',
    },
    {
        "REMOTE_ADDR": "10.0.0.2",
        "REQUEST_METHOD": "POST",
        "PATH_INFO": '/auth/"login"',
        "RAW_URI": '/auth/"login"',
        "SERVER_PROTOCOL": "HTTP/1.0",
        "HTTP_AUTHORIZATION": "Basic YWxpY2U6c2VjcmV0",  # alice:secret: gunicorn logs "alice"
    },
]


@pytest.mark.parametrize("environ", ENVIRONS)
def test_the_line_is_gunicorns_line_and_holds_no_query_string(
    environ: dict[str, Any], tmp_path: Path
) -> None:
    ours = _line(AccessLogger, tmp_path, ACCESS_LOG_FORMAT, environ)
    assert ours == _line(Logger, tmp_path, ACCESS_LOG_FORMAT, environ)
    assert ours.count("\n") == 1
    assert "never-in-the-log" not in ours


def test_another_format_is_left_to_gunicorn(tmp_path: Path) -> None:
    fmt = '%(r)s %(s)s "%({content-type}o)s"'
    environ = ENVIRONS[1]
    assert _line(AccessLogger, tmp_path, fmt, environ) == _line(Logger, tmp_path, fmt, environ)
