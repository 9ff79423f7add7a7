"""Gunicorn settings, read automatically from ./gunicorn.conf.py by `gunicorn wsgi:app`.

Every value can be changed from the environment without editing this file. Command-line
flags and GUNICORN_CMD_ARGS are applied after this file, so they still win.
"""

import os

from app.core.config import check_environment_or_exit, read_dotenv
from app.web.access_log import ACCESS_LOG_FORMAT, AccessLogger

# The settings below may come from .env, as the app's do; and a misconfigured app stops the
# master here with one line, instead of workers that fail to boot and are restarted forever.
read_dotenv()
check_environment_or_exit()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


# Without Redis the rate limits are counted in each process's memory (and the embedded default
# writes one SQLite file): one process with threads keeps a single count, as `make run`, which
# starts gunicorn with these settings, always served it. WEB_CONCURRENCY and GUNICORN_THREADS
# still decide when set.
_shared_state_in_memory = not os.environ.get("REDIS_URL")


def _default_workers() -> int:
    if _shared_state_in_memory:
        return 1
    # Gunicorn's rule of thumb for sync workers is 2 x cores + 1. The affinity mask counts only
    # the CPUs this process may run on (a cpuset-limited container sees its own share), and the
    # cap keeps a many-core host from opening more database connections than PostgreSQL allows.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(2 * (cores or 1) + 1, 8)


# The embedded default (APP_ENV=development) serves this machine only, unless GUNICORN_BIND
# opens it: it has no real mail and its keys are made for one checkout, nothing to offer the
# network. Production serves 0.0.0.0:8000, as the contract's `gunicorn wsgi:app` does (the
# image sets GUNICORN_BIND too, since inside a container 127.0.0.1 is unreachable).
_production = os.environ.get("APP_ENV", "").strip() == "production"
bind = os.environ.get("GUNICORN_BIND") or ("0.0.0.0:8000" if _production else "127.0.0.1:8000")
workers = _env_int("WEB_CONCURRENCY", _default_workers())
threads = _env_int("GUNICORN_THREADS", 4 if _shared_state_in_memory else 1)

# Argon2 hashing and an avatar upload are the slowest legitimate requests and take well under
# a second; a worker silent for this long is stuck, so it is killed and replaced.
timeout = 30

# Logs go to stdout/stderr, where Docker, systemd or the platform collects them.
accesslog = "-"
# The path without its query string (%(U)s, not the request line %(r)s): the activation and
# reset links carry their token in the query, and tokens never go into a log line.
access_log_format = ACCESS_LOG_FORMAT
# Writes that format's line without building gunicorn's dictionary of every header.
logger_class = AccessLogger
errorlog = "-"

# Gunicorn 25.1+ opens a control socket for `gunicornc`, by default ~/.gunicorn/gunicorn.ctl:
# one path for every gunicorn the user runs, so a second server (another checkout, a test's)
# takes it over from the first. Off unless GUNICORN_CONTROL_SOCKET names a path of its own.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket

# X-Forwarded-Proto and friends set the scheme only when they come from these addresses (the
# reverse proxy). The client address behind a proxy is the app's TRUSTED_PROXIES setting.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
