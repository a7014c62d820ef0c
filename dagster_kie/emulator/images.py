"""Cheap, deterministic PNG images for results, and image-type sniffing for uploads.

Images are palette PNGs (a vertical gradient, a few flat rectangles and the first words of the
prompt) encoded with a low compression level: a 1024×1024 image takes a few milliseconds.
Pillow is imported lazily so that importing this module (for :data:`IMAGE_SIZE_DIMENSIONS`) stays
cheap.
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
from collections import OrderedDict
from typing import Any

__all__ = [
    "ASPECT_RATIO_DIMENSIONS",
    "IMAGE_SIZE_DIMENSIONS",
    "ImageCache",
    "caption",
    "render_png",
    "sniff_image_mime",
]

IMAGE_SIZE_DIMENSIONS: dict[str, tuple[int, int]] = {
    "square": (512, 512),
    "square_hd": (1024, 1024),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
"""``image_size`` value → (width, height) of the images the emulator makes."""

ASPECT_RATIO_DIMENSIONS: dict[str, tuple[int, int]] = {
    "ASPECT_10_16": (800, 1280),
    "ASPECT_16_10": (1280, 800),
    "ASPECT_9_16": (736, 1312),
    "ASPECT_16_9": (1312, 736),
    "ASPECT_3_2": (1248, 832),
    "ASPECT_2_3": (832, 1248),
    "ASPECT_4_3": (1152, 864),
    "ASPECT_3_4": (864, 1152),
    "ASPECT_1_1": (1024, 1024),
    "ASPECT_1_3": (576, 1728),
    "ASPECT_3_1": (1728, 576),
}
"""Remix ``aspect_ratio`` → (width, height) (Ideogram's defaults; *assumed*)."""

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)


def sniff_image_mime(data: bytes) -> str | None:
    """``image/jpeg``, ``image/png`` or ``image/webp`` from the magic bytes, else ``None``."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


_GRADIENT_STEPS = 192
_FONT: Any = None
_FONT_LOCK = threading.Lock()


def _font(size: int) -> Any:
    global _FONT
    from PIL import ImageFont

    with _FONT_LOCK:
        if _FONT is None or _FONT.size != size:
            try:
                _FONT = ImageFont.load_default(size=size)
            except Exception:  # pragma: no cover - Pillow without FreeType
                _FONT = ImageFont.load_default()
        return _FONT


def caption(text: str, words: int = 6) -> str:
    """The first words of a prompt, as drawn on the image (ASCII only)."""
    head = " ".join(text.split()[:words])
    ascii_only = head.encode("ascii", "replace").decode("ascii")
    return ascii_only[:48]


def render_png(
    width: int,
    height: int,
    *,
    seed: float | str,
    model: str,
    index: int,
    text: str = "",
) -> bytes:
    """Render one result image; the same arguments always give the same bytes."""
    from PIL import Image, ImageDraw

    digest = hashlib.sha256(f"{seed}|{model}|{width}x{height}|{index}".encode()).digest()
    rng = random.Random(digest)
    top = [rng.randrange(256) for _ in range(3)]
    bottom = [rng.randrange(256) for _ in range(3)]
    palette: list[int] = []
    last = _GRADIENT_STEPS - 1
    for i in range(_GRADIENT_STEPS):
        t = i / last
        palette += [round(top[c] * (1 - t) + bottom[c] * t) for c in range(3)]
    n_rects = 3 + rng.randrange(4)
    for _ in range(n_rects):
        palette += [rng.randrange(256) for _ in range(3)]
    palette += [0, 0, 0] * (255 - len(palette) // 3)
    palette += [255, 255, 255]  # index 255: text

    column = bytes(i * last // max(1, height - 1) for i in range(height))
    strip = Image.frombytes("L", (1, height), column)
    pixels = strip.resize((width, height), Image.Resampling.NEAREST).tobytes()
    img = Image.frombytes("P", (width, height), pixels)
    img.putpalette(palette)
    draw = ImageDraw.Draw(img)
    for r in range(n_rects):
        w = rng.randrange(width // 8, width // 2)
        h = rng.randrange(height // 8, height // 2)
        x = rng.randrange(0, width - w)
        y = rng.randrange(0, height - h)
        draw.rectangle((x, y, x + w, y + h), fill=_GRADIENT_STEPS + r)
    label = caption(text)
    if label:
        size = max(12, min(width, height) // 24)
        draw.text((size, height - 2 * size), label, fill=255, font=_font(size))
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


class ImageCache:
    """A thread-safe LRU cache of rendered images, bounded by total bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[object, ...]) -> bytes | None:
        """The cached bytes for ``key`` (marking them recently used), or ``None``."""
        with self._lock:
            data = self._items.get(key)
            if data is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return data

    def put(self, key: tuple[object, ...], data: bytes) -> None:
        """Store ``data``, evicting the least recently used entries beyond the byte budget."""
        if len(data) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._items[key] = data
            self._size += len(data)
            while self._size > self.max_bytes and self._items:
                _, evicted = self._items.popitem(last=False)
                self._size -= len(evicted)

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._items.clear()
            self._size = 0

    @property
    def size(self) -> int:
        """Bytes currently held."""
        return self._size
