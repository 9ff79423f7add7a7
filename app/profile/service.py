"""The use cases of the caller's own profile: its fields and its avatar.

An avatar is judged by its bytes, never by the file name or the declared type, and what we
store is always our own re-encoding: a WebP of at most 512x512 without EXIF or other
metadata, under a key the server chose.
"""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Mapping
from typing import IO, Any

from PIL import Image, ImageOps, UnidentifiedImageError

from app.db import db
from app.errors import ContentTooLarge, InvalidInput, UnsupportedImage
from app.log import audit
from app.models import User, UserProfile
from app.storage import avatar_storage

log = logging.getLogger(__name__)

AVATAR_MAX_BYTES = 5 * 1024 * 1024
# Far below Pillow's own bomb limit (~179 megapixels): a 40-megapixel RGBA frame is 160 MB.
AVATAR_MAX_PIXELS = 40_000_000
AVATAR_MAX_SIDE = 512
AVATAR_FORMATS = ("PNG", "JPEG", "WEBP")
EDITABLE_FIELDS = frozenset({"first_name", "last_name", "gender", "date_of_birth", "info"})


def _profile_of(user: User) -> UserProfile:
    if user.profile is None:
        user.profile = UserProfile()
    return user.profile


def update_profile(user: User, changes: Mapping[str, Any]) -> UserProfile:
    """Apply the given fields; the schema has already refused anything else."""
    unknown = set(changes) - EDITABLE_FIELDS
    if unknown:  # a second line of defence against mass assignment
        raise InvalidInput(
            "These fields cannot be changed here.",
            errors={name: ["Unknown field."] for name in sorted(unknown)},
        )
    profile = _profile_of(user)
    for name, value in changes.items():
        setattr(profile, name, value)
    db.session.commit()
    audit("profile_updated", user_id=user.id, fields=sorted(changes))
    return profile


def reencode_avatar(data: bytes) -> bytes:
    """Our own WebP of an uploaded PNG, JPEG or WebP; anything else is refused."""
    try:
        # `formats` keeps Pillow from trying its other decoders (TIFF, PSD, EPS, ...).
        image = Image.open(io.BytesIO(data), formats=AVATAR_FORMATS)
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise UnsupportedImage(
            "The avatar must be a PNG, JPEG or WebP image.",
            errors={"avatar": ["Not a PNG, JPEG or WebP image."]},
        ) from exc
    width, height = image.size
    # Checked from the header, before a single pixel is decoded.
    if width * height > AVATAR_MAX_PIXELS:
        raise InvalidInput(
            "The image has too many pixels.",
            errors={"avatar": [f"At most {AVATAR_MAX_PIXELS // 1_000_000} megapixels."]},
        )
    try:
        # JPEG can decode straight at a reduced scale; other formats ignore the hint.
        image.draft(None, (AVATAR_MAX_SIDE, AVATAR_MAX_SIDE))
        image.load()
        # Orientation lives in EXIF, which we drop: turn the pixels first.
        upright = ImageOps.exif_transpose(image)
        has_alpha = upright.mode in ("RGBA", "LA", "PA") or (
            upright.mode == "P" and "transparency" in upright.info
        )
        pixels = upright.convert("RGBA" if has_alpha else "RGB")
        pixels.thumbnail((AVATAR_MAX_SIDE, AVATAR_MAX_SIDE), Image.Resampling.LANCZOS)
        # A fresh image carries no metadata (EXIF, XMP, ICC, comments) from the upload.
        clean = Image.new(pixels.mode, pixels.size)
        clean.paste(pixels)
        out = io.BytesIO()
        clean.save(out, "WEBP", quality=85, method=4)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInput(
            "The image could not be decoded.",
            errors={"avatar": ["The image is damaged or truncated."]},
        ) from exc
    return out.getvalue()


def avatar_too_large() -> ContentTooLarge:
    """The answer to an avatar over the limit, whether the file or the whole body is."""
    return ContentTooLarge(
        "The avatar is too large.",
        errors={"avatar": [f"At most {AVATAR_MAX_BYTES // (1024 * 1024)} MiB."]},
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
    profile = _profile_of(user)
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
