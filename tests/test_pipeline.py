"""The folder pipeline (facerestore.pipeline.restore_folder): overlapping stages give the same bytes as
restoring the photos one after the other, and keep the folder CLI's guarantees (names, bad files,
inputs untouched, atomic writes)."""
from __future__ import annotations

import shutil
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import shared_path
from facerestore.cli import main

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny_gpen.yaml")  # a 64 px GPEN: fast on CPU


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _in_thread(fn):
    """Run `fn` in a fresh thread. On a host busier than its cores, OpenMP's spinning makes torch in the
    main thread many times slower (measured 10x on the detector); the results are the same bytes."""
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", fn()))
    thread.start()
    thread.join()
    return result["value"]


@pytest.fixture(scope="module")
def restorer():
    import facerestore

    weights = shared_path("weights/retinaface/mobilenet0.25_Final.pth")
    return facerestore.load(TINY, pretrained=False, device="cpu", detector="retinaface-mobile0.25-1mb",
                            detector_weights=weights)


def test_folder_of_real_photos_is_byte_identical_to_sequential(restorer, tmp_path):
    from facerestore.imageio import read_image, write_image
    from facerestore.pipeline import restore_folder

    src = tmp_path / "in"
    shutil.copytree(shared_path("data/real/whole"), src)
    (src / "sub").mkdir()
    (src / "sub" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    before = _snapshot(src)

    # the reference: the old CLI loop, restorer.restore per photo, one after the other
    # (names, the mirrored folders and collisions: tests/test_cli.py and the next test)
    expected_names = ["00.jpg", "10045.png", "Blake_Lively.jpg", "Solvay_conference_1927.png"]

    def sequential():
        faces = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name in expected_names:
                result = restorer.restore(read_image(src / name), seed=0, paste="box")
                write_image(tmp_path / "ref" / name, result.image)
                faces += len(result.faces)
        return faces

    faces = _in_thread(sequential)
    assert faces >= 20  # the Solvay conference alone has 22 faces the 1 MB detector finds at 64 px

    seen = []
    summary = restore_folder(restorer, [src], tmp_path / "out", seed=0, paste="box", progress=False, queue_size=1,
                             on_result=lambda s, d, e: seen.append(s.relative_to(src).as_posix()))
    assert summary.total == 5 and summary.done == 5 and summary.restored == 4 and summary.faces == faces
    assert [(p.name, why.split(":")[0]) for p, why in summary.failed] == [("broken.jpg", "ImageError")]
    assert sorted(seen) == sorted([*expected_names, "sub/broken.jpg"])  # once per input
    assert _snapshot(tmp_path / "out") == _snapshot(tmp_path / "ref")  # every output, byte for byte
    assert _snapshot(src) == before  # inputs untouched
    assert not list(tmp_path.rglob("*.tmp"))
    assert set(summary.stage_seconds) == {"decode", "detect", "network", "paste", "write"}


def test_cli_pipelined_and_sequential_write_the_same_files(tmp_path, capsys):
    rng = np.random.default_rng(3)
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    for rel in ("a/x.png", "x.png", "x.jpg", "y.webp", "z.png"):
        cv2.imwrite(str(src / rel), rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
    (src / "bad.png").write_bytes(b"")
    args = ["-m", TINY, "--no-pretrained", "--aligned", "--seed", "0", "--device", "cpu", "--save-faces",
            "--suffix", "_r", "--fidelity", "0.25"]
    torch.manual_seed(0)  # --no-pretrained: the same random weights in both runs
    assert main(["restore", str(src), "-o", str(tmp_path / "seq"), "--sequential", *args]) == 1
    sequential_err = capsys.readouterr().err
    torch.manual_seed(0)
    assert main(["restore", str(src), "-o", str(tmp_path / "pipe"), *args]) == 1
    captured = capsys.readouterr()
    assert "restored 5 of 6" in captured.out and "FAILED" in captured.err and "bad.png" in captured.err
    assert [l for l in captured.err.splitlines() if l.startswith("FAILED")] == [
        l for l in sequential_err.splitlines() if l.startswith("FAILED")]
    out = _snapshot(tmp_path / "pipe")
    assert out == _snapshot(tmp_path / "seq")
    assert {p for p in out if not p.startswith("faces/")} == {"a/x_r.png", "x_png_r.png", "x_jpg_r.jpg",
                                                              "y_r.webp", "z_r.png"}
    assert "faces/a/x_00_restored.png" in out


def test_bad_options_are_refused_before_any_work(restorer, tmp_path):
    from facerestore.pipeline import restore_folder

    with pytest.raises(ValueError, match="fidelity"):
        restore_folder(restorer, [tmp_path], tmp_path / "out", fidelity=2.0)
    with pytest.raises(ValueError, match="--ext gif"):
        restore_folder(restorer, [tmp_path], tmp_path / "out", ext="gif")
    with pytest.raises(ValueError, match="queue_size"):
        restore_folder(restorer, [tmp_path], tmp_path / "out", queue_size=0)
