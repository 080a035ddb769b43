"""Preprocessing: colour handling, resize + crop geometry, normalization, against hand computations
and against torchvision's Resize -> CenterCrop -> ToTensor -> Normalize on a PIL image."""

from __future__ import annotations

import numpy as np
import pocketvit.runtime.preprocessing as P
import pytest
from pocketvit.runtime import images, preprocess, preprocess_array, preprocess_batch

RGB_SPEC = {
    "height": 4,
    "width": 4,
    "channels": 3,
    "layout": "NCHW",
    "dtype": "float32",
    "color_order": "RGB",
    "resize": 4,
    "crop": [4, 4],
    "scale": 1 / 255,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}
GRAY = {**RGB_SPEC, "channels": 1, "color_order": "GRAY", "mean": [0.5], "std": [0.25]}


def const_bgr(b, g, r, h=4, w=4):
    img = np.zeros((h, w, 3), np.uint8)
    img[...] = (b, g, r)
    return img


def test_normalization_by_hand():
    x = preprocess(const_bgr(10, 100, 200), RGB_SPEC)  # BGR in, model wants RGB
    assert x.shape == (1, 3, 4, 4) and x.dtype == np.float32
    want = [(200 / 255 - 0.485) / 0.229, (100 / 255 - 0.456) / 0.224, (10 / 255 - 0.406) / 0.225]
    np.testing.assert_allclose(x[0, :, 0, 0], want, rtol=1e-6)
    assert np.all(x == x[:, :, :1, :1])


