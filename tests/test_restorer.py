"""The shared FaceRestorer pipeline with small real modules: input forms, fidelity, seeding,
whole photos with the real detector (identity model pasted back gives the input back)."""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
import torch

import facerestore
from conftest import shared_path
from facerestore.registry import ZooEntry
from facerestore.restorer import NoFaceWarning, RestoreResult


class IdentityNet(torch.nn.Module):
    """Returns its input, in the (image, extras) convention of GFP-GAN/GPEN."""

    def forward(self, x, **kwargs):
        return x, []


class NoisyInvertNet(torch.nn.Module):
    """-x plus noise from the global RNG (like GFP-GAN's randomize_noise)."""

    def forward(self, x, **kwargs):
        return -x + 0.1 * torch.randn_like(x), []


def entry(arch, size=64, template="ffhq") -> ZooEntry:
    return ZooEntry(name=f"test-{arch.__name__.lower()}", arch=arch, arch_config={}, files=(), task="restore",
                    face_size=size, template=template)


def load_test(arch, size=64, **kw):
    return facerestore.load(entry(arch, size), pretrained=False, device="cpu", **kw)


@pytest.fixture(scope="module")
def face512():
    return cv2.imread(str(shared_path("data/real/cropped/Adele_crop.png")))


def test_aligned_identity_roundtrip_is_exact(face512):
    out = load_test(IdentityNet, 512).restore(face512, aligned=True)
    assert isinstance(out, RestoreResult) and isinstance(out.image, np.ndarray)
    assert type(out.image) is np.ndarray
    np.testing.assert_array_equal(out.image, face512)
    assert len(out.faces) == 1 and out.faces[0].restored.shape == (512, 512, 3)
    # slices stay results with faces; arithmetic and reductions give plain arrays and numbers
    assert isinstance(out[:10], RestoreResult) and len(out[:10].faces) == 1
    assert type(out.mean()) is np.float64 and out.mean() == face512.mean()
    assert type(out.astype(int) - face512) is np.ndarray


def test_aligned_input_of_other_size_comes_back_at_its_size(face512):
    out = load_test(IdentityNet, 64).restore(face512, aligned=True, upscale=0.5)
    assert out.shape == (256, 256, 3)


def test_fidelity_blends_monotonically(face512):
    restorer = load_test(NoisyInvertNet, 64)
    crop = cv2.resize(face512, (64, 64), interpolation=cv2.INTER_AREA)
    dist = []
    for w in (0.0, 0.25, 0.5, 0.75, 1.0):
        out = restorer.restore(crop, aligned=True, fidelity=w, seed=3).image
        dist.append(np.abs(out.astype(int) - crop).mean())
    assert all(a > b for a, b in zip(dist, dist[1:])), dist
    assert dist[-1] == 0 and dist[0] > 50
    with pytest.raises(ValueError, match="fidelity"):
        restorer.restore(crop, aligned=True, fidelity=1.5)


def test_seed_reproduces_and_leaves_global_rng_alone(face512):
    restorer = load_test(NoisyInvertNet, 64)
    crop = cv2.resize(face512, (64, 64))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = restorer.restore(crop, aligned=True, seed=7).image
    b = restorer.restore(crop, aligned=True, seed=7).image
    c = restorer.restore(crop, aligned=True, seed=8).image
    assert torch.equal(torch.get_rng_state(), state)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c).max() > 0
    unseeded = [restorer.restore(crop, aligned=True).image for _ in range(2)]
    assert np.abs(unseeded[0].astype(int) - unseeded[1]).max() > 0  # fresh noise by default, like the original


def test_input_forms(face512, tmp_path):
    from PIL import Image

    restorer = load_test(IdentityNet, 512)
    gray = cv2.cvtColor(face512, cv2.COLOR_BGR2GRAY)
    out = restorer.restore(gray, aligned=True)
    assert out.shape == gray.shape and np.abs(out.astype(int) - gray).max() <= 1
    alpha = np.linspace(0, 255, 512 * 512).reshape(512, 512).astype(np.uint8)
    out = restorer.restore(np.dstack([face512, alpha]), aligned=True)
    assert out.shape == (512, 512, 4)
    np.testing.assert_array_equal(out[:, :, 3], alpha)
    np.testing.assert_array_equal(out[:, :, :3], face512)
    out = restorer.restore(face512.astype(np.uint16) * 257, aligned=True)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, face512.astype(np.uint16) * 257)
    rgb = face512[:, :, ::-1]
    np.testing.assert_array_equal(restorer.restore(rgb, aligned=True, color_order="rgb"), rgb)
    np.testing.assert_array_equal(restorer.restore(Image.fromarray(rgb), aligned=True).image, face512)
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), face512)
    np.testing.assert_array_equal(restorer.restore(path, aligned=True).image, face512)
    with pytest.raises(ValueError, match="shape"):
        restorer.restore(np.zeros((10, 10, 5), np.uint8), aligned=True)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        restorer.restore(tmp_path / "broken.png", aligned=True)


