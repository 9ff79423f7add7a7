"""Peak memory of one hostile avatar upload: `.venv/bin/python bench/upload_rss.py`.

Memory, not bytes, is what an avatar upload can exhaust: a 155 KB PNG can declare 6324x6324
RGBA pixels, 160 MB once decoded, and made a worker grow by 600 MB. This measures what one
request can cost now.

1. Writes the hostile files to a temporary folder: the reported bomb (6324x6324 RGBA PNG,
   written row by row, so making it costs no memory either); the largest PNG and WebP the
   service decodes (AVATAR_MAX_DECODED_PIXELS) in the modes that cost most; the largest
   JPEGs it accepts, baseline (AVATAR_MAX_PIXELS, decoded at a reduced scale) and
   progressive (AVATAR_MAX_PROGRESSIVE_PIXELS, whose every coefficient is kept: 4:2:0, 4:4:4
   and CMYK); and a long thin JPEG that cannot be decoded reduced, at the decoded limit.
2. For each file, starts a fresh Python process that builds the app (`create_app` with a
   SQLite file and the local avatar folder in a temporary folder), creates an active user,
   logs in through the API and uploads a small PNG (so Pillow and its codecs are loaded and
   warm), then resets its peak RSS (`/proc/self/clear_refs`), uploads the file through the
   Flask test client and reports the HTTP status and how far its peak RSS (VmHWM) rose above
   the RSS before the upload.
3. Prints a table and the worst growth against the target: at most 64 MB per request.

Linux only (it reads /proc). Exit status 0 on PASS, 1 on MISS.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.account.avatars import (  # noqa: E402
    AVATAR_MAX_DECODED_PIXELS,
    AVATAR_MAX_PIXELS,
    AVATAR_MAX_PROGRESSIVE_PIXELS,
)

TARGET_MB = 64
MB = 1024 * 1024


def png_of_zeros(width: int, height: int) -> bytes:
    """An RGBA PNG of transparent black, compressed row by row: tiny, whatever its size."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + 4 * width)  # filter byte, then the pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def pillow_file(fmt: str, size: tuple[int, int], mode: str, **options: object) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    bands = Image.getmodebands(mode)
    color = (200, 30, 90, 255)[:bands] if bands > 1 else 200
    Image.new(mode, size, color).save(out, fmt, **options)
    return out.getvalue()


