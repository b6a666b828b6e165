"""Image I/O: every kind of file a user may feed (formats, bit depths, alpha, gray, EXIF rotation,
odd names, broken files) and every wrong thing passed to the API gives the image in its own form or a
clear error; property-based round trips of to_bgr_uint8/from_bgr_uint8 and of read/write."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from facerestore import imageio
from facerestore.imageio import (ImageError, ImageNotFoundError, ImageTypeError, from_bgr_uint8, read_image,
                                 to_bgr_uint8, write_image)

RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("ext", ["jpg", "png", "webp"])
def test_exif_orientation_is_applied_like_cv2_imread(tmp_path, orientation, ext):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.{ext}"
    Image.fromarray(PIXELS).save(path, exif=exif, **({"lossless": True} if ext == "webp" else {}))
    upright = read_image(path)
    assert np.array_equal(upright, cv2.imread(str(path)))  # cv2.imread's default: EXIF-rotated
    assert upright.shape[:2] == ((30, 20) if orientation >= 5 else (20, 30))


def test_exif_orientation_of_tiff_and_of_unchanged_reads(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90 degrees clockwise
    Image.fromarray(PIXELS).save(tmp_path / "r.tif", exif=exif)
    rgba = np.dstack([PIXELS, RNG.integers(0, 256, (20, 30), dtype=np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "r.png", exif=exif)
    assert np.array_equal(read_image(tmp_path / "r.tif"), np.rot90(PIXELS[:, :, ::-1], -1))
    assert np.array_equal(read_image(tmp_path / "r.png"), np.rot90(rgba[:, :, [2, 1, 0, 3]], -1))  # alpha kept
    assert read_image(tmp_path / "r.png", cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION).shape == (20, 30, 3)


def test_formats_depths_and_modes_read_in_their_form(tmp_path):
    gray16 = RNG.integers(0, 65536, (9, 7), dtype=np.uint16)
    cases = {
        "gray.png": (PIXELS[:, :, 0], (20, 30), np.uint8),
        "gray16.png": (gray16, (9, 7), np.uint16),
        "rgb16.tif": (PIXELS.astype(np.uint16) * 257, (20, 30, 3), np.uint16),
        "bgra.png": (np.dstack([PIXELS, PIXELS[:, :, 0]]), (20, 30, 4), np.uint8),
        "a.bmp": (PIXELS, (20, 30, 3), np.uint8),
        "a.webp": (PIXELS, (20, 30, 3), np.uint8),
        "one.png": (PIXELS[:1, :1], (1, 1, 3), np.uint8),
        "strip.png": (np.zeros((1, 3000, 3), np.uint8), (1, 3000, 3), np.uint8),
    }
    for name, (pixels, shape, dtype) in cases.items():
        write_image(tmp_path / name, pixels)
        got = read_image(tmp_path / name)
        assert got.shape == shape and got.dtype == dtype, name
        if name.endswith((".png", ".tif", ".bmp")):
            assert np.array_equal(got, pixels), name  # lossless formats give the pixels back
    Image.fromarray(PIXELS).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(PIXELS).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(PIXELS[:, :, 0]).convert("LA").save(tmp_path / "gray_alpha.png")
    assert read_image(tmp_path / "cmyk.jpg").shape == (20, 30, 3)
    assert read_image(tmp_path / "palette.png").shape == (20, 30, 3)
    assert read_image(tmp_path / "gray_alpha.png").shape == (20, 30, 4)  # cv2 reads gray+alpha as BGRA
    name = tmp_path / "名前 with space.png"
    write_image(name, PIXELS)
    assert np.array_equal(read_image(name), PIXELS)


def test_write_image_scales_depths_the_format_cannot_hold(tmp_path):
    sixteen = np.full((4, 4, 3), 65535, np.uint16)
    write_image(tmp_path / "a.jpg", sixteen)
    assert read_image(tmp_path / "a.jpg").min() >= 250  # scaled to 8 bit, not saturated garbage
    write_image(tmp_path / "f.png", np.full((4, 4, 3), 0.5, np.float32))
    assert np.all(read_image(tmp_path / "f.png") == 128)
    write_image(tmp_path / "rgba.jpg", np.zeros((4, 4, 4), np.uint8))
    assert read_image(tmp_path / "rgba.jpg").shape == (4, 4, 3)


def test_broken_files_are_named_errors(tmp_path, monkeypatch):
    good = tmp_path / "good.jpg"
    write_image(good, cv2.resize(PIXELS, (300, 200)))
    data = good.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) * 2 // 3])
    (tmp_path / "truncated.png").write_bytes(cv2.imencode(".png", PIXELS)[1].tobytes()[:200])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "folder.png").mkdir()
    expected = {"truncated.jpg": "truncated", "truncated.png": "not a readable image", "empty.png": "empty",
                "text.png": "not a readable image", "folder.png": "is a folder"}
    for name, why in expected.items():
        with pytest.raises(ImageError, match=why) as info:
            read_image(tmp_path / name)
        assert name in str(info.value)
    with pytest.raises(ImageNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError):  # an ImageNotFoundError is also a FileNotFoundError
        to_bgr_uint8(str(tmp_path / "missing.png"))
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(ImageNotFoundError):
        read_image(tmp_path / "dangling.png")
    real_fromfile = np.fromfile

    def unreadable(path, *args, **kwargs):  # as root, chmod 000 does not stop reads: emulate the error
        if str(path).endswith("good.jpg"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_fromfile(path, *args, **kwargs)

    monkeypatch.setattr(imageio.np, "fromfile", unreadable)
    with pytest.raises(ImageError, match="good.jpg: cannot be read \\(Permission denied\\)"):
        read_image(good)


@pytest.mark.parametrize("bad, error, message", [
    (None, TypeError, "got None"),
    ([[1, 2], [3, 4]], TypeError, "unsupported image type list"),
    (np.zeros((0, 5, 3), np.uint8), ValueError, "empty image"),
    (np.zeros((4, 4, 5), np.uint8), ValueError, "HxWx4"),
    (np.zeros((4, 4, 2), np.uint8), ValueError, "HxWx4"),
    (np.zeros((2, 4, 4, 3), np.uint8), ValueError, "batch of 2 images"),
    (np.zeros(7, np.uint8), ValueError, "got shape"),
    (np.full((4, 4, 3), np.nan, np.float32), ValueError, "NaN or infinite"),
    (np.full((4, 4), np.inf), ValueError, "NaN or infinite"),
    (np.full((4, 4, 3), 255.0, np.float32), ValueError, r"\[0, 1\]"),
    (np.zeros((4, 4, 3), np.int64), ValueError, "unsupported pixel type int64"),
    (np.zeros((4, 4, 3), bool), ValueError, "unsupported pixel type bool"),
])
def test_wrong_inputs_say_what_is_expected(bad, error, message):
    with pytest.raises(error, match=message):
        to_bgr_uint8(bad)


def test_wrong_inputs_are_image_errors_and_color_order_is_checked():
    assert issubclass(ImageTypeError, TypeError) and issubclass(ImageTypeError, ImageError)
    assert issubclass(ImageNotFoundError, FileNotFoundError) and issubclass(ImageError, ValueError)
    with pytest.raises(ValueError, match="color_order"):
        to_bgr_uint8(np.zeros((4, 4), np.uint8), color_order="bgra")


# ---------------------------------------------------------------- property-based round trips
_SHAPES = st.tuples(st.integers(1, 12), st.integers(1, 12), st.sampled_from([0, 1, 3, 4]))


def _arrays(dtype):
    def build(shape):
        h, w, c = shape
        full = (h, w) if c == 0 else (h, w, c)
        if dtype == np.uint16:  # 16-bit values that survive the 8-bit network path: multiples of 257
            return hnp.arrays(np.uint8, full).map(lambda a: a.astype(np.uint16) * 257)
        if dtype == np.float32:
            return hnp.arrays(np.uint8, full).map(lambda a: a.astype(np.float32) / 255)
        return hnp.arrays(np.uint8, full)
    return _SHAPES.flatmap(build)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([np.uint8, np.uint16, np.float32]).flatmap(_arrays), st.sampled_from(["bgr", "rgb"]))
def test_to_and_from_bgr_uint8_round_trip(img, color_order):
    bgr, info = to_bgr_uint8(img, color_order)
    assert bgr.dtype == np.uint8 and bgr.shape == img.shape[:2] + (3,) and bgr.flags.c_contiguous
    back = from_bgr_uint8(bgr, info, color_order)
    assert back.shape == img.shape and back.dtype == img.dtype
    if img.dtype == np.float32:
        np.testing.assert_allclose(back, img, atol=1e-6)
    else:
        assert np.array_equal(back, img)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(img=st.sampled_from([np.uint8, np.uint16]).flatmap(_arrays), ext=st.sampled_from([".png", ".tif"]))
def test_write_read_round_trip(tmp_path, img, ext):
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]  # files hold gray as HxW
    path = tmp_path / f"round{ext}"
    write_image(path, img)
    assert np.array_equal(read_image(path), img)
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]  # no temporary file left
