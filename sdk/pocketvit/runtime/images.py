"""Images in: reading image files and checking the arrays callers pass, so that a bad input is one clear
`InputError` naming the thing and the fix, never a decoder's traceback (torch-free, numpy only).

Files are decoded with Pillow when it is installed (it says when a file is truncated, where OpenCV's
decoders fill the missing rows with grey and only print a warning), else with OpenCV:

- the EXIF orientation is applied (as OpenCV's ``imread`` does);
- 16-bit images keep their high byte (``>> 8``), as Pillow reads 16-bit RGB;
- CMYK, palette, alpha and 1-bit images are converted to RGB (alpha dropped), gray models get PIL's luma;
- an animated image (GIF, WebP, APNG) gives its first frame;
- an image of more than ``MAX_PIXELS`` pixels is refused before it is decoded.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

import numpy as np

from pocketvit.errors import InputError

MAX_PIXELS = 1 << 28  # 268 M pixels (16384 x 16384): beyond this, decoding alone needs gigabytes
READABLE = "PNG, JPEG, BMP, GIF, WebP or TIFF"

_PIL_IMAGE: Any = False  # False: not looked up yet; None: not available
_CV2: Any = False


def pil_image_module():
    global _PIL_IMAGE
    if _PIL_IMAGE is False:
        try:
            from PIL import Image

            _PIL_IMAGE = Image
        except ImportError:
            _PIL_IMAGE = None
    return _PIL_IMAGE


def cv2_module():
    global _CV2
    if _CV2 is False:
        try:
            import cv2

            _CV2 = cv2
        except ImportError:
            _CV2 = None
    return _CV2


# --------------------------------------------------------------------------- files


def read_image(path: str | os.PathLike, gray: bool = False) -> tuple[np.ndarray, str]:
    """Read an image file as uint8. Returns (array, color): (HxW, "GRAY") or (HxWx3, "RGB").

    Raises InputError for a path that is not a readable image (missing, a folder, empty, not an image,
    truncated, too large)."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise InputError(f"{p}: no such image file; check the path")
    if os.path.isdir(p):
        raise InputError(f"{p} is a folder, not an image file; pass the images in it (e.g. {p}/*.jpg)")
    if os.path.getsize(p) == 0:
        raise InputError(f"{p} is empty (0 bytes); copy or download the image again")
    Image = pil_image_module()
    if Image is not None:
        return _read_pil(p, gray, Image)
    cv2 = cv2_module()
    if cv2 is not None:
        arr = cv2.imread(p, cv2.IMREAD_COLOR)
        if arr is None:
            raise InputError(f"{p}: OpenCV cannot decode this file; pass a {READABLE} image")
        if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
            raise InputError(_too_large(p, arr.shape[1], arr.shape[0]))
        rgb = arr[:, :, ::-1]
        return (luma(rgb), "GRAY") if gray else (rgb.copy(), "RGB")
    raise ImportError(
        f"{p}: reading image files needs Pillow or OpenCV (pip install pillow, or pip install "
        "opencv-python-headless); or pass the decoded image as a numpy array"
    )


def _too_large(p: str, w: int | None = None, h: int | None = None, pixels: int | None = None) -> str:
    size = f" ({w} x {h} = {w * h / 1e6:.0f} M pixels)" if w and h else f" ({pixels / 1e6:.0f} M pixels)" if pixels else ""
    return (f"{p}: the image is too large to decode safely{size}, more than {MAX_PIXELS / 1e6:.0f} M pixels; "
            "resize it first (the model sees it at its own input size anyway)")


