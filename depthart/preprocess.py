"""Image preprocessing: the one definition that export and the runtime mirror.

numpy + Pillow only (no torch), so the runtime can import it.

1. Load: a path, a PIL image or an array (HxW, HxWx1, HxWx3, HxWx4; uint8, uint16 or float in
   [0, 1]). EXIF orientation is applied to files and PIL images.
2. To 8-bit RGB: 16-bit values are scaled by 255/65535; greyscale is repeated to 3 channels;
   alpha is dropped (no compositing); palette and CMYK images are converted by Pillow.
3. Resize to the model's square resolution (`cfg.image_size`, 256 for VAR sizes) with Pillow's
   BICUBIC filter, aspect ratio NOT preserved (as the DepthART release).
4. float32 (3, S, S) in [-1, 1]: x / 127.5 - 1.

Image files are bounded (issue 16): a file above `MAX_PIXELS` (150 MP) is refused before decoding
(`max_pixels` raises the limit), and a file above `WORK_PIXELS` (25 MP) is decoded at 1/2, 1/4 or 1/8
of its size, the first that fits: JPEG in the decoder (Pillow's `draft`, DCT scaling; a 12000x9000
JPEG never exists in memory at full size), other formats decoded and then `reduce`d. Its depth map
comes back at that reduced size (3000x2250 for 12000x9000: the model sees 64-256 px anyway).
Arrays and PIL images are taken as given.

The depth map comes back at model resolution and is resized to the input's size with
`resize_depth` (Pillow BICUBIC on float32, clipped to [0, 1]); the PyTorch model and the runtime
both call it, so their outputs agree at every size.
"""

from __future__ import annotations

import logging
import math
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 150_000_000  # image files above this are refused (a 100 MP photo passes); max_pixels= raises it
WORK_PIXELS = 25_000_000  # image files above this are decoded at 1/2, 1/4 or 1/8 size (JPEG: in the decoder)


class ImageError(ValueError):
    """An input that is not a usable image; the message names it and says what was wrong."""


def _array_to_rgb8(a: np.ndarray) -> np.ndarray:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError(f"expected an HxW, HxWx3 or HxWx4 image array, got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ImageError(f"empty image array of shape {a.shape}")
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.uint16:
        a = (a.astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageError("image array contains NaN or inf")
        a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    else:
        raise ImageError(f"unsupported image dtype {a.dtype}; use uint8, uint16 or float in [0, 1]")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.shape[2] == 4:
        _note_alpha()
    return np.ascontiguousarray(a[:, :, :3])


_log = logging.getLogger(__name__)
_alpha_noted = False


def _note_alpha() -> None:
    """Say once per process that an alpha channel is dropped (the model sees RGB only)."""
    global _alpha_noted
    if not _alpha_noted:
        _alpha_noted = True
        _log.warning("note: input with an alpha channel: alpha is ignored, depth comes from the RGB values "
                     "(transparent areas count with whatever colour they store)")


def _pil_to_rgb8(im: Image.Image) -> np.ndarray:
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        _note_alpha()
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        a = np.clip(a, 0, 65535) * (255.0 / 65535.0)
        return _array_to_rgb8((a + 0.5).astype(np.uint8))
    if im.mode == "F":
        return _array_to_rgb8(np.asarray(im, dtype=np.float32))
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def reduction(width: int, height: int, work_pixels: int = WORK_PIXELS) -> int:
    """1, 2, 4 or 8: the smallest factor that brings width x height to at most `work_pixels` (8 at most)."""
    for k in (1, 2, 4):
        if math.ceil(width / k) * math.ceil(height / k) <= work_pixels:
            return k
    return 8


def _open_bounded(im: Image.Image, path: str, max_pixels: int) -> Image.Image:
    """Refuse `im` above max_pixels; decode it at the reduced size `reduction` picks (module docstring)."""
    w, h = im.size
    if w * h > max_pixels:
        raise ImageError(f"{path}: {w}x{h} is {w * h:,} pixels, above the limit of {max_pixels:,} "
                         "(--max-pixels raises it)")
    k = reduction(w, h)
    if k > 1 and im.format == "JPEG":
        im.draft(im.mode if im.mode in ("RGB", "L") else None, (w // k, h // k))  # DCT scaling while decoding
    im.load()
    if k > 1 and im.size == (w, h):  # not a JPEG (or no draft): reduce after decoding
        im = im.reduce(k)
    return im


_ORIENTATION = 0x0112  # the EXIF orientation tag (1: as stored)


def load_image(image, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Anything accepted (module docstring) -> an 8-bit RGB PIL image. Raises ImageError.

    max_pixels: image files above this many pixels are refused before they are decoded.
    """
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.exists(path):
            raise ImageError(f"{path}: no such file")
        if os.path.isdir(path):
            raise ImageError(f"{path}: is a directory, not an image")
        if os.path.getsize(path) == 0:
            raise ImageError(f"{path}: empty file")
        try:
            with warnings.catch_warnings():  # our own pixel limit replaces Pillow's DecompressionBombWarning
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    return Image.fromarray(_pil_to_rgb8(_open_bounded(im, path, max_pixels)))
        except ImageError:
            raise
        except UnidentifiedImageError:
            raise ImageError(f"{path}: not an image Pillow can read") from None
        except Image.DecompressionBombError as e:
            raise ImageError(f"{path}: {e} (Pillow's own limit, PIL.Image.MAX_IMAGE_PIXELS)") from None
        except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data
            raise ImageError(f"{path}: unreadable image ({e})") from None
    if isinstance(image, Image.Image):
        if image.mode == "RGB" and image.getexif().get(_ORIENTATION, 1) == 1:
            return image  # already what the model takes (read only from here on): no copies
        return Image.fromarray(_pil_to_rgb8(image))
    if isinstance(image, np.ndarray):
        return Image.fromarray(_array_to_rgb8(image))
    raise ImageError(f"unsupported input type {type(image).__name__}; pass a path, a PIL image or a numpy array")


def to_model_input(img: Image.Image, size: int) -> np.ndarray:
    """8-bit RGB PIL image -> float32 (3, size, size) in [-1, 1] (steps 3 and 4 of the module docstring)."""
    if img.mode != "RGB":
        raise ImageError(f"expected an RGB image, got mode {img.mode}; call load_image first")
    a = np.asarray(img.resize((size, size), Image.BICUBIC), dtype=np.float32)
    return np.ascontiguousarray((a / 127.5 - 1.0).transpose(2, 0, 1))


def resize_depth(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """Model-resolution depth (h, w) in [0, 1] -> (height, width) float32, Pillow BICUBIC, clipped to [0, 1]."""
    d = np.ascontiguousarray(depth, dtype=np.float32)
    if d.shape != (height, width):
        d = np.asarray(Image.fromarray(d, mode="F").resize((width, height), Image.BICUBIC), dtype=np.float32)
    return np.clip(d, 0.0, 1.0)
