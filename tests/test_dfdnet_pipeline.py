"""DFDNet in the face pipeline: part locations from 68 and 5 landmarks, the zoo entry and
DFDNetRestorer (random weights + the golden K=4 dictionaries; each 512 forward takes a few seconds
on the CPU, this module ~30-60 s)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import shared_path

import facerestore
from facerestore.face.align import template, transform_points
from facerestore.registry import get_entry
from facerestore.zoo.dfdnet import (
    DFDNetRestorer,
    part_locations_from_landmarks5,
    part_locations_from_landmarks68,
)

FFHQ_512 = template("ffhq", 512)  # left eye, right eye, nose, mouth left, mouth right


def golden_case(index: int) -> dict[str, np.ndarray]:
    with np.load(shared_path(f"golden/dfdnet/dfdnet_case{index}.npz")) as data:
        return {k: data[k] for k in ("landmarks68", "part_locations", "input_rgb_u8")}


def five_points(lm68: np.ndarray) -> np.ndarray:
    """The 5 points a detector gives, from 68: eye centres, nose tip, mouth corners."""
    return np.stack([lm68[36:42].mean(0), lm68[42:48].mean(0), lm68[30], lm68[48], lm68[54]])


def contains(box: np.ndarray, point: np.ndarray) -> bool:
    return box[0] <= point[0] < box[2] and box[1] <= point[1] < box[3]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_landmarks68_give_the_official_boxes(index):
    case = golden_case(index)
    assert np.array_equal(part_locations_from_landmarks68(case["landmarks68"]), case["part_locations"])
    batched = part_locations_from_landmarks68(np.stack([case["landmarks68"]] * 2))
    assert batched.shape == (2, 4, 4) and batched.dtype == np.int64


@pytest.mark.parametrize("index", [0, 1, 2])
def test_landmarks5_reproduce_the_68_point_boxes(index):
    """Calibrated on the golden 68-point layout (case 1 is jittered, case 2 small: min size active)."""
    case = golden_case(index)
    boxes = part_locations_from_landmarks5(five_points(case["landmarks68"]))
    assert np.abs(boxes - case["part_locations"]).max() <= 2


def test_landmarks5_boxes_sit_on_the_components():
    rng = np.random.default_rng(0)
    for angle, scale, shift in [(0, 1, (0, 0)), (12, 1, (0, 0)), (-8, 0.8, (10, -6)), (5, 1.1, (-8, 12))]:
        matrix = cv2.getRotationMatrix2D((256, 256), angle, scale)
        matrix[:, 2] += shift
        points = cv2.transform(FFHQ_512[None], matrix)[0] + rng.normal(0, 1, (5, 2))
        left_eye, right_eye, nose, mouth = part_locations_from_landmarks5(points)
        assert contains(left_eye, points[0]) and contains(right_eye, points[1]) and contains(nose, points[2])
        mouth_centre = points[3:].mean(0)
        assert contains(mouth, mouth_centre)
        assert mouth[2] - mouth[0] >= 0.9 * np.linalg.norm(points[4] - points[3])  # spans the corners
        assert left_eye[2] <= right_eye[0] + 2  # eyes side by side, barely touching at most
        centre_y = [(b[1] + b[3]) / 2 for b in (left_eye, nose, mouth)]
        assert centre_y[0] < centre_y[1] < centre_y[2]  # eyes above nose above mouth
        for box in (left_eye, right_eye, nose, mouth):
            assert 0 <= box[0] < box[2] <= 512 and 0 <= box[1] < box[3] <= 512
            assert box[2] - box[0] >= 32  # the official minimum (half side 16 px at 512)


def test_landmarks5_scale_with_the_crop_size():
    small = part_locations_from_landmarks5(FFHQ_512 / 2, size=256)
    full = part_locations_from_landmarks5(FFHQ_512)
    assert np.abs(small * 2 - full).max() <= 2


def test_boxes_on_real_aligned_faces(tmp_path):
    """The FFHQ-aligned real faces: each box covers its component (drawn for a visual check)."""
    boxes = part_locations_from_landmarks5(FFHQ_512)
    face = cv2.resize(cv2.imread(str(shared_path("data/real/cropped/Julia_Roberts_crop.png"))), (512, 512))
    for box, colour in zip(boxes, [(0, 255, 0), (0, 255, 255), (255, 0, 0), (0, 0, 255)]):
        cv2.rectangle(face, (int(box[0]), int(box[1])), (int(box[2]) - 1, int(box[3]) - 1), colour, 2)
    cv2.imwrite(str(tmp_path / "dfdnet_boxes.png"), face)
    for box, point in zip(boxes[:3], FFHQ_512[:3]):
        assert contains(box, point)
    # the eye box reaches the brow (about 0.25 eye distances above the eye centre)
    eye_distance = FFHQ_512[1, 0] - FFHQ_512[0, 0]
    assert boxes[0, 1] < FFHQ_512[0, 1] - 0.3 * eye_distance


def test_zoo_entry():
    entry = get_entry("dfdnet")
    assert entry.face_size == 512 and entry.template == "ffhq" and not entry.commercial_use
    assert "CC BY-NC-SA 4.0" in entry.license
    roles = [wf.role for wf in entry.files]
    assert roles.count("weights") == 1 and roles.count("dictionary") == 16
    assert entry.restorer_class() is DFDNetRestorer


def test_official_download_folder_is_found(tmp_path):
    """`load("dfdnet", weights=folder)` with the unpacked official download: files at their paths."""
    from facerestore import hub

    root = tmp_path / "DFDNet"
    (root / "checkpoints" / "facefh_dictionary").mkdir(parents=True)
    (root / "checkpoints" / "facefh_dictionary" / "latest_net_G.pth").write_bytes(b"x")
    (root / "DictionaryCenter512").mkdir()
    for wf in get_entry("dfdnet").files[1:]:
        (root / wf.filename).write_bytes(b"x")
    paths = hub.resolve(get_entry("dfdnet"), root)
    assert paths["facefh_dictionary/latest_net_G.pth"].parent.parent.name == "checkpoints"
    assert {p.parent for name, p in paths.items() if name.endswith(".npy")} == {root / "DictionaryCenter512"}


@pytest.fixture(scope="module")
def restorer():
    restorer = facerestore.load("dfdnet", pretrained=False, device="cpu", detector=None)
    yield restorer
    del restorer


def test_restorer_without_dictionaries_says_what_to_do(restorer):
    crop = np.zeros((1, 512, 512, 3), np.uint8)
    with pytest.raises(RuntimeError, match="load_dictionaries"):
        restorer.forward_faces(crop, FFHQ_512[None])


def test_restorer_restores_every_face_of_a_photo_with_its_own_boxes(restorer):
    restorer.net.load_dictionaries(shared_path("golden/dfdnet/dfdnet_dictionaries_K4.npz"))
    restorer.detector_name = "retinaface-mobile0.25-1mb"
    restorer.detector_weights = str(shared_path("weights/retinaface/mobilenet0.25_Final.pth"))
    photo = cv2.imread(str(shared_path("data/real/whole/Blake_Lively.jpg")))  # two faces
    result = restorer.restore(photo)
    assert result.shape == photo.shape and len(result.faces) == 2  # the official script keeps one
    for face in result.faces:
        assert face.restored.shape == (512, 512, 3) and np.abs(face.restored.astype(int) - face.crop).mean() > 1
    assert np.abs(result.image.astype(int) - photo).mean() > 0.5
    # the batched forward gave the second face exactly what it gets alone
    second = result.faces[1]
    alone = restorer.forward_faces(second.crop[None], transform_points(second.landmarks, second.affine)[None])
    assert np.abs(alone[0].astype(int) - second.restored).max() <= 1


def test_restorer_takes_68_landmarks_for_the_official_boxes():
    case = golden_case(1)
    assert np.array_equal(DFDNetRestorer.part_locations(case["landmarks68"][None])[0], case["part_locations"])
    five = DFDNetRestorer.part_locations(five_points(case["landmarks68"])[None])[0]
    assert np.array_equal(five, part_locations_from_landmarks5(five_points(case["landmarks68"])))
