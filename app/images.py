"""Turn untrusted upload bytes into an RGB PIL image, or a clear client error."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

# Integer and float modes (16-bit PNG, 32-bit TIFF) are rescaled by hand: Pillow's own
# conversion to RGB clips them, which would turn most 16-bit photos white.
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
# A JPEG is decoded at a reduced scale (1/2, 1/4 or 1/8, done by libjpeg's DCT) only while
# its short side stays at least this many times the model's input side: the final resize
# then still averages several decoded pixels into each input pixel (see app/README.md).
DRAFT_MARGIN = 2


class BadImage(ValueError):
    """The upload cannot be used; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _wide_to_rgb(image: Image.Image) -> Image.Image:
    """Scale a 16/32-bit grey image to 8 bits per channel and make it RGB."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode != "F" or values.max(initial=0.0) > 1.0:
        values = values / 257.0  # 0..65535 -> 0..255; floats above 1 are taken as 0..255
    else:
        values = values * 255.0  # floats in 0..1
    grey = np.clip(np.nan_to_num(values), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def decode_image(data: bytes, max_pixels: int, min_side: int | None = None) -> Image.Image:
    """Decode image bytes into RGB, checking the pixel count before decoding.

    With min_side, a JPEG may be decoded at a reduced scale that keeps both sides at least
    DRAFT_MARGIN * min_side (Pillow's draft mode): far less work for a large photo.
    """
    if not data:
        raise BadImage("the uploaded file is empty")
    with warnings.catch_warnings():
        # Pillow warns about damaged files (and images over its own pixel limit) on stderr;
        # here every such problem either decodes anyway or becomes a 4xx answer instead.
        warnings.simplefilter("ignore")
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            # Pillow's own guard, at twice its default limit, fires before ours can.
            raise BadImage(f"the image has too many pixels; the limit is {max_pixels}",
                           status=413) from None
        except Exception:  # any failure to parse untrusted bytes is the client's
            raise BadImage("the uploaded file is not an image this app can read") from None
        width, height = image.size
        if width * height > max_pixels:
            raise BadImage(
                f"the image has too many pixels: {width}x{height} = {width * height}; "
                f"the limit is {max_pixels}",
                status=413,
            )
        if width == 0 or height == 0:
            raise BadImage("the image has no pixels")
        try:
            if min_side and image.format == "JPEG":
                side = DRAFT_MARGIN * min_side
                image.draft("RGB", (side, side))
            image.load()
            if image.mode in WIDE_MODES:
                return _wide_to_rgb(image)
            return image.convert("RGB")
        except Exception:  # truncated or corrupt data surfaces only here
            raise BadImage("the image is truncated, corrupt or in an unsupported format") from None
