"""The command line: same entry point as `python -m facerestore`, batches that survive bad files,
inputs never overwritten."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

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


# ---------------------------------------------------------------- whatever a user feeds the CLI
TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny_gpen.yaml")  # a 64 px GPEN: fast on CPU
TINY_ARGS = ["-m", TINY, "--no-pretrained", "--aligned", "--seed", "0", "--device", "cpu"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_restore_every_kind_of_file(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from facerestore import imageio

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    src = tmp_path / "in"
    (src / "sub dir").mkdir(parents=True)
    cv2.imwrite(str(src / "gray.png"), pixels[:, :, 0])
    cv2.imwrite(str(src / "rgba.png"), np.dstack([pixels, pixels[:, :, 1]]))
    cv2.imwrite(str(src / "deep.png"), pixels.astype(np.uint16) * 257)
    cv2.imwrite(str(src / "deep16.tif"), pixels[:, :, 0].astype(np.uint16) * 257)
    cv2.imwrite(str(src / "a.bmp"), pixels)
    cv2.imwrite(str(src / "b.webp"), pixels)
    cv2.imwrite(str(src / "one.png"), pixels[:1, :1])
    cv2.imwrite(str(src / "strip.png"), np.zeros((2, 900, 3), np.uint8))
    Image.fromarray(pixels).convert("CMYK").save(src / "cmyk.jpg")
    Image.fromarray(pixels).convert("P").save(src / "palette.png")
    Image.fromarray(pixels[:, :, 0]).convert("LA").save(src / "gray_alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways
    Image.fromarray(pixels).save(src / "rotated.jpg", exif=exif)
    cv2.imwrite(str(src / "sub dir" / "名前 1.png"), pixels)
    (src / "link.png").symlink_to(src / "gray.png")
    # the bad ones
    (src / "empty.png").write_bytes(b"")
    (src / "text.jpg").write_text("not an image")
    whole = cv2.imencode(".jpg", cv2.resize(pixels, (300, 200)))[1].tobytes()
    (src / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (src / "dangling.png").symlink_to(src / "nowhere.png")
    cv2.imwrite(str(src / "locked.png"), pixels)
    real_fromfile = np.fromfile

    def fromfile(path, *args, **kwargs):  # tests run as root, where chmod 000 still reads: emulate it
        if str(path).endswith("locked.png"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_fromfile(path, *args, **kwargs)

    monkeypatch.setattr(imageio.np, "fromfile", fromfile)
    before = _snapshot(src)
    out = tmp_path / "out"
    code = main(["restore", str(src), "-o", str(out), *TINY_ARGS])
    captured = capsys.readouterr()
    assert code == 1  # something failed
    assert "Traceback" not in captured.err
    bad = ("empty.png", "text.jpg", "truncated.jpg", "dangling.png", "locked.png")
    failed_lines = [line for line in captured.err.splitlines() if line.startswith("FAILED")]
    assert sorted(line.split(": ")[0].rsplit("/", 1)[-1] for line in failed_lines) == sorted(bad)
    assert "restored 14 of 19" in captured.out
    read = {p: cv2.imread(str(out / p), cv2.IMREAD_UNCHANGED) for p in _snapshot(out)}
    assert set(read) == {"gray.png", "rgba.png", "deep.png", "deep16.tif", "a.bmp", "b.webp", "one.png", "strip.png",
                         "cmyk.jpg", "palette.png", "gray_alpha.png", "rotated.jpg", "sub dir/名前 1.png", "link.png"}
    assert read["gray.png"].shape == (40, 60) and read["link.png"].shape == (40, 60)  # gray stays gray
    assert read["rgba.png"].shape == (40, 60, 4)  # alpha kept
    assert np.array_equal(read["rgba.png"][:, :, 3], pixels[:, :, 1])
    assert read["deep.png"].dtype == np.uint16 and read["deep16.tif"].dtype == np.uint16  # bit depth kept
    assert read["rotated.jpg"].shape == (60, 40, 3)  # read upright, written upright
    assert read["one.png"].shape == (1, 1, 3) and read["strip.png"].shape == (2, 900, 3)
    assert _snapshot(src) == before  # inputs never modified
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_plan_outputs_keeps_names_apart():
    from facerestore.pipeline import output_file, plan_outputs

    out = Path("/out")
    sources = [(Path("in/a/x.png"), Path("a/x.png")), (Path("in/b/x.png"), Path("b/x.png")),
               (Path("in/x.png"), Path("x.png")), (Path("in/x.jpg"), Path("x.jpg")), (Path("in/X.JPG"), Path("X.JPG")),
               (Path("other/x.png"), Path("x.png")), (Path("in/y.png"), Path("y.png"))]
    stems = plan_outputs(sources, out)
    names = [str(output_file(stem, src, "png").relative_to(out)) for stem, (src, _) in zip(stems, sources)]
    assert names == ["a/x.png", "b/x.png", "x_png.png", "x_jpg.png", "X_jpg_2.png", "x_png_2.png", "y.png"]
    assert plan_outputs(sources, out) == stems  # deterministic
    assert [str(output_file(s, src, "auto", "_r").name) for s, (src, _) in zip(stems, sources)][2:4] == [
        "x_png_r.png", "x_jpg_r.jpg"]


def test_same_stems_and_subfolders_get_distinct_outputs(tmp_path, capsys):
    face = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    src = tmp_path / "in"
    for rel in ("a/x.png", "b/x.png", "x.png", "x.jpg"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(src / rel), face)
    out = tmp_path / "out"
    assert main(["restore", str(src), "-o", str(out), "--ext", "png", "--save-faces", *TINY_ARGS]) == 0
    assert sorted(p for p in _snapshot(out) if not p.startswith("faces")) == ["a/x.png", "b/x.png", "x_jpg.png",
                                                                              "x_png.png"]
    assert "faces/a/x_00_restored.png" in _snapshot(out) and "faces/x_jpg_00_input.png" in _snapshot(out)
    assert main(["restore", str(src), "-o", str(out), "--ext", "gif", *TINY_ARGS]) == 1
    assert "--ext gif" in capsys.readouterr().err


def test_output_folder_equal_to_input_folder_is_refused(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.jpg"):
        cv2.imwrite(str(src / name), np.full((16, 16, 3), 90, np.uint8))
    before = _snapshot(src)
    assert main(["restore", str(src), "-o", str(src), *TINY_ARGS]) == 1
    assert capsys.readouterr().err.count("would overwrite an input") == 2
    assert _snapshot(src) == before
    assert main(["restore", str(src), "-o", str(src), "--suffix", "_r", *TINY_ARGS]) == 0  # a suffix makes room
    assert sorted(_snapshot(src)) == ["a.png", "a_r.png", "b.jpg", "b_r.jpg"]


def test_ctrl_c_leaves_no_temporary_or_partial_files(tmp_path, capsys, monkeypatch):
    from facerestore import imageio

    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(src / name), np.full((16, 16, 3), 90, np.uint8))
    calls = []
    real_fsync = imageio.os.fsync

    def fsync(fd):  # Ctrl-C while the second output is being written (its temporary file is open)
        calls.append(fd)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr(imageio.os, "fsync", fsync)
    out = tmp_path / "out"
    assert main(["restore", str(src), "-o", str(out), *TINY_ARGS]) == 130
    captured = capsys.readouterr()
    assert "interrupted" in captured.out and "interrupted" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]  # the finished output only, complete
    assert cv2.imread(str(out / "a.png")).shape == (16, 16, 3)
