"""The app's Redis clients: RQ's queue, the scheduler, readiness. (Rate limits keep the
limiter's own, configured with the same options.)"""

from __future__ import annotations

from typing import Literal

from flask import Flask, current_app
from redis import Redis


def redis_connection(
    app: Flask | None = None, purpose: Literal["client", "worker"] = "client"
) -> Redis:
    """The app's Redis client for `purpose`, made once.

    "client" (requests, the scheduler, enqueueing) gives up after about a second
    (`REDIS_CLIENT_OPTIONS`). "worker" is the RQ worker's own: it waits for jobs with a
    blocking BLPOP of several minutes, which a one-second socket timeout would cut, so it
    leaves the socket timeout for RQ to set above that wait; a separate client, because RQ
    sets it on the connection pool it is given.
    """
    app = app or current_app
    key = f"accounts_redis_{purpose}"
    conn = app.extensions.get(key)
    if conn is None:
        options = dict(app.config["REDIS_CLIENT_OPTIONS"])
        if purpose == "worker":
            options["socket_timeout"] = None
        conn = Redis.from_url(app.config["REDIS_URL"], **options)
        app.extensions[key] = conn
    return conn