def _read_pil(p: str, gray: bool, Image) -> tuple[np.ndarray, str]:
    from PIL import ImageOps, UnidentifiedImageError

    with warnings.catch_warnings():  # Pillow's size and palette warnings: the checks below say what matters
        warnings.simplefilter("ignore")
        try:
            im = Image.open(p)
        except UnidentifiedImageError:
            raise InputError(f"{p}: not an image file (Pillow does not recognise its format); pass a {READABLE} "
                             "image") from None
        except Image.DecompressionBombError as e:  # Pillow refuses twice its own limit before we see the size
            size = re.search(r"\((\d+) pixels\)", str(e))
            raise InputError(_too_large(p, pixels=int(size.group(1)) if size else None)) from None
        except OSError as e:
            raise InputError(f"{p}: cannot be read ({_first_line(e)})") from None
        with im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise InputError(_too_large(p, w, h))
            if w == 0 or h == 0:
                raise InputError(f"{p}: the image has no pixels ({w} x {h})")
            try:
                im.load()  # the first frame of an animated image
                im = ImageOps.exif_transpose(im)
                return _pil_to_array(im, gray, p)
            except InputError:
                raise
            except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError) as e:
                raise InputError(f"{p}: the image data is truncated or damaged ({_first_line(e)}); copy or "
                                 "export the file again") from None


def _pil_to_array(im, gray: bool, p: str) -> tuple[np.ndarray, str]:
    mode = im.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit gray (PNG, TIFF): the high byte
        a = (np.asarray(im).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8)
        return (a.copy(), "GRAY") if gray else (np.repeat(a[:, :, None], 3, axis=2), "RGB")
    if mode == "F":
        raise InputError(f"{p}: a 32-bit float image has no fixed pixel range; save it as an 8-bit image")
    if gray and mode in ("L", "1"):
        return np.asarray(im.convert("L"), dtype=np.uint8).copy(), "GRAY"
    rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return (luma(rgb), "GRAY") if gray else (rgb.copy(), "RGB")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def luma(rgb: np.ndarray) -> np.ndarray:
    """PIL's integer luma of an ...x3 uint8 RGB array."""
    r = rgb[..., 0].astype(np.uint32)
    g = rgb[..., 1].astype(np.uint32)
    b = rgb[..., 2].astype(np.uint32)
    return ((r * 19595 + g * 38470 + b * 7471 + 32768) >> 16).astype(np.uint8)


# --------------------------------------------------------------------------- arrays


def check_image_array(a: np.ndarray) -> None:
    """An image array must be uint8, HxW or HxWxC (C in 1, 3, 4), with pixels."""
    if a.dtype != np.uint8:
        raise InputError(_dtype_message(a))
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        hint = " (a batch? pass one image, or a list of images to predict_batch)" if a.ndim == 4 else ""
        raise InputError(f"expected an HxW or HxWxC image with C in 1, 3 or 4, got shape {a.shape}{hint}")
    if a.size == 0:
        raise InputError(f"the image is empty (shape {a.shape}); pass an image with pixels")


def _dtype_message(a: np.ndarray) -> str:
    head = f"expected a uint8 image (HxWxC or HxW, as from OpenCV or PIL), got dtype {a.dtype}"
    if a.dtype.kind == "f":
        return (f"{head}; convert it with (x * 255).clip(0, 255).astype(np.uint8) if it is float in [0, 1]"
                + (" (it also holds NaN or infinite values)" if a.size and not np.isfinite(a).all() else ""))
    if a.dtype in (np.uint16, np.int32, np.uint32):
        return f"{head}; a 16-bit image becomes 8-bit with (x >> 8).astype(np.uint8)"
    if a.dtype == object:
        return f"{head}; pass a numpy array, a PIL image or a file path"
    return f"{head}; convert it with x.astype(np.uint8) if its values are 0..255"


def as_image_array(image: Any) -> np.ndarray:
    """A numpy view of what a caller passed as an image (None and other objects are refused clearly)."""
    if image is None:
        raise InputError("expected an image (HxWxC uint8 array, PIL image or file path), got None")
    try:
        a = np.asarray(image)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise InputError(f"expected an image (HxWxC uint8 array, PIL image or file path), got "
                         f"{type(image).__name__} ({_first_line(e)})") from None
    check_image_array(a)
    return a
