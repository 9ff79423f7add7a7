"""Avatar storage: S3 (boto3) when S3_BUCKET is set, a local folder otherwise."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    app.extensions["avatar_storage"] = None
