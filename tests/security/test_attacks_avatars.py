"""Attacks through avatar uploads (issue 10): decompression bombs and uploads in a loop
(item 8), and broken images that made the decoder fail with a 500 (item 9). Each goes
through the API, on SQLite and on PostgreSQL, with the local folder and with S3.
"""

from __future__ import annotations

import functools
import io
import random
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from tests.support.apps import run_worker
from tests.support.http import Accounts, assert_problem, bearer
from tests.support.images import Uploader, exif_with_secrets, image_bytes, only_key
from tests.support.mail import Mailbox


@functools.cache
def rgba_png_of_zeros(width: int, height: int) -> bytes:
    """A valid RGBA PNG, compressed row by row: the reported 155 KB bomb, without the test
    itself holding its 160 MB of pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + 4 * width)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_the_reported_bomb_is_refused_from_its_header(uploader: Uploader) -> None:
    bomb = rgba_png_of_zeros(6324, 6324)  # 160 MB of pixels, just under the old 40 MP cap
    assert len(bomb) < 200_000
    Image.open(io.BytesIO(bomb)).verify()  # a valid PNG, as the attacker sent it
    body = assert_problem(uploader.put(bomb), 422)
    assert "megapixels" in body["errors"]["avatar"][0]
    assert uploader.backend.keys() == set()
    assert uploader.profile()["avatar_url"] is None


@pytest.mark.parametrize(
    ("fmt", "size", "options", "status"),
    [
        # PNG and WebP decode whole: 4 megapixels at most.
        ("PNG", (2000, 2000), {}, 200),
        ("PNG", (2001, 2000), {}, 422),
        ("WEBP", (2001, 2000), {}, 422),
        # A baseline JPEG decodes at 1/8 of its size: a 12-megapixel photo is welcome.
        ("JPEG", (4000, 3000), {}, 200),
        ("JPEG", (4900, 3300), {}, 422),
        # A progressive one keeps every coefficient in memory whatever the scale.
        ("JPEG", (3000, 2000), {"progressive": True}, 200),
        ("JPEG", (3001, 2000), {"progressive": True}, 422),
        # Too thin to decode at a reduced scale, so the whole 4.2 megapixels would be decoded.
        ("JPEG", (8200, 512), {}, 422),
    ],
)
def test_decoded_pixels_are_capped(
    uploader: Uploader, fmt: str, size: tuple[int, int], options: dict, status: int
) -> None:
    response = uploader.put(image_bytes(fmt, size, mode="L", color=128, **options))
    if status == 200:
        assert response.status_code == 200, response.json
        stored = uploader.stored_image(only_key(uploader))
        assert max(stored.size) == 512
    else:
        body = assert_problem(response, status)
        assert "megapixels" in body["errors"]["avatar"][0]
        assert uploader.backend.keys() == set()


def test_uploads_are_rate_limited_per_account(
    app_factory: Callable[..., Flask], redis_url: str, mailbox: Mailbox
) -> None:
    app = app_factory(REDIS_URL=redis_url, RATELIMIT_ENABLED=True)
    client = app.test_client()
    accounts = Accounts(client, mailbox)
    headers = {}
    for address in ("looper@example.com", "neighbour@example.com"):
        accounts.register(address)
        run_worker(app)
        accounts.activate(address)
        headers[address] = bearer(accounts.login(address)["access_token"])

    def put(address: str) -> Any:
        avatar = {"avatar": (io.BytesIO(image_bytes("PNG")), "me.png")}
        return client.put("/auth/me/avatar", data=avatar, headers=headers[address])

    for _ in range(5):
        assert put("looper@example.com").status_code == 200
    refused = assert_problem(put("looper@example.com"), 429)
    assert "Retry-After" in refused["detail"]
    assert put("neighbour@example.com").status_code == 200  # the limit is the account's


# --- item 9: every image error is a 422 ------------------------------------------------------

PNG_SIGNATURE, JPEG_SIGNATURE = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"


def jpeg_with_broken_exif() -> bytes:
    """The reported one: a text tag where EXIF defines a fraction (WhitePoint), which made
    Pillow raise TypeError while it rewrote the EXIF of the turned image."""
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # Make, ASCII
    exif[0x0112] = 6  # Orientation: turned, so the EXIF is rewritten
    raw = exif.tobytes()
    order = "<" if raw[6:8] == b"II" else ">"
    make, white_point = (struct.pack(f"{order}HH", tag, 2) for tag in (0x010F, 0x013E))
    assert raw.count(make) == 1
    return image_bytes("JPEG", (40, 20), exif=raw.replace(make, white_point))


def reported_broken_images() -> dict[str, bytes]:
    png = image_bytes("PNG", (8, 8))
    return {
        "PNG with a wrong IHDR length": png[:8] + struct.pack(">I", 12) + png[12:],
        "WebP truncated to 20 bytes": image_bytes("WEBP")[:20],
        "JPEG with broken EXIF": jpeg_with_broken_exif(),
    }


def broken_images() -> Iterator[bytes]:
    """Truncations and byte flips of valid PNG, JPEG and WebP files (seeded: the same every run)."""
    rng = random.Random(9)
    exif = exif_with_secrets(orientation=6)
    valid = [
        image_bytes("PNG", (24, 16), exif=exif),
        image_bytes("PNG", (24, 16), mode="RGBA", color=(1, 2, 3, 4)),
        image_bytes("JPEG", (24, 16), exif=exif),
        image_bytes("JPEG", (24, 16), progressive=True),
        image_bytes("WEBP", (24, 16), exif=exif),
        image_bytes("WEBP", (24, 16), lossless=True),
    ]
    for data in valid:
        for _ in range(8):
            yield data[: rng.randrange(1, len(data))]
        for _ in range(16):
            flipped = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
            yield bytes(flipped)


@pytest.mark.parametrize("name", reported_broken_images())
def test_the_reported_broken_images_are_422(uploader: Uploader, name: str) -> None:
    body = assert_problem(uploader.put(reported_broken_images()[name]), 422)
    assert "avatar" in body["errors"]
    assert uploader.backend.keys() == set()


def test_no_broken_image_is_a_500(client: FlaskClient, accounts: Accounts) -> None:
    headers = bearer(accounts.active_user("breaker@example.com")["access_token"])
    for data in broken_images():
        avatar = {"avatar": (io.BytesIO(data), "me.png")}
        response = client.put("/auth/me/avatar", data=avatar, headers=headers)
        signed = data.startswith((PNG_SIGNATURE, JPEG_SIGNATURE)) or (
            data[:4] == b"RIFF" and data[8:12] == b"WEBP"
        )
        # Bytes that start like an accepted format are an image: decoded (a flip in the
        # pixels) or damaged. Bytes that do not are not an image we take.
        allowed = {200, 422} if signed else {415}
        assert response.status_code in allowed, (data[:16], response.get_data(as_text=True))
