"""Avatar storage fixtures: moto's server as a real S3 endpoint, and the local folder.

Loaded for every test module by conftest.py's `pytest_plugins`.

`avatar_backend` runs a test once with each storage; both expose the same helpers so a
test reads the same whichever stores the files.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from flask import Flask
from moto.server import ThreadedMotoServer

from tests.support.http import Accounts, bearer
from tests.support.images import AvatarBackend, Fetched, Uploader, fetch_url, lower_case_headers
from tests.support.mail import Mailbox
from tests.support.services import free_port


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3_client(s3_endpoint: str, s3_credentials: None) -> Any:
    return boto3.client("s3", endpoint_url=s3_endpoint)


@pytest.fixture
def s3_bucket(s3_client: Any) -> str:
    """A bucket of its own per test: user ids restart at 1 in every test."""
    name = f"avatars-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_app(app_factory: Callable[..., Flask], s3_endpoint: str, s3_bucket: str) -> Flask:
    return app_factory(S3_ENDPOINT_URL=s3_endpoint, S3_BUCKET=s3_bucket)


@pytest.fixture
def http_get() -> Callable[[str], Fetched]:
    return fetch_url


def _local_backend(app: Flask) -> AvatarBackend:
    root = Path(app.config["UPLOAD_DIR"])
    client = app.test_client()

    def keys() -> set[str]:
        if not root.exists():
            return set()
        return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}

    def fetch(url: str) -> Fetched:
        # The app serves the local folder itself, under PUBLIC_BASE_URL.
        assert url.startswith(app.config["PUBLIC_BASE_URL"] + "/media/"), url
        response = client.get(urlsplit(url).path)
        return Fetched(
            response.status_code, response.data, lower_case_headers(response.headers.items())
        )

    return AvatarBackend("local", app, keys, lambda key: (root / key).read_bytes(), fetch)


def _s3_backend(app: Flask, s3_client: Any, bucket: str) -> AvatarBackend:
    def keys() -> set[str]:
        listing = s3_client.list_objects_v2(Bucket=bucket)
        return {item["Key"] for item in listing.get("Contents", [])}

    def read(key: str) -> bytes:
        body: bytes = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    return AvatarBackend("s3", app, keys, read, fetch_url)


@pytest.fixture(params=["local", "s3"])
def avatar_backend(
    request: pytest.FixtureRequest, app_factory: Callable[..., Flask]
) -> AvatarBackend:
    if request.param == "local":
        return _local_backend(app_factory())
    s3_app: Flask = request.getfixturevalue("s3_app")
    return _s3_backend(
        s3_app, request.getfixturevalue("s3_client"), request.getfixturevalue("s3_bucket")
    )


@pytest.fixture
def uploader(avatar_backend: AvatarBackend, mailbox: Mailbox) -> Uploader:
    client = avatar_backend.app.test_client()
    tokens = Accounts(client, mailbox).active_user("viewer@example.com")
    return Uploader(avatar_backend, client, bearer(tokens["access_token"]))