def detector_kwargs():
    return dict(detector="retinaface-mobile0.25-1mb",
                detector_weights=str(shared_path("weights/retinaface/mobilenet0.25_Final.pth")))


def test_whole_photo_identity_pasted_back_gives_back_the_input():
    from facerestore.face.align import template

    img = cv2.imread(str(shared_path("data/real/whole/Blake_Lively.jpg")))
    restorer = load_test(IdentityNet, 512, **detector_kwargs())
    out = restorer.restore(img)
    assert len(out.faces) >= 1
    assert out.shape == img.shape
    mse = ((out.image.astype(float) - img) ** 2).mean()
    assert 10 * np.log10(255**2 / mse) > 30  # only resampling error (warp there and back) inside the faces
    ys, xs = np.mgrid[: img.shape[0], : img.shape[1]]
    pixels = np.stack([xs, ys], -1).reshape(-1, 2).astype(float)
    outside = np.ones(len(pixels), bool)  # pixels no aligned crop covers must not change at all
    for face in out.faces:
        in_crop = pixels @ face.affine[:, :2].T + face.affine[:, 2]
        outside &= ~((in_crop > -1) & (in_crop < 513)).all(1)
    assert outside.sum() > 1000
    np.testing.assert_array_equal(out.image.reshape(-1, 3)[outside], img.reshape(-1, 3)[outside])
    for face in out.faces:
        x1, y1, x2, y2 = face.box
        assert 0 <= x1 < x2 <= img.shape[1] and 0 <= y1 < y2 <= img.shape[0]
        # the alignment puts the detected landmarks onto the model's template
        pts = face.landmarks @ face.affine[:, :2].T + face.affine[:, 2]
        assert np.abs(pts - template("ffhq", 512)).max() < 12
        np.testing.assert_array_equal(face.crop, face.restored)


def test_whole_photo_upscale_and_face_selection():
    img = cv2.imread(str(shared_path("data/real/whole/Solvay_conference_1927.png")))
    restorer = load_test(IdentityNet, 128, **detector_kwargs())
    many = restorer.restore(img)
    assert len(many.faces) >= 15
    one = restorer.restore(img, only_center_face=True, upscale=2)
    assert len(one.faces) == 1 and one.shape[:2] == (img.shape[0] * 2, img.shape[1] * 2)
    assert len(restorer.restore(img, max_faces=3).faces) == 3
    big = restorer.restore(img, min_face_size=1e6)
    assert big.faces == []


def test_no_face_warns_and_returns_upscaled_input():
    restorer = load_test(IdentityNet, 64, **detector_kwargs())
    flat = np.full((80, 120, 3), 127, np.uint8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = restorer.restore(flat, upscale=2)
    assert any(issubclass(w.category, NoFaceWarning) for w in caught)
    assert out.shape == (160, 240, 3) and out.faces == []


def test_batch_size_default_override_and_result_independence():
    restorer = load_test(NoisyInvertNet)
    assert restorer.batch_size == 4  # CPU
    faces = np.stack([cv2.resize(cv2.imread(str(shared_path("data/real/cropped/Adele_crop.png"))), (64, 64))] * 6)
    faces[1::2] = 255 - faces[1::2]
    points = np.zeros((6, 5, 2), np.float32)
    by_four = restorer.forward_faces(faces, points, seed=3)
    restorer.batch_size = 6
    assert restorer.batch_size == 6
    np.testing.assert_array_equal(restorer.forward_faces(faces[:1], points[:1], seed=3)[0], by_four[0])
    assert (by_four[1] != by_four[0]).any()  # each face was processed, in its own place
    with pytest.raises(ValueError, match="batch_size"):
        restorer.batch_size = 0
