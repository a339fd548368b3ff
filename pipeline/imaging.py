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

GRAYSCALE_MODES = ("L", "LA", "1", "I", "I;16", "I;16L", "I;16B", "F")


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
    if mode.startswith("I") or mode == "F":
        image = _to_8_bits(image)
    if image.mode != "RGB":
        image = image.convert("RGB")  # grayscale, CMYK and palette images all become RGB
    return image, mode


def _to_8_bits(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float grayscale image scaled to 0..255 ("L"). PIL's own
    conversion clips instead of scaling: a 16-bit PNG would come out all white. 16-bit modes map
    0..65535 (x / 257, so 65535 is 255); "I" is read as 8-bit when it fits, as 16-bit when that
    fits, else by its maximum; "F" as 0..1 when it fits, else as 0..255."""
    values = np.asarray(image, dtype=np.float64)
    top = float(values.max()) if values.size else 0.0
    if image.mode.startswith("I;16") or (image.mode == "I" and 255 < top <= 65535):
        values = values / 257.0
    elif image.mode == "I" and top > 65535:
        values = values * (255.0 / top)
    elif image.mode == "F" and top <= 1.0:
        values = values * 255.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


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