def test_bgr_rgb_and_gray_inputs():
    bgr = np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    a = preprocess(bgr, RGB_SPEC)  # default input_color BGR
    b = preprocess(bgr[:, :, ::-1].copy(), RGB_SPEC, input_color="RGB")
    np.testing.assert_array_equal(a, b)
    # a BGR model gets the channels in its order
    c = preprocess(bgr, {**RGB_SPEC, "color_order": "BGR", "mean": [0, 0, 0], "std": [1, 1, 1]})
    np.testing.assert_allclose(c[0].transpose(1, 2, 0), bgr / 255, rtol=1e-6)
    # 4 channels: alpha is dropped
    bgra = np.concatenate([bgr, np.full((4, 4, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(preprocess(bgra, RGB_SPEC), a)
    # gray image into an RGB model: three equal channels
    g = preprocess(np.full((4, 4), 51, np.uint8), RGB_SPEC)
    np.testing.assert_allclose(
        g[0, :, 0, 0], [(0.2 - m) / s for m, s in zip(RGB_SPEC["mean"], RGB_SPEC["std"])], rtol=1e-5
    )


def test_color_to_gray_model_uses_luma():
    x = preprocess(const_bgr(10, 100, 200), GRAY)
    luma = (200 * 19595 + 100 * 38470 + 10 * 7471 + 32768) >> 16  # = round(.299 R + .587 G + .114 B)
    assert luma == round(0.299 * 200 + 0.587 * 100 + 0.114 * 10)
    assert x.shape == (1, 1, 4, 4)
    np.testing.assert_allclose(x[0, 0, 0, 0], (luma / 255 - 0.5) / 0.25, rtol=1e-5)
    # same for RGB input declared as such, and HxWx1 gray
    np.testing.assert_array_equal(preprocess(const_bgr(200, 100, 10), GRAY, input_color="RGB"), x)
    np.testing.assert_array_equal(preprocess(np.full((4, 4, 1), luma, np.uint8), GRAY), x)
    with pytest.raises(ValueError, match="GRAY"):
        preprocess(const_bgr(1, 2, 3), GRAY, input_color="GRAY")
    with pytest.raises(TypeError, match="uint8"):
        preprocess(np.zeros((4, 4, 3), np.float32), GRAY)


def test_resize_shorter_side_then_center_crop():
    spec = {**RGB_SPEC, "height": 28, "width": 28, "resize": 32, "crop": [28, 28]}
    img = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    assert P.resized_size(60, 90, 32, (28, 28)) == (32, 48)
    assert P.resized_size(90, 60, 32, (28, 28)) == (48, 32)
    crop = P.prepare_image(img, spec)
    assert crop.shape == (28, 28, 3)
    resized = P.resize_bilinear(img[:, :, ::-1], 32, 48)
    np.testing.assert_array_equal(crop, resized[2:30, 10:38])
    u8 = preprocess(img, spec, form="uint8-nhwc")
    assert u8.shape == (1, 28, 28, 3) and u8.dtype == np.uint8
    np.testing.assert_array_equal(u8[0], crop)
    nhwc = preprocess(img, {**spec, "layout": "NHWC"})
    assert nhwc.shape == (1, 28, 28, 3)
    np.testing.assert_allclose(nhwc.transpose(0, 3, 1, 2), preprocess(img, spec))
    batch = preprocess_batch([img, img[::-1]], spec)
    assert batch.shape == (2, 3, 28, 28)
    np.testing.assert_array_equal(batch[:1], preprocess(img, spec))
    # smaller than the crop: zero padding, as torchvision
    small = P.center_crop(np.ones((2, 3, 1), np.uint8), 4, 4)
    np.testing.assert_array_equal(small[:, :, 0], [[0, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(
        P.center_crop(np.arange(35).reshape(5, 7, 1), 2, 3)[:, :, 0], [[16, 17, 18], [23, 24, 25]]
    )


def test_matches_torchvision_pipeline():
    tv = pytest.importorskip("torchvision.transforms")
    from PIL import Image

    spec = {**RGB_SPEC, "height": 24, "width": 24, "resize": 27, "crop": [24, 24]}
    rgb = np.random.default_rng(1).integers(0, 256, (50, 71, 3), dtype=np.uint8)
    t = tv.Compose([tv.Resize(27), tv.CenterCrop(24), tv.ToTensor(), tv.Normalize(spec["mean"], spec["std"])])
    want = t(Image.fromarray(rgb)).numpy()[None]
    np.testing.assert_allclose(preprocess(rgb, spec, input_color="RGB"), want, atol=1e-5)


def test_numpy_resize_matches_pil(monkeypatch):
    rng = np.random.default_rng(2)
    for h, w, oh, ow in [(480, 640, 224, 298), (28, 28, 56, 56), (37, 100, 11, 28), (7, 9, 28, 28)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        a = P.resize_bilinear(img, oh, ow)
        b = P.resize_bilinear_numpy(img, oh, ow)
        assert a.shape == b.shape == (oh, ow, 3)
        assert np.abs(a.astype(int) - b).max() <= 1
    monkeypatch.setattr(images, "_PIL_IMAGE", None)  # a device without Pillow
    assert P.resize_bilinear(img, 5, 6).shape == (5, 6, 3)


def test_image_path_input(tmp_path):
    from PIL import Image

    rgb = np.random.default_rng(3).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    spec = {**RGB_SPEC, "height": 28, "width": 28, "resize": 28, "crop": [28, 28]}
    np.testing.assert_array_equal(
        preprocess(tmp_path / "x.png", spec), preprocess(rgb, spec, input_color="RGB")
    )
    np.testing.assert_array_equal(
        preprocess(
            str(tmp_path / "x.png"), {**GRAY, "height": 28, "width": 28, "resize": 28, "crop": [28, 28]}
        ),
        preprocess(
            rgb, {**GRAY, "height": 28, "width": 28, "resize": 28, "crop": [28, 28]}, input_color="RGB"
        ),
    )


def test_preprocess_array():
    crop = np.full((4, 4, 3), 255, np.uint8)
    x = preprocess_array(crop, RGB_SPEC)
    np.testing.assert_allclose(
        x[0, :, 0, 0], [(1 - m) / s for m, s in zip(RGB_SPEC["mean"], RGB_SPEC["std"])], rtol=1e-6
    )
    assert preprocess_array(np.stack([crop, crop]), RGB_SPEC).shape == (2, 3, 4, 4)


@pytest.mark.parametrize("pil", [True, False])
def test_bgr_input_resized_before_the_channel_swap_gives_the_same_pixels(monkeypatch, pil):
    """prepare_image resizes a BGR frame for an RGB model before swapping channels (cheaper): same bits as
    converting first, with PIL and with the numpy resize, for 3- and 4-channel frames."""
    if not pil:
        monkeypatch.setattr(images, "_PIL_IMAGE", None)
    spec = {**RGB_SPEC, "height": 24, "width": 20, "resize": 26, "crop": [24, 20]}
    rng = np.random.default_rng(1)
    for shape in [(61, 47, 3), (40, 90, 4), (24, 20, 3)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        rgb = np.ascontiguousarray(img[:, :, 2::-1])  # what the model wants, converted first
        want = P.prepare_image(rgb, spec, "RGB")
        got = P.prepare_image(img, spec, "BGR")
        assert got.flags.c_contiguous and got.dtype == np.uint8 and np.array_equal(got, want)
