"""`facerestore upscale`: a folder of real photos in every form the Real-ESRGAN pipeline keeps (8-bit
colour, 16-bit, grey, BGRA), upscaled by a small x2 RRDBNet given as a weights file (its size read from
the file, as for community models such as the 6-block anime x4), each output equal to `Upscaler.upscale` on the same image; a broken file is reported at the
end while the rest are written; options that would fail every image stop before any work."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from conftest import shared_path
from facerestore import load
from facerestore.archs.rrdbnet import RRDBNet
from facerestore.cli import main
from facerestore.imageio import read_image
from facerestore.restorer import ImageTooLargeError
from facerestore.upscale import MAX_PIXELS, Upscaler
from test_realesrgan import small_net


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory):
    """test_realesrgan's small x2 RRDBNet (the real architecture, outputs mostly inside [0, 1]) as a file."""
    path = tmp_path_factory.mktemp("weights") / "small_x2.pth"
    torch.save({"params_ema": small_net(2).state_dict()}, path)  # the official checkpoint's wrapping
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A real photo, cut small, stored four ways; plus a file that is not an image."""
    folder = tmp_path_factory.mktemp("in")
    photo = cv2.imread(str(shared_path("data/real/whole/Blake_Lively.jpg")))[100:160, 200:290]  # 90 x 60
    cv2.imwrite(str(folder / "colour.jpg"), photo, [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(folder / "deep.png"), photo.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "grey.png"), cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY))
    alpha = np.tile(np.linspace(0, 255, photo.shape[1]).astype(np.uint8), (photo.shape[0], 1))
    cv2.imwrite(str(folder / "cutout.png"), np.dstack([photo, alpha]))
    (folder / "notes.png").write_bytes(b"not an image")
    return folder


def test_a_folder_is_upscaled_as_the_python_api_does(small_weights, photos, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["upscale", str(photos), "-m", "realesrgan-x2plus", "--weights", str(small_weights), "--device",
                 "cpu", "--tile", "32", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 1  # the broken file
    assert "upscaled 4 of 5 images" in captured.out
    assert "FAILED" in captured.err and "notes.png" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["colour.jpg", "cutout.png", "deep.png", "grey.png"]
    upscaler = load("realesrgan-x2plus", weights=str(small_weights), device="cpu")
    assert isinstance(upscaler, Upscaler) and upscaler.scale == 2
    # the file's own size (16 features, 1 block), read from the file (Family.config_from_state_dict)
    assert upscaler.net.conv_first.out_channels == 16 and len(upscaler.net.body) == 1
    for name, shape, dtype in [("deep.png", (120, 180, 3), np.uint16), ("grey.png", (120, 180), np.uint8),
                               ("cutout.png", (120, 180, 4), np.uint8)]:
        written = read_image(out / name)
        assert written.shape == shape and written.dtype == dtype, name
        np.testing.assert_array_equal(written, upscaler.upscale(read_image(photos / name), tile=32))
    colour = read_image(out / "colour.jpg")  # JPEG re-encoded: close, not equal
    expected = upscaler.upscale(read_image(photos / "colour.jpg"), tile=32)
    assert colour.shape == (120, 180, 3) and np.abs(colour.astype(int) - expected).mean() < 3
    # the network did the work: not a plain resize of the input
    plain = cv2.resize(read_image(photos / "grey.png"), (180, 120), interpolation=cv2.INTER_LANCZOS4)
    assert np.abs(read_image(out / "grey.png").astype(int) - plain).mean() > 5


def test_outscale_suffix_and_size_limit(small_weights, photos, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["upscale", str(photos / "grey.png"), str(photos / "deep.png"), "-m", "realesrgan-x2plus",
                 "--weights", str(small_weights), "--device", "cpu", "--outscale", "1.5", "--suffix", "_big",
                 "--ext", "png", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    assert read_image(out / "grey_big.png").shape == (90, 135)
    # over the limit: a clear error for that file (before any work), the batch goes on
    code = main(["upscale", str(photos / "grey.png"), "-m", "realesrgan-x2plus", "--weights", str(small_weights),
                 "--device", "cpu", "--max-megapixels", "0.01", "-o", str(tmp_path / "limited")])
    err = capsys.readouterr().err
    assert code == 1 and "ImageTooLargeError" in err and "max_pixels" in err and "grey.png" in err
    upscaler = load("realesrgan-x2plus", weights=str(small_weights), device="cpu")
    assert upscaler.max_pixels == MAX_PIXELS == 250_000_000
    upscaler.max_pixels = 21_599  # grey.png at x2 is 180 x 120 = 21 600 pixels
    with pytest.raises(ImageTooLargeError, match="21600"):
        upscaler.upscale(read_image(photos / "grey.png"))
    upscaler.max_pixels = None
    assert upscaler.upscale(read_image(photos / "grey.png")).shape == (120, 180)


@pytest.mark.parametrize("args, message", [
    (["-m", "gfpgan"], "not an upscaler"),
    (["--outscale", "0"], "--outscale must be > 0"),
    (["--tile", "-1"], ">= 0"),
    (["--ext", "gif"], "gif"),
])
def test_options_that_fail_every_image_stop_before_any_work(photos, tmp_path, capsys, args, message):
    # no weights are given: these must fail before the model would be loaded (or downloaded)
    code = main(["upscale", str(photos), "-o", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert code == 1 and message in err and "upscale: error" in err
    assert not (tmp_path / "out").exists()


def test_a_file_of_another_size_and_scale_is_built_at_its_own(tmp_path):
    """A 6-block x4 RRDBNet (the shape of RealESRGAN_x4plus_anime_6B) given to either entry; overrides
    given by the caller win; a file of another family keeps the entry's config and says what does not fit."""
    torch.manual_seed(1)
    net = RRDBNet(scale=4, num_feat=16, num_block=6, num_grow_ch=8).eval()
    path = tmp_path / "RealESRGAN_x4plus_anime_6B.pth"
    torch.save({"params_ema": net.state_dict()}, path)
    for name in ("realesrgan-x4plus", "realesrgan-x2plus"):
        upscaler = load(name, weights=str(path), device="cpu")
        assert upscaler.scale == 4 and len(upscaler.net.body) == 6
        for key, value in net.state_dict().items():
            assert torch.equal(upscaler.net.state_dict()[key], value)
    with pytest.raises(Exception, match="does not fit"):
        load("realesrgan-x4plus", weights=str(path), device="cpu", num_block=5)
    torch.save({"params_ema": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(Exception, match="does not fit"):
        load("realesrgan-x4plus", weights=str(tmp_path / "other.pth"), device="cpu")
