"""Images to upload as avatars, and looks at where the avatars are kept."""

from __future__ import annotations

import io
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

# --- avatars ---

KEY = re.compile(r"avatars/1/[0-9a-f]{32}\.webp")
EXIF_MAKE, EXIF_ORIENTATION, EXIF_DESCRIPTION = 0x010F, 0x0112, 0x010E


def image_bytes(
    fmt: str,
    size: tuple[int, int] = (64, 48),
    mode: str = "RGB",
    color: Any = None,
    **options: Any,
) -> bytes:
    if color is None:
        color = "red" if mode in ("RGB", "RGBA") else 1
    image = Image.new(mode, size, color)
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def exif_with_secrets(orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[EXIF_MAKE] = "SpyCam"
    exif[EXIF_DESCRIPTION] = "taken at home, 12 Secret Street"
    exif[EXIF_ORIENTATION] = orientation
    return exif.tobytes()


@dataclass
class Uploader:
    backend: AvatarBackend
    client: FlaskClient
    headers: dict[str, str]

    def put(self, data: bytes, filename: str = "me.png", content_type: str = "image/png") -> Any:
        return self.client.put(
            "/auth/me/avatar",
            data={"avatar": (io.BytesIO(data), filename, content_type)},
            headers=self.headers,
        )

    def profile(self) -> dict[str, Any]:
        response = self.client.get("/auth/me", headers=self.headers)
        assert response.status_code == 200
        return response.json["profile"]  # type: ignore[no-any-return]

    def stored_image(self, key: str) -> Image.Image:
        image = Image.open(io.BytesIO(self.backend.read(key)))
        image.load()
        return image


def only_key(uploader: Uploader) -> str:
    keys = uploader.backend.keys()
    assert len(keys) == 1, keys
    (key,) = keys
    assert KEY.fullmatch(key), key
    return key


@dataclass
class Fetched:
    status: int
    body: bytes
    headers: dict[str, str]  # names in lower case


def lower_case_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def fetch_url(url: str) -> Fetched:
    """GET a URL over the network (the presigned URLs point at moto's server)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - test URL
            return Fetched(
                response.status, response.read(), lower_case_headers(response.headers.items())
            )
    except urllib.error.HTTPError as error:
        return Fetched(error.code, error.read(), lower_case_headers(error.headers.items()))


@dataclass
class AvatarBackend:
    """The app under test and a look at what its storage holds."""

    name: str
    app: Flask
    keys: Callable[[], set[str]]
    read: Callable[[str], bytes]
    fetch: Callable[[str], Fetched]
