"""Face pipeline: RetinaFace detection on real photos, alignment templates, paste-back."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from conftest import shared_path
from facerestore.face.align import (estimate_affine, gpen_reference, invert_affine, template, transform_points,
                                    umeyama, warp_faces)
from facerestore.face.detect import FaceDetector, load_detector, prior_boxes
from facerestore.face.paste import feather_mask, paste_faces


@pytest.fixture(scope="module")
def detector():
    return load_detector("retinaface-mobile0.25-1mb", weights=shared_path("weights/retinaface/mobilenet0.25_Final.pth"),
                         device="cpu")


def photo(name: str) -> np.ndarray:
    return cv2.imread(str(shared_path(f"data/real/whole/{name}")))


def check_geometry(img, dets):
    h, w = img.shape[:2]
    assert (dets.boxes[:, :2] >= -5).all() and (dets.boxes[:, 2] <= w + 5).all() and (dets.boxes[:, 3] <= h + 5).all()
    assert (np.diff(dets.scores) <= 0).all()  # sorted by score
    for box, lm in zip(dets.boxes, dets.landmarks):
        x1, y1, x2, y2 = box
        assert ((lm[:, 0] >= x1 - 2) & (lm[:, 0] <= x2 + 2) & (lm[:, 1] >= y1 - 2) & (lm[:, 1] <= y2 + 2)).all()
        assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # image-left eye / mouth corner first
        assert max(lm[0, 1], lm[1, 1]) < min(lm[3, 1], lm[4, 1])  # eyes above the mouth
        eye_distance = np.linalg.norm(lm[0] - lm[1])
        assert 0.2 < eye_distance / (x2 - x1) < 0.95  # face-sized boxes, not 2x too big


def test_group_photo_finds_the_crowd(detector):
    img = photo("Solvay_conference_1927.png")
    dets = detector.detect(img)
    assert 18 <= len(dets) <= 32
    check_geometry(img, dets)
    assert np.median(dets.boxes[:, 2] - dets.boxes[:, 0]) < 60  # small faces of a group photo


def test_portraits(detector):
    img = photo("Blake_Lively.jpg")
    dets = detector.detect(img)
    assert len(dets) == 2  # the child and the adult
    check_geometry(img, dets)
    assert (dets.boxes[:, 2] - dets.boxes[:, 0]).min() > 100


def test_facexlib_priors_would_make_boxes_too_big(detector):
    """The 1MB checkpoint needs its own priors: with facexlib's, the same outputs decode to ~2x boxes."""
    img = photo("Blake_Lively.jpg")
    ours = detector.detect(img, detect_size=320)
    wrong = FaceDetector(detector.net, dataclasses.replace(detector.entry, min_sizes=((16, 32), (64, 128), (256, 512)),
                                                           detect_size=320)).detect(img)
    assert len(ours) == 2 and len(wrong) >= 1
    ratio = (wrong.boxes[0, 2] - wrong.boxes[0, 0]) / (ours.boxes[0, 2] - ours.boxes[0, 0])
    assert 1.4 < ratio < 2.6


def test_batched_detection_matches_single(detector):
    imgs = [photo("Blake_Lively.jpg"), cv2.imread(str(shared_path("data/real/cropped/Adele_crop.png")))]
    batched = detector.detect_batch(imgs)
    for img, dets in zip(imgs, batched):
        single = detector.detect(img)
        np.testing.assert_allclose(dets.boxes, single.boxes, atol=1e-2)


def test_prior_boxes_layout():
    priors = prior_boxes(64, 96, ((10, 20), (32, 64), (128, 256)), (8, 16, 32))
    assert priors.shape == ((8 * 12 + 4 * 6 + 2 * 3) * 2, 4)
    torch.testing.assert_close(priors[0], torch.tensor([4 / 96, 4 / 64, 10 / 96, 10 / 64]))
    torch.testing.assert_close(priors[1], torch.tensor([4 / 96, 4 / 64, 20 / 96, 20 / 64]))
    torch.testing.assert_close(priors[2, :2], torch.tensor([12 / 96, 4 / 64]))  # next column


