"""PUT and DELETE /auth/me/avatar, on the local folder and on S3 (moto's server).

An avatar is judged by its bytes; what is stored is always our own WebP re-encoding.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from app.account.avatars import AVATAR_MAX_BYTES
from tests.support.http import Accounts, assert_problem, bearer
from tests.support.images import (
    EXIF_MAKE,
    Fetched,
    Uploader,
    exif_with_secrets,
    image_bytes,
    only_key,
)
from tests.support.mail import Mailbox


@pytest.mark.parametrize(
    ("fmt", "filename", "declared"),
    [
        ("PNG", "me.png", "image/png"),
        ("JPEG", "me.jpg", "image/jpeg"),
        ("WEBP", "me.webp", "image/webp"),
        # The name and the declared type do not matter, only the bytes.
        ("PNG", "avatar.exe", "application/octet-stream"),
    ],
)
def test_png_jpeg_and_webp_are_stored_as_webp_and_served(
    uploader: Uploader, fmt: str, filename: str, declared: str
) -> None:
    response = uploader.put(image_bytes(fmt), filename, declared)
    assert response.status_code == 200, response.json
    key = only_key(uploader)
    stored = uploader.stored_image(key)
    assert stored.format == "WEBP"
    assert stored.size == (64, 48)  # small images are not enlarged
    url = response.json["avatar_url"]
    assert url and uploader.profile()["avatar_url"] is not None
    fetched = uploader.backend.fetch(url)
    assert fetched.status == 200
    assert fetched.body == uploader.backend.read(key)
    assert fetched.headers["content-type"] == "image/webp"


def test_large_images_shrink_to_512_keeping_the_aspect(uploader: Uploader) -> None:
    assert uploader.put(image_bytes("PNG", (1200, 600))).status_code == 200
    assert uploader.stored_image(only_key(uploader)).size == (512, 256)


def test_transparency_is_kept(uploader: Uploader) -> None:
    response = uploader.put(image_bytes("PNG", (10, 10), mode="RGBA", color=(255, 0, 0, 128)))
    assert response.status_code == 200
    assert uploader.stored_image(only_key(uploader)).mode == "RGBA"


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "PNG"])
def test_exif_is_gone_and_orientation_applied(uploader: Uploader, fmt: str) -> None:
    # Orientation 6: the camera was turned; the pixels are rotated before EXIF is dropped.
    upload = image_bytes(fmt, (40, 20), exif=exif_with_secrets(orientation=6))
    assert Image.open(io.BytesIO(upload)).getexif()[EXIF_MAKE] == "SpyCam"
    assert uploader.put(upload).status_code == 200
    key = only_key(uploader)
    stored = uploader.stored_image(key)
    assert stored.size == (20, 40)
    assert not stored.getexif()
    assert not {"exif", "xmp", "icc_profile"} & set(stored.info)
    assert b"SpyCam" not in uploader.backend.read(key)
    assert b"Secret Street" not in uploader.backend.read(key)


@pytest.mark.parametrize(
    ("data", "filename", "declared"),
    [
        (b"just some text, honestly\n" * 10, "me.png", "image/png"),
        (b"\x00\x01\x02\x03" * 100, "me.png", "image/png"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>x()</script></svg>', "a.png", ""),
        (b"<html><script>alert(1)</script></html>", "me.jpg", "image/jpeg"),
        (image_bytes("GIF"), "me.gif", "image/gif"),
        (image_bytes("BMP"), "me.png", "image/png"),
        (image_bytes("TIFF"), "me.png", "image/png"),
    ],
)
def test_anything_but_png_jpeg_webp_is_refused_with_415(
    uploader: Uploader, data: bytes, filename: str, declared: str
) -> None:
    body = assert_problem(uploader.put(data, filename, declared), 415)
    assert "avatar" in body["errors"]
    assert uploader.backend.keys() == set()
    assert uploader.profile()["avatar_url"] is None


def test_a_damaged_image_is_refused_with_422(uploader: Uploader) -> None:
    damaged = image_bytes("PNG", (300, 300), compress_level=0)[:2000]
    assert_problem(uploader.put(damaged), 422)
    assert uploader.backend.keys() == set()


def test_a_decompression_bomb_is_refused_before_decoding(uploader: Uploader) -> None:
    # 48 megapixels in a few kilobytes: decoded as RGBA it would take about 190 MB.
    bomb = image_bytes("PNG", (8000, 6000), mode="1")
    assert len(bomb) < 100_000
    body = assert_problem(uploader.put(bomb), 422)
    assert "megapixels" in body["errors"]["avatar"][0]
    assert uploader.backend.keys() == set()


def test_an_avatar_of_exactly_the_limit_is_accepted(uploader: Uploader) -> None:
    # PNG decoders stop at IEND, so padding makes a valid image of any size.
    png = image_bytes("PNG")
    padded = png + b"\0" * (AVATAR_MAX_BYTES - len(png))
    assert len(padded) == AVATAR_MAX_BYTES
    assert uploader.put(padded).status_code == 200


def test_an_avatar_over_5_mib_is_refused_with_413(uploader: Uploader) -> None:
    png = image_bytes("PNG")
    padded = png + b"\0" * (AVATAR_MAX_BYTES + 1 - len(png))
    body = assert_problem(uploader.put(padded), 413)
    assert "avatar" in body["errors"]
    assert uploader.backend.keys() == set()


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk

    def readline(self, size: int | None = -1) -> bytes:
        line = super().readline(size)
        self.consumed += len(line)
        return line


def test_a_body_over_max_content_length_gets_413_before_it_is_read(uploader: Uploader) -> None:
    limit = uploader.backend.app.config["MAX_CONTENT_LENGTH"]
    assert limit == 6 * 1024 * 1024
    stream = CountingStream(b"x" * (limit + 1))
    response = uploader.client.put(
        "/auth/me/avatar",
        input_stream=stream,
        content_length=limit + 1,
        content_type="multipart/form-data; boundary=xyz",
        headers=uploader.headers,
    )
    assert_problem(response, 413)
    assert stream.consumed == 0
    assert uploader.backend.keys() == set()


def test_a_body_over_6_mib_gets_the_same_problem_as_an_avatar_over_5_mib(
    uploader: Uploader,
) -> None:
    png = image_bytes("PNG")
    over_the_avatar_limit = uploader.put(png + b"\0" * (AVATAR_MAX_BYTES + 1 - len(png)))
    limit = uploader.backend.app.config["MAX_CONTENT_LENGTH"]
    over_the_body_limit = uploader.put(png + b"\0" * (limit + 1 - len(png)))
    assert over_the_body_limit.status_code == over_the_avatar_limit.status_code == 413
    assert over_the_body_limit.mimetype == "application/problem+json"
    assert over_the_body_limit.json == over_the_avatar_limit.json
    assert uploader.backend.keys() == set()


def test_replacing_deletes_the_old_object(uploader: Uploader) -> None:
    first = uploader.put(image_bytes("PNG")).json["avatar_url"]
    old_key = only_key(uploader)
    second = uploader.put(image_bytes("JPEG")).json["avatar_url"]
    new_key = only_key(uploader)
    assert new_key != old_key
    assert uploader.profile()["avatar_url"] != first
    assert uploader.backend.fetch(second).status == 200
    assert uploader.backend.fetch(first).status == 404


def test_a_refused_upload_keeps_the_current_avatar(uploader: Uploader) -> None:
    uploader.put(image_bytes("PNG"))
    key = only_key(uploader)
    assert_problem(uploader.put(b"not an image", "x.png", "image/png"), 415)
    assert uploader.backend.keys() == {key}
    assert uploader.profile()["avatar_url"] is not None


def test_delete_removes_the_object_and_the_url(uploader: Uploader) -> None:
    url = uploader.put(image_bytes("WEBP")).json["avatar_url"]
    response = uploader.client.delete("/auth/me/avatar", headers=uploader.headers)
    assert response.status_code == 204
    assert response.data == b""
    assert uploader.backend.keys() == set()
    assert uploader.profile()["avatar_url"] is None
    assert uploader.backend.fetch(url).status == 404
    # Nothing left to delete: still 204.
    assert uploader.client.delete("/auth/me/avatar", headers=uploader.headers).status_code == 204


@pytest.mark.parametrize(
    "send",
    [
        lambda c, h: c.put(
            "/auth/me/avatar", data={"photo": (io.BytesIO(b"x"), "a.png")}, headers=h
        ),
        lambda c, h: c.put(
            "/auth/me/avatar",
            data={"avatar": "not a file"},
            content_type="multipart/form-data",
            headers=h,
        ),
        lambda c, h: c.put("/auth/me/avatar", json={"avatar": "aGVsbG8="}, headers=h),
        lambda c, h: c.put(
            "/auth/me/avatar",
            data={"avatar": (io.BytesIO(b"x"), "a.png"), "extra": (io.BytesIO(b"y"), "b.png")},
            headers=h,
        ),
    ],
    ids=["other-field", "text-field", "json", "second-file"],
)
def test_a_body_without_exactly_one_avatar_file_is_422(
    uploader: Uploader, send: Callable[[FlaskClient, dict[str, str]], Any]
) -> None:
    assert_problem(send(uploader.client, uploader.headers), 422)
    assert uploader.backend.keys() == set()


def test_a_raw_image_body_is_415(uploader: Uploader) -> None:
    response = uploader.client.put(
        "/auth/me/avatar",
        data=image_bytes("PNG"),
        content_type="image/png",
        headers=uploader.headers,
    )
    assert_problem(response, 415)


def test_avatar_routes_need_an_access_token(uploader: Uploader) -> None:
    upload = {"avatar": (io.BytesIO(image_bytes("PNG")), "a.png")}
    assert_problem(uploader.client.put("/auth/me/avatar", data=upload), 401)
    assert_problem(uploader.client.delete("/auth/me/avatar"), 401)
    assert uploader.backend.keys() == set()


# --- local folder ---------------------------------------------------------------------------


@pytest.fixture
def local_app(app_factory: Callable[..., Flask]) -> Flask:
    return app_factory()


@pytest.mark.parametrize("avatar_backend", ["local"], indirect=True)
def test_local_files_are_served_with_nosniff(uploader: Uploader) -> None:
    url = uploader.put(image_bytes("PNG")).json["avatar_url"]
    response = uploader.client.get(url.removeprefix("http://cinema.test"))
    assert response.status_code == 200
    assert response.mimetype == "image/webp"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/media/../accounts.sqlite3",
        "/media/avatars/..%2F..%2Fsecret.webp",
        "/media/avatars/%2e%2e/%2e%2e/secret.webp",
        "/media/%2Fetc%2Fpasswd",
        "/media/avatars/.hidden.webp",
        "/media/avatars/1/notes.txt",
        "/media/avatars/1/missing.webp",
    ],
)
def test_local_media_refuses_traversal_and_unknown_files(local_app: Flask, path: str) -> None:
    root = local_app.config["UPLOAD_DIR"]
    # Files that exist next to and inside the folder must still not be served.
    (Path(root) / "avatars" / "1").mkdir(parents=True)
    (Path(root) / "avatars" / "1" / "notes.txt").write_text("private")
    (Path(root) / "avatars" / ".hidden.webp").write_bytes(b"hidden")
    (Path(root).parent / "secret.webp").write_bytes(b"secret")
    response = local_app.test_client().get(path)
    assert response.status_code in (404, 308), response.status_code
    assert b"secret" not in response.data and b"private" not in response.data


def test_the_local_media_route_is_documented(local_app: Flask) -> None:
    assert "/media/{key}" in local_app.test_client().get("/openapi.json").json["paths"]


def test_with_s3_the_app_serves_no_media(s3_app: Flask) -> None:
    client = s3_app.test_client()
    assert "/media/{key}" not in client.get("/openapi.json").json["paths"]
    assert_problem(client.get("/media/avatars/1/x.webp"), 404)


# --- S3 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("avatar_backend", ["s3"], indirect=True)
def test_s3_urls_are_presigned_and_short_lived(
    uploader: Uploader, s3_endpoint: str, http_get: Callable[[str], Fetched]
) -> None:
    url = uploader.put(image_bytes("PNG")).json["avatar_url"]
    assert url.startswith(s3_endpoint + "/")
    assert "X-Amz-Signature=" in url
    assert "X-Amz-Expires=3600" in url
    assert http_get(url).status == 200


def test_s3_public_endpoint_signs_urls_browsers_can_reach(
    app_factory: Callable[..., Flask],
    s3_endpoint: str,
    s3_bucket: str,
    mailbox: Mailbox,
    http_get: Callable[[str], Fetched],
) -> None:
    # As in compose: the app talks to one address, browsers reach S3 at another.
    port = s3_endpoint.rsplit(":", 1)[1]
    public = f"http://localhost:{port}"
    app = app_factory(
        S3_ENDPOINT_URL=s3_endpoint, S3_BUCKET=s3_bucket, S3_PUBLIC_ENDPOINT_URL=public
    )
    client = app.test_client()
    headers = bearer(Accounts(client, mailbox).active_user("viewer@example.com")["access_token"])
    response = client.put(
        "/auth/me/avatar",
        data={"avatar": (io.BytesIO(image_bytes("PNG")), "a.png")},
        headers=headers,
    )
    assert response.status_code == 200, response.json
    url = response.json["avatar_url"]
    assert url.startswith(f"{public}/{s3_bucket}/avatars/1/")
    fetched = http_get(url)
    assert fetched.status == 200
    assert Image.open(io.BytesIO(fetched.body)).format == "WEBP"


def test_a_text_field_beside_the_avatar_is_422_and_stores_nothing(uploader: Uploader) -> None:
    response = uploader.client.put(
        "/auth/me/avatar",
        data={"avatar": (io.BytesIO(image_bytes("PNG")), "me.png"), "comment": "hi"},
        headers=uploader.headers,
    )
    body = assert_problem(response, 422)
    assert body["errors"] == {"comment": ["Unknown field."]}
    assert uploader.backend.keys() == set()


def test_a_part_without_a_readable_name_beside_the_avatar_is_422(uploader: Uploader) -> None:
    # Werkzeug reads `name="\"` as a part without a name (None), found by Schemathesis.
    png = image_bytes("PNG")
    body = (
        b"--xyz\r\n"
        b'Content-Disposition: form-data; name="\\"\r\n\r\nnull\r\n'
        b"--xyz\r\n"
        b'Content-Disposition: form-data; name="avatar"; filename="me.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + png + b"\r\n--xyz--\r\n"
    )
    response = uploader.client.put(
        "/auth/me/avatar",
        data=body,
        content_type="multipart/form-data; boundary=xyz",
        headers=uploader.headers,
    )
    assert assert_problem(response, 422)["errors"]
    assert uploader.backend.keys() == set()
