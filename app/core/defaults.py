"""What the settings fall back to when unset: the embedded default's secret keys, made once
per checkout, and the base of the emailed links, taken from where gunicorn serves."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.core.production import SIGNING_KEYS

DEV_SECRETS_FILE = "dev-secrets.json"
# The contract's PUBLIC_BASE_URL: gunicorn's default bind, as a browser on this machine names it.
DEFAULT_PUBLIC_BASE_URL = "http://localhost:8000"
# Addresses gunicorn may bind that a browser on this machine reaches as localhost.
LOCAL_HOSTS = frozenset({"0.0.0.0", "127.0.0.1", "[::]", "[::1]", "localhost"})  # noqa: S104


def development_keys(instance: Path) -> dict[str, str]:
    """The signing keys of the embedded default: random, made once per checkout and kept in
    `instance/` (git ignores it, and only the owner may read it). A key written in the code
    would be everyone's key: anyone who read the repository could decrypt the signing key
    stored in a copy of the database, and so sign an admin token."""
    path = instance / DEV_SECRETS_FILE
    try:
        keys = json.loads(path.read_text())
    except (OSError, ValueError):
        keys = {}
    if not all(isinstance(keys.get(name), str) and keys[name] for name in SIGNING_KEYS):
        keys = {name: secrets.token_urlsafe(48) for name in SIGNING_KEYS}
        instance.mkdir(parents=True, exist_ok=True)
        # Created 0600 and replaced atomically: two processes starting at once both end up
        # with one of the complete files, never a half-written one.
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(keys, out)
        os.replace(partial, path)
        keys = json.loads(path.read_text())
    return {name: keys[name] for name in SIGNING_KEYS}


def default_public_base_url(app_env: str, env: dict[str, str]) -> str:
    """The base of the emailed links when PUBLIC_BASE_URL is unset.

    In development it is the server gunicorn serves (GUNICORN_BIND, as gunicorn.conf.py reads
    it), so moving the port moves the links and the tokens' issuer with it; every process
    reads the same variables, so the web process, the flask commands and the worker agree.
    A wildcard or loopback address is reached as localhost; another address is the one the
    other machines reach. Production keeps the contract's value: behind a reverse proxy the
    bind says nothing of the address clients use."""
    if app_env == "production":
        return DEFAULT_PUBLIC_BASE_URL
    bind = (env.get("GUNICORN_BIND") or "").strip()
    if not bind or bind.startswith(("unix:", "fd://")):
        return DEFAULT_PUBLIC_BASE_URL  # gunicorn's default bind, or no TCP port to name
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or (":" in host and not host.startswith("[")):
        host, port = bind, "8000"  # no port: gunicorn serves its default, 8000
    if host in LOCAL_HOSTS:
        host = "localhost"
    return f"http://{host}:{port}"


def webauthn_settings(config: dict[str, Any]) -> None:
    """The passkeys' RP id (a host name) and the origins a ceremony may come from (a list):
    by default those of PUBLIC_BASE_URL, the address browsers reach the service at."""
    public = urlsplit(config["PUBLIC_BASE_URL"])
    config["WEBAUTHN_RP_ID"] = config.get("WEBAUTHN_RP_ID") or public.hostname or "localhost"
    origins = config.get("WEBAUTHN_ORIGINS") or f"{public.scheme}://{public.netloc}"
    if isinstance(origins, str):
        origins = [origin.strip().rstrip("/") for origin in origins.split(",") if origin.strip()]
    config["WEBAUTHN_ORIGINS"] = origins
    config.setdefault("WEBAUTHN_RP_NAME", "Cinema")
