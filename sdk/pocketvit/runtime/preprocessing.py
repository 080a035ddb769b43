"""Image preprocessing from the manifest's ``input`` contract, with numpy only (torch-free).

Steps, in this order (the same as torchvision's ``Resize(resize) -> CenterCrop(crop) ->
ToTensor() -> Normalize(mean, std)`` on a PIL image):

1. colour: convert the caller's image (BGR by default, as OpenCV gives it; RGB; gray; 4-channel
   images lose alpha) to the model's ``color_order``. RGB->GRAY uses PIL's integer luma
   ``(19595 R + 38470 G + 7471 B + 32768) >> 16``.
2. resize: ``resize`` int -> shorter side to that size, longer side ``int(resize * long / short)``;
   ``[h, w]`` -> exactly that; null -> straight to (height, width) when the image differs from it.
   The filter is PIL's BILINEAR (a triangle filter widened by the downscale factor, i.e.
   antialiased), computed on uint8 with rounding. PIL is used when importable; otherwise a numpy
   implementation of the same filter that matches PIL to +-1 grey level. OpenCV's INTER_LINEAR is
   deliberately not used: it does not antialias when shrinking, so a device with OpenCV would feed
   the model different pixels from the ones it was trained and verified on.
3. center crop to (height, width), as torchvision (offset ``int(round((H - h) / 2))``, zero padding
   when the image is smaller).
4. ``form="float-nchw"``: ``pixel * scale``, then ``(x - mean) / std`` per channel, float32, laid
   out as the manifest's ``layout`` (NCHW by default).
   ``form="uint8-nhwc"``: stop after the crop; NHWC uint8 (the model normalizes inside).
   ``form="float-nhwc"``: the same pixels as float32 0..255 (a drop-in file with float input).

Image files are read by images.py (Pillow when installed, else OpenCV; for a gray model decoded as colour,
then PIL's luma, whichever reads them); a file or array that cannot be used is an InputError.

``fast_preprocessor``: the same output bits for a uint8 array that already has the input size
(the camera loop), by table lookup; ``Predictor.predict`` uses it when it applies.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pocketvit.errors import InputError

from .images import as_image_array, luma, pil_image_module, read_image

COLOR_INPUTS = ("BGR", "RGB", "GRAY")


# --------------------------------------------------------------------------- colour


def to_color(image: np.ndarray, input_color: str, color_order: str) -> np.ndarray:
    """Convert a uint8 image in ``input_color`` to HxWxC in ``color_order`` (GRAY gives HxWx1)."""
    input_color = input_color.upper()
    if input_color not in COLOR_INPUTS:
        raise InputError(f"input_color must be one of {', '.join(COLOR_INPUTS)}, got {input_color!r}")
    a = image
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        src = "GRAY"
    elif a.ndim == 3 and a.shape[2] in (3, 4):
        if input_color == "GRAY":
            raise InputError("input_color='GRAY' but the image has 3 or 4 channels; pass input_color='BGR' or 'RGB'")
        a = a[:, :, :3]
        src = input_color
    else:
        raise InputError(f"expected an HxW or HxWxC (C in 1, 3, 4) image, got shape {image.shape}")
    if color_order == "GRAY":
        if src == "GRAY":
            return a[:, :, None]
        rgb = a if src == "RGB" else a[:, :, ::-1]
        return luma(rgb)[:, :, None]
    if src == "GRAY":
        return np.repeat(a[:, :, None], 3, axis=2)
    if src == color_order:
        return a
    return a[:, :, ::-1]


# --------------------------------------------------------------------------- resize / crop


def resized_size(h: int, w: int, resize: Any, out_hw: tuple[int, int]) -> tuple[int, int]:
    """Target (height, width) of the resize step (torchvision's rule for an int)."""
    if resize is None:
        return out_hw
    if isinstance(resize, (list, tuple)):
        return int(resize[0]), int(resize[1])
    size = int(resize)
    if h <= w:
        return size, int(size * w / h)
    return int(size * h / w), size


def _coeffs(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """PIL's bilinear (triangle) resampling taps: indices [out, K] and weights [out, K]."""
    scale = in_size / out_size
    fs = max(scale, 1.0)
    support = fs  # triangle filter support 1, widened when shrinking
    centers = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    xmin = np.maximum(np.trunc(centers - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum(np.trunc(centers + support + 0.5).astype(np.int64), in_size)
    k = int((xmax - xmin).max())
    idx = xmin[:, None] + np.arange(k)[None, :]
    w = 1.0 - np.abs((idx - centers[:, None] + 0.5) / fs)
    w = np.where((idx < xmax[:, None]) & (w > 0), w, 0.0)
    w /= w.sum(axis=1, keepdims=True)
    return np.minimum(idx, in_size - 1), w


def _resample_axis(a: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    idx, w = _coeffs(a.shape[axis], out_size)
    acc = None
    for j in range(idx.shape[1]):
        taken = np.take(a, idx[:, j], axis=axis).astype(np.float32)
        shape = [1] * a.ndim
        shape[axis] = out_size
        term = taken * w[:, j].astype(np.float32).reshape(shape)
        acc = term if acc is None else acc + term
    return np.clip(np.floor(acc + 0.5), 0, 255).astype(np.uint8)


def resize_bilinear_numpy(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """PIL-compatible antialiased bilinear resize of an HxWxC uint8 image, numpy only."""
    a = img
    if a.shape[1] != out_w:
        a = _resample_axis(a, out_w, axis=1)
    if a.shape[0] != out_h:
        a = _resample_axis(a, out_h, axis=0)
    return a


def resize_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Antialiased bilinear resize (PIL BILINEAR) of an HxWxC uint8 image."""
    if img.shape[0] == out_h and img.shape[1] == out_w:
        return img
    Image = pil_image_module()
    if Image is None:
        return resize_bilinear_numpy(img, out_h, out_w)
    c = img.shape[2]
    if c == 1 or c == 3:
        im = Image.fromarray(np.ascontiguousarray(img[:, :, 0] if c == 1 else img))
        out = np.asarray(im.resize((out_w, out_h), Image.BILINEAR))
        return out[:, :, None] if c == 1 else out
    chans = [
        np.asarray(Image.fromarray(np.ascontiguousarray(img[:, :, i])).resize((out_w, out_h), Image.BILINEAR))
        for i in range(c)
    ]
    return np.stack(chans, axis=2)


def center_crop(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """torchvision CenterCrop on HxWxC: zero padding when smaller, offset int(round((H - h) / 2))."""
    h, w = img.shape[:2]
    if h < out_h or w < out_w:
        ph, pw = max(out_h - h, 0), max(out_w - w, 0)
        img = np.pad(img, ((ph // 2, (ph + 1) // 2), (pw // 2, (pw + 1) // 2), (0, 0)))
        h, w = img.shape[:2]
    top = int(round((h - out_h) / 2.0))
    left = int(round((w - out_w) / 2.0))
    return img[top : top + out_h, left : left + out_w]


# --------------------------------------------------------------------------- the contract


def _as_uint8_image(image: Any, input_color: str, color_order: str) -> tuple[np.ndarray, str]:
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, gray=(color_order == "GRAY"))
    if type(image).__module__.startswith("PIL."):
        im = image.convert("L" if color_order == "GRAY" else "RGB")
        a = np.asarray(im, dtype=np.uint8)
        if a.size == 0:
            raise InputError(f"the PIL image is empty ({image.size[0]} x {image.size[1]})")
        return a, ("GRAY" if color_order == "GRAY" else "RGB")
    return as_image_array(image), input_color


def prepare_image(image: Any, input_spec: dict, input_color: str = "BGR") -> np.ndarray:
    """Steps 1-3: colour, resize, center crop. Returns HxWxC uint8 in the model's colour order."""
    color_order = input_spec.get("color_order", "GRAY" if input_spec["channels"] == 1 else "RGB")
    a, color = _as_uint8_image(image, input_color, color_order)
    # BGR <-> RGB: resize and crop work per channel, so they run in the caller's order and the channels are
    # swapped on the (smaller) crop; the same pixels, without copying the full-size image first
    swap = (a.ndim == 3 and a.shape[2] in (3, 4) and color_order in ("RGB", "BGR")
            and str(color).upper() in ("RGB", "BGR") and str(color).upper() != color_order)
    a = a[:, :, :3] if swap else to_color(a, color, color_order)
    out_h, out_w = int(input_spec["height"]), int(input_spec["width"])
    rh, rw = resized_size(a.shape[0], a.shape[1], input_spec.get("resize"), (out_h, out_w))
    a = resize_bilinear(a, rh, rw)
    crop = input_spec.get("crop") or [out_h, out_w]
    if (a.shape[0], a.shape[1]) != (crop[0], crop[1]):
        a = center_crop(a, int(crop[0]), int(crop[1]))
    return np.ascontiguousarray(a[:, :, ::-1] if swap else a)


def preprocess_array(cropped: np.ndarray, input_spec: dict, form: str = "float-nchw") -> np.ndarray:
    """Step 4 on an HxWxC (or NxHxWxC) uint8 array already in the model's colour order and size.

    Returns a batch: float32 NCHW (or NHWC when the manifest's layout says so) for
    ``float-nchw``; uint8 NHWC for ``uint8-nhwc``.
    """
    a = np.asarray(cropped)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise InputError(f"expected HxWxC or NxHxWxC, got shape {np.asarray(cropped).shape}")
    if a.size == 0:
        raise InputError(f"the images are empty (shape {np.asarray(cropped).shape}); pass images with pixels")
    if form == "uint8-nhwc":
        return np.ascontiguousarray(a.astype(np.uint8, copy=False))
    if form == "float-nhwc":
        return np.ascontiguousarray(a.astype(np.float32))
    if form != "float-nchw":
        raise ValueError(f"form must be 'float-nchw', 'uint8-nhwc' or 'float-nhwc', got {form!r}")
    c = a.shape[3]
    x = a.astype(np.float32) * np.float32(input_spec.get("scale", 1.0 / 255.0))
    mean = input_spec.get("mean")
    std = input_spec.get("std")
    if mean is not None:
        x -= np.asarray(mean, dtype=np.float32).reshape(1, 1, 1, -1)[..., :c]
    if std is not None:
        x /= np.asarray(std, dtype=np.float32).reshape(1, 1, 1, -1)[..., :c]
    if input_spec.get("layout", "NCHW") == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    dtype = np.dtype(input_spec.get("dtype", "float32"))
    return np.ascontiguousarray(x.astype(dtype, copy=False))


# --------------------------------------------------------------------------- fast path

_COLOR_SET = frozenset(COLOR_INPUTS)
_UINT8 = np.dtype(np.uint8)


def fast_preprocessor(
    input_spec: dict, form: str = "float-nchw"
) -> Callable[[Any, str], np.ndarray | None] | None:
    """Steps 1-4 for the camera-loop case, with the same output bits as ``prepare_image`` +
    ``preprocess_array``: ``f(image, input_color)`` takes a uint8 numpy image that already has the
    model's input size, gray (HxW, HxWx1) or RGB/BGR(A) (HxWx3, HxWx4; not for a gray model, whose
    luma conversion stays on the general path), and returns the batch of 1; for any other image
    it returns None and the caller uses the general path. None instead of ``f`` when no image can
    skip the resize and crop (``resize``/``crop`` change an image of the input size) or the
    colour order and channel count are not GRAY/1, RGB/3 or BGR/3.

    Normalization is a table lookup: the 256 values of each channel go through
    ``preprocess_array`` once, here, so every pixel gets exactly the float the general path
    computes (``pixel * scale``, ``- mean``, ``/ std``, cast) without per-call float arithmetic,
    PIL/crop checks or intermediate copies. ``f`` keeps no state between calls (thread-safe).
    """
    if form == "float-nhwc":  # the uint8 pixels, as float32
        pixels = fast_preprocessor(input_spec, "uint8-nhwc")
        if pixels is None:
            return None

        def as_float(image: Any, input_color: str = "BGR") -> np.ndarray | None:
            x = pixels(image, input_color)
            return None if x is None else x.astype(np.float32)

        return as_float
    try:
        h, w, c = int(input_spec["height"]), int(input_spec["width"]), int(input_spec["channels"])
        color_order = input_spec.get("color_order", "GRAY" if c == 1 else "RGB")
        if not ((color_order == "GRAY" and c == 1) or (color_order in ("RGB", "BGR") and c == 3)):
            return None
        if resized_size(h, w, input_spec.get("resize"), (h, w)) != (h, w):
            return None
        crop = input_spec.get("crop") or [h, w]
        if (crop[0], crop[1]) != (h, w):
            return None
        nchw = input_spec.get("layout", "NCHW") == "NCHW"
        if form == "uint8-nhwc":
            luts = None
        elif form == "float-nchw":
            # value v in every channel of row v: one general-path run gives each channel's table
            ramp = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], c, axis=2)
            t = preprocess_array(ramp, input_spec, form)
            luts = [np.ascontiguousarray(t[0, k, :, 0] if nchw else t[0, :, 0, k]) for k in range(c)]
        else:
            return None
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError):
        return None
    hw, hw1 = (h, w), (h, w, 1)
    uint8 = _UINT8
    colors = _COLOR_SET
    ndarray = np.ndarray

    if c == 1:
        if luts is None:
            shape = (1, h, w, 1)

            def gray_uint8(image: Any, input_color: str = "BGR") -> np.ndarray | None:
                if type(image) is not ndarray or input_color not in colors:
                    return None
                dt = image.dtype
                if (dt is uint8 or dt == uint8) and (image.shape == hw or image.shape == hw1):
                    return image.reshape(shape).copy()
                return None

            return gray_uint8
        lut = luts[0]
        shape = (1, 1, h, w) if nchw else (1, h, w, 1)  # one channel: the same element order

        def gray_float(image: Any, input_color: str = "BGR") -> np.ndarray | None:
            if type(image) is not ndarray or input_color not in colors:
                return None
            dt = image.dtype
            if (dt is uint8 or dt == uint8) and (image.shape == hw or image.shape == hw1):
                return lut.take(image.reshape(shape), mode="clip")  # uint8 indices: never clipped
            return None

        return gray_float

    def colour(image: Any, input_color: str = "BGR") -> np.ndarray | None:
        if type(image) is not ndarray or input_color not in colors:
            return None
        dt = image.dtype
        if not (dt is uint8 or dt == uint8):
            return None
        s = image.shape
        if s[:2] != hw:
            return None
        if len(s) == 3 and s[2] in (3, 4):
            if input_color == "GRAY":
                return None  # the general path raises
            planes = (0, 1, 2) if input_color == color_order else (2, 1, 0)
            src = [image[:, :, i] for i in planes]
        elif s == hw or s == hw1:  # gray into a colour model: three equal channels
            src = [image.reshape(hw)] * 3
        else:
            return None
        if luts is None:
            out = np.empty((1, h, w, 3), uint8)
            for k in range(3):
                out[0, :, :, k] = src[k]
            return out
        out = np.empty((1, 3, h, w) if nchw else (1, h, w, 3), luts[0].dtype)
        for k in range(3):
            luts[k].take(src[k], out=out[0, k] if nchw else out[0, :, :, k], mode="clip")
        return out

    return colour


def preprocess(
    image: Any, input_spec: dict, input_color: str = "BGR", form: str = "float-nchw"
) -> np.ndarray:
    """One image (HxWxC uint8 in ``input_color``, HxW gray, a PIL image or a file path) -> batch of 1."""
    return preprocess_array(prepare_image(image, input_spec, input_color), input_spec, form)


def preprocess_batch(
    images: Sequence[Any], input_spec: dict, input_color: str = "BGR", form: str = "float-nchw"
) -> np.ndarray:
    """A list of images -> one batch (N first)."""
    if len(images) == 0:
        raise InputError("preprocess_batch needs at least one image")
    crops = np.stack([prepare_image(im, input_spec, input_color) for im in images])
    return preprocess_array(crops, input_spec, form)