def test_wrong_detector_name_and_file(tmp_path):
    with pytest.raises(ValueError, match="not a face detector"):
        load_detector("gfpgan")
    torch.save({"a": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match="not a retinaface-mobile0.25-1mb checkpoint"):
        load_detector("retinaface-mobile0.25-1mb", weights=tmp_path / "bad.pth")


def test_templates():
    np.testing.assert_allclose(template("ffhq", 512)[0], [192.98138, 239.94708])
    np.testing.assert_allclose(template("ffhq", 256), template("ffhq", 512) / 2)
    # GPEN: 96x112 points shifted by 8 px to a 112 square, padded by 2 x 0.25 to 168 px, scaled
    np.testing.assert_allclose(gpen_reference(168)[0], [30.29459953 + 8 + 28, 51.69630051 + 28])
    np.testing.assert_allclose(template("gpen", 512), gpen_reference(168) * 512 / 168)
    gpen, ffhq = template("gpen", 512), template("ffhq", 512)
    assert abs((gpen[1, 0] - gpen[0, 0]) - (ffhq[1, 0] - ffhq[0, 0])) > 10  # really a different alignment
    with pytest.raises(KeyError):
        template("nope", 512)


def test_similarity_fit_recovers_a_known_transform():
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = template("ffhq", 512) / 3 + 40
    dst = src @ rot.T + shift
    for fit in (estimate_affine(src, dst), umeyama(src, dst)):
        np.testing.assert_allclose(fit, np.hstack([rot, shift[:, None]]), atol=1e-4)
    a = estimate_affine(src, dst)
    np.testing.assert_allclose(transform_points(transform_points(src, a), invert_affine(a)), src, atol=1e-6)


@pytest.mark.parametrize("name,size", [("ffhq", 512), ("gpen", 256), ("gpen", 512)])
def test_aligned_crop_puts_landmarks_on_the_template(detector, name, size):
    img = photo("Blake_Lively.jpg")
    dets = detector.detect(img)
    dst = template(name, size)
    affines = np.stack([estimate_affine(lm, dst) for lm in dets.landmarks])
    crops = warp_faces(img, affines, size)
    assert crops.shape == (len(dets), size, size, 3)
    for lm, a, crop in zip(dets.landmarks, affines, crops):
        assert np.abs(transform_points(lm, a) - dst).max() < size * 0.03
        again = detector.detect(crop, detect_size=320)  # re-detected in the crop: on the template too
        assert len(again) >= 1
        assert np.abs(again.landmarks[0] - dst).mean() < size * 0.05


def test_paste_back_of_unchanged_crops_restores_the_input():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), (0, 0), 3)
    dst = template("ffhq", 256)
    landmarks = [dst / 4 + [60, 50], dst / 3 + [230, 120], dst / 2 + [300, 200]]  # last one partly outside
    affines = np.stack([estimate_affine(lm, dst) for lm in landmarks])
    crops = warp_faces(img, affines, 256)
    out = paste_faces(img, crops, affines)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).mean() < 1.0
    # pasting a constant face changes its region, feathered, and nothing far away
    out = paste_faces(img, np.full((1, 256, 256, 3), 255, np.uint8), affines[:1])
    centre = transform_points(np.array([128.0, 128.0]), invert_affine(affines[0])).astype(int)
    assert (out[centre[1], centre[0]] == 255).all()
    np.testing.assert_array_equal(out[250:, 250:], img[250:, 250:])


def test_paste_back_onto_an_upscaled_background():
    rng = np.random.default_rng(1)
    img = cv2.GaussianBlur(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8), (0, 0), 2)
    dst = template("ffhq", 128)
    affine = estimate_affine(dst / 2 + [60, 60], dst)
    crop = warp_faces(img, affine[None], 128)
    up = cv2.resize(img, (400, 400), interpolation=cv2.INTER_LINEAR)
    to_small = np.diag([0.5, 0.5, 1.0])  # upscaled background pixel -> input pixel
    out = paste_faces(up, crop, (affine @ to_small)[None])
    assert out.shape == up.shape and np.abs(out.astype(int) - up).mean() < 1.5


def test_feather_mask_is_smooth_and_solid_inside():
    mask = feather_mask(256)
    assert mask[128, 128] == 1 and mask[0, 0] < 0.01
    assert np.abs(np.diff(mask, axis=1)).max() < 0.1
