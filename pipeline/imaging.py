"""Decode and resize source JPEGs with PIL: the converter's per-image work, free of TensorFlow.

Kept apart so the converter's worker processes start in a fraction of a second instead of
importing TensorFlow each.
"""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image, UnidentifiedImageError

from common.errors import UserError

GRAYSCALE_MODES = ("L", "LA", "1", "I", "I;16", "F")


def open_rgb(data: bytes, where: str) -> tuple[Image.Image, str]:
    """The image as RGB and its source mode ("L" for grayscale); UserError if unreadable."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError:
        raise UserError(f"{where}: unreadable or corrupt image (not a format PIL recognises)") from None
    except (OSError, SyntaxError, ValueError) as error:
        # PIL's messages may quote the in-memory file object ("<_io.BytesIO object at 0x...>")
        reason = re.sub(r"\s*<[^>]*object at 0x[0-9a-f]+>", "", str(error)).strip() or type(error).__name__
        raise UserError(f"{where}: unreadable or corrupt image ({reason})") from None
    mode = image.mode
    if mode != "RGB":
        image = image.convert("RGB")  # grayscale, CMYK and palette images all become RGB
    return image, mode


def resize(image: Image.Image, resolution: int) -> Image.Image:
    """Square `resolution` px with PIL's antialiasing (Lanczos) filter; a no-op at the source size."""
    if image.size == (resolution, resolution):
        return image
    return image.resize((resolution, resolution), Image.LANCZOS)


def encode(image: Image.Image, encoding: str) -> bytes:
    if encoding == "raw":
        return np.asarray(image, dtype=np.uint8).tobytes()
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()
