"""The DPR relighting pipeline with the released weights: the official demo's results, light
estimation, whole photos, the zoo entries and the `relight` command."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from conftest import shared_path
from facerestore import get_entry, load
from facerestore.cli import main
from facerestore.hub import sha256_of
from facerestore.shlight import SHLight
from facerestore.metrics.lighting import si_l2
from facerestore.relighter import Relighter, contact_sheet, head_mask, pad_to_square


def light_file(i: int):
    return shared_path(f"data/relight/example_light/rotate_light_{i:02d}.txt")


@pytest.fixture(scope="module")
def dpr512() -> Relighter:
    return load("dpr", weights=shared_path("weights/dpr/trained_model_03.t7"), device="cpu")


@pytest.fixture(scope="module")
def dpr1024() -> Relighter:
    return load("dpr-1024", weights=shared_path("weights/dpr"), device="cpu")  # a folder works too


@pytest.fixture(scope="module")
def obama() -> np.ndarray:
    return np.load(shared_path("golden/dpr/dpr512_input.npz"))["decoded_bgr"]


@pytest.fixture(scope="module")
def small_portrait(obama) -> np.ndarray:
    return cv2.resize(obama, (240, 300), interpolation=cv2.INTER_AREA)


def assert_nearly_equal(actual: np.ndarray, expected: np.ndarray, max_pixels: int) -> None:
    """Equal except a handful of values off by at most 3 levels (uint8 truncation of out_img)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    diff = np.abs(actual.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 3 and int((diff > 0).sum()) <= max_pixels, (diff.max(), int((diff > 0).sum()))


# -- zoo -----------------------------------------------------------------------------------------------
def test_zoo_entries():
    small, large = get_entry("dpr"), get_entry("dpr-1024")
    assert small.name == "dpr-512" and get_entry("DPR-512") is small
    for entry, size, filename in ((small, 512, "trained_model_03.t7"), (large, 1024, "trained_model_1024_03.t7")):
        assert entry.task == "relight" and entry.restorer == "facerestore.relighter:Relighter"
        assert entry.face_size == size and entry.commercial_use is False and "research" in entry.license
        (wf,) = entry.files
        assert wf.filename == filename and wf.url == f"https://github.com/zhhoper/DPR/raw/master/trained_model/{filename}"
        path = shared_path(f"weights/dpr/{filename}")
        assert wf.sha256 == sha256_of(path) and wf.size == path.stat().st_size
        assert entry.source == "https://github.com/zhhoper/DPR" and entry.paper


def test_load_offline(dpr512, dpr1024):
    assert isinstance(dpr512, Relighter) and type(dpr512.net).__name__ == "HourglassNet"
    assert type(dpr1024.net).__name__ == "HourglassNet1024"
    assert dpr512.device == torch.device("cpu") and dpr512.precision == "fp32" and not dpr512.net.training
    assert dpr512._detector is None  # no detector unless detect=True is used


# -- the official demo -------------------------------------------------------------------------------
@pytest.mark.parametrize("size,lights", [(512, range(7)), (1024, (0, 3))])
def test_pipeline_reproduces_the_official_demo(request, size, lights):
    relighter = request.getfixturevalue(f"dpr{size}")
    inputs = np.load(shared_path(f"golden/dpr/dpr{size}_input.npz"))
    net_input, geometry = relighter._to_net(inputs["decoded_bgr"], keep_aspect=False)
    np.testing.assert_array_equal(net_input, inputs["resized_bgr"])
    np.testing.assert_array_equal(cv2.cvtColor(net_input, cv2.COLOR_BGR2LAB), inputs["lab"])
    for i in lights:
        case = np.load(shared_path(f"golden/dpr/dpr{size}_light_{i:02d}.npz"))
        relit, source = relighter.relight_crops(net_input[None], light_file(i))  # path: 0.7 x file values
        assert np.abs(source[0] - case["out_light"].reshape(9)).max() <= 1e-5
        # the network as the pipeline runs it (channels_last, folded BatchNorm, fused epilogues)
        with torch.inference_mode():
            lightness = torch.from_numpy(inputs["input_L"])
            out_img = relighter.net(lightness, torch.from_numpy(case["sh_input"]).float(), 0)[0]
        assert np.abs(out_img.numpy() - case["out_img"]).max() <= 1e-5
        # uint8 truncation flips a value wherever out_img * 255 lies within |error| * 255 of an integer:
        # about pixels x 2 x 255 x 1e-6 values for a typical float32 error of 1e-6 (0.05 %)
        flips = int(size * size * 2 * 255 * 1e-6)
        assert_nearly_equal(relit[0], case["result_bgr_at_net_res"], max_pixels=flips)
        final = relighter._from_net(relit[0], geometry)
        expected = cv2.imread(str(shared_path(f"golden/dpr/dpr{size}_light_{i:02d}_result.png")))
        assert_nearly_equal(final, expected, max_pixels=flips)


def test_relight_is_the_demo_end_to_end(dpr512, obama):
    out = dpr512.relight(obama, light_file(4))
    expected = cv2.imread(str(shared_path("golden/dpr/dpr512_light_04_result.png")))
    assert_nearly_equal(out, expected, max_pixels=int(512 * 512 * 2 * 255 * 1e-6))  # see above


def test_all_light_forms_agree(dpr512, small_portrait):
    light = SHLight.from_file(light_file(1))
    reference = dpr512.relight(small_portrait, light)
    assert reference.shape == small_portrait.shape and reference.dtype == np.uint8
    assert np.abs(reference.astype(int) - small_portrait).mean() > 3  # the light changed something
    for form in (light_file(1), str(light_file(1)), list(light.coefficients), light.to_tensor()):
        np.testing.assert_array_equal(dpr512.relight(small_portrait, form), reference)
    # raw file values are taken as network-scale coefficients: a different (brighter) result
    brighter = dpr512.relight(small_portrait, light.file_values)
    assert cv2.cvtColor(brighter, cv2.COLOR_BGR2LAB)[:, :, 0].mean() > cv2.cvtColor(reference, cv2.COLOR_BGR2LAB)[:, :, 0].mean()


def test_colour_channels_are_kept(dpr512, small_portrait):
    out = dpr512.relight(small_portrait, SHLight.from_direction((1, 0, 1)))
    lab_in, lab_out = (cv2.cvtColor(im, cv2.COLOR_BGR2LAB).astype(int) for im in (small_portrait, out))
    # L carries the relighting; a/b only go through two bilinear resizes and the Lab round trip
    # (they move only where the new lightness falls outside the RGB gamut and gets clipped)
    delta_ab = np.abs(lab_out[:, :, 1:] - lab_in[:, :, 1:])
    assert np.median(delta_ab) == 0 and delta_ab.mean() < 3
    assert np.abs(lab_out[:, :, 0] - lab_in[:, :, 0]).mean() > 20


def test_light_direction_is_where_the_face_gets_bright(dpr512, small_portrait):
    face = slice(90, 230), slice(60, 180)  # central face region of the 240x300 portrait
    lightness = {}
    for name, direction in (("right", (1, 0, 0.5)), ("left", (-1, 0, 0.5))):
        lab = cv2.cvtColor(dpr512.relight(small_portrait, SHLight.from_direction(direction)), cv2.COLOR_BGR2LAB)
        region = lab[face][:, :, 0].astype(float)
        lightness[name] = region[:, 60:].mean() - region[:, :60].mean()  # image right half minus left half
    assert lightness["right"] > 10 and lightness["left"] < -10


def test_input_forms(dpr512, small_portrait):
    light = SHLight.from_file(light_file(2))
    reference = dpr512.relight(small_portrait, light)
    rgb = dpr512.relight(small_portrait[:, :, ::-1].copy(), light, color_order="rgb")
    np.testing.assert_array_equal(rgb, reference[:, :, ::-1])
    gray = cv2.cvtColor(small_portrait, cv2.COLOR_BGR2GRAY)
    out = dpr512.relight(gray, light)
    assert out.shape == gray.shape and out.dtype == np.uint8
    with pytest.raises(ValueError, match="crops must be"):
        dpr512.relight_crops(small_portrait[None], light)


def test_keep_aspect(dpr512, small_portrait):
    light = SHLight.from_file(light_file(0))
    square = cv2.resize(small_portrait, (256, 256))
    np.testing.assert_array_equal(dpr512.relight(square, light, keep_aspect=True), dpr512.relight(square, light))
    out = dpr512.relight(small_portrait, light, keep_aspect=True)
    assert out.shape == small_portrait.shape
    squashed = dpr512.relight(small_portrait, light)
    assert 0 < np.abs(out.astype(int) - squashed).mean() < 12  # same light, different framing
    padded, (top, left) = pad_to_square(small_portrait)
    assert padded.shape == (300, 300, 3) and (top, left) == (0, 30)
    np.testing.assert_array_equal(padded[:, 30:270], small_portrait)
    np.testing.assert_array_equal(padded[:, 0], small_portrait[:, 0])  # replicated border


# -- light estimation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [512, 1024])
def test_estimate_light_is_the_network_estimate(request, size):
    relighter = request.getfixturevalue(f"dpr{size}")
    inputs = np.load(shared_path(f"golden/dpr/dpr{size}_input.npz"))
    expected = np.load(shared_path(f"golden/dpr/dpr{size}_light_00.npz"))["out_light"].reshape(9)
    light = relighter.estimate_light(inputs["decoded_bgr"])
    assert isinstance(light, SHLight)
    assert np.abs(light.coefficients - expected).max() <= 1e-5
    # network scale: the same scale as the demo's inputs (DC term ~0.76 for the examples)
    assert 0.6 < light.coefficients[0] < 0.95


def test_relight_then_estimate_recovers_the_target(dpr512, obama):
    original = dpr512.estimate_light(obama)
    before, after = [], []
    for i in range(7):
        target = SHLight.from_file(light_file(i))
        estimate = dpr512.estimate_light(dpr512.relight(obama, target))
        before.append(si_l2(original.coefficients, target.coefficients))
        after.append(si_l2(estimate.coefficients, target.coefficients))
        assert np.dot(estimate.direction, target.direction) > 0.75, i  # within ~40 degrees
    before, after = np.array(before), np.array(after)
    assert (after < before).all(), (after, before)  # holds for each of the 7 lights
    assert after.mean() < 0.45 and (after / before).mean() < 0.7  # measured 0.39 and 0.56


# -- whole photos ---------------------------------------------------------------------------------------
def test_detect_relights_each_face_and_keeps_the_rest(shared):
    pytest.importorskip("facerestore.face.detect", reason="face pipeline not available yet")
    pytest.importorskip("facerestore.face.paste", reason="face pipeline not available yet")
    relighter = load("dpr", weights=shared("weights/dpr/trained_model_03.t7"), device="cpu",
                     detector="retinaface-mobile0.25-1mb",
                     detector_weights=shared("weights/retinaface/mobilenet0.25_Final.pth"))
    photo = cv2.imread(str(shared("data/real/whole/Blake_Lively.jpg")))
    light = SHLight.from_direction((1, 0.3, 1))
    out = relighter.relight(photo, light, detect=True, max_faces=1)
    assert out.shape == photo.shape and out.dtype == np.uint8
    dets = relighter.detector.detect(photo)
    x1, y1, x2, y2 = dets.boxes[int(np.argmax(dets.scores))].astype(int)
    face_change = np.abs(out[y1:y2, x1:x2].astype(int) - photo[y1:y2, x1:x2]).mean()
    assert face_change > 3
    changed = np.abs(out.astype(int) - photo).max(axis=2) > 0
    w, h = x2 - x1, y2 - y1
    far = np.ones_like(changed)
    far[max(0, y1 - 2 * h):y2 + 2 * h, max(0, x1 - 2 * w):x2 + 2 * w] = False
    assert not changed[far].any()  # far from the face nothing moves
    lights = relighter.estimate_light(photo, detect=True)
    assert isinstance(lights, SHLight)


# -- helpers and CLI ------------------------------------------------------------------------------------
def test_head_mask():
    mask = head_mask(512, crop_scale=1.2)
    assert mask.shape == (512, 512) and mask.dtype == np.float32
    assert mask[250, 256] > 0.99 and mask.max() <= 1 and mask[0, 0] == 0 and mask[511, 511] == 0
    np.testing.assert_allclose(mask, mask[:, ::-1], atol=1e-6)  # left-right symmetric
    assert mask[75:420, 256].min() > 0.5  # hair to chin of an FFHQ-framed face (1.2x crop)
    assert head_mask(512, crop_scale=1.5).sum() < mask.sum() < head_mask(512, crop_scale=1.0).sum()


def test_contact_sheet_layout():
    frames = [np.full((100, 80, 3), 40 * k, np.uint8) for k in range(5)]
    lights = SHLight.from_direction((1, 0, 1)).sweep(5)
    sheet = contact_sheet(frames, lights, thumb_width=80)
    # 3 columns x 2 rows of cells (80 + 2*8) wide, (100 + 26 + 2*8) high
    assert sheet.shape == (2 * 142, 3 * 96, 3)
    np.testing.assert_array_equal(sheet[8:108, 8 + 96:88 + 96], frames[1])
    preview = sheet[108:134, 8 + 27:8 + 53, 0]
    np.testing.assert_array_equal(preview, lights[0].render_sphere(26))
    with pytest.raises(ValueError):
        contact_sheet(frames, lights[:2])


def test_cli_relight(tmp_path, small_portrait, capsys):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), small_portrait)
    (src / "b.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    weights = str(shared_path("weights/dpr/trained_model_03.t7"))
    out = tmp_path / "out"
    code = main(["relight", str(src), "--light", str(light_file(3)), "--weights", weights, "-o", str(out),
                 "--device", "cpu", "--save-light-preview"])
    captured = capsys.readouterr()
    assert code == 1 and "b.jpg" in captured.err and "relit 1 of 2" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "light.png"]
    np.testing.assert_array_equal(cv2.imread(str(out / "light.png"), cv2.IMREAD_UNCHANGED),
                                  SHLight.from_file(light_file(3)).render_sphere())
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # inputs untouched

    sweep = tmp_path / "sweep"
    code = main(["relight", str(src / "a.png"), "--direction", "1,0,1", "--intensity", "1.0", "--sweep", "3",
                 "--weights", weights, "-o", str(sweep), "--device", "cpu"])
    assert code == 0
    assert sorted(p.name for p in sweep.iterdir()) == ["a_sweep.png", "a_sweep000.png", "a_sweep001.png", "a_sweep002.png"]
    frames = [cv2.imread(str(sweep / f"a_sweep{k:03d}.png")) for k in range(3)]
    assert all(f.shape == small_portrait.shape for f in frames) and not np.array_equal(frames[0], frames[1])
    assert cv2.imread(str(sweep / "a_sweep.png")).shape == (2 * (320 + 85 + 16), 2 * (256 + 16), 3)  # 240x300 -> 256x320 thumbs
    assert not list(tmp_path.rglob("*.tmp"))

    # the output folder is the input folder and names collide: refused, nothing overwritten
    code = main(["relight", str(src / "a.png"), "--direction", "0,1,1", "--weights", weights, "-o", str(src)])
    assert code == 1 and "overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    # --intensity only goes with --direction
    assert main(["relight", str(src / "a.png"), "--light", str(light_file(0)), "--intensity", "2", "-o", str(out)]) == 1


def test_bf16_mode_is_close_to_fp32(dpr512, small_portrait):
    fast = load("dpr", weights=shared_path("weights/dpr/trained_model_03.t7"), device="cpu", precision="bf16")
    light = SHLight.from_file(light_file(5))
    reference = dpr512.relight(small_portrait, light).astype(np.float64)
    mse = ((fast.relight(small_portrait, light) - reference) ** 2).mean()
    assert 0 < mse and 10 * np.log10(255.0**2 / mse) >= 40  # measured 47-49 dB on real faces
