"""Small image previews for the Dagster UI's Markdown metadata.

kie.ai result URLs expire after a day and S3 objects are usually private, so previews are tiny
JPEG thumbnails inlined as ``data:`` URIs (the UI's Markdown renders them), each a few KB because
metadata lives in the event log.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import IO

from PIL import Image

__all__ = ["preview_markdown", "thumbnail_data_uri"]


def thumbnail_data_uri(stream: IO[bytes], *, max_side: int = 128, quality: int = 70) -> str:
    """A ``data:image/jpeg;base64,...`` thumbnail of an image, at most ``max_side`` pixels."""
    with Image.open(stream) as image:
        image.thumbnail((max_side, max_side))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def preview_markdown(items: Sequence[tuple[str, str, str]], *, total: int) -> str:
    """Markdown showing thumbnails: ``items`` are (caption, data URI, link) triples.

    Args:
        items: What to show, in order.
        total: How many images the batch holds (to say how many are not shown).
    """
    if not items:
        return "_No images stored in this run._"
    cells = [f"[![{caption}]({uri})]({link})" for caption, uri, link in items]
    lines = [" ".join(cells), ""]
    lines.append(" · ".join(f"`{caption}`" for caption, _, _ in items))
    if total > len(items):
        lines += ["", f"_{total - len(items)} more images are not shown here._"]
    return "\n".join(lines)
