"""Face parsing networks and the official paste-back modes against facexlib (the installed reference):
state_dict layouts, network outputs, pre-processing, facexlib's FaceRestoreHelper paste (parse mask and
square mask, upscale 1 and 2) on a real photo, and GPEN's compositing rules."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from facexlib.parsing.bisenet import BiSeNet as FacexlibBiSeNet
from facexlib.parsing.parsenet import ParseNet as FacexlibParseNet
from facexlib.utils.misc import img2tensor
from torchvision.transforms.functional import normalize

from conftest import shared_path
from facerestore.archs.bisenet import BiSeNet
from facerestore.archs.parsenet import ParseNet
from facerestore.face import parse as face_parse
from facerestore.face.parse import FaceParser, facexlib_mask, gpen_mask
from facerestore.face.paste import (inverse_affine_centered, inverse_affine_facexlib, paste_box, paste_gpen,
                                    paste_parse, upscale_background)

FACE = "data/real/cropped/Julia_Roberts_crop.png"  # 512 x 512 aligned face


def randomize(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Seeded random weights, BatchNorm statistics included (so every normalisation does something)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in net.state_dict().items():
            if not value.dtype.is_floating_point:
                continue
            if name.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
            elif name.endswith("running_mean"):
                value.copy_(torch.randn(value.shape, generator=generator) * 0.1)
            else:
                value.copy_(torch.randn(value.shape, generator=generator) * (0.5 / max(value[0].numel(), 1) ** 0.5))
    return net.eval()


def layout(net: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(value.shape)) for name, value in net.state_dict().items()]


@pytest.fixture(scope="module")
def face():
    return cv2.imread(str(shared_path(FACE)))


def facexlib_input(img_bgr: np.ndarray, mean, std) -> torch.Tensor:
    """facexlib's own pre-processing steps (helper / inference demos)."""
    img = cv2.resize(img_bgr, (512, 512), interpolation=cv2.INTER_LINEAR)
    tensor = img2tensor(img.astype("float32") / 255.0, bgr2rgb=True, float32=True)
    normalize(tensor, mean, std, inplace=True)
    return tensor[None]


@pytest.mark.parametrize("kind", ["parsenet", "bisenet"])
def test_layout_and_outputs_equal_facexlib(kind, face):
    if kind == "parsenet":
        reference, ours, side = FacexlibParseNet(in_size=512, out_size=512, parsing_ch=19), ParseNet(), 64
    else:
        reference, ours, side = FacexlibBiSeNet(num_class=19), BiSeNet(19), 256
    reference = randomize(reference)
    assert layout(ours) == layout(reference)  # same keys, same order, same shapes
    ours.load_state_dict(reference.state_dict(), strict=True)
    ours.eval()
    # both are fully convolutional: the real face at a reduced size keeps the test fast
    small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    x = img2tensor(small.astype("float32") / 255.0, bgr2rgb=True, float32=True)[None] * 2 - 1
    with torch.inference_mode():
        expected, got = reference(x), ours(x)
        logits = ours.parse_logits(x)
    assert len(expected) == len(got)
    for e, g in zip(expected, got):
        assert e.shape == g.shape
        assert (e - g).abs().max().item() <= 1e-5  # the same ops in the same order: 0 on CPU
    assert torch.equal(logits, got[0])
    assert expected[0].std() > 0.1  # the random weights give non-trivial logits


def test_preprocessing_matches_facexlib(face):
    faces = np.stack([face, cv2.flip(face, 1)])
    small = cv2.resize(face, (256, 256), interpolation=cv2.INTER_AREA)  # parsed at 512 after INTER_LINEAR
    net = torch.nn.Conv2d(3, 19, 1)
    for kind in ("parsenet", "bisenet"):
        parser = FaceParser(net, kind)
        mean, std = face_parse.NORMALIZATION[kind]
        expected = torch.cat([facexlib_input(f, mean, std) for f in faces])
        assert torch.equal(parser.preprocess(faces), expected)
        assert torch.equal(parser.preprocess(small), facexlib_input(small, mean, std))
    # GPEN: x / 255. * 2 - 1 in float64, then float32
    gpen = FaceParser(net, "parsenet").gpen_preprocess(face)
    expected = torch.from_numpy((face[..., ::-1] / 255.0 * 2 - 1).transpose(2, 0, 1).copy()).float()[None]
    assert torch.equal(gpen, expected)


