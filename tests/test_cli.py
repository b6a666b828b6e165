"""The command line: same entry point as `python -m facerestore`, batches that survive bad files,
inputs never overwritten."""
from __future__ import annotations

import shutil
import subprocess
import sys

import cv2
import numpy as np

from conftest import shared_path
from facerestore.cli import main


def test_models_lists_the_zoo(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("gfpgan-v1.4", "gpen-bfr-512", "dfdnet", "dpr-512", "retinaface-mobile0.25-1mb"):
        assert name in out
    assert "cache:" in out


def test_python_dash_m_is_the_same_entry_point():
    done = subprocess.run([sys.executable, "-m", "facerestore", "models", "--task", "relight"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "dpr-512" in done.stdout and "gfpgan" not in done.stdout


def test_unknown_model_is_a_clean_error(capsys, tmp_path):
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    assert main(["restore", str(img), "-m", "gfpgan-v9", "-o", str(tmp_path / "out")]) == 1
    assert "Did you mean" in capsys.readouterr().err


def test_restore_folder_with_a_corrupt_file(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    face = cv2.imread(str(shared_path("data/real/cropped/Adele_crop.png")))
    cv2.imwrite(str(src / "a_face.png"), cv2.resize(face, (256, 256)))
    (src / "b_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    cv2.imwrite(str(src / "c_face.jpg"), cv2.resize(face, (256, 256)))
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    out = tmp_path / "out"
    code = main(["restore", str(src), "-m", "gpen-bfr-256", "--no-pretrained", "--aligned", "--seed", "0",
                 "-o", str(out), "--suffix", "_restored", "--save-faces", "--device", "cpu"])
    assert code == 1  # something failed -> non-zero, but only after processing everything
    captured = capsys.readouterr()
    assert "b_corrupt.png" in captured.err and "restored 2 of 3" in captured.out
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["a_face_restored.png", "c_face_restored.jpg"]
    assert cv2.imread(str(out / "a_face_restored.png")).shape == (256, 256, 3)
    assert len(list((out / "faces").iterdir())) == 4
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # inputs untouched
    assert not [p for p in out.rglob("*.tmp")]


def test_output_never_overwrites_input(tmp_path, capsys):
    face = cv2.imread(str(shared_path("data/real/cropped/Adele_crop.png")))
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), cv2.resize(face, (256, 256)))
    original = path.read_bytes()
    code = main(["restore", str(path), "-m", "gpen-bfr-256", "--no-pretrained", "--aligned", "-o", str(tmp_path),
                 "--device", "cpu"])
    assert code == 1 and "overwrite" in capsys.readouterr().err
    assert path.read_bytes() == original


def test_restore_whole_photo_with_real_detector(tmp_path):
    src = tmp_path / "photo.jpg"
    shutil.copy(shared_path("data/real/whole/Blake_Lively.jpg"), src)
    code = main(["restore", str(src), "-m", "gpen-bfr-256", "--no-pretrained", "-o", str(tmp_path / "out"),
                 "--detector", "retinaface-mobile0.25-1mb", "--upscale", "2", "--device", "cpu",
                 "--detector-weights", str(shared_path("weights/retinaface/mobilenet0.25_Final.pth"))])
    assert code == 0
    img, out = cv2.imread(str(src)), cv2.imread(str(tmp_path / "out" / "photo.jpg"))
    assert out.shape == (img.shape[0] * 2, img.shape[1] * 2, 3)
