"""The whole-photo pipeline from the command line, offline: the issue's command
(`facerestore restore PHOTOS -m gfpgan --no-pretrained --bg-upsampler realesrgan-x2plus --upscale 2 --paste parse`)
with the shared 1 MB detector, and an EXIF-rotated phone photo coming out upright with its face restored."""
from __future__ import annotations


import cv2
import numpy as np
from PIL import Image

import facerestore
from conftest import shared_path
from facerestore.cli import main
from facerestore.imageio import read_image

DETECTOR = ["--detector", "retinaface-mobile0.25-1mb"]


def detector_weights() -> str:
    return str(shared_path("weights/retinaface/mobilenet0.25_Final.pth"))


def test_issue_command_end_to_end(tmp_path, capsys):
    """Untrained GFP-GAN and Real-ESRGAN x2 (no weights offline), the real 1 MB detector, parse paste."""
    src = tmp_path / "in"
    src.mkdir()
    # the adult's face of Blake_Lively.jpg (the right half, 350 x 464): the untrained 23-block Real-ESRGAN
    # and 512 px GFP-GAN cost seconds per face and per 0.1 MP on a CPU
    cv2.imwrite(str(src / "Blake_Lively.jpg"), cv2.imread(str(shared_path("data/real/whole/Blake_Lively.jpg")))[:, 350:],
                [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = tmp_path / "out"
    code = main(["restore", str(src), "-m", "gfpgan", "--no-pretrained", "--bg-upsampler", "realesrgan-x2plus",
                 "--upscale", "2", "--paste", "parse", *DETECTOR, "--detector-weights", detector_weights(),
                 "--device", "cpu", "--seed", "0", "--save-faces", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    photo = cv2.imread(str(src / "Blake_Lively.jpg"))
    result = cv2.imread(str(out / "Blake_Lively.jpg"))
    assert result.shape == (photo.shape[0] * 2, photo.shape[1] * 2, 3)
    restored = sorted((out / "faces").glob("Blake_Lively_*_restored.png"))
    assert len(restored) >= 1  # faces were found and restored


def test_exif_rotated_photo_comes_out_upright_with_its_face_restored(tmp_path, capsys):
    """A phone photo stored sideways with EXIF orientation 6 (turn 90 degrees clockwise to view): the CLI
    and restore() on the path / read_image see it upright, find its face there and write it upright."""
    upright = cv2.imread(str(shared_path("data/real/whole/Blake_Lively.jpg")))  # 700 x 464
    src = tmp_path / "in"
    src.mkdir()
    sideways = cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE)  # as the camera stored it
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(sideways[:, :, ::-1]).save(src / "phone.jpg", quality=95, exif=exif)

    restorer = facerestore.load("gpen-bfr-256", pretrained=False, device="cpu", detector="retinaface-mobile0.25-1mb",
                                detector_weights=detector_weights())
    pixels = read_image(src / "phone.jpg")
    assert pixels.shape == upright.shape
    assert np.abs(pixels.astype(int) - upright).mean() < 3  # upright (only JPEG re-encoding differs)
    from_path = restorer.restore(src / "phone.jpg", paste="box", seed=0)
    from_pixels = restorer.restore(pixels, paste="box", seed=0)
    np.testing.assert_array_equal(from_path.image, from_pixels.image)
    # the faces are found where they are in the upright photo
    expected = restorer.detector.detect(upright)
    assert len(from_path.faces) == len(expected) >= 1
    np.testing.assert_allclose(np.stack([f.box for f in from_path.faces]), expected.boxes, atol=4)
    # and restored: the face changed, the far background did not
    x0, y0, x1, y1 = from_path.faces[0].box.astype(int)
    assert np.abs(from_path.image[y0:y1, x0:x1].astype(int) - pixels[y0:y1, x0:x1]).mean() > 10
    np.testing.assert_array_equal(from_path.image[-5:], pixels[-5:])

    out = tmp_path / "out"
    code = main(["restore", str(src), "-m", "gpen-bfr-256", "--no-pretrained", "--paste", "box", *DETECTOR,
                 "--detector-weights", detector_weights(), "--device", "cpu", "--seed", "0", "--ext", "png",
                 "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    written = cv2.imread(str(out / "phone.png"), cv2.IMREAD_UNCHANGED)
    # upright, the face restored (the CLI's untrained network has other random weights than `restorer`)
    assert written.shape == upright.shape
    assert np.abs(written[y0:y1, x0:x1].astype(int) - pixels[y0:y1, x0:x1]).mean() > 10
    np.testing.assert_array_equal(written[-5:], pixels[-5:])