def small_parsenet(cls):
    """A small configuration of the real ParseNet (512 px in and out), fast enough to run per face."""
    return cls(in_size=512, out_size=512, min_feat_size=128, base_ch=4, parsing_ch=19, res_depth=1,
               ch_range=[4, 8])


@pytest.fixture(scope="module")
def parsenets(face):
    """facexlib's and our small ParseNet with the same seeded random weights. The background logit's bias
    is set so that about half of a real face's pixels are labelled background: the masks are a real mix."""
    reference = randomize(small_parsenet(FacexlibParseNet), seed=5)
    with torch.no_grad():
        logits = reference(facexlib_input(face, (0.5,) * 3, (0.5,) * 3))[0][0]
        face_classes = torch.from_numpy(face_parse.FACEXLIB_FACE_LABELS)
        margin = logits[face_classes].max(0).values - logits[0]
        reference.out_mask_conv.conv2d.bias[0] += margin.median()
    ours = small_parsenet(ParseNet)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours.eval()


def test_face_masks_match_facexlib_recipe(parsenets, face):
    reference, ours = parsenets
    parser = FaceParser(ours, "parsenet", batch_size=1)  # two batches
    faces = np.stack([face, 255 - face])
    labels = parser.parse(faces)
    assert labels.shape == (2, 512, 512) and labels.dtype == np.int64
    with torch.inference_mode():
        expected_labels = reference(facexlib_input(faces[1], (0.5,) * 3, (0.5,) * 3))[0].argmax(1)[0].numpy()
    np.testing.assert_array_equal(labels[1], expected_labels)
    face_fraction = face_parse.FACEXLIB_FACE_LABELS[labels].mean()
    assert 0.2 < face_fraction < 0.9, face_fraction  # a real mix for the paste tests below
    masks = parser.face_masks(faces)
    assert masks.shape == (2, 512, 512) and masks.dtype == np.float64
    # facexlib: 0/255 colormap, GaussianBlur(101, 11) twice, 10 px border to 0, / 255
    colormap = [0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 255, 0, 0, 0]
    mask = np.zeros((512, 512))
    for index, color in enumerate(colormap):
        mask[labels[0] == index] = color
    mask = cv2.GaussianBlur(cv2.GaussianBlur(mask, (101, 101), 11), (101, 101), 11)
    mask[:10], mask[-10:], mask[:, :10], mask[:, -10:] = 0, 0, 0, 0
    np.testing.assert_array_equal(masks[0], mask / 255.0)


def test_bisenet_labels_select_the_same_face_parts():
    # BiSeNet label k is ParseNet label BISENET_TO_PARSENET[k]: the same parts give the same mask
    rng = np.random.default_rng(0)
    parsenet_labels = np.repeat(np.repeat(rng.integers(0, 19, (16, 16)), 32, 0), 32, 1)
    to_bisenet = np.argsort(face_parse.BISENET_TO_PARSENET)
    bisenet_labels = to_bisenet[parsenet_labels]
    np.testing.assert_array_equal(facexlib_mask(bisenet_labels, "bisenet"), facexlib_mask(parsenet_labels))
    np.testing.assert_array_equal(gpen_mask(bisenet_labels, "bisenet"), gpen_mask(parsenet_labels))


# ----------------------------------------------------------------------------------------------------------
# paste-back parity with facexlib's FaceRestoreHelper on a real photo
# ----------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photo_and_landmarks():
    from facerestore.face.detect import load_detector

    photo = cv2.imread(str(shared_path("data/real/whole/Blake_Lively.jpg")))  # 464 x 700, two faces
    detector = load_detector("retinaface-mobile0.25-1mb",
                             weights=shared_path("weights/retinaface/mobilenet0.25_Final.pth"), device="cpu")
    found = detector.detect(photo, detect_size=480)
    assert len(found) == 2
    return photo, found.landmarks.astype(np.float64)


@pytest.fixture(scope="module")
def helper(photo_and_landmarks, parsenets):
    """facexlib's FaceRestoreHelper built without downloads: its detector and parsing-model factories are
    replaced (the detector is never used; the parser is the shared seeded ParseNet)."""
    import facexlib.utils.face_restoration_helper as helper_module

    reference, _ = parsenets
    saved = helper_module.init_detection_model, helper_module.init_parsing_model
    helper_module.init_detection_model = lambda *args, **kwargs: None
    helper_module.init_parsing_model = lambda *args, **kwargs: reference
    try:
        helper = helper_module.FaceRestoreHelper(1, face_size=512, device=torch.device("cpu"))
    finally:
        helper_module.init_detection_model, helper_module.init_parsing_model = saved
    photo, landmarks = photo_and_landmarks
    helper.read_image(photo)
    helper.all_landmarks_5 = list(landmarks)
    helper.align_warp_face()
    # "restored" faces: a deterministic, clearly visible change of the crops
    helper.restored_faces = [cv2.addWeighted(255 - crop, 0.7, cv2.GaussianBlur(crop, (0, 0), 3), 0.3, 5)
                             for crop in helper.cropped_faces]
    return helper


