"""The caller's avatar: judged by its bytes, never by the file name or the declared type,
and stored as our own re-encoding: a WebP of at most 512x512 without EXIF or other
metadata, under a key the server chose.
"""

from __future__ import annotations

import io
import logging
import secrets
from typing import IO

from PIL import Image, ImageOps

from app.account.profile import profile_of
from app.core.db import db
from app.core.errors import ContentTooLarge, InvalidInput, UnsupportedImage
from app.core.log import audit
from app.identity.models import User, UserProfile
from app.identity.storage import avatar_storage

log = logging.getLogger(__name__)

AVATAR_MAX_BYTES = 5 * 1024 * 1024
AVATAR_MAX_SIDE = 512
# Memory is what a request decodes, not what it uploads: 155 KB of PNG can hold 6324x6324
# RGBA pixels, 160 MB decoded. A request decodes at most 4 megapixels (16 MB as RGBA), about
# four times the side of an avatar; a JPEG decodes at 1/2, 1/4 or 1/8 of its size, so a
# camera photo of up to AVATAR_MAX_PIXELS is first reduced to that and then checked again.
AVATAR_MAX_DECODED_PIXELS = 4_000_000
# A JPEG's own size is bounded too: decoding reduced still reads every block (16
# megapixels take a 12-megapixel phone photo), and a progressive JPEG keeps every DCT
# coefficient until its last scan, up to 8 bytes a pixel (CMYK without subsampling).
AVATAR_MAX_PIXELS = 16_000_000
AVATAR_MAX_PROGRESSIVE_PIXELS = 6_000_000
# Measured by bench/upload_rss.py, one upload then costs at most about 64 MB.
AVATAR_FORMATS = ("PNG", "JPEG", "WEBP")
# The first bytes of each accepted format: bytes that start like one of them but do not
# decode are a damaged image (422); bytes that start like none are not an image we take (415).
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"


def reencode_avatar(data: bytes) -> bytes:
    """Our own WebP of an uploaded PNG, JPEG or WebP; anything else is refused."""
    if not _starts_like_an_accepted_format(data):
        raise UnsupportedImage(
            "The avatar must be a PNG, JPEG or WebP image.",
            errors={"avatar": ["Not a PNG, JPEG or WebP image."]},
        )
    # Pillow's parsers answer hostile bytes with whatever exception their code meets
    # (ValueError for a bad IHDR length, struct.error, TypeError in a broken EXIF, ...):
    # for an image that starts right, any of them means it is damaged.
    try:
        return _as_clean_webp(_decoded_within_limits(data))
    except InvalidInput:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own limit, far above ours
        raise _too_many_pixels() from exc
    except Exception as exc:
        raise InvalidInput(
            "The image could not be decoded.",
            errors={"avatar": ["The image is damaged or truncated."]},
        ) from exc


def _decoded_within_limits(data: bytes) -> Image.Image:
    # `formats` keeps Pillow from trying its other decoders (TIFF, PSD, EPS, ...).
    image = Image.open(io.BytesIO(data), formats=AVATAR_FORMATS)
    # From the header, before any decoding.
    progressive = image.info.get("progressive")
    _check_pixels(image.size, AVATAR_MAX_PROGRESSIVE_PIXELS if progressive else AVATAR_MAX_PIXELS)
    # JPEG decodes straight at a reduced scale; the other formats ignore the hint.
    image.draft(None, (AVATAR_MAX_SIDE, AVATAR_MAX_SIDE))
    _check_pixels(image.size, AVATAR_MAX_DECODED_PIXELS)
    image.load()
    return image


def _as_clean_webp(image: Image.Image) -> bytes:
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    mode = "RGBA" if has_alpha else "RGB"
    # Shrink before anything else copies the pixels; a conversion copies only when needed.
    pixels = image if image.mode == mode else image.convert(mode)
    pixels.thumbnail((AVATAR_MAX_SIDE, AVATAR_MAX_SIDE), Image.Resampling.LANCZOS)
    # Orientation lives in EXIF, which we drop: turn the pixels first.
    upright = ImageOps.exif_transpose(pixels)
    # A fresh image carries no metadata (EXIF, XMP, ICC, comments) from the upload.
    clean = Image.new(upright.mode, upright.size)
    clean.paste(upright)
    out = io.BytesIO()
    clean.save(out, "WEBP", quality=85, method=4)
    return out.getvalue()


def avatar_too_large() -> ContentTooLarge:
    """The answer to an avatar over the limit, whether the file or the whole body is."""
    return ContentTooLarge(
        "The avatar is too large.",
        errors={"avatar": [f"At most {AVATAR_MAX_BYTES // (1024 * 1024)} MiB."]},
    )


def _starts_like_an_accepted_format(data: bytes) -> bool:
    is_webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    return data.startswith((_PNG_SIGNATURE, _JPEG_SIGNATURE)) or is_webp


def _check_pixels(size: tuple[int, int], limit: int) -> None:
    width, height = size
    if width * height > limit:
        raise _too_many_pixels()


def _too_many_pixels() -> InvalidInput:
    decoded, jpeg = AVATAR_MAX_DECODED_PIXELS // 10**6, AVATAR_MAX_PIXELS // 10**6
    progressive = AVATAR_MAX_PROGRESSIVE_PIXELS // 10**6
    return InvalidInput(
        "The image has too many pixels.",
        errors={
            "avatar": [
                f"At most {decoded} megapixels; a JPEG, decoded at a reduced scale, may have "
                f"up to {jpeg} ({progressive} if progressive)."
            ]
        },
    )


def set_avatar(user: User, upload: IO[bytes]) -> UserProfile:
    """Store the re-encoded image under a new key; the previous one is deleted."""
    # One byte more than allowed tells "too large" without holding more than that.
    data = upload.read(AVATAR_MAX_BYTES + 1)
    if len(data) > AVATAR_MAX_BYTES:
        raise avatar_too_large()
    webp = reencode_avatar(data)
    storage = avatar_storage()
    key = f"avatars/{user.id}/{secrets.token_hex(16)}.webp"
    storage.put(key, webp, "image/webp")
    profile = profile_of(user)
    previous = profile.avatar_key
    profile.avatar_key = key
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        _delete_object(key)
        raise
    if previous:
        _delete_object(previous)
    audit("avatar_updated", user_id=user.id)
    return profile


def delete_avatar(user: User) -> None:
    """Forget the avatar and delete its object; without an avatar nothing happens."""
    profile = user.profile
    if profile is None or profile.avatar_key is None:
        return
    previous = profile.avatar_key
    profile.avatar_key = None
    db.session.commit()
    _delete_object(previous)
    audit("avatar_deleted", user_id=user.id)


def _delete_object(key: str) -> None:
    """The database no longer points at the object: a failed delete leaves an orphan, logged."""
    from botocore.exceptions import BotoCoreError, ClientError  # boto3 is imported only for S3

    try:
        avatar_storage().delete(key)
    except (BotoCoreError, ClientError, OSError):
        log.exception("avatar object not deleted", extra={"key": key})
