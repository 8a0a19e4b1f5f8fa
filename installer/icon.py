"""llama-desk's icon, drawn here with the standard library: a PNG for Linux menus, an ICO for Windows.

No image file is committed and no image library is needed: the installer draws it where it runs.

    python installer/icon.py llama-desk.png llama-desk.ico
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

BLUE = (59, 111, 216)     # the app's accent colour (its "New chat" button)
WHITE = (255, 255, 255)
SIZES = (16, 24, 32, 48, 64, 256)  # what Windows picks from for menus, the desktop and Explorer


def _rounded_rect(x: float, y: float, box: tuple[float, float, float, float], radius: float) -> bool:
    left, top, right, bottom = box
    cx = min(max(x, left + radius), right - radius)
    cy = min(max(y, top + radius), bottom - radius)
    return (x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2 and left <= x <= right and top <= y <= bottom


def _shade(x: float, y: float) -> tuple[tuple[int, int, int], float]:
    """Colour and opacity at (x, y) in a 1 x 1 square: a blue tile, a white speech bubble, three dots."""
    if not _rounded_rect(x, y, (0.02, 0.02, 0.98, 0.98), 0.2):
        return BLUE, 0.0
    in_bubble = _rounded_rect(x, y, (0.16, 0.22, 0.84, 0.68), 0.14)
    in_tail = 0.28 <= x <= 0.46 and 0.6 <= y <= 0.82 and (x - 0.28) <= (0.82 - y) * 0.9
    if in_bubble or in_tail:
        for dot_x in (0.33, 0.5, 0.67):
            if (x - dot_x) ** 2 + (y - 0.45) ** 2 <= 0.055 ** 2:
                return BLUE, 1.0
        return WHITE, 1.0
    return BLUE, 1.0


def render(size: int, samples: int = 3) -> bytes:
    """RGBA pixels, row by row, each pixel the average of samples x samples points (smooth edges)."""
    out = bytearray()
    n = samples * samples
    for row in range(size):
        for col in range(size):
            r = g = b = a = 0.0
            for i in range(samples):
                for j in range(samples):
                    colour, alpha = _shade((col + (j + 0.5) / samples) / size, (row + (i + 0.5) / samples) / size)
                    r += colour[0] * alpha
                    g += colour[1] * alpha
                    b += colour[2] * alpha
                    a += alpha
            if a:
                out += bytes((round(r / a), round(g / a), round(b / a), round(255 * a / n)))
            else:
                out += b"\0\0\0\0"
    return bytes(out)


def png(size: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pixels = render(size)
    stride = size * 4
    raw = b"".join(b"\0" + pixels[row * stride:(row + 1) * stride] for row in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def ico(sizes: tuple[int, ...] = SIZES) -> bytes:
    """A Windows icon whose images are PNGs (read by Windows since Vista)."""
    images = [png(size) for size in sizes]
    out = struct.pack("<HHH", 0, 1, len(images))
    offset = 6 + 16 * len(images)
    for size, data in zip(sizes, images):
        out += struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(data), offset)
        offset += len(data)
    return out + b"".join(images)


def write_icons(png_path: Path | None = None, ico_path: Path | None = None) -> None:
    if png_path:
        Path(png_path).write_bytes(png(256))
    if ico_path:
        Path(ico_path).write_bytes(ico())


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python installer/icon.py OUT.png OUT.ico")
    write_icons(Path(sys.argv[1]), Path(sys.argv[2]))
