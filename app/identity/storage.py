"""Avatar storage: S3 (boto3) when S3_BUCKET is set, a local folder otherwise.

Both keep objects under keys the server chooses; callers never pass a client's file name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from flask import Flask, current_app

# Presigned URLs are handed to browsers inside profiles; a short life limits a leaked link.
PRESIGNED_URL_TTL = 3600

# Segments of letters, digits, "-", "_" and "."; none may start with "." (no "..", no dotfiles).
_SAFE_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*")

# The local folder keeps no metadata, so the extension is what says the type when serving.
LOCAL_TYPES = {".webp": "image/webp"}


class AvatarStorage(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def delete(self, key: str) -> None: ...

    def url(self, key: str) -> str: ...


class S3Storage:
    """Objects in one bucket; `url` is a presigned GET, signed for the public endpoint.

    In docker compose the app reaches MinIO at http://minio:9000, a name browsers cannot
    resolve; S3_PUBLIC_ENDPOINT_URL (when set) is the address put into presigned URLs.
    Signing needs no network call, so a second client for the public endpoint costs nothing.
    """

    def __init__(self, bucket: str, endpoint_url: str | None, public_endpoint_url: str | None):
        # Imported here, with S3 configured: boto3 is slow to import, and the local folder,
        # the flask commands and the worker never need it.
        import boto3
        from botocore.config import Config

        # Path-style addressing: MinIO and moto serve buckets as paths, not subdomains.
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=5,
            read_timeout=15,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        self.bucket = bucket
        self.client = boto3.client("s3", endpoint_url=endpoint_url, config=config)
        self.signer = (
            boto3.client("s3", endpoint_url=public_endpoint_url, config=config)
            if public_endpoint_url
            else self.client
        )

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def url(self, key: str) -> str:
        url: str = self.signer.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=PRESIGNED_URL_TTL,
        )
        return url


class LocalStorage:
    """Files under UPLOAD_DIR, served by this app at PUBLIC_BASE_URL/media/<key>."""

    def __init__(self, root: Path, base_url: str) -> None:
        self.root = root.resolve()
        self.base_url = base_url

    def path(self, key: str) -> Path:
        """The file of a key; a key that could leave the folder is refused, not cleaned up."""
        if not _SAFE_KEY.fullmatch(key):
            raise ValueError(f"unsafe storage key {key!r}")
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"unsafe storage key {key!r}")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self.path(key)
        if LOCAL_TYPES.get(path.suffix) != content_type:
            raise ValueError(f"{key!r} would not be served as {content_type}")
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file.
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(data)
        partial.replace(path)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def url(self, key: str) -> str:
        return f"{self.base_url}/media/{key}"


def avatar_storage() -> AvatarStorage:
    storage: AvatarStorage = current_app.extensions["avatar_storage"]
    return storage


def init_storage(app: Flask) -> None:
    storage: AvatarStorage
    if app.config["S3_BUCKET"]:
        storage = S3Storage(
            app.config["S3_BUCKET"],
            app.config["S3_ENDPOINT_URL"],
            app.config["S3_PUBLIC_ENDPOINT_URL"],
        )
    else:
        storage = LocalStorage(Path(app.config["UPLOAD_DIR"]), app.config["PUBLIC_BASE_URL"])
    app.extensions["avatar_storage"] = storage
