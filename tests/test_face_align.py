"""Alignment templates and similarity fits against independent references: GPEN's reference-point
function (facexlib ships the same `get_reference_facial_points`) and scikit-image's least-squares
similarity transform."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import shared_path
from facerestore.face.align import estimate_affine, template, transform_points, umeyama, warp_faces


@pytest.mark.parametrize("size", [256, 512, 1024])
def test_gpen_template_equals_gpens_reference_points(size):
    align_trans = pytest.importorskip("facexlib.detection.align_trans")
    reference = align_trans.get_reference_facial_points((size, size), inner_padding_factor=0.25, outer_padding=(0, 0),
                                                        default_square=True)
    np.testing.assert_allclose(template("gpen", size), reference, rtol=0, atol=1e-9)


def test_ffhq_template_scales_linearly():
    np.testing.assert_allclose(template("ffhq", 512)[2], [256.63416, 314.01935])
    np.testing.assert_allclose(template("ffhq", 1024), 2 * template("ffhq", 512))


def test_least_squares_fit_equals_scikit_image_on_noisy_points():
    skimage_transform = pytest.importorskip("skimage.transform")
    rng = np.random.default_rng(0)
    dst = template("ffhq", 512)
    for _ in range(5):
        src = dst * rng.uniform(0.05, 0.5) + rng.uniform(0, 300, 2) + rng.normal(0, 2, (5, 2))
        if hasattr(skimage_transform.SimilarityTransform, "from_estimate"):
            reference = skimage_transform.SimilarityTransform.from_estimate(src, dst)
        else:
            reference = skimage_transform.SimilarityTransform()
            reference.estimate(src, dst)
        np.testing.assert_allclose(umeyama(src, dst), reference.params[:2], atol=1e-8)


def test_warp_puts_a_real_face_on_the_template():
    """Rotate, scale and shift a real aligned face (landmarks on the FFHQ template) into a photo-sized
    canvas; aligning it back must land the known landmarks on the template and reproduce the face."""
    face = cv2.imread(str(shared_path("data/real/cropped/Julia_Roberts_crop.png")))
    angle, scale = np.deg2rad(12.0), 0.45
    forward = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = np.hstack([forward, [[150.0], [90.0]]])  # crop -> canvas
    canvas = cv2.warpAffine(face, forward, (500, 420), flags=cv2.INTER_LINEAR)
    landmarks = transform_points(template("ffhq", 512), forward)
    for name, size in [("ffhq", 512), ("gpen", 256), ("gpen", 512)]:
        dst = template(name, size)
        affine = estimate_affine(landmarks, dst)
        # exact where the template is the one the face was aligned with; GPEN's has other proportions
        tolerance = 1e-3 if name == "ffhq" else 0.015 * size
        assert np.abs(transform_points(landmarks, affine) - dst).max() < tolerance
        crop = warp_faces(canvas, affine[None], size)[0]
        assert crop.shape == (size, size, 3)
    crop = warp_faces(canvas, estimate_affine(landmarks, template("ffhq", 512))[None], 512)[0]
    inner = (slice(100, 412), slice(100, 412))
    assert np.abs(crop[inner].astype(int) - face[inner]).mean() < 6  # the same face, resampled twice


def test_outside_the_photo_is_gfpgans_grey():
    img = np.zeros((50, 60, 3), np.uint8)
    far_away = np.array([[1.0, 0.0, -500.0], [0.0, 1.0, -500.0]])  # crop pixel (0,0) = photo pixel (500,500)
    crops = warp_faces(img, np.stack([far_away, np.eye(2, 3)]), 32)
    assert (crops[0] == (135, 133, 132)).all()
    assert (crops[1, :40, :40] == 0).all()
