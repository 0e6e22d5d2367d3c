"""Thumbnails of uploaded images, made with Pillow.

Only sizes listed in the field's `thumbs` are made (`WxH` crops to exactly that size from
the centre, `WxHf` fits within it keeping the proportions, never enlarging), so nobody can
make the server render arbitrary sizes. Decompression bombs are refused before any pixel
is decoded: the header gives the dimensions and an image over `max_pixels` (the setting
`storage.thumb_max_pixels`) is refused; Pillow's own `Image.MAX_IMAGE_PIXELS` check stays
on as a second guard. Only PNG, JPEG, GIF and WebP are opened (no exotic decoders).
`make_thumbnail` is CPU work: callers run it off the event loop. Pillow is imported by the
first thumbnail made, not with the server (a server that makes none never loads it).
"""

from __future__ import annotations

import io
import warnings

from alyx_server.errors import ValidationError
from alyx_server.schema.file_options import THUMB_PATTERN

__all__ = ["THUMB_SOURCE_TYPES", "ThumbSpec", "make_thumbnail", "parse_thumb", "thumb_type"]

THUMB_SOURCE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}
_OUTPUT = {"PNG": ("PNG", "image/png"), "GIF": ("PNG", "image/png"),
           "JPEG": ("JPEG", "image/jpeg"), "WEBP": ("WEBP", "image/webp")}  # fmt: skip


class ThumbSpec:
    """A parsed `WxH` / `WxHf` size."""

    __slots__ = ("fit", "height", "text", "width")

    def __init__(self, text: str, width: int, height: int, fit: bool) -> None:
        self.text, self.width, self.height, self.fit = text, width, height, fit


def parse_thumb(text: str, allowed: tuple[str, ...]) -> ThumbSpec:
    """The size `text` if the field lists it; else a 400 that lists the allowed sizes."""
    match = THUMB_PATTERN.match(text)
    if match is None or text not in allowed:
        listed = ", ".join(allowed) if allowed else "none (the field lists no thumbs)"
        raise ValidationError(
            f"thumbnail size {text!r} is not allowed for this field; allowed: {listed}",
            code="INVALID_THUMB",
        )
    return ThumbSpec(text, int(match.group(1)), int(match.group(2)), match.group(3) == "f")


def make_thumbnail(data: bytes, mime: str, spec: ThumbSpec, max_pixels: int) -> tuple[bytes, str]:
    """The thumbnail of the image `data` and its content type; 400 for a bomb or a bad image."""
    fmt = THUMB_SOURCE_TYPES.get(mime)
    if fmt is None:
        raise ValidationError(f"no thumbnails of {mime} files", code="INVALID_THUMB")
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = image.size
            if width * height > max_pixels:
                raise ValidationError(
                    f"the image is {width}x{height} pixels, over storage.thumb_max_pixels "
                    f"({max_pixels}); no thumbnail is made of it",
                    code="IMAGE_TOO_LARGE",
                )
            image.seek(0)
            image = ImageOps.exif_transpose(image)
            if spec.fit:
                image.thumbnail((spec.width, spec.height), Image.Resampling.LANCZOS)
            else:
                image = ImageOps.fit(image, (spec.width, spec.height), Image.Resampling.LANCZOS)
            out_format, out_mime = _OUTPUT[fmt]
            if out_format == "JPEG" and image.mode not in ("RGB", "L"):
                image = image.convert("RGB")
            buffer = io.BytesIO()
            image.save(buffer, out_format)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValidationError(
            f"the image is too large to make a thumbnail of: {e}", code="IMAGE_TOO_LARGE"
        ) from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ValidationError(f"the file is not a readable image: {e}", code="INVALID_THUMB") from e
    return buffer.getvalue(), out_mime


def thumb_type(mime: str) -> str:
    """The content type of the thumbnails of a `mime` image."""
    return _OUTPUT[THUMB_SOURCE_TYPES[mime]][1]
