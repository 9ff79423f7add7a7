"""The one Chromium the browser tests drive (the link pages, /docs, passkeys): Debian's
chromium under Playwright, never a browser Playwright downloads.

One per run, session-scoped: Playwright's sync API runs an event loop in the thread that
started it, so a second instance started while the first lives fails ("using Playwright
Sync API inside the asyncio loop"), which is what a second fixture of its own did.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.services import unavailable

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# `localhost` is a secure context over plain HTTP and a valid WebAuthn RP id (an IP address is
# not): the passkey test serves its page there.
RESOLVE_LOCALHOST = "--host-resolver-rules=MAP localhost 127.0.0.1"


def chromium_path() -> str:
    """Debian's chromium; CHROMIUM_PATH or another Chromium-based browser on the PATH (as CI
    runners carry) does as well."""
    named = [os.environ.get("CHROMIUM_PATH", ""), "chromium", "chromium-browser", "google-chrome"]
    found = (shutil.which(name) for name in named if name)
    return next((path for path in found if path), "/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        unavailable("Playwright", exc)
    if not Path(chromium_path()).exists():
        unavailable("chromium", FileNotFoundError("install it with `apt-get install chromium`"))
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=chromium_path(), args=[*CHROMIUM_ARGS, RESOLVE_LOCALHOST]
            )
        except Exception as exc:
            unavailable("chromium", exc)
        yield browser
        browser.close()