@pytest.mark.parametrize("upscale", [1, 2])
@pytest.mark.parametrize("use_parse", [True, False])
def test_paste_equals_facexlib(helper, parsenets, photo_and_landmarks, upscale, use_parse):
    photo, _ = photo_and_landmarks
    helper.upscale_factor, helper.use_parse = upscale, use_parse
    helper.inverse_affine_matrices = []  # the paste shifts these in place: fresh ones for every call
    helper.get_inverse_affine()
    for affine, inverse in zip(helper.affine_matrices, helper.inverse_affine_matrices):
        np.testing.assert_array_equal(inverse_affine_facexlib(affine, upscale), inverse)
    expected = helper.paste_faces_to_input_image()

    restored = np.stack(helper.restored_faces)
    affines = np.stack(helper.affine_matrices)
    background = upscale_background(photo, upscale)
    if use_parse:
        masks = FaceParser(parsenets[1], "parsenet").face_masks(restored)
        got = paste_parse(background, restored, affines, masks, upscale, face_size=512)
    else:
        got = paste_box(background, restored, affines, upscale, face_size=512)
    assert got.shape == expected.shape == (464 * upscale, 700 * upscale, 3) and got.dtype == np.uint8
    differing = int((got != expected).sum())
    print(f"paste use_parse={use_parse} upscale={upscale}: {differing} differing values, "
          f"max |d| {np.abs(got.astype(int) - expected).max()}")
    assert differing == 0  # measured: 0 in all four cases (same OpenCV ops; row bands warp identically)
    changed = (expected != background).any(2)
    assert changed.mean() > 0.15  # both faces were really pasted