def landscape(pixels: int) -> tuple[int, int]:
    """A 3:2 size of at most this many pixels, as a camera takes them."""
    return math.isqrt(pixels * 3 // 2), math.isqrt(pixels * 2 // 3)


def hostile_files() -> dict[str, bytes]:
    side = math.isqrt(AVATAR_MAX_DECODED_PIXELS)
    jpeg, prog = landscape(AVATAR_MAX_PIXELS), landscape(AVATAR_MAX_PROGRESSIVE_PIXELS)
    thin = (AVATAR_MAX_DECODED_PIXELS // 512, 512)  # 1/2 would be under 512 high: no draft
    square = f"{side}x{side}"
    return {
        "reported bomb: PNG 6324x6324 RGBA": png_of_zeros(6324, 6324),
        f"PNG {square} RGBA": png_of_zeros(side, side),
        f"PNG {square} palette": pillow_file("PNG", (side, side), "P"),
        f"PNG {square} 16-bit grey": pillow_file("PNG", (side, side), "I;16"),
        f"WebP {square} RGBA lossless": pillow_file("WEBP", (side, side), "RGBA", lossless=True),
        f"WebP {square} RGB lossy": pillow_file("WEBP", (side, side), "RGB"),
        f"JPEG {jpeg[0]}x{jpeg[1]} baseline": pillow_file("JPEG", jpeg, "RGB"),
        f"JPEG {jpeg[0]}x{jpeg[1]} baseline CMYK": pillow_file("JPEG", jpeg, "CMYK"),
        f"JPEG {thin[0]}x{thin[1]} baseline, decoded whole": pillow_file("JPEG", thin, "RGB"),
        f"JPEG {prog[0]}x{prog[1]} progressive": pillow_file("JPEG", prog, "RGB", progressive=True),
        f"JPEG {prog[0]}x{prog[1]} progressive 4:4:4": pillow_file(
            "JPEG", prog, "RGB", progressive=True, subsampling=0
        ),
        f"JPEG {prog[0]}x{prog[1]} progressive CMYK": pillow_file(
            "JPEG", prog, "CMYK", progressive=True
        ),
        f"JPEG {thin[0]}x{thin[1]} progressive CMYK, decoded whole": pillow_file(
            "JPEG", thin, "CMYK", progressive=True
        ),
    }


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} is not in /proc/self/status")


def upload_in_this_process(path: Path) -> dict[str, int]:
    """Step 2, in the child process: the app, a user, a warm-up upload, the measured upload."""
    from flask_migrate import upgrade

    from app import create_app
    from app.core.db import db
    from app.identity.models import GroupName, User, UserProfile
    from app.identity.users import get_group, seed_groups
    from app.passwords.hashing import hash_password

    password = "orbit lantern quietly seventeen"
    folder = Path(tempfile.mkdtemp(prefix="upload-rss-"))
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'accounts.sqlite3'}",
            "SECRET_KEY": "bench-only-secret-key-" + "s" * 16,
            "JWT_SECRET_KEY": "bench-only-jwt-secret-key-" + "j" * 16,
            "REDIS_URL": None,
            "RATELIMIT_ENABLED": False,
            "MAIL_OUTBOX_DIR": str(folder / "outbox"),
            "UPLOAD_DIR": str(folder / "uploads"),
            "S3_ENDPOINT_URL": None,
            "S3_BUCKET": None,
        }
    )
    with app.app_context():
        upgrade()
        seed_groups()
        user = User(
            email="rss@example.com",
            password_hash=hash_password(password),
            is_active=True,
            group=get_group(GroupName.USER),
        )
        user.profile = UserProfile()
        db.session.add(user)
        db.session.commit()
    client = app.test_client()
    login = client.post("/auth/login", json={"email": "rss@example.com", "password": password})
    headers = {"Authorization": f"Bearer {login.json['access_token']}"}  # type: ignore[index]

    def put(data: bytes) -> int:
        files = {"avatar": (io.BytesIO(data), "avatar")}
        return client.put("/auth/me/avatar", data=files, headers=headers).status_code

    if put(pillow_file("PNG", (600, 400), "RGBA")) != 200:
        raise RuntimeError("the warm-up upload was refused")
    data = path.read_bytes()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = status_kb("VmRSS")
    status = put(data)
    return {"status": status, "growth_kb": status_kb("VmHWM") - before}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(upload_in_this_process(args.child)))
        return 0

    rows = []
    with tempfile.TemporaryDirectory(prefix="upload-rss-files-") as folder:
        for name, data in hostile_files().items():
            path = Path(folder) / "upload"
            path.write_bytes(data)
            child = subprocess.run(
                [sys.executable, __file__, "--child", str(path)],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
                # Every large buffer mmapped afresh (glibc would otherwise raise its threshold
                # and reuse heap freed by argon2): the growth is the upload's own memory.
                env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"},
            )
            result = json.loads(child.stdout.strip().splitlines()[-1])
            rows.append((name, len(data), result["status"], result["growth_kb"] * 1024))
    print("| upload | bytes | status | peak RSS growth |\n|---|---:|---:|---:|")
    for name, size, status, growth in rows:
        print(f"| {name} | {size:,} | {status} | {growth / MB:.1f} MB |")
    worst = max(growth for *_, growth in rows)
    verdict = "PASS" if worst <= TARGET_MB * MB else "MISS"
    print(
        f"worst peak RSS growth of one upload: {worst / MB:.1f} MB "
        f"(target <= {TARGET_MB} MB) {verdict}"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
