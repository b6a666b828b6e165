"""Paste-back on a real photo: unchanged crops come back as the input, nothing outside the feathered
masks changes, upscaled backgrounds line up, faces at or past the border are handled."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import shared_path
from facerestore.face.align import estimate_affine, invert_affine, template, transform_points, warp_faces
from facerestore.face.paste import feather_mask, paste_faces, resize_affine

SIZE = 256


@pytest.fixture(scope="module")
def photo():
    return cv2.imread(str(shared_path("data/real/whole/Blake_Lively.jpg")))  # 464 x 700


def face_affines(landmarks):
    dst = template("ffhq", SIZE)
    return np.stack([estimate_affine(points, dst) for points in landmarks])


def footprint(affines, shape, threshold=0.0):
    """Background pixels where any face's warped mask exceeds `threshold`."""
    masks = [cv2.warpAffine(feather_mask(SIZE), a, (shape[1], shape[0]), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR)
             for a in affines]
    return np.max(masks, axis=0) > threshold


# two faces in the photo (template points placed on them), one half outside the right border, one fully outside
LANDMARKS = [template("ffhq", 512) * 0.38 + [420, 60], template("ffhq", 512) * 0.3 + [90, 70],
             template("ffhq", 512) * 0.5 + [560, 150], template("ffhq", 512) * 0.3 + [2000, 2000]]


def test_unchanged_crops_come_back_as_the_input(photo):
    affines = face_affines(LANDMARKS)
    crops = warp_faces(photo, affines, SIZE)
    out = paste_faces(photo, crops, affines)
    assert out.shape == photo.shape and out.dtype == np.uint8
    inside = footprint(affines, photo.shape, 0.5)
    assert inside.sum() > 20000
    assert np.abs(out.astype(int) - photo)[inside].mean() < 2.5  # two bilinear resamplings of a halftone print
    np.testing.assert_array_equal(out[~footprint(affines, photo.shape)], photo[~footprint(affines, photo.shape)])


def test_a_changed_face_is_pasted_with_a_smooth_edge(photo):
    affines = face_affines(LANDMARKS[:1])
    white = np.full((1, SIZE, SIZE, 3), 255, np.uint8)
    out = paste_faces(photo, white, affines)
    centre = transform_points(np.array([SIZE / 2, SIZE / 2]), invert_affine(affines[0])).round().astype(int)
    assert (out[centre[1], centre[0]] == 255).all()
    # across the edge the weight rises gradually: no step larger than a few % of the change per pixel
    weight = (out.astype(float) - photo) / np.maximum(255.0 - photo, 1)
    row = weight[centre[1], :, 1]
    assert np.abs(np.diff(row)).max() < 0.12
    assert ((row > 0.05) & (row < 0.95)).sum() >= 6  # a feathered band, not a hard cut


def test_later_faces_cover_earlier_ones(photo):
    affines = face_affines([LANDMARKS[0], LANDMARKS[0] + 3])
    faces = np.stack([np.zeros((SIZE, SIZE, 3), np.uint8), np.full((SIZE, SIZE, 3), 200, np.uint8)])
    out = paste_faces(photo, faces, affines)
    centre = transform_points(np.array([SIZE / 2, SIZE / 2]), invert_affine(affines[1])).round().astype(int)
    assert (out[centre[1], centre[0]] == 200).all()


@pytest.mark.parametrize("scale", [2, 3])
def test_upscaled_background_lines_up(photo, scale):
    affines = face_affines(LANDMARKS[:2])
    crops = warp_faces(photo, affines, SIZE)
    big = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    to_photo = resize_affine(photo.shape, big.shape)
    # the centre of the first big pixel block is the centre of the first photo pixel
    np.testing.assert_allclose(to_photo @ [0.5 * scale - 0.5, 0, 1], [0, -0.5 + 0.5 / scale, 1], atol=1e-12)
    centred = np.stack([a @ to_photo for a in affines])
    plain = np.stack([a @ np.diag([1 / scale, 1 / scale, 1.0]) for a in affines])
    inside = footprint(centred, big.shape, 0.5)
    error = {name: np.abs(paste_faces(big, crops, a).astype(int) - big)[inside].mean()
             for name, a in [("centred", centred), ("plain", plain)]}
    assert error["centred"] < 1.5
    assert error["centred"] < 0.8 * error["plain"]  # the half-pixel convention matters


def test_no_faces_returns_a_copy(photo):
    out = paste_faces(photo, np.zeros((0, SIZE, SIZE, 3), np.uint8), np.zeros((0, 2, 3)))
    np.testing.assert_array_equal(out, photo)
    assert out is not photo