def test_paste_keeps_alpha_and_skips_faces_outside(helper, photo_and_landmarks):
    photo, _ = photo_and_landmarks
    restored = np.stack(helper.restored_faces)
    affines = np.stack(helper.affine_matrices)
    alpha = (np.arange(photo.size // 3) % 256).reshape(photo.shape[:2])
    bgra = np.dstack([photo, alpha]).astype(np.uint8)
    out = paste_box(bgra, restored, affines)
    np.testing.assert_array_equal(out[..., 3], bgra[..., 3])
    np.testing.assert_array_equal(out[..., :3], paste_box(photo, restored, affines))
    far = affines.copy()
    far[:, 1, 2] -= 5000  # the faces land far below the image
    np.testing.assert_array_equal(paste_box(photo, restored, far), photo)
    with pytest.raises(ValueError, match="resize the faces"):
        paste_box(photo, restored[:, :256, :256], affines, face_size=512)


# ----------------------------------------------------------------------------------------------------------
# GPEN's compositing
# ----------------------------------------------------------------------------------------------------------

def test_gpen_mask_border_and_labels():
    labels = np.ones((512, 512), np.int64)  # all skin
    labels[400:, 150:350] = 17  # neck: part of GPEN's face mask, not of facexlib's
    mask = gpen_mask(labels)
    assert mask.dtype == np.float32
    assert mask[256, 256] == 1.0
    # the 26 px border is zeroed BEFORE the blur (sigma 4, twice: sigma 5.66): ~0 at the edge, ~0.5 at 26 px
    assert mask[0, 256] < 1e-5 and mask[256, 0] < 1e-5
    assert 0.45 < mask[26, 256] < 0.6 and mask[60, 256] > 0.999
    assert mask[460, 250] > 0.999  # neck kept
    assert facexlib_mask(labels)[460, 250] < 0.2  # facexlib drops the neck
    # the exact recipe
    expected = (labels > 0).astype(np.uint8) * 255 / 255.0
    expected[:26], expected[-26:], expected[:, :26], expected[:, -26:] = 0, 0, 0, 0
    expected = cv2.GaussianBlur(cv2.GaussianBlur(expected, (101, 101), 4), (101, 101), 4).astype(np.float32)
    np.testing.assert_array_equal(mask, expected)


def shift_affine(x: float, y: float, scale: float = 1.0) -> np.ndarray:
    """image -> crop: crop pixel (u, v) shows image pixel (x + u / scale, y + v / scale)."""
    return np.array([[scale, 0.0, -x * scale], [0.0, scale, -y * scale]])


@pytest.fixture(scope="module")
def gpen_case(face):
    background = cv2.imread(str(shared_path("data/real/whole/Blake_Lively.jpg")))
    mask = gpen_mask(np.ones((512, 512), np.int64))
    return background, face, mask


def test_gpen_small_faces_are_smoothed(gpen_case):
    background, face, mask = gpen_case
    affine = shift_affine(100, -40, scale=2.0)  # a 256 px footprint at (100, -40)
    inverse = inverse_affine_centered(affine)
    np.testing.assert_allclose(inverse, [[0.5, 0, 100], [0, 0.5, -40]])
    big = paste_gpen(background, face[None], affine[None], mask[None], [[0, 0, 120, 150]])
    small = paste_gpen(background, face[None], affine[None], mask[None], [[0, 0, 99, 150]])
    smoothed = cv2.filter2D(face, -1, face_parse_kernel())
    dsize = (background.shape[1], background.shape[0])
    np.testing.assert_array_equal(big, composite(background, cv2.warpAffine(face, inverse, dsize, flags=3), mask,
                                                 inverse))
    np.testing.assert_array_equal(small, composite(background, cv2.warpAffine(smoothed, inverse, dsize, flags=3),
                                                   mask, inverse))
    assert (big != small).any(2).sum() > 10000


def face_parse_kernel() -> np.ndarray:
    return np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 16


def composite(background, face_back, mask, inverse):
    """GPEN's final blend for one face: convertScaleAbs(bg * (1 - m) + face * m), m the warped mask."""
    m = cv2.warpAffine(mask, inverse, (background.shape[1], background.shape[0]), flags=3)[:, :, None]
    return cv2.convertScaleAbs(background * (1 - m) + face_back * m)


def test_gpen_overlapping_faces_take_the_larger_mask(gpen_case):
    background, _, mask = gpen_case
    height, width = background.shape[:2]
    black, white = np.zeros((1, 512, 512, 3), np.uint8), np.full((1, 512, 512, 3), 255, np.uint8)
    faces = np.concatenate([black, white])
    affines = np.stack([shift_affine(150, 50, 2.0), shift_affine(300, 80, 2.0)])  # overlapping footprints
    masks = np.stack([mask, mask])
    boxes = [[0, 0, 200, 200]] * 2
    out = paste_gpen(background, faces, affines, masks, boxes)
    swapped = paste_gpen(background, faces[::-1], affines[::-1], masks, boxes)
    warped = [cv2.warpAffine(mask, inverse_affine_centered(a), (width, height), flags=3) for a in affines]
    m = np.maximum(warped[0], warped[1])
    white_wins = warped[1] > warped[0]
    black_wins = warped[0] > warped[1]
    expected = cv2.convertScaleAbs(background * (1 - m[:, :, None]) + np.float32(255) * (white_wins * m)[:, :, None])
    overlap = (warped[0] > 0.05) & (warped[1] > 0.05)
    assert overlap.sum() > 5000 and (overlap & white_wins).sum() > 1000 and (overlap & black_wins).sum() > 1000
    strict = white_wins | black_wins | (m == 0)  # away from exact ties the order of the faces does not matter
    np.testing.assert_array_equal(out[strict], expected[strict])
    np.testing.assert_array_equal(swapped[strict], expected[strict])
    np.testing.assert_array_equal(out[m == 0], background[m == 0])


def test_gpen_upscaled_paste_lines_up(gpen_case):
    background, face, mask = gpen_case
    affine = shift_affine(100, 40, scale=2.0)
    up = cv2.resize(background, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    out = paste_gpen(up, face[None], affine[None], mask[None], [[0, 0, 300, 300]], upscale=2)
    inverse = inverse_affine_centered(affine, 2)
    np.testing.assert_allclose(inverse, [[1, 0, 200.5], [0, 1, 80.5]])  # pixel centres: x_up = 2 x + 0.5
    core = (slice(80 + 100, 80 + 400), slice(200 + 100, 200 + 400))
    # where the mask is 1, the face is pasted shifted by exactly half a pixel (bilinear average of 2x2)
    half = cv2.warpAffine(face, inverse, (up.shape[1], up.shape[0]), flags=3)
    np.testing.assert_array_equal(out[core], half[core])
